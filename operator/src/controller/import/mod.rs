//! The Import controller: third-party data into a workspace through the
//! airlock, one step per pass, read back from the cluster every time.
//!
//! `Submitted` (the staging claim must be staged for this scenario) -> seal
//! (Job in the import namespace) -> `Sealed` -> `Checking` (verify, then
//! `agent scan` with the declared schema) -> `Blocked` | `InReview` ->
//! `Approved` | `Rejected` | `Returned` -> the sealed volume is handed into
//! the workspace as claim `import-<name>` and mounted read-only at
//! `/imports/<name>` -> `Released`. The records, the deadlines and the
//! status are the Export's ([`super::airlock`]). Every final phase but
//! `Released` wipes the sealed copy; withdrawing (deleting) a released
//! import unmounts it and wipes it from the workspace.

mod steps;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::airlock::cleanup::{Wiped, remove_annotations, wipe_held};
use super::airlock::{
    FINALIZER, Outcome, Workspace, apply_outcome, draft, open, overdue, phase_name,
    refuse_outside_workspace, workspace_of, write_status,
};
use super::kube_ops::{delete_if_owned, ensure_finalizer, remove_finalizer};
use super::{Context, Error};
use crate::api::airlock::{ExportPhase, ExportStatus};
use crate::api::import::IMPORT_NAMESPACE;
use crate::api::{Import, Time};
use crate::audit::Action as Audit;
use crate::audit::record::OPERATOR_ACTOR;
use crate::workspace::airlock::{scan_name, seal_name};
use crate::workspace::compute::WORKSPACE;
use crate::workspace::import::{
    IMPORT_REVIEW_ANNOTATION_PREFIX, IMPORTS_MANAGER, claim_name, compute_patch,
};
use crate::workspace::wipe::job_name;

pub async fn reconcile(import: Arc<Import>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = import.namespace().unwrap_or_default();
    let api: Api<Import> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(w) = workspace_of(&ctx, &ns).await? else {
        return refuse_outside_workspace(&ctx, &api, import.as_ref()).await;
    };
    let now = Time(Timestamp::now());
    let mut status = import.status.clone().unwrap_or_default();
    if import.meta().deletion_timestamp.is_some() {
        return withdraw(&ctx, &api, &import, &w, status, &now).await;
    }
    ensure_finalizer(&api, import.as_ref(), FINALIZER).await?;
    let phase = status.phase;
    let outcome = match phase {
        _ if overdue(&status, &now) => Outcome::Fail(format!(
            "the {} step did not finish by its deadline",
            phase.map_or("submission", phase_name)
        )),
        Some(ExportPhase::Released) => {
            remove_annotations(&ctx, &w, vec![review_key(&import)]).await?;
            mount(&ctx, &w).await?;
            return Ok(Action::await_change());
        }
        Some(p) if p.is_final() => return finish(&ctx, &api, &import, &w, status, &now).await,
        _ if !open(&w.scenario) => Outcome::Wait(Duration::from_secs(60)),
        None => steps::submit(&import, &w, &mut status),
        Some(ExportPhase::Submitted) => steps::seal(&ctx, &import, &w, &mut status, &now).await?,
        Some(ExportPhase::Sealed) => Outcome::Advance(ExportPhase::Checking, Vec::new()),
        Some(ExportPhase::Checking) => steps::check(&ctx, &import, &w, &mut status).await?,
        Some(ExportPhase::InReview) => steps::review(&ctx, &import, &w, &mut status).await?,
        Some(ExportPhase::Approved) => {
            steps::hand_over(&ctx, &import, &w, &mut status, &now).await?
        }
        Some(_) => Outcome::Wait(Duration::from_secs(60)),
    };
    apply_outcome(&ctx, &api, import.as_ref(), &w, status, outcome, &now).await
}

/// The namespace annotation that admits reviews of this import.
fn review_key(import: &Import) -> String {
    format!("{IMPORT_REVIEW_ANNOTATION_PREFIX}{}", import.name_any())
}

fn uid(import: &Import) -> String {
    import.metadata.uid.clone().unwrap_or_default()
}

