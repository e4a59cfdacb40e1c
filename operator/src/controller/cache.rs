//! The shared caches: one watch per kind fills a store that every reader
//! shares, and says when that store has been filled once.
//!
//! Why not kube's `Store::wait_until_ready`: its readiness is a oneshot
//! channel with one waker slot, so when several tasks wait on one store only
//! the last one to have polled is woken, and the others wait for ever (a
//! pass waiting on it never ends, and its object is never reconciled
//! again). Here the task that drives the watch says so on a channel that
//! wakes every waiter, as the end of its first list passes through, after
//! the store holds it. Nothing in this crate calls `wait_until_ready`: the
//! controllers' own runners are its only callers, one per store.
//!
//! A cache not yet filled never answers "absent": [`Cache::cached`] says it
//! does not know, and [`Cache::get`] asks the API server instead, so a pass
//! (a teardown among them) never waits for a cache.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::warn;

use super::Error;

/// What a cache needs of a kind: cluster-scoped or not, no dynamic type.
pub trait Cached:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
}

impl<K> Cached for K where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// A store filled by one watch, and whether it has been filled once.
pub struct Cache<K: Cached> {
    store: Store<K>,
    filled: watch::Receiver<bool>,
}

impl<K: Cached> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            store: self.store.clone(),
            filled: self.filled.clone(),
        }
    }
}

impl<K: Cached> Cache<K> {
    /// The store, for a controller that reads its objects from it.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Every object in the store, for what reads them all (counts, quota
    /// sums): the whole cluster's only once [`Cache::is_filled`].
    pub fn state(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// Whether the store has held the cluster's state once.
    pub fn is_filled(&self) -> bool {
        *self.filled.borrow()
    }

    /// Waits until the store has held the cluster's state once; fails if
    /// the watch stopped before (the process is stopping). Every waiter is
    /// woken.
    pub async fn filled(&self) -> Result<(), Error> {
        let mut filled = self.filled.clone();
        filled
            .wait_for(|f| *f)
            .await
            .map(|_| ())
            .map_err(|_| Error::CacheStopped(kind::<K>()))
    }

    /// The object named `name` as the cache knows it: `None` while the
    /// cache is not filled (an object absent from it may exist), else
    /// whether it is there.
    pub fn cached(&self, name: &str) -> Option<Option<Arc<K>>> {
        self.is_filled()
            .then(|| self.store.get(&ObjectRef::new(name)))
    }

    /// [`Cache::cached`] for the object `name` in `namespace`.
    pub fn cached_in(&self, namespace: &str, name: &str) -> Option<Option<Arc<K>>>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        self.is_filled()
            .then(|| self.store.get(&ObjectRef::new(name).within(namespace)))
    }

    /// The cluster-scoped object named `name`: from the cache once it is
    /// filled, from the API server before (never waiting, never taking an
    /// object the cache has not seen yet for absent).
    pub async fn get(&self, client: &Client, name: &str) -> Result<Option<Arc<K>>, Error> {
        match self.cached(name) {
            Some(known) => Ok(known),
            None => Ok(Api::<K>::all(client.clone())
                .get_opt(name)
                .await?
                .map(Arc::new)),
        }
    }
}

fn kind<K: Cached>() -> &'static str {
    std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("objects")
}

/// One watch of every `K`, feeding the cache every reader shares. The
/// events must be polled by exactly one task that never waits on anything
/// else (they drive the store: each is in it before it is yielded). Errors
/// are logged; the watch retries with backoff.
pub fn shared<K: Cached>(
    api: Api<K>,
) -> (
    Cache<K>,
    impl Stream<Item = watcher::Event<K>> + Send + 'static,
) {
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut K| top_level_field_sets(o.meta_mut()));
    fill(events)
}

