//! The forward steps of an export, one per phase.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Outcome, Workspace, draft};
use crate::api::airlock::{ExportPhase, ExportStatus, ReleasedCopy, SealedCopy, Subject};
use crate::api::dataset::{Classification, VAULT_NAMESPACE};
use crate::api::{Authorization, DataRequest, Dataset, Export, Review, Time};
use crate::audit::record::OPERATOR_ACTOR;
use crate::audit::{Action as Audit, Draft};
use crate::controller::handover::{Moved, move_volume};
use crate::controller::kube_ops::{
    JobOutcome, apply, delete_if_owned, free_or_owned, job_outcome, termination_message,
};
use crate::controller::{Context, Error};
use crate::workspace::access;
use crate::workspace::airlock::{
    self as builders, Excluded, RELEASE_NAMESPACE, REVIEW_ANNOTATION_PREFIX, Tally,
};
use crate::workspace::data::claim_for_volume;

/// How often a running agent step is looked at (its Job's watch wakes sooner).
const RUNNING: Duration = Duration::from_secs(30);
/// A volume move's next step comes when the target claim binds.
const MOVING: Duration = Duration::from_secs(3);
/// Reviews wake the export when made; this is only a safety net.
const WAITING_FOR_REVIEWS: Duration = Duration::from_secs(300);

fn uid(export: &Export) -> String {
    export.metadata.uid.clone().unwrap_or_default()
}

/// First sight: who asked, for what.
pub(super) fn submit(export: &Export, w: &Workspace, status: &mut ExportStatus) -> Outcome {
    status.scenario = Some(w.id.scenario.clone());
    let files: Vec<_> = export
        .spec
        .files
        .iter()
        .map(|f| json!({"path": f.path, "kind": f.kind}))
        .collect();
    let after = json!({"phase": "Submitted", "files": files, "context": export.spec.context, "controls": export.spec.controls});
    let record = draft(export, w, Audit::Submitted, &export.spec.requester, after);
    Outcome::Advance(ExportPhase::Submitted, vec![record])
}

/// Where an agent Job stands: `Ok(None)` while running (or just made).
async fn run_job(
    ctx: &Context,
    w: &Workspace,
    ns: &str,
    job: Job,
) -> Result<Result<Option<String>, String>, Error> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let name = job.name_any();
    if let Err(why) = free_or_owned(&api, &name, &w.id).await? {
        return Ok(Err(why));
    }
    let Some(found) = api.get_opt(&name).await? else {
        apply(&api, &job).await?;
        return Ok(Ok(None));
    };
    let message = || termination_message(&ctx.client, ns, &name);
    Ok(match job_outcome(&found) {
        JobOutcome::Running => Ok(None),
        JobOutcome::Succeeded => Ok(Some(message().await?.unwrap_or_default())),
        JobOutcome::Failed => Err(message()
            .await?
            .unwrap_or_else(|| format!("Job {ns}/{name} failed without a message"))),
    })
}

