//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several
//! replicas only one reconciles and writes.
//!
//! A candidate takes the lease when it is free (no holder) or expired
//! (`renewTime + leaseDurationSeconds` has passed), by create or replace with
//! the `resourceVersion` it read: the API server lets exactly one of several
//! racing candidates win (optimistic concurrency). The holder renews every
//! [`Timing::renew_every`]; when a renewal is refused because someone else
//! holds the lease, or when renewals fail for so long that the lease may have
//! expired, [`Elector::hold`] returns and the caller must stop reconciling at
//! once (`cleanroom run` exits: its Deployment restarts it as a standby). On
//! shutdown the holder releases the lease so that a standby takes over at once.
//!
//! Why not a crate: `kube-lease-manager` 0.13 builds against kube 5, but its
//! watch loop logs and retries API errors without reporting that the lease
//! may have run out meanwhile; this operator must stop writing before another
//! replica can start, so the decisions are here, pure and tested.

use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::workspace::labels;

/// Lease timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a renewal holds the lease (`leaseDurationSeconds`).
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How often a standby looks at the lease.
    pub retry_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
        }
    }
}

/// Which lease, and who we are.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Name of the Lease.
    pub name: String,
    /// Namespace of the Lease (must exist).
    pub namespace: String,
    /// This process's identity (`holderIdentity`).
    pub identity: String,
    /// Lease timing.
    pub timing: Timing,
}

/// The default identity: host name and process id, unique per replica and restart.
pub fn default_identity() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "cleanroom".to_string());
    format!("{host}_{}", std::process::id())
}

/// When the lease, as last renewed, runs out; `None` if nobody holds it.
pub fn expires_at(spec: &LeaseSpec) -> Option<Timestamp> {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return None;
    }
    let since = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0)?;
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    since.checked_add(SignedDuration::from_secs(seconds)).ok()
}

/// What a candidate does with the lease it just read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease object yet: create it, holding it.
    Create,
    /// We hold it (or held it, as this identity): renew it.
    Renew,
    /// Free or expired: take it (`transitions`: the new `leaseTransitions`).
    Take {
        /// The new value of `leaseTransitions`.
        transitions: i32,
    },
    /// Someone else holds it: look again after this long.
    Wait(Duration),
}

/// The pure decision of a candidate `me` at `now`, given the lease it read.
pub fn step(lease: Option<&LeaseSpec>, me: &str, now: Timestamp, timing: Timing) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    if spec.holder_identity.as_deref() == Some(me) {
        return Step::Renew;
    }
    let transitions = spec.lease_transitions.unwrap_or(0).saturating_add(1);
    match expires_at(spec) {
        Some(end) if end > now => {
            let left = Duration::try_from(end.duration_since(now)).unwrap_or_default();
            // Look again when it would expire, but no later than the retry period.
            Step::Wait(left.min(timing.retry_every).max(Duration::from_millis(100)))
        }
        _ => Step::Take { transitions },
    }
}

/// The spec with which `me` holds the lease at `now`.
fn held_spec(
    base: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    step: &Step,
    timing: Timing,
) -> LeaseSpec {
    let mut spec = base.cloned().unwrap_or_default();
    let seconds = i32::try_from(timing.duration.as_secs()).unwrap_or(i32::MAX);
    spec.holder_identity = Some(me.to_string());
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(MicroTime(now));
    match step {
        Step::Create => {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(0);
        }
        Step::Take { transitions } => {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(*transitions);
        }
        Step::Renew | Step::Wait(_) => {}
    }
    spec
}

/// Whether a holder whose last successful renewal started at `renewed` must
/// consider the lease lost at `now`: another candidate may take it at
/// `renewed + duration` by its own clock, so stop one renewal period before.
pub fn must_give_up(renewed: Instant, now: Instant, timing: Timing) -> bool {
    let margin = timing.renew_every.min(timing.duration / 2);
    now >= renewed + timing.duration.saturating_sub(margin)
}

/// Takes part in the election for one Lease.
pub struct Elector {
    api: Api<Lease>,
    settings: Settings,
}

