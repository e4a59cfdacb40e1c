//! The controllers: Scenario (workspaces) and Authorization (status and
//! deadlines), and what they share.
//!
//! Every reconcile is a pipeline: fetch what the object refers to, decide
//! ([`lifecycle::decide`], pure), build the desired children
//! ([`crate::workspace`], pure), apply them with server-side apply, write status.
//! Every step can be repeated: the operator may be killed at any instant and
//! the next run finishes the job.

pub mod airlock;
pub mod authorization;
pub mod cache;
pub mod data;
pub mod foreign;
pub mod handover;
pub mod import;
pub mod kube_ops;
pub mod lifecycle;
pub mod memo;
pub mod scenario;
pub mod teardown;

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::api::{Authorization, Dataset, Export, Review, Scenario};
use crate::audit::Ledger;
use crate::http::Health;
use crate::metrics::Metrics;
use crate::workspace::labels;
use cache::{Cache, touched};

/// Finalizer that holds a Scenario until its workspace is wiped and gone.
pub const FINALIZER: &str = "cleanroom.io/teardown";

/// Operator settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image of the data-plane `agent` binary (wipe Jobs).
    pub agent_image: String,
    /// StorageClass for the workspace's volumes (cluster default if `None`).
    pub storage_class: Option<String>,
    /// The chart's ClusterRole bound to each workspace's members.
    pub member_role: String,
    /// The chart's ClusterRole bound to an authorization's reviewers.
    pub reviewer_role: String,
    /// Namespace of the audit ledger's segments.
    pub audit_namespace: String,
    /// Fault injection for the crash test (see [`crate::audit::Ledger::exit_after`]).
    pub audit_exit_after: Option<crate::audit::Action>,
    /// How often the ledger is verified, pruned and its head signed (an
    /// hour; tests shorten it).
    pub audit_upkeep_every: Duration,
    /// Where the audit webhook finds the ledger while this process leads
    /// (see [`crate::sessions`]).
    pub sessions: crate::sessions::LedgerSlot,
}

/// What every reconcile gets.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Command-line settings.
    pub settings: Settings,
    /// Every Scenario, as the controller's cache sees it (for counts and quota sums).
    pub scenarios: Cache<Scenario>,
    /// Every Authorization, from the one watch both controllers share.
    pub authorizations: Cache<Authorization>,
    /// The dataset catalogue, from the one watch that also records its changes.
    pub datasets: Cache<Dataset>,
    /// The operator's workspace namespaces (labelled as managed by it), so
    /// that a pass reads its namespace without a request. A namespace
    /// missing from it is asked of the API server.
    pub namespaces: Cache<Namespace>,
    /// The workspaces' Deployments (labelled as managed by the operator):
    /// whether compute runs is read here. The same watch wakes their scenarios,
    /// after this store holds the change.
    pub deployments: Cache<Deployment>,
    /// The workspaces' Jobs (compute in batch mode, preparations, wipes),
    /// likewise; see [`Context::may_have_job`].
    pub jobs: Cache<Job>,
    /// Counters and timings (see [`crate::metrics`]).
    pub metrics: Arc<Metrics>,
    /// What was last applied per scenario (see [`memo`]).
    pub memo: memo::Memo,
    /// The audit ledger, written before every status change (see [`crate::audit`]).
    pub audit: Arc<Ledger>,
    /// Caches of what exists in the workspaces (see [`foreign`]).
    pub guards: foreign::Guards,
    /// Places for passes that provision (see [`MAX_PROVISIONING`]).
    pub provisioning: tokio::sync::Semaphore,
}

/// Passes that provision at once. The client lets only
/// [`crate::requests::MAX_IN_FLIGHT`] requests out at a time, so more than
/// a couple of times that only wait in the operator, each holding the
/// objects it built: a thousand scenarios created together held more than
/// half of the operator's heap that way. The others wait for a place, in
/// the order they came, before building anything. Passes that stop or tear
/// down a workspace never wait for one: a bounded controller takes waiting
/// passes in no particular order, and at 1,000 expiring together some
/// stops waited minutes behind wipes.
pub const MAX_PROVISIONING: usize = 128;