/// Submitted: the seal claim and Job in the workspace; their result is the
/// sealed copy's record.
pub(super) async fn seal(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
    status: &mut ExportStatus,
    now: &Time,
) -> Result<Outcome, Error> {
    let uid = uid(export);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &w.id.namespace);
    let name = builders::seal_name(&uid);
    match free_or_owned(&claims, &name, &w.id).await? {
        Err(why) => return Ok(Outcome::Fail(why)),
        Ok(false) => {
            let size = w.scenario.spec.workspace.scratch.0.clone();
            let claim = builders::seal_claim(
                &w.id,
                export,
                &uid,
                size,
                ctx.settings.storage_class.as_deref(),
            );
            if let Err(e) = apply(&claims, &claim).await {
                if !exceeds_quota(&e) {
                    return Err(e);
                }
                // The workspace has room for one seal at a time.
                status.message = Some("waiting for another export's seal to finish".into());
                return Ok(Outcome::Note(Vec::new(), RUNNING));
            }
        }
        Ok(true) => {}
    }
    let job = builders::seal_job(&w.id, export, &uid, &ctx.settings.agent_image);
    let message = match finished(ctx, w, &w.id.namespace, job, "sealing failed").await? {
        Ok(message) => message,
        Err(outcome) => return Ok(outcome),
    };
    let (manifest, files) = match builders::sealed_files(export, &message) {
        Ok(sealed) => sealed,
        Err(e) => return Ok(Outcome::Fail(format!("sealing: {e}"))),
    };
    let volume = claims
        .get_opt(&name)
        .await?
        .and_then(|c| c.spec?.volume_name);
    let Some(volume) = volume else {
        return Ok(Outcome::Fail(format!(
            "sealing: claim {}/{name} names no volume",
            w.id.namespace
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
        vec![draft(export, w, Audit::Sealed, OPERATOR_ACTOR, after)],
    ))
}

fn exceeds_quota(e: &Error) -> bool {
    matches!(e, Error::Kube(kube::Error::Api(s)) if s.code == 403 && s.message.contains("exceeded quota"))
}

/// The termination message of a finished agent Job, or what the step
/// decides while it runs (wait) or after it failed (`what`, and the error).
pub(crate) async fn finished(
    ctx: &Context,
    w: &Workspace,
    ns: &str,
    job: Job,
    what: &str,
) -> Result<Result<String, Outcome>, Error> {
    Ok(match run_job(ctx, w, ns, job).await? {
        Err(why) => Err(Outcome::Fail(format!("{what}: {}", agent_error(&why)))),
        Ok(None) => Err(Outcome::Wait(RUNNING)),
        Ok(Some(message)) => Ok(message),
    })
}

/// The manifest hash the sealed copy was recorded with.
fn manifest_of(status: &ExportStatus) -> String {
    status
        .sealed
        .as_ref()
        .map(|s| s.manifest_sha256.clone())
        .unwrap_or_default()
}

/// The error an agent reported, else the message as it is.
fn agent_error(message: &str) -> String {
    builders::copy_outcome(message)
        .err()
        .map_or_else(|| message.to_string(), |e| e.to_string())
}

/// The sealed volume, only if it is the recorded one and bound to a claim
/// of this export's name in one of the namespaces it moves through.
async fn sealed_volume(
    ctx: &Context,
    export: &Export,
    status: &ExportStatus,
) -> Result<Result<PersistentVolume, String>, Error> {
    let Some(sealed) = &status.sealed else {
        return Ok(Err("no sealed copy is recorded".into()));
    };
    let Some(pv) = Api::<PersistentVolume>::all(ctx.client.clone())
        .get_opt(&sealed.volume)
        .await?
    else {
        return Ok(Err(format!("the sealed volume {} is gone", sealed.volume)));
    };
    let name = builders::seal_name(&uid(export));
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let ours = claim_ref.is_some_and(|r| r.name.as_deref() == Some(name.as_str()));
    if !ours {
        return Ok(Err(format!(
            "volume {} is no longer bound to {name}; nothing is moved",
            sealed.volume
        )));
    }
    Ok(Ok(pv))
}

/// Moves the sealed volume to a claim of the same name in `ns`; `Ok(true)`
/// once bound there.
async fn move_sealed(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
    status: &ExportStatus,
    ns: &str,
) -> Result<Result<bool, String>, Error> {
    let pv = match sealed_volume(ctx, export, status).await? {
        Ok(pv) => pv,
        Err(why) => return Ok(Err(why)),
    };
    let name = builders::seal_name(&uid(export));
    let mut meta = w.id.meta(&name);
    meta.namespace = Some(ns.into());
    meta.labels = Some(builders::export_labels(&w.id, export));
    meta.owner_references = None;
    Ok(
        match move_volume(&ctx.client, &w.id, &pv, claim_for_volume(meta, &pv)).await? {
            Moved::Done => Ok(true),
            Moved::Moving => Ok(false),
            Moved::Refused(why) => Err(why),
        },
    )
}

/// Sealed: the volume leaves the workspace for the vault; the workspace's
/// Job and emptied claim go.
pub(super) async fn to_vault(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
    status: &ExportStatus,
) -> Result<Outcome, Error> {
    match move_sealed(ctx, export, w, status, VAULT_NAMESPACE).await? {
        Err(why) => Ok(Outcome::Fail(why)),
        Ok(false) => Ok(Outcome::Wait(MOVING)),
        Ok(true) => {
            let name = builders::seal_name(&uid(export));
            delete_if_owned(
                &Api::<Job>::namespaced(ctx.client.clone(), &w.id.namespace),
                &name,
                &w.id,
            )
            .await?;
            delete_if_owned(
                &Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &w.id.namespace),
                &name,
                &w.id,
            )
            .await?;
            Ok(Outcome::Advance(ExportPhase::Checking, Vec::new()))
        }
    }
}

