//! Which records a status change calls for: a pure function of the object's
//! old and new status (and, for members, what the ledger last recorded).
//!
//! Each record carries an idempotency key that is the same when the same
//! change is computed again: the reconcile that failed to write its status
//! (or the process that crashed before it could) computes the same records
//! from the same old status, and the ledger writes them once. Keys of
//! condition flips name the flipped condition's previous
//! `lastTransitionTime`, which only the status write being retried can change.
//!
//! The actor: Kubernetes does not keep on an object who changed it. The
//! `cleanroom` verbs stamp the annotation `cleanroom.io/changed-by` (the
//! user name the API server reports for the caller, from a SelfSubjectReview)
//! with `cleanroom.io/changed-by-generation`, the generation their change
//! creates; when that matches the object's generation, the annotation names
//! the actor. Otherwise the actor is the field manager that last wrote the
//! spec (`manager:kubectl-edit`, for example), as `metadata.managedFields`
//! records it. What the operator decides on its own (provisioning, expiry,
//! wipes, closing, rejections, and what follows from the authorization) is
//! recorded with the actor [`OPERATOR_ACTOR`].

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::record::{Action, Draft, OPERATOR_ACTOR};
use crate::api::{
    Authorization, AuthorizationStatus, Condition, Members, Scenario, ScenarioStatus, Time,
    WipeAttestation,
};
use crate::conditions::{reasons, types};
use crate::workspace::FIELD_MANAGER;

/// Annotation: the user who made the latest change through the `cleanroom` verbs.
pub const CHANGED_BY: &str = "cleanroom.io/changed-by";
/// Annotation: the generation that change produced.
pub const CHANGED_BY_GENERATION: &str = "cleanroom.io/changed-by-generation";

/// What the transitions look at, for any kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub phase: Option<String>,
    pub conditions: Vec<Condition>,
    pub expires_at: Option<Time>,
    pub wipes: Vec<WipeAttestation>,
    /// What data preparation delivered (counts and digests, never values).
    pub prepared: Vec<Value>,
}

impl Observed {
    /// What a Scenario's status says.
    pub fn scenario(status: Option<&ScenarioStatus>) -> Observed {
        status.map_or_else(Observed::default, |s| Observed {
            phase: s.phase.map(|p| format!("{p:?}")),
            conditions: s.conditions.clone(),
            expires_at: s.expires_at.clone(),
            wipes: s.wipes.clone(),
            prepared: s
                .data
                .iter()
                .filter_map(|d| serde_json::to_value(d).ok())
                .collect(),
        })
    }

    /// What an Authorization's status says.
    pub fn authorization(status: Option<&AuthorizationStatus>) -> Observed {
        status.map_or_else(Observed::default, |s| Observed {
            phase: s.phase.map(|p| format!("{p:?}")),
            conditions: s.conditions.clone(),
            expires_at: s.expires_at.clone(),
            wipes: Vec::new(),
            prepared: Vec::new(),
        })
    }

    fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    fn holds(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}

/// One object's change, as the transitions see it.
#[derive(Clone, Debug)]
pub struct Change<'a> {
    /// `Scenario` or `Authorization`.
    pub kind: &'static str,
    pub meta: &'a ObjectMeta,
    /// The authorization it belongs to (itself for an Authorization).
    pub authorization: String,
    /// `spec.reason`, recorded with changes made by request.
    pub spec_reason: Option<String>,
    /// A short summary of the spec, for the `created` record.
    pub spec_summary: Value,
    /// The members the spec names now.
    pub members: Members,
    /// The members the ledger last recorded for this object (`None`: never).
    pub known_members: Option<Members>,
    pub old: Observed,
    pub new: Observed,
}

