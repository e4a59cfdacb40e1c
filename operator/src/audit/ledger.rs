//! The writer: appends records by creating one immutable batch per group
//! commit, and keeps in memory what it needs to write each record once.
//!
//! A batch is named by its first sequence number (see [`super::store`]), so
//! two writers can never both extend the chain from the same head: the
//! loser's create finds the name taken, reads the ledger again, rebases its
//! records on the new head and retries (finding its records there if its own
//! earlier attempt went through without an answer). Only the leader writes
//! (the controllers run only on the lease holder), so conflicts are rare.
//! Nothing is ever rewritten: etcd stores each record about twice (in its
//! batch, then in the segment the compaction makes of a run of batches, see
//! [`super::compact`]), not once per later append as when the newest
//! segment was replaced on every write.
//!
//! In memory: the head (last sequence number and hash), the idempotency key
//! of every record still kept, and per object the members and the Dataset
//! generation last recorded. All of it is rebuilt from the ledger at
//! start-up; a checkpoint record carries the part that the pruned records
//! established. That memory sits behind a lock never held across a call to
//! the API server; only the write turn (one batch in flight at a time, so
//! that the chain stays linear) is, and every caller waiting for it is
//! carried by the next batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{error, info, warn};

use super::chain::{self, Break, Form, Summary, anchor_of};
use super::events::Announcer;
use super::prune::{Retention, prunable};
use super::record::{Action, Draft, GENESIS, OPERATOR_ACTOR, Record, data_key, hash};
use super::signing::Signer;
use super::store::{self, PREFIX, into_segment};
use super::transitions::{Change, transitions};
use crate::api::{Authorization, Dataset, Members, Scenario, ScenarioStatus};
use crate::metrics::Metrics;

/// How large a compacted segment (and at most a batch) grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Records per segment.
    pub records: usize,
    /// Bytes of records per segment or batch (a ConfigMap holds at most 1 MiB).
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            records: 512,
            bytes: 512 * 1024,
        }
    }
}

/// What can go wrong writing the ledger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("audit ledger: kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("audit ledger: still conflicting with another writer after {0} attempts")]
    Contention(usize),
    /// The write that carried these drafts (together with others) failed.
    #[error("{0}")]
    Batch(String),
}

/// What the ledger remembers of one object between records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Memo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Members>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// Applies one record to the memory of its object.
fn remember(memory: &mut HashMap<String, Memo>, r: &Record) {
    if r.uid.is_empty() || r.action == Action::Checkpoint {
        return;
    }
    let memo = memory.entry(r.uid.clone()).or_default();
    let who = |v: &Option<serde_json::Value>, field: &str| {
        v.as_ref()
            .and_then(|v| v.get(field))
            .and_then(|u| u.as_str())
            .map(str::to_string)
    };
    match r.action {
        Action::Created | Action::Updated if r.kind == "Dataset" => memo.generation = r.generation,
        Action::Created => {
            memo.members.get_or_insert_with(Members::default);
        }
        Action::MemberGranted => {
            let m = memo.members.get_or_insert_with(Members::default);
            if let Some(u) = who(&r.after, "user")
                && !m.users.contains(&u)
            {
                m.users.push(u);
            }
            if let Some(g) = who(&r.after, "group")
                && !m.groups.contains(&g)
            {
                m.groups.push(g);
            }
        }
        Action::MemberRemoved => {
            let m = memo.members.get_or_insert_with(Members::default);
            if let Some(u) = who(&r.before, "user") {
                m.users.retain(|x| *x != u);
            }
            if let Some(g) = who(&r.before, "group") {
                m.groups.retain(|x| *x != g);
            }
        }
        _ => {}
    }
}

#[derive(Default)]
pub(super) struct State {
    loaded: bool,
    last_seq: u64,
    head: String,
    /// The action of the last record (a signed head is not signed again).
    last_action: Option<Action>,
    keys: HashSet<String>,
    memory: HashMap<String, Memo>,
    /// Batches not yet compacted, and the records and bytes they hold.
    pub(super) loose: Loose,
}

/// What the batches not yet compacted hold (when the compaction is due).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Loose {
    pub(super) batches: usize,
    pub(super) records: usize,
    pub(super) bytes: usize,
    /// A compaction was found interrupted: finish it whatever the size.
    pub(super) interrupted: bool,
}

