//! What a scenario should be doing now: a pure function of the scenario, its
//! authorization, the end already begun (if any) and the clock. The
//! reconciler carries the decision out.
//!
//! Ending is final (design invariant 8): once teardown has begun, the
//! decision is that same teardown whatever changes afterwards (a raised
//! `validUntil`, a re-created authorization, a state set back to Active).
//! The end begun is read back from the cluster ([`ended`]), so the rule
//! holds across restarts; renewal is raising `validUntil` *before* it passes.

use std::time::Duration;

use crate::api::{Authorization, Scenario, ScenarioPhase, ScenarioStatus, State, Time};
use crate::conditions::{reasons, types};
use crate::rules::effective_expiry;

/// Why a scenario ends (and is torn down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The Scenario object is being deleted.
    Deleted,
    /// The scenario itself was revoked.
    Revoked,
    /// Its authorization was revoked.
    AuthorizationRevoked,
    /// Its own validUntil passed.
    Expired,
    /// Its authorization's validUntil passed.
    AuthorizationExpired,
    /// Its authorization no longer exists (after the workspace was provisioned).
    AuthorizationGone,
}

impl End {
    /// Condition reason for the end.
    pub fn reason(self) -> &'static str {
        match self {
            End::Deleted => reasons::DELETED,
            End::Revoked => reasons::REVOKED_BY_REQUEST,
            End::AuthorizationRevoked => reasons::AUTHORIZATION_REVOKED,
            End::Expired => reasons::VALIDITY_ENDED,
            End::AuthorizationExpired => reasons::AUTHORIZATION_EXPIRED,
            End::AuthorizationGone => reasons::AUTHORIZATION_NOT_FOUND,
        }
    }

    /// The end a condition reason names (the inverse of [`End::reason`]).
    pub fn from_reason(reason: &str) -> Option<End> {
        [
            End::Deleted,
            End::Revoked,
            End::AuthorizationRevoked,
            End::Expired,
            End::AuthorizationExpired,
            End::AuthorizationGone,
        ]
        .into_iter()
        .find(|e| e.reason() == reason)
    }

    /// True for the ends that count as revocation (the `Revoked` condition);
    /// the others (but deletion) count as expiry.
    pub fn is_revocation(self) -> bool {
        matches!(
            self,
            End::Revoked | End::AuthorizationRevoked | End::AuthorizationGone
        )
    }

    /// For people: why the workspace was closed.
    pub fn message(self) -> &'static str {
        match self {
            End::Deleted => "the Scenario was deleted",
            End::Revoked => "the scenario was revoked",
            End::AuthorizationRevoked => "its authorization was revoked",
            End::Expired => "the scenario's validUntil has passed",
            End::AuthorizationExpired => "its authorization's validUntil has passed",
            End::AuthorizationGone => "its authorization no longer exists",
        }
    }
}

/// Why a running workspace is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seal {
    /// The scenario is Suspended.
    Scenario,
    /// Its authorization is Suspended.
    Authorization,
}

impl Seal {
    /// Condition reason for the seal.
    pub fn reason(self) -> &'static str {
        match self {
            Seal::Scenario => reasons::SUSPENDED_BY_REQUEST,
            Seal::Authorization => reasons::AUTHORIZATION_SUSPENDED,
        }
    }
}

/// What the reconciler should do.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Tear the workspace down, wipe it, and close the scenario.
    TearDown(End),
    /// Nothing to provision yet: the authorization is missing or not yet in force.
    Wait {
        /// Condition reason.
        reason: &'static str,
        /// For people.
        message: String,
        /// When to look again, if a time is known.
        until: Option<Time>,
    },
    /// Provision (or keep) the workspace; `seal` says whether compute and
    /// access must be off.
    Run {
        /// Why it is sealed, if it is.
        seal: Option<Seal>,
        /// When it ends: wake up exactly then.
        expires_at: Time,
    },
}

/// The end a scenario has already begun, from either record of it: the
/// mark teardown puts on the workspace namespace before anything else (so
/// it holds even while the status cannot be written) or the status phase
/// (`TearingDown`, `Closed`; the Ready reason says why). A phase that says
/// it ended without a reason this version knows counts as a revocation:
/// when in doubt, the workspace stays closed.
pub fn ended(status: Option<&ScenarioStatus>, namespace_mark: Option<&str>) -> Option<End> {
    if let Some(mark) = namespace_mark {
        return Some(End::from_reason(mark).unwrap_or(End::Revoked));
    }
    let status = status?;
    if !matches!(
        status.phase,
        Some(ScenarioPhase::TearingDown | ScenarioPhase::Closed)
    ) {
        return None;
    }
    let reason = status
        .conditions
        .iter()
        .find(|c| c.type_ == types::READY)
        .map(|c| c.reason.as_str());
    Some(reason.and_then(End::from_reason).unwrap_or(End::Revoked))
}

