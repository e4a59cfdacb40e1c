//! Teardown: compute and access first, then every volume wiped with proof
//! recorded in status *before* its claim is deleted, then the volumes and the
//! namespace. Each call moves as far as it can and asks to be called again;
//! every step can be repeated after a crash.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::kube_ops::{
    JobOutcome, apply, delete, job_outcome, patch_status, remove_finalizer, termination_message,
};
use super::lifecycle::End;
use super::{Context, Error};
use crate::api::dataset::VAULT_NAMESPACE;
use crate::api::{Scenario, ScenarioPhase, ScenarioStatus, Time, WipeAttestation};
use crate::conditions::{condition, reasons, set_condition, types};
use crate::workspace::compute::WORKSPACE;
use crate::workspace::wipe::{attestation, job_name, wipe_job};
use crate::workspace::{Identity, access, data, labels};

/// Poll interval while pods stop, claims go and the namespace is deleted.
const STEP: Duration = Duration::from_secs(2);
/// Poll interval while wipes run: the watch on Jobs wakes the reconcile as
/// soon as one finishes.
const WIPING: Duration = Duration::from_secs(5);
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
    ctx.memo.forget(&id.uid);
    let mut status = scenario.status.clone().unwrap_or_default();
    mark_ending(scenario, &mut status, end, now);
    patch_status(ctx, &api, scenario, &status).await?;
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
            patch_status(ctx, &api, scenario, &status).await?;
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
        return volumes_released(ctx, id).await;
    };
    if namespace.metadata.deletion_timestamp.is_some() {
        // Only ever deleted by us after every claim was wiped and removed.
        return Ok(Progress::Pending(STEP));
    }

    // 1. Compute and access go first (done once a wipe has been attested).
    if status.wipes.is_empty() {
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
    }

    // 2. The vault's share of the scenario: its preparation Jobs stop, the
    //    claims they wrote are wiped like the workspace's, key and plans go.
    // (A scenario's data is fixed: without datasets it never had any.)
    if !scenario.spec.data.is_empty()
        && let Some(wait) = vault_step(scenario, id, ctx, api, status, now).await?
    {
        return Ok(Progress::Pending(wait));
    }

    // 3. Every claim in the namespace is wiped, attested, then deleted.
    if let Some(wait) = wipe_claims(scenario, id, ctx, api, status, now, ns, None).await? {
        return Ok(Progress::Pending(wait));
    }

    // 4. No claim is left: the namespace (and whatever else is in it) goes.
    delete(&namespaces, ns).await?;
    Ok(Progress::Pending(STEP))
}

/// The vault objects of the scenario's preparations. `Some(wait)` while
/// something is still there.
async fn vault_step(
    scenario: &Scenario,
    id: &Identity,
    ctx: &Context,
    api: &Api<Scenario>,
    status: &mut ScenarioStatus,
    now: &Time,
) -> Result<Option<Duration>, Error> {
    let client = &ctx.client;
    let selector = data::vault_selector(id);
    let mine = ListParams::default().labels(&selector);
    let jobs: Api<Job> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    let mut running = false;
    for job in jobs.list(&mine).await?.items {
        delete(&jobs, &job.name_any()).await?;
        running = true;
    }
    // Preparation pods carry the dataset label; wipe pods do not.
    let pods: Api<Pod> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    let preparation_pods =
        ListParams::default().labels(&format!("{},{}", id.selector(), data::DATASET_LABEL));
    if running || !pods.list(&preparation_pods).await?.items.is_empty() {
        info!(scenario = %id.scenario, "waiting for preparation pods to stop");
        return Ok(Some(STEP));
    }
    if let Some(wait) = wipe_claims(
        scenario,
        id,
        ctx,
        api,
        status,
        now,
        VAULT_NAMESPACE,
        Some(&selector),
    )
    .await?
    {
        return Ok(Some(wait));
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    for cm in config_maps.list(&mine).await?.items {
        delete(&config_maps, &cm.name_any()).await?;
    }
    delete(
        &Api::<Secret>::namespaced(client.clone(), VAULT_NAMESPACE),
        &data::key_name(id),
    )
    .await?;
    Ok(None)
}

/// Wipes, attests and deletes each claim in `ns` (those `selector` picks, or
/// all). A claim that holds no volume of its own (never bound, or one whose
/// volume was handed over) has nothing to wipe and is deleted as it is.
/// `Some(wait)` while any is left.
#[allow(clippy::too_many_arguments)]
async fn wipe_claims(
    scenario: &Scenario,
    id: &Identity,
    ctx: &Context,
    api: &Api<Scenario>,
    status: &mut ScenarioStatus,
    now: &Time,
    ns: &str,
    selector: Option<&str>,
) -> Result<Option<Duration>, Error> {
    let client = &ctx.client;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let list = match selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    };
    let (mut pending, mut wiping) = (false, false);
    for claim in claims.list(&list).await?.items {
        let claim_name = claim.name_any();
        let attested = status.wipes.iter().any(|w| w.claim == claim_name);
        if attested || !holds_volume(ctx, ns, &claim).await? {
            delete(&jobs, &job_name(&claim_name)).await?;
            delete(&claims, &claim_name).await?;
            pending = true;
            continue;
        }
        match wipe(id, ctx, ns, &claim_name, now).await? {
            WipeState::Running => wiping = true,
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
                patch_status(ctx, api, scenario, status).await?;
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
                        format!("claim {ns}/{claim_name}: {message}"),
                        scenario.metadata.generation,
                        now,
                    ),
                    now,
                );
                patch_status(ctx, api, scenario, status).await?;
                delete(&jobs, &job_name(&claim_name)).await?;
                return Ok(Some(WIPE_RETRY));
            }
        }
    }
    Ok(if wiping {
        Some(WIPING)
    } else {
        pending.then_some(STEP)
    })
}

