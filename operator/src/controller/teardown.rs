//! Teardown: compute and access first, then every volume wiped with proof
//! recorded in status *before* its claim is deleted, then the volumes and the
//! namespace. Each call moves as far as it can and asks to be called again;
//! every step can be repeated after a crash.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::kube_ops::{apply, delete, patch_status, remove_finalizer};
use super::lifecycle::End;
use super::{Context, Error};
use crate::api::{Scenario, ScenarioPhase, ScenarioStatus, Time, WipeAttestation};
use crate::conditions::{condition, reasons, set_condition, types};
use crate::workspace::compute::WORKSPACE;
use crate::workspace::wipe::{attestation, job_name, wipe_job};
use crate::workspace::{Identity, access, labels};

/// Poll interval while pods stop, wipes run and objects disappear; watches on
/// Jobs usually wake the reconcile sooner.
const STEP: Duration = Duration::from_secs(1);
/// Pause before retrying a failed wipe.
const WIPE_RETRY: Duration = Duration::from_secs(15);

/// Where teardown stands after one pass.
enum Progress {
    /// Wait and call again.
    Pending(Duration),
    /// Everything is gone.
    Done,
}

/// Tears the workspace down for `end`, then closes the scenario.
pub async fn run(
    scenario: &Scenario,
    id: &Identity,
    end: End,
    ctx: &Context,
    now: &Time,
) -> Result<Action, Error> {
    let api: Api<Scenario> = Api::all(ctx.client.clone());
    let mut status = scenario.status.clone().unwrap_or_default();
    mark_ending(scenario, &mut status, end, now);
    patch_status(&api, scenario, &status).await?;
    // A scenario that never got a workspace has nothing to wipe.
    let progress = if status.namespace.is_some() {
        step(scenario, id, ctx, &api, &mut status, now).await?
    } else {
        Progress::Done
    };
    match progress {
        Progress::Pending(wait) => Ok(Action::requeue(wait)),
        Progress::Done => {
            close(scenario, &mut status, now);
            // The status write carries the Closed record; re-read so the
            // finalizer removal does not race our own update.
            patch_status(&api, scenario, &status).await?;
            if scenario.metadata.deletion_timestamp.is_some()
                && let Some(fresh) = api.get_opt(&scenario.name_any()).await?
            {
                remove_finalizer(&api, &fresh).await?;
            }
            info!(scenario = %id.scenario, reason = end.reason(), wipes = status.wipes.len(), "closed");
            Ok(Action::await_change())
        }
    }
}

/// Conditions and phase while tearing down.
fn mark_ending(scenario: &Scenario, status: &mut ScenarioStatus, end: End, now: &Time) {
    let generation = scenario.metadata.generation;
    status.observed_generation = generation;
    status.phase = Some(ScenarioPhase::TearingDown);
    let c = &mut status.conditions;
    let why = format!("tearing down: {}", end.message());
    set_condition(
        c,
        condition(
            types::READY,
            false,
            end.reason(),
            why.clone(),
            generation,
            now,
        ),
        now,
    );
    set_condition(
        c,
        condition(
            types::SUSPENDED,
            false,
            end.reason(),
            why.clone(),
            generation,
            now,
        ),
        now,
    );
    if end.is_revocation() {
        set_condition(
            c,
            condition(
                types::REVOKED,
                true,
                end.reason(),
                end.message(),
                generation,
                now,
            ),
            now,
        );
    } else if end != End::Deleted {
        set_condition(
            c,
            condition(
                types::EXPIRED,
                true,
                end.reason(),
                end.message(),
                generation,
                now,
            ),
            now,
        );
    }
}

/// The final record: Closed, with the wipe summary.
fn close(scenario: &Scenario, status: &mut ScenarioStatus, now: &Time) {
    let generation = scenario.metadata.generation;
    status.phase = Some(ScenarioPhase::Closed);
    let bytes: i64 = status.wipes.iter().map(|w| w.bytes).sum();
    let message = format!(
        "{} volume(s) overwritten with zeros, verified and deleted ({bytes} bytes); namespace deleted",
        status.wipes.len()
    );
    let c = &mut status.conditions;
    set_condition(
        c,
        condition(
            types::WIPED,
            true,
            reasons::WIPE_VERIFIED,
            message,
            generation,
            now,
        ),
        now,
    );
    set_condition(
        c,
        condition(
            types::READY,
            false,
            reasons::CLOSED,
            "the workspace is gone; this object is the record",
            generation,
            now,
        ),
        now,
    );
    set_condition(
        c,
        condition(
            types::PROVISIONED,
            false,
            reasons::CLOSED,
            "the workspace is gone",
            generation,
            now,
        ),
        now,
    );
}

