//! The writer: appends records to the newest segment, seals full segments,
//! and keeps in memory what it needs to write each record once.
//!
//! Every append is a `replace` of the newest segment with the
//! `resourceVersion` it was read at, so two writers can never both extend the
//! chain from the same head: the loser gets a conflict, reads the segments
//! again and retries (finding its records there if its own earlier attempt
//! went through without an answer). Only the leader writes (the controllers
//! run only on the lease holder), so conflicts are rare.
//!
//! In memory: the head (last sequence number and hash), the newest segment
//! as last written, the idempotency key of every record still kept, and per
//! object the members and the Dataset generation last recorded. All of it is
//! rebuilt from the segments at start-up; a checkpoint record carries the
//! part that the pruned segments established.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use super::chain::{self, Break, Summary, anchor_of};
use super::prune::{Retention, prunable};
use super::record::{Action, Draft, GENESIS, OPERATOR_ACTOR, Record, data_key, hash};
use super::signing::Signer;
use super::store::{self, HEAD, PREFIX, from_configmap, new_configmap};
use super::transitions::{Change, transitions};
use crate::api::{Authorization, Dataset, Members, Scenario, ScenarioStatus};
use crate::metrics::Metrics;

/// When a segment is full and sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Records per segment.
    pub records: usize,
    /// Bytes of records per segment (a ConfigMap holds at most 1 MiB).
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
struct State {
    loaded: bool,
    /// The newest segment as last read or written, unless it is sealed.
    open: Option<ConfigMap>,
    next_index: u64,
    last_seq: u64,
    head: String,
    /// The action of the last record (a signed head is not signed again).
    last_action: Option<Action>,
    keys: HashSet<String>,
    memory: HashMap<String, Memo>,
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
    api: Api<ConfigMap>,
    namespace: String,
    limits: Limits,
    state: Mutex<State>,
    /// Appends waiting for the write lock (see [`Ledger::append`]).
    pending: std::sync::Mutex<Vec<Waiting>>,
    metrics: Option<Arc<Metrics>>,
    recorder: Option<Arc<Recorder>>,
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

impl Ledger {
    /// The ledger in `namespace` (read on first use).
    pub fn new(client: Client, namespace: &str) -> Ledger {
        Ledger {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            limits: Limits::default(),
            state: Mutex::new(State::default()),
            pending: std::sync::Mutex::new(Vec::new()),
            metrics: None,
            recorder: None,
            exit_after: None,
            signer: std::sync::OnceLock::new(),
        }
    }