/// Decides what the scenario should be doing at `now`. `provisioned` tells
/// whether a workspace may exist (its namespace was created), which matters
/// only when the authorization is gone: nothing to tear down before that.
/// `ended` is the end already begun ([`ended`]): it is final, and the first
/// end stays the reason even if the object is deleted later.
pub fn decide(
    scenario: &Scenario,
    authorization: Option<&Authorization>,
    provisioned: bool,
    ended: Option<End>,
    now: &Time,
) -> Decision {
    if let Some(end) = ended {
        return Decision::TearDown(end);
    }
    if scenario.metadata.deletion_timestamp.is_some() {
        return Decision::TearDown(End::Deleted);
    }
    if scenario.spec.state == State::Revoked {
        return Decision::TearDown(End::Revoked);
    }
    let Some(authorization) = authorization else {
        if provisioned {
            return Decision::TearDown(End::AuthorizationGone);
        }
        return Decision::Wait {
            reason: reasons::AUTHORIZATION_NOT_FOUND,
            message: format!(
                "authorization {:?} does not exist; the workspace is provisioned once it does",
                scenario.spec.authorization
            ),
            until: None,
        };
    };
    if authorization.spec.state == State::Revoked {
        return Decision::TearDown(End::AuthorizationRevoked);
    }
    let expires_at = effective_expiry(scenario, authorization);
    if *now >= expires_at {
        let own = scenario
            .spec
            .valid_until
            .as_ref()
            .is_some_and(|v| *v <= authorization.spec.valid_until);
        return Decision::TearDown(if own {
            End::Expired
        } else {
            End::AuthorizationExpired
        });
    }
    if *now < authorization.spec.valid_from {
        return Decision::Wait {
            reason: reasons::NOT_YET_VALID,
            message: format!(
                "authorization {:?} is valid from {}; the workspace is provisioned then",
                scenario.spec.authorization, authorization.spec.valid_from.0
            ),
            until: Some(authorization.spec.valid_from.clone()),
        };
    }
    let seal = if scenario.spec.state == State::Suspended {
        Some(Seal::Scenario)
    } else if authorization.spec.state == State::Suspended {
        Some(Seal::Authorization)
    } else {
        None
    };
    Decision::Run { seal, expires_at }
}

