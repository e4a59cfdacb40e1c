//! Status conditions (`metav1.Condition`): type and reason constants and a
//! pure setter that keeps `lastTransitionTime` when the status is unchanged.

use crate::api::{Condition, Time};

/// Condition types.
pub mod types {
    /// The object is fully in its desired state (for a Scenario: the workspace runs).
    pub const READY: &str = "Ready";
    /// The workspace namespace and its guards (network policy, quota, access) exist.
    pub const PROVISIONED: &str = "Provisioned";
    /// Default-deny network policy for ingress and egress is in place.
    pub const ISOLATED: &str = "Isolated";
    /// The requested datasets are sampled, masked and mounted read-only.
    pub const DATA_PREPARED: &str = "DataPrepared";
    /// Sealed: compute stopped, access removed, data kept.
    pub const SUSPENDED: &str = "Suspended";
    /// The validity period has ended.
    pub const EXPIRED: &str = "Expired";
    /// Revoked by the bureau.
    pub const REVOKED: &str = "Revoked";
    /// Every volume was overwritten, verified and deleted.
    pub const WIPED: &str = "Wiped";
    /// The last reconcile failed (an API error); it is retried with backoff.
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
}

/// Condition reasons (CamelCase, as the API conventions ask).
pub mod reasons {
    // Lifecycle.
    /// validFrom has not come yet.
    pub const NOT_YET_VALID: &str = "NotYetValid";
    /// Provisioning is in progress.
    pub const PROVISIONING: &str = "Provisioning";
    /// Data preparation is in progress.
    pub const PREPARING_DATA: &str = "PreparingData";
    /// A dataset's preparation failed (the message says which and why).
    pub const PREPARATION_FAILED: &str = "PreparationFailed";
    /// Every dataset is prepared and handed over.
    pub const DATA_READY: &str = "DataReady";
    /// Everything is in place.
    pub const WORKSPACE_READY: &str = "WorkspaceReady";
    /// The object itself asks to be suspended.
    pub const SUSPENDED_BY_REQUEST: &str = "SuspendedByRequest";
    /// Its authorization is suspended.
    pub const AUTHORIZATION_SUSPENDED: &str = "AuthorizationSuspended";
    /// Its authorization is revoked.
    pub const AUTHORIZATION_REVOKED: &str = "AuthorizationRevoked";
    /// Its authorization has expired.
    pub const AUTHORIZATION_EXPIRED: &str = "AuthorizationExpired";
    /// Its authorization does not exist.
    pub const AUTHORIZATION_NOT_FOUND: &str = "AuthorizationNotFound";
    /// The object itself asks to be revoked.
    pub const REVOKED_BY_REQUEST: &str = "RevokedByRequest";
    /// Its own validUntil has passed.
    pub const VALIDITY_ENDED: &str = "ValidityEnded";
    /// The object was deleted.
    pub const DELETED: &str = "Deleted";
    /// Teardown is in progress.
    pub const TEARING_DOWN: &str = "TearingDown";
    /// Teardown has finished.
    pub const CLOSED: &str = "Closed";
    /// Every volume was wiped and verified.
    pub const WIPE_VERIFIED: &str = "WipeVerified";
    /// A wipe failed.
    pub const WIPE_FAILED: &str = "WipeFailed";
    /// An object the operator did not make was found in the workspace (and removed).
    pub const FOREIGN_OBJECT: &str = "ForeignObject";
    /// No object foreign to the workspace is in it.
    pub const NO_FOREIGN_OBJECT: &str = "NoForeignObject";

    // Rejections (see `crate::rules`).
    /// A dataset is outside the authorization's ceiling.
    pub const DATASET_NOT_AUTHORIZED: &str = "DatasetNotAuthorized";
    /// A dataset is not in the catalogue.
    pub const DATASET_NOT_FOUND: &str = "DatasetNotFound";
    /// A column does not exist in its dataset.
    pub const COLUMN_NOT_FOUND: &str = "ColumnNotFound";
    /// Two columns share a name.
    pub const DUPLICATE_COLUMN: &str = "DuplicateColumn";
    /// An override rule is weaker than the dataset's default.
    pub const RULE_TOO_WEAK: &str = "RuleTooWeak";
    /// A rule does not fit its column's type.
    pub const RULE_NOT_APPLICABLE: &str = "RuleNotApplicable";
    /// Personal information would be delivered in clear.
    pub const PERSONAL_DATA_IN_CLEAR: &str = "PersonalDataInClear";
    /// A member is not a member of the authorization.
    pub const MEMBER_NOT_AUTHORIZED: &str = "MemberNotAuthorized";
    /// Requested resources exceed the authorization's quota.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// The authorization already has as many scenarios as its quota allows.
    pub const SCENARIO_LIMIT_REACHED: &str = "ScenarioLimitReached";
    /// A scenario would outlive its authorization.
    pub const OUTLIVES_AUTHORIZATION: &str = "OutlivesAuthorization";
    /// A scenario was checked against an authorization it does not name.
    pub const AUTHORIZATION_MISMATCH: &str = "AuthorizationMismatch";
    /// A quantity cannot be parsed.
    pub const INVALID_QUANTITY: &str = "InvalidQuantity";
    /// A unified social credit code is malformed or fails its check character.
    pub const INVALID_CREDIT_CODE: &str = "InvalidCreditCode";
    /// The validity period is empty or longer than 3 years.
    pub const INVALID_VALIDITY: &str = "InvalidValidity";
    /// A Suspended or Revoked state has no reason.
    pub const REASON_REQUIRED: &str = "ReasonRequired";
    /// The workspace namespace exists and was not made for this scenario.
    pub const NAMESPACE_NOT_OWNED: &str = "NamespaceNotOwned";
    /// The workspace image is not among the authorization's approved images.
    pub const IMAGE_NOT_APPROVED: &str = "ImageNotApproved";
    /// The authorization requires reviewed output for its Core datasets and
    /// the workspace is interactive.
    pub const REVIEWED_OUTPUT_REQUIRED: &str = "ReviewedOutputRequired";
    /// A vault object the scenario needs exists and is not the scenario's.
    pub const OBJECT_NOT_OWNED: &str = "ObjectNotOwned";
}