/// Keeps of each field manager's entry only the top-level fields it set
/// (`f:spec`, `f:status`, ...): the ledger asks no more of them (who last
/// wrote the spec, [`crate::audit::transitions::requester`]), and the
/// whole sets, every status condition's fields among them, were a third of
/// a cached scenario's memory.
pub fn top_level_field_sets(meta: &mut ObjectMeta) {
    for entry in meta.managed_fields.iter_mut().flatten() {
        if let Some(FieldsV1(serde_json::Value::Object(fields))) = &mut entry.fields_v1 {
            for value in fields.values_mut() {
                *value = serde_json::Value::Object(Default::default());
            }
        }
    }
}

/// A cache of the operator's own objects of kind `K` (labelled as managed
/// by it), without their field managers: nothing reads who wrote which field
/// of them, and at a thousand workspaces those entries would be much of the
/// operator's memory. `trim` drops what no reader of the cache needs.
/// (Scenarios and authorizations keep their managers: the ledger names the
/// requester from them.)
pub fn managed<K: Cached>(
    api: Api<K>,
    trim: impl Fn(&mut K) + Send + 'static,
) -> (
    Cache<K>,
    impl Stream<Item = watcher::Event<K>> + Send + 'static,
) {
    let selector = format!(
        "{}={}",
        crate::workspace::labels::MANAGED_BY,
        crate::workspace::labels::MANAGER
    );
    let events = watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .modify(move |o: &mut K| {
            o.meta_mut().managed_fields = None;
            trim(o);
        });
    fill(events)
}

/// What the Deployment cache keeps: metadata and status. Only whether the
/// workspace's Deployment exists and how many replicas are available is
/// read from it, and the pod template is most of its size.
pub fn deployment_without_template(deployment: &mut Deployment) {
    deployment.spec.template.spec = None;
}

/// What the Job cache keeps: as [`deployment_without_template`] (only
/// whether a Job exists is read from it).
pub fn job_without_template(job: &mut Job) {
    if let Some(spec) = &mut job.spec {
        spec.template.spec = None;
    }
}

/// [`shared`], from any stream of watch events.
pub fn fill<K: Cached>(
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
) -> (
    Cache<K>,
    impl Stream<Item = watcher::Event<K>> + Send + 'static,
) {
    let (store, writer) = reflector::store();
    let (filled_tx, filled) = watch::channel(false);
    let events = events.reflect(writer).filter_map(move |event| {
        let event = match event {
            Ok(event) => {
                // The store swapped its first list in before yielding this.
                if matches!(event, watcher::Event::InitDone) {
                    filled_tx.send_replace(true);
                }
                Some(event)
            }
            Err(e) => {
                warn!(error = %e, kind = kind::<K>(), "watch");
                None
            }
        };
        std::future::ready(event)
    });
    (Cache { store, filled }, events)
}

