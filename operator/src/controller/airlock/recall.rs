//! After release: a reviewer's `Recall` takes the released copy back, and
//! its content is never released again.
//!
//! While an export is `Released` the operator writes
//! `released.cleanroom.io/<export>` on the workspace namespace: the Review
//! policy admits a `Recall` only with it (and Approve, Reject or Return only
//! while `review.cleanroom.io/<export>` is there). The first counted Recall
//! adds the content's hashes to the recalled set, then an `agent recall` Job
//! wipes the released directory on the release claim and checks it is gone;
//! the `recalled` record (the reviewer as actor, the manifest hash, the
//! attestation) is written before the status says `Recalled`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::steps::{authorization, finished};
use super::{Outcome, Workspace, cleanup, draft, write_status};
use crate::api::airlock::{ExportPhase, ExportStatus, RecalledCopy};
use crate::api::{Export, Review, Time};
use crate::audit::Action as Audit;
use crate::controller::kube_ops::delete_if_owned;
use crate::controller::{Context, Error};
use crate::workspace::airlock::{
    self as builders, Excluded, RECALLED_MAP, RELEASE_NAMESPACE, RELEASED_ANNOTATION_PREFIX,
};
use crate::workspace::wipe::attestation;

/// Recalls wake the export when made; this is only a safety net.
const WATCHING: Duration = Duration::from_secs(600);
/// A failed recall Job is kept for a human; look again this often.
const KEPT: Duration = Duration::from_secs(300);

/// `Released`: the sealed copy is wiped first (as in every final phase),
/// then the export stays open to a recall.
pub(super) async fn released(
    ctx: &Context,
    api: &Api<Export>,
    export: &Export,
    w: &Workspace,
    mut status: ExportStatus,
    now: &Time,
) -> Result<Action, Error> {
    if status.wipe.is_none() {
        return cleanup::finish(ctx, api, export, w, status, now).await;
    }
    let Some(authorization) = authorization(ctx, w).await? else {
        return Ok(Action::requeue(WATCHING));
    };
    open_for_recall(ctx, export, w).await?;
    let reviews = Api::<Review>::namespaced(ctx.client.clone(), &w.id.namespace)
        .list(&ListParams::default())
        .await?;
    let excluded = Excluded {
        requester: &export.spec.requester,
        members: &authorization.spec.members,
        reviewers: &authorization.spec.review.reviewers,
    };
    let Some(recall) = builders::recall_of(&export.name_any(), &reviews.items, &excluded) else {
        return Ok(Action::requeue(WATCHING));
    };
    let Some(sealed) = status.sealed.clone() else {
        return Ok(Action::requeue(WATCHING));
    };
    let name = format!("{}/{}", w.id.namespace, export.name_any());
    // Blocked for good before anything is deleted: killed after this, the
    // content stays unreleasable and the next pass takes the copy back.
    remember(ctx, builders::recalled_entries(&name, &sealed)).await?;
    let uid = export.metadata.uid.clone().unwrap_or_default();
    let job = builders::recall_job(
        &w.id,
        export,
        &uid,
        &sealed.manifest_sha256,
        &ctx.settings.agent_image,
    );
    let claim = builders::release_claim_name(&w.id.authorization);
    let wiped = match finished(ctx, w, RELEASE_NAMESPACE, job, "the recall").await? {
        Ok(message) => {
            // The Job's own end, not this pass's clock: a pass that sees a
            // stale status repeats the same record, which the ledger drops.
            let done = completed_at(ctx, &uid)
                .await?
                .unwrap_or_else(|| now.clone());
            attestation(&claim, &claim, &message, done).map_err(|e| e.to_string())
        }
        Err(Outcome::Fail(why)) => Err(why),
        Err(_) => return Ok(Action::requeue(Duration::from_secs(10))),
    };
    let wipe = match wiped {
        Ok(wipe) => wipe,
        Err(why) => {
            warn!(export = %name, %why, "recall failed; the Job is kept for a human");
            status.message = Some(format!(
                "recall by {} failed, the released copy may still be there: {why} (delete Job {RELEASE_NAMESPACE}/{} to retry)",
                recall.reviewer,
                builders::recall_job_name(&uid)
            ));
            write_status(ctx, api, export, &status, Vec::new()).await?;
            return Ok(Action::requeue(KEPT));
        }
    };
    let comment = reviews
        .items
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(recall.name.as_str()))
        .map(|r| r.spec.comment.clone());
    let path = status.released.as_ref().map(|r| r.path.clone());
    let after = json!({"phase": "Recalled", "manifestSha256": sealed.manifest_sha256,
        "review": recall.name, "path": path, "wipe": wipe});
    let record = super::Draft {
        reason: comment,
        ..draft(export, w, Audit::Recalled, &recall.reviewer, after)
    };
    status.message = Some(format!(
        "recalled by {}: the released copy is wiped and its content is never released again",
        recall.reviewer
    ));
    status.recalled = Some(RecalledCopy {
        review: recall.name,
        reviewer: recall.reviewer,
        wipe,
    });
    status.phase = Some(ExportPhase::Recalled);
    write_status(ctx, api, export, &status, vec![record]).await?;
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// When the recall Job finished, as its status says.
async fn completed_at(ctx: &Context, uid: &str) -> Result<Option<Time>, Error> {
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), RELEASE_NAMESPACE);
    let job = jobs.get_opt(&builders::recall_job_name(uid)).await?;
    Ok(job.and_then(|j| j.status?.completion_time))
}

