//! The Export controller: one step of the airlock per pass, read back from
//! the cluster every time (status phase, the sealed copy's claim and volume,
//! the agent Jobs), so the operator may be killed at any instant.
//!
//! `Submitted` -> seal (Job in the workspace) -> `Sealed` -> the sealed
//! volume moves to the vault -> `Checking` (verify, then `agent scan`) ->
//! `Blocked` | `InReview` -> `Approved` | `Rejected` | `Returned` -> the
//! volume moves to the release namespace and is copied to the
//! authorization's release claim -> `Released`. Every step has a deadline;
//! past it the export is `Failed`. In every final phase, and when the export
//! is deleted (withdrawn), the sealed copy is wiped with an attestation.
//!
//! Each phase change is in the audit ledger (with the files' hashes) before
//! it is in status.

pub(crate) mod cleanup;
pub(crate) mod delivery;
mod recall;
pub(crate) mod steps;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::info;

use super::kube_ops::{ensure_finalizer, remove_finalizer};
use super::{Context, Error};
use crate::api::airlock::{ExportPhase, ExportStatus};
use crate::api::scenario::ScenarioPhase;
use crate::api::{Export, Scenario, Time};
use crate::audit::record::OPERATOR_ACTOR;
use crate::audit::{Action as Audit, Draft};
use crate::workspace::{FIELD_MANAGER, Identity};

/// Holds an Export until its sealed copy is wiped.
pub const FINALIZER: &str = "cleanroom.io/airlock";

/// What one step decided.
pub(crate) enum Outcome {
    /// Nothing to write; look again within this long (a watch wakes sooner).
    Wait(Duration),
    /// Same phase, with these records (and the status the step changed).
    Note(Vec<Draft>, Duration),
    /// Go to `phase` (status fields already set by the step), with the
    /// ledger records of the change.
    Advance(ExportPhase, Vec<Draft>),
    /// The step cannot finish: `Failed` with this reason.
    Fail(String),
}

/// What the airlock moves: an Export out of a workspace, an Import into
/// one. Both carry the same status, recorded and written the same way.
pub(crate) trait Request:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The status as last read.
    fn current(&self) -> Option<&ExportStatus>;
}

impl Request for Export {
    fn current(&self) -> Option<&ExportStatus> {
        self.status.as_ref()
    }
}

impl Request for crate::api::Import {
    fn current(&self) -> Option<&ExportStatus> {
        self.status.as_ref()
    }
}

/// The export's workspace, scenario and authorization, checked by uid.
pub(crate) struct Workspace {
    pub id: Identity,
    pub scenario: Arc<Scenario>,
}

pub async fn reconcile(export: Arc<Export>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = export.namespace().unwrap_or_default();
    let api: Api<Export> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(workspace) = workspace_of(&ctx, &ns).await? else {
        return refuse_outside_workspace(&ctx, &api, &export).await;
    };
    let now = Time(Timestamp::now());
    let mut status = export.status.clone().unwrap_or_default();
    if export.meta().deletion_timestamp.is_some() {
        return withdraw(&ctx, &api, &export, &workspace, status, &now).await;
    }
    ensure_finalizer(&api, export.as_ref(), FINALIZER).await?;
    let phase = status.phase;
    let outcome = match phase {
        _ if overdue(&status, &now) => Outcome::Fail(format!(
            "the {} step did not finish by its deadline",
            phase.map_or("submission", phase_name)
        )),
        Some(ExportPhase::Released) => {
            return recall::released(&ctx, &api, &export, &workspace, status, &now).await;
        }
        Some(ExportPhase::Recalled) => {
            return recall::recalled(&ctx, &export, &workspace).await;
        }
        Some(p) if p.is_final() => {
            return cleanup::finish(&ctx, &api, &export, &workspace, status, &now).await;
        }
        _ if !open(&workspace.scenario) => Outcome::Wait(Duration::from_secs(60)),
        None => steps::submit(&export, &workspace, &mut status),
        Some(ExportPhase::Submitted) => {
            steps::seal(&ctx, &export, &workspace, &mut status, &now).await?
        }
        Some(ExportPhase::Sealed) => steps::to_vault(&ctx, &export, &workspace, &status).await?,
        Some(ExportPhase::Checking) => steps::check(&ctx, &export, &workspace, &mut status).await?,
        Some(ExportPhase::InReview) => {
            steps::review(&ctx, &export, &workspace, &mut status).await?
        }
        Some(ExportPhase::Approved) => {
            steps::release(&ctx, &export, &workspace, &mut status, &now).await?
        }
        Some(_) => Outcome::Wait(Duration::from_secs(60)),
    };
    apply_outcome(&ctx, &api, &export, &workspace, status, outcome, &now).await
}

