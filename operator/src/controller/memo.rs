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
use std::time::{Duration, Instant};

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

    /// Whether this very status was written by a pass that read the
    /// scenario at resourceVersion `read`: a pass that reads it there again
    /// reads a cache that has not caught up with that write yet. Once the
    /// cache moves on (to the write, or to anything after it), the status
    /// it shows is compared instead.
    pub fn status_written(&self, uid: &str, read: &str, fingerprint: u64) -> bool {
        self.statuses().get(uid)
            == Some(&Written {
                read: read.to_string(),
                fingerprint,
            })
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

    /// Drops the last status write of a closed scenario.
    pub fn forget_status(&self, uid: &str) {
        self.statuses().remove(uid);
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
    fn a_status_is_skipped_only_while_the_pass_reads_what_came_before_its_write() {
        let memo = Memo::default();
        let a = fingerprint(&[json!({"phase": "Provisioning"})]);
        let b = fingerprint(&[json!({"phase": "Ready"})]);
        assert!(!memo.status_written("u", "10", a), "nothing written yet");
        memo.wrote_status("u", "10", a);
        assert!(
            memo.status_written("u", "10", a),
            "the cache still shows 10"
        );
        assert!(
            !memo.status_written("u", "10", b),
            "another status is written"
        );
        assert!(
            !memo.status_written("u", "11", a),
            "the cache moved on: its status is what counts"
        );
        assert!(!memo.status_written("v", "10", a), "per scenario");
        memo.forget_status("u");
        assert!(!memo.status_written("u", "10", a));
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
