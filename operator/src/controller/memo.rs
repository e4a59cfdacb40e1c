//! What the operator last wrote for each scenario, so that a pass that would
//! apply exactly the same objects again, or write the status it wrote a
//! moment ago, skips the writes.
//!
//! Server-side apply is idempotent, so re-applying is always correct, but a
//! workspace is about ten objects and a scenario is reconciled many times on
//! its way to Ready (every watch event of its compute, claims and
//! authorization): re-applying all of them each time was most of the
//! operator's API traffic. The memo is only an optimisation: it lives in
//! memory (a restarted operator starts empty and applies everything once),
//! and an entry older than [`RESYNC`] is ignored, so drift (an object someone
//! deleted) is repaired within that time.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

/// How long a remembered apply stands before everything is applied again.
pub const RESYNC: Duration = Duration::from_secs(600);

/// A fingerprint of what one pass would write: the desired objects, as JSON.
pub fn fingerprint(objects: &[serde_json::Value]) -> u64 {
    let mut h = DefaultHasher::new();
    for o in objects {
        o.to_string().hash(&mut h);
    }
    h.finish()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    fingerprint: u64,
    at: Instant,
    /// Every dataset is in the workspace (data cannot change afterwards).
    data_ready: bool,
}

/// The last status written for a scenario: the resourceVersion of the
/// scenario the pass read, and the status's fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Written {
    read: String,
    fingerprint: u64,
}

/// Per-scenario (by uid) record of the last full apply and status write.
#[derive(Default)]
pub struct Memo {
    entries: Mutex<HashMap<String, Entry>>,
    statuses: Mutex<HashMap<String, Written>>,
    /// When this process stopped a workspace's compute and access and
    /// marked its namespace, for the passes that follow before the
    /// namespace cache shows the mark.
    stops: Mutex<HashMap<String, Timestamp>>,
    /// Workspaces whose compute and access are being stopped right now.
    stopping: AtomicUsize,
}

/// A stop in flight, counted until dropped (however its pass ends).
pub struct Stopping<'a>(&'a AtomicUsize);

