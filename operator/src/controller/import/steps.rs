//! The forward steps of an import, one per phase.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{review_key, uid};
use crate::api::airlock::{ExportPhase, ExportStatus, ReleasedCopy, SealedCopy, Subject};
use crate::api::import::IMPORT_NAMESPACE;
use crate::api::scenario::WorkspaceMode;
use crate::api::{Import, Time};
use crate::audit::Action as Audit;
use crate::audit::record::OPERATOR_ACTOR;
use crate::controller::airlock::steps::{
    authorization, checked, finished, open_review, tally_reviews,
};
use crate::controller::airlock::{Outcome, Workspace, draft};
use crate::controller::handover::{Moved, move_volume};
use crate::controller::kube_ops::{apply, delete_if_owned, free_or_owned};
use crate::controller::{Context, Error};
use crate::workspace::airlock::{self as builders, seal_name};
use crate::workspace::data::claim_for_volume;
use crate::workspace::import::{self as import_builders, claim_name, mount_path};

/// A volume move's next step comes when the target claim binds.
const MOVING: Duration = Duration::from_secs(3);

/// First sight: who asked, for what, from whom, on what basis.
pub(super) fn submit(import: &Import, w: &Workspace, status: &mut ExportStatus) -> Outcome {
    status.scenario = Some(w.id.scenario.clone());
    let files: Vec<_> = import
        .spec
        .files
        .iter()
        .map(|f| json!({"path": f.path, "schema": f.schema}))
        .collect();
    let after = json!({"phase": "Submitted", "supplier": import.spec.supplier,
        "legalBasis": import.spec.legal_basis, "stagingClaim": import.spec.staging_claim,
        "files": files, "purpose": import.spec.purpose});
    let record = draft(import, w, Audit::Submitted, &import.spec.requester, after);
    Outcome::Advance(ExportPhase::Submitted, vec![record])
}

/// Submitted: the staging claim must be staged for this scenario; the seal
/// claim and Job in the import namespace copy the named files from it.
pub(super) async fn seal(
    ctx: &Context,
    import: &Import,
    w: &Workspace,
    status: &mut ExportStatus,
    now: &Time,
) -> Result<Outcome, Error> {
    if w.scenario.spec.workspace.mode == WorkspaceMode::Batch {
        return Ok(Outcome::Fail(
            "a batch workspace's Job cannot take a new volume: imports need a service workspace"
                .into(),
        ));
    }
    let uid = uid(import);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), IMPORT_NAMESPACE);
    let staging = claims.get_opt(&import.spec.staging_claim).await?;
    // Checked while the seal is not made yet: after that the copy is what counts.
    let name = seal_name(&uid);
    let sealing = claims.get_metadata_opt(&name).await?.is_some();
    if !sealing
        && let Some(why) =
            import_builders::staging_problem(staging.as_ref(), import, &w.id.scenario)
    {
        return Ok(Outcome::Fail(why));
    }
    match free_or_owned(&claims, &name, &w.id).await? {
        Err(why) => return Ok(Outcome::Fail(why)),
        Ok(true) => {}
        Ok(false) => {
            let size = staging
                .as_ref()
                .and_then(size_of)
                .unwrap_or_else(|| Quantity("1Gi".into()));
            let sc = ctx.settings.storage_class.as_deref();
            apply(
                &claims,
                &import_builders::seal_claim(&w.id, import, &uid, size, sc),
            )
            .await?;
        }
    }
    let job = import_builders::seal_job(&w.id, import, &uid, &ctx.settings.agent_image);
    let message = match finished(ctx, w, IMPORT_NAMESPACE, job, "sealing failed").await? {
        Ok(message) => message,
        Err(outcome) => return Ok(outcome),
    };
    let paths: Vec<&str> = import.spec.files.iter().map(|f| f.path.as_str()).collect();
    let (manifest, files) = match builders::sealed_paths(&paths, &message) {
        Ok(sealed) => sealed,
        Err(e) => return Ok(Outcome::Fail(format!("sealing: {e}"))),
    };
    let volume = claims
        .get_opt(&name)
        .await?
        .and_then(|c| c.spec?.volume_name);
    let Some(volume) = volume else {
        return Ok(Outcome::Fail(format!(
            "sealing: claim {IMPORT_NAMESPACE}/{name} names no volume"
        )));
    };
    let after = json!({"phase": "Sealed", "manifestSha256": manifest, "files": files});
    status.sealed = Some(SealedCopy {
        volume,
        manifest_sha256: manifest,
        files,
        sealed_at: now.clone(),
    });
    Ok(Outcome::Advance(
        ExportPhase::Sealed,
        vec![draft(import, w, Audit::Sealed, OPERATOR_ACTOR, after)],
    ))
}