/// Writes what a step decided: records, then status.
pub(crate) async fn apply_outcome<R: Request>(
    ctx: &Context,
    api: &Api<R>,
    export: &R,
    workspace: &Workspace,
    mut status: ExportStatus,
    outcome: Outcome,
    now: &Time,
) -> Result<Action, Error> {
    let (phase, drafts) = match outcome {
        Outcome::Wait(again) => return Ok(Action::requeue(again)),
        Outcome::Note(drafts, again) => {
            write_status(ctx, api, export, &status, drafts).await?;
            return Ok(Action::requeue(again));
        }
        Outcome::Advance(phase, drafts) => (phase, drafts),
        Outcome::Fail(why) => {
            status.message = Some(why.clone());
            let draft = draft(
                export,
                workspace,
                Audit::Failed,
                OPERATOR_ACTOR,
                json!({"phase": "Failed"}),
            );
            (
                ExportPhase::Failed,
                vec![Draft {
                    reason: Some(why),
                    ..draft
                }],
            )
        }
    };
    info!(kind = %R::kind(&()), name = %export.name_any(), namespace = %workspace.id.namespace, phase = phase_name(phase), "airlock");
    status.phase = Some(phase);
    status.deadline = deadline_of(phase, now);
    write_status(ctx, api, export, &status, drafts).await?;
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// How long each phase may last.
fn deadline_of(phase: ExportPhase, now: &Time) -> Option<Time> {
    use crate::workspace::airlock::deadline;
    match phase {
        ExportPhase::InReview => Some(deadline(now, 30 * 24 * 3600)),
        p if p.is_final() => None,
        _ => Some(deadline(now, 3600)),
    }
}

pub(crate) fn overdue(status: &ExportStatus, now: &Time) -> bool {
    let final_phase = status.phase.is_some_and(ExportPhase::is_final);
    !final_phase && status.deadline.as_ref().is_some_and(|d| d.0 < now.0)
}

/// Exports move only while their workspace is in use: nothing leaves a
/// suspended or ending workspace.
pub(crate) fn open(scenario: &Scenario) -> bool {
    let phase = scenario.status.as_ref().and_then(|s| s.phase);
    matches!(phase, Some(ScenarioPhase::Ready))
}

pub(crate) fn phase_name(p: ExportPhase) -> &'static str {
    use ExportPhase::*;
    match p {
        Submitted => "Submitted",
        Sealed => "Sealed",
        Checking => "Checking",
        Blocked => "Blocked",
        InReview => "InReview",
        Approved => "Approved",
        Rejected => "Rejected",
        Returned => "Returned",
        Released => "Released",
        Recalled => "Recalled",
        Failed => "Failed",
    }
}