impl Drop for Stopping<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Memo {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self, uid: &str, fingerprint: u64, now: Instant) -> Option<Entry> {
        self.entries()
            .get(uid)
            .copied()
            .filter(|e| e.fingerprint == fingerprint && now.duration_since(e.at) < RESYNC)
    }

    /// Whether exactly these objects were applied for `uid` within [`RESYNC`].
    pub fn applied(&self, uid: &str, fingerprint: u64) -> bool {
        self.current(uid, fingerprint, Instant::now()).is_some()
    }

    /// Whether the scenario's data was found in place by the apply that
    /// `fingerprint` describes.
    pub fn data_ready(&self, uid: &str, fingerprint: u64) -> bool {
        self.current(uid, fingerprint, Instant::now())
            .is_some_and(|e| e.data_ready)
    }

    /// Records a successful apply of the objects `fingerprint` describes
    /// (keeping its time if it was already recorded, so that resync happens).
    pub fn remember(&self, uid: &str, fingerprint: u64, data_ready: bool) {
        let now = Instant::now();
        let mut entries = self.entries();
        let at = entries
            .get(uid)
            .filter(|e| e.fingerprint == fingerprint && now.duration_since(e.at) < RESYNC)
            .map_or(now, |e| e.at);
        entries.insert(
            uid.to_string(),
            Entry {
                fingerprint,
                at,
                data_ready,
            },
        );
    }

    /// Drops what is known of a scenario (teardown, failure: apply again next time).
    pub fn forget(&self, uid: &str) {
        self.entries().remove(uid);
    }

    fn statuses(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether writing the status `fingerprint` would change nothing on the
    /// API server, for a pass that read the scenario at resourceVersion
    /// `read` showing the status `cached` (its fingerprint).
    ///
    /// Only this process writes a scenario's status, so once it has written
    /// one, that write is what the API server holds, whatever the cache
    /// shows: a cache that has not caught up still shows an older status
    /// (equal, perhaps, to the one this pass computes). A cache that shows
    /// another status at a version not read before that write has seen
    /// something else (a status written by hand, or an earlier write of
    /// this process): writing again is the safe side.
    pub fn status_unchanged(
        &self,
        uid: &str,
        read: &str,
        cached: Option<u64>,
        fingerprint: u64,
    ) -> bool {
        match self.statuses().get(uid) {
            None => cached == Some(fingerprint),
            Some(last) => {
                fingerprint == last.fingerprint
                    && (last.read == read || cached == Some(last.fingerprint))
            }
        }
    }

    /// Records a successful status write by a pass that read the scenario
    /// at resourceVersion `read`.
    pub fn wrote_status(&self, uid: &str, read: &str, fingerprint: u64) {
        self.statuses().insert(
            uid.to_string(),
            Written {
                read: read.to_string(),
                fingerprint,
            },
        );
    }

    /// Drops what is remembered of a closed scenario.
    pub fn forget_closed(&self, uid: &str) {
        self.statuses().remove(uid);
        self.stops().remove(uid);
    }

    /// Drops everything remembered of a scenario that is gone from the
    /// cluster: one deleted while it was being torn down was never seen
    /// Closed by a later pass.
    pub fn forget_gone(&self, uid: &str) {
        self.forget(uid);
        self.forget_closed(uid);
    }

    fn stops(&self) -> std::sync::MutexGuard<'_, HashMap<String, Timestamp>> {
        self.stops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the workspace's compute and access were stopped, and
    /// its namespace marked, at `at`.
    pub fn stopped_at(&self, uid: &str, at: Timestamp) {
        self.stops().insert(uid.to_string(), at);
    }

    /// Counts a stop in flight until the guard is dropped.
    pub fn stopping(&self) -> Stopping<'_> {
        self.stopping.fetch_add(1, Ordering::SeqCst);
        Stopping(&self.stopping)
    }

    /// How many stops are in flight.
    pub fn stops_in_flight(&self) -> usize {
        self.stopping.load(Ordering::SeqCst)
    }

    /// When this process stopped the workspace, if it did.
    pub fn stop_of(&self, uid: &str) -> Option<Timestamp> {
        self.stops().get(uid).copied()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn same_objects_are_remembered_until_they_change_or_are_forgotten() {
        let memo = Memo::default();
        let a = fingerprint(&[json!({"kind": "Namespace", "name": "cr-a"})]);
        let b = fingerprint(&[json!({"kind": "Namespace", "name": "cr-b"})]);
        assert_ne!(a, b);
        assert!(!memo.applied("uid-1", a));
        memo.remember("uid-1", a, false);
        assert!(memo.applied("uid-1", a));
        assert!(!memo.data_ready("uid-1", a));
        assert!(!memo.applied("uid-1", b), "a change applies again");
        assert!(!memo.applied("uid-2", a), "per scenario");
        memo.remember("uid-1", a, true);
        assert!(memo.data_ready("uid-1", a));
        memo.forget("uid-1");
        assert!(!memo.applied("uid-1", a));
    }

    #[test]
    fn a_status_is_skipped_only_when_the_api_server_holds_it() {
        let memo = Memo::default();
        let ready = fingerprint(&[json!({"isolated": true})]);
        let breach = fingerprint(&[json!({"isolated": false})]);
        // Nothing written by this process: the cache is all there is.
        assert!(memo.status_unchanged("u", "10", Some(ready), ready));
        assert!(!memo.status_unchanged("u", "10", Some(ready), breach));

        // A breach is written by a pass that read version 10 (Ready)...
        memo.wrote_status("u", "10", breach);
        // ...and the pass after it, woken before the cache caught up, reads
        // 10 again and finds the workspace isolated: the cache still shows
        // Ready, but the API server holds the breach.
        assert!(
            !memo.status_unchanged("u", "10", Some(ready), ready),
            "a stale cache must not hide the write"
        );
        assert!(memo.status_unchanged("u", "10", Some(ready), breach));
        // The cache caught up (11 is the write, or anything after it).
        assert!(memo.status_unchanged("u", "11", Some(breach), breach));
        assert!(!memo.status_unchanged("u", "11", Some(breach), ready));
        // At a version this process did not read, a status other than its
        // last write: written by hand, or an earlier write. Write again.
        assert!(!memo.status_unchanged("u", "12", Some(ready), breach));

        assert!(
            memo.status_unchanged("v", "10", Some(ready), ready),
            "per scenario"
        );
        {
            let _a = memo.stopping();
            let _b = memo.stopping();
            assert_eq!(memo.stops_in_flight(), 2);
        }
        assert_eq!(memo.stops_in_flight(), 0, "counted until dropped");
        memo.stopped_at("u", Timestamp::UNIX_EPOCH);
        assert_eq!(memo.stop_of("u"), Some(Timestamp::UNIX_EPOCH));
        assert_eq!(memo.stop_of("v"), None);
        memo.forget_closed("u");
        assert!(memo.status_unchanged("u", "10", Some(ready), ready));
        assert_eq!(memo.stop_of("u"), None);
    }

    #[test]
    fn an_old_entry_is_stale() {
        let memo = Memo::default();
        let f = fingerprint(&[json!(1)]);
        memo.remember("u", f, true);
        let later = Instant::now() + RESYNC + Duration::from_secs(1);
        assert!(memo.current("u", f, later).is_none());
        assert!(memo.current("u", f, Instant::now()).is_some());
    }
}