/// Whether a claim has a volume whose data is its own: it is bound, or a
/// volume already names it (binding is under way). A claim left `Lost` by a
/// hand-over, or one that never bound, holds nothing to wipe.
async fn holds_volume(
    ctx: &Context,
    ns: &str,
    claim: &PersistentVolumeClaim,
) -> Result<bool, Error> {
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
        return Ok(true);
    }
    let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) else {
        return Ok(false);
    };
    let pv = Api::<PersistentVolume>::all(ctx.client.clone())
        .get_opt(volume)
        .await?;
    Ok(pv
        .and_then(|pv| pv.spec)
        .and_then(|s| s.claim_ref)
        .is_some_and(|r| {
            r.namespace.as_deref() == Some(ns) && r.name.as_deref() == Some(&claim.name_any())
        }))
}

/// After the namespace is gone: volumes that were bound to its claims and
/// kept by a Retain policy are deleted too (already wiped); those with a
/// Delete policy are their provisioner's to remove. Done when none is left.
async fn volumes_released(ctx: &Context, id: &Identity) -> Result<Progress, Error> {
    let ns = id.namespace.as_str();
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mut left = 0;
    for pv in volumes.list(&ListParams::default()).await?.items {
        // Bound to one of the workspace's claims, or labelled at a hand-over
        // (a prepared volume wiped in the vault before it moved).
        let ours = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.namespace.as_deref())
            == Some(ns)
            || pv.labels().get(labels::SCENARIO) == Some(&id.scenario);
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

/// Starts (or follows) the wipe Job of one claim in `ns`.
async fn wipe(
    id: &Identity,
    ctx: &Context,
    ns: &str,
    claim: &str,
    now: &Time,
) -> Result<WipeState, Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let name = job_name(claim);
    let Some(job) = jobs.get_opt(&name).await? else {
        apply(&jobs, &wipe_job(id, ns, claim, &ctx.settings.agent_image)).await?;
        info!(scenario = %id.scenario, namespace = ns, claim, "wipe started");
        return Ok(WipeState::Running);
    };
    let outcome = job_outcome(&job);
    if outcome == JobOutcome::Running {
        return Ok(WipeState::Running);
    }
    let message = termination_message(&ctx.client, ns, &name).await?;
    if outcome == JobOutcome::Failed {
        return Ok(WipeState::Failed(message.unwrap_or_else(|| {
            "the wipe pod failed without a message".into()
        })));
    }
    let Some(message) = message else {
        return Ok(WipeState::Failed(
            "the wipe succeeded but left no report".into(),
        ));
    };
    // The claim names its role (scratch, data-<dataset>, or in the vault
    // prep-<scenario>-<dataset>).
    match attestation(claim, claim, &message, now.clone()) {
        Ok(a) => Ok(WipeState::Attested(a)),
        Err(e) => Ok(WipeState::Failed(e.to_string())),
    }
}