/// `Recalled`: no more reviews of it, and its Job goes.
pub(super) async fn recalled(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
) -> Result<Action, Error> {
    cleanup::close_review(ctx, export, w, true).await?;
    let uid = export.metadata.uid.clone().unwrap_or_default();
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), RELEASE_NAMESPACE);
    delete_if_owned(&jobs, &builders::recall_job_name(&uid), &w.id).await?;
    Ok(Action::await_change())
}

/// Writes `released.cleanroom.io/<export>` (the requester) on the workspace
/// namespace, once: from then on the Review policy admits a Recall of it.
/// Written before the status says `Released`, as reviews are opened before
/// `InReview`.
pub(super) async fn open_for_recall(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
) -> Result<(), Error> {
    let key = format!("{RELEASED_ANNOTATION_PREFIX}{}", export.name_any());
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let open = namespaces
        .get_metadata_opt(&w.id.namespace)
        .await?
        .is_some_and(|n| n.annotations().contains_key(&key));
    if !open {
        let patch = json!({"metadata": {"annotations": {key: export.spec.requester}}});
        namespaces
            .patch(
                &w.id.namespace,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(())
}

/// Every content hash ever recalled: hash -> what it was.
///
/// Kept in one ConfigMap in the operator's namespace rather than on the
/// Export (deleted with its workspace) or only in the ledger (pruned after
/// its retention): it outlives both, survives restarts, and only the
/// operator may write it (policy `cleanroom-airlock-recalled`). Each entry
/// is also a `recalled` record in the ledger, so a deleted entry shows.
pub(super) async fn recalled_hashes(ctx: &Context) -> Result<BTreeMap<String, String>, Error> {
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.audit_namespace);
    Ok(maps
        .get_opt(RECALLED_MAP)
        .await?
        .and_then(|m| m.data)
        .unwrap_or_default())
}

/// Adds `entries` to the recalled set (each key once; never removed).
async fn remember(ctx: &Context, entries: BTreeMap<String, String>) -> Result<(), Error> {
    let ns = &ctx.settings.audit_namespace;
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let known = recalled_hashes(ctx).await?;
    let new: BTreeMap<_, _> = entries
        .into_iter()
        .filter(|(k, _)| !known.contains_key(k))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    if maps.get_metadata_opt(RECALLED_MAP).await?.is_none() {
        let map = builders::recalled_map(ns, new);
        maps.create(&PostParams::default(), &map).await?;
        return Ok(());
    }
    let patch = json!({"data": new});
    maps.patch(RECALLED_MAP, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