/// What a pruning did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pruned {
    /// Segments deleted.
    pub segments: Vec<String>,
    /// The checkpoint's sequence number, if one was written.
    pub checkpoint: Option<u64>,
}

/// The audit ledger of one namespace.
pub struct Ledger {
    pub(super) api: Api<ConfigMap>,
    namespace: String,
    pub(super) limits: Limits,
    /// Never held across an await.
    pub(super) state: std::sync::Mutex<State>,
    /// The write turn: one batch in flight at a time, held across its create.
    turn: tokio::sync::Mutex<()>,
    /// Compaction and pruning, one at a time.
    pub(super) upkeep: tokio::sync::Mutex<()>,
    /// Woken when the batches fill a segment.
    pub(super) compact_due: tokio::sync::Notify,
    /// Appends waiting for the write lock (see [`Ledger::append`]).
    pending: std::sync::Mutex<Vec<Waiting>>,
    metrics: Option<Arc<Metrics>>,
    events: Option<Arc<Announcer>>,
    exit_after: Option<Action>,
    /// The key that signs the head (see [`super::signing`]), once known.
    signer: std::sync::OnceLock<Signer>,
}

/// One caller's drafts and where its result goes.
type Waiting = (
    Vec<Draft>,
    tokio::sync::oneshot::Sender<Result<Vec<Record>, String>>,
);

/// Most drafts one write carries (a segment holds 512 records).
const BATCH: usize = 256;

/// The next batch: as many of `drafts` as fit in `bytes`, at least one,
/// chained from the head (`last_seq`, `head`). Pure.
fn next_batch(
    drafts: Vec<Draft>,
    last_seq: u64,
    head: &str,
    now: Timestamp,
    bytes: usize,
) -> (chain::Segment, Vec<(Record, String)>) {
    let mut running = head.to_string();
    let mut written: Vec<(Record, String)> = Vec::with_capacity(drafts.len());
    let mut size = 0;
    for d in drafts {
        let record = Record::new(d, last_seq + 1 + written.len() as u64, now, &running);
        let line = record.line();
        size += line.len() + 12;
        if !written.is_empty() && size > bytes {
            break;
        }
        running = hash(&line);
        written.push((record, line));
    }
    let piece = chain::Segment {
        name: String::new(),
        form: Form::Batch,
        first: last_seq + 1,
        prev: head.to_string(),
        head: Some(running),
        sealed: true,
        entries: written
            .iter()
            .map(|(r, line)| (data_key(r.seq), line.clone()))
            .collect(),
    };
    (piece, written)
}

impl Ledger {
    /// The ledger in `namespace` (read on first use).
    pub fn new(client: Client, namespace: &str) -> Ledger {
        Ledger {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            limits: Limits::default(),
            state: std::sync::Mutex::new(State::default()),
            turn: tokio::sync::Mutex::new(()),
            upkeep: tokio::sync::Mutex::new(()),
            compact_due: tokio::sync::Notify::new(),
            pending: std::sync::Mutex::new(Vec::new()),
            metrics: None,
            events: None,
            exit_after: None,
            signer: std::sync::OnceLock::new(),
        }
    }

    /// Segment size limits (tests use small segments).
    pub fn with_limits(mut self, limits: Limits) -> Ledger {
        self.limits = limits;
        self
    }