/// How long from `now` until `at`, plus a few milliseconds so that the wake-up
/// lands after the instant, not just before it. `None` if `at` has passed.
pub fn until(now: &Time, at: &Time) -> Option<Duration> {
    let span = at.0.duration_since(now.0);
    let millis = span.as_millis();
    (millis > 0).then(|| Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX) + 5))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::api::AuthorizationSpec;

    fn t(s: &str) -> Time {
        Time(s.parse::<Timestamp>().unwrap())
    }

    fn authorization(state: &str) -> Authorization {
        let spec: AuthorizationSpec = serde_json::from_value(json!({
            "operator": {"name": "Acme", "creditCode": "91350100M000100Y43"},
            "agreementId": "A-1",
            "validFrom": "2026-01-01T00:00:00Z",
            "validUntil": "2027-01-01T00:00:00Z",
            "quota": {"cpu": "8", "memory": "32Gi", "storage": "100Gi", "scenarios": 3},
            "state": state,
            "reason": "audit finding"
        }))
        .unwrap();
        let mut a = Authorization::new("acme", spec);
        a.metadata.uid = Some("a-uid".into());
        a
    }

    fn scenario(state: &str, valid_until: Option<&str>) -> Scenario {
        let mut spec = json!({
            "authorization": "acme",
            "purpose": "statistics",
            "state": state,
            "reason": "finding",
            "workspace": {"image": "x", "resources": {"cpu": "1", "memory": "1Gi"}, "scratch": "1Gi"}
        });
        if let Some(v) = valid_until {
            spec["validUntil"] = json!(v);
        }
        Scenario::new("census", serde_json::from_value(spec).unwrap())
    }

    const MID: &str = "2026-06-01T00:00:00Z";

    #[test]
    fn an_active_scenario_under_an_active_authorization_runs_until_the_authorization_ends() {
        let d = decide(
            &scenario("Active", None),
            Some(&authorization("Active")),
            false,
            None,
            &t(MID),
        );
        assert_eq!(
            d,
            Decision::Run {
                seal: None,
                expires_at: t("2027-01-01T00:00:00Z")
            }
        );
    }

    #[test]
    fn the_earlier_validuntil_wins() {
        let s = scenario("Active", Some("2026-07-01T00:00:00Z"));
        let Decision::Run { expires_at, .. } =
            decide(&s, Some(&authorization("Active")), true, None, &t(MID))
        else {
            panic!("must run");
        };
        assert_eq!(expires_at, t("2026-07-01T00:00:00Z"));
    }

    #[test]
    fn suspension_of_either_seals_the_workspace() {
        let by_scenario = decide(
            &scenario("Suspended", None),
            Some(&authorization("Active")),
            true,
            None,
            &t(MID),
        );
        assert!(matches!(
            by_scenario,
            Decision::Run {
                seal: Some(Seal::Scenario),
                ..
            }
        ));
        let by_authz = decide(
            &scenario("Active", None),
            Some(&authorization("Suspended")),
            true,
            None,
            &t(MID),
        );
        assert!(matches!(
            by_authz,
            Decision::Run {
                seal: Some(Seal::Authorization),
                ..
            }
        ));
    }

    #[test]
    fn revocation_of_either_tears_down() {
        assert_eq!(
            decide(
                &scenario("Revoked", None),
                Some(&authorization("Active")),
                true,
                None,
                &t(MID)
            ),
            Decision::TearDown(End::Revoked)
        );
        assert_eq!(
            decide(
                &scenario("Active", None),
                Some(&authorization("Revoked")),
                true,
                None,
                &t(MID)
            ),
            Decision::TearDown(End::AuthorizationRevoked)
        );
    }

    #[test]
    fn expiry_is_exact_to_the_instant() {
        let s = scenario("Active", Some("2026-07-01T00:00:00Z"));
        let a = authorization("Active");
        assert!(matches!(
            decide(&s, Some(&a), true, None, &t("2026-06-30T23:59:59.999Z")),
            Decision::Run { .. }
        ));
        assert_eq!(
            decide(&s, Some(&a), true, None, &t("2026-07-01T00:00:00Z")),
            Decision::TearDown(End::Expired)
        );
        let own_none = scenario("Active", None);
        assert_eq!(
            decide(&own_none, Some(&a), true, None, &t("2027-01-01T00:00:00Z")),
            Decision::TearDown(End::AuthorizationExpired)
        );
    }

    #[test]
    fn nothing_is_provisioned_before_validfrom_and_it_wakes_up_then() {
        let d = decide(
            &scenario("Active", None),
            Some(&authorization("Active")),
            false,
            None,
            &t("2025-12-31T00:00:00Z"),
        );
        let Decision::Wait { reason, until, .. } = d else {
            panic!("must wait")
        };
        assert_eq!(reason, reasons::NOT_YET_VALID);
        assert_eq!(until, Some(t("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn a_missing_authorization_waits_or_tears_down_what_exists() {
        let s = scenario("Active", None);
        assert!(matches!(
            decide(&s, None, false, None, &t(MID)),
            Decision::Wait { .. }
        ));
        assert_eq!(
            decide(&s, None, true, None, &t(MID)),
            Decision::TearDown(End::AuthorizationGone)
        );
    }

    #[test]
    fn deletion_overrides_everything() {
        let mut s = scenario("Active", None);
        s.metadata.deletion_timestamp = Some(t(MID));
        assert_eq!(
            decide(&s, Some(&authorization("Active")), true, None, &t(MID)),
            Decision::TearDown(End::Deleted)
        );
    }

    #[test]
    fn wake_up_lands_just_after_the_instant() {
        let d = until(&t("2026-01-01T00:00:00Z"), &t("2026-01-01T00:00:02Z")).unwrap();
        assert_eq!(d, Duration::from_millis(2005));
        assert_eq!(
            until(&t("2026-01-01T00:00:02Z"), &t("2026-01-01T00:00:00Z")),
            None
        );
    }

    /// One change a user, the bureau or the clock can make.
    #[derive(Clone, Copy, Debug)]
    enum Change {
        /// The clock passes the scenario's own validUntil.
        ClockPassesScenarioEnd,
        /// The clock passes the authorization's validUntil.
        ClockPassesAuthorizationEnd,
        /// The scenario's validUntil is raised far into the future.
        RaiseScenarioValidUntil,
        /// The authorization's validUntil is raised.
        RaiseAuthorizationValidUntil,
        /// The authorization is deleted.
        DeleteAuthorization,
        /// An authorization of the same name is created again.
        RecreateAuthorization,
        /// The scenario is revoked.
        RevokeScenario,
        /// The scenario (or its authorization) is suspended, then made Active.
        SuspendAndResume,
    }

    struct World {
        scenario: Scenario,
        authorization: Option<Authorization>,
        now: Time,
    }

    impl World {
        fn apply(&mut self, change: Change) {
            match change {
                Change::ClockPassesScenarioEnd => {
                    self.now = self.now.clone().max(t("2026-07-01T00:00:01Z"));
                }
                Change::ClockPassesAuthorizationEnd => {
                    self.now = self.now.clone().max(t("2027-01-01T00:00:01Z"));
                }
                Change::RaiseScenarioValidUntil => {
                    self.scenario.spec.valid_until = Some(t("2028-06-01T00:00:00Z"));
                }
                Change::RaiseAuthorizationValidUntil => {
                    if let Some(a) = self.authorization.as_mut() {
                        a.spec.valid_until = t("2028-12-31T00:00:00Z");
                    }
                }
                Change::DeleteAuthorization => self.authorization = None,
                Change::RecreateAuthorization => {
                    let mut fresh = authorization("Active");
                    fresh.spec.valid_until = t("2028-12-31T00:00:00Z");
                    self.authorization.get_or_insert(fresh);
                }
                Change::RevokeScenario => {
                    self.scenario.spec.state = State::Revoked;
                }
                Change::SuspendAndResume => {
                    if self.scenario.spec.state != State::Revoked {
                        self.scenario.spec.state = State::Active;
                    }
                }
            }
        }
    }

    fn permutations(items: &[Change]) -> Vec<Vec<Change>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut tail in permutations(&rest) {
                tail.insert(0, first);
                out.push(tail);
            }
        }
        out
    }

    #[test]
    fn once_an_end_has_begun_no_ordering_of_changes_brings_the_workspace_back() {
        let changes = [
            Change::ClockPassesScenarioEnd,
            Change::ClockPassesAuthorizationEnd,
            Change::RaiseScenarioValidUntil,
            Change::RaiseAuthorizationValidUntil,
            Change::DeleteAuthorization,
            Change::RecreateAuthorization,
            Change::RevokeScenario,
            Change::SuspendAndResume,
        ];
        let orderings = permutations(&changes);
        assert_eq!(orderings.len(), 40_320);
        // Without the memory of the end (the old decision), some ordering
        // does reopen the workspace: the test below would catch that.
        let mut reopened_without_memory = 0;
        for order in &orderings {
            let mut world = World {
                scenario: scenario("Active", Some("2026-07-01T00:00:00Z")),
                authorization: Some(authorization("Active")),
                now: t(MID),
            };
            let mut begun: Option<End> = None;
            let mut stateless_ended = false;
            for change in order {
                world.apply(*change);
                let d = decide(
                    &world.scenario,
                    world.authorization.as_ref(),
                    true,
                    begun,
                    &world.now,
                );
                match (begun, &d) {
                    (None, Decision::TearDown(end)) => begun = Some(*end),
                    (None, _) => {}
                    (Some(first), d) => assert_eq!(
                        d,
                        &Decision::TearDown(first),
                        "after {order:?} the decision left teardown"
                    ),
                }
                let stateless = decide(
                    &world.scenario,
                    world.authorization.as_ref(),
                    true,
                    None,
                    &world.now,
                );
                match stateless {
                    Decision::TearDown(_) => stateless_ended = true,
                    _ if stateless_ended => reopened_without_memory += 1,
                    _ => {}
                }
            }
            assert!(begun.is_some(), "{order:?} never ended");
        }
        assert!(reopened_without_memory > 0);
    }

    #[test]
    fn the_end_begun_is_read_back_from_the_namespace_mark_or_the_status() {
        use crate::conditions::condition;
        let now = t(MID);
        assert_eq!(
            ended(None, Some(reasons::VALIDITY_ENDED)),
            Some(End::Expired)
        );
        assert_eq!(
            ended(None, Some("SomethingNew")),
            Some(End::Revoked),
            "an unknown mark still means ended"
        );
        let mut status = ScenarioStatus {
            phase: Some(ScenarioPhase::Ready),
            ..ScenarioStatus::default()
        };
        assert_eq!(ended(Some(&status), None), None);
        status.phase = Some(ScenarioPhase::TearingDown);
        status.conditions.push(condition(
            types::READY,
            false,
            reasons::AUTHORIZATION_NOT_FOUND,
            "x",
            None,
            &now,
        ));
        assert_eq!(ended(Some(&status), None), Some(End::AuthorizationGone));
        status.phase = Some(ScenarioPhase::Closed);
        status.conditions.clear();
        assert_eq!(ended(Some(&status), None), Some(End::Revoked));
        // The mark is written first: it wins over a status not yet written.
        assert_eq!(
            ended(Some(&ScenarioStatus::default()), Some(reasons::DELETED)),
            Some(End::Deleted)
        );
    }

    #[test]
    fn the_first_end_stays_the_reason_when_the_object_is_deleted_later() {
        let mut s = scenario("Active", None);
        s.metadata.deletion_timestamp = Some(t(MID));
        assert_eq!(
            decide(&s, None, true, Some(End::Expired), &t(MID)),
            Decision::TearDown(End::Expired)
        );
    }
}
