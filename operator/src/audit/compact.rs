//! Compaction: runs of small batches become one sealed segment, so that the
//! ledger stays a few large objects while every append creates a new one.
//!
//! The step, repeatable at any point: list the batches, take the oldest run
//! of consecutive ones up to a segment's size, check their chain, create the
//! segment `cleanroom-audit-s-<first seq>` with their records unchanged,
//! then delete the batches, newest first, each only if the segment holds
//! its records as they are. Killed after the create, the batches are still
//! there beside the segment (verification accepts that: the two copies must
//! agree); the next run forms the same run from the same first batch, finds
//! the segment's name taken, reads it and finishes the deletions. It runs in
//! the background, off the path of every append and security action.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams, Preconditions};
use tracing::{error, info, warn};

use super::chain::{self, Form, Segment};
use super::ledger::{Error, Ledger, Limits, Loose};
use super::store::{self, PREFIX};

/// What the batches hold that no segment does (and whether a segment
/// already holds some of them: an interrupted compaction). Pure.
pub(super) fn loose(segments: &[Segment]) -> Loose {
    let held = |b: &Segment| {
        segments
            .iter()
            .any(|s| s.form == Form::Segment && s.first <= b.first && b.last() <= s.last())
    };
    let mut loose = Loose::default();
    for b in segments.iter().filter(|s| s.form == Form::Batch) {
        if held(b) {
            loose.interrupted = true;
        } else {
            loose.batches += 1;
            loose.records += b.entries.len();
            loose.bytes += b.bytes();
        }
    }
    loose
}

/// Whether the loose batches fill a segment (or a compaction is to finish).
pub(super) fn due(loose: &Loose, limits: &Limits) -> bool {
    loose.interrupted || loose.records >= limits.records || loose.bytes >= limits.bytes
}

/// The pieces that cover the chain once, in order: a batch a segment also
/// holds is left out. Pure.
pub fn covering(segments: &[Segment]) -> Vec<Segment> {
    let mut ordered: Vec<&Segment> = segments.iter().collect();
    ordered.sort_by_key(|s| (s.first, s.form, std::cmp::Reverse(s.entries.len())));
    let mut through = 0;
    let mut out = Vec::new();
    for s in ordered {
        if s.last() > through || out.is_empty() {
            through = through.max(s.last());
            out.push(s.clone());
        }
    }
    out
}

/// How many of the oldest `batches` (sorted) to compact now: a run of
/// consecutive batches up to the limits, once it fills a segment (or at
/// once when `finish`ing an interrupted compaction). Pure.
pub fn plan(batches: &[Segment], limits: &Limits, finish: bool) -> usize {
    let (mut records, mut bytes, mut full) = (0, 0, false);
    let mut n = 0;
    for (i, b) in batches.iter().enumerate() {
        if i > 0 {
            let p = &batches[i - 1];
            if b.first != p.last() + 1 || p.head.as_ref() != Some(&b.prev) {
                break;
            }
        }
        if n > 0 && (records + b.entries.len() > limits.records || bytes + b.bytes() > limits.bytes)
        {
            full = true;
            break;
        }
        n += 1;
        records += b.entries.len();
        bytes += b.bytes();
    }
    if full || records >= limits.records || bytes >= limits.bytes || finish {
        n
    } else {
        0
    }
}

/// The segment that holds `run` (consecutive batches), records unchanged. Pure.
pub fn merged(run: &[Segment]) -> Segment {
    Segment {
        name: chain::piece_name(PREFIX, Form::Segment, run[0].first),
        form: Form::Segment,
        first: run[0].first,
        prev: run[0].prev.clone(),
        head: run[run.len() - 1].head.clone(),
        sealed: true,
        entries: run.iter().flat_map(|b| b.entries.iter().cloned()).collect(),
    }
}

/// Whether `segment` holds every record of `batch`, as it is.
fn holds(segment: &Segment, batch: &Segment) -> bool {
    let held: HashMap<&str, &str> = segment
        .entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    batch
        .entries
        .iter()
        .all(|(k, v)| held.get(k.as_str()) == Some(&v.as_str()))
}

