//! The API server's audit events, as its audit webhook posts them
//! (`audit.k8s.io/v1` `EventList`), and the sessions they show: pure.
//!
//! Only what the ledger needs is parsed. The request URI is never kept:
//! for `exec` it carries the command line (`?command=...`), which is a
//! command's data, not who entered (R13 asks for the second).

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::json;

use crate::api::scenario::NAMESPACE_PREFIX;
use crate::audit::{Action, Draft};
use crate::workspace::labels;

/// The subresources through which someone enters a pod: a shell, its
/// terminal, its ports, a debugging container.
pub const SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "ephemeralcontainers"];

/// Prefix of a session record's idempotency key; the rest is the audit ID.
pub const KEY_PREFIX: &str = "session/";

/// What the webhook posts.
#[derive(Deserialize, Debug, Default)]
pub struct EventList {
    #[serde(default, rename = "apiVersion")]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub items: Vec<Event>,
}

/// One audit event (the fields a session record needs).
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default, rename = "auditID")]
    pub audit_id: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub verb: String,
    #[serde(default)]
    pub user: UserInfo,
    #[serde(default)]
    pub impersonated_user: Option<UserInfo>,
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    #[serde(default)]
    pub response_status: Option<Status>,
    #[serde(default)]
    pub request_received_timestamp: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
pub struct ObjectRef {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub subresource: String,
}

#[derive(Deserialize, Debug, Clone, Default)]
pub struct Status {
    #[serde(default)]
    pub code: Option<i32>,
}

/// Why a body is not an audit event list.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("not JSON of an audit event list: {0}")]
    Json(String),
    #[error("expected kind EventList of audit.k8s.io/v1, got {kind} of {api_version}")]
    Kind { kind: String, api_version: String },
}

/// Parses a webhook body.
pub fn parse(body: &[u8]) -> Result<EventList, ParseError> {
    let list: EventList =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    if list.kind != "EventList" || list.api_version != "audit.k8s.io/v1" {
        return Err(ParseError::Kind {
            kind: list.kind,
            api_version: list.api_version,
        });
    }
    Ok(list)
}

/// One request to enter a workspace pod, as the API server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub audit_id: String,
    /// Who it was for: the impersonated user if there was one.
    pub user: UserInfo,
    /// Who authenticated, when that is someone else (impersonation).
    pub impersonated_by: Option<String>,
    pub namespace: String,
    pub pod: String,
    pub subresource: String,
    /// The API server's answer: 101 once a stream opened, 2xx for a debug
    /// container added, 4xx refused, 5xx failed (the node did not answer).
    pub code: Option<i32>,
    /// When the API server received the request (RFC 3339).
    pub time: Option<String>,
}

impl Session {
    /// The scenario of the workspace (`cr-<scenario>`).
    pub fn scenario(&self) -> &str {
        self.namespace
            .strip_prefix(NAMESPACE_PREFIX)
            .unwrap_or(&self.namespace)
    }

    /// Whether the API server let it through.
    pub fn admitted(&self) -> bool {
        self.code.is_some_and(|c| (100..400).contains(&c))
    }
}

/// The sessions in a list of events: stages after the response began,
/// the four subresources, `cr-*` namespaces, one per audit ID (the API
/// server sends a started and a completed stage, and retries).
/// `RequestReceived` is not a session: it comes before authentication's
/// impersonation and authorization are known.
pub fn sessions(list: &EventList) -> Vec<Session> {
    let mut seen = HashSet::new();
    list.items
        .iter()
        .filter_map(session)
        .filter(|s| seen.insert(s.audit_id.clone()))
        .collect()
}

