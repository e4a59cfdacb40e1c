//! What a scenario should be doing now: a pure function of the scenario, its
//! authorization and the clock. The reconciler carries the decision out.

use std::time::Duration;

use crate::api::{Authorization, Scenario, State, Time};
use crate::conditions::reasons;
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

/// Decides what the scenario should be doing at `now`. `provisioned` tells
/// whether a workspace may exist (its namespace was created), which matters
/// only when the authorization is gone: nothing to tear down before that.
pub fn decide(
    scenario: &Scenario,
    authorization: Option<&Authorization>,
    provisioned: bool,
    now: &Time,
) -> Decision {
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
            decide(&s, Some(&authorization("Active")), true, &t(MID))
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
                &t(MID)
            ),
            Decision::TearDown(End::Revoked)
        );
        assert_eq!(
            decide(
                &scenario("Active", None),
                Some(&authorization("Revoked")),
                true,
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
            decide(&s, Some(&a), true, &t("2026-06-30T23:59:59.999Z")),
            Decision::Run { .. }
        ));
        assert_eq!(
            decide(&s, Some(&a), true, &t("2026-07-01T00:00:00Z")),
            Decision::TearDown(End::Expired)
        );
        let own_none = scenario("Active", None);
        assert_eq!(
            decide(&own_none, Some(&a), true, &t("2027-01-01T00:00:00Z")),
            Decision::TearDown(End::AuthorizationExpired)
        );
    }

    #[test]
    fn nothing_is_provisioned_before_validfrom_and_it_wakes_up_then() {
        let d = decide(
            &scenario("Active", None),
            Some(&authorization("Active")),
            false,
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
            decide(&s, None, false, &t(MID)),
            Decision::Wait { .. }
        ));
        assert_eq!(
            decide(&s, None, true, &t(MID)),
            Decision::TearDown(End::AuthorizationGone)
        );
    }

    #[test]
    fn deletion_overrides_everything() {
        let mut s = scenario("Active", None);
        s.metadata.deletion_timestamp = Some(t(MID));
        assert_eq!(
            decide(&s, Some(&authorization("Active")), true, &t(MID)),
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
}
