//! Verification of the whole chain, pure: given the pieces as read from the
//! cluster (group-commit batches and compacted segments, see
//! [`super::store`]), either a summary or the first broken link.
//!
//! What is checked, in sequence order:
//! - every record sits under the key of its own sequence number, and a
//!   piece holds consecutive records starting at the number in its name;
//! - each piece names, in its `prev` annotation, the hash of the record
//!   before its first, and in its `head` annotation the hash of its own last
//!   record; each record's `prev` is the SHA-256 of the line before it;
//! - no sequence number is missing between the first record kept and the
//!   last (a deleted batch or segment is a gap, named by where it started);
//! - a record held twice (a compaction interrupted after the segment was
//!   made and before its batches were deleted) is the same line both times;
//! - the chain starts at sequence 1 with [`GENESIS`], or, once older
//!   records were pruned, at a place a checkpoint record names (its last
//!   pruned sequence number and hash), or a place further on that the kept
//!   chain reaches with the hash the checkpoint names (a pruning
//!   interrupted between two deletions).
//!
//! A chain is only as trustworthy as its newest hash: someone able to rewrite
//! every ConfigMap can recompute every hash. The operator therefore also logs
//! every record's hash (a second copy in the log pipeline), keeps the head in
//! memory and compares it on each periodic verification, and signs the head
//! ([`super::signing`]).

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::record::{Action, GENESIS, Record, data_key, hash};

/// What kind of piece of the ledger a ConfigMap is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Form {
    /// A compacted run of batches (or a segment of the earlier layout).
    Segment,
    /// The records of one group commit, as created.
    Batch,
}

impl Form {
    /// The letter in the name (`cleanroom-audit-s-…`, `cleanroom-audit-b-…`).
    pub fn letter(self) -> &'static str {
        match self {
            Form::Segment => "s",
            Form::Batch => "b",
        }
    }
}

/// One piece of the ledger (a ConfigMap), as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// ConfigMap name (`<prefix>-<b|s>-<first sequence number>`).
    pub name: String,
    pub form: Form,
    /// Sequence number of its first record (from its name).
    pub first: u64,
    /// Hash of the record before its first ([`GENESIS`] before record 1).
    pub prev: String,
    /// Hash of this piece's last record, if it has one.
    pub head: Option<String>,
    /// Created `immutable: true`.
    pub sealed: bool,
    /// (data key, line), in any order.
    pub entries: Vec<(String, String)>,
}

impl Segment {
    /// Entries sorted by key (sequence order).
    pub fn sorted(&self) -> Vec<(&str, &str)> {
        let mut e: Vec<(&str, &str)> = self
            .entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        e.sort_unstable();
        e
    }

    /// Bytes of the stored lines (what the ConfigMap's size limit counts, roughly).
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Sequence number of its last record, by its name and record count.
    pub fn last(&self) -> u64 {
        (self.first + self.entries.len() as u64).saturating_sub(1)
    }
}

/// Every stored line once, in sequence order: a record held both by a
/// segment and by a batch not yet deleted counts once (the segment's line).
pub fn lines(segments: &[Segment]) -> Vec<&str> {
    let mut all: Vec<(&str, Form, &str)> = segments
        .iter()
        .flat_map(|s| {
            s.entries
                .iter()
                .map(|(k, v)| (k.as_str(), s.form, v.as_str()))
        })
        .collect();
    all.sort_unstable();
    all.dedup_by_key(|(k, _, _)| *k);
    all.into_iter().map(|(_, _, line)| line).collect()
}

/// What an intact chain holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Pieces read: compacted segments and batches.
    pub segments: usize,
    /// Of which batches not yet compacted (or compacted, not yet deleted).
    pub batches: usize,
    pub records: u64,
    /// Sequence number of the first record still kept (after pruning: > 1).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Hash of the last record ([`GENESIS`] if there is none).
    pub head: String,
    /// Checkpoints met (one per pruning).
    pub checkpoints: u64,
}

/// The first place where the chain does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Break {
    /// The piece (ConfigMap name) where it breaks, or the names a missing
    /// one would have.
    pub segment: String,
    /// The record (data key, that is its sequence number) if one is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// What is wrong, in words.
    pub problem: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            Some(r) => write!(f, "segment {}, record {r}: {}", self.segment, self.problem),
            None => write!(f, "segment {}: {}", self.segment, self.problem),
        }
    }
}

