//! Teardown: compute and access first, before anything is written (the
//! records and the status follow once no other stop is in flight, or a
//! step later, so that when many end at one instant every stop goes first;
//! the records carry the stop's time), then every volume
//! wiped with proof recorded in status *before* its claim is deleted, then
//! the volumes and the namespace. Each call moves as far as it can and asks
//! to be called again; every step can be repeated after a crash.
//!
//! Nothing is trusted by name alone: the namespace is the scenario's only if
//! it carries the scenario's uid (a foreign one is never wiped or deleted),
//! a claim is deleted unwiped only when the cluster shows it never held a
//! volume, and a wipe counts only when this scenario's wipe Job reported it
//! (never because the status says so).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::kube_ops::{
    JobOutcome, apply, delete, delete_if_owned, job_outcome, patch_status, remove_finalizer,
    termination_message,
};
use super::lifecycle::End;
use super::{Context, Error};
use crate::api::dataset::VAULT_NAMESPACE;
use crate::api::{Scenario, ScenarioPhase, ScenarioStatus, Time, WipeAttestation, WorkspaceMode};
use crate::conditions::{condition, reasons, set_condition, types};
use crate::workspace::compute::WORKSPACE;
use crate::workspace::isolation::{ENDED_AT_ANNOTATION, ENDING_ANNOTATION};
use crate::workspace::wipe::{attestation, job_name, wipe_job};
use crate::workspace::{Identity, access, data, labels};

/// Poll interval while pods stop, claims go and the namespace is deleted.
const STEP: Duration = Duration::from_secs(2);
/// How soon an ending pass that waits for other stops looks again.
const LOOK_AGAIN: Duration = Duration::from_millis(200);
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
/// `namespace` is the workspace namespace if it exists and is this
/// scenario's (see [`Identity::owns`]).
pub async fn run(
    scenario: &Scenario,
    id: &Identity,
    end: End,
    ctx: &Context,
    namespace: Option<&Namespace>,
    now: &Time,
) -> Result<Action, Error> {
    let api: Api<Scenario> = Api::all(ctx.client.clone());
    ctx.memo.forget(&id.uid);
    // Security first: compute and access stop before any status or ledger
    // write, so an unwritable ledger delays the record, never the stop.
    let batch = scenario.spec.workspace.mode == WorkspaceMode::Batch;
    let stopped_at = match namespace {
        Some(ns) => Some(stop_workspace(ctx, id, ns, batch, end, now).await?),
        None => None,
    };
    // While other workspaces are being stopped, the records, the status and
    // the wipes wait (up to a step after this stop): when many end at one
    // instant, the API server takes every stop before any of that work.
    let others = ctx.memo.stops_in_flight();
    if let Some(wait) = stopped_at
        .as_ref()
        .and_then(|at| rest_waits(at, now, others))
    {
        return Ok(Action::requeue(wait));
    }
    let mut status = scenario.status.clone().unwrap_or_default();
    mark_ending(scenario, &mut status, end, stopped_at.as_ref(), now);
    patch_status(ctx, &api, scenario, &status).await?;
    // A scenario that never got a workspace has nothing to wipe.
    let progress = if status.namespace.is_some() {
        step(scenario, id, ctx, &api, namespace, &mut status, now).await?
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
                remove_finalizer(&api, &fresh, super::FINALIZER).await?;
            }
            info!(scenario = %id.scenario, reason = end.reason(), wipes = status.wipes.len(), "closed");
            Ok(Action::await_change())
        }
    }
}