impl Context {
    /// Whether the workspace Job may exist in `namespace`, so that deleting
    /// it is worth a request: always in batch mode (a Job just made may not
    /// be in the cache yet), otherwise unless the cache, once filled, holds
    /// none (one would be left from an earlier batch mode, long in it).
    pub fn may_have_job(&self, namespace: &str, batch: bool) -> bool {
        batch
            || !matches!(
                self.jobs
                    .cached_in(namespace, crate::workspace::compute::WORKSPACE),
                Some(None)
            )
    }
}

/// What can go wrong in a reconcile. Each has a category for metrics and Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object read from the cluster lacks a field the API server always sets.
    #[error("{0} has no {1}")]
    MissingField(String, &'static str),
    /// Serializing an object failed (a bug, not bad input).
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The system's random source could not be read (for a pseudonym key).
    #[error("reading random bytes: {0}")]
    Random(String),
    /// The audit ledger could not be written; the status change waits for it.
    #[error("{0}")]
    Audit(#[from] crate::audit::Error),
    /// A shared cache stopped before it was filled (the process is stopping).
    #[error("the cache of {0}s stopped before it was filled")]
    CacheStopped(&'static str),
}

impl Error {
    /// Short label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "api",
            Error::MissingField(..) => "invalid-object",
            Error::Serialization(_) | Error::Random(_) | Error::CacheStopped(_) => "internal",
            Error::Audit(_) => "audit",
        }
    }
}

/// The last generation seen per object name, to tell a change of spec (or
/// the start of a deletion) from a status write.
#[derive(Default)]
pub(crate) struct Generations(
    std::sync::Mutex<std::collections::HashMap<String, (Option<i64>, bool)>>,
);

impl Generations {
    /// Whether `name` has a generation (or deletion state) not seen before;
    /// remembers it.
    pub(crate) fn changed(&self, name: &str, generation: Option<i64>, deleting: bool) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(name.to_string(), (generation, deleting)) != Some((generation, deleting))
    }
}

/// What was last seen of each object (by uid) that should wake a
/// controller, to tell such a change from a status write.
#[derive(Default)]
struct Changes(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl Changes {
    /// Whether `object` changed in what [`wakes`] hashes since last seen;
    /// remembers it. A deleted object is forgotten.
    fn changed<K: kube::Resource>(&self, object: &K, deleted: bool) -> bool {
        let uid = object.meta().uid.clone().unwrap_or_default();
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if deleted {
            return seen.remove(&uid).is_some();
        }
        seen.insert(uid, wakes(object.meta())) != Some(wakes(object.meta()))
    }
}

/// The part of an object whose change wakes its controller: the spec (its
/// generation), the start of a deletion, the finalizers (ours must be put
/// back if removed) and the annotations (the actor stamp of the verbs).
/// Not the status: the operator writes it itself, and waking on its own
/// writes made every pass cost one more. Labels are not read.
fn wakes(meta: &kube::api::ObjectMeta) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        meta.generation,
        meta.deletion_timestamp.is_some(),
        &meta.finalizers,
        &meta.annotations,
    )
        .hash(&mut h);
    h.finish()
}