/// A final phase other than `Released`: close the review, wipe the sealed
/// copy once.
async fn finish(
    ctx: &Context,
    api: &Api<Import>,
    import: &Import,
    w: &Workspace,
    mut status: ExportStatus,
    now: &Time,
) -> Result<Action, Error> {
    remove_annotations(ctx, w, vec![review_key(import)]).await?;
    if status.wipe.is_some() {
        return Ok(Action::await_change());
    }
    match wipe(ctx, import, w, &status, now).await? {
        Wiped::Pending(again) => Ok(Action::requeue(again)),
        Wiped::Done(None) => Ok(Action::await_change()),
        Wiped::Done(Some(attestation)) => {
            let record = draft(import, w, Audit::Wiped, OPERATOR_ACTOR, json!(attestation));
            status.wipe = Some(attestation);
            write_status(ctx, api, import, &status, vec![record]).await?;
            Ok(Action::await_change())
        }
    }
}

/// Deleting an Import withdraws it: recorded; unmounted from the workspace;
/// its copy wiped (sealed in the import namespace, or handed over in the
/// workspace); then the finalizer goes.
async fn withdraw(
    ctx: &Context,
    api: &Api<Import>,
    import: &Import,
    w: &Workspace,
    status: ExportStatus,
    now: &Time,
) -> Result<Action, Error> {
    let after = json!({"phase": status.phase.map(phase_name)});
    let record = draft(import, w, Audit::Withdrawn, "unknown", after);
    ctx.audit.append(vec![record]).await?;
    remove_annotations(ctx, w, vec![review_key(import)]).await?;
    // Unmounted before the wipe: no pod reads a volume being overwritten.
    mount(ctx, w).await?;
    match wipe(ctx, import, w, &status, now).await? {
        Wiped::Pending(again) => Ok(Action::requeue(again)),
        Wiped::Done(attestation) => {
            if let Some(a) = attestation {
                let record = draft(import, w, Audit::Wiped, OPERATOR_ACTOR, json!(a));
                ctx.audit.append(vec![record]).await?;
            }
            remove_finalizer(api, import, FINALIZER).await?;
            Ok(Action::await_change())
        }
    }
}

/// Wipes the import's copy wherever it is: sealed in the import namespace,
/// or handed over into the workspace (unless still mounted), then removes
/// its Jobs and policy.
async fn wipe(
    ctx: &Context,
    import: &Import,
    w: &Workspace,
    status: &ExportStatus,
    now: &Time,
) -> Result<Wiped, Error> {
    let uid = uid(import);
    let (seal, handed) = (seal_name(&uid), claim_name(&import.name_any()));
    let places = [
        (IMPORT_NAMESPACE, seal.as_str()),
        (w.id.namespace.as_str(), handed.as_str()),
    ];
    let (wiped, _) = wipe_held(ctx, w, &places, status, now).await?;
    if let Wiped::Done(_) = wiped {
        let jobs =
            |ns: &str| Api::<k8s_openapi::api::batch::v1::Job>::namespaced(ctx.client.clone(), ns);
        let maps = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
            ctx.client.clone(),
            IMPORT_NAMESPACE,
        );
        for name in [seal.clone(), scan_name(&uid), job_name(&seal)] {
            delete_if_owned(&jobs(IMPORT_NAMESPACE), &name, &w.id).await?;
        }
        delete_if_owned(&jobs(&w.id.namespace), &job_name(&handed), &w.id).await?;
        delete_if_owned(&maps, &scan_name(&uid), &w.id).await?;
    }
    Ok(wiped)
}

/// Brings the workspace Deployment's imports in line with the released,
/// not withdrawn, imports of its namespace (server-side apply by its own
/// field manager: the scenario's apply keeps its fields, this one its own).
pub(crate) async fn mount(ctx: &Context, w: &Workspace) -> Result<(), Error> {
    let ns = w.id.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    if deployments.get_metadata_opt(WORKSPACE).await?.is_none() {
        // Batch workspaces and ones not yet running: nothing to mount into.
        return Ok(());
    }
    let imports = Api::<Import>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    let mut names: Vec<String> = imports
        .items
        .iter()
        .filter(|i| i.meta().deletion_timestamp.is_none())
        .filter(|i| i.status.as_ref().and_then(|s| s.phase) == Some(ExportPhase::Released))
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    let params = PatchParams::apply(IMPORTS_MANAGER).force();
    deployments
        .patch(
            WORKSPACE,
            &params,
            &Patch::Apply(&compute_patch(ns, &names)),
        )
        .await?;
    Ok(())
}