/// The object an event is about, and whether it was deleted.
pub fn touched<K>(event: watcher::Event<K>) -> Option<(K, bool)> {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => Some((o, false)),
        watcher::Event::Delete(o) => Some((o, true)),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::channel::mpsc;

    use super::*;
    use crate::api::Dataset;

    fn dataset(name: &str) -> Dataset {
        let mut d = crate::fixtures::dataset();
        d.metadata.name = Some(name.into());
        d.metadata.uid = Some(format!("uid-{name}"));
        d
    }

    type Feed = mpsc::UnboundedSender<watcher::Result<watcher::Event<Dataset>>>;

    /// A cache fed by hand, its events driven by one task as in `run`.
    fn fed() -> (Cache<Dataset>, Feed, tokio::task::JoinHandle<()>) {
        let (feed, events) = mpsc::unbounded();
        let (cache, events) = fill(events);
        let driver = tokio::spawn(events.for_each(|_| async {}));
        (cache, feed, driver)
    }

    #[tokio::test]
    async fn every_waiter_is_woken_when_the_first_list_is_in() {
        let (cache, feed, _driver) = fed();
        // Waiting in separate tasks, as passes and the readiness check do:
        // kube's own readiness woke only the last of them.
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    cache.filled().await.unwrap();
                    // Filled means the whole first list is in the store.
                    cache.cached("census").expect("filled").is_some()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        feed.unbounded_send(Ok(watcher::Event::Init)).unwrap();
        feed.unbounded_send(Ok(watcher::Event::InitApply(dataset("census"))))
            .unwrap();
        feed.unbounded_send(Ok(watcher::Event::InitDone)).unwrap();
        for (i, w) in waiters.into_iter().enumerate() {
            let seen = tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .unwrap_or_else(|_| panic!("waiter {i} was never woken"))
                .unwrap();
            assert!(seen, "waiter {i} saw the store before it was filled");
        }
        assert!(cache.is_filled());
    }

    #[tokio::test]
    async fn an_unfilled_cache_never_says_absent() {
        let (cache, feed, _driver) = fed();
        assert_eq!(cache.cached("census"), None, "not known yet");
        feed.unbounded_send(Ok(watcher::Event::Init)).unwrap();
        feed.unbounded_send(Ok(watcher::Event::InitApply(dataset("census"))))
            .unwrap();
        // An error in the middle of the list is logged and skipped.
        feed.unbounded_send(Err(watcher::Error::NoResourceVersion))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(cache.cached("census"), None, "the list is not complete");
        assert_eq!(cache.cached("other"), None, "absent, but not known to be");
        feed.unbounded_send(Ok(watcher::Event::InitDone)).unwrap();
        cache.filled().await.unwrap();
        assert!(cache.cached("census").unwrap().is_some());
        assert_eq!(cache.cached("other"), Some(None), "now known to be absent");
        // A deletion seen by the watch.
        feed.unbounded_send(Ok(watcher::Event::Delete(dataset("census"))))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(cache.cached("census"), Some(None));
    }

    #[tokio::test]
    async fn a_watch_that_stops_before_its_first_list_fails_its_waiters() {
        let (cache, feed, driver) = fed();
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.filled().await }
        });
        drop(feed);
        driver.await.unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("not left waiting")
            .unwrap();
        assert!(matches!(result, Err(Error::CacheStopped("Dataset"))));
    }

    #[test]
    fn cached_field_sets_keep_who_wrote_the_spec() {
        use crate::audit::transitions::requester;
        let mut scenario = crate::fixtures::scenario();
        let fields = |v: serde_json::Value| Some(FieldsV1(v));
        scenario.metadata.managed_fields = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some("kubectl-edit".into()),
                operation: Some("Update".into()),
                fields_v1: fields(serde_json::json!({
                    "f:spec": {"f:members": {".": {}, "k:{\"name\":\"ana\"}": {}}},
                    "f:metadata": {"f:labels": {"f:team": {}}}
                })),
                ..Default::default()
            },
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some(crate::workspace::FIELD_MANAGER.into()),
                subresource: Some("status".into()),
                fields_v1: fields(serde_json::json!({
                    "f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {"f:status": {}}}}
                })),
                ..Default::default()
            },
        ]);
        let before = requester(&scenario.metadata);
        top_level_field_sets(&mut scenario.metadata);
        assert_eq!(requester(&scenario.metadata), before);
        assert_eq!(before, "manager:kubectl-edit");
        let kept: Vec<_> = scenario
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .map(|m| m.fields_v1.as_ref().map(|f| f.0.clone()))
            .collect();
        assert_eq!(
            kept,
            [
                Some(serde_json::json!({"f:spec": {}, "f:metadata": {}})),
                Some(serde_json::json!({"f:status": {}})),
            ]
        );
    }

    #[test]
    fn cached_workloads_keep_metadata_and_status_only() {
        let id = crate::workspace::testing::identity();
        let spec = crate::fixtures::scenario().spec;
        let crate::workspace::compute::Compute::Deployment(mut d) =
            crate::workspace::compute::compute(&id, &spec, true)
        else {
            panic!("an interactive workspace runs a Deployment");
        };
        d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            available_replicas: Some(1),
            ..Default::default()
        });
        let labels = d.metadata.labels.clone();
        deployment_without_template(&mut d);
        assert!(d.spec.template.spec.is_none());
        assert_eq!(d.metadata.labels, labels);
        assert_eq!(d.status.and_then(|s| s.available_replicas), Some(1));
    }
}