/// Retry a failed reconcile after a short pause; the error was logged.
fn error_policy<K>(_: Arc<K>, error: &Error, _: Arc<Context>) -> Action {
    warn!(category = error.category(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

/// Drives a cache's watch of the operator's own objects and wakes, after
/// the cache holds each change, the scenario the object is labelled with.
async fn wake_owners<K: cache::Cached>(
    events: impl Stream<Item = watcher::Event<K>>,
    wake: mpsc::UnboundedSender<ObjectRef<Scenario>>,
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        if let Some(scenario) = touched(event).and_then(|(o, _)| scenario_of(o.labels())) {
            let _ = wake.unbounded_send(scenario);
        }
    }
}

/// Scenarios to look at when an object labelled with a scenario changes.
fn scenario_of(
    labels_of: &std::collections::BTreeMap<String, String>,
) -> Option<ObjectRef<Scenario>> {
    let managed = labels_of.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER);
    managed
        .then(|| labels_of.get(labels::SCENARIO))
        .flatten()
        .map(|name| ObjectRef::new(name))
}

/// Runs both controllers until the process is told to stop; `health` turns
/// ready once both caches have synced.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> anyhow::Result<()> {
    let scenarios: Api<Scenario> = Api::all(client.clone());
    let authorizations: Api<Authorization> = Api::all(client.clone());
    let managed =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));

    // The ledger is read and verified before anything is reconciled, so
    // that its memory (idempotency keys, members) is complete.
    let audit = Arc::new(
        Ledger::new(client.clone(), &settings.audit_namespace)
            .with_metrics(metrics.clone())
            .with_events(client.clone())
            .exit_after(settings.audit_exit_after),
    );
    let _verdict = audit.load().await?;
    signing_key(&client, &audit).await;
    sign_head(&audit, "at start").await;
    settings.sessions.set(Some(audit.clone()));
    let upkeep_every = settings.audit_upkeep_every;

    // One watch per kind, shared by both controllers and the reconciles
    // (which read authorizations and datasets from these stores, not the API).
    // Each watch is driven by one task of its own that waits on nothing
    // (see [`cache`]).
    let (scenario_cache, scenario_events) = cache::shared(scenarios);
    let (authorization_cache, authorization_events) = cache::shared(authorizations);
    let (dataset_cache, dataset_events) = cache::shared(Api::<Dataset>::all(client.clone()));
    let (namespace_cache, namespace_events) =
        cache::managed(Api::<Namespace>::all(client.clone()), |_| {});
    let drive_namespaces = tokio::spawn(namespace_events.for_each(|_| std::future::ready(())));
    let (deployment_cache, deployment_events) = cache::managed(
        Api::<Deployment>::all(client.clone()),
        cache::deployment_without_template,
    );
    let (job_cache, job_events) =
        cache::managed(Api::<Job>::all(client.clone()), cache::job_without_template);
    let (wake_of_compute, compute_wakes) = mpsc::unbounded();
    let drive_deployments = tokio::spawn(wake_owners(deployment_events, wake_of_compute.clone()));
    let drive_jobs = tokio::spawn(wake_owners(job_events, wake_of_compute));
    let store = scenario_cache.store().clone();
    let authorization_store = authorization_cache.store().clone();
    let (guards, foreign_changes) = foreign::Guards::watch(&client);
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        scenarios: scenario_cache.clone(),
        authorizations: authorization_cache.clone(),
        datasets: dataset_cache.clone(),
        namespaces: namespace_cache,
        deployments: deployment_cache,
        jobs: job_cache,
        metrics: metrics.clone(),
        memo: memo::Memo::default(),
        audit: audit.clone(),
        guards,
        provisioning: tokio::sync::Semaphore::new(MAX_PROVISIONING),
    });

    let (wake_scenario, scenario_wakes) = mpsc::unbounded();
    let (wake_under, wakes_under) = mpsc::unbounded();
    let (wake_authorization, authorization_wakes) = mpsc::unbounded();
    let (recount, recounts) = mpsc::unbounded();
    let gone = {
        let ctx = ctx.clone();
        move |uid: &str| ctx.memo.forget_gone(uid)
    };
    let fan_scenarios = tokio::spawn(fan_out_scenarios(
        scenario_events,
        wake_scenario,
        recount,
        gone,
    ));
    let fan_authorizations = tokio::spawn(fan_out_authorizations(
        authorization_events,
        store.clone(),
        wake_authorization,
        wake_under,
    ));

    let scenario_loop = Controller::for_shared_stream(scenario_wakes, store.clone())
        .reconcile_on(wakes_under)
        // Compute and Jobs: from the shared caches' watches (see
        // `wake_owners`).
        .reconcile_on(compute_wakes)
        // Claims binding: scratch, a dataset's volume arriving, wipes' claims.
        .watches(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            managed,
            |c: PersistentVolumeClaim| scenario_of(c.labels()),
        )
        // Objects in a workspace that the operator did not make.
        .reconcile_on(foreign_changes)
        .shutdown_on_signal()
        .run(scenario::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "scenario controller");
            }
        });

    metrics.watch(store.clone(), authorization_store.clone());
    let synced = {
        let (scenarios, authorizations, datasets) =
            (scenario_cache, authorization_cache, dataset_cache);
        async move {
            if scenarios.filled().await.is_ok()
                && authorizations.filled().await.is_ok()
                && datasets.filled().await.is_ok()
            {
                info!("caches synced");
                health.set_ready(true);
            }
        }
    };
    // Scenarios count against their authorization: recount when one changes.
    let authorization_loop =
        Controller::for_shared_stream(authorization_wakes, authorization_store)
            .reconcile_on(recounts)
            .shutdown_on_signal()
            .run(authorization::reconcile, error_policy, ctx.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    warn!(error = %e, "authorization controller");
                }
            });

    let sessions = ctx.settings.sessions.clone();
    let export_loop = export_controller(&client, ctx.clone());
    let import_loop = import_controller(&client, ctx);

    // The catalogue's store is driven apart from its records, so that it
    // never waits for the ledger.
    let (record, records) = mpsc::unbounded();
    let drive_datasets = tokio::spawn(dataset_events.for_each(move |event| {
        let _ = record.unbounded_send(event);
        std::future::ready(())
    }));
    let datasets = tokio::spawn(record_datasets(records, audit.clone()));
    // Off the path of every append: batches become segments in the background.
    let compactor = tokio::spawn({
        let audit = audit.clone();
        async move { audit.compactor().await }
    });
    let upkeep = tokio::spawn(audit_upkeep(client.clone(), audit, upkeep_every));
    let delivery = tokio::spawn(airlock::delivery::follow(client.clone()));
    let trim = tokio::spawn(crate::memory::return_freed_memory());

    info!("controllers started");
    let synced = tokio::spawn(synced);
    futures::join!(scenario_loop, authorization_loop, export_loop, import_loop);
    synced.abort();
    fan_scenarios.abort();
    fan_authorizations.abort();
    drive_datasets.abort();
    drive_namespaces.abort();
    drive_deployments.abort();
    drive_jobs.abort();
    datasets.abort();
    upkeep.abort();
    delivery.abort();
    trim.abort();
    compactor.abort();
    sessions.set(None);
    info!("controllers stopped");
    Ok(())
}