    /// Count records and verification results in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Ledger {
        self.metrics = Some(metrics);
        self
    }

    /// Also publish every record as a Kubernetes Event on its object.
    pub fn with_events(mut self, client: Client) -> Ledger {
        let reporter = Reporter {
            controller: "cleanroom".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        self.events = Some(Arc::new(Announcer::new(client, reporter)));
        self
    }

    /// Fault injection for the crash test: exit the process right after
    /// appending a record with this action, before the status write that
    /// follows it (`CLEANROOM_AUDIT_EXIT_AFTER`).
    pub fn exit_after(mut self, action: Option<Action>) -> Ledger {
        self.exit_after = action;
        self
    }

    /// A Warning Event on a Scenario for what is not a record of its own
    /// (a wipe that keeps failing): published in the background, never
    /// waited for.
    pub fn warn_scenario(&self, scenario: &crate::api::Scenario, reason: &str, note: String) {
        let Some(events) = self.events.clone() else {
            return;
        };
        let reference = reference_to(
            "Scenario",
            &scenario.metadata.name.clone().unwrap_or_default(),
            &scenario.metadata.uid.clone().unwrap_or_default(),
        );
        let event = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Teardown".into(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(e) = events.warn(&event, &reference).await {
                warn!(error = %e, "could not publish an Event");
            }
        });
    }

    /// Sign the head with `signer` from now on (set once; see [`Ledger::sign_head`]).
    pub fn set_signer(&self, signer: Signer) {
        let _ = self.signer.set(signer);
    }

    /// Whether the head can be signed (the key was found or made).
    pub fn can_sign(&self) -> bool {
        self.signer.get().is_some()
    }

    /// Appends a signed head over the current head, unless the last record
    /// already is one (or there is no key, or no record), and never over a
    /// chain that is broken or whose signed heads do not hold (signing it
    /// would vouch for a rebuilt chain): `why` says what prompted it. Logged with its signature, and an Event, so that copies
    /// exist outside the ledger.
    pub async fn sign_head(&self, why: &str) -> Result<Option<Record>, Error> {
        let Some(signer) = self.signer.get() else {
            return Ok(None);
        };
        self.ensure_loaded().await?;
        let (seq, head) = {
            let st = self.state();
            if st.last_seq == 0 || st.last_action == Some(Action::SignedHead) {
                return Ok(None);
            }
            (st.last_seq, st.head.clone())
        };
        // Read after the head was taken: it holds at least that head.
        let segments = store::segments(&self.api).await?;
        if let Err(why) = super::signing::may_sign(&segments, &signer.verifying_key()) {
            error!(namespace = %self.namespace, %why, "refusing to sign the audit ledger's head");
            return Ok(None);
        }
        let draft = signer.draft(seq, &head, why);
        let signature = draft
            .after
            .as_ref()
            .and_then(|a| a.get("signature").cloned());
        let written = self.append(vec![draft]).await?;
        info!(
            target: "cleanroom::audit",
            head_seq = seq,
            head_hash = %head,
            public_key = %signer.public_hex(),
            signature = %signature.unwrap_or_default(),
            why,
            "audit head signed"
        );
        Ok(written.into_iter().next())
    }

    /// The namespace of the segments.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Reads every piece, verifies the chain (reported in the metrics and
    /// the log) and rebuilds the memory. Appending goes on after a broken
    /// chain: the evidence of the break is kept as it is.
    pub async fn load(&self) -> Result<Result<Summary, Break>, Error> {
        let _turn = self.turn.lock().await;
        self.load_in_turn().await
    }

    /// The memory under its lock (poisoning is no reason to stop auditing).
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads the ledger unless its memory is current.
    async fn ensure_loaded(&self) -> Result<(), Error> {
        if self.state().loaded {
            return Ok(());
        }
        let _turn = self.turn.lock().await;
        if !self.state().loaded {
            let _verdict = self.load_in_turn().await?;
        }
        Ok(())
    }

    /// [`Ledger::load`], for a caller holding the write turn.
    async fn load_in_turn(&self) -> Result<Result<Summary, Break>, Error> {
        let configmaps = store::list(&self.api).await?;
        let segments: Vec<chain::Segment> =
            configmaps.into_iter().filter_map(into_segment).collect();
        let verdict = chain::verify(PREFIX, &segments);
        self.report(&verdict);
        let fresh = rebuilt(&segments);
        let interrupted = fresh.loose.interrupted;
        *self.state() = fresh;
        if interrupted {
            self.compact_due.notify_one();
        }
        Ok(verdict)
    }

    fn report(&self, verdict: &Result<Summary, Break>) {
        match verdict {
            Ok(s) => info!(
                namespace = %self.namespace,
                records = s.records,
                segments = s.segments,
                head = %s.head,
                "audit chain verified"
            ),
            Err(b) => error!(namespace = %self.namespace, broken = %b, "audit chain is broken"),
        }
        if let Some(m) = &self.metrics {
            m.audit_verified(verdict.is_ok(), Timestamp::now());
        }
    }

    /// Reads and verifies the chain as stored now; it must also still hold
    /// the records this process wrote, unchanged (the head it remembers).
    pub async fn verify(&self) -> Result<Result<Summary, Break>, Error> {
        // The head this process knows, taken before the read: the ledger
        // read afterwards must still hold it (appends only add).
        let (loaded, last_seq, head) = {
            let st = self.state();
            (st.loaded, st.last_seq, st.head.clone())
        };
        let segments = store::segments(&self.api).await?;
        let mut verdict = chain::verify(PREFIX, &segments);
        if let Ok(summary) = &verdict
            && loaded
            && last_seq > 0
        {
            let key = data_key(last_seq);
            let found = segments.iter().find_map(|s| {
                s.entries
                    .iter()
                    .find(|e| e.0 == key)
                    .map(|e| (s, hash(&e.1)))
            });
            let broken = match found {
                Some((_, h)) if h == head => None,
                Some((s, _)) => Some(Break {
                    segment: s.name.clone(),
                    record: Some(key),
                    problem: format!(
                        "this operator wrote it with the hash {head}; the chain was rewritten from there on",
                    ),
                }),
                None if summary.last_seq.is_some_and(|l| l > last_seq) => None,
                None => Some(Break {
                    segment: summary_segment(&segments),
                    record: Some(key),
                    problem: "this operator wrote it, but it is no longer in the chain: the newest records were removed".into(),
                }),
            };
            if let Some(b) = broken {
                verdict = Err(b);
            }
        }
        self.report(&verdict);
        Ok(verdict)
    }

    /// The records the Scenario's status change to `new` calls for, appended.
    pub async fn record_scenario(
        &self,
        s: &Scenario,
        new: &ScenarioStatus,
    ) -> Result<Vec<Record>, Error> {
        let known = self.known_members(s.metadata.uid.as_deref()).await?;
        self.append(transitions(&Change::scenario(s, new, known)))
            .await
    }

    /// The records the Authorization's status change to `new` calls for, appended.
    pub async fn record_authorization(
        &self,
        a: &Authorization,
        new: &crate::api::AuthorizationStatus,
    ) -> Result<Vec<Record>, Error> {
        let known = self.known_members(a.metadata.uid.as_deref()).await?;
        self.append(transitions(&Change::authorization(a, new, known)))
            .await
    }

    /// A Dataset seen by the watcher: `created` the first time, `updated`
    /// for each new generation, `deleted` when it goes.
    pub async fn record_dataset(&self, d: &Dataset, deleted: bool) -> Result<Vec<Record>, Error> {
        let Some(uid) = d.metadata.uid.clone() else {
            return Ok(Vec::new());
        };
        let generation = d.metadata.generation;
        self.ensure_loaded().await?;
        let known = self.state().memory.get(&uid).and_then(|m| m.generation);
        let (action, key) = match (deleted, known) {
            (true, _) => (Action::Deleted, format!("{uid}/deleted")),
            (false, None) => (Action::Created, format!("{uid}/created/first")),
            (false, Some(g)) if generation.is_some_and(|n| n > g) => (
                Action::Updated,
                format!("{uid}/updated/{}", generation.unwrap_or(0)),
            ),
            _ => return Ok(Vec::new()),
        };
        let after = (!deleted).then(|| {
            json!({
                "provider": d.spec.provider,
                "classification": d.spec.classification,
                "columns": d.spec.columns.iter().map(|c| &c.name).collect::<Vec<_>>(),
            })
        });
        let before = match (action, known) {
            (Action::Updated, Some(g)) => Some(json!({"generation": g})),
            _ => None,
        };
        self.append(vec![Draft {
            actor: if deleted {
                "unknown".into()
            } else {
                super::transitions::requester(&d.metadata)
            },
            kind: "Dataset".into(),
            name: d.name_any(),
            uid,
            generation,
            authorization: None,
            action,
            reason: None,
            before,
            after,
            key,
        }])
        .await
    }

    async fn known_members(&self, uid: Option<&str>) -> Result<Option<Members>, Error> {
        self.ensure_loaded().await?;
        let st = self.state();
        Ok(uid
            .and_then(|u| st.memory.get(u))
            .and_then(|m| m.members.clone()))
    }

    /// Appends the drafts whose keys are not in the ledger yet, in order, and
    /// returns the records written. Published as Events, logged, counted.
    ///
    /// Group commit: one batch is in flight at a time (the chain is
    /// linear); callers that arrive meanwhile queue up, and whoever takes
    /// the write turn next writes all their drafts in one batch (in arrival
    /// order, up to [`BATCH`]) and hands each caller its records. Each
    /// caller returns only once its own drafts are stored.
    pub async fn append(&self, drafts: Vec<Draft>) -> Result<Vec<Record>, Error> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.waiting().push((drafts, tx));
        loop {
            let turn = self.turn.lock().await;
            // A writer before us may have carried ours.
            if let Ok(done) = rx.try_recv() {
                return done.map_err(Error::Batch);
            }
            let batch = self.take_batch();
            if batch.is_empty() {
                // Ours is in a batch being written right now (taken by a
                // writer that has not sent yet): wait for its result.
                drop(turn);
                return rx
                    .await
                    .map_err(|_| Error::Batch("audit ledger: the batch writer went away".into()))?
                    .map_err(Error::Batch);
            }
            let all: Vec<Draft> = batch.iter().flat_map(|(d, _)| d.iter().cloned()).collect();
            let result = self.append_in_turn(all).await;
            drop(turn);
            match result {
                Ok(written) => {
                    for (drafts, tx) in batch {
                        let keys: HashSet<&str> = drafts.iter().map(|d| d.key.as_str()).collect();
                        let mine = written
                            .iter()
                            .filter(|(r, _)| keys.contains(r.key.as_str()))
                            .map(|(r, _)| r.clone())
                            .collect();
                        let _ = tx.send(Ok(mine));
                    }
                    self.announce(&written);
                }
                Err(e) => {
                    let message = e.to_string();
                    for (_, tx) in batch {
                        let _ = tx.send(Err(message.clone()));
                    }
                }
            }
            // Ours was in that batch (it was queued before we locked), or a
            // later one: loop until our result is there.
            if let Ok(done) = rx.try_recv() {
                return done.map_err(Error::Batch);
            }
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The oldest waiting callers, up to [`BATCH`] drafts (at least one caller).
    fn take_batch(&self) -> Vec<Waiting> {
        let mut waiting = self.waiting();
        let mut count = 0;
        let mut take = 0;
        for (drafts, _) in waiting.iter() {
            if take > 0 && count + drafts.len() > BATCH {
                break;
            }
            count += drafts.len();
            take += 1;
        }
        waiting.drain(..take).collect()
    }

    /// Writes the drafts not yet in the ledger as new batches (more than
    /// one only if they exceed a segment's bytes), holding the write turn.
    async fn append_in_turn(&self, drafts: Vec<Draft>) -> Result<Vec<(Record, String)>, Error> {
        const ATTEMPTS: usize = 5;
        if !self.state().loaded {
            let _verdict = self.load_in_turn().await?;
        }
        let mut written = Vec::new();
        let mut attempts = 0;
        loop {
            let (piece, records) = {
                let st = self.state();
                let mut seen = HashSet::new();
                let fresh: Vec<Draft> = drafts
                    .iter()
                    .filter(|d| !st.keys.contains(&d.key) && seen.insert(d.key.clone()))
                    .cloned()
                    .collect();
                if fresh.is_empty() {
                    return Ok(written);
                }
                next_batch(
                    fresh,
                    st.last_seq,
                    &st.head,
                    Timestamp::now(),
                    self.limits.bytes,
                )
            };
            let cm = store::to_configmap(&self.namespace, &piece);
            match self.api.create(&PostParams::default(), &cm).await {
                Ok(_) => {
                    self.commit(&piece, &records);
                    written.extend(records);
                }
                Err(kube::Error::Api(s)) if s.code == 409 && attempts + 1 < ATTEMPTS => {
                    attempts += 1;
                    warn!(namespace = %self.namespace, batch = %cm.name_any(),
                        "another writer extended the audit chain first; rebasing on its head");
                    let _verdict = self.load_in_turn().await?;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Err(Error::Contention(ATTEMPTS));
                }
                Err(e) => {
                    // The create may or may not have happened: read before the next one.
                    self.state().loaded = false;
                    return Err(e.into());
                }
            }
        }
    }

    /// The memory after `piece` was created with `records`.
    fn commit(&self, piece: &chain::Segment, records: &[(Record, String)]) {
        let mut st = self.state();
        for (r, line) in records {
            st.keys.insert(r.key.clone());
            remember(&mut st.memory, r);
            st.last_seq = r.seq;
            st.head = hash(line);
            st.last_action = Some(r.action);
        }
        st.loose.batches += 1;
        st.loose.records += records.len();
        st.loose.bytes += piece.bytes();
        if super::compact::due(&st.loose, &self.limits) {
            self.compact_due.notify_one();
        }
    }

    /// The second copies: one JSON log line and one Event per record.
    fn announce(&self, written: &[(Record, String)]) {
        for (r, line) in written {
            info!(
                target: "cleanroom::audit",
                seq = r.seq,
                action = r.action.as_str(),
                kind = %r.kind,
                name = %r.name,
                actor = %r.actor,
                hash = %hash(line),
                record = %line,
                "audit record"
            );
        }
        if let Some(m) = &self.metrics {
            m.audit_recorded(written.len() as u64);
        }
        if let Some(announcer) = &self.events {
            let events: Vec<(Event, ObjectReference)> = written
                .iter()
                .filter(|(r, _)| r.action != Action::Checkpoint)
                .map(|(r, line)| event_in(r, line, &self.namespace))
                .collect();
            let announcer = announcer.clone();
            tokio::spawn(async move {
                for (event, reference) in events {
                    if let Err(e) = announcer.record(&event, &reference).await {
                        warn!(error = %e, "could not publish an audit Event (the ledger has the record)");
                    }
                }
            });
        }
        if let Some(action) = self.exit_after
            && written.iter().any(|(r, _)| r.action == action)
        {
            error!(
                action = action.as_str(),
                "CLEANROOM_AUDIT_EXIT_AFTER: exiting after the audit write, before the status write"
            );
            std::process::exit(86);
        }
    }

    /// Prunes the oldest pieces whose every record is past its retention
    /// `as_of` (see [`super::prune`]): first a checkpoint record naming the
    /// last sequence number and hash of the pruned tail (and the memory it
    /// established, for the objects in `live`), then the deletions, oldest
    /// first (with any batch a pruned segment holds). Interrupted, it is
    /// finished by the next call; the chain verifies at every step. Refuses
    /// to prune a broken chain. Never at the same time as a compaction.
    pub async fn prune(
        &self,
        as_of: Timestamp,
        authorizations: &[Authorization],
        live: &HashSet<String>,
    ) -> Result<Result<Pruned, Break>, Error> {
        let _upkeep = self.upkeep.lock().await;
        let retentions: HashMap<String, Retention> = authorizations
            .iter()
            .map(|a| (a.name_any(), Retention::of(a)))
            .collect();
        let segments = store::segments(&self.api).await?;
        if let Err(b) = chain::verify(PREFIX, &segments) {
            return Ok(Err(b));
        }
        // Compacted segments only, oldest first: batches are young, and the
        // checkpoint that a pruning appends never makes the next one due.
        let units = super::compact::covering(&segments);
        let segments_first = units.iter().take_while(|u| u.form == Form::Segment).count();
        let count = prunable(
            &units[..(segments_first + 1).min(units.len())],
            as_of,
            &retentions,
        );
        let nothing = Pruned {
            segments: Vec::new(),
            checkpoint: None,
        };
        if count == 0 {
            return Ok(Ok(nothing));
        }
        let (gone, kept_from) = (&units[..count], units[count].first);
        let lines = chain::lines(&segments);
        let records: Vec<Record> = lines.iter().filter_map(|l| Record::parse(l).ok()).collect();
        let Some((last_seq, last_hash)) = lines
            .iter()
            .filter_map(|l| Some((Record::parse(l).ok()?.seq, hash(l))))
            .take_while(|(seq, _)| *seq < kept_from)
            .last()
        else {
            return Ok(Ok(nothing));
        };
        // What the pruned records established: the current base, then them.
        let mut memory = pruned_memory(&records);
        for r in records.iter().filter(|r| r.seq <= last_seq) {
            remember(&mut memory, r);
        }
        memory.retain(|uid, _| live.contains(uid));
        // Every piece wholly in the pruned range: the units and the batches
        // a pruned segment still holds twice.
        let mut names: Vec<(u64, String)> = segments
            .iter()
            .filter(|s| s.last() <= last_seq)
            .map(|s| (s.first, s.name.clone()))
            .collect();
        names.sort();
        let names: Vec<String> = names.into_iter().map(|(_, n)| n).collect();
        let checkpoint = Draft {
            actor: OPERATOR_ACTOR.into(),
            kind: "Ledger".into(),
            name: PREFIX.into(),
            uid: String::new(),
            generation: None,
            authorization: None,
            action: Action::Checkpoint,
            reason: Some(format!(
                "retention: records through {last_seq} are past their retention as of {as_of}"
            )),
            before: None,
            after: Some(json!({
                "prunedThroughSeq": last_seq,
                "prunedThroughHash": last_hash,
                "firstKeptSeq": kept_from,
                "prunedSegments": gone.iter().map(|s| &s.name).collect::<Vec<_>>(),
                "memory": memory,
            })),
            key: format!("checkpoint/seq-{kept_from}"),
        };
        let written = self.append(vec![checkpoint]).await?;
        for name in &names {
            match self.api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The keys of pruned records are forgotten with them.
        self.state().loaded = false;
        info!(segments = ?names, through = last_seq, "audit records pruned after a checkpoint");
        drop(_upkeep);
        self.sign_head("after pruning").await?;
        Ok(Ok(Pruned {
            segments: names,
            checkpoint: written.first().map(|r| r.seq),
        }))
    }
}

/// The Event of one record of the ledger in `namespace`. A signed head has
/// no object of its own: it is told on the ConfigMap that publishes the key
/// to check it with.
fn event_in(r: &Record, line: &str, namespace: &str) -> (Event, ObjectReference) {
    let (event, reference) = event_of(r, line);
    match r.action {
        Action::SignedHead => (event, public_key_reference(namespace)),
        _ => (event, reference),
    }
}

/// What an Event about the ledger's public key points at.
fn public_key_reference(namespace: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some(super::keys::PUBLIC.into()),
        namespace: Some(namespace.into()),
        ..ObjectReference::default()
    }
}