impl<'a> Change<'a> {
    /// A Scenario's status going from what it has to `new`.
    pub fn scenario(
        s: &'a Scenario,
        new: &ScenarioStatus,
        known_members: Option<Members>,
    ) -> Change<'a> {
        Change {
            kind: "Scenario",
            meta: &s.metadata,
            authorization: s.spec.authorization.clone(),
            spec_reason: s.spec.reason.clone(),
            spec_summary: json!({
                "authorization": s.spec.authorization,
                "purpose": s.spec.purpose,
                "datasets": s.spec.data.iter().map(|d| &d.dataset).collect::<Vec<_>>(),
                "validUntil": s.spec.valid_until,
                "mode": s.spec.workspace.mode,
            }),
            members: s.spec.members.clone(),
            known_members,
            old: Observed::scenario(s.status.as_ref()),
            new: Observed::scenario(Some(new)),
        }
    }

    /// An Authorization's status going from what it has to `new`.
    pub fn authorization(
        a: &'a Authorization,
        new: &AuthorizationStatus,
        known_members: Option<Members>,
    ) -> Change<'a> {
        Change {
            kind: "Authorization",
            meta: &a.metadata,
            authorization: a.metadata.name.clone().unwrap_or_default(),
            spec_reason: a.spec.reason.clone(),
            spec_summary: json!({
                "operator": a.spec.operator.name,
                "creditCode": a.spec.operator.credit_code,
                "agreementId": a.spec.agreement_id,
                "validFrom": a.spec.valid_from,
                "validUntil": a.spec.valid_until,
                "datasets": a.spec.datasets,
                "auditRetentionDays": a.spec.audit_retention_days,
            }),
            members: a.spec.members.clone(),
            known_members,
            old: Observed::authorization(a.status.as_ref()),
            new: Observed::authorization(Some(new)),
        }
    }
}

/// Who asked for the object's current spec (see the module documentation).
pub fn requester(meta: &ObjectMeta) -> String {
    let annotations = meta.annotations.clone().unwrap_or_default();
    if let (Some(user), Some(generation)) = (
        annotations.get(CHANGED_BY),
        annotations.get(CHANGED_BY_GENERATION),
    ) && generation.parse::<i64>().ok() == meta.generation
        && !user.trim().is_empty()
    {
        return user.clone();
    }
    let spec_writers = meta.managed_fields.iter().flatten().filter(|m| {
        m.subresource.is_none()
            && m.manager.as_deref() != Some(FIELD_MANAGER)
            && m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.get("f:spec").is_some())
    });
    spec_writers
        .max_by(|a, b| a.time.cmp(&b.time))
        .and_then(|m| m.manager.clone())
        .map_or_else(|| "unknown".to_string(), |m| format!("manager:{m}"))
}