/// The airlock's controller: Exports, woken by their Reviews and by the
/// Jobs and claims made for them (labelled with the export and its scenario).
fn export_controller(client: &Client, ctx: Arc<Context>) -> impl std::future::Future<Output = ()> {
    use crate::workspace::airlock::EXPORT_LABEL;
    let reviewed = |r: &Review| r.spec.export.clone();
    airlock_controller::<Export, _, _>(client, EXPORT_LABEL, reviewed, airlock::reconcile, ctx)
}

/// The imports' controller: Imports, woken by their Reviews and by the Jobs
/// and claims made for them (labelled with the import and its scenario).
fn import_controller(client: &Client, ctx: Arc<Context>) -> impl std::future::Future<Output = ()> {
    use crate::workspace::import::IMPORT_LABEL;
    let reviewed = |r: &Review| r.spec.import.clone();
    airlock_controller::<crate::api::Import, _, _>(
        client,
        IMPORT_LABEL,
        reviewed,
        import::reconcile,
        ctx,
    )
}

/// A controller of `R` (an Export or an Import), woken by the Reviews of it
/// (`reviewed` names what a Review is of) and by the Jobs and claims made
/// for it (labelled `label` = its name, with its scenario).
fn airlock_controller<R, F, Fut>(
    client: &Client,
    label: &'static str,
    reviewed: fn(&Review) -> Option<String>,
    reconcile: F,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()>
where
    R: airlock::Request,
    F: FnMut(Arc<R>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    let of_child = move |l: &std::collections::BTreeMap<String, String>| {
        let name = l.get(label)?;
        let scenario = l.get(labels::SCENARIO)?;
        let ns = format!("{}{scenario}", crate::api::scenario::NAMESPACE_PREFIX);
        Some(ObjectRef::<R>::new(name).within(&ns))
    };
    let children = watcher::Config::default().labels(label);
    let kind = R::kind(&()).into_owned();
    Controller::new(Api::<R>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<Review>::all(client.clone()),
            watcher::Config::default(),
            move |r: Review| {
                let ns = r.namespace()?;
                Some(ObjectRef::<R>::new(&reviewed(&r)?).within(&ns))
            },
        )
        .watches(
            Api::<Job>::all(client.clone()),
            children.clone(),
            move |j: Job| of_child(j.labels()),
        )
        .watches(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            children,
            move |c: PersistentVolumeClaim| of_child(c.labels()),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(move |result| {
            if let Err(e) = result {
                warn!(error = %e, kind = %kind, "airlock controller");
            }
            futures::future::ready(())
        })
}

/// Datasets have no reconciler: their creation, each new generation and
/// their deletion are recorded as the shared watch sees them (a change made
/// while no operator runs is recorded when it starts; a deletion then is
/// not). While the ledger refuses a record, the records wait, not the store.
async fn record_datasets(events: impl Stream<Item = watcher::Event<Dataset>>, audit: Arc<Ledger>) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let Some((dataset, deleted)) = touched(event) else {
            continue;
        };
        // Retried until written: a record is not given up on.
        while let Err(e) = audit.record_dataset(&dataset, deleted).await {
            warn!(error = %e, dataset = %dataset.name_any(), "recording a dataset change; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// A scenario wakes its own controller only when something it reads
/// changes (see [`wakes`]): its own status writes do not, so a pass is not
/// followed by another that finds nothing to do. Its authorization recounts
/// on every change, status included (the counts are by phase).
async fn fan_out_scenarios(
    events: impl Stream<Item = watcher::Event<Scenario>>,
    own: mpsc::UnboundedSender<Arc<Scenario>>,
    recount: mpsc::UnboundedSender<ObjectRef<Authorization>>,
    gone: impl Fn(&str),
) {
    let seen = Changes::default();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let Some((s, deleted)) = touched(event) else {
            continue;
        };
        if deleted && let Some(uid) = s.metadata.uid.as_deref() {
            gone(uid);
        }
        let _ = recount.unbounded_send(ObjectRef::new(&s.spec.authorization));
        if seen.changed(&s, deleted) && !deleted {
            let _ = own.unbounded_send(Arc::new(s));
        }
    }
}

/// An authorization's change (state, validity, members, quota) or deletion
/// may change every scenario under it, and wakes them all; its status
/// (counts of scenarios, rewritten as they move) changes none, and waking
/// all of them for it made the work grow with the square of their number.
async fn fan_out_authorizations(
    events: impl Stream<Item = watcher::Event<Authorization>>,
    scenarios: Store<Scenario>,
    own: mpsc::UnboundedSender<Arc<Authorization>>,
    under: mpsc::UnboundedSender<ObjectRef<Scenario>>,
) {
    let seen = Changes::default();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let Some((a, deleted)) = touched(event) else {
            continue;
        };
        if !seen.changed(&a, deleted) {
            continue;
        }
        let name = a.name_any();
        for s in scenarios.state() {
            if s.spec.authorization == name {
                let _ = under.unbounded_send(ObjectRef::from_obj(&*s));
            }
        }
        if !deleted {
            let _ = own.unbounded_send(Arc::new(a));
        }
    }
}

/// How often the leader verifies the whole chain, prunes what is past
/// retention and signs the head, unless told otherwise.
pub const AUDIT_UPKEEP_EVERY: Duration = Duration::from_secs(3600);

/// Finds or makes the key that signs the ledger's head. Without it (a
/// Secret that is not the operator's, an API error) the operator goes on
/// reconciling, since expiries and wipes must not wait, and says so loudly
/// at every upkeep: `audit verify --public-key` then shows the records as
/// unproven.
async fn signing_key(client: &Client, audit: &Ledger) {
    if audit.can_sign() {
        return;
    }
    match crate::audit::keys::ensure(client, audit.namespace()).await {
        Ok(signer) => audit.set_signer(signer),
        Err(e) => tracing::error!(error = %e, "the audit ledger's head is not signed"),
    }
}

async fn sign_head(audit: &Ledger, why: &str) {
    if let Err(e) = audit.sign_head(why).await {
        warn!(error = %e, "signing the audit ledger's head");
    }
}

/// Every hour: verify the chain (metrics and log), then, if it is intact,
/// prune the segments past retention as of now and sign the head.
async fn audit_upkeep(client: Client, audit: Arc<Ledger>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        signing_key(&client, &audit).await;
        match audit.verify().await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => continue,
            Err(e) => {
                warn!(error = %e, "verifying the audit chain");
                continue;
            }
        }
        if let Err(e) = prune_now(&client, &audit).await {
            warn!(error = %format!("{e:#}"), "pruning the audit ledger");
        }
        sign_head(&audit, "hourly").await;
    }
}