/// Name of the piece of `form` whose first record is `first`, for a ledger
/// whose ConfigMaps start with `prefix`.
pub fn piece_name(prefix: &str, form: Form, first: u64) -> String {
    format!("{prefix}-{}-{first:012}", form.letter())
}

/// Where a pruned tail ended, as a checkpoint record states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub last_seq: u64,
    pub last_hash: String,
}

/// The anchor a checkpoint record carries in `after`.
pub fn anchor_of(record: &Record) -> Option<Anchor> {
    if record.action != Action::Checkpoint {
        return None;
    }
    let after = record.after.as_ref()?;
    Some(Anchor {
        last_seq: after.get("prunedThroughSeq")?.as_u64()?,
        last_hash: after.get("prunedThroughHash")?.as_str()?.to_string(),
    })
}

/// The walk along the chain: what has been accepted so far.
struct Walk {
    /// The sequence number the chain expects next.
    next: u64,
    /// Hash of the record before `next`.
    running: String,
    /// Hash of every accepted record (and of the one before the first kept).
    hashes: HashMap<u64, String>,
    /// The piece that holds the record before `next`, once one was accepted.
    holder: Option<String>,
    anchors: Vec<Anchor>,
    summary: Summary,
}

fn at(s: &Segment, record: Option<&str>, problem: String) -> Break {
    Break {
        segment: s.name.clone(),
        record: record.map(str::to_string),
        problem,
    }
}

/// Verifies `segments` (in any order) as one chain; `prefix` names the
/// ConfigMaps, so that a missing one can be named.
pub fn verify(prefix: &str, segments: &[Segment]) -> Result<Summary, Break> {
    let mut ordered: Vec<&Segment> = segments.iter().collect();
    // By first record; at the same start, the segment (the wider) first.
    ordered.sort_by_key(|s| (s.first, s.form, std::cmp::Reverse(s.entries.len())));
    let summary = Summary {
        segments: ordered.len(),
        batches: ordered.iter().filter(|s| s.form == Form::Batch).count(),
        records: 0,
        first_seq: None,
        last_seq: None,
        head: GENESIS.to_string(),
        checkpoints: 0,
    };
    let Some(first) = ordered.first() else {
        return Ok(summary);
    };
    let pruned = first.first != 1;
    if !pruned && first.prev != GENESIS {
        return Err(at(
            first,
            None,
            format!(
                "the first segment must start from the genesis hash, not {}",
                first.prev
            ),
        ));
    }
    let mut walk = Walk {
        next: first.first,
        running: first.prev.clone(),
        hashes: HashMap::from([(first.first - 1, first.prev.clone())]),
        holder: None,
        anchors: Vec::new(),
        summary,
    };
    for piece in &ordered {
        walk_piece(prefix, &mut walk, piece)?;
    }
    if pruned && !accounted(&walk, first.first - 1) {
        return Err(Break {
            segment: [Form::Segment, Form::Batch]
                .map(|f| piece_name(prefix, f, 1))
                .join(" or "),
            record: Some(data_key(1)),
            problem: format!(
                "the chain starts at record {} and no checkpoint records that the records before it were pruned: records 1 to {} are missing",
                first.first,
                first.first - 1
            ),
        });
    }
    walk.summary.head = walk.running;
    Ok(walk.summary)
}

/// Checks a run of consecutive pieces on its own (where it starts is not
/// checked: the compaction's batches are a middle part of the chain).
pub fn verify_run(prefix: &str, run: &[Segment]) -> Result<(), Break> {
    let Some(first) = run.first() else {
        return Ok(());
    };
    let mut walk = Walk {
        next: first.first,
        running: first.prev.clone(),
        hashes: HashMap::from([(first.first - 1, first.prev.clone())]),
        holder: None,
        anchors: Vec::new(),
        summary: Summary {
            segments: run.len(),
            batches: 0,
            records: 0,
            first_seq: None,
            last_seq: None,
            head: GENESIS.to_string(),
            checkpoints: 0,
        },
    };
    for piece in run {
        walk_piece(prefix, &mut walk, piece)?;
    }
    Ok(())
}

