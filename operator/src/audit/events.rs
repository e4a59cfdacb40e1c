//! The ledger's records as Kubernetes Events (the copy `kubectl describe`
//! shows), and the Warning Events of what keeps failing.
//!
//! A record's Event is created once and never remembered: each record is a
//! fact of its own (its note names its sequence number and hash), so there
//! is nothing to fold into a series. kube's `Recorder` keeps every Event it
//! published for six minutes to build series; at a thousand scenarios
//! ending at one instant that cache was the largest single allocation of
//! the operator (12 MiB of a 74 MiB heap). Warnings that repeat (a wipe
//! retried every few seconds) still go through a `Recorder`, so they fold
//! into one Event with a count; there are few of them.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};

/// Where the ledger's Events go.
pub struct Announcer {
    client: Client,
    reporter: Reporter,
    warnings: Recorder,
}

impl Announcer {
    pub fn new(client: Client, reporter: Reporter) -> Announcer {
        Announcer {
            warnings: Recorder::new(client.clone(), reporter.clone()),
            client,
            reporter,
        }
    }

    /// Creates the Event of one record on `regarding` (nothing kept).
    pub async fn record(&self, event: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let object = event_object(event, regarding, &self.reporter, Timestamp::now());
        Api::<K8sEvent>::namespaced(self.client.clone(), namespace_of(regarding))
            .create(&PostParams::default(), &object)
            .await
            .map(|_| ())
    }

    /// Publishes a Warning that may repeat: repeats within minutes become
    /// one Event with a count.
    pub async fn warn(&self, event: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        self.warnings.publish(event, regarding).await
    }
}

/// Events about cluster-scoped objects go to `default`, as kube's do.
fn namespace_of(regarding: &ObjectReference) -> &str {
    regarding.namespace.as_deref().unwrap_or("default")
}

/// The Event object for `event` on `regarding` at `now` (pure): named after
/// the object and the instant, as `kubectl` and kube name theirs.
pub fn event_object(
    event: &Event,
    regarding: &ObjectReference,
    reporter: &Reporter,
    now: Timestamp,
) -> K8sEvent {
    let object_name = regarding.name.as_deref().unwrap_or(&reporter.controller);
    K8sEvent {
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        note: event.note.clone(),
        metadata: ObjectMeta {
            namespace: Some(namespace_of(regarding).to_string()),
            name: Some(format!("{object_name}.{:x}", now.as_nanosecond())),
            ..ObjectMeta::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        ..K8sEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter(instance: Option<&str>) -> Reporter {
        Reporter {
            controller: "cleanroom".into(),
            instance: instance.map(Into::into),
        }
    }

    fn event() -> Event {
        Event {
            type_: EventType::Warning,
            reason: "Expired".into(),
            note: Some("audit #7 by system:cleanroom".into()),
            action: "Audit".into(),
            secondary: None,
        }
    }

    #[test]
    fn a_record_event_names_its_object_instant_and_reporter() {
        let regarding = ObjectReference {
            kind: Some("Scenario".into()),
            name: Some("fraud".into()),
            uid: Some("u-1".into()),
            ..ObjectReference::default()
        };
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let e = event_object(&event(), &regarding, &reporter(None), now);
        assert_eq!(
            e.metadata.name.as_deref(),
            Some(format!("fraud.{:x}", now.as_nanosecond()).as_str())
        );
        // A cluster-scoped object's Events are in `default`.
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("Expired"));
        assert_eq!(e.action.as_deref(), Some("Audit"));
        assert_eq!(e.note.as_deref(), Some("audit #7 by system:cleanroom"));
        assert_eq!(e.regarding.as_ref(), Some(&regarding));
        assert_eq!(e.reporting_controller.as_deref(), Some("cleanroom"));
        assert_eq!(e.reporting_instance.as_deref(), Some("cleanroom"));
        assert!(e.series.is_none(), "a record is never folded into a series");
    }

    #[test]
    fn an_event_on_a_namespaced_object_lives_in_its_namespace() {
        let regarding = ObjectReference {
            kind: Some("ConfigMap".into()),
            name: Some("audit-public-key".into()),
            namespace: Some("cleanroom-system".into()),
            ..ObjectReference::default()
        };
        let now = Timestamp::UNIX_EPOCH;
        let e = event_object(&event(), &regarding, &reporter(Some("pod-1")), now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("cleanroom-system"));
        assert_eq!(e.reporting_instance.as_deref(), Some("pod-1"));
    }
}