/// Prunes as of now, keeping the memory of every object that still exists.
pub async fn prune_now(
    client: &Client,
    audit: &Ledger,
) -> anyhow::Result<Result<crate::audit::Pruned, crate::audit::Break>> {
    prune_as_of(client, audit, k8s_openapi::jiff::Timestamp::now()).await
}

/// Prunes as of `as_of` (tests pass a date in the future; the operator, now).
pub async fn prune_as_of(
    client: &Client,
    audit: &Ledger,
    as_of: k8s_openapi::jiff::Timestamp,
) -> anyhow::Result<Result<crate::audit::Pruned, crate::audit::Break>> {
    use kube::api::ListParams;
    let lp = ListParams::default();
    let authorizations = Api::<Authorization>::all(client.clone())
        .list(&lp)
        .await?
        .items;
    let mut live: std::collections::HashSet<String> = authorizations
        .iter()
        .filter_map(|a| a.metadata.uid.clone())
        .collect();
    for s in Api::<Scenario>::all(client.clone()).list(&lp).await?.items {
        live.extend(s.metadata.uid);
    }
    for d in Api::<Dataset>::all(client.clone()).list(&lp).await?.items {
        live.extend(d.metadata.uid);
    }
    Ok(audit.prune(as_of, &authorizations, &live).await?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn scenario(uid: &str, generation: i64) -> Scenario {
        let spec = serde_json::from_value(serde_json::json!({
            "authorization": "acme", "purpose": "p",
            "workspace": {"image": "x", "resources": {"cpu": "1", "memory": "1Gi"}, "scratch": "1Gi"}
        }))
        .unwrap();
        let mut s = Scenario::new("census", spec);
        s.metadata.uid = Some(uid.into());
        s.metadata.generation = Some(generation);
        s
    }

    #[tokio::test]
    async fn a_scenario_gone_from_the_cluster_is_forgotten() {
        let memo = memo::Memo::default();
        let t: k8s_openapi::jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for uid in ["u1", "u2"] {
            memo.remember(uid, 7, true);
            memo.wrote_status(uid, "10", 8);
            memo.stopped_at(uid, t);
        }
        let events = futures::stream::iter([
            watcher::Event::Apply(scenario("u1", 1)),
            watcher::Event::Apply(scenario("u2", 1)),
            watcher::Event::Delete(scenario("u1", 1)),
        ]);
        let (own, _owned) = mpsc::unbounded();
        let (recount, _recounts) = mpsc::unbounded();
        fan_out_scenarios(events, own, recount, |uid| memo.forget_gone(uid)).await;
        assert_eq!(memo.stop_of("u1"), None);
        assert!(!memo.applied("u1", 7));
        assert!(
            !memo.status_unchanged("u1", "10", None, 8),
            "the cache decides again"
        );
        assert_eq!(memo.stop_of("u2"), Some(t), "another scenario is kept");
        assert!(memo.applied("u2", 7));
        assert!(memo.status_unchanged("u2", "10", None, 8));
    }

    #[test]
    fn a_status_write_wakes_nothing_but_spec_deletion_finalizers_and_stamps_do() {
        let seen = Changes::default();
        let mut s = scenario("u1", 1);
        assert!(seen.changed(&s, false), "first sight");
        s.status = Some(crate::api::ScenarioStatus {
            phase: Some(crate::api::ScenarioPhase::Ready),
            ..Default::default()
        });
        assert!(!seen.changed(&s, false), "a status write");
        s.metadata.generation = Some(2);
        assert!(seen.changed(&s, false), "a spec change");
        s.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert!(seen.changed(&s, false), "a finalizer added or removed");
        s.metadata.annotations = Some(BTreeMap::from([(
            "cleanroom.io/changed-by".to_string(),
            "alice".to_string(),
        )]));
        assert!(seen.changed(&s, false), "the actor stamp");
        s.metadata.deletion_timestamp =
            Some(crate::api::Time("2026-01-01T00:00:00Z".parse().unwrap()));
        assert!(seen.changed(&s, false), "a deletion starts");
        assert!(!seen.changed(&s, false), "nothing new");
        assert!(
            seen.changed(&scenario("u2", 2), false),
            "per uid: a new object of that name"
        );
        assert!(seen.changed(&s, true), "gone");
        assert!(!seen.changed(&s, true), "forgotten once gone");
    }

    #[test]
    fn children_map_back_to_their_scenario_only_when_managed_by_us() {
        let ours = BTreeMap::from([
            (labels::MANAGED_BY.to_string(), "cleanroom".to_string()),
            (labels::SCENARIO.to_string(), "census".to_string()),
        ]);
        assert_eq!(scenario_of(&ours), Some(ObjectRef::new("census")));
        let foreign = BTreeMap::from([(labels::SCENARIO.to_string(), "census".to_string())]);
        assert_eq!(scenario_of(&foreign), None);
    }
}