fn summary_segment(segments: &[chain::Segment]) -> String {
    segments.last().map_or_else(
        || chain::piece_name(PREFIX, Form::Batch, 1),
        |s| s.name.clone(),
    )
}

/// The memory a ledger read as `segments` establishes (pure).
fn rebuilt(segments: &[chain::Segment]) -> State {
    let mut records: Vec<Record> = Vec::new();
    let mut last: Option<(u64, String)> = None;
    for line in chain::lines(segments) {
        if let Ok(r) = Record::parse(line) {
            last = Some((r.seq, hash(line)));
            records.push(r);
        }
    }
    let mut memory = pruned_memory(&records);
    let mut keys = HashSet::with_capacity(records.len());
    for r in &records {
        remember(&mut memory, r);
        keys.insert(r.key.clone());
    }
    let (last_seq, head) = match (last, segments.iter().min_by_key(|s| s.first)) {
        (Some(l), _) => l,
        (None, Some(s)) => (0, s.prev.clone()),
        (None, None) => (0, GENESIS.to_string()),
    };
    State {
        loaded: true,
        last_seq,
        head,
        last_action: records.last().map(|r| r.action),
        keys,
        memory,
        loose: super::compact::loose(segments),
    }
}

/// The Event of one record, on its object.
fn event_of(r: &Record, line: &str) -> (Event, ObjectReference) {
    let mut note = format!("audit #{} by {}", r.seq, r.actor);
    if let Some(reason) = &r.reason {
        note.push_str(": ");
        note.push_str(reason);
    }
    if let Some(after) = &r.after {
        note.push_str(&format!(" {after}"));
    }
    note.push_str(&format!(" (sha256 {})", &hash(line)[..16]));
    let note: String = note.chars().take(1000).collect();
    let warning = matches!(
        r.action,
        Action::Rejected
            | Action::Revoked
            | Action::Expired
            | Action::Suspended
            | Action::IsolationBreach
            | Action::Failed
    );
    (
        Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: r.action.event_reason(),
            note: Some(note),
            action: "Audit".into(),
            secondary: None,
        },
        reference_to(&r.kind, &r.name, &r.uid),
    )
}