/// Whether a checkpoint accounts for the pruned records before `start`:
/// it names the place where the kept chain starts, or (a pruning
/// interrupted between two deletions) a place further on that the kept
/// records reach with the hash it names.
fn accounted(walk: &Walk, start: u64) -> bool {
    walk.anchors.iter().any(|a| {
        a.last_seq >= start
            && walk
                .hashes
                .get(&a.last_seq)
                .is_some_and(|h| *h == a.last_hash)
    })
}

/// Checks one piece against the chain accepted so far and extends it.
fn walk_piece(prefix: &str, walk: &mut Walk, piece: &Segment) -> Result<(), Break> {
    if piece.first > walk.next {
        let names = [Form::Segment, Form::Batch].map(|f| piece_name(prefix, f, walk.next));
        return Err(Break {
            segment: names.join(" or "),
            record: Some(data_key(walk.next)),
            problem: format!(
                "records {} to {} are missing: the batch or segment that held them was deleted",
                walk.next,
                piece.first - 1
            ),
        });
    }
    let entries = piece.sorted();
    if entries.is_empty() {
        return Err(at(
            piece,
            None,
            "an empty piece of the chain: its records were removed".into(),
        ));
    }
    // Empty only when the first record cannot be read: said below, at it.
    if !piece.prev.is_empty() && walk.hashes.get(&(piece.first - 1)) != Some(&piece.prev) {
        return Err(broken_link(walk, piece));
    }
    let mut previous_key: Option<&str> = None;
    let mut last_hash = piece.prev.clone();
    for (i, (key, line)) in entries.into_iter().enumerate() {
        let record =
            Record::parse(line).map_err(|e| at(piece, Some(key), format!("not a record: {e}")))?;
        if key != data_key(record.seq) {
            return Err(at(
                piece,
                Some(key),
                format!(
                    "it holds record {} under the key of record {key}: records were moved or swapped",
                    record.seq
                ),
            ));
        }
        let want = piece.first + i as u64;
        if record.seq != want {
            return Err(out_of_sequence(piece, want, record.seq, key));
        }
        last_hash = hash(line);
        if record.seq < walk.next {
            // Held twice: a compaction not finished. Both copies must agree.
            if walk.hashes.get(&record.seq) != Some(&last_hash) {
                return Err(at(
                    piece,
                    Some(key),
                    format!(
                        "it holds record {} differently from the chain's other copy of it: one of them was changed",
                        record.seq
                    ),
                ));
            }
        } else {
            accept(walk, piece, previous_key, key, &record, &last_hash)?;
        }
        previous_key = Some(key);
    }
    if let Some(head) = &piece.head
        && *head != last_hash
    {
        return Err(at(
            piece,
            previous_key,
            format!(
                "the segment's head names {head} but its last record hashes to {last_hash}: the last record was edited or removed"
            ),
        ));
    }
    Ok(())
}

/// `piece` names another hash for the record before its first than the
/// chain has: the record before it, if this piece continues right after it,
/// was edited (its piece is named); otherwise a record before it was.
fn broken_link(walk: &Walk, piece: &Segment) -> Break {
    let had = walk.hashes.get(&(piece.first - 1));
    match &walk.holder {
        Some(holder) if piece.first == walk.next => Break {
            segment: holder.clone(),
            record: Some(data_key(piece.first - 1)),
            problem: format!(
                "it hashes to {}, not to the {} that {} names as the hash of the record before its first: it was edited",
                had.map_or("nothing", |h| h.as_str()),
                piece.prev,
                piece.name,
            ),
        },
        _ => at(
            piece,
            None,
            format!(
                "it names {} as the hash of the record before its first, but that record hashes to {}: a record before it was changed or removed",
                piece.prev,
                had.map_or("nothing kept", |h| h.as_str()),
            ),
        ),
    }
}

fn out_of_sequence(piece: &Segment, want: u64, seq: u64, key: &str) -> Break {
    if seq > want {
        at(
            piece,
            Some(&data_key(want)),
            format!(
                "record {} is missing (sequence jumps from {} to {seq})",
                data_key(want),
                want.saturating_sub(1),
            ),
        )
    } else {
        at(
            piece,
            Some(key),
            format!(
                "sequence goes back from {} to {seq}: records were reordered",
                want - 1
            ),
        )
    }
}

