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
//! once (`cleanroom run` exits: its Deployment restarts it as a standby). Each
//! renewal attempt is bounded by the time left until the holder must give up
//! ([`attempt_timeout`]), so an API server that hangs cannot keep the holder
//! writing past its lease while a standby takes it. On shutdown the holder
//! releases the lease so that a standby takes over at once.
//!
//! Why not a crate: `kube-lease-manager` 0.13 builds against kube 5, but its
//! watch loop logs and retries API errors without reporting that the lease
//! may have run out meanwhile; this operator must stop writing before another
//! replica can start, so the decisions are here, pure and tested.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
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

/// When a holder whose last successful renewal started at `renewed` must
/// consider the lease lost: another candidate may take it at
/// `renewed + duration` by its own clock, so stop one renewal period (at most
/// half the duration) before.
pub fn give_up_at(renewed: Instant, timing: Timing) -> Instant {
    let margin = timing.renew_every.min(timing.duration / 2);
    renewed + timing.duration.saturating_sub(margin)
}

/// Whether a holder whose last successful renewal started at `renewed` must
/// consider the lease lost at `now` (see [`give_up_at`]).
pub fn must_give_up(renewed: Instant, now: Instant, timing: Timing) -> bool {
    now >= give_up_at(renewed, timing)
}

/// How long a renewal attempt starting at `now` may take: the time left
/// until the holder must give up, never more, so that an attempt still
/// running then is abandoned and the holder stops in time. `None` when no
/// time is left: give up without trying.
pub fn attempt_timeout(renewed: Instant, now: Instant, timing: Timing) -> Option<Duration> {
    give_up_at(renewed, timing)
        .checked_duration_since(now)
        .filter(|left| !left.is_zero())
}

/// When the holder renews next after a renewal that started at `renewed`:
/// `renew_every` later, but no later than halfway to [`give_up_at`], so that
/// a renewal is tried, with time left, however the timing is set.
pub fn next_renewal(renewed: Instant, timing: Timing) -> Instant {
    let span = give_up_at(renewed, timing).saturating_duration_since(renewed);
    renewed + timing.renew_every.min(span / 2)
}

/// What one attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease now (created, taken or renewed).
    Held,
    /// Someone else holds it: look again after `wait`.
    Other {
        /// Its `holderIdentity`.
        holder: String,
        /// When to look again.
        wait: Duration,
    },
}

/// The renewal loop of [`Elector::hold`], over any `attempt` (tests give it
/// one that never finishes), for a lease last taken or renewed by an attempt
/// that started at `renewed`. Returns as soon as the lease is another's, or
/// when the time to give up has come: a renewal still running then is
/// abandoned (`tokio::time::timeout` drops it), and a failed one is retried
/// each second until then.
pub async fn hold_with<A, F, E>(timing: Timing, mut renewed: Instant, mut attempt: A) -> Lost
where
    A: FnMut() -> F,
    F: Future<Output = Result<Attempt, E>>,
    E: Display,
{
    let mut failure: Option<String> = None;
    loop {
        let next = match failure {
            Some(_) => Instant::now() + Duration::from_secs(1),
            None => next_renewal(renewed, timing),
        };
        tokio::time::sleep_until(next.min(give_up_at(renewed, timing))).await;
        let started = Instant::now();
        let Some(limit) = attempt_timeout(renewed, started, timing) else {
            return Lost::RenewFailed(failure.unwrap_or_else(|| "renewals took too long".into()));
        };
        match tokio::time::timeout(limit, attempt()).await {
            Ok(Ok(Attempt::Held)) => {
                renewed = started;
                failure = None;
            }
            Ok(Ok(Attempt::Other { holder, .. })) => return Lost::TakenBy(holder),
            Ok(Err(e)) => {
                warn!(error = %e, "renewing the leader lease failed; retrying");
                failure = Some(e.to_string());
            }
            Err(_) => {
                return Lost::RenewFailed(format!(
                    "a renewal did not finish within {limit:?}, the time left before the lease could expire"
                ));
            }
        }
    }
}