/// What an Event about one of our objects points at. A namespaced object
/// (an Export) is recorded as `<namespace>/<name>`; its Event goes to that
/// namespace.
fn reference_to(kind: &str, name: &str, uid: &str) -> ObjectReference {
    let (namespace, name) = match name.split_once('/') {
        Some((ns, n)) => (Some(ns.to_string()), n),
        None => (None, name),
    };
    ObjectReference {
        api_version: Some(format!("{}/{}", crate::api::GROUP, crate::api::VERSION)),
        kind: Some(kind.into()),
        name: Some(name.into()),
        namespace,
        uid: Some(uid.into()),
        ..ObjectReference::default()
    }
}

/// The memory the pruned records established: the one the checkpoint that
/// accounts for where the kept chain starts carries (empty without one).
fn pruned_memory(records: &[Record]) -> HashMap<String, Memo> {
    let first_seq = records.first().map(|r| r.seq);
    records
        .iter()
        .filter(|r| anchor_of(r).is_some_and(|a| Some(a.last_seq + 1) == first_seq))
        .filter_map(|r| r.after.as_ref()?.get("memory").cloned())
        .filter_map(|m| serde_json::from_value(m).ok())
        .next_back()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: Action, kind: &str, after: Option<serde_json::Value>) -> Record {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        Record::new(
            Draft {
                actor: "a".into(),
                kind: kind.into(),
                name: "n".into(),
                uid: "u".into(),
                generation: Some(4),
                authorization: None,
                action,
                reason: None,
                before: after.clone(),
                after,
                key: "k".into(),
            },
            1,
            t,
            GENESIS,
        )
    }

    #[test]
    fn memory_follows_members_and_dataset_generations() {
        let mut m = HashMap::new();
        remember(&mut m, &record(Action::Created, "Scenario", None));
        assert_eq!(m["u"].members, Some(Members::default()));
        remember(
            &mut m,
            &record(
                Action::MemberGranted,
                "Scenario",
                Some(json!({"user": "alice"})),
            ),
        );
        remember(
            &mut m,
            &record(
                Action::MemberGranted,
                "Scenario",
                Some(json!({"group": "g"})),
            ),
        );
        remember(
            &mut m,
            &record(
                Action::MemberRemoved,
                "Scenario",
                Some(json!({"user": "alice"})),
            ),
        );
        assert_eq!(
            m["u"].members,
            Some(Members {
                users: vec![],
                groups: vec!["g".into()]
            })
        );
        let mut d = HashMap::new();
        remember(&mut d, &record(Action::Updated, "Dataset", None));
        assert_eq!(d["u"].generation, Some(4));
        assert_eq!(d["u"].members, None);
    }

    #[test]
    fn an_event_names_the_record_and_its_object() {
        let r = record(
            Action::MemberGranted,
            "Scenario",
            Some(json!({"user": "alice"})),
        );
        let (e, reference) = event_of(&r, &r.line());
        assert_eq!(e.reason, "MemberGranted");
        assert!(
            e.note
                .as_deref()
                .is_some_and(|n| n.starts_with("audit #1 by a"))
        );
        assert_eq!(reference.kind.as_deref(), Some("Scenario"));
        assert_eq!(
            reference.api_version.as_deref(),
            Some("cleanroom.io/v1alpha1")
        );
    }

    #[test]
    fn a_signed_head_is_told_on_the_public_key_s_configmap_with_its_signature() {
        let signer = super::super::signing::Signer::from_seed(&[3; 32]);
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let r = Record::new(signer.draft(41, "ab", "hourly"), 42, t, "ab");
        let (e, reference) = event_in(&r, &r.line(), "cleanroom-system");
        assert_eq!(e.reason, "SignedHead");
        let signature = r.after.as_ref().and_then(|a| a["signature"].as_str());
        assert!(
            signature.is_some_and(|s| e.note.as_deref().is_some_and(|n| n.contains(s))),
            "{:?}",
            e.note
        );
        assert_eq!(
            (reference.kind.as_deref(), reference.name.as_deref()),
            (Some("ConfigMap"), Some(super::super::keys::PUBLIC))
        );
        assert_eq!(reference.namespace.as_deref(), Some("cleanroom-system"));
    }
}