fn session(e: &Event) -> Option<Session> {
    if !matches!(e.stage.as_str(), "ResponseStarted" | "ResponseComplete") || e.audit_id.is_empty()
    {
        return None;
    }
    let o = e.object_ref.as_ref()?;
    let entering = o.resource == "pods"
        && SUBRESOURCES.contains(&o.subresource.as_str())
        // Reading a pod's debug containers is not entering it; adding one is.
        && (o.subresource != "ephemeralcontainers" || matches!(e.verb.as_str(), "update" | "patch"));
    let scenario = o.namespace.strip_prefix(NAMESPACE_PREFIX)?;
    if !entering || scenario.is_empty() || o.name.is_empty() {
        return None;
    }
    let (user, impersonated_by) = match &e.impersonated_user {
        Some(as_user) if !as_user.username.is_empty() => {
            (as_user.clone(), Some(e.user.username.clone()))
        }
        _ => (e.user.clone(), None),
    };
    Some(Session {
        audit_id: e.audit_id.clone(),
        user,
        impersonated_by,
        namespace: o.namespace.clone(),
        pod: o.name.clone(),
        subresource: o.subresource.clone(),
        code: e.response_status.as_ref().and_then(|s| s.code),
        time: e.request_received_timestamp.clone(),
    })
}

/// The scenario a workspace namespace belongs to, from its labels; only
/// a namespace the operator made (`managed-by`) is believed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Owner {
    pub uid: String,
    pub authorization: Option<String>,
}

impl Owner {
    pub fn from_labels(l: &BTreeMap<String, String>) -> Owner {
        if l.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGER) {
            return Owner::default();
        }
        Owner {
            uid: l.get(labels::SCENARIO_UID).cloned().unwrap_or_default(),
            authorization: l.get(labels::AUTHORIZATION).cloned(),
        }
    }
}

