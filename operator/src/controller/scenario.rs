//! The Scenario reconciler: provision the workspace, seal it while suspended,
//! hand over to [`super::teardown`] when it ends.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::data::{self, Preparation};
use super::kube_ops::{apply, delete, ensure_finalizer, patch_status};
use super::lifecycle::{Decision, Seal, decide, ended, until};
use super::memo;
use super::{Context, Error, foreign, teardown};
use crate::api::{Authorization, Dataset, Scenario, ScenarioPhase, ScenarioStatus, Time};
use crate::conditions::{condition, reasons, set_condition, types};
use crate::metrics::Kind;
use crate::rules::{
    Rejection, check_aggregate_quota, check_scenario_count, validate_authorization,
    validate_scenario,
};
use crate::workspace::compute::{Compute, WORKSPACE, compute, scratch_claim};
use crate::workspace::isolation::ENDING_ANNOTATION;
use crate::workspace::{Identity, access, isolation};

/// How often to look again while something is on its way (a volume binding,
/// a pod starting, a preparation running). Only a safety net: the watches on
/// the scenario's Deployments, Jobs and claims wake the reconcile as soon as
/// any of them changes.
const SOON: Duration = Duration::from_secs(30);
/// How soon a pass that removed foreign objects is followed by one that
/// confirms the workspace is isolated again.
const RECHECK_ISOLATION: Duration = Duration::from_secs(2);

/// Reconciles one Scenario. A failure is also shown in its own condition,
/// `ReconcileFailed` (best effort), so `kubectl describe` says why nothing
/// happens; it is cleared by the next pass that succeeds. It is not written
/// into `Ready`: the passes themselves set `Ready`, and the two writes would
/// wake each other without end instead of backing off.
pub async fn reconcile(scenario: Arc<Scenario>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&scenario, &ctx).await;
    ctx.metrics.reconciled(
        Kind::Scenario,
        started.elapsed(),
        result.as_ref().err().map(Error::category),
    );
    let failed = result.as_ref().err();
    let flagged = scenario
        .status
        .as_ref()
        .is_some_and(|s| crate::conditions::is_true(&s.conditions, types::RECONCILE_FAILED));
    if failed.is_some() || flagged {
        record_failure(&scenario, &ctx, failed).await;
    }
    result
}

/// Sets (or clears, with `None`) the `ReconcileFailed` condition.
async fn record_failure(scenario: &Scenario, ctx: &Context, error: Option<&Error>) {
    let api: Api<Scenario> = Api::all(ctx.client.clone());
    // The status as it is now, not as this reconcile found it: the pass may
    // have written more before it failed (a wipe attestation, just before its
    // claim is deleted), and applying the older status would take that back.
    let Ok(Some(fresh)) = api.get_opt(&scenario.name_any()).await else {
        return;
    };
    // A Closed scenario's record is final.
    if fresh.status.as_ref().and_then(|s| s.phase) == Some(ScenarioPhase::Closed) && error.is_none()
    {
        return;
    }
    let now = Time(Timestamp::now());
    let mut status = fresh.status.clone().unwrap_or_default();
    let (reason, message) = match error {
        Some(e) => (reason_of(e.category()), format!("{e}; retrying")),
        None => (
            "Recovered".to_string(),
            "the last reconcile succeeded".to_string(),
        ),
    };
    let failed = condition(
        types::RECONCILE_FAILED,
        error.is_some(),
        &reason,
        message,
        fresh.metadata.generation,
        &now,
    );
    set_condition(&mut status.conditions, failed, &now);
    let _ = patch_status(ctx, &api, &fresh, &status).await;
}

/// Condition reasons are CamelCase: `api` -> `Api`, `invalid-object` -> `InvalidObject`.
fn reason_of(category: &str) -> String {
    category
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
        })
        .collect()
}

