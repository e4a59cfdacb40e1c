//! PreparingData: each requested dataset is desensitized in the vault and its
//! volume handed over to the workspace, one idempotent step per pass.
//!
//! Per dataset, the state is read back from the cluster every time:
//!
//! 1. no record in status: the key Secret, the plan ConfigMap, the output
//!    claim and the `agent desensitize` Job exist in the vault; when the Job
//!    succeeds its report is saved in `status.data` (before anything moves);
//! 2. a record but no bound `data-<dataset>` claim in the workspace: the
//!    hand-over. The volume is set to `Retain` (so that no claim's deletion
//!    can reclaim it mid-way), the workspace claim is created naming the
//!    volume, and the volume's `claimRef` is moved to it. At every instant
//!    the volume is bound to a claim that exists: first the vault's, then the
//!    workspace's; the vault claim is deleted only after the move;
//! 3. the workspace claim is bound: the volume's reclaim policy is restored
//!    and the vault's Job, claim and plan go.
//!
//! When every dataset is at 3 the scenario's key is deleted: nothing will be
//! pseudonymized with it again (a scenario's data cannot change).

use std::io::Read;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use tracing::info;

use super::handover::{Moved, move_volume};
use super::kube_ops::{
    JobOutcome, apply, delete_if_owned, free_or_owned, job_outcome, termination_message,
};
use super::{Context, Error};
use crate::api::dataset::VAULT_NAMESPACE;
use crate::api::{DataRequest, PreparedData, Scenario, Time};
use crate::workspace::Identity;
use crate::workspace::data::{
    KEY_BYTES, data_claim_name, key_name, key_secret, output_claim, plan_config_map,
    preparation_job, preparation_name, prepared, workspace_claim,
};

/// Pause between the steps of a hand-over, as a safety net: the claim's
/// binding is watched and wakes the reconcile sooner.
const HAND_OVER_STEP: Duration = Duration::from_secs(5);
/// Look again at a running preparation after this long at the latest: the
/// watch on its Job wakes the reconcile when it finishes.
const PREPARING: Duration = Duration::from_secs(30);

/// Where the scenario's data stands after one pass.
#[derive(Debug, PartialEq)]
pub enum Preparation {
    /// Every dataset is mounted-ready in the workspace (or none was asked for).
    Ready,
    /// Work is under way: `what` says what; look again within `again`.
    Pending { what: String, again: Duration },
    /// A preparation failed; nothing retries it until its Job is deleted.
    Failed(String),
}

/// Moves every dataset of the scenario one step on, given the preparation
/// records in its status. Returns where the data stands and the records of
/// preparations that finished in this pass: they go into the status the
/// pass writes, and only a later pass, which reads them back from that
/// status, moves their volumes (a report is saved before its volume moves).
pub async fn prepare(
    scenario: &Scenario,
    id: &Identity,
    ctx: &Context,
    recorded: &[PreparedData],
    now: &Time,
) -> Result<(Preparation, Vec<PreparedData>), Error> {
    let mut pending = Vec::new();
    let mut delivered = Vec::new();
    let mut again = PREPARING;
    for request in &scenario.spec.data {
        let d = request.dataset.as_str();
        let step = match recorded.iter().find(|p| p.dataset == d) {
            None => run(id, ctx, request, now).await?,
            Some(record) => hand_over(id, ctx, d, &record.volume).await?,
        };
        match step {
            Step::Done => {}
            Step::Pending(what, wait) => {
                pending.push(what);
                again = again.min(wait);
            }
            Step::Failed(why) => return Ok((Preparation::Failed(why), delivered)),
            Step::Prepared(record) => {
                info!(scenario = %id.scenario, dataset = d, rows = record.rows_out, "prepared");
                delivered.push(record);
                again = again.min(HAND_OVER_STEP);
                pending.push(format!("handing {d} over"));
            }
        }
    }
    if !pending.is_empty() {
        let what = pending.join("; ");
        return Ok((Preparation::Pending { what, again }, delivered));
    }
    if !scenario.spec.data.is_empty() {
        delete_if_owned(
            &Api::<Secret>::namespaced(ctx.client.clone(), VAULT_NAMESPACE),
            &key_name(id),
            id,
        )
        .await?;
    }
    Ok((Preparation::Ready, delivered))
}

enum Step {
    Done,
    /// Under way (what, and how soon to look again).
    Pending(String, Duration),
    Failed(String),
    Prepared(PreparedData),
}