/// The records `change` calls for, in the order they happened.
pub fn transitions(change: &Change) -> Vec<Draft> {
    let meta = change.meta;
    let uid = meta.uid.clone().unwrap_or_default();
    let requester = requester(meta);
    let old = &change.old;
    let new = &change.new;
    let draft = |action: Action, actor: &str, key: String| Draft {
        actor: actor.to_string(),
        kind: change.kind.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: uid.clone(),
        generation: meta.generation,
        authorization: Some(change.authorization.clone()),
        action,
        reason: None,
        before: None,
        after: None,
        key: format!("{uid}/{}/{key}", action.as_str()),
    };
    // Key part for a condition flip: when the condition last changed before
    // and the generation it last saw. The time alone is to the second, so a
    // suspension, resumption and second suspension within one second would
    // share a key and the second go unrecorded; each asked-for flip changes
    // the spec, so the generation tells them apart. Both come from the old,
    // stored status: a retry after a crash computes the same key.
    let since = |type_: &str| {
        old.condition(type_).map_or_else(
            || "never".to_string(),
            |c| match c.observed_generation {
                Some(g) => format!("{}/g{g}", c.last_transition_time.0),
                None => c.last_transition_time.0.to_string(),
            },
        )
    };
    let phases = || {
        (
            Some(json!({"phase": old.phase})),
            Some(json!({"phase": new.phase})),
        )
    };
    let message = |type_: &str| {
        new.condition(type_)
            .map(|c| format!("{}: {}", c.reason, c.message))
    };
    let mut out = Vec::new();

    // created: the first status the operator writes.
    if old.phase.is_none() && new.phase.is_some() {
        let mut d = draft(Action::Created, &requester, "first".into());
        d.after = Some(change.spec_summary.clone());
        out.push(d);
    }

    // Members: what the spec names against what the ledger last recorded.
    let known = change.known_members.clone().unwrap_or_default();
    let names = |m: &Members| -> BTreeSet<(String, String)> {
        m.users
            .iter()
            .map(|u| ("user".to_string(), u.clone()))
            .chain(m.groups.iter().map(|g| ("group".to_string(), g.clone())))
            .collect()
    };
    let (now_named, before_named) = (names(&change.members), names(&known));
    let generation = meta.generation.unwrap_or(0);
    for (what, who) in now_named.difference(&before_named) {
        let mut d = draft(
            Action::MemberGranted,
            &requester,
            format!("{what}:{who}/{generation}"),
        );
        d.after = Some(json!({ what.as_str(): who }));
        out.push(d);
    }
    for (what, who) in before_named.difference(&now_named) {
        let mut d = draft(
            Action::MemberRemoved,
            &requester,
            format!("{what}:{who}/{generation}"),
        );
        d.before = Some(json!({ what.as_str(): who }));
        out.push(d);
    }

    let flipped_on = |type_: &str| !old.holds(type_) && new.holds(type_);
    let by_request = |type_: &str, own_reason: &str| {
        new.condition(type_).is_some_and(|c| c.reason == own_reason)
    };

    if flipped_on(types::PROVISIONED) {
        let mut d = draft(
            Action::Provisioned,
            OPERATOR_ACTOR,
            since(types::PROVISIONED),
        );
        d.reason = message(types::PROVISIONED);
        (d.before, d.after) = phases();
        out.push(d);
    }
    if flipped_on(types::DATA_PREPARED) {
        let mut d = draft(
            Action::DataPrepared,
            OPERATOR_ACTOR,
            since(types::DATA_PREPARED),
        );
        d.reason = message(types::DATA_PREPARED);
        d.before = Some(json!({"phase": old.phase}));
        d.after = Some(json!({"phase": new.phase, "data": new.prepared}));
        out.push(d);
    }
    if flipped_on(types::SUSPENDED) {
        let own = by_request(types::SUSPENDED, reasons::SUSPENDED_BY_REQUEST);
        let mut d = draft(
            Action::Suspended,
            if own { &requester } else { OPERATOR_ACTOR },
            since(types::SUSPENDED),
        );
        d.reason = if own {
            change.spec_reason.clone()
        } else {
            message(types::SUSPENDED)
        };
        (d.before, d.after) = phases();
        out.push(d);
    }
    let ending = matches!(
        new.phase.as_deref(),
        Some("TearingDown" | "Closed" | "Expired" | "Revoked")
    );
    if old.holds(types::SUSPENDED) && !new.holds(types::SUSPENDED) && !ending {
        // Resumed by whoever set the state back to Active (the object's, or
        // its authorization's: then the operator follows).
        let own = old
            .condition(types::SUSPENDED)
            .is_none_or(|c| c.reason != reasons::AUTHORIZATION_SUSPENDED);
        let mut d = draft(
            Action::Resumed,
            if own { &requester } else { OPERATOR_ACTOR },
            since(types::SUSPENDED),
        );
        (d.before, d.after) = phases();
        out.push(d);
    }
    if let (Some(before), Some(after)) = (&old.expires_at, &new.expires_at)
        && after.0 > before.0
    {
        let own = change.kind == "Authorization";
        let mut d = draft(
            Action::Renewed,
            if own { &requester } else { OPERATOR_ACTOR },
            after.0.to_string(),
        );
        d.before = Some(json!({"expiresAt": before}));
        d.after = Some(json!({"expiresAt": after}));
        out.push(d);
    }
    if flipped_on(types::REVOKED) {
        let own = by_request(types::REVOKED, reasons::REVOKED_BY_REQUEST);
        let mut d = draft(
            Action::Revoked,
            if own { &requester } else { OPERATOR_ACTOR },
            since(types::REVOKED),
        );
        d.reason = if own {
            change.spec_reason.clone()
        } else {
            message(types::REVOKED)
        };
        (d.before, d.after) = phases();
        out.push(d);
    }
    if flipped_on(types::EXPIRED) {
        let mut d = draft(Action::Expired, OPERATOR_ACTOR, since(types::EXPIRED));
        d.reason = message(types::EXPIRED);
        (d.before, d.after) = phases();
        out.push(d);
    }
    for w in &new.wipes {
        if old
            .wipes
            .iter()
            .any(|o| o.claim == w.claim && o.digest == w.digest)
        {
            continue;
        }
        let mut d = draft(
            Action::Wiped,
            OPERATOR_ACTOR,
            format!("{}/{}", w.claim, w.digest),
        );
        d.after = serde_json::to_value(w).ok();
        out.push(d);
    }
    let became =
        |phase: &str| new.phase.as_deref() == Some(phase) && old.phase.as_deref() != Some(phase);
    if became("Closed") {
        let bytes: i64 = new.wipes.iter().map(|w| w.bytes).sum();
        let mut d = draft(Action::Closed, OPERATOR_ACTOR, "final".into());
        d.reason = message(types::WIPED).or_else(|| message(types::READY));
        d.before = Some(json!({"phase": old.phase}));
        d.after =
            Some(json!({"phase": new.phase, "volumesWiped": new.wipes.len(), "bytesWiped": bytes}));
        out.push(d);
    }
    if became("Rejected") {
        let mut d = draft(
            Action::Rejected,
            OPERATOR_ACTOR,
            format!("{generation}/{}", since(types::READY)),
        );
        d.reason = message(types::READY);
        (d.before, d.after) = phases();
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::api::ScenarioPhase;
    use crate::conditions::{condition, set_condition};
    use crate::fixtures;

    fn at(s: &str) -> Time {
        Time(s.parse::<Timestamp>().expect("time"))
    }

    fn scenario() -> Scenario {
        let mut s = fixtures::scenario();
        s.metadata.uid = Some("u-1".into());
        s.metadata.generation = Some(3);
        s
    }

    fn status(phase: ScenarioPhase, flags: &[(&str, bool, &str)], now: &Time) -> ScenarioStatus {
        let mut st = ScenarioStatus {
            phase: Some(phase),
            ..ScenarioStatus::default()
        };
        for (t, holds, reason) in flags {
            set_condition(
                &mut st.conditions,
                condition(t, *holds, reason, "m", Some(3), now),
                now,
            );
        }
        st
    }

    fn actions(drafts: &[Draft]) -> Vec<Action> {
        drafts.iter().map(|d| d.action).collect()
    }

    #[test]
    fn a_first_status_records_created_and_the_members_granted() {
        let s = scenario();
        let new = status(
            ScenarioPhase::Provisioning,
            &[],
            &at("2026-01-01T00:00:00Z"),
        );
        let drafts = transitions(&Change::scenario(&s, &new, None));
        assert_eq!(actions(&drafts)[..1], [Action::Created], "{drafts:#?}");
        let granted: Vec<_> = drafts
            .iter()
            .filter(|d| d.action == Action::MemberGranted)
            .map(|d| d.after.clone().expect("after"))
            .collect();
        assert!(!granted.is_empty());
        assert_eq!(drafts[0].key, "u-1/created/first");
        assert_eq!(
            drafts[0].authorization.as_deref(),
            Some(s.spec.authorization.as_str())
        );
        // Once the ledger knows the members, nothing more about them.
        let again = transitions(&Change::scenario(&s, &new, Some(s.spec.members.clone())));
        assert_eq!(actions(&again), [Action::Created]);
    }

    #[test]
    fn a_life_gives_each_record_once_with_stable_keys() {
        let t0 = at("2026-01-01T00:00:00Z");
        let t1 = at("2026-01-02T00:00:00Z");
        let mut s = scenario();
        let members = Some(s.spec.members.clone());
        s.status = Some(status(ScenarioPhase::Provisioning, &[], &t0));
        let ready = status(
            ScenarioPhase::Ready,
            &[
                (types::PROVISIONED, true, "WorkspaceReady"),
                (types::SUSPENDED, false, "WorkspaceReady"),
            ],
            &t0,
        );
        let d = transitions(&Change::scenario(&s, &ready, members.clone()));
        assert_eq!(actions(&d), [Action::Provisioned]);
        assert_eq!(d[0].actor, OPERATOR_ACTOR);
        assert_eq!(d[0].key, "u-1/provisioned/never");
        // Computed again from the same old status: the same key.
        assert_eq!(
            transitions(&Change::scenario(&s, &ready, members.clone())),
            d
        );

        s.status = Some(ready.clone());
        s.spec.reason = Some("finding 7".into());
        let mut sealed = ready.clone();
        sealed.phase = Some(ScenarioPhase::Suspended);
        set_condition(
            &mut sealed.conditions,
            condition(
                types::SUSPENDED,
                true,
                reasons::SUSPENDED_BY_REQUEST,
                "m",
                Some(3),
                &t1,
            ),
            &t1,
        );
        let d = transitions(&Change::scenario(&s, &sealed, members.clone()));
        assert_eq!(actions(&d), [Action::Suspended]);
        assert_eq!(d[0].reason.as_deref(), Some("finding 7"));
        assert_eq!(d[0].key, format!("u-1/suspended/{}/g3", t0.0));
        let first_suspension = d[0].key.clone();
        assert_eq!(d[0].before, Some(json!({"phase": "Ready"})));
        assert_eq!(d[0].after, Some(json!({"phase": "Suspended"})));

        s.status = Some(sealed.clone());
        let d = transitions(&Change::scenario(&s, &ready, members.clone()));
        assert_eq!(actions(&d), [Action::Resumed]);
        assert_eq!(d[0].key, format!("u-1/resumed/{}/g3", t1.0));

        // Resumed and suspended again within the same second as the first
        // suspension (the spec changed twice more): the old condition's
        // time is the same, and still the record has a key of its own.
        let mut again = ready.clone();
        for c in again.conditions.iter_mut() {
            c.observed_generation = Some(5);
        }
        s.status = Some(again);
        let second = transitions(&Change::scenario(&s, &sealed, members.clone()));
        assert_eq!(actions(&second), [Action::Suspended]);
        assert_eq!(second[0].key, format!("u-1/suspended/{}/g5", t0.0));
        assert_ne!(second[0].key, first_suspension);
    }

    #[test]
    fn teardown_records_revocation_each_wipe_and_closing() {
        let t0 = at("2026-01-01T00:00:00Z");
        let mut s = scenario();
        let members = Some(s.spec.members.clone());
        s.status = Some(status(
            ScenarioPhase::Ready,
            &[(types::SUSPENDED, false, "WorkspaceReady")],
            &t0,
        ));
        let mut ending = status(
            ScenarioPhase::TearingDown,
            &[
                (types::REVOKED, true, reasons::AUTHORIZATION_REVOKED),
                (types::SUSPENDED, false, "x"),
            ],
            &t0,
        );
        // Not "resumed" while ending, and revoked by the operator following the authorization.
        let d = transitions(&Change::scenario(&s, &ending, members.clone()));
        assert_eq!(actions(&d), [Action::Revoked]);
        assert_eq!(d[0].actor, OPERATOR_ACTOR);

        let wipe = |claim: &str| WipeAttestation {
            volume: claim.into(),
            claim: claim.into(),
            bytes: 3000,
            files: 1,
            digest: "ab".repeat(32),
            completed_at: t0.clone(),
        };
        ending.wipes = vec![wipe("scratch")];
        let d = transitions(&Change::scenario(&s, &ending, members.clone()));
        assert_eq!(actions(&d), [Action::Revoked, Action::Wiped]);
        assert_eq!(
            d[1].after.as_ref().and_then(|a| a.get("bytes")),
            Some(&json!(3000))
        );

        let mut closed = ending.clone();
        closed.phase = Some(ScenarioPhase::Closed);
        s.status = Some(ending);
        let d = transitions(&Change::scenario(&s, &closed, members));
        assert_eq!(actions(&d), [Action::Closed]);
        assert_eq!(
            d[0].after.as_ref().and_then(|a| a.get("bytesWiped")),
            Some(&json!(3000))
        );
    }

    #[test]
    fn expiry_rejection_data_and_renewal_are_recorded() {
        let t0 = at("2026-01-01T00:00:00Z");
        let mut s = scenario();
        let members = Some(s.spec.members.clone());
        let mut before = status(ScenarioPhase::Ready, &[], &t0);
        before.expires_at = Some(at("2026-06-01T00:00:00Z"));
        s.status = Some(before.clone());
        let mut later = before.clone();
        later.expires_at = Some(at("2026-09-01T00:00:00Z"));
        set_condition(
            &mut later.conditions,
            condition(
                types::DATA_PREPARED,
                true,
                "DataPrepared",
                "m",
                Some(3),
                &t0,
            ),
            &t0,
        );
        let d = transitions(&Change::scenario(&s, &later, members.clone()));
        assert_eq!(actions(&d), [Action::DataPrepared, Action::Renewed]);
        // Moving the end earlier is not a renewal.
        let d = transitions(&Change::scenario(&s, &before, members.clone()));
        assert!(d.is_empty(), "{d:?}");
        s.status = Some(later.clone());
        let d = transitions(&Change::scenario(&s, &before, members.clone()));
        assert!(d.is_empty(), "{d:?}");

        let expired = status(
            ScenarioPhase::TearingDown,
            &[(types::EXPIRED, true, reasons::VALIDITY_ENDED)],
            &t0,
        );
        assert_eq!(
            actions(&transitions(&Change::scenario(
                &s,
                &expired,
                members.clone()
            ))),
            [Action::Expired]
        );
        let rejected = status(
            ScenarioPhase::Rejected,
            &[(types::READY, false, reasons::QUOTA_EXCEEDED)],
            &t0,
        );
        let d = transitions(&Change::scenario(&s, &rejected, members));
        assert_eq!(actions(&d), [Action::Rejected]);
        assert_eq!(d[0].reason.as_deref(), Some("QuotaExceeded: m"));
    }

    #[test]
    fn member_changes_are_granted_and_removed_by_the_requester() {
        let mut s = scenario();
        s.status = Some(status(
            ScenarioPhase::Ready,
            &[],
            &at("2026-01-01T00:00:00Z"),
        ));
        let known = Members {
            users: vec!["bob@acme.example".into()],
            groups: vec![],
        };
        s.spec.members = Members {
            users: vec!["carol@acme.example".into()],
            groups: vec!["analysts".into()],
        };
        let new = s.status.clone().expect("status");
        let d = transitions(&Change::scenario(&s, &new, Some(known)));
        assert_eq!(
            actions(&d),
            [
                Action::MemberGranted,
                Action::MemberGranted,
                Action::MemberRemoved
            ]
        );
        assert_eq!(d[0].after, Some(json!({"group": "analysts"})));
        assert_eq!(d[2].before, Some(json!({"user": "bob@acme.example"})));
        assert_eq!(d[2].key, "u-1/member-removed/user:bob@acme.example/3");
    }

    #[test]
    fn the_requester_is_the_stamped_user_of_this_generation_else_the_last_spec_writer() {
        let mut meta = ObjectMeta {
            generation: Some(4),
            ..ObjectMeta::default()
        };
        assert_eq!(requester(&meta), "unknown");
        let entry = |manager: &str, time: &str, spec: bool| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            time: Some(at(time)),
            fields_v1: Some(FieldsV1(if spec {
                json!({"f:spec": {}})
            } else {
                json!({"f:metadata": {}})
            })),
            ..ManagedFieldsEntry::default()
        };
        meta.managed_fields = Some(vec![
            entry("kubectl-create", "2026-01-01T00:00:00Z", true),
            entry("kubectl-edit", "2026-01-02T00:00:00Z", true),
            entry("cleanroom", "2026-01-03T00:00:00Z", true),
            entry("labeler", "2026-01-04T00:00:00Z", false),
        ]);
        assert_eq!(requester(&meta), "manager:kubectl-edit");
        meta.annotations = Some(
            [
                (CHANGED_BY.to_string(), "alice@acme.example".to_string()),
                (CHANGED_BY_GENERATION.to_string(), "3".to_string()),
            ]
            .into(),
        );
        // Stamped for an older generation: someone changed it since.
        assert_eq!(requester(&meta), "manager:kubectl-edit");
        meta.generation = Some(3);
        assert_eq!(requester(&meta), "alice@acme.example");
    }
}