/// The scenario whose workspace namespace `ns` is, checked by uid: the
/// namespace must carry the scenario's uid label.
pub(crate) async fn workspace_of(ctx: &Context, ns: &str) -> Result<Option<Workspace>, Error> {
    let Some(name) = ns.strip_prefix(crate::api::scenario::NAMESPACE_PREFIX) else {
        return Ok(None);
    };
    // A cache that has not synced yet (the operator just started) knows no
    // scenario: never conclude from it that there is none.
    let cached = ctx
        .scenarios
        .state()
        .into_iter()
        .find(|s| s.name_any() == name);
    let scenario = match cached {
        Some(s) => s,
        None => match Api::<Scenario>::all(ctx.client.clone())
            .get_opt(name)
            .await?
        {
            Some(s) => Arc::new(s),
            None => return Ok(None),
        },
    };
    let Some(id) = Identity::of(&scenario) else {
        return Ok(None);
    };
    let namespace = Api::<Namespace>::all(ctx.client.clone())
        .get_metadata_opt(ns)
        .await?;
    let ours = namespace.is_some_and(|n| id.owns(&n.metadata));
    Ok(ours.then_some(Workspace { id, scenario }))
}

/// An Export (or Import) outside a cleanroom workspace is Failed at once
/// (and lets go).
pub(crate) async fn refuse_outside_workspace<R: Request>(
    ctx: &Context,
    api: &Api<R>,
    export: &R,
) -> Result<Action, Error> {
    if export.meta().deletion_timestamp.is_some() {
        remove_finalizer(api, export, FINALIZER).await?;
        return Ok(Action::await_change());
    }
    let status = ExportStatus {
        phase: Some(ExportPhase::Failed),
        message: Some(format!(
            "an {} is made in a cleanroom workspace namespace (cr-<scenario>) whose scenario exists",
            R::kind(&())
        )),
        ..export.current().cloned().unwrap_or_default()
    };
    write_status(ctx, api, export, &status, Vec::new()).await?;
    Ok(Action::await_change())
}

/// Deleting an Export withdraws it: recorded, its sealed copy wiped, then
/// the finalizer goes. A released product stays released.
async fn withdraw(
    ctx: &Context,
    api: &Api<Export>,
    export: &Export,
    workspace: &Workspace,
    status: ExportStatus,
    now: &Time,
) -> Result<Action, Error> {
    let record = draft(
        export,
        workspace,
        Audit::Withdrawn,
        "unknown",
        json!({"phase": status.phase.map(phase_name)}),
    );
    ctx.audit.append(vec![record]).await?;
    cleanup::close_review(ctx, export, workspace, true).await?;
    match cleanup::wipe_sealed(ctx, export, workspace, &status, now).await? {
        cleanup::Wiped::Pending(again) => Ok(Action::requeue(again)),
        cleanup::Wiped::Done(_) => {
            remove_finalizer(api, export, FINALIZER).await?;
            Ok(Action::await_change())
        }
    }
}

/// Appends `drafts`, then writes `status` unless unchanged.
pub(crate) async fn write_status<R: Request>(
    ctx: &Context,
    api: &Api<R>,
    export: &R,
    status: &ExportStatus,
    drafts: Vec<Draft>,
) -> Result<(), Error> {
    ctx.audit.append(drafts).await?;
    if export.current() == Some(status) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": R::api_version(&()),
        "kind": R::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&export.name_any(), &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// A ledger record about `export` (or an import), keyed by its uid and the
/// action (and `after`, so two reviews make two records).
pub(crate) fn draft<R: Request>(
    export: &R,
    workspace: &Workspace,
    action: Audit,
    actor: &str,
    after: Value,
) -> Draft {
    let uid = export.meta().uid.clone().unwrap_or_default();
    let key = format!(
        "{uid}/{}/{}",
        action.as_str(),
        crate::audit::record::hash(&after.to_string())
    );
    Draft {
        actor: actor.into(),
        kind: R::kind(&()).into_owned(),
        name: format!("{}/{}", workspace.id.namespace, export.name_any()),
        uid,
        generation: export.meta().generation,
        authorization: Some(workspace.id.authorization.clone()),
        action,
        reason: None,
        before: None,
        after: Some(after),
        key,
    }
}