async fn reconcile_inner(scenario: &Scenario, ctx: &Context) -> Result<Action, Error> {
    let name = scenario.name_any();
    let id = Identity::of(scenario)
        .ok_or_else(|| Error::MissingField(format!("Scenario {name}"), "name or uid"))?;
    let api: Api<Scenario> = Api::all(ctx.client.clone());
    let now = Time(Timestamp::now());
    let status = scenario.status.clone().unwrap_or_default();

    if status.phase == Some(ScenarioPhase::Closed) {
        // Closed is final: the record stays, nothing is recreated.
        ctx.memo.forget_closed(&id.uid);
        if scenario.metadata.deletion_timestamp.is_some() {
            super::kube_ops::remove_finalizer(&api, scenario, super::FINALIZER).await?;
        }
        return Ok(Action::await_change());
    }
    if scenario.metadata.deletion_timestamp.is_none() {
        ensure_finalizer(&api, scenario, super::FINALIZER).await?;
    }

    let authorization = cached_authorization(ctx, &scenario.spec.authorization).await?;
    let provisioned = status.namespace.is_some();
    let namespace = WorkspaceNamespace::read(ctx, &id).await?;
    let ours = namespace.ours();
    let mark = ours
        .and_then(|ns| ns.annotations().get(ENDING_ANNOTATION))
        .map(String::as_str);
    let begun = ended(scenario.status.as_ref(), mark);
    match decide(scenario, authorization.as_deref(), provisioned, begun, &now) {
        // Boxed, here and below, so that a pass waiting for a place holds
        // a small future, not the largest of its steps.
        Decision::TearDown(end) => {
            Box::pin(teardown::run(scenario, &id, end, ctx, ours, &now)).await
        }
        Decision::Wait {
            reason,
            message,
            until: at,
        } => {
            let mut next = status.clone();
            next.observed_generation = scenario.metadata.generation;
            next.phase = Some(ScenarioPhase::Pending);
            set_condition(
                &mut next.conditions,
                condition(
                    types::READY,
                    false,
                    reason,
                    message,
                    scenario.metadata.generation,
                    &now,
                ),
                &now,
            );
            patch_status(ctx, &api, scenario, &next).await?;
            Ok(match at.as_ref().and_then(|at| until(&now, at)) {
                Some(wait) => Action::requeue(wait),
                None => Action::await_change(),
            })
        }
        Decision::Run { seal, expires_at } => {
            // The semaphore is never closed: there is no error to handle.
            let _place = ctx.provisioning.acquire().await.ok();
            let Some(authorization) = authorization else {
                return Err(Error::MissingField(
                    format!("Scenario {name}"),
                    "authorization",
                ));
            };
            let wake_at_expiry = until(&now, &expires_at).unwrap_or(SOON);
            if let Err(rejection) = admit(scenario, &authorization, ctx).await? {
                let sealable = provisioned && ours.is_some();
                reject(&api, scenario, &id, ctx, rejection, &now, sealable).await?;
                return Ok(Action::requeue(wake_at_expiry));
            }
            if let WorkspaceNamespace::Foreign = namespace {
                // Never adopted, written to, wiped or deleted; looked at
                // again in case its owner removes it.
                let rejection = namespace_not_owned(&id);
                reject(&api, scenario, &id, ctx, rejection, &now, false).await?;
                return Ok(Action::requeue(SOON.min(wake_at_expiry)));
            }
            let workspace =
                isolation::namespace_approving(&id, &authorization.spec.approved_images);
            let again = Box::pin(provision(
                &api,
                scenario,
                &id,
                &workspace,
                ctx,
                seal,
                &expires_at,
                &now,
                ours,
            ))
            .await?;
            Ok(Action::requeue(again.min(wake_at_expiry)))
        }
    }
}

/// The authorization as the shared watch has it; until that cache has been
/// filled once, as the API server has it (an absent one is never taken for
/// deleted, and the pass, a teardown among them, never waits for the
/// cache). A cache lags by the watch's delay, no more, and its change wakes
/// the scenario again.
async fn cached_authorization(
    ctx: &Context,
    name: &str,
) -> Result<Option<Arc<Authorization>>, Error> {
    ctx.authorizations.get(&ctx.client, name).await
}

/// The workspace namespace as the cluster has it. Only one marked with the
/// scenario's uid is the scenario's: a `cr-<name>` made by anyone else (or
/// by a former scenario of the same name) is never adopted.
enum WorkspaceNamespace {
    Absent,
    Ours(Box<Namespace>),
    Foreign,
}

impl WorkspaceNamespace {
    /// From the shared cache when it holds the namespace as this
    /// scenario's (the owner is checked there as here); otherwise, absent or
    /// not ours as far as the cache knows, from the API server, so that a
    /// namespace is never taken for absent or foreign on a lagging watch.
    async fn read(ctx: &Context, id: &Identity) -> Result<WorkspaceNamespace, Error> {
        if let Some(Some(ns)) = ctx.namespaces.cached(&id.namespace)
            && id.owns(&ns.metadata)
        {
            return Ok(WorkspaceNamespace::Ours(Box::new((*ns).clone())));
        }
        let found = Api::<Namespace>::all(ctx.client.clone())
            .get_opt(&id.namespace)
            .await?;
        Ok(Self::of(id, found))
    }

    /// Whose the namespace found under the scenario's name is.
    fn of(id: &Identity, found: Option<Namespace>) -> WorkspaceNamespace {
        match found {
            None => WorkspaceNamespace::Absent,
            Some(ns) if id.owns(&ns.metadata) => WorkspaceNamespace::Ours(Box::new(ns)),
            Some(_) => WorkspaceNamespace::Foreign,
        }
    }

