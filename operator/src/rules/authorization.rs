//! Checks of an Authorization on its own: the credit code's check character,
//! and (for objects stored before the CRD had its CEL rules) the validity
//! span, the reason and the quota quantities.

use super::{Rejection, credit_code};
use crate::api::authorization::MAX_VALIDITY_HOURS;
use crate::api::{Authorization, State};
use crate::conditions::reasons;

/// All problems of an authorization, in field order.
pub fn authorization_problems(authorization: &Authorization) -> Vec<Rejection> {
    let spec = &authorization.spec;
    let mut problems = Vec::new();
    if let Err(e) = credit_code::validate(&spec.operator.credit_code) {
        problems.push(Rejection::new(
            "spec.operator.creditCode",
            reasons::INVALID_CREDIT_CODE,
            format!("{e}; copy the code from the operator's business licence"),
        ));
    }
    let span = spec.valid_until.0.as_second() - spec.valid_from.0.as_second();
    if span <= 0 {
        problems.push(Rejection::new(
            "spec.validUntil",
            reasons::INVALID_VALIDITY,
            "validUntil must be after validFrom",
        ));
    } else if span > MAX_VALIDITY_HOURS * 3600 {
        problems.push(Rejection::new(
            "spec.validUntil",
            reasons::INVALID_VALIDITY,
            "an authorization lasts at most 3 years (1096 days): set validUntil no later than \
             validFrom plus 3 years",
        ));
    }
    for (name, quantity) in [
        ("cpu", &spec.quota.cpu),
        ("memory", &spec.quota.memory),
        ("storage", &spec.quota.storage),
    ] {
        match quantity.amount() {
            Ok(amount) if amount.is_positive() => {}
            Ok(_) => problems.push(Rejection::new(
                format!("spec.quota.{name}"),
                reasons::INVALID_QUANTITY,
                format!("quota.{name} must be greater than zero"),
            )),
            Err(e) => problems.push(Rejection::new(
                format!("spec.quota.{name}"),
                reasons::INVALID_QUANTITY,
                e.to_string(),
            )),
        }
    }
    if spec.state != State::Active && spec.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        problems.push(Rejection::new(
            "spec.reason",
            reasons::REASON_REQUIRED,
            format!(
                "state {} requires a reason: set spec.reason",
                spec.state.as_str()
            ),
        ));
    }
    problems
}

/// The first problem of an authorization, if any.
pub fn validate_authorization(authorization: &Authorization) -> Result<(), Rejection> {
    authorization_problems(authorization)
        .into_iter()
        .next()
        .map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PositiveQuantity, Time};
    use crate::fixtures;
    use k8s_openapi::jiff::Timestamp;

    fn reason(authorization: &Authorization) -> Option<&'static str> {
        validate_authorization(authorization)
            .err()
            .map(|r| r.reason)
    }

    #[test]
    fn the_example_authorization_is_valid() {
        assert_eq!(validate_authorization(&fixtures::authorization()), Ok(()));
    }

    #[test]
    fn authorization_with_mistyped_credit_code_is_rejected() {
        let mut authorization = fixtures::authorization();
        authorization.spec.operator.credit_code = "91350100M000100Y44".into();
        let rejection = validate_authorization(&authorization).err();
        assert_eq!(
            rejection.as_ref().map(|r| r.reason),
            Some(reasons::INVALID_CREDIT_CODE)
        );
        assert_eq!(
            rejection.map(|r| r.field),
            Some("spec.operator.creditCode".to_string())
        );
    }

    #[test]
    fn authorization_longer_than_three_years_is_rejected() {
        let mut authorization = fixtures::authorization();
        let from = authorization.spec.valid_from.0;
        let limit = MAX_VALIDITY_HOURS * 3600;
        authorization.spec.valid_until =
            Time(Timestamp::from_second(from.as_second() + limit).unwrap_or(from));
        assert_eq!(reason(&authorization), None, "exactly 1096 days is allowed");
        authorization.spec.valid_until =
            Time(Timestamp::from_second(from.as_second() + limit + 1).unwrap_or(from));
        assert_eq!(reason(&authorization), Some(reasons::INVALID_VALIDITY));
    }

    #[test]
    fn authorization_ending_before_it_starts_is_rejected() {
        let mut authorization = fixtures::authorization();
        authorization.spec.valid_until = authorization.spec.valid_from.clone();
        assert_eq!(reason(&authorization), Some(reasons::INVALID_VALIDITY));
    }

    #[test]
    fn authorization_suspended_without_reason_is_rejected() {
        let mut authorization = fixtures::authorization();
        authorization.spec.state = State::Suspended;
        authorization.spec.reason = Some("  ".into());
        assert_eq!(reason(&authorization), Some(reasons::REASON_REQUIRED));
        authorization.spec.reason = Some("security incident 2025-07".into());
        assert_eq!(reason(&authorization), None);
    }

    #[test]
    fn authorization_with_bad_quota_quantity_is_rejected() {
        let mut authorization = fixtures::authorization();
        authorization.spec.quota.memory = PositiveQuantity::new("lots");
        assert_eq!(reason(&authorization), Some(reasons::INVALID_QUANTITY));
        authorization.spec.quota.memory = PositiveQuantity::new("0");
        assert_eq!(reason(&authorization), Some(reasons::INVALID_QUANTITY));
    }
}