/// Why [`Elector::hold`] returned: the lease is no longer ours.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    /// Another candidate holds the lease.
    #[error("the lease is now held by {0:?}")]
    TakenBy(String),
    /// Renewals failed until the lease may have expired.
    #[error("could not renew the lease before it could expire: {0}")]
    RenewFailed(String),
}

impl Elector {
    /// An elector for `settings`; fails with a clear message when the lease
    /// namespace does not exist (it is not created here).
    pub async fn new(client: Client, settings: Settings) -> anyhow::Result<Elector> {
        let ns = &settings.namespace;
        let found = Api::<Namespace>::all(client.clone())
            .get_opt(ns)
            .await
            .with_context(|| format!("reading the lease namespace {ns}"))?;
        if found.is_none() {
            bail!(
                "the lease namespace {ns:?} does not exist: create it (kubectl create namespace {ns}) \
                 or choose another with --lease-namespace / POD_NAMESPACE"
            );
        }
        Ok(Elector {
            api: Api::namespaced(client, ns),
            settings,
        })
    }

    fn identity(&self) -> &str {
        &self.settings.identity
    }

    /// One attempt: read the lease and take or renew it if we may. Returns
    /// `Ok(None)` when we hold it now, `Ok(Some(wait))` when someone else does.
    async fn attempt(&self) -> Result<Option<Duration>, kube::Error> {
        let Settings {
            name,
            identity,
            timing,
            ..
        } = &self.settings;
        let current = self.api.get_opt(name).await?;
        let now = Timestamp::now();
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let step = step(spec, identity, now, *timing);
        let wanted = held_spec(spec, identity, now, &step, *timing);
        match (&step, current) {
            (Step::Wait(wait), _) => Ok(Some(*wait)),
            (Step::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(
                            [(labels::MANAGED_BY.to_string(), labels::MANAGER.to_string())].into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    spec: Some(wanted),
                };
                self.api.create(&PostParams::default(), &lease).await?;
                Ok(None)
            }
            (_, Some(mut lease)) => {
                // Replace carries the resourceVersion we read: if anyone wrote
                // in between, the API server answers 409 and nobody is harmed.
                lease.spec = Some(wanted);
                self.api
                    .replace(name, &PostParams::default(), &lease)
                    .await?;
                Ok(None)
            }
            (_, None) => Ok(Some(timing.retry_every)),
        }
    }