/// The next record of the chain: it must name the hash of the one before.
fn accept(
    walk: &mut Walk,
    piece: &Segment,
    previous_key: Option<&str>,
    key: &str,
    record: &Record,
    line_hash: &str,
) -> Result<(), Break> {
    if record.prev != walk.running {
        // The record before this one no longer hashes to what this
        // one names: that one was changed (or this one's prev was).
        let culprit = previous_key.map_or_else(
            || "the last record of the previous segment".to_string(),
            |k| format!("record {k}"),
        );
        let place = previous_key.unwrap_or(key).to_string();
        return Err(at(
            piece,
            Some(&place),
            format!(
                "{culprit} does not hash to the value record {key} names as its predecessor: it was edited"
            ),
        ));
    }
    if let Some(a) = anchor_of(record) {
        walk.anchors.push(a);
        walk.summary.checkpoints += 1;
    }
    walk.running = line_hash.to_string();
    walk.hashes.insert(record.seq, walk.running.clone());
    walk.holder = Some(piece.name.clone());
    walk.summary.first_seq.get_or_insert(record.seq);
    walk.summary.last_seq = Some(record.seq);
    walk.summary.records += 1;
    walk.next = record.seq + 1;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::audit::record::Draft;

    pub(crate) const PREFIX: &str = "cleanroom-audit";

    fn draft(i: u64) -> Draft {
        Draft {
            actor: "cleanroom-operator".into(),
            kind: "Scenario".into(),
            name: format!("s{i}"),
            uid: format!("u{i}"),
            generation: Some(1),
            authorization: Some("acme".into()),
            action: Action::Provisioned,
            reason: None,
            before: None,
            after: Some(json!({"phase": "Ready"})),
            key: format!("u{i}/provisioned"),
        }
    }

    /// A chain of `records` records in segments of `per` records.
    pub(crate) fn chain(records: u64, per: u64) -> Vec<Segment> {
        pieces(records, per, Form::Segment)
    }

    /// The same chain in pieces of `form`.
    pub(crate) fn pieces(records: u64, per: u64, form: Form) -> Vec<Segment> {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let mut segments = Vec::new();
        let mut prev = GENESIS.to_string();
        let mut seq = 1;
        while seq <= records {
            let (start, first) = (prev.clone(), seq);
            let mut entries = Vec::new();
            while seq <= records && entries.len() < per as usize {
                let line = Record::new(draft(seq), seq, t, &prev).line();
                prev = hash(&line);
                entries.push((data_key(seq), line));
                seq += 1;
            }
            segments.push(Segment {
                name: piece_name(PREFIX, form, first),
                form,
                first,
                prev: start,
                head: Some(prev.clone()),
                sealed: true,
                entries,
            });
        }
        segments
    }

    fn set(segments: &mut [Segment], key: &str, line: String) {
        for s in segments.iter_mut() {
            for e in s.entries.iter_mut() {
                if e.0 == key {
                    e.1 = line;
                    return;
                }
            }
        }
        panic!("no {key}");
    }

    fn get(segments: &[Segment], key: &str) -> String {
        segments
            .iter()
            .flat_map(|s| &s.entries)
            .find(|e| e.0 == key)
            .map(|e| e.1.clone())
            .expect("key")
    }

    #[test]
    fn an_intact_chain_verifies_with_its_head() {
        let segments = chain(10, 4);
        assert_eq!(segments.len(), 3);
        let s = verify(PREFIX, &segments).expect("intact");
        assert_eq!(s.records, 10);
        assert_eq!(s.first_seq, Some(1));
        assert_eq!(s.last_seq, Some(10));
        assert_eq!(s.head, hash(&get(&segments, &data_key(10))));
        assert_eq!(verify(PREFIX, &[]).expect("empty").head, GENESIS);
        // Order of listing does not matter.
        let mut reversed = segments.clone();
        reversed.reverse();
        assert_eq!(verify(PREFIX, &reversed), Ok(s));
    }

    #[test]
    fn an_edited_record_is_named() {
        let mut segments = chain(10, 4);
        let line = get(&segments, &data_key(6)).replace("\"s6\"", "\"s6x\"");
        set(&mut segments, &data_key(6), line);
        let b = verify(PREFIX, &segments).expect_err("edited");
        assert_eq!(b.segment, "cleanroom-audit-s-000000000005");
        assert_eq!(b.record.as_deref(), Some("000000000006"), "{b}");
        assert!(b.problem.contains("edited"), "{b}");
    }

    #[test]
    fn an_edited_last_record_of_a_segment_is_caught_by_its_head() {
        let mut segments = chain(10, 4);
        let line = get(&segments, &data_key(8)).replace("\"s8\"", "\"s9\"");
        set(&mut segments, &data_key(8), line);
        let b = verify(PREFIX, &segments).expect_err("edited");
        assert_eq!(b.segment, "cleanroom-audit-s-000000000005");
        assert_eq!(b.record.as_deref(), Some("000000000008"), "{b}");
        // The very last record of the chain too.
        let mut segments = chain(10, 4);
        let line = get(&segments, &data_key(10)).replace("\"s10\"", "\"s1\"");
        set(&mut segments, &data_key(10), line);
        let b = verify(PREFIX, &segments).expect_err("edited head");
        assert_eq!(b.record.as_deref(), Some("000000000010"), "{b}");
    }

    #[test]
    fn a_deleted_record_is_named() {
        let mut segments = chain(10, 4);
        segments[1].entries.retain(|e| e.0 != data_key(6));
        let b = verify(PREFIX, &segments).expect_err("deleted");
        assert_eq!(b.record.as_deref(), Some("000000000006"), "{b}");
        assert!(b.problem.contains("missing"), "{b}");
    }

    #[test]
    fn swapped_records_are_named() {
        let mut segments = chain(10, 4);
        let (a, b) = (get(&segments, &data_key(3)), get(&segments, &data_key(4)));
        set(&mut segments, &data_key(3), b);
        set(&mut segments, &data_key(4), a);
        let b = verify(PREFIX, &segments).expect_err("swapped");
        assert_eq!(b.segment, "cleanroom-audit-s-000000000001");
        assert_eq!(b.record.as_deref(), Some("000000000003"), "{b}");
        assert!(b.problem.contains("swapped"), "{b}");
    }

    #[test]
    fn a_missing_segment_is_named() {
        let mut segments = chain(10, 4);
        segments.remove(1);
        let b = verify(PREFIX, &segments).expect_err("missing");
        assert_eq!(
            b.segment,
            "cleanroom-audit-s-000000000005 or cleanroom-audit-b-000000000005"
        );
        assert!(b.problem.contains("missing"), "{b}");
        // The first one gone, without a checkpoint, is missing too.
        let mut segments = chain(10, 4);
        segments.remove(0);
        let b = verify(PREFIX, &segments).expect_err("first missing");
        assert!(
            b.segment.starts_with("cleanroom-audit-s-000000000001"),
            "{b}"
        );
        assert!(b.problem.contains("records 1 to 4 are missing"), "{b}");
    }

    #[test]
    fn a_checkpoint_accounts_for_pruned_segments() {
        let mut segments = chain(10, 4);
        // Prune segment 1 (records 1..4) after a checkpoint in the last segment.
        let pruned_hash = hash(&get(&segments, &data_key(4)));
        let t: Timestamp = "2026-07-01T00:00:00Z".parse().expect("time");
        let head = hash(&get(&segments, &data_key(10)));
        let checkpoint = Record::new(
            Draft {
                actor: "cleanroom-operator".into(),
                kind: "Ledger".into(),
                name: PREFIX.into(),
                uid: String::new(),
                generation: None,
                authorization: None,
                action: Action::Checkpoint,
                reason: Some("retention".into()),
                before: None,
                after: Some(json!({
                    "prunedThroughSeq": 4,
                    "prunedThroughHash": pruned_hash,
                    "firstKeptSegment": 2,
                })),
                key: "checkpoint/2".into(),
            },
            11,
            t,
            &head,
        )
        .line();
        let last = segments.last_mut().expect("last");
        last.entries.push((data_key(11), checkpoint.clone()));
        last.head = Some(hash(&checkpoint));
        // Verifiable before and after the pruning.
        assert!(verify(PREFIX, &segments).is_ok());
        segments.remove(0);
        let s = verify(PREFIX, &segments).expect("pruned chain");
        assert_eq!(
            (s.first_seq, s.last_seq, s.checkpoints),
            (Some(5), Some(11), 1)
        );
        // Pruning one more segment than the checkpoint says is caught.
        let mut more = segments.clone();
        more.remove(0);
        let b = verify(PREFIX, &more).expect_err("not accounted for");
        assert!(b.problem.contains("records 1 to 8 are missing"), "{b}");
    }

    /// Segments of `per` records made from `batches` (the compaction's copy).
    fn compacted(batches: &[Segment], per: usize) -> Vec<Segment> {
        batches
            .chunks(per)
            .map(|run| Segment {
                name: piece_name(PREFIX, Form::Segment, run[0].first),
                form: Form::Segment,
                first: run[0].first,
                prev: run[0].prev.clone(),
                head: run[run.len() - 1].head.clone(),
                sealed: true,
                entries: run.iter().flat_map(|b| b.entries.clone()).collect(),
            })
            .collect()
    }

    #[test]
    fn batches_segments_and_an_interrupted_compaction_all_verify_alike() {
        let batches = pieces(10, 2, Form::Batch);
        let whole = verify(PREFIX, &batches).expect("batches alone");
        assert_eq!((whole.records, whole.batches), (10, 5));
        // Compacted: batches 1-4 in a segment, the last batch still loose.
        let mut segments = compacted(&batches[..4], 4);
        segments.push(batches[4].clone());
        let s = verify(PREFIX, &segments).expect("compacted");
        assert_eq!((s.records, s.head.as_str()), (10, whole.head.as_str()));
        // Interrupted: the segment made, some of its batches not yet deleted.
        let mut interrupted = segments.clone();
        interrupted.extend([batches[1].clone(), batches[3].clone()]);
        let s = verify(PREFIX, &interrupted).expect("interrupted compaction");
        assert_eq!((s.records, s.head.as_str()), (10, whole.head.as_str()));
        assert_eq!(lines(&interrupted).len(), 10, "each record once");
        assert_eq!(lines(&interrupted), lines(&batches));
    }

    #[test]
    fn a_batch_that_disagrees_with_its_segment_is_named() {
        let batches = pieces(10, 2, Form::Batch);
        let mut forked = compacted(&batches, 5);
        let mut other = batches[1].clone();
        other.entries[0].1 = other.entries[0].1.replace("\"s3\"", "\"s3x\"");
        forked.push(other);
        let b = verify(PREFIX, &forked).expect_err("two copies differ");
        assert_eq!(b.segment, "cleanroom-audit-b-000000000003", "{b}");
        assert_eq!(b.record.as_deref(), Some("000000000003"), "{b}");
        assert!(b.problem.contains("differently"), "{b}");
    }

    #[test]
    fn a_missing_batch_is_named_by_where_it_started() {
        let mut batches = pieces(10, 2, Form::Batch);
        batches.remove(2);
        let b = verify(PREFIX, &batches).expect_err("missing");
        assert!(b.segment.contains("cleanroom-audit-b-000000000005"), "{b}");
        assert!(b.problem.contains("records 5 to 6 are missing"), "{b}");
        // A batch deleted after compaction is no loss: its segment holds it.
        let batches = pieces(10, 2, Form::Batch);
        let mut segments = compacted(&batches, 5);
        segments.extend(batches.iter().skip(1).step_by(2).cloned());
        assert!(verify(PREFIX, &segments).is_ok());
    }

    #[test]
    fn a_batch_renamed_to_another_place_is_caught() {
        let mut batches = pieces(6, 2, Form::Batch);
        batches[2].first = 7;
        batches[2].name = piece_name(PREFIX, Form::Batch, 7);
        let b = verify(PREFIX, &batches).expect_err("renamed");
        assert!(b.problem.contains("missing"), "{b}");
    }

    #[test]
    fn an_edited_last_record_of_a_batch_is_named_by_the_next_batch() {
        // Batches carry no head: what a reader derives from the edited
        // records is what verification sees.
        let mut batches = pieces(6, 2, Form::Batch);
        let line = get(&batches, &data_key(4)).replace("\"s4\"", "\"s1\"");
        set(&mut batches, &data_key(4), line.clone());
        batches[1].head = Some(hash(&line));
        let b = verify(PREFIX, &batches).expect_err("edited");
        assert_eq!(b.segment, "cleanroom-audit-b-000000000003", "{b}");
        assert_eq!(b.record.as_deref(), Some("000000000004"), "{b}");
        assert!(b.problem.contains("it was edited"), "{b}");
        assert!(b.problem.contains("cleanroom-audit-b-000000000005"), "{b}");
    }
}
