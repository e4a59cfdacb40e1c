//! The Authorization reconciler: its status (phase, conditions, expiry,
//! scenario count) and a wake-up at each of its deadlines. Its scenarios
//! follow it through their own reconciler, which watches authorizations.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::lifecycle::until;
use super::{Context, Error};
use crate::api::{
    Authorization, AuthorizationPhase, AuthorizationStatus, Scenario, ScenarioPhase, State, Time,
};
use crate::conditions::{condition, reasons, set_condition, types};
use crate::metrics::Kind;
use crate::rules::validate_authorization;
use crate::workspace::FIELD_MANAGER;

/// The phase, with the reason and message of its Ready condition.
pub fn phase(a: &Authorization, now: &Time) -> (AuthorizationPhase, &'static str, String) {
    if let Err(r) = validate_authorization(a) {
        return (
            AuthorizationPhase::Rejected,
            r.reason,
            format!("{}: {}", r.field, r.message),
        );
    }
    let reason = a.spec.reason.clone().unwrap_or_default();
    match a.spec.state {
        State::Revoked => (
            AuthorizationPhase::Revoked,
            reasons::REVOKED_BY_REQUEST,
            format!("revoked: {reason}"),
        ),
        _ if *now >= a.spec.valid_until => (
            AuthorizationPhase::Expired,
            reasons::VALIDITY_ENDED,
            format!("validUntil {} has passed", a.spec.valid_until.0),
        ),
        State::Suspended => (
            AuthorizationPhase::Suspended,
            reasons::SUSPENDED_BY_REQUEST,
            format!("suspended: {reason}"),
        ),
        _ if *now < a.spec.valid_from => (
            AuthorizationPhase::Pending,
            reasons::NOT_YET_VALID,
            format!("valid from {}", a.spec.valid_from.0),
        ),
        State::Active => (
            AuthorizationPhase::Active,
            reasons::WORKSPACE_READY,
            format!("in force until {}", a.spec.valid_until.0),
        ),
    }
}

/// Reconciles one Authorization (counted and timed in the metrics).
pub async fn reconcile(
    authorization: Arc<Authorization>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(authorization, &ctx).await;
    ctx.metrics.reconciled(
        Kind::Authorization,
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    result
}

async fn reconcile_inner(
    authorization: Arc<Authorization>,
    ctx: &Context,
) -> Result<Action, Error> {
    let name = authorization.name_any();
    let now = Time(Timestamp::now());
    let generation = authorization.metadata.generation;
    let (phase, reason, message) = phase(&authorization, &now);
    // Counted once every scenario is in the cache, not from a part of it.
    // Its watch is driven by a task that waits on nothing, so this ends.
    ctx.scenarios.filled().await?;
    let live = ctx
        .scenarios
        .state()
        .iter()
        .filter(|s: &&Arc<Scenario>| s.spec.authorization == name)
        .filter(|s| {
            !matches!(
                s.status.as_ref().and_then(|st| st.phase),
                Some(ScenarioPhase::Closed)
            )
        })
        .count();

    let mut status = authorization.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.phase = Some(phase);
    status.expires_at = Some(authorization.spec.valid_until.clone());
    status.scenarios = Some(i32::try_from(live).unwrap_or(i32::MAX));
    let c = &mut status.conditions;
    let ready = phase == AuthorizationPhase::Active;
    set_condition(
        c,
        condition(types::READY, ready, reason, message, generation, &now),
        &now,
    );
    let flag = |t, holds, why: &str| {
        condition(
            t,
            holds,
            if holds {
                reason
            } else {
                reasons::WORKSPACE_READY
            },
            why.to_string(),
            generation,
            &now,
        )
    };
    set_condition(
        c,
        flag(
            types::SUSPENDED,
            phase == AuthorizationPhase::Suspended,
            "every workspace is sealed while suspended",
        ),
        &now,
    );
    set_condition(
        c,
        flag(
            types::EXPIRED,
            phase == AuthorizationPhase::Expired,
            "the validity period has ended",
        ),
        &now,
    );
    set_condition(
        c,
        flag(
            types::REVOKED,
            phase == AuthorizationPhase::Revoked,
            "revoked by the bureau",
        ),
        &now,
    );
    write_status(ctx, &authorization, &status).await?;

    // Wake up exactly at the next deadline.
    let next = [
        &authorization.spec.valid_from,
        &authorization.spec.valid_until,
    ]
    .into_iter()
    .filter_map(|at| until(&now, at))
    .min();
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}

async fn write_status(
    ctx: &Context,
    a: &Authorization,
    status: &AuthorizationStatus,
) -> Result<(), Error> {
    if a.status.as_ref() == Some(status) {
        return Ok(());
    }
    // The audit records first: a failed status write is retried and finds them.
    ctx.audit.record_authorization(a, status).await?;
    let api: Api<Authorization> = Api::all(ctx.client.clone());
    let patch = json!({
        "apiVersion": Authorization::api_version(&()),
        "kind": Authorization::kind(&()),
        "status": status,
    });
    api.patch_status(
        &a.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse::<Timestamp>().unwrap())
    }

    fn authorization(state: State) -> Authorization {
        let mut a: Authorization =
            serde_yaml::from_str(include_str!("../../fixtures/authorization.yaml")).unwrap();
        a.spec.valid_from = at("2026-01-01T00:00:00Z");
        a.spec.valid_until = at("2027-01-01T00:00:00Z");
        a.spec.state = state;
        a.spec.reason = Some("finding 7".into());
        a
    }

    #[test]
    fn phase_follows_state_and_clock() {
        let mid = at("2026-06-01T00:00:00Z");
        assert_eq!(
            phase(&authorization(State::Active), &mid).0,
            AuthorizationPhase::Active
        );
        assert_eq!(
            phase(&authorization(State::Suspended), &mid).0,
            AuthorizationPhase::Suspended
        );
        assert_eq!(
            phase(&authorization(State::Revoked), &mid).0,
            AuthorizationPhase::Revoked
        );
        assert_eq!(
            phase(&authorization(State::Active), &at("2025-06-01T00:00:00Z")).0,
            AuthorizationPhase::Pending
        );
        assert_eq!(
            phase(
                &authorization(State::Suspended),
                &at("2027-01-01T00:00:00Z")
            )
            .0,
            AuthorizationPhase::Expired
        );
    }

    #[test]
    fn a_suspension_message_carries_the_reason() {
        let (_, reason, message) = phase(
            &authorization(State::Suspended),
            &at("2026-06-01T00:00:00Z"),
        );
        assert_eq!(reason, reasons::SUSPENDED_BY_REQUEST);
        assert!(message.contains("finding 7"));
    }
}