/// Deletes the compute and the members' binding, then marks the namespace
/// with the end (and its time) so that the end is final even before the
/// status can say so ([`super::lifecycle::ended`] reads the mark). Returns
/// when compute and access were stopped: the first time, now; after that,
/// the time the mark records.
async fn stop_workspace(
    ctx: &Context,
    id: &Identity,
    namespace: &Namespace,
    batch: bool,
    end: End,
    now: &Time,
) -> Result<Time, Error> {
    // Marked, by this process a moment ago (the cache may not show it yet)
    // or by any before it.
    let marked = recorded_end(namespace).or_else(|| ctx.memo.stop_of(&id.uid).map(Time));
    if let Some(at) = marked {
        return Ok(at);
    }
    let client = &ctx.client;
    let ns = id.namespace.as_str();
    let bindings = Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client.clone(), ns);
    let deployments = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), ns);
    let jobs = Api::<Job>::namespaced(client.clone(), ns);
    // All three at once: when many expire at one instant, each one's stop
    // waits for one round trip, not three.
    let job = async {
        if ctx.may_have_job(ns, batch) {
            delete(&jobs, WORKSPACE).await
        } else {
            Ok(false)
        }
    };
    let _stopping = ctx.memo.stopping();
    futures::try_join!(
        delete(&bindings, access::MEMBER_BINDING),
        delete(&deployments, WORKSPACE),
        job,
    )?;
    warn!(scenario = %id.scenario, reason = end.reason(), "compute and access stopped");
    let at = mark_end(ctx, namespace, end, now).await?;
    ctx.memo.stopped_at(&id.uid, at.0);
    Ok(at)
}

/// How long the rest of teardown waits before looking again, with
/// `others` workspaces being stopped: not at all when none are, nor once a
/// [`STEP`] has passed since this one was stopped at `stopped` (whatever
/// the clock that wrote the mark said, never more than a step).
fn rest_waits(stopped: &Time, now: &Time, others: usize) -> Option<Duration> {
    if others == 0 {
        return None;
    }
    let since = now.0.duration_since(stopped.0);
    let step = k8s_openapi::jiff::SignedDuration::try_from(STEP).ok()?;
    (since < step).then(|| (step - since).unsigned_abs().min(LOOK_AGAIN))
}

/// The time of the end the namespace's mark records, if it has one.
fn recorded_end(namespace: &Namespace) -> Option<Time> {
    let annotations = namespace.annotations();
    annotations.get(ENDING_ANNOTATION)?;
    let at = annotations
        .get(ENDED_AT_ANNOTATION)?
        .parse::<Timestamp>()
        .ok()?;
    Some(Time(at))
}