/// `status` values.
pub mod status {
    /// The condition holds.
    pub const TRUE: &str = "True";
    /// The condition does not hold.
    pub const FALSE: &str = "False";
    /// Not known yet.
    pub const UNKNOWN: &str = "Unknown";
}

/// A condition; its `lastTransitionTime` is `now` (and is corrected by
/// [`set_condition`] if the status did not change).
pub fn condition(
    type_: &str,
    holds: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if holds { status::TRUE } else { status::FALSE }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation,
        last_transition_time: now.clone(),
    }
}

/// Insert or update the condition of `new.type_`. `lastTransitionTime` is
/// kept when the status is unchanged and set to `now` when it changes (or the
/// condition is new). Returns true if anything changed, so the caller can
/// skip a status patch that changes nothing.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition, now: &Time) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let last_transition_time = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                now.clone()
            };
            let updated = Condition {
                last_transition_time,
                ..new
            };
            if *existing == updated {
                false
            } else {
                *existing = updated;
                true
            }
        }
        None => {
            conditions.push(Condition {
                last_transition_time: now.clone(),
                ..new
            });
            true
        }
    }
}

/// The condition of this type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True if the condition of this type is present with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == status::TRUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(1_750_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    #[test]
    fn a_new_condition_gets_now_as_transition_time() {
        let mut conditions = Vec::new();
        let changed = set_condition(
            &mut conditions,
            condition(
                types::READY,
                false,
                reasons::PROVISIONING,
                "creating namespace",
                Some(1),
                &at(0),
            ),
            &at(5),
        );
        assert!(changed);
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(5));
        assert_eq!(conditions[0].status, "False");
    }

    #[test]
    fn transition_time_is_kept_when_status_does_not_change() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            condition(
                types::READY,
                false,
                reasons::PROVISIONING,
                "creating namespace",
                Some(1),
                &at(0),
            ),
            &at(0),
        );
        let changed = set_condition(
            &mut conditions,
            condition(
                types::READY,
                false,
                reasons::PREPARING_DATA,
                "masking data",
                Some(2),
                &at(60),
            ),
            &at(60),
        );
        assert!(changed, "reason and message changed");
        assert_eq!(conditions[0].last_transition_time, at(0));
        assert_eq!(conditions[0].reason, reasons::PREPARING_DATA);
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn transition_time_moves_when_status_changes() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            condition(types::READY, false, reasons::PROVISIONING, "", None, &at(0)),
            &at(0),
        );
        set_condition(
            &mut conditions,
            condition(
                types::READY,
                true,
                reasons::WORKSPACE_READY,
                "",
                None,
                &at(90),
            ),
            &at(90),
        );
        assert_eq!(conditions[0].last_transition_time, at(90));
        assert!(is_true(&conditions, types::READY));
    }

    #[test]
    fn setting_the_same_condition_again_changes_nothing() {
        let mut conditions = Vec::new();
        let c = condition(
            types::WIPED,
            true,
            reasons::WIPE_VERIFIED,
            "2 volumes",
            Some(3),
            &at(0),
        );
        set_condition(&mut conditions, c.clone(), &at(0));
        let before = conditions.clone();
        assert!(!set_condition(&mut conditions, c, &at(100)));
        assert_eq!(conditions, before);
    }

    #[test]
    fn other_condition_types_are_left_alone() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            condition(
                types::READY,
                true,
                reasons::WORKSPACE_READY,
                "",
                None,
                &at(0),
            ),
            &at(0),
        );
        set_condition(
            &mut conditions,
            condition(
                types::SUSPENDED,
                false,
                reasons::WORKSPACE_READY,
                "",
                None,
                &at(10),
            ),
            &at(10),
        );
        assert_eq!(conditions.len(), 2);
        assert_eq!(
            find(&conditions, types::READY).map(|c| c.last_transition_time.clone()),
            Some(at(0))
        );
        assert!(!is_true(&conditions, types::SUSPENDED));
        assert!(find(&conditions, types::EXPIRED).is_none());
    }
}
