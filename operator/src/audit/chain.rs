//! Verification of the whole chain, pure: given the segments as read from the
//! cluster, either a summary or the first broken link.
//!
//! What is checked, in order of the chain:
//! - segments are numbered without gaps (a deleted segment is a gap, or, for
//!   the first ones, a start that no checkpoint accounts for);
//! - each segment names, in its `prev` annotation, the hash of the last
//!   record of the segment before it, and in its `head` annotation the hash
//!   of its own last record (so the last record of a segment cannot be
//!   edited unnoticed either);
//! - within a segment, every record sits under the key of its own sequence
//!   number, sequence numbers follow each other without gaps, and each
//!   record's `prev` is the SHA-256 of the line before it;
//! - the chain starts at sequence 1 with [`GENESIS`], or, once older
//!   segments were pruned, exactly where a later checkpoint record says the
//!   pruned tail ended (its last sequence number and hash).
//!
//! A chain is only as trustworthy as its newest hash: someone able to rewrite
//! every ConfigMap can recompute every hash. The operator therefore also logs
//! every record's hash (a second copy in the log pipeline), keeps the head in
//! memory and compares it on each periodic verification.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::record::{Action, GENESIS, Record, data_key, hash};

/// One ConfigMap segment, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// ConfigMap name (`cleanroom-audit-<index>`).
    pub name: String,
    /// Position of the segment in the chain, from 1.
    pub index: u64,
    /// Hash of the last record of the previous segment ([`GENESIS`] for the first).
    pub prev: String,
    /// Hash of this segment's last record, if it has one.
    pub head: Option<String>,
    /// Sealed (`immutable: true`): no record is added any more.
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
}

/// What an intact chain holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub segments: usize,
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
    /// The segment (ConfigMap name) where it breaks.
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

/// Name of segment `index` for a ledger whose ConfigMaps start with `prefix`.
pub fn segment_name(prefix: &str, index: u64) -> String {
    format!("{prefix}-{index:08}")
}

/// Where a pruned tail ended, as a checkpoint record states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub last_seq: u64,
    pub last_hash: String,
    pub next_index: u64,
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
        next_index: after.get("firstKeptSegment")?.as_u64()?,
    })
}