async fn step(
    scenario: &Scenario,
    id: &Identity,
    ctx: &Context,
    api: &Api<Scenario>,
    status: &mut ScenarioStatus,
    now: &Time,
) -> Result<Progress, Error> {
    let client = &ctx.client;
    let ns = id.namespace.as_str();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let Some(namespace) = namespaces.get_opt(ns).await? else {
        return volumes_released(ctx, ns).await;
    };
    if namespace.metadata.deletion_timestamp.is_some() {
        // Only ever deleted by us after every claim was wiped and removed.
        return Ok(Progress::Pending(STEP));
    }

    // 1. Compute and access go first.
    delete(
        &Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), ns),
        WORKSPACE,
    )
    .await?;
    delete(&Api::<Job>::namespaced(client.clone(), ns), WORKSPACE).await?;
    delete(
        &Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client.clone(), ns),
        access::MEMBER_BINDING,
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let workspace_pods =
        ListParams::default().labels(&format!("{}={}", labels::COMPONENT, labels::WORKSPACE));
    let remaining = pods.list(&workspace_pods).await?.items.len();
    if remaining > 0 {
        info!(scenario = %id.scenario, remaining, "waiting for workspace pods to stop");
        return Ok(Progress::Pending(STEP));
    }

    // 2. Every claim in the namespace is wiped, attested, then deleted.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut pending = false;
    for claim in claims.list(&ListParams::default()).await?.items {
        let claim_name = claim.name_any();
        let attested = status.wipes.iter().any(|w| w.claim == claim_name);
        if attested {
            delete(&jobs, &job_name(&claim_name)).await?;
            delete(&claims, &claim_name).await?;
            pending = true;
            continue;
        }
        match wipe(id, ctx, &claim_name, now).await? {
            WipeState::Running => pending = true,
            WipeState::Attested(a) => {
                ctx.metrics.wiped(a.bytes);
                status.wipes.push(a);
                set_condition(
                    &mut status.conditions,
                    condition(
                        types::WIPED,
                        false,
                        reasons::TEARING_DOWN,
                        format!("{} volume(s) wiped so far", status.wipes.len()),
                        scenario.metadata.generation,
                        now,
                    ),
                    now,
                );
                // The proof is stored before the claim can go.
                patch_status(api, scenario, status).await?;
                delete(&jobs, &job_name(&claim_name)).await?;
                delete(&claims, &claim_name).await?;
                pending = true;
            }
            WipeState::Failed(message) => {
                warn!(scenario = %id.scenario, claim = %claim_name, %message, "wipe failed; the volume is kept sealed and the wipe retried");
                set_condition(
                    &mut status.conditions,
                    condition(
                        types::WIPED,
                        false,
                        reasons::WIPE_FAILED,
                        format!("claim {claim_name}: {message}"),
                        scenario.metadata.generation,
                        now,
                    ),
                    now,
                );
                patch_status(api, scenario, status).await?;
                delete(&jobs, &job_name(&claim_name)).await?;
                return Ok(Progress::Pending(WIPE_RETRY));
            }
        }
    }
    if pending {
        return Ok(Progress::Pending(STEP));
    }

    // 3. No claim is left: the namespace (and whatever else is in it) goes.
    delete(&namespaces, ns).await?;
    Ok(Progress::Pending(STEP))
}

/// After the namespace is gone: volumes that were bound to its claims and
/// kept by a Retain policy are deleted too (already wiped); those with a
/// Delete policy are their provisioner's to remove. Done when none is left.
async fn volumes_released(ctx: &Context, ns: &str) -> Result<Progress, Error> {
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mut left = 0;
    for pv in volumes.list(&ListParams::default()).await?.items {
        let ours = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.namespace.as_deref())
            == Some(ns);
        if !ours {
            continue;
        }
        left += 1;
        let retain = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Retain");
        if retain {
            delete(&volumes, &pv.name_any()).await?;
        }
    }
    Ok(if left == 0 {
        Progress::Done
    } else {
        Progress::Pending(STEP)
    })
}

enum WipeState {
    Running,
    Attested(WipeAttestation),
    Failed(String),
}

/// Starts (or follows) the wipe Job of one claim.
async fn wipe(id: &Identity, ctx: &Context, claim: &str, now: &Time) -> Result<WipeState, Error> {
    let ns = id.namespace.as_str();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let name = job_name(claim);
    let Some(job) = jobs.get_opt(&name).await? else {
        apply(&jobs, &wipe_job(id, claim, &ctx.settings.agent_image)).await?;
        info!(scenario = %id.scenario, claim, "wipe started");
        return Ok(WipeState::Running);
    };
    let job_status = job.status.unwrap_or_default();
    let succeeded = job_status.succeeded.unwrap_or(0) > 0;
    let failed = job_status.failed.unwrap_or(0) > 0
        || job_status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Failed" && c.status == "True");
    if !succeeded && !failed {
        return Ok(WipeState::Running);
    }
    let message = termination_message(ctx, ns, &name).await?;
    if failed {
        return Ok(WipeState::Failed(message.unwrap_or_else(|| {
            "the wipe pod failed without a message".into()
        })));
    }
    let Some(message) = message else {
        return Ok(WipeState::Failed(
            "the wipe succeeded but left no report".into(),
        ));
    };
    // The claim names its role (scratch, or data-<dataset>).
    match attestation(claim, claim, &message, now.clone()) {
        Ok(a) => Ok(WipeState::Attested(a)),
        Err(e) => Ok(WipeState::Failed(e.to_string())),
    }
}

/// The termination message of the newest finished pod of a Job.
async fn termination_message(ctx: &Context, ns: &str, job: &str) -> Result<Option<String>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await?;
    let mut finished: Vec<(Option<Time>, String)> = list
        .items
        .iter()
        .filter_map(|p| {
            let terminated = p
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()?
                .state
                .as_ref()?
                .terminated
                .as_ref()?;
            Some((
                terminated.finished_at.clone(),
                terminated.message.clone().unwrap_or_default(),
            ))
        })
        .collect();
    finished.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(finished
        .pop()
        .map(|(_, m)| m)
        .filter(|m| !m.trim().is_empty()))
}