/// Step 1: the preparation Job and what it needs, then its report.
async fn run(
    id: &Identity,
    ctx: &Context,
    request: &DataRequest,
    now: &Time,
) -> Result<Step, Error> {
    let d = request.dataset.as_str();
    let client = &ctx.client;
    // The catalogue as the shared watch has it (the API server until it is
    // filled: a dataset not seen yet is not taken for absent).
    let Some(dataset) = ctx.datasets.get(client, d).await? else {
        return Ok(Step::Failed(format!("dataset {d} is not in the catalogue")));
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    let raw = &dataset.spec.source.claim_name;
    let Some(raw_claim) = claims.get_opt(raw).await? else {
        return Ok(Step::Failed(format!(
            "dataset {d}: its raw claim {raw} does not exist in {VAULT_NAMESPACE}"
        )));
    };
    let size = raw_claim
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .or_else(|| {
            raw_claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
        })
        .cloned()
        .ok_or_else(|| Error::MissingField(format!("claim {VAULT_NAMESPACE}/{raw}"), "size"))?;

    let name = preparation_name(id, d);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    let jobs: Api<Job> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    // Names come from the uid, so only a deliberate squatter can hold one:
    // its objects are never written to, and never taken for ours.
    if let Err(why) = free_or_owned(&config_maps, &name, id).await? {
        return Ok(Step::Failed(format!("dataset {d}: {why}")));
    }
    if let Err(why) = free_or_owned(&claims, &name, id).await? {
        return Ok(Step::Failed(format!("dataset {d}: {why}")));
    }
    if let Err(why) = ensure_key(ctx, id).await? {
        return Ok(Step::Failed(format!("dataset {d}: {why}")));
    }
    apply(&config_maps, &plan_config_map(id, &dataset, request)).await?;
    apply(
        &claims,
        &output_claim(id, d, size, ctx.settings.storage_class.as_deref()),
    )
    .await?;
    let Some(job) = jobs.get_opt(&name).await? else {
        apply(
            &jobs,
            &preparation_job(id, &dataset, &ctx.settings.agent_image),
        )
        .await?;
        info!(scenario = %id.scenario, dataset = d, "preparation started");
        return Ok(Step::Pending(format!("preparing {d}"), PREPARING));
    };
    if !id.owns(&job.metadata) {
        return Ok(Step::Failed(format!(
            "dataset {d}: Job {VAULT_NAMESPACE}/{name} exists and is not this scenario's; it is left alone"
        )));
    }
    let outcome = job_outcome(&job);
    if outcome == JobOutcome::Running {
        return Ok(Step::Pending(format!("preparing {d}"), PREPARING));
    }
    let message = termination_message(client, VAULT_NAMESPACE, &name).await?;
    let output = claims.get_opt(&name).await?;
    let volume = output
        .as_ref()
        .and_then(|c| c.spec.as_ref()?.volume_name.clone())
        .unwrap_or_default();
    let capacity = output
        .as_ref()
        .and_then(|c| {
            c.status
                .as_ref()?
                .capacity
                .as_ref()?
                .get("storage")
                .cloned()
        })
        .map(|q| q.0)
        .unwrap_or_default();
    let volume_of = (volume.as_str(), capacity.as_str());
    let result = match (outcome, message) {
        (_, None) => Err(format!(
            "dataset {d}: the preparation Job {VAULT_NAMESPACE}/{name} ended without a report"
        )),
        (JobOutcome::Failed, Some(m)) => match prepared(d, volume_of, &m, now.clone()) {
            Err(why) => Err(why),
            Ok(_) => Err(format!("dataset {d}: the preparation pod failed")),
        },
        (_, Some(m)) => prepared(d, volume_of, &m, now.clone()),
    };
    Ok(match result {
        Ok(_) if volume.is_empty() => {
            Step::Failed(format!("dataset {d}: the output claim {name} is not bound"))
        }
        Ok(record) => Step::Prepared(record),
        Err(why) => Step::Failed(format!(
            "{why}. Fix the data, then delete Job {VAULT_NAMESPACE}/{name} to prepare again"
        )),
    })
}

/// Creates the scenario's pseudonym key once. Never applied: a second
/// write would change the key and with it every pseudonym. A Secret of
/// that name that is not the scenario's is refused (`Ok(Err)`): a key
/// someone else chose would let them compute every pseudonym.
async fn ensure_key(ctx: &Context, id: &Identity) -> Result<Result<(), String>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), VAULT_NAMESPACE);
    match free_or_owned(&secrets, &key_name(id), id).await? {
        Ok(true) => return Ok(Ok(())),
        Ok(false) => {}
        Err(why) => return Ok(Err(why)),
    }
    let mut key = vec![0u8; KEY_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| Error::Random(e.to_string()))?;
    match secrets
        .create(&PostParams::default(), &key_secret(id, &key))
        .await
    {
        Ok(_) => Ok(Ok(())),
        // Made meanwhile: ours (a pass before a crash) or a squatter's.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(free_or_owned(&secrets, &key_name(id), id)
            .await?
            .map(|_| ())),
        Err(e) => Err(e.into()),
    }
}