/// Marks the namespace with the end and `now`, unless a pass before this
/// one did: the patch holds the namespace's resourceVersion, so a namespace
/// read from a cache that lags behind an earlier mark is read again, and
/// the first mark's time is kept.
async fn mark_end(
    ctx: &Context,
    namespace: &Namespace,
    end: End,
    now: &Time,
) -> Result<Time, Error> {
    let api = Api::<Namespace>::all(ctx.client.clone());
    let name = namespace.name_any();
    let mut current = namespace.clone();
    loop {
        if let Some(at) = recorded_end(&current) {
            return Ok(at);
        }
        let mark = json!({"metadata": {
            "resourceVersion": current.resource_version(),
            "annotations": {
                ENDING_ANNOTATION: end.reason(),
                ENDED_AT_ANNOTATION: now.0.to_string(),
            },
        }});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&mark))
            .await
        {
            Ok(_) => return Ok(now.clone()),
            Err(kube::Error::Api(e)) if e.code == 409 => current = api.get(&name).await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Conditions and phase while tearing down. `stopped` is when compute and
/// access were stopped (if there was a workspace): the conditions carry
/// that time, so the records that follow them tell when it really happened.
fn mark_ending(
    scenario: &Scenario,
    status: &mut ScenarioStatus,
    end: End,
    stopped: Option<&Time>,
    now: &Time,
) {
    let generation = scenario.metadata.generation;
    let at = stopped.unwrap_or(now);
    status.observed_generation = generation;
    status.phase = Some(ScenarioPhase::TearingDown);
    let why = format!("tearing down: {}", end.message());
    let what = match stopped {
        Some(t) => format!("{}; compute and access stopped at {}", end.message(), t.0),
        None => end.message().to_string(),
    };
    let mut flags = vec![
        (types::READY, false, why.clone()),
        (types::SUSPENDED, false, why),
    ];
    if end.is_revocation() {
        flags.push((types::REVOKED, true, what));
    } else if end != End::Deleted {
        flags.push((types::EXPIRED, true, what));
    }
    for (type_, holds, message) in flags {
        let c = condition(type_, holds, end.reason(), message, generation, at);
        set_condition(&mut status.conditions, c, at);
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

#[allow(clippy::too_many_arguments)]
async fn step(
    scenario: &Scenario,
    id: &Identity,
    ctx: &Context,
    api: &Api<Scenario>,
    namespace: Option<&Namespace>,
    status: &mut ScenarioStatus,
    now: &Time,
) -> Result<Progress, Error> {
    let client = &ctx.client;
    let ns = id.namespace.as_str();
    if let Some(namespace) = namespace {
        if namespace.metadata.deletion_timestamp.is_some() {
            // Only ever deleted by us after every claim was wiped and removed.
            return Ok(Progress::Pending(STEP));
        }
        // 1. The workspace pods are gone (their compute was deleted first).
        // Teardown's lists read only names and counts, so they ask for
        // metadata: with a thousand passes in flight, full pod lists were
        // a tenth of the operator's heap.
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let workspace_pods =
            ListParams::default().labels(&format!("{}={}", labels::COMPONENT, labels::WORKSPACE));
        let remaining = pods.list_metadata(&workspace_pods).await?.items.len();
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

    // A namespace that is not the scenario's is never wiped or deleted.
    if namespace.is_none() {
        return volumes_released(ctx, id).await;
    }
    // 3. Every claim in the namespace is wiped, attested, then deleted.
    if let Some(wait) = wipe_claims(scenario, id, ctx, api, status, now, ns, None).await? {
        return Ok(Progress::Pending(wait));
    }

    // 4. No claim is left: the namespace (and whatever else is in it) goes.
    delete(&Api::<Namespace>::all(client.clone()), ns).await?;
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
    let preparations = ListParams::default().labels(&selector);
    let jobs: Api<Job> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    let mut running = false;
    for job in jobs.list_metadata(&preparations).await?.items {
        delete(&jobs, &job.name_any()).await?;
        running = true;
    }
    // Preparation pods carry the dataset label; wipe pods do not.
    let pods: Api<Pod> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    let preparation_pods =
        ListParams::default().labels(&format!("{},{}", id.selector(), data::DATASET_LABEL));
    if running
        || !pods
            .list_metadata(&preparation_pods)
            .await?
            .items
            .is_empty()
    {
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
    // Everything of this scenario left in the vault: wipe Jobs, plans.
    let mine = ListParams::default().labels(&id.selector());
    for job in jobs.list_metadata(&mine).await?.items {
        delete(&jobs, &job.name_any()).await?;
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    for cm in config_maps.list_metadata(&mine).await?.items {
        delete(&config_maps, &cm.name_any()).await?;
    }
    delete_if_owned(
        &Api::<Secret>::namespaced(client.clone(), VAULT_NAMESPACE),
        &data::key_name(id),
        id,
    )
    .await?;
    Ok(None)
}

/// Wipes, attests and deletes each claim in `ns` (those `selector` picks, or
/// all). A claim whose volume the cluster shows it never held (never bound,
/// or its volume handed over) has nothing to wipe and is deleted as it is;
/// any other is deleted only after this scenario's wipe Job reported it
/// wiped, and that attestation is in the status. `Some(wait)` while any is left.
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
        if claim.metadata.deletion_timestamp.is_some() {
            // Attested before its deletion was asked for; its wipe pod may
            // be what still holds it.
            delete_if_owned(&jobs, &job_name(&claim_name), id).await?;
            pending = true;
            continue;
        }
        let Some(volume) = own_volume(ctx, ns, &claim).await? else {
            delete(&claims, &claim_name).await?;
            pending = true;
            continue;
        };
        match wipe(id, ctx, ns, &claim_name, capacity(&claim).as_deref(), now).await? {
            WipeState::Running => wiping = true,
            WipeState::Attested(a) => {
                record_wipe(scenario, ctx, api, status, a, now).await?;
                // Found again by selector once the claim is gone.
                label_volume(ctx, id, &volume).await?;
                delete(&claims, &claim_name).await?;
                delete_if_owned(&jobs, &job_name(&claim_name), id).await?;
                pending = true;
            }
            WipeState::Failed(message) => {
                warn!(scenario = %id.scenario, claim = %claim_name, %message, "wipe failed; the volume is kept sealed and the wipe retried");
                ctx.metrics.wipe_failed();
                ctx.audit.warn_scenario(
                    scenario,
                    reasons::WIPE_FAILED,
                    format!(
                        "wipe of {ns}/{claim_name} failed (retried; the volume is kept): {message}"
                    ),
                );
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
                delete_if_owned(&jobs, &job_name(&claim_name), id).await?;
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

/// Stores the attestation (once: the same wipe seen again after a crash
/// adds nothing) before its claim may be deleted.
async fn record_wipe(
    scenario: &Scenario,
    ctx: &Context,
    api: &Api<Scenario>,
    status: &mut ScenarioStatus,
    a: WipeAttestation,
    now: &Time,
) -> Result<(), Error> {
    let known = status
        .wipes
        .iter()
        .any(|w| w.claim == a.claim && w.digest == a.digest && w.bytes == a.bytes);
    if known {
        return Ok(());
    }
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
    patch_status(ctx, api, scenario, status).await
}

/// The volume whose data is the claim's own: the one it names, bound back
/// to this very claim (by uid). `None` when the cluster shows it holds
/// none: never bound, or its volume handed over to another claim (a
/// prepared volume now in the workspace).
async fn own_volume(
    ctx: &Context,
    ns: &str,
    claim: &PersistentVolumeClaim,
) -> Result<Option<String>, Error> {
    let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
        return Ok(None);
    };
    let pv = Api::<PersistentVolume>::all(ctx.client.clone())
        .get_opt(&volume)
        .await?;
    let bound_here = pv
        .and_then(|pv| pv.spec)
        .and_then(|s| s.claim_ref)
        .is_some_and(|r| {
            r.namespace.as_deref() == Some(ns)
                && r.name.as_deref() == Some(&claim.name_any())
                && (r.uid.is_none() || r.uid == claim.metadata.uid)
        });
    Ok(bound_here.then_some(volume))
}

/// Labels a wiped volume as this scenario's, so that it is found by
/// selector (and may be deleted) once its claim is gone.
async fn label_volume(ctx: &Context, id: &Identity, volume: &str) -> Result<(), Error> {
    let patch = json!({"metadata": {"labels": id.labels()}});
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .patch(volume, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// After the namespace is gone: this scenario's volumes (labelled when
/// they were wiped, or at a hand-over) that a Retain policy kept are
/// deleted; those with a Delete policy are their provisioner's to remove.
/// Found by selector, never by listing every volume. Done when none is left.
async fn volumes_released(ctx: &Context, id: &Identity) -> Result<Progress, Error> {
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mine = ListParams::default().labels(&id.selector());
    let mut left = 0;
    for pv in volumes.list(&mine).await?.items {
        left += 1;
        let spec = pv.spec.as_ref();
        let retain =
            spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Retain");
        let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if retain && !bound {
            delete(&volumes, &pv.name_any()).await?;
        }
    }
    Ok(if left == 0 {
        Progress::Done
    } else {
        Progress::Pending(STEP)
    })
}

pub(crate) enum WipeState {
    Running,
    Attested(WipeAttestation),
    Failed(String),
}

/// A claim's size: what its volume can hold, and so the most a wipe of it
/// may have to write (`agent wipe --max-bytes`).
pub(crate) fn capacity(claim: &PersistentVolumeClaim) -> Option<String> {
    let actual = claim.status.as_ref().and_then(|s| s.capacity.as_ref());
    let requested = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref());
    actual
        .and_then(|c| c.get("storage"))
        .or_else(|| requested.and_then(|r| r.get("storage")))
        .map(|q| q.0.clone())
}

/// Starts (or follows) the wipe Job of one claim in `ns`, bounded by the
/// claim's `capacity`: more data than that means something is wrong, and
/// the wipe fails visibly instead of running on. A Job of that name that
/// is not this scenario's is never followed or deleted: its report would
/// be someone else's word.
pub(crate) async fn wipe(
    id: &Identity,
    ctx: &Context,
    ns: &str,
    claim: &str,
    capacity: Option<&str>,
    now: &Time,
) -> Result<WipeState, Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let name = job_name(claim);
    let Some(job) = jobs.get_opt(&name).await? else {
        let job = match wipe_job(id, ns, claim, &ctx.settings.agent_image, capacity) {
            Ok(job) => job,
            Err(e) => return Ok(WipeState::Failed(e.to_string())),
        };
        apply(&jobs, &job).await?;
        info!(scenario = %id.scenario, namespace = ns, claim, "wipe started");
        return Ok(WipeState::Running);
    };
    if !id.owns(&job.metadata) {
        return Ok(WipeState::Failed(format!(
            "Job {ns}/{name} exists and is not this scenario's; it is left alone and the claim kept until it is removed"
        )));
    }
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
    // prep-<uid>-<dataset>).
    match attestation(claim, claim, &message, now.clone()) {
        Ok(a) => Ok(WipeState::Attested(a)),
        Err(e) => Ok(WipeState::Failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn marked(annotations: &[(&str, &str)]) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        ns
    }

    #[test]
    fn only_a_whole_mark_records_when_the_workspace_was_stopped() {
        let at = "2026-11-30T12:00:00Z";
        let whole = marked(&[(ENDING_ANNOTATION, "Expired"), (ENDED_AT_ANNOTATION, at)]);
        assert_eq!(
            recorded_end(&whole).map(|t| t.0.to_string()),
            Some(at.into())
        );
        // Without the end, or with a time that does not parse, the stop is
        // done (again) and the mark written, never taken as done.
        assert!(recorded_end(&marked(&[(ENDED_AT_ANNOTATION, at)])).is_none());
        assert!(recorded_end(&marked(&[(ENDING_ANNOTATION, "Expired")])).is_none());
        let garbled = marked(&[
            (ENDING_ANNOTATION, "Expired"),
            (ENDED_AT_ANNOTATION, "soon"),
        ]);
        assert!(recorded_end(&garbled).is_none());
        assert!(recorded_end(&Namespace::default()).is_none());
    }

    #[test]
    fn the_rest_of_teardown_waits_for_other_stops_up_to_a_step() {
        let at = |s: &str| Time(s.parse().expect("time"));
        let stopped = at("2026-11-30T12:00:00Z");
        // Alone: records, status and wipes follow at once.
        assert_eq!(rest_waits(&stopped, &stopped, 0), None);
        // Others stopping: look again soon, until a step has passed.
        assert_eq!(rest_waits(&stopped, &stopped, 5), Some(LOOK_AGAIN));
        assert_eq!(
            rest_waits(&stopped, &at("2026-11-30T12:00:01.9Z"), 5),
            Some(Duration::from_millis(100))
        );
        assert_eq!(rest_waits(&stopped, &at("2026-11-30T12:00:02Z"), 5), None);
        assert_eq!(rest_waits(&stopped, &at("2026-11-30T12:05:00Z"), 5), None);
        // A mark from a clock ahead of this one: no longer than otherwise.
        assert_eq!(
            rest_waits(&stopped, &at("2026-11-30T11:00:00Z"), 5),
            Some(LOOK_AGAIN)
        );
    }
}