/// Takes part in the election for one Lease.
pub struct Elector {
    api: Api<Lease>,
    settings: Settings,
    /// When the attempt that acquired the lease started: the lease's
    /// `renewTime` is no earlier, so [`Elector::hold`] counts from there.
    acquired: Mutex<Option<Instant>>,
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
            acquired: Mutex::new(None),
        })
    }

    fn identity(&self) -> &str {
        &self.settings.identity
    }

    /// One attempt: read the lease and take or renew it if we may.
    async fn attempt(&self) -> Result<Attempt, kube::Error> {
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
        let holder = spec
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        match (&step, current) {
            (Step::Wait(wait), _) => Ok(Attempt::Other {
                holder,
                wait: *wait,
            }),
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
                Ok(Attempt::Held)
            }
            (_, Some(mut lease)) => {
                // Replace carries the resourceVersion we read: if anyone wrote
                // in between, the API server answers 409 and nobody is harmed.
                lease.spec = Some(wanted);
                self.api
                    .replace(name, &PostParams::default(), &lease)
                    .await?;
                Ok(Attempt::Held)
            }
            (_, None) => Ok(Attempt::Other {
                holder: String::new(),
                wait: timing.retry_every,
            }),
        }
    }

    /// Waits until this process holds the lease. Errors (conflicts with a
    /// racing candidate, the API server unavailable) are retried.
    pub async fn acquire(&self) {
        let mut waiting_for = None::<String>;
        loop {
            let started = Instant::now();
            let wait = match self.attempt().await {
                Ok(Attempt::Held) => {
                    *self.acquired.lock().unwrap_or_else(PoisonError::into_inner) = Some(started);
                    info!(identity = self.identity(), lease = %self.settings.name, "acquired the leader lease");
                    return;
                }
                Ok(Attempt::Other { holder, wait }) => {
                    if waiting_for.as_deref() != Some(&holder) {
                        info!(identity = self.identity(), %holder, "standing by: another replica holds the leader lease");
                        waiting_for = Some(holder);
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

    /// Renews the lease until it is lost; returns why, at the latest when
    /// [`must_give_up`] says so, however long the API server takes to answer
    /// (see [`hold_with`]). Never returns while the lease is safely ours.
    pub async fn hold(&self) -> Lost {
        // Counted from when the acquiring attempt started, not from now: if
        // that attempt was slow, part of the lease is already gone.
        let renewed = self
            .acquired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(Instant::now);
        hold_with(self.settings.timing, renewed, || self.attempt()).await
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

    #[test]
    fn an_attempt_may_take_only_the_time_left_before_giving_up() {
        let t = Timing::default();
        let renewed = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(give_up_at(renewed, t), renewed + s(10));
        // On schedule, 5 s after the last renewal: 5 s left.
        assert_eq!(attempt_timeout(renewed, renewed + s(5), t), Some(s(5)));
        assert_eq!(
            attempt_timeout(renewed, renewed + Duration::from_millis(9_999), t),
            Some(Duration::from_millis(1))
        );
        // Nothing left: give up without trying.
        assert_eq!(attempt_timeout(renewed, renewed + s(10), t), None);
        assert_eq!(attempt_timeout(renewed, renewed + s(20), t), None);
        // Whenever an attempt starts, cut off at its timeout it ends by the
        // time to give up, before the lease can expire for anyone else, and
        // there is a timeout exactly when the holder need not give up yet.
        for ms in (0..=16_000).step_by(250) {
            let now = renewed + Duration::from_millis(ms);
            match attempt_timeout(renewed, now, t) {
                Some(limit) => {
                    assert!(!must_give_up(renewed, now, t), "{ms} ms");
                    assert!(now + limit <= give_up_at(renewed, t), "{ms} ms");
                    assert!(now + limit < renewed + t.duration, "{ms} ms");
                }
                None => assert!(must_give_up(renewed, now, t), "{ms} ms"),
            }
        }
    }

    #[test]
    fn a_renewal_that_would_end_after_the_lease_could_expire_is_cut_off_in_time() {
        let t = Timing::default();
        let renewed = Instant::now();
        // A retry 8 s after the last renewal, on an API server answering in
        // 9 s: it would end at 17 s, after the lease expires (15 s). It is
        // given 2 s: cut off at 10 s, 5 s before another replica may take over.
        let start = renewed + Duration::from_secs(8);
        let limit = attempt_timeout(renewed, start, t).expect("time left");
        assert_eq!(limit, Duration::from_secs(2));
        assert!(start + Duration::from_secs(9) > renewed + t.duration);
        assert_eq!(start + limit, renewed + Duration::from_secs(10));
    }

    #[test]
    fn renewals_come_every_period_and_always_with_time_left() {
        let renewed = Instant::now();
        let t = Timing::default();
        assert_eq!(next_renewal(renewed, t), renewed + t.renew_every);
        // A renewal period too long for the lease: renew halfway to giving up.
        let slow = Timing {
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(12),
            retry_every: Duration::from_secs(2),
        };
        assert_eq!(
            give_up_at(renewed, slow),
            renewed + Duration::from_millis(7_500)
        );
        assert_eq!(
            next_renewal(renewed, slow),
            renewed + Duration::from_millis(3_750)
        );
        assert!(attempt_timeout(renewed, next_renewal(renewed, slow), slow).is_some());
    }

    /// A lease of 3 s renewed every second: give up 2 s after a renewal.
    fn short() -> Timing {
        Timing {
            duration: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
            retry_every: Duration::from_millis(200),
        }
    }

    /// Runs `hold_with`, failing (instead of hanging) if it does not return
    /// within twice the lease duration; returns why and how long after
    /// `renewed` it returned.
    async fn hold_timed<A, F, E>(timing: Timing, renewed: Instant, attempt: A) -> (Lost, Duration)
    where
        A: FnMut() -> F,
        F: Future<Output = Result<Attempt, E>>,
        E: Display,
    {
        let lost = tokio::time::timeout(timing.duration * 2, hold_with(timing, renewed, attempt))
            .await
            .expect("hold returned");
        (lost, renewed.elapsed())
    }

    #[tokio::test]
    async fn a_hanging_renewal_makes_hold_give_up_before_the_lease_expires() {
        let t = short();
        let renewed = Instant::now();
        let (lost, took) = hold_timed(t, renewed, || {
            std::future::pending::<Result<Attempt, kube::Error>>()
        })
        .await;
        assert!(matches!(lost, Lost::RenewFailed(_)), "{lost:?}");
        // Not before the time to give up (2 s), and before the lease could
        // expire for anyone else (3 s).
        assert!(took >= Duration::from_secs(2), "{took:?}");
        assert!(took < t.duration, "{took:?}");
    }

    #[tokio::test]
    async fn a_renewal_slower_than_the_time_left_is_abandoned() {
        let t = short();
        let renewed = Instant::now();
        let mut calls = 0;
        let (lost, took) = hold_timed(t, renewed, || {
            calls += 1;
            // Two quick renewals, then one that would take 10 s.
            let delay = if calls <= 2 {
                Duration::from_millis(10)
            } else {
                Duration::from_secs(10)
            };
            async move {
                tokio::time::sleep(delay).await;
                Ok::<_, String>(Attempt::Held)
            }
        })
        .await;
        assert!(matches!(lost, Lost::RenewFailed(_)), "{lost:?}");
        assert_eq!(calls, 3);
        // The second renewal started at about 2 s: given up at about 4 s,
        // before its lease (from 2 s, for 3 s) could expire at 5 s.
        assert!(took >= Duration::from_secs(4), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test]
    async fn failing_renewals_give_up_in_time_with_the_last_error() {
        let t = short();
        let renewed = Instant::now();
        let mut calls = 0;
        let (lost, took) = hold_timed(t, renewed, || {
            calls += 1;
            std::future::ready(Err::<Attempt, _>(format!("refused #{calls}")))
        })
        .await;
        // First attempt at 1 s, a retry at 2 s would have no time left.
        match lost {
            Lost::RenewFailed(why) => assert_eq!(why, "refused #1"),
            other => panic!("{other:?}"),
        }
        assert!(took >= Duration::from_secs(2), "{took:?}");
        assert!(took < t.duration, "{took:?}");
    }

    #[tokio::test]
    async fn hold_counts_from_the_acquisition_not_from_its_own_start() {
        // The lease was taken 1.8 s ago (a slow acquisition): 0.2 s are left.
        let t = short();
        let renewed = Instant::now() - Duration::from_millis(1_800);
        let (lost, took) = hold_timed(t, renewed, || {
            std::future::pending::<Result<Attempt, String>>()
        })
        .await;
        assert!(matches!(lost, Lost::RenewFailed(_)), "{lost:?}");
        assert!(took >= Duration::from_secs(2), "{took:?}");
        assert!(took < Duration::from_millis(2_800), "{took:?}");
    }

    #[tokio::test]
    async fn hold_keeps_renewing_until_another_holds_the_lease() {
        let t = Timing {
            duration: Duration::from_secs(1),
            renew_every: Duration::from_millis(100),
            retry_every: Duration::from_millis(50),
        };
        let mut calls = 0;
        let (lost, took) = hold_timed(t, Instant::now(), || {
            calls += 1;
            let answer = if calls < 6 {
                Attempt::Held
            } else {
                Attempt::Other {
                    holder: "replica-b".into(),
                    wait: t.retry_every,
                }
            };
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, String>(answer)
            }
        })
        .await;
        match lost {
            Lost::TakenBy(holder) => assert_eq!(holder, "replica-b"),
            other => panic!("{other:?}"),
        }
        // Five renewals held it; the sixth found another holder.
        assert_eq!(calls, 6);
        assert!(took >= Duration::from_millis(600), "{took:?}");
    }
}