    /// Waits until this process holds the lease. Errors (conflicts with a
    /// racing candidate, the API server unavailable) are retried.
    pub async fn acquire(&self) {
        let mut waiting_for = None::<String>;
        loop {
            let wait = match self.attempt().await {
                Ok(None) => {
                    info!(identity = self.identity(), lease = %self.settings.name, "acquired the leader lease");
                    return;
                }
                Ok(Some(wait)) => {
                    if let Ok(Some(l)) = self.api.get_opt(&self.settings.name).await {
                        let holder = l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
                        if waiting_for.as_deref() != Some(&holder) {
                            info!(identity = self.identity(), %holder, "standing by: another replica holds the leader lease");
                            waiting_for = Some(holder);
                        }
                    }
                    wait
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Duration::from_millis(200),
                Err(e) => {
                    warn!(error = %e, "leader election: reading or taking the lease");
                    self.settings.timing.retry_every
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Renews the lease until it is lost; returns why. Never returns while
    /// the lease is safely ours.
    pub async fn hold(&self) -> Lost {
        let timing = self.settings.timing;
        let mut renewed = Instant::now();
        let mut failing = false;
        loop {
            // Renew every `renew_every`; after a failure, retry each second.
            let wait = if failing {
                Duration::from_secs(1)
            } else {
                timing.renew_every
            };
            tokio::time::sleep(wait).await;
            let attempt_started = Instant::now();
            match self.attempt().await {
                Ok(None) => {
                    renewed = attempt_started;
                    failing = false;
                }
                Ok(Some(_)) => {
                    let holder = self
                        .api
                        .get_opt(&self.settings.name)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|l| l.spec)
                        .and_then(|s| s.holder_identity)
                        .unwrap_or_default();
                    return Lost::TakenBy(holder);
                }
                Err(e) => {
                    failing = true;
                    warn!(error = %e, "renewing the leader lease failed; retrying");
                    if must_give_up(renewed, Instant::now(), timing) {
                        return Lost::RenewFailed(e.to_string());
                    }
                }
            }
            if must_give_up(renewed, Instant::now(), timing) {
                return Lost::RenewFailed("renewals took too long".into());
            }
        }
    }

    /// Gives the lease up (if we hold it) so that a standby takes over at once.
    pub async fn release(&self) -> anyhow::Result<()> {
        let name = &self.settings.name;
        let Some(mut lease) = self.api.get_opt(name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(name, &PostParams::default(), &lease)
            .await
            .with_context(|| format!("releasing lease {}", lease.name_any()))?;
        info!(identity = self.identity(), "released the leader lease");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn held_by(who: &str, renewed: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            renew_time: Some(MicroTime(at(renewed))),
            acquire_time: Some(MicroTime(at("2026-01-01T00:00:00Z"))),
            lease_duration_seconds: Some(seconds),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_expires_duration_after_its_last_renewal() {
        let spec = held_by("a", "2026-01-01T00:00:10Z", 15);
        assert_eq!(expires_at(&spec), Some(at("2026-01-01T00:00:25Z")));
        let free = LeaseSpec {
            holder_identity: Some(String::new()),
            ..spec.clone()
        };
        assert_eq!(expires_at(&free), None);
        let never_renewed = LeaseSpec {
            renew_time: None,
            ..spec
        };
        assert_eq!(expires_at(&never_renewed), Some(at("2026-01-01T00:00:15Z")));
    }

    #[test]
    fn a_candidate_creates_takes_renews_or_waits() {
        let t = Timing::default();
        let now = at("2026-01-01T00:00:20Z");
        assert_eq!(step(None, "b", now, t), Step::Create);
        let spec = held_by("a", "2026-01-01T00:00:10Z", 15);
        // Held by someone else, 5 s left: wait (no longer than the retry period).
        assert_eq!(step(Some(&spec), "b", now, t), Step::Wait(t.retry_every));
        assert_eq!(step(Some(&spec), "a", now, t), Step::Renew);
        // Expired exactly at renewTime + duration: take it, one more transition.
        let later = at("2026-01-01T00:00:25Z");
        assert_eq!(
            step(Some(&spec), "b", later, t),
            Step::Take { transitions: 4 }
        );
        // Released (no holder): take it at once.
        let released = LeaseSpec {
            holder_identity: None,
            ..spec.clone()
        };
        assert_eq!(
            step(Some(&released), "b", now, t),
            Step::Take { transitions: 4 }
        );
        // Less than the retry period left: look again right when it expires.
        let soon = at("2026-01-01T00:00:24.5Z");
        assert_eq!(
            step(Some(&spec), "b", soon, t),
            Step::Wait(Duration::from_millis(500))
        );
    }

    #[test]
    fn taking_a_lease_records_holder_duration_and_transition() {
        let t = Timing::default();
        let now = at("2026-01-01T00:01:00Z");
        let old = held_by("a", "2026-01-01T00:00:10Z", 15);
        let taken = held_spec(Some(&old), "b", now, &Step::Take { transitions: 4 }, t);
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_duration_seconds, Some(15));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
        assert_eq!(taken.renew_time, Some(MicroTime(now)));
        let renewed = held_spec(Some(&old), "a", now, &Step::Renew, t);
        assert_eq!(
            renewed.acquire_time, old.acquire_time,
            "a renewal keeps acquireTime"
        );
        assert_eq!(renewed.lease_transitions, Some(3));
    }

    #[test]
    fn a_holder_gives_up_one_renewal_period_before_others_may_take_over() {
        let t = Timing::default();
        let renewed = Instant::now();
        assert!(!must_give_up(renewed, renewed + Duration::from_secs(5), t));
        assert!(!must_give_up(
            renewed,
            renewed + Duration::from_millis(9_999),
            t
        ));
        assert!(must_give_up(renewed, renewed + Duration::from_secs(10), t));
        assert!(must_give_up(renewed, renewed + Duration::from_secs(15), t));
    }
}