/// Which volume holds a dataset's prepared file, from the cluster alone:
/// the one this scenario's vault output claim is bound to (while that claim
/// exists, i.e. until the hand-over is done), else the one its workspace
/// claim is bound to. `recorded` (the status) must agree: the status is
/// never the only evidence for which volume moves. `Err` says why not.
async fn prepared_volume(
    id: &Identity,
    ctx: &Context,
    d: &str,
    recorded: &str,
    workspace_claim: Option<&PersistentVolumeClaim>,
) -> Result<Result<PersistentVolume, String>, Error> {
    let client = &ctx.client;
    let vault_claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    let name = preparation_name(id, d);
    let claims = [
        vault_claims
            .get_opt(&name)
            .await?
            .filter(|c| id.owns(&c.metadata)),
        workspace_claim.cloned(),
    ];
    let Some(source) = claims.iter().flatten().find(|c| {
        c.spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_some()
    }) else {
        return Ok(Err(format!(
            "dataset {d}: neither the scenario's vault claim {VAULT_NAMESPACE}/{name} nor its workspace claim names a volume"
        )));
    };
    let volume = source
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if volume != recorded {
        return Ok(Err(format!(
            "dataset {d}: the status names volume {recorded}, but the scenario's claim {} holds {volume}; nothing is moved",
            source.name_any()
        )));
    }
    let Some(pv) = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&volume)
        .await?
    else {
        return Ok(Err(format!(
            "dataset {d}: its prepared volume {volume} is gone"
        )));
    };
    // Bound to one of the scenario's two claims, by uid: not a volume that
    // merely names a claim of that name.
    let uids: Vec<&str> = claims
        .iter()
        .flatten()
        .filter_map(|c| c.metadata.uid.as_deref())
        .collect();
    let bound_to_ours = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref())
        .is_some_and(|uid| uids.contains(&uid));
    if !bound_to_ours {
        return Ok(Err(format!(
            "dataset {d}: volume {volume} is not bound to this scenario's claims; nothing is moved"
        )));
    }
    Ok(Ok(pv))
}

/// Steps 2 and 3: the volume moves from the vault claim to the workspace's.
async fn hand_over(id: &Identity, ctx: &Context, d: &str, recorded: &str) -> Result<Step, Error> {
    let client = &ctx.client;
    let workspace_claims: Api<PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &id.namespace);
    let claim_name = data_claim_name(d);
    let existing = workspace_claims.get_opt(&claim_name).await?;
    if existing.as_ref().is_some_and(|c| !id.owns(&c.metadata)) {
        return Ok(Step::Failed(format!(
            "dataset {d}: claim {}/{claim_name} exists and is not this scenario's; it is left alone",
            id.namespace
        )));
    }
    let pv = match prepared_volume(id, ctx, d, recorded, existing.as_ref()).await? {
        Ok(pv) => pv,
        Err(why) => return Ok(Step::Failed(why)),
    };
    match move_volume(client, id, &pv, workspace_claim(id, d, &pv)).await? {
        Moved::Done => {
            clean_vault(id, ctx, d).await?;
            Ok(Step::Done)
        }
        Moved::Moving => {
            info!(scenario = %id.scenario, dataset = d, volume = pv.name_any(), "volume handed over to the workspace");
            Ok(Step::Pending(format!("handing {d} over"), HAND_OVER_STEP))
        }
        Moved::Refused(why) => Ok(Step::Failed(format!("dataset {d}: {why}"))),
    }
}

/// Removes one dataset's preparation objects from the vault once its volume
/// is the workspace's: the Job (its pod goes too), the emptied claim (no
/// longer bound to anything) and the plan.
async fn clean_vault(id: &Identity, ctx: &Context, d: &str) -> Result<(), Error> {
    let name = preparation_name(id, d);
    let client = &ctx.client;
    delete_if_owned(
        &Api::<Job>::namespaced(client.clone(), VAULT_NAMESPACE),
        &name,
        id,
    )
    .await?;
    delete_if_owned(
        &Api::<PersistentVolumeClaim>::namespaced(client.clone(), VAULT_NAMESPACE),
        &name,
        id,
    )
    .await?;
    delete_if_owned(
        &Api::<ConfigMap>::namespaced(client.clone(), VAULT_NAMESPACE),
        &name,
        id,
    )
    .await?;
    Ok(())
}
