//! The operator's Prometheus metrics (served on `/metrics` by [`crate::http`]).
//!
//! Counters and the duration histogram are updated by the reconcilers; the
//! gauges that describe the cluster (scenarios by phase, seconds to each
//! authorization's expiry) are computed at scrape time from the controllers'
//! caches, so they are never stale and a deleted object disappears at once.
//! A standby (leader election) has no caches: those two families are empty
//! there, and `cleanroom_leader` is 0.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::{Authorization, Scenario, ScenarioPhase};
use crate::requests::RequestMetrics;

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every phase a scenario can be in, so that `cleanroom_scenarios` reports
/// zeros too (a missing series cannot be told apart from a missing scrape).
const PHASES: [ScenarioPhase; 8] = [
    ScenarioPhase::Pending,
    ScenarioPhase::Provisioning,
    ScenarioPhase::PreparingData,
    ScenarioPhase::Ready,
    ScenarioPhase::Suspended,
    ScenarioPhase::TearingDown,
    ScenarioPhase::Closed,
    ScenarioPhase::Rejected,
];

/// Which controller reconciled.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Kind {
    /// The Scenario controller.
    Scenario,
    /// The Authorization controller.
    Authorization,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Scenario => "scenario",
            Kind::Authorization => "authorization",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthorizationLabels {
    authorization: String,
}

/// The caches the cluster gauges are computed from (set once the controllers run).
struct Caches {
    scenarios: Store<Scenario>,
    authorizations: Store<Authorization>,
}