/// The staging claim's size: the sealed copy never needs more.
fn size_of(claim: &PersistentVolumeClaim) -> Option<Quantity> {
    let requested = claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    requested.get("storage").cloned()
}

/// Checking: `agent verify` then `agent scan` on the sealed copy.
pub(super) async fn check(
    ctx: &Context,
    import: &Import,
    w: &Workspace,
    status: &mut ExportStatus,
) -> Result<Outcome, Error> {
    let uid = uid(import);
    let manifest = status
        .sealed
        .as_ref()
        .map(|s| s.manifest_sha256.clone())
        .unwrap_or_default();
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), IMPORT_NAMESPACE);
    apply(
        &maps,
        &import_builders::scan_policy_map(&w.id, import, &uid),
    )
    .await?;
    let job = import_builders::scan_job(&w.id, import, &uid, &manifest, &ctx.settings.agent_image);
    let what = "the sealed copy did not verify or could not be checked";
    let message = match finished(ctx, w, IMPORT_NAMESPACE, job, what).await? {
        Ok(message) => message,
        Err(outcome) => return Ok(outcome),
    };
    let blocked = "an automatic check failed: it never enters; withdraw it (delete)";
    let record = match checked(import, w, (&message, &manifest), status, blocked) {
        Ok(record) => record,
        Err(outcome) => return Ok(outcome),
    };
    let Some(a) = authorization(ctx, w).await? else {
        return Ok(Outcome::Fail(format!(
            "authorization {} is gone",
            w.id.authorization
        )));
    };
    // Third-party data's classification is not known: the stricter default.
    status.approvals_required =
        Some(builders::approvals_required(a.spec.review.approvals, true) as i32);
    status.approvals = Some(0);
    // Reviews are admitted from the moment the status says InReview.
    open_review(ctx, &review_key(import), &import.spec.requester, w, &a).await?;
    Ok(Outcome::Advance(ExportPhase::InReview, vec![record]))
}

/// InReview: the reviews are tallied as an export's are.
pub(super) async fn review(
    ctx: &Context,
    import: &Import,
    w: &Workspace,
    status: &mut ExportStatus,
) -> Result<Outcome, Error> {
    let Some(a) = authorization(ctx, w).await? else {
        return Ok(Outcome::Fail(format!(
            "authorization {} is gone",
            w.id.authorization
        )));
    };
    open_review(ctx, &review_key(import), &import.spec.requester, w, &a).await?;
    let name = import.name_any();
    let asked = (Subject::Import(&name), import.spec.requester.as_str());
    tally_reviews(ctx, import, w, &a, asked, status).await
}

/// Approved: the sealed volume moves into the workspace as claim
/// `import-<name>` and is mounted read-only at `/imports/<name>`.
pub(super) async fn hand_over(
    ctx: &Context,
    import: &Import,
    w: &Workspace,
    status: &mut ExportStatus,
    now: &Time,
) -> Result<Outcome, Error> {
    let Some(sealed) = status.sealed.clone() else {
        return Ok(Outcome::Fail("no sealed copy is recorded".into()));
    };
    let uid = uid(import);
    let Some(pv) = Api::<PersistentVolume>::all(ctx.client.clone())
        .get_opt(&sealed.volume)
        .await?
    else {
        return Ok(Outcome::Fail(format!(
            "the sealed volume {} is gone",
            sealed.volume
        )));
    };
    let name = claim_name(&import.name_any());
    let bound_to = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.name.clone());
    if !matches!(bound_to.as_deref(), Some(n) if n == seal_name(&uid) || n == name) {
        return Ok(Outcome::Fail(format!(
            "volume {} is no longer the sealed copy; nothing is handed over",
            sealed.volume
        )));
    }
    let mut meta = w.id.meta(&name);
    meta.labels = Some(import_builders::import_labels(&w.id, import));
    match move_volume(&ctx.client, &w.id, &pv, claim_for_volume(meta, &pv)).await? {
        Moved::Refused(why) => return Ok(Outcome::Fail(why)),
        Moved::Moving => return Ok(Outcome::Wait(MOVING)),
        Moved::Done => {}
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), IMPORT_NAMESPACE);
    delete_if_owned(&claims, &seal_name(&uid), &w.id).await?;
    let released = ReleasedCopy {
        claim: format!("{}/{name}", w.id.namespace),
        path: mount_path(&import.name_any()),
        released_at: now.clone(),
    };
    status.released = Some(released.clone());
    status.message = Some(format!("mounted read-only at {}", released.path));
    // Mounted by the next pass, once the list of imports it reads says Released.
    let after = json!({"phase": "Released", "manifestSha256": sealed.manifest_sha256, "claim": released.claim, "path": released.path});
    let record = draft(import, w, Audit::Released, OPERATOR_ACTOR, after);
    Ok(Outcome::Advance(ExportPhase::Released, vec![record]))
}