    /// Segment size limits (tests and the benchmark use small segments).
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
        self.recorder = Some(Arc::new(Recorder::new(client, reporter)));
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
        let Some(recorder) = self.recorder.clone() else {
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
            if let Err(e) = recorder.publish(&event, &reference).await {
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
        let (seq, head) = {
            let mut st = self.state.lock().await;
            if !st.loaded {
                let _verdict = self.load_locked(&mut st).await?;
            }
            if st.last_seq == 0 || st.last_action == Some(Action::SignedHead) {
                return Ok(None);
            }
            let segments = store::segments(&self.api).await?;
            if let Err(why) = super::signing::may_sign(&segments, &signer.verifying_key()) {
                error!(namespace = %self.namespace, %why, "refusing to sign the audit ledger's head");
                return Ok(None);
            }
            (st.last_seq, st.head.clone())
        };
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

    /// Reads every segment, verifies the chain (reported in the metrics and
    /// the log) and rebuilds the memory. Appending goes on after a broken
    /// chain: the evidence of the break is kept as it is.
    pub async fn load(&self) -> Result<Result<Summary, Break>, Error> {
        let mut st = self.state.lock().await;
        self.load_locked(&mut st).await
    }

    async fn load_locked(&self, st: &mut State) -> Result<Result<Summary, Break>, Error> {
        let configmaps = store::list(&self.api).await?;
        let segments: Vec<chain::Segment> = configmaps.iter().filter_map(from_configmap).collect();
        let verdict = chain::verify(PREFIX, &segments);
        self.report(&verdict);

        let mut records: Vec<Record> = Vec::new();
        let mut last: Option<(u64, String)> = None;
        for segment in &segments {
            for (_, line) in segment.sorted() {
                if let Ok(r) = Record::parse(line) {
                    last = Some((r.seq, hash(line)));
                    records.push(r);
                }
            }
        }
        let first_seq = records.first().map(|r| r.seq);
        // The memory the pruned segments established, from the checkpoint
        // that accounts for where the kept chain starts.
        let mut memory: HashMap<String, Memo> = records
            .iter()
            .filter(|r| anchor_of(r).is_some_and(|a| Some(a.last_seq + 1) == first_seq))
            .filter_map(|r| r.after.as_ref()?.get("memory").cloned())
            .filter_map(|m| serde_json::from_value(m).ok())
            .next_back()
            .unwrap_or_default();
        let mut keys = HashSet::with_capacity(records.len());
        for r in &records {
            remember(&mut memory, r);
            keys.insert(r.key.clone());
        }
        let newest = configmaps.last();
        st.open = newest.filter(|cm| cm.immutable != Some(true)).cloned();
        st.next_index = segments.last().map_or(1, |s| s.index + 1);
        (st.last_seq, st.head) = match (last, segments.last()) {
            (Some(l), _) => l,
            (None, Some(s)) => (0, s.prev.clone()),
            (None, None) => (0, GENESIS.to_string()),
        };
        st.last_action = records.last().map(|r| r.action);
        st.keys = keys;
        st.memory = memory;
        st.loaded = true;
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
        let st = self.state.lock().await;
        let segments = store::segments(&self.api).await?;
        let mut verdict = chain::verify(PREFIX, &segments);
        if let Ok(summary) = &verdict
            && st.loaded
            && st.last_seq > 0
        {
            let key = data_key(st.last_seq);
            let found = segments.iter().find_map(|s| {
                s.entries
                    .iter()
                    .find(|e| e.0 == key)
                    .map(|e| (s, hash(&e.1)))
            });
            let broken = match found {
                Some((_, h)) if h == st.head => None,
                Some((s, _)) => Some(Break {
                    segment: s.name.clone(),
                    record: Some(key),
                    problem: format!(
                        "this operator wrote it with the hash {}; the chain was rewritten from there on",
                        st.head
                    ),
                }),
                None if summary.last_seq.is_some_and(|l| l > st.last_seq) => None,
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
        drop(st);
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
        let known = {
            let mut st = self.state.lock().await;
            if !st.loaded {
                let _verdict = self.load_locked(&mut st).await?;
            }
            st.memory.get(&uid).and_then(|m| m.generation)
        };
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
        let mut st = self.state.lock().await;
        if !st.loaded {
            let _verdict = self.load_locked(&mut st).await?;
        }
        Ok(uid
            .and_then(|u| st.memory.get(u))
            .and_then(|m| m.members.clone()))
    }

    /// Appends the drafts whose keys are not in the ledger yet, in order, and
    /// returns the records written. Published as Events, logged, counted.
    ///
    /// Group commit: every write replaces the newest segment, so writes are
    /// one at a time; callers that arrive while one is in flight queue up,
    /// and whoever takes the lock next writes all their drafts in one
    /// replace (in arrival order, up to [`BATCH`]) and hands each caller its
    /// records. Each caller returns only once its own drafts are stored.
    pub async fn append(&self, drafts: Vec<Draft>) -> Result<Vec<Record>, Error> {
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        self.waiting().push((drafts, tx));
        loop {
            let mut st = self.state.lock().await;
            // A writer before us may have carried ours.
            if let Ok(done) = rx.try_recv() {
                return done.map_err(Error::Batch);
            }
            let batch = self.take_batch();
            if batch.is_empty() {
                // Ours is in a batch being written right now (taken by a
                // writer that has not sent yet): wait for its result.
                drop(st);
                return rx
                    .await
                    .map_err(|_| Error::Batch("audit ledger: the batch writer went away".into()))?
                    .map_err(Error::Batch);
            }
            let all: Vec<Draft> = batch.iter().flat_map(|(d, _)| d.iter().cloned()).collect();
            let result = self.append_locked(&mut st, all).await;
            drop(st);
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

    async fn append_locked(
        &self,
        st: &mut State,
        drafts: Vec<Draft>,
    ) -> Result<Vec<(Record, String)>, Error> {
        const ATTEMPTS: usize = 5;
        if !st.loaded {
            let _verdict = self.load_locked(st).await?;
        }
        for _ in 0..ATTEMPTS {
            let mut seen = HashSet::new();
            let fresh: Vec<Draft> = drafts
                .iter()
                .filter(|d| !st.keys.contains(&d.key) && seen.insert(d.key.clone()))
                .cloned()
                .collect();
            if fresh.is_empty() {
                return Ok(Vec::new());
            }
            match self.try_append(st, fresh).await {
                Ok(written) => return Ok(written),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    warn!(namespace = %self.namespace, "audit segment changed under us; reading it again");
                    let _verdict = self.load_locked(st).await?;
                }
                Err(e) => {
                    // The write may or may not have happened: read before the next one.
                    st.loaded = false;
                    return Err(e.into());
                }
            }
        }
        Err(Error::Contention(ATTEMPTS))
    }

    async fn try_append(
        &self,
        st: &mut State,
        drafts: Vec<Draft>,
    ) -> Result<Vec<(Record, String)>, kube::Error> {
        let now = Timestamp::now();
        let mut head = st.head.clone();
        let mut written = Vec::with_capacity(drafts.len());
        for (i, d) in drafts.into_iter().enumerate() {
            let record = Record::new(d, st.last_seq + 1 + i as u64, now, &head);
            let line = record.line();
            head = hash(&line);
            written.push((record, line));
        }
        let adding: usize = written.iter().map(|(_, l)| l.len() + 12).sum();

        // Seal the newest segment if this batch does not fit.
        if let Some(open) = &st.open {
            let data = open.data.as_ref();
            let count = data.map_or(0, |d| d.len());
            let bytes: usize = data.map_or(0, |d| d.iter().map(|(k, v)| k.len() + v.len()).sum());
            if count > 0 && (count >= self.limits.records || bytes + adding > self.limits.bytes) {
                let mut sealed = open.clone();
                sealed.immutable = Some(true);
                self.api
                    .replace(&open.name_any(), &PostParams::default(), &sealed)
                    .await?;
                st.open = None;
            }
        }
        if st.open.is_none() {
            let created = self
                .api
                .create(
                    &PostParams::default(),
                    &new_configmap(&self.namespace, st.next_index, &st.head),
                )
                .await?;
            st.next_index += 1;
            st.open = Some(created);
        }
        let Some(open) = st.open.as_ref() else {
            unreachable!("a segment was just opened");
        };
        let mut next = open.clone();
        let data = next.data.get_or_insert_with(Default::default);
        for (r, line) in &written {
            data.insert(data_key(r.seq), line.clone());
        }
        next.annotations_mut()
            .insert(HEAD.to_string(), head.clone());
        let stored = self
            .api
            .replace(&open.name_any(), &PostParams::default(), &next)
            .await?;
        st.open = Some(stored);
        st.head = head;
        st.last_seq += written.len() as u64;
        st.last_action = written.last().map(|(r, _)| r.action);
        for (r, _) in &written {
            st.keys.insert(r.key.clone());
            remember(&mut st.memory, r);
        }
        Ok(written)
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
        if let Some(recorder) = &self.recorder {
            let events: Vec<(Event, ObjectReference)> = written
                .iter()
                .filter(|(r, _)| r.action != Action::Checkpoint)
                .map(|(r, line)| event_in(r, line, &self.namespace))
                .collect();
            let recorder = recorder.clone();
            tokio::spawn(async move {
                for (event, reference) in events {
                    if let Err(e) = recorder.publish(&event, &reference).await {
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

    /// Prunes the segments whose every record is past its retention `as_of`
    /// (see [`super::prune`]): first a checkpoint record naming the last
    /// sequence number and hash of the pruned tail (and the memory it
    /// established, for the objects in `live`), then the deletions, oldest
    /// first. Interrupted, it is finished by the next call; the chain
    /// verifies at every step. Refuses to prune a broken chain.
    pub async fn prune(
        &self,
        as_of: Timestamp,
        authorizations: &[Authorization],
        live: &HashSet<String>,
    ) -> Result<Result<Pruned, Break>, Error> {
        let retentions: HashMap<String, Retention> = authorizations
            .iter()
            .map(|a| (a.name_any(), Retention::of(a)))
            .collect();
        let segments = store::segments(&self.api).await?;
        if let Err(b) = chain::verify(PREFIX, &segments) {
            return Ok(Err(b));
        }
        let count = prunable(&segments, as_of, &retentions);
        if count == 0 {
            return Ok(Ok(Pruned {
                segments: Vec::new(),
                checkpoint: None,
            }));
        }
        let gone = &segments[..count];
        let kept_from = segments[count].index;
        let mut records: Vec<Record> = Vec::new();
        let mut last: Option<(u64, String)> = None;
        for s in &segments {
            for (_, line) in s.sorted() {
                if let Ok(r) = Record::parse(line) {
                    if s.index < kept_from {
                        last = Some((r.seq, hash(line)));
                    }
                    records.push(r);
                }
            }
        }
        let Some((last_seq, last_hash)) = last else {
            return Ok(Ok(Pruned {
                segments: Vec::new(),
                checkpoint: None,
            }));
        };
        // What the pruned records established: the current base, then them.
        let first_seq = records.first().map(|r| r.seq);
        let mut memory: HashMap<String, Memo> = records
            .iter()
            .filter(|r| anchor_of(r).is_some_and(|a| Some(a.last_seq + 1) == first_seq))
            .filter_map(|r| r.after.as_ref()?.get("memory").cloned())
            .filter_map(|m| serde_json::from_value(m).ok())
            .next_back()
            .unwrap_or_default();
        for r in records.iter().filter(|r| r.seq <= last_seq) {
            remember(&mut memory, r);
        }
        memory.retain(|uid, _| live.contains(uid));
        let names: Vec<String> = gone.iter().map(|s| s.name.clone()).collect();
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
                "firstKeptSegment": kept_from,
                "prunedSegments": names,
                "memory": memory,
            })),
            key: format!("checkpoint/{kept_from}"),
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
        {
            let mut st = self.state.lock().await;
            st.loaded = false;
        }
        info!(segments = ?names, through = last_seq, "audit segments pruned after a checkpoint");
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
    segments
        .last()
        .map_or_else(|| chain::segment_name(PREFIX, 1), |s| s.name.clone())
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