    fn ours(&self) -> Option<&Namespace> {
        match self {
            WorkspaceNamespace::Ours(ns) => Some(ns),
            _ => None,
        }
    }
}

/// The rejection of a scenario whose namespace is someone else's.
fn namespace_not_owned(id: &Identity) -> Rejection {
    Rejection {
        field: "metadata.name".into(),
        reason: reasons::NAMESPACE_NOT_OWNED,
        message: format!(
            "namespace {} already exists and was not made for this scenario (it has no {}={}); \
             it is left as it is. Choose another scenario name, or remove that namespace",
            id.namespace,
            crate::workspace::labels::SCENARIO_UID,
            id.uid
        ),
    }
}

/// Creates the workspace namespace, only if it does not exist: a create,
/// not an apply, so one made by someone else in the meantime is refused by
/// the API server (409) instead of adopted. `false` if it was taken.
async fn create_namespace(ctx: &Context, namespace: &Namespace) -> Result<bool, Error> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    match namespaces
        .create(&kube::api::PostParams::default(), namespace)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The cross-object checks the API server cannot make.
async fn admit(
    scenario: &Scenario,
    authorization: &Authorization,
    ctx: &Context,
) -> Result<Result<(), Rejection>, Error> {
    if let Err(r) = validate_authorization(authorization) {
        return Ok(Err(Rejection {
            field: format!("authorization {}: {}", authorization.name_any(), r.field),
            ..r
        }));
    }
    // From the catalogue's cache (the API server until it is filled).
    let mut catalogue: Vec<Dataset> = Vec::new();
    for request in &scenario.spec.data {
        if let Some(d) = ctx.datasets.get(&ctx.client, &request.dataset).await? {
            catalogue.push((*d).clone());
        }
    }
    if let Err(r) = validate_scenario(scenario, authorization, &catalogue) {
        return Ok(Err(r));
    }
    // First come, first served: only scenarios admitted before this one count.
    // The controller runs no pass before this cache is filled.
    let peers = admitted_peers(scenario, &ctx.scenarios.state());
    if let Err(r) = check_scenario_count(authorization, peers.len()) {
        return Ok(Err(r));
    }
    Ok(check_aggregate_quota(scenario, authorization, &peers))
}

/// A scenario's place in its authorization's queue: those admitted first,
/// in the order they were admitted, then the others in the order they were
/// created (the name breaks ties).
fn queue_key(s: &Scenario) -> (bool, Option<Time>, String) {
    let admitted = s.status.as_ref().and_then(|st| st.admitted_at.clone());
    (
        admitted.is_none(),
        admitted.or_else(|| s.metadata.creation_timestamp.clone()),
        s.name_any(),
    )
}

/// Live scenarios of the same authorization that hold their place ahead of
/// `scenario` (see [`queue_key`]): not rejected, not closed, not being
/// deleted. Admission is sticky: a scenario admitted before is never pushed
/// out by an older one that was rejected and fixed later. The cache's own
/// objects, shared, not copied: every pass of every scenario asks this of
/// all the others.
pub fn admitted_peers(scenario: &Scenario, all: &[Arc<Scenario>]) -> Vec<Arc<Scenario>> {
    let key = queue_key;
    let mine = key(scenario);
    all.iter()
        .filter(|s| s.spec.authorization == scenario.spec.authorization)
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .filter(|s| {
            !matches!(
                s.status.as_ref().and_then(|st| st.phase),
                Some(ScenarioPhase::Closed | ScenarioPhase::Rejected)
            )
        })
        .filter(|s| key(s) < mine)
        .cloned()
        .collect()
}

/// Refuses the scenario: nothing new is provisioned, and a workspace that
/// already exists is sealed (compute off, access removed) rather than left open.
async fn reject(
    api: &Api<Scenario>,
    scenario: &Scenario,
    id: &Identity,
    ctx: &Context,
    rejection: Rejection,
    now: &Time,
    provisioned: bool,
) -> Result<(), Error> {
    if provisioned {
        seal(id, ctx).await?;
    }
    // Sealed behind the memo's back: admitted again, everything is applied.
    ctx.memo.forget(&id.uid);
    let mut next = scenario.status.clone().unwrap_or_default();
    next.observed_generation = scenario.metadata.generation;
    next.phase = Some(ScenarioPhase::Rejected);
    // Its place in the quota is given up: admitted again, it queues anew.
    next.admitted_at = None;
    let message = format!("{}: {}", rejection.field, rejection.message);
    set_condition(
        &mut next.conditions,
        condition(
            types::READY,
            false,
            rejection.reason,
            message,
            scenario.metadata.generation,
            now,
        ),
        now,
    );
    patch_status(ctx, api, scenario, &next).await
}