/// Checking: `agent verify` then `agent scan` on the sealed copy in the vault.
pub(super) async fn check(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
    status: &mut ExportStatus,
) -> Result<Outcome, Error> {
    if let Some(blocked) = recalled_content(ctx, export, w, status).await? {
        return Ok(blocked);
    }
    let uid = uid(export);
    let manifest = manifest_of(status);
    let authorization = authorization(ctx, w).await?;
    let thresholds = authorization
        .as_ref()
        .and_then(|a| a.spec.review.scan.as_ref());
    let datasets = datasets_of(ctx, w).await?;
    // Products are matched against the raw data of every dataset the
    // workspace received (a missing dataset has no raw side to match).
    let raw: Vec<_> = datasets
        .iter()
        .filter_map(|(d, r)| Some(builders::RawSource::of(d.as_ref()?, r)))
        .collect();
    let policy = builders::scan_policy(thresholds);
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), VAULT_NAMESPACE);
    apply(
        &maps,
        &builders::scan_policy_map(&w.id, export, &uid, policy, &raw),
    )
    .await?;
    let image = &ctx.settings.agent_image;
    let job = builders::scan_job(&w.id, export, &uid, &manifest, image, &raw);
    let message = match finished(
        ctx,
        w,
        VAULT_NAMESPACE,
        job,
        "the sealed copy did not verify or could not be checked",
    )
    .await?
    {
        Ok(message) => message,
        Err(outcome) => return Ok(outcome),
    };
    let blocked = "an automatic check failed: never releasable; withdraw it (delete)";
    let record = match checked(export, w, (&message, &manifest), status, blocked) {
        Ok(record) => record,
        Err(outcome) => return Ok(outcome),
    };
    // A dataset gone from the catalogue counts as important: the stricter default.
    let important = datasets.iter().any(|(d, _)| {
        !matches!(
            d.as_ref().map(|d| d.spec.classification),
            Some(Classification::General)
        )
    });
    let configured = authorization.as_ref().and_then(|a| a.spec.review.approvals);
    status.approvals_required = Some(builders::approvals_required(configured, important) as i32);
    status.approvals = Some(0);
    // Reviews are admitted from the moment the status says InReview.
    if let Some(a) = &authorization {
        open_for_review(ctx, export, w, a).await?;
    }
    Ok(Outcome::Advance(ExportPhase::InReview, vec![record]))
}

/// What a finished scan said, as `message`, about the copy sealed with
/// `manifest`: the summary goes into status with its `checked` record; a
/// failed check is `Blocked` (with `blocked` as the message) and an
/// unreadable report `Failed`.
pub(crate) fn checked<R: super::Request>(
    object: &R,
    w: &Workspace,
    (message, manifest): (&str, &str),
    status: &mut ExportStatus,
    blocked: &str,
) -> Result<Draft, Outcome> {
    let summary =
        builders::scan_summary(message).map_err(|e| Outcome::Fail(format!("the checks: {e}")))?;
    let failed = summary.verdict == "fail";
    let after = json!({"phase": if failed { "Blocked" } else { "InReview" }, "manifestSha256": manifest, "scan": summary});
    let record = draft(object, w, Audit::Checked, OPERATOR_ACTOR, after);
    status.scan = Some(summary);
    if failed {
        status.message = Some(blocked.into());
        return Err(Outcome::Advance(ExportPhase::Blocked, vec![record]));
    }
    Ok(record)
}

/// `Blocked` when the sealed copy holds recalled content (see
/// [`builders::recalled_match`]), whatever the checks or reviewers say.
async fn recalled_content(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
    status: &mut ExportStatus,
) -> Result<Option<Outcome>, Error> {
    let Some(sealed) = &status.sealed else {
        return Ok(None);
    };
    let recalled = super::recall::recalled_hashes(ctx).await?;
    let Some(why) = builders::recalled_match(sealed, &recalled) else {
        return Ok(None);
    };
    let after =
        json!({"phase": "Blocked", "manifestSha256": sealed.manifest_sha256, "recalled": why});
    let record = draft(export, w, Audit::Checked, OPERATOR_ACTOR, after);
    status.message = Some(why);
    Ok(Some(Outcome::Advance(ExportPhase::Blocked, vec![record])))
}

pub(crate) async fn authorization(
    ctx: &Context,
    w: &Workspace,
) -> Result<Option<Authorization>, Error> {
    Ok(Api::<Authorization>::all(ctx.client.clone())
        .get_opt(&w.id.authorization)
        .await?)
}