/// Verifies `segments` (in any order) as one chain; `prefix` names the
/// ConfigMaps, so that a missing one can be named.
pub fn verify(prefix: &str, segments: &[Segment]) -> Result<Summary, Break> {
    let mut ordered: Vec<&Segment> = segments.iter().collect();
    ordered.sort_by_key(|s| s.index);
    let mut summary = Summary {
        segments: ordered.len(),
        records: 0,
        first_seq: None,
        last_seq: None,
        head: GENESIS.to_string(),
        checkpoints: 0,
    };
    let Some(first) = ordered.first() else {
        return Ok(summary);
    };
    let at = |s: &Segment, record: Option<&str>, problem: String| Break {
        segment: s.name.clone(),
        record: record.map(str::to_string),
        problem,
    };

    // Where the chain must start: genesis, or a checkpoint's anchor (checked at the end).
    let pruned = first.index != 1;
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
    let mut expected_seq: Option<u64> = if pruned { None } else { Some(1) };
    let mut running = first.prev.clone();
    let mut previous_index = first.index - 1;
    let mut anchors = Vec::new();
    // (last sequence number, hash) at the end of each segment.
    let mut ends: HashMap<u64, (Option<u64>, String)> = HashMap::new();
    let last_index = ordered.last().map_or(0, |s| s.index);

    for segment in &ordered {
        if segment.index != previous_index + 1 {
            let missing = segment_name(prefix, previous_index + 1);
            return Err(Break {
                segment: missing,
                record: None,
                problem: format!(
                    "segment {} is missing (the chain goes from segment {} to {})",
                    previous_index + 1,
                    previous_index,
                    segment.index
                ),
            });
        }
        previous_index = segment.index;
        if segment.prev != running {
            return Err(at(
                segment,
                None,
                format!(
                    "it names {} as the hash of the previous segment's last record, but that record hashes to {running}: a record before it was changed or removed",
                    segment.prev
                ),
            ));
        }
        let entries = segment.sorted();
        if entries.is_empty() && segment.index != last_index {
            return Err(at(
                segment,
                None,
                "an empty segment in the middle of the chain: its records were removed".into(),
            ));
        }
        let mut previous_key: Option<&str> = None;
        for (key, line) in entries {
            let record = Record::parse(line)
                .map_err(|e| at(segment, Some(key), format!("not a record: {e}")))?;
            if key != data_key(record.seq) {
                return Err(at(
                    segment,
                    Some(key),
                    format!(
                        "it holds record {} under the key of record {key}: records were moved or swapped",
                        record.seq
                    ),
                ));
            }
            if let Some(want) = expected_seq
                && record.seq != want
            {
                let problem = if record.seq > want {
                    format!(
                        "record {} is missing (sequence jumps from {} to {})",
                        data_key(want),
                        want.saturating_sub(1),
                        record.seq
                    )
                } else {
                    format!(
                        "sequence goes back from {} to {}: records were reordered",
                        want - 1,
                        record.seq
                    )
                };
                let place = if record.seq > want {
                    data_key(want)
                } else {
                    key.to_string()
                };
                return Err(at(segment, Some(&place), problem));
            }
            if record.prev != running {
                // The record before this one no longer hashes to what this
                // one names: that one was changed (or this one's prev was).
                let culprit = previous_key.map_or_else(
                    || "the last record of the previous segment".to_string(),
                    |k| format!("record {k}"),
                );
                let place = previous_key.unwrap_or(key).to_string();
                return Err(at(
                    segment,
                    Some(&place),
                    format!(
                        "{culprit} does not hash to the value record {key} names as its predecessor: it was edited"
                    ),
                ));
            }
            if let Some(a) = anchor_of(&record) {
                anchors.push(a);
                summary.checkpoints += 1;
            }
            running = hash(line);
            summary.first_seq.get_or_insert(record.seq);
            summary.last_seq = Some(record.seq);
            summary.records += 1;
            expected_seq = Some(record.seq + 1);
            previous_key = Some(key);
        }
        if let Some(head) = &segment.head
            && *head != running
        {
            return Err(at(
                segment,
                previous_key,
                format!(
                    "the segment's head names {head} but its last record hashes to {running}: the last record was edited or removed"
                ),
            ));
        }
        ends.insert(segment.index, (summary.last_seq, running.clone()));
    }

    if pruned {
        // The oldest segments were pruned: a checkpoint must account for the
        // place where the kept chain starts, or (a pruning interrupted
        // between two deletions) for a place further on that the segments
        // still present reach with the hash it names.
        let start = summary.first_seq.map(|s| s - 1);
        let accounted = anchors.iter().any(|a| {
            if a.next_index == first.index {
                a.last_hash == first.prev && start.is_none_or(|s| s == a.last_seq)
            } else if a.next_index > first.index {
                ends.get(&(a.next_index - 1)).is_some_and(|(seq, h)| {
                    *h == a.last_hash && seq.is_none_or(|s| s == a.last_seq)
                })
            } else {
                false
            }
        });
        if !accounted {
            return Err(Break {
                segment: segment_name(prefix, first.index - 1),
                record: None,
                problem: format!(
                    "segment {} is missing: the chain starts at segment {} and no checkpoint records that the segments before it were pruned",
                    first.index - 1,
                    first.index
                ),
            });
        }
    }
    summary.head = running;
    Ok(summary)
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
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let mut segments = Vec::new();
        let mut prev = GENESIS.to_string();
        let mut seq = 1;
        let mut index = 1;
        while seq <= records {
            let start = prev.clone();
            let mut entries = Vec::new();
            while seq <= records && entries.len() < per as usize {
                let line = Record::new(draft(seq), seq, t, &prev).line();
                prev = hash(&line);
                entries.push((data_key(seq), line));
                seq += 1;
            }
            segments.push(Segment {
                name: segment_name(PREFIX, index),
                index,
                prev: start,
                head: Some(prev.clone()),
                sealed: seq <= records,
                entries,
            });
            index += 1;
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
        assert_eq!(b.segment, "cleanroom-audit-00000002");
        assert_eq!(b.record.as_deref(), Some("000000000006"), "{b}");
        assert!(b.problem.contains("edited"), "{b}");
    }

    #[test]
    fn an_edited_last_record_of_a_segment_is_caught_by_its_head() {
        let mut segments = chain(10, 4);
        let line = get(&segments, &data_key(8)).replace("\"s8\"", "\"s9\"");
        set(&mut segments, &data_key(8), line);
        let b = verify(PREFIX, &segments).expect_err("edited");
        assert_eq!(b.segment, "cleanroom-audit-00000002");
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
        assert_eq!(b.segment, "cleanroom-audit-00000001");
        assert_eq!(b.record.as_deref(), Some("000000000003"), "{b}");
        assert!(b.problem.contains("swapped"), "{b}");
    }

    #[test]
    fn a_missing_segment_is_named() {
        let mut segments = chain(10, 4);
        segments.remove(1);
        let b = verify(PREFIX, &segments).expect_err("missing");
        assert_eq!(b.segment, "cleanroom-audit-00000002");
        assert!(b.problem.contains("missing"), "{b}");
        // The first one gone, without a checkpoint, is missing too.
        let mut segments = chain(10, 4);
        segments.remove(0);
        let b = verify(PREFIX, &segments).expect_err("first missing");
        assert_eq!(b.segment, "cleanroom-audit-00000001", "{b}");
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
        assert_eq!(b.segment, "cleanroom-audit-00000002", "{b}");
    }
}