/// Stops compute and removes access, keeping volumes: the sealed state.
pub async fn seal(id: &Identity, ctx: &Context) -> Result<(), Error> {
    delete(
        &Api::<RoleBinding>::namespaced(ctx.client.clone(), &id.namespace),
        access::MEMBER_BINDING,
    )
    .await?;
    stop_compute(id, ctx).await
}

/// Scales the Deployment to zero or suspends the Job, whichever exists.
async fn stop_compute(id: &Identity, ctx: &Context) -> Result<(), Error> {
    let ns = &id.namespace;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    if deployments.get_opt(WORKSPACE).await?.is_some() {
        let params = kube::api::PatchParams::default();
        let patch = serde_json::json!({"spec": {"replicas": 0}});
        deployments
            .patch(WORKSPACE, &params, &kube::api::Patch::Merge(&patch))
            .await?;
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    if jobs.get_opt(WORKSPACE).await?.is_some() {
        let patch = serde_json::json!({"spec": {"suspend": true}});
        jobs.patch(
            WORKSPACE,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(())
}

/// The bookkeeping of an admitted scenario: its generation, expiry and
/// place in the quota (sticky) and, the first time, the workspace
/// namespace it is about to get.
fn admitted_status(
    found: &ScenarioStatus,
    id: &Identity,
    generation: Option<i64>,
    expires_at: &Time,
    now: &Time,
) -> ScenarioStatus {
    let mut next = found.clone();
    next.observed_generation = generation;
    next.expires_at = Some(expires_at.clone());
    if next.admitted_at.is_none() {
        next.admitted_at = Some(now.clone());
    }
    if next.namespace.is_none() {
        next.namespace = Some(id.namespace.clone());
        next.phase = Some(ScenarioPhase::Provisioning);
        let creating = "creating the workspace";
        let ready = condition(
            types::READY,
            false,
            reasons::PROVISIONING,
            creating,
            generation,
            now,
        );
        set_condition(&mut next.conditions, ready, now);
    }
    next
}

/// The status a provisioning pass writes, from the status it found and
/// what it observed: pure, and equal to `found` when nothing changed, so
/// that the write is skipped.
fn provisioned_status(
    found: &ScenarioStatus,
    id: &Identity,
    o: &Observed,
    generation: Option<i64>,
    expires_at: &Time,
    now: &Time,
) -> ScenarioStatus {
    let mut next = admitted_status(found, id, generation, expires_at, now);
    for record in o.delivered {
        if !next.data.iter().any(|p| p.dataset == record.dataset) {
            next.data.push(record.clone());
        }
    }
    running_status(&mut next, id, o, generation, expires_at, now);
    next
}

/// What one pass found, for [`running_status`].
struct Observed<'a> {
    /// Why the workspace is sealed, if it is.
    seal: Option<Seal>,
    preparation: &'a Preparation,
    /// The compute runs (see [`run_compute`]).
    running: bool,
    /// What was found in the workspace that the operator did not make (and removed).
    foreign: &'a [foreign::Foreign],
    /// How many datasets the scenario asked for.
    datasets: usize,
    /// Preparations that finished in this pass (see [`data::prepare`]).
    delivered: &'a [crate::api::PreparedData],
}

/// The phase and conditions of a provisioned scenario, from what the pass
/// found: pure, so that each combination can be read in one place.
fn running_status(
    next: &mut crate::api::ScenarioStatus,
    id: &Identity,
    o: &Observed,
    generation: Option<i64>,
    expires_at: &Time,
    now: &Time,
) {
    let ns = id.namespace.as_str();
    let sealed = o.seal.is_some();
    next.phase = Some(if sealed {
        ScenarioPhase::Suspended
    } else if *o.preparation != Preparation::Ready {
        ScenarioPhase::PreparingData
    } else if o.running {
        ScenarioPhase::Ready
    } else {
        ScenarioPhase::Provisioning
    });
    let c = &mut next.conditions;
    let cond =
        |t, holds, reason: &str, msg: String| condition(t, holds, reason, msg, generation, now);
    set_condition(
        c,
        cond(
            types::PROVISIONED,
            true,
            reasons::WORKSPACE_READY,
            format!("namespace {ns} and its guards exist"),
        ),
        now,
    );
    let isolated = if o.foreign.is_empty() {
        cond(
            types::ISOLATED,
            true,
            reasons::NO_FOREIGN_OBJECT,
            "default-deny network policy for ingress and egress is in place; nothing foreign in the workspace".into(),
        )
    } else {
        let names: Vec<String> = o.foreign.iter().map(foreign::Foreign::display).collect();
        cond(
            types::ISOLATED,
            false,
            reasons::FOREIGN_OBJECT,
            format!(
                "objects the operator did not make were found in {ns} and removed: {}",
                names.join(", ")
            ),
        )
    };
    set_condition(c, isolated, now);
    let datasets = o.datasets;
    let (prepared, prepared_reason, prepared_msg) = match o.preparation {
        Preparation::Ready if datasets == 0 => (
            true,
            reasons::DATA_READY,
            "no dataset requested".to_string(),
        ),
        Preparation::Ready => (
            true,
            reasons::DATA_READY,
            format!("{datasets} dataset(s) prepared and mounted read-only under /data"),
        ),
        Preparation::Pending { what, .. } => (false, reasons::PREPARING_DATA, what.clone()),
        Preparation::Failed(why) => (false, reasons::PREPARATION_FAILED, why.clone()),
    };
    set_condition(
        c,
        cond(
            types::DATA_PREPARED,
            prepared,
            prepared_reason,
            prepared_msg.clone(),
        ),
        now,
    );
    match o.seal {
        Some(s) => {
            set_condition(
                c,
                cond(
                    types::SUSPENDED,
                    true,
                    s.reason(),
                    "compute stopped and access removed; volumes kept".into(),
                ),
                now,
            );
            set_condition(
                c,
                cond(
                    types::READY,
                    false,
                    s.reason(),
                    "the workspace is sealed".into(),
                ),
                now,
            );
        }
        None => {
            set_condition(
                c,
                cond(
                    types::SUSPENDED,
                    false,
                    reasons::WORKSPACE_READY,
                    "not suspended".into(),
                ),
                now,
            );
            let (reason, msg) = if o.running {
                (
                    reasons::WORKSPACE_READY,
                    format!("the workspace runs in {ns}"),
                )
            } else if !prepared {
                (prepared_reason, prepared_msg)
            } else {
                (
                    reasons::PROVISIONING,
                    "waiting for the workspace compute to start".to_string(),
                )
            };
            set_condition(c, cond(types::READY, o.running, reason, msg), now);
        }
    }
    set_condition(
        c,
        cond(
            types::EXPIRED,
            false,
            reasons::WORKSPACE_READY,
            format!("valid until {}", expires_at.0),
        ),
        now,
    );
}

/// Applies the namespace and its guards, in order: the deny-all policy
/// before anything that could run, then quota, limits, the token-less
/// account, the members' binding (removed while sealed) and scratch.
async fn apply_guards(
    ctx: &Context,
    id: &Identity,
    namespace: &Namespace,
    spec: &crate::api::ScenarioSpec,
    quota: &ResourceQuota,
    binding: Option<&RoleBinding>,
    scratch: &PersistentVolumeClaim,
) -> Result<(), Error> {
    let client = &ctx.client;
    let ns = id.namespace.as_str();
    apply(&Api::<Namespace>::all(client.clone()), namespace).await?;
    apply(
        &Api::<NetworkPolicy>::namespaced(client.clone(), ns),
        &isolation::deny_all(id),
    )
    .await?;
    apply(&Api::<ResourceQuota>::namespaced(client.clone(), ns), quota).await?;
    apply(
        &Api::<LimitRange>::namespaced(client.clone(), ns),
        &isolation::limit_range(id, spec),
    )
    .await?;
    apply(
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        &access::service_account(id),
    )
    .await?;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    match binding {
        Some(b) => {
            apply(&bindings, b).await?;
        }
        None => {
            delete(&bindings, access::MEMBER_BINDING).await?;
        }
    }
    apply(
        &Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns),
        scratch,
    )
    .await?;
    Ok(())
}

/// Applies the compute (unless `applied` says it is as it should be) and
/// tells whether it runs: a Deployment with a pod available, or a Job that
/// started (or finished: its results stay in scratch until teardown).
async fn run_compute(
    ctx: &Context,
    id: &Identity,
    compute: &Compute,
    applied: bool,
) -> Result<bool, Error> {
    let client = &ctx.client;
    let ns = id.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    Ok(match compute {
        Compute::Deployment(d) => {
            let current = if applied {
                running_deployment(ctx, &deployments, ns).await?
            } else {
                if ctx.may_have_job(ns, false) {
                    delete(&jobs, WORKSPACE).await?;
                }
                Some(apply(&deployments, d).await?)
            };
            current
                .and_then(|d| d.status)
                .and_then(|s| s.available_replicas)
                .is_some_and(|n| n >= 1)
        }
        Compute::Job(j) => {
            let current = if applied {
                jobs.get_opt(WORKSPACE).await?
            } else {
                delete(&deployments, WORKSPACE).await?;
                Some(apply(&jobs, j).await?)
            };
            // A batch workspace counts as running once its Job started
            // (or finished: its results stay in scratch until teardown).
            current.and_then(|j| j.status).is_some_and(|s| {
                s.active.unwrap_or(0) > 0
                    || s.succeeded.unwrap_or(0) > 0
                    || s.failed.unwrap_or(0) > 0
            })
        }
    })
}

/// The workspace's Deployment: from the shared cache when it holds it (its
/// change wakes the scenario only once the cache has it), else as the API
/// server has it.
async fn running_deployment(
    ctx: &Context,
    deployments: &Api<Deployment>,
    ns: &str,
) -> Result<Option<Deployment>, Error> {
    if let Some(Some(d)) = ctx.deployments.cached_in(ns, WORKSPACE) {
        return Ok(Some((*d).clone()));
    }
    Ok(deployments.get_opt(WORKSPACE).await?)
}

/// Applies the workspace in order (namespace, deny-all policy, quota and
/// limits, service account, role, bindings, scratch, prepared data, compute):
/// no pod can exist before the deny policy does, and no compute before its
/// data. Returns how soon to look again: soon while something is on its
/// way, else within the memo's resync time (the next deadline or a watch
/// may wake it earlier). `namespace` is the workspace namespace if it
/// exists (and is the scenario's: a foreign one never reaches here);
/// `workspace` is that namespace as it should be.
#[allow(clippy::too_many_arguments)]
async fn provision(
    api: &Api<Scenario>,
    scenario: &Scenario,
    id: &Identity,
    workspace: &Namespace,
    ctx: &Context,
    seal_reason: Option<Seal>,
    expires_at: &Time,
    now: &Time,
    namespace: Option<&Namespace>,
) -> Result<Duration, Error> {
    // Security before bookkeeping: a sealed workspace's compute and access
    // stop, and anything foreign in it goes, before any status or ledger write.
    if namespace.is_some() && seal_reason.is_some() {
        seal(id, ctx).await?;
    }
    let foreign = match namespace {
        Some(_) => ctx.guards.foreign(id),
        None => Vec::new(),
    };
    foreign::remove(ctx, scenario, id, &foreign).await?;

    let generation = scenario.metadata.generation;
    let found = scenario.status.clone().unwrap_or_default();
    let admitted = admitted_status(&found, id, generation, expires_at, now);
    if found.namespace.is_none() {
        // The one status write before the end of the pass: the namespace is
        // recorded before it exists, so a crash in between still leaves a
        // trace that a workspace may need tearing down.
        patch_status(ctx, api, scenario, &admitted).await?;
    }
    if namespace.is_none() && !create_namespace(ctx, workspace).await? {
        // Made by someone else just now: the next pass sees whose it is.
        return Ok(Duration::from_secs(1));
    }

    let spec = &scenario.spec;
    let quota = isolation::resource_quota(id, spec, &admitted.data);
    // Sealed: the members' binding is removed, not applied.
    let role = access::member_role_for(&ctx.settings.member_role, spec.workspace.interactive);
    let binding =
        access::member_binding(id, &spec.members, &role).filter(|_| seal_reason.is_none());
    let scratch = scratch_claim(id, spec, ctx.settings.storage_class.as_deref());
    let compute = compute(id, spec, seal_reason.is_none());
    let fingerprint = memo::fingerprint(&[
        // Its annotations come from the authorization, not the spec.
        serde_json::to_value(workspace)?,
        serde_json::to_value(&quota)?,
        serde_json::to_value(&binding)?,
        serde_json::to_value(&scratch)?,
        serde_json::to_value(&compute)?,
        // The rest is built from the identity and the spec alone.
        serde_json::to_value(spec)?,
    ]);
    // Exactly these objects were applied a moment ago: nothing to write.
    let applied = ctx.memo.applied(&id.uid, fingerprint);
    if !applied {
        apply_guards(ctx, id, workspace, spec, &quota, binding.as_ref(), &scratch).await?;
    }

    let (preparation, delivered) = if ctx.memo.data_ready(&id.uid, fingerprint) {
        (Preparation::Ready, Vec::new())
    } else {
        data::prepare(scenario, id, ctx, &admitted.data, now).await?
    };
    if let Preparation::Failed(why) = &preparation {
        // Whatever ran on the data before must not run on without it.
        warn!(scenario = %id.scenario, %why, "data preparation failed");
        stop_compute(id, ctx).await?;
    }

    let running =
        preparation == Preparation::Ready && run_compute(ctx, id, &compute, applied).await?;
    // Compute is only applied with its data in place: until then, the next
    // pass must apply again.
    if preparation == Preparation::Ready {
        ctx.memo.remember(&id.uid, fingerprint, true);
    }

    let observed = Observed {
        seal: seal_reason,
        preparation: &preparation,
        running,
        foreign: &foreign,
        datasets: spec.data.len(),
        delivered: &delivered,
    };
    // One write, skipped when the pass changed nothing.
    let next = provisioned_status(&found, id, &observed, generation, expires_at, now);
    if next.phase != found.phase {
        info!(scenario = %id.scenario, phase = ?next.phase, "phase");
    }
    patch_status(ctx, api, scenario, &next).await?;
    Ok(match preparation {
        // Removed just now: the next pass confirms the workspace is isolated
        // again (its own status write no longer wakes it, and the guards'
        // caches may not have seen the deletions yet).
        _ if !foreign.is_empty() => RECHECK_ISOLATION,
        Preparation::Pending { again, .. } => again,
        // Looked at again within the memo's resync time, so drift is seen.
        Preparation::Failed(_) => memo::RESYNC,
        Preparation::Ready if running || seal_reason.is_some() => memo::RESYNC,
        Preparation::Ready => SOON,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::jiff::Timestamp;
    use kube::ResourceExt;

    use super::{admitted_peers, reason_of};
    use crate::api::{Scenario, ScenarioPhase, ScenarioStatus, Time};

    fn at(s: &str) -> Time {
        Time(s.parse::<Timestamp>().unwrap())
    }

    fn scenario(
        name: &str,
        created: &str,
        phase: ScenarioPhase,
        admitted: Option<&str>,
    ) -> Arc<Scenario> {
        let spec = serde_json::from_value(serde_json::json!({
            "authorization": "acme", "purpose": "p",
            "workspace": {"image": "x", "resources": {"cpu": "1", "memory": "1Gi"}, "scratch": "1Gi"}
        }))
        .unwrap();
        let mut s = Scenario::new(name, spec);
        s.metadata.creation_timestamp = Some(at(created));
        s.status = Some(ScenarioStatus {
            phase: Some(phase),
            admitted_at: admitted.map(at),
            ..ScenarioStatus::default()
        });
        Arc::new(s)
    }

    fn names(peers: &[Arc<Scenario>]) -> Vec<String> {
        peers.iter().map(|s| s.name_any()).collect()
    }

    #[test]
    fn an_admitted_scenario_keeps_its_place_when_an_older_one_is_fixed() {
        // `older` was created first but rejected; `younger` was admitted.
        let younger = scenario(
            "younger",
            "2026-01-02T00:00:00Z",
            ScenarioPhase::Ready,
            Some("2026-01-02T00:00:01Z"),
        );
        for older_phase in [ScenarioPhase::Rejected, ScenarioPhase::Pending] {
            let older = scenario("older", "2026-01-01T00:00:00Z", older_phase, None);
            let all = [older.clone(), younger.clone()];
            assert!(
                admitted_peers(&younger, &all).is_empty(),
                "nothing is ahead of the admitted scenario ({older_phase:?})"
            );
            assert_eq!(names(&admitted_peers(&older, &all)), ["younger"]);
        }
    }

    #[test]
    fn among_the_admitted_the_order_of_admission_counts_and_among_the_rest_creation() {
        let first = scenario(
            "b",
            "2026-01-03T00:00:00Z",
            ScenarioPhase::Ready,
            Some("2026-01-03T00:00:01Z"),
        );
        let second = scenario(
            "a",
            "2026-01-01T00:00:00Z",
            ScenarioPhase::Ready,
            Some("2026-01-04T00:00:00Z"),
        );
        let waiting_old = scenario("c", "2026-01-02T00:00:00Z", ScenarioPhase::Pending, None);
        let waiting_new = scenario("d", "2026-01-05T00:00:00Z", ScenarioPhase::Pending, None);
        let all = [
            first.clone(),
            second.clone(),
            waiting_old.clone(),
            waiting_new.clone(),
        ];
        assert!(admitted_peers(&first, &all).is_empty());
        assert_eq!(names(&admitted_peers(&second, &all)), ["b"]);
        assert_eq!(names(&admitted_peers(&waiting_old, &all)), ["b", "a"]);
        assert_eq!(names(&admitted_peers(&waiting_new, &all)), ["b", "a", "c"]);
    }

    fn observed_status(o: &super::Observed) -> ScenarioStatus {
        let mut next = ScenarioStatus::default();
        let id = crate::workspace::testing::identity();
        let now = at("2026-06-01T00:00:00Z");
        super::running_status(
            &mut next,
            &id,
            o,
            Some(1),
            &at("2027-01-01T00:00:00Z"),
            &now,
        );
        next
    }

    fn condition_of<'a>(s: &'a ScenarioStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    #[test]
    fn a_foreign_object_makes_the_workspace_not_isolated_and_is_named() {
        use super::foreign::{Foreign, Guarded};
        let ready = super::Preparation::Ready;
        let allow = Foreign {
            kind: Guarded::NetworkPolicy,
            name: "allow-all".into(),
            uid: "u".into(),
            made_by: "kubectl-create".into(),
        };
        let found = [allow];
        let o = super::Observed {
            seal: None,
            preparation: &ready,
            running: true,
            foreign: &found,
            datasets: 0,
            delivered: &[],
        };
        let s = observed_status(&o);
        let (status, reason, message) = condition_of(&s, "Isolated");
        assert_eq!((status, reason), ("False", "ForeignObject"));
        assert!(message.contains("NetworkPolicy/allow-all"), "{message}");
        let clean = super::Observed { foreign: &[], ..o };
        let s = observed_status(&clean);
        assert_eq!(condition_of(&s, "Isolated").0, "True");
        assert_eq!(s.phase, Some(ScenarioPhase::Ready));
        assert_eq!(condition_of(&s, "Ready").0, "True");
    }

    #[test]
    fn a_sealed_workspace_is_suspended_and_not_ready_whatever_runs() {
        let ready = super::Preparation::Ready;
        let o = super::Observed {
            seal: Some(super::Seal::Authorization),
            preparation: &ready,
            running: true,
            foreign: &[],
            datasets: 1,
            delivered: &[],
        };
        let s = observed_status(&o);
        assert_eq!(s.phase, Some(ScenarioPhase::Suspended));
        assert_eq!(condition_of(&s, "Ready").0, "False");
        assert_eq!(condition_of(&s, "Suspended").1, "AuthorizationSuspended");
    }

    fn pass(found: &ScenarioStatus, o: &super::Observed, now: &str) -> ScenarioStatus {
        let id = crate::workspace::testing::identity();
        let expires = at("2027-01-01T00:00:00Z");
        super::provisioned_status(found, &id, o, Some(1), &expires, &at(now))
    }

    fn record(dataset: &str) -> crate::api::PreparedData {
        serde_json::from_value(serde_json::json!({
            "dataset": dataset, "volume": "pv-1", "capacity": "1Gi", "rowsIn": 10,
            "rowsOut": 5, "bytes": 100, "digest": "00", "preparedAt": "2026-06-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_pass_that_finds_nothing_new_writes_nothing() {
        let pending = super::Preparation::Pending {
            what: "preparing census".into(),
            again: std::time::Duration::from_secs(5),
        };
        let o = super::Observed {
            seal: None,
            preparation: &pending,
            running: false,
            foreign: &[],
            datasets: 1,
            delivered: &[],
        };
        let first = pass(&ScenarioStatus::default(), &o, "2026-06-01T00:00:00Z");
        assert_eq!(first.phase, Some(ScenarioPhase::PreparingData));
        assert!(first.namespace.is_some() && first.admitted_at.is_some());
        // Later, the same observations: equal, so no write (nor a record).
        let again = pass(&first, &o, "2026-06-01T00:05:00Z");
        assert_eq!(again, first);
    }

    #[test]
    fn a_finished_preparation_is_recorded_once_in_the_one_write() {
        let pending = super::Preparation::Pending {
            what: "handing census over".into(),
            again: std::time::Duration::from_secs(5),
        };
        let delivered = [record("census")];
        let o = super::Observed {
            seal: None,
            preparation: &pending,
            running: false,
            foreign: &[],
            datasets: 1,
            delivered: &delivered,
        };
        let first = pass(&ScenarioStatus::default(), &o, "2026-06-01T00:00:00Z");
        assert_eq!(first.data.len(), 1);
        let again = pass(&first, &o, "2026-06-01T00:00:05Z");
        assert_eq!(again.data, first.data, "not recorded twice");
    }

    #[test]
    fn the_workspace_namespace_is_recorded_before_it_exists_and_admission_sticks() {
        let id = crate::workspace::testing::identity();
        let expires = at("2027-01-01T00:00:00Z");
        let now = at("2026-06-01T00:00:00Z");
        let found = ScenarioStatus::default();
        let first = super::admitted_status(&found, &id, Some(1), &expires, &now);
        assert_eq!(first.namespace.as_deref(), Some(id.namespace.as_str()));
        assert_eq!(first.phase, Some(ScenarioPhase::Provisioning));
        let later = at("2026-06-02T00:00:00Z");
        let second = super::admitted_status(&first, &id, Some(1), &expires, &later);
        assert_eq!(second, first, "admittedAt and the record stay as they were");
    }

    #[test]
    fn error_categories_become_camel_case_reasons() {
        assert_eq!(reason_of("api"), "Api");
        assert_eq!(reason_of("invalid-object"), "InvalidObject");
    }
}