/// Each dataset the scenario reads, as the catalogue has it now (`None`
/// when it is gone), with the scenario's request.
async fn datasets_of(
    ctx: &Context,
    w: &Workspace,
) -> Result<Vec<(Option<Dataset>, DataRequest)>, Error> {
    let api: Api<Dataset> = Api::all(ctx.client.clone());
    let mut out = Vec::new();
    for request in &w.scenario.spec.data {
        out.push((api.get_opt(&request.dataset).await?, request.clone()));
    }
    Ok(out)
}

/// InReview: the export is open for review (namespace annotations the
/// admission policy reads), and the reviews are tallied.
pub(super) async fn review(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
    status: &mut ExportStatus,
) -> Result<Outcome, Error> {
    let Some(authorization) = authorization(ctx, w).await? else {
        return Ok(Outcome::Fail(format!(
            "authorization {} is gone",
            w.id.authorization
        )));
    };
    open_for_review(ctx, export, w, &authorization).await?;
    let name = export.name_any();
    let asked = (Subject::Export(&name), export.spec.requester.as_str());
    tally_reviews(ctx, export, w, &authorization, asked, status).await
}

/// The reviews of `subject` (asked for by `asked.1`) tallied: the counted
/// ones recorded once each; Approved, Rejected or Returned when they say so.
pub(crate) async fn tally_reviews<R: super::Request>(
    ctx: &Context,
    object: &R,
    w: &Workspace,
    authorization: &Authorization,
    asked: (Subject<'_>, &str),
    status: &mut ExportStatus,
) -> Result<Outcome, Error> {
    let reviews = Api::<Review>::namespaced(ctx.client.clone(), &w.id.namespace)
        .list(&ListParams::default())
        .await?;
    let excluded = Excluded {
        requester: asked.1,
        members: &authorization.spec.members,
        reviewers: &authorization.spec.review.reviewers,
    };
    let required = status.approvals_required.unwrap_or(1).max(1) as usize;
    let (counted, tally) = builders::tally(asked.0, &reviews.items, &excluded, required);
    let drafts: Vec<_> = counted
        .iter()
        .filter(|r| !status.reviews.contains(r))
        .map(|r| {
            let after = json!({"review": r.name, "decision": r.decision});
            draft(object, w, Audit::Reviewed, &r.reviewer, after)
        })
        .collect();
    status.reviews = counted;
    if authorization.spec.review.reviewers.is_empty() {
        status.message = Some(format!(
            "authorization {} names no reviewers (spec.review.reviewers)",
            w.id.authorization
        ));
    }
    let what = match asked.0 {
        Subject::Export(_) => "export",
        Subject::Import(_) => "import",
    };
    let (phase, message) = match tally {
        Tally::Waiting { approvals } => {
            status.approvals = Some(approvals as i32);
            return Ok(Outcome::Note(drafts, WAITING_FOR_REVIEWS));
        }
        Tally::Approved { approvals } => {
            status.approvals = Some(approvals as i32);
            (
                ExportPhase::Approved,
                format!("approved by {approvals} reviewers"),
            )
        }
        Tally::Rejected(r) => (ExportPhase::Rejected, format!("rejected by {}", r.reviewer)),
        Tally::Returned(r) => (
            ExportPhase::Returned,
            format!(
                "returned by {}: change the files and submit a new {what}",
                r.reviewer
            ),
        ),
    };
    status.message = Some(message);
    Ok(Outcome::Advance(phase, drafts))
}

/// Writes on the workspace namespace what the Review policy checks: this
/// export's requester, and the authorization's members and reviewers.
async fn open_for_review(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
    a: &Authorization,
) -> Result<(), Error> {
    let key = format!("{REVIEW_ANNOTATION_PREFIX}{}", export.name_any());
    open_review(ctx, &key, &export.spec.requester, w, a).await
}

/// Writes on the workspace namespace `key` = `requester` (the Review policy
/// admits reviews of what `key` names, never by its requester), the
/// authorization's members and reviewers, and the reviewers' binding.
pub(crate) async fn open_review(
    ctx: &Context,
    key: &str,
    requester: &str,
    w: &Workspace,
    a: &Authorization,
) -> Result<(), Error> {
    let join = |v: &[String]| v.join(",");
    let patch = json!({"metadata": {"annotations": {
        key: requester,
        builders::MEMBERS_ANNOTATION: join(&a.spec.members.users),
        builders::MEMBER_GROUPS_ANNOTATION: join(&a.spec.members.groups),
        builders::REVIEWERS_ANNOTATION: join(&a.spec.review.reviewers.users),
        builders::REVIEWER_GROUPS_ANNOTATION: join(&a.spec.review.reviewers.groups),
    }}});
    Api::<Namespace>::all(ctx.client.clone())
        .patch(
            &w.id.namespace,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let role = &ctx.settings.reviewer_role;
    if let Some(binding) = access::reviewer_binding(&w.id, &a.spec.review.reviewers, role) {
        apply(
            &Api::<RoleBinding>::namespaced(ctx.client.clone(), &w.id.namespace),
            &binding,
        )
        .await?;
    }
    Ok(())
}

/// Approved: the volume moves to the release namespace and is copied to the
/// authorization's release claim, every hash checked on arrival.
pub(super) async fn release(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
    status: &mut ExportStatus,
    now: &Time,
) -> Result<Outcome, Error> {
    let uid = uid(export);
    // Content recalled since this export was checked is not released either,
    // unless its copy may already be on the release claim (its Job exists):
    // then it goes on to Released, recorded and recallable, rather than
    // Blocked with a copy nobody knows of.
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), RELEASE_NAMESPACE);
    let copying = jobs
        .get_metadata_opt(&builders::release_job_name(&uid))
        .await?
        .is_some();
    if !copying && let Some(blocked) = recalled_content(ctx, export, w, status).await? {
        return Ok(blocked);
    }
    ensure_release_claim(ctx, w).await?;
    match move_sealed(ctx, export, w, status, RELEASE_NAMESPACE).await? {
        Err(why) => return Ok(Outcome::Fail(why)),
        Ok(false) => return Ok(Outcome::Wait(MOVING)),
        Ok(true) => {
            // The vault's claim is empty now: the volume is the release's.
            let claims =
                Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), VAULT_NAMESPACE);
            delete_if_owned(&claims, &builders::seal_name(&uid), &w.id).await?;
        }
    }
    let manifest = manifest_of(status);
    let job = builders::release_job(&w.id, export, &uid, &manifest, &ctx.settings.agent_image);
    let message = match finished(ctx, w, RELEASE_NAMESPACE, job, "the release copy failed").await? {
        Ok(message) => message,
        Err(outcome) => return Ok(outcome),
    };
    match builders::copy_outcome(&message) {
        Ok(o) if o.manifest_sha256 == manifest => {}
        Ok(_) => {
            return Ok(Outcome::Fail(
                "the released copy's manifest differs from the sealed one".into(),
            ));
        }
        Err(e) => return Ok(Outcome::Fail(format!("the release copy: {e}"))),
    }
    let released = ReleasedCopy {
        claim: format!(
            "{RELEASE_NAMESPACE}/{}",
            builders::release_claim_name(&w.id.authorization)
        ),
        path: builders::release_dir(export),
        released_at: now.clone(),
    };
    let after = json!({"phase": "Released", "manifestSha256": manifest, "claim": released.claim, "path": released.path});
    status.released = Some(released);
    status.message = Some("released".into());
    // A recall is admitted from the moment the status says Released.
    super::recall::open_for_recall(ctx, export, w).await?;
    Ok(Outcome::Advance(
        ExportPhase::Released,
        vec![draft(export, w, Audit::Released, OPERATOR_ACTOR, after)],
    ))
}

/// The authorization's release claim, made once, as large as its storage
/// quota, and its delivery identity's access to it (brought up to date at
/// every release).
async fn ensure_release_claim(ctx: &Context, w: &Workspace) -> Result<(), Error> {
    let authorization = authorization(ctx, w).await?;
    if let Some(a) = &authorization {
        super::delivery::grant(&ctx.client, a).await?;
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), RELEASE_NAMESPACE);
    let name = builders::release_claim_name(&w.id.authorization);
    if claims.get_metadata_opt(&name).await?.is_some() {
        return Ok(());
    }
    let size = authorization
        .map(|a| a.spec.quota.storage.0)
        .unwrap_or_else(|| w.scenario.spec.workspace.scratch.0.clone());
    let claim = builders::release_claim(
        &w.id.authorization,
        size,
        ctx.settings.storage_class.as_deref(),
    );
    apply(&claims, &claim).await?;
    Ok(())
}