/// The metrics registry and handles to every metric in it. Cheap to share:
/// every handle is an `Arc` inside.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    scenarios: Family<PhaseLabels, Gauge>,
    expiry: Family<AuthorizationLabels, Gauge<f64, AtomicU64>>,
    wipes: Counter,
    wiped_bytes: Counter,
    wipe_failures: Counter,
    isolation_breaches: Counter,
    leader: Gauge,
    api_requests: RequestMetrics,
    audit_records: Counter,
    audit_intact: Gauge,
    audit_verified_at: Gauge<f64, AtomicU64>,
    caches: OnceLock<Caches>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every `cleanroom_*` family registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<KindLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        // 10 ms .. ~20 s: a reconcile is a handful of API calls, a slow one waits on a write.
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 12))
        });
        let scenarios = Family::<PhaseLabels, Gauge>::default();
        let expiry = Family::<AuthorizationLabels, Gauge<f64, AtomicU64>>::default();
        let wipes = Counter::default();
        let wiped_bytes = Counter::default();
        let wipe_failures = Counter::default();
        let isolation_breaches = Counter::default();
        let leader = Gauge::default();
        let api_requests = RequestMetrics::default();
        let audit_records = Counter::default();
        // -1 until the first verification.
        let audit_intact = Gauge::default();
        audit_intact.set(-1);
        let audit_verified_at = Gauge::<f64, AtomicU64>::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "cleanroom_reconciles",
            "Reconciles run, by controller",
            reconciles.clone(),
        );
        registry.register(
            "cleanroom_reconcile_failures",
            "Reconciles that failed, by controller and error category",
            failures.clone(),
        );
        registry.register(
            "cleanroom_reconcile_duration_seconds",
            "Time a reconcile took, by controller",
            duration.clone(),
        );
        registry.register(
            "cleanroom_scenarios",
            "Scenarios in the controller's cache, by phase (Unknown: no status yet)",
            scenarios.clone(),
        );
        registry.register(
            "cleanroom_authorization_expiry_seconds",
            "Seconds until each authorization's validUntil (negative once passed)",
            expiry.clone(),
        );
        registry.register(
            "cleanroom_wipes",
            "Wipe attestations recorded (one per volume wiped at teardown)",
            wipes.clone(),
        );
        registry.register(
            "cleanroom_wiped_bytes",
            "Bytes overwritten and verified by recorded wipes",
            wiped_bytes.clone(),
        );
        registry.register(
            "cleanroom_wipe_failures",
            "Wipes that failed (each is retried; the Scenario's Wiped condition says why)",
            wipe_failures.clone(),
        );
        registry.register(
            "cleanroom_isolation_breaches",
            "Objects the operator did not make, found in a workspace and removed",
            isolation_breaches.clone(),
        );
        registry.register(
            "cleanroom_leader",
            "1 if this process holds the leader lease (or runs without leader election)",
            leader.clone(),
        );
        registry.register(
            "cleanroom_api_requests",
            "Requests this process sent to the Kubernetes API server, by verb and resource (watches count once)",
            api_requests.count.clone(),
        );
        registry.register(
            "cleanroom_api_request_seconds",
            "Seconds spent waiting for the API server's answers, by verb and resource (watches not timed)",
            api_requests.seconds.clone(),
        );
        registry.register(
            "cleanroom_audit_records",
            "Audit records this process appended to the ledger",
            audit_records.clone(),
        );
        registry.register(
            "cleanroom_audit_chain_intact",
            "Result of the last verification of the audit chain: 1 intact, 0 broken, -1 not verified yet",
            audit_intact.clone(),
        );
        registry.register(
            "cleanroom_audit_last_verify_timestamp_seconds",
            "When the audit chain was last verified (Unix time; 0 never)",
            audit_verified_at.clone(),
        );
        // Zero series from the start: a rate over a counter that appears late misses its first count.
        for kind in [Kind::Scenario, Kind::Authorization] {
            let labels = KindLabels {
                kind: kind.as_str(),
            };
            let _ = reconciles.get_or_create(&labels);
            let _ = duration.get_or_create(&labels);
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            scenarios,
            expiry,
            wipes,
            wiped_bytes,
            wipe_failures,
            isolation_breaches,
            leader,
            api_requests,
            audit_records,
            audit_intact,
            audit_verified_at,
            caches: OnceLock::new(),
        }
    }

    /// The request families, for the client's request layer.
    pub fn api_requests(&self) -> RequestMetrics {
        self.api_requests.clone()
    }

    /// Counts and times one reconcile; `failure` is the error's category.
    pub fn reconciled(&self, kind: Kind, took: Duration, failure: Option<&'static str>) {
        let labels = KindLabels {
            kind: kind.as_str(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(category) = failure {
            self.failures
                .get_or_create(&FailureLabels {
                    kind: kind.as_str(),
                    category,
                })
                .inc();
        }
    }

    /// Counts a recorded wipe attestation of `bytes` bytes.
    pub fn wiped(&self, bytes: i64) {
        self.wipes.inc();
        self.wiped_bytes.inc_by(u64::try_from(bytes).unwrap_or(0));
    }

    /// Counts a failed wipe (it is retried).
    pub fn wipe_failed(&self) {
        self.wipe_failures.inc();
    }

    /// Counts a foreign object removed from a workspace.
    pub fn isolation_breach(&self) {
        self.isolation_breaches.inc();
    }

    /// Counts `n` records appended to the audit ledger.
    pub fn audit_recorded(&self, n: u64) {
        self.audit_records.inc_by(n);
    }

    /// The result of a verification of the audit chain, made at `at`.
    pub fn audit_verified(&self, intact: bool, at: Timestamp) {
        self.audit_intact.set(i64::from(intact));
        self.audit_verified_at
            .set(at.as_millisecond() as f64 / 1000.0);
    }

    /// Whether this process holds the leader lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The caches the cluster gauges are computed from; the first call wins.
    pub fn watch(&self, scenarios: Store<Scenario>, authorizations: Store<Authorization>) {
        let _ = self.caches.set(Caches {
            scenarios,
            authorizations,
        });
    }

    /// Recomputes the cluster gauges from `scenarios` and `authorizations` as of `now`.
    fn observe(
        &self,
        scenarios: &[Arc<Scenario>],
        authorizations: &[Arc<Authorization>],
        now: Timestamp,
    ) {
        self.scenarios.clear();
        for phase in PHASES {
            let _ = self.scenarios.get_or_create(&PhaseLabels {
                phase: format!("{phase:?}"),
            });
        }
        for s in scenarios {
            let phase = s
                .status
                .as_ref()
                .and_then(|st| st.phase)
                .map_or_else(|| "Unknown".to_string(), |p| format!("{p:?}"));
            self.scenarios.get_or_create(&PhaseLabels { phase }).inc();
        }
        self.expiry.clear();
        for a in authorizations {
            let left = a.spec.valid_until.0.duration_since(now).as_secs_f64();
            self.expiry
                .get_or_create(&AuthorizationLabels {
                    authorization: a.name_any(),
                })
                .set(left);
        }
    }

    /// The registry in the OpenMetrics text format (see [`CONTENT_TYPE`]),
    /// with the cluster gauges computed now.
    pub fn encode(&self) -> String {
        if let Some(c) = self.caches.get() {
            self.observe(
                &c.scenarios.state(),
                &c.authorizations.state(),
                Timestamp::now(),
            );
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ScenarioStatus, Time};

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        line(text, &format!("{series} "))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    }

    #[test]
    fn every_family_is_exported_with_help_and_type() {
        let m = Metrics::new();
        // Families with labels appear with their first series.
        m.reconciled(Kind::Scenario, Duration::ZERO, Some("api"));
        let a: Authorization =
            serde_yaml::from_str(include_str!("../fixtures/authorization.yaml")).expect("fixture");
        m.observe(&[], &[Arc::new(a)], Timestamp::now());
        let text = m.encode();
        for (family, kind) in [
            ("cleanroom_reconciles", "counter"),
            ("cleanroom_reconcile_failures", "counter"),
            ("cleanroom_reconcile_duration_seconds", "histogram"),
            ("cleanroom_scenarios", "gauge"),
            ("cleanroom_authorization_expiry_seconds", "gauge"),
            ("cleanroom_wipes", "counter"),
            ("cleanroom_wiped_bytes", "counter"),
            ("cleanroom_leader", "gauge"),
            ("cleanroom_audit_records", "counter"),
            ("cleanroom_audit_chain_intact", "gauge"),
            ("cleanroom_audit_last_verify_timestamp_seconds", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} {kind}\n")),
                "{family} missing:\n{text}"
            );
            assert!(text.contains(&format!("# HELP {family} ")), "{family} help");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn reconcile_counters_start_at_zero_for_both_controllers() {
        let text = Metrics::new().encode();
        for kind in ["scenario", "authorization"] {
            assert_eq!(
                value(
                    &text,
                    &format!(r#"cleanroom_reconciles_total{{kind="{kind}"}}"#)
                ),
                Some(0.0),
                "{text}"
            );
        }
    }

    #[test]
    fn reconciles_failures_and_durations_count_what_happened() {
        let m = Metrics::new();
        m.reconciled(Kind::Scenario, Duration::from_millis(5), None);
        m.reconciled(Kind::Scenario, Duration::from_millis(30), Some("api"));
        m.reconciled(Kind::Authorization, Duration::from_secs(1), None);
        let text = m.encode();
        assert_eq!(
            value(&text, r#"cleanroom_reconciles_total{kind="scenario"}"#),
            Some(2.0)
        );
        assert_eq!(
            value(&text, r#"cleanroom_reconciles_total{kind="authorization"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"cleanroom_reconcile_failures_total{kind="scenario",category="api"}"#
            ),
            Some(1.0)
        );
        assert!(
            line(
                &text,
                r#"cleanroom_reconcile_failures_total{kind="authorization""#
            )
            .is_none()
        );
        assert_eq!(
            value(
                &text,
                r#"cleanroom_reconcile_duration_seconds_count{kind="scenario"}"#
            ),
            Some(2.0)
        );
        let sum = value(
            &text,
            r#"cleanroom_reconcile_duration_seconds_sum{kind="scenario"}"#,
        );
        assert!(sum.is_some_and(|s| (s - 0.035).abs() < 1e-9), "{sum:?}");
        // 5 ms falls in the first bucket (le 0.01), 30 ms does not.
        assert_eq!(
            value(
                &text,
                r#"cleanroom_reconcile_duration_seconds_bucket{le="0.01",kind="scenario"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn audit_records_and_the_last_verification_are_exported() {
        let m = Metrics::new();
        let text = m.encode();
        assert_eq!(value(&text, "cleanroom_audit_records_total"), Some(0.0));
        assert_eq!(value(&text, "cleanroom_audit_chain_intact"), Some(-1.0));
        m.audit_recorded(3);
        m.audit_recorded(2);
        m.audit_verified(true, "2026-01-01T00:00:00Z".parse().expect("time"));
        let text = m.encode();
        assert_eq!(value(&text, "cleanroom_audit_records_total"), Some(5.0));
        assert_eq!(value(&text, "cleanroom_audit_chain_intact"), Some(1.0));
        assert_eq!(
            value(&text, "cleanroom_audit_last_verify_timestamp_seconds"),
            Some(1_767_225_600.0)
        );
        m.audit_verified(false, Timestamp::now());
        assert_eq!(
            value(&m.encode(), "cleanroom_audit_chain_intact"),
            Some(0.0)
        );
    }

    #[test]
    fn wipes_leader_and_bytes_add_up() {
        let m = Metrics::new();
        m.wiped(1024);
        m.wiped(3072);
        m.wiped(-1);
        m.set_leader(true);
        let text = m.encode();
        assert_eq!(value(&text, "cleanroom_wipes_total"), Some(3.0));
        assert_eq!(value(&text, "cleanroom_wiped_bytes_total"), Some(4096.0));
        assert_eq!(value(&text, "cleanroom_leader"), Some(1.0));
        m.set_leader(false);
        assert_eq!(value(&m.encode(), "cleanroom_leader"), Some(0.0));
    }

    #[test]
    fn scenarios_by_phase_and_expiry_are_computed_from_the_caches() {
        let m = Metrics::new();
        let scenario = |name: &str, phase: Option<ScenarioPhase>| {
            let mut s: Scenario =
                serde_yaml::from_str(include_str!("../fixtures/scenario.yaml")).expect("fixture");
            s.metadata.name = Some(name.into());
            s.status = phase.map(|p| ScenarioStatus {
                phase: Some(p),
                ..ScenarioStatus::default()
            });
            Arc::new(s)
        };
        let mut a: Authorization =
            serde_yaml::from_str(include_str!("../fixtures/authorization.yaml")).expect("fixture");
        a.metadata.name = Some("acme".into());
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        a.spec.valid_until = Time("2026-01-01T00:01:40Z".parse().expect("time"));
        let mut past = a.clone();
        past.metadata.name = Some("old".into());
        past.spec.valid_until = Time("2025-12-31T23:59:00Z".parse().expect("time"));

        m.observe(
            &[
                scenario("a", Some(ScenarioPhase::Ready)),
                scenario("b", Some(ScenarioPhase::Ready)),
                scenario("c", Some(ScenarioPhase::Suspended)),
                scenario("d", None),
            ],
            &[Arc::new(a), Arc::new(past)],
            now,
        );
        let text = m.encode();
        let phase = |p: &str| value(&text, &format!(r#"cleanroom_scenarios{{phase="{p}"}}"#));
        assert_eq!(phase("Ready"), Some(2.0));
        assert_eq!(phase("Suspended"), Some(1.0));
        assert_eq!(phase("Unknown"), Some(1.0));
        assert_eq!(phase("Closed"), Some(0.0));
        assert_eq!(
            value(
                &text,
                r#"cleanroom_authorization_expiry_seconds{authorization="acme"}"#
            ),
            Some(100.0)
        );
        assert_eq!(
            value(
                &text,
                r#"cleanroom_authorization_expiry_seconds{authorization="old"}"#
            ),
            Some(-60.0)
        );

        // A scenario gone from the cache is gone from the metrics.
        m.observe(&[scenario("a", Some(ScenarioPhase::Closed))], &[], now);
        let text = m.encode();
        assert_eq!(
            value(&text, r#"cleanroom_scenarios{phase="Ready"}"#),
            Some(0.0)
        );
        assert!(!text.contains(r#"authorization="acme""#));
    }
}