impl Ledger {
    /// One compaction step (see the module): the name of the segment made
    /// or finished, `None` when nothing was due.
    pub async fn compact(&self) -> Result<Option<String>, Error> {
        let _upkeep = self.upkeep.lock().await;
        let finish = self.state().loose.interrupted;
        let listed = store::batches(&self.api).await?;
        let batches: Vec<Segment> = listed.iter().map(|(s, _)| s.clone()).collect();
        let n = plan(&batches, &self.limits, finish);
        if n == 0 {
            self.state().loose.interrupted = false;
            return Ok(None);
        }
        if let Err(b) = chain::verify_run(PREFIX, &batches[..n]) {
            error!(broken = %b, "refusing to compact audit batches whose chain does not hold");
            self.state().loose.interrupted = false;
            return Ok(None);
        }
        let segment = self.made(merged(&batches[..n])).await?;
        let mut removed = Loose::default();
        for (batch, cm) in listed[..n].iter().rev() {
            if batch.first < segment.first || batch.last() > segment.last() {
                continue;
            }
            if !holds(&segment, batch) {
                error!(segment = %segment.name, batch = %batch.name,
                    "an audit batch differs from the segment that should hold it; both kept as evidence");
                continue;
            }
            self.delete_batch(cm).await?;
            removed.batches += 1;
            removed.records += batch.entries.len();
            removed.bytes += batch.bytes();
        }
        let mut st = self.state();
        st.loose.batches = st.loose.batches.saturating_sub(removed.batches);
        st.loose.records = st.loose.records.saturating_sub(removed.records);
        st.loose.bytes = st.loose.bytes.saturating_sub(removed.bytes);
        st.loose.interrupted = false;
        drop(st);
        info!(segment = %segment.name, batches = removed.batches, records = removed.records,
            "audit batches compacted into a segment");
        Ok(Some(segment.name))
    }

    /// Creates `segment`, or reads the one a compaction interrupted
    /// earlier made under its name.
    async fn made(&self, segment: Segment) -> Result<Segment, Error> {
        let cm = store::to_configmap(self.namespace(), &segment);
        match self.api.create(&PostParams::default(), &cm).await {
            Ok(_) => Ok(segment),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = self.api.get(&segment.name).await?;
                Ok(store::from_configmap(&existing).unwrap_or(segment))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a batch the segment holds: that very object (by uid), gone already is fine.
    async fn delete_batch(&self, cm: &ConfigMap) -> Result<(), Error> {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: cm.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&cm.name_any(), &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Compacts whenever the batches fill a segment, until dropped: the
    /// operator runs it beside the controllers.
    pub async fn compactor(&self) {
        loop {
            self.compact_due.notified().await;
            loop {
                match self.compact().await {
                    Ok(Some(_)) if super::compact::due(&self.state().loose, &self.limits) => {}
                    Ok(_) => break,
                    Err(e) => {
                        warn!(error = %e, "compacting the audit ledger; retrying");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        self.compact_due.notify_one();
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::tests::pieces;

    fn limits(records: usize) -> Limits {
        Limits {
            records,
            bytes: 1 << 20,
        }
    }

    #[test]
    fn a_run_is_compacted_once_it_fills_a_segment() {
        let batches = pieces(10, 2, Form::Batch);
        assert_eq!(plan(&batches, &limits(12), false), 0, "not full yet");
        assert_eq!(
            plan(&batches, &limits(12), true),
            5,
            "finishing takes what is there"
        );
        assert_eq!(plan(&batches, &limits(4), false), 2);
        assert_eq!(plan(&batches, &limits(5), false), 2, "whole batches only");
        let segment = merged(&batches[..2]);
        assert_eq!(segment.name, "cleanroom-audit-s-000000000001");
        assert_eq!((segment.first, segment.last()), (1, 4));
        let mut chain = vec![segment];
        chain.extend(batches[2..].iter().cloned());
        assert_eq!(chain::verify(PREFIX, &chain).map(|s| s.records), Ok(10));
    }

    #[test]
    fn a_run_stops_at_a_gap_or_a_broken_link() {
        let mut batches = pieces(10, 2, Form::Batch);
        batches.remove(2);
        assert_eq!(plan(&batches, &limits(4), true), 2, "up to the gap");
        let mut batches = pieces(10, 2, Form::Batch);
        batches[1].prev = "x".into();
        assert_eq!(plan(&batches, &limits(4), true), 1);
    }

    #[test]
    fn loose_batches_and_an_interrupted_compaction_are_told_apart() {
        let batches = pieces(10, 2, Form::Batch);
        let l = loose(&batches);
        assert_eq!((l.batches, l.records, l.interrupted), (5, 10, false));
        let mut with_segment = vec![merged(&batches[..2])];
        with_segment.extend(batches.iter().cloned());
        let l = loose(&with_segment);
        assert_eq!((l.batches, l.records, l.interrupted), (3, 6, true));
        assert!(due(&l, &limits(512)));
        let once = covering(&with_segment);
        assert_eq!(
            once.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            [
                "cleanroom-audit-s-000000000001",
                "cleanroom-audit-b-000000000005",
                "cleanroom-audit-b-000000000007",
                "cleanroom-audit-b-000000000009"
            ]
        );
        assert!(holds(&with_segment[0], &batches[1]));
        assert!(!holds(&with_segment[0], &batches[2]));
    }
}