/// The ledger record of a session, keyed by its audit ID so that the
/// API server's retries and later stages add nothing.
pub fn draft(s: &Session, owner: &Owner) -> Draft {
    let reason = match s.code {
        Some(c) if !s.admitted() => Some(format!(
            "the API server answered {c}: the session did not open"
        )),
        None => Some("the API server gave no response code".into()),
        _ => None,
    };
    Draft {
        actor: s.user.username.clone(),
        kind: "Scenario".into(),
        name: s.scenario().into(),
        uid: owner.uid.clone(),
        generation: None,
        authorization: owner.authorization.clone(),
        action: Action::SessionOpened,
        reason,
        before: None,
        after: Some(json!({
            "user": s.user.username,
            "groups": s.user.groups,
            "impersonatedBy": s.impersonated_by,
            "namespace": s.namespace,
            "pod": s.pod,
            "subresource": s.subresource,
            "code": s.code,
            "requestReceived": s.time,
            "auditId": s.audit_id,
        })),
        key: format!("{KEY_PREFIX}{}", s.audit_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the events a v1.37 API server posts for
    /// `kubectl exec --as alice` by an admin (websocket: verb get).
    const EXEC_AS_ALICE: &str = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[
      {"level":"Metadata","auditID":"6b1e5c1d-0f4b-4c79-9a3e-2c7d0c3b9f10","stage":"RequestReceived",
       "requestURI":"/api/v1/namespaces/cr-census/pods/notebook-0/exec?command=cat&command=%2Fdata%2Fx&container=workspace&stdout=true",
       "verb":"get","user":{"username":"admin","groups":["system:masters","system:authenticated"]},
       "sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.37.2",
       "objectRef":{"resource":"pods","namespace":"cr-census","name":"notebook-0","apiVersion":"v1","subresource":"exec"},
       "requestReceivedTimestamp":"2026-03-01T08:00:00.123456Z","stageTimestamp":"2026-03-01T08:00:00.123456Z"},
      {"level":"Metadata","auditID":"6b1e5c1d-0f4b-4c79-9a3e-2c7d0c3b9f10","stage":"ResponseStarted",
       "requestURI":"/api/v1/namespaces/cr-census/pods/notebook-0/exec?command=cat&command=%2Fdata%2Fx&container=workspace&stdout=true",
       "verb":"get","user":{"username":"admin","groups":["system:masters","system:authenticated"]},
       "impersonatedUser":{"username":"alice","groups":["analysts","system:authenticated"]},
       "sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.37.2",
       "objectRef":{"resource":"pods","namespace":"cr-census","name":"notebook-0","apiVersion":"v1","subresource":"exec"},
       "responseStatus":{"metadata":{},"code":101},
       "requestReceivedTimestamp":"2026-03-01T08:00:00.123456Z","stageTimestamp":"2026-03-01T08:00:00.200000Z",
       "annotations":{"authorization.k8s.io/decision":"allow"}},
      {"level":"Metadata","auditID":"6b1e5c1d-0f4b-4c79-9a3e-2c7d0c3b9f10","stage":"ResponseComplete",
       "verb":"get","user":{"username":"admin","groups":["system:masters","system:authenticated"]},
       "impersonatedUser":{"username":"alice","groups":["analysts","system:authenticated"]},
       "objectRef":{"resource":"pods","namespace":"cr-census","name":"notebook-0","apiVersion":"v1","subresource":"exec"},
       "responseStatus":{"metadata":{},"code":101},
       "requestReceivedTimestamp":"2026-03-01T08:00:00.123456Z","stageTimestamp":"2026-03-01T08:05:00.000000Z"}
    ]}"#;

    fn event(stage: &str, ns: &str, sub: &str, verb: &str, id: &str) -> Event {
        Event {
            audit_id: id.into(),
            stage: stage.into(),
            verb: verb.into(),
            user: UserInfo {
                username: "bob".into(),
                groups: vec!["g".into()],
            },
            impersonated_user: None,
            object_ref: Some(ObjectRef {
                resource: "pods".into(),
                namespace: ns.into(),
                name: "p".into(),
                subresource: sub.into(),
            }),
            response_status: Some(Status { code: Some(403) }),
            request_received_timestamp: Some("2026-03-01T08:00:00Z".into()),
        }
    }

    fn list(items: Vec<Event>) -> EventList {
        EventList {
            api_version: "audit.k8s.io/v1".into(),
            kind: "EventList".into(),
            items,
        }
    }

    #[test]
    fn an_exec_as_a_member_is_one_session_of_that_member_without_its_command() {
        let found = sessions(&parse(EXEC_AS_ALICE.as_bytes()).expect("parses"));
        assert_eq!(found.len(), 1, "three stages of one request: {found:?}");
        let s = &found[0];
        assert_eq!(s.user.username, "alice");
        assert_eq!(s.user.groups, ["analysts", "system:authenticated"]);
        assert_eq!(s.impersonated_by.as_deref(), Some("admin"));
        assert_eq!(
            (s.pod.as_str(), s.subresource.as_str()),
            ("notebook-0", "exec")
        );
        assert_eq!(s.code, Some(101));
        assert!(s.admitted());
        assert_eq!(s.scenario(), "census");

        let owner = Owner {
            uid: "u-1".into(),
            authorization: Some("acme".into()),
        };
        let d = draft(s, &owner);
        assert_eq!(d.action, Action::SessionOpened);
        assert_eq!((d.kind.as_str(), d.name.as_str()), ("Scenario", "census"));
        assert_eq!(d.actor, "alice");
        assert_eq!(d.key, "session/6b1e5c1d-0f4b-4c79-9a3e-2c7d0c3b9f10");
        assert_eq!(d.authorization.as_deref(), Some("acme"));
        assert_eq!(d.reason, None);
        let after = serde_json::to_string(&d.after).expect("json");
        assert!(after.contains(r#""impersonatedBy":"admin""#), "{after}");
        assert!(
            after.contains(r#""requestReceived":"2026-03-01T08:00:00.123456Z""#),
            "{after}"
        );
        for leak in ["command", "/data", "%2Fdata", "requestURI"] {
            assert!(!after.contains(leak), "{leak} in {after}");
        }
    }

    #[test]
    fn only_entering_a_workspace_pod_after_the_response_began_counts() {
        let id = |i: usize| format!("id-{i}");
        let cases = [
            (
                event("ResponseComplete", "cr-x", "exec", "create", &id(0)),
                true,
            ),
            (
                event("ResponseStarted", "cr-x", "attach", "get", &id(1)),
                true,
            ),
            (
                event("ResponseComplete", "cr-x", "portforward", "get", &id(2)),
                true,
            ),
            (
                event(
                    "ResponseComplete",
                    "cr-x",
                    "ephemeralcontainers",
                    "patch",
                    &id(3),
                ),
                true,
            ),
            (
                event(
                    "ResponseComplete",
                    "cr-x",
                    "ephemeralcontainers",
                    "update",
                    &id(4),
                ),
                true,
            ),
            // Reading a pod's debug containers enters nothing.
            (
                event(
                    "ResponseComplete",
                    "cr-x",
                    "ephemeralcontainers",
                    "get",
                    &id(5),
                ),
                false,
            ),
            // Before impersonation and authorization are known.
            (
                event("RequestReceived", "cr-x", "exec", "create", &id(6)),
                false,
            ),
            (event("Panic", "cr-x", "exec", "create", &id(7)), false),
            // Not a workspace.
            (
                event("ResponseComplete", "kube-system", "exec", "create", &id(8)),
                false,
            ),
            (
                event("ResponseComplete", "cr-", "exec", "create", &id(9)),
                false,
            ),
            (
                event("ResponseComplete", "xcr-y", "exec", "create", &id(10)),
                false,
            ),
            // Not a way in.
            (
                event("ResponseComplete", "cr-x", "log", "get", &id(11)),
                false,
            ),
            (event("ResponseComplete", "cr-x", "", "get", &id(12)), false),
            (
                event("ResponseComplete", "cr-x", "exec", "create", ""),
                false,
            ),
        ];
        for (e, want) in cases {
            let got = sessions(&list(vec![e.clone()]));
            assert_eq!(got.len(), usize::from(want), "{e:?}");
        }
        let mut svc = event("ResponseComplete", "cr-x", "proxy", "get", "s");
        svc.object_ref.as_mut().expect("ref").resource = "services".into();
        assert!(sessions(&list(vec![svc])).is_empty());
    }

    #[test]
    fn a_refused_attempt_is_recorded_with_its_code_and_says_it_did_not_open() {
        let found = sessions(&list(vec![event(
            "ResponseComplete",
            "cr-x",
            "exec",
            "create",
            "id",
        )]));
        let d = draft(&found[0], &Owner::default());
        assert_eq!(d.actor, "bob", "no impersonation: the authenticated user");
        assert_eq!(
            d.uid, "",
            "a namespace the operator did not make names no uid"
        );
        assert!(
            d.reason.as_deref().is_some_and(|r| r.contains("403")),
            "{d:?}"
        );
        assert_eq!(
            d.after.as_ref().and_then(|a| a.get("code")),
            Some(&json!(403))
        );
    }

    #[test]
    fn retries_and_later_stages_of_one_request_are_one_session() {
        let a = event("ResponseStarted", "cr-x", "exec", "get", "same");
        let mut b = event("ResponseComplete", "cr-x", "exec", "get", "same");
        b.response_status = Some(Status { code: Some(500) });
        let c = event("ResponseComplete", "cr-x", "exec", "get", "other");
        let found = sessions(&list(vec![a.clone(), b, a, c]));
        let ids: Vec<_> = found.iter().map(|s| s.audit_id.as_str()).collect();
        assert_eq!(ids, ["same", "other"]);
        assert_eq!(found[0].code, Some(403), "the first stage seen is kept");
        // The same request in another batch gets the same key.
        let k1 = draft(&found[0], &Owner::default()).key;
        let again = sessions(&list(vec![event(
            "ResponseComplete",
            "cr-x",
            "exec",
            "get",
            "same",
        )]));
        assert_eq!(draft(&again[0], &Owner::default()).key, k1);
    }

    #[test]
    fn a_body_that_is_not_an_audit_event_list_is_refused() {
        assert!(matches!(parse(b"not json"), Err(ParseError::Json(_))));
        assert!(matches!(
            parse(br#"{"kind":"PodList","apiVersion":"v1","items":[]}"#),
            Err(ParseError::Kind { .. })
        ));
        assert!(parse(br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}"#).is_ok());
    }

    #[test]
    fn only_a_namespace_the_operator_made_names_its_scenario() {
        let mut l = BTreeMap::new();
        l.insert(labels::SCENARIO_UID.to_string(), "u-9".to_string());
        l.insert(labels::AUTHORIZATION.to_string(), "acme".to_string());
        assert_eq!(Owner::from_labels(&l), Owner::default(), "forged labels");
        l.insert(labels::MANAGED_BY.to_string(), labels::MANAGER.to_string());
        assert_eq!(
            Owner::from_labels(&l),
            Owner {
                uid: "u-9".into(),
                authorization: Some("acme".into())
            }
        );
    }
}
