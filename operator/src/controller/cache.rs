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
    let events = watcher(api, watcher::Config::default()).default_backoff();
    fill(events)
}

/// A cache of the operator's own objects of kind `K` (labelled as managed
/// by it), without their field managers: nothing reads who wrote which field
/// of them, and at a thousand workspaces those entries would be much of the
/// operator's memory. (Scenarios and authorizations keep theirs: the ledger
/// names the requester from them.)
pub fn managed<K: Cached>(
    api: Api<K>,
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
        .modify(|o: &mut K| o.meta_mut().managed_fields = None);
    fill(events)
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
}
