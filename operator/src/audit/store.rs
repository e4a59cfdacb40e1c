//! The ledger's pieces as ConfigMaps in the audit namespace
//! (`cleanroom-system` by default), every one created once with
//! `immutable: true` and never rewritten:
//!
//! - a **batch** `cleanroom-audit-b-<first seq>` holds the records of one
//!   group commit. Its name is the compare-and-swap: two writers extending
//!   the chain from the same head both try to create the same name, and
//!   the API server lets one of them;
//! - a **segment** `cleanroom-audit-s-<first seq>` holds a run of batches,
//!   copied by the compaction, which deletes the batches once it exists.
//!
//! One record per data key (its zero-padded sequence number). A segment
//! names, in annotations, the hash before its first record and the hash of
//! its last. A batch carries neither, nor the `managed-by` label: its
//! records say both (each names the hash of the one before), and at one
//! record per batch those 350 bytes of metadata and managed fields were a
//! sixth of what etcd writes per record. They would protect nothing the
//! records do not: a batch is immutable, so whoever changes one recreates
//! it and can write any annotation; the newest record, which no later one
//! names, is held by the operator's remembered and signed heads
//! ([`super::signing`]), as a deleted newest batch always was. Reading
//! needs only `list` on ConfigMaps in that namespace, so
//! `cleanroom audit verify` works for any auditor allowed that.
//! A segment of the earlier layout (`cleanroom-audit-<8 digits>`, rewritten
//! in place) is still read, as a segment starting at its first record.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta};
use kube::{Api, ResourceExt};

use super::chain::{Form, Segment, piece_name};
use super::record::{Record, hash};
use crate::workspace::labels;

/// Default namespace of the ledger.
pub const DEFAULT_NAMESPACE: &str = "cleanroom-system";
/// Name prefix of the pieces.
pub const PREFIX: &str = "cleanroom-audit";
/// Label that marks a piece: [`SEGMENT`] or [`BATCH`].
pub const LABEL: &str = "cleanroom.io/audit";
pub const SEGMENT: &str = "segment";
pub const BATCH: &str = "batch";
/// Annotation: hash of the record before the piece's first.
pub const PREV: &str = "cleanroom.io/audit-prev";
/// Annotation: hash of the piece's last record.
pub const HEAD: &str = "cleanroom.io/audit-head";

/// The form of a piece and its first sequence number, from its name
/// (`None` for the number of a segment of the earlier layout: its records say).
pub fn parse_name(name: &str) -> Option<(Form, Option<u64>)> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix('-')?;
    let numbered = |digits: &str| (digits.len() == 12).then(|| digits.parse().ok()).flatten();
    if let Some(d) = rest.strip_prefix("b-") {
        return Some((Form::Batch, Some(numbered(d)?)));
    }
    if let Some(d) = rest.strip_prefix("s-") {
        return Some((Form::Segment, Some(numbered(d)?)));
    }
    (rest.len() == 8 && rest.parse::<u64>().is_ok()).then_some((Form::Segment, None))
}

/// A piece read from its ConfigMap (`None`: not one, or an empty segment
/// of the earlier layout, which holds nothing).
pub fn from_configmap(cm: &ConfigMap) -> Option<Segment> {
    into_segment(cm.clone())
}

/// [`from_configmap`], taking the ConfigMap's records instead of copying
/// them (the whole ledger is read at every start).
pub fn into_segment(cm: ConfigMap) -> Option<Segment> {
    let name = cm.name_any();
    let (form, first) = parse_name(&name)?;
    let sealed = cm.immutable == Some(true);
    let mut annotations = cm.metadata.annotations.unwrap_or_default();
    // In key order (the data is a sorted map): sequence order.
    let entries: Vec<(String, String)> = cm.data.unwrap_or_default().into_iter().collect();
    let first = match first {
        Some(f) => f,
        None => entries
            .iter()
            .filter_map(|(_, l)| Record::parse(l).ok())
            .map(|r| r.seq)
            .min()?,
    };
    let prev = annotations
        .remove(PREV)
        .unwrap_or_else(|| prev_named_by(&entries));
    let head = annotations
        .remove(HEAD)
        .or_else(|| entries.last().map(|(_, line)| hash(line)));
    Some(Segment {
        form,
        first,
        prev,
        head,
        sealed,
        entries,
        name,
    })
}

/// The hash a piece's first record names as the one before it (empty when
/// that record cannot be read: verification then says so at the record).
fn prev_named_by(entries: &[(String, String)]) -> String {
    entries
        .first()
        .and_then(|(_, line)| Record::parse(line).ok())
        .map(|r| r.prev)
        .unwrap_or_default()
}

/// The immutable ConfigMap of `piece` (its name is made from its form and
/// first record) in `namespace`.
pub fn to_configmap(namespace: &str, piece: &Segment) -> ConfigMap {
    // A batch's records say where it sits (see the module).
    let (labelled, annotations) = match piece.form {
        Form::Batch => (
            BTreeMap::from([(LABEL.to_string(), BATCH.to_string())]),
            None,
        ),
        Form::Segment => {
            let mut annotations = BTreeMap::from([(PREV.to_string(), piece.prev.clone())]);
            if let Some(head) = &piece.head {
                annotations.insert(HEAD.to_string(), head.clone());
            }
            let labelled = BTreeMap::from([
                (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
                (LABEL.to_string(), SEGMENT.to_string()),
            ]);
            (labelled, Some(annotations))
        }
    };
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(piece_name(PREFIX, piece.form, piece.first)),
            namespace: Some(namespace.to_string()),
            labels: Some(labelled),
            annotations,
            ..ObjectMeta::default()
        },
        data: Some(piece.entries.iter().cloned().collect()),
        immutable: Some(true),
        ..ConfigMap::default()
    }
}

/// ConfigMaps per answer when the ledger is read: read whole, a ledger of
/// tens of thousands of records was one body of tens of megabytes, parsed
/// at once, at every start.
const PAGE: u32 = 250;

async fn list_selected(
    api: &Api<ConfigMap>,
    selector: &str,
) -> Result<Vec<ConfigMap>, kube::Error> {
    let mut items = Vec::new();
    let mut params = ListParams::default().labels(selector).limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        items.extend(
            page.items
                .into_iter()
                .filter(|cm| parse_name(&cm.name_any()).is_some()),
        );
        // The pages are one snapshot: the API server answers them all at the
        // first page's resourceVersion.
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// Every piece ConfigMap (segments and batches) in `api`'s namespace.
pub async fn list(api: &Api<ConfigMap>) -> Result<Vec<ConfigMap>, kube::Error> {
    list_selected(api, &format!("{LABEL} in ({SEGMENT},{BATCH})")).await
}

/// Every piece in `api`'s namespace, in chain order.
pub async fn segments(api: &Api<ConfigMap>) -> Result<Vec<Segment>, kube::Error> {
    let mut pieces: Vec<Segment> = list(api)
        .await?
        .into_iter()
        .filter_map(into_segment)
        .collect();
    pieces.sort_by_key(|s| (s.first, s.form));
    Ok(pieces)
}

/// The batches only (what the compaction works on), in chain order.
pub async fn batches(api: &Api<ConfigMap>) -> Result<Vec<(Segment, ConfigMap)>, kube::Error> {
    let mut pieces: Vec<(Segment, ConfigMap)> = list_selected(api, &format!("{LABEL}={BATCH}"))
        .await?
        .into_iter()
        .filter_map(|cm| Some((from_configmap(&cm)?, cm)))
        .filter(|(s, _)| s.form == Form::Batch)
        .collect();
    pieces.sort_by_key(|(s, _)| s.first);
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::audit::chain::tests::pieces;
    use crate::audit::record::{GENESIS, data_key};

    #[test]
    fn a_batch_is_its_records_and_one_label_and_reads_back_whole() {
        let batch = pieces(3, 3, Form::Batch).remove(0);
        let cm = to_configmap("cleanroom-system", &batch);
        assert_eq!(cm.name_any(), "cleanroom-audit-b-000000000001");
        assert_eq!(cm.immutable, Some(true));
        assert_eq!(
            cm.labels(),
            &BTreeMap::from([(LABEL.to_string(), BATCH.to_string())])
        );
        assert_eq!(cm.metadata.annotations, None);
        let read = from_configmap(&cm).expect("piece");
        assert_eq!(read, batch);
        assert_eq!(read.prev, GENESIS);
    }

    #[test]
    fn a_segment_keeps_its_links_in_annotations_and_reads_back_whole() {
        let segment = pieces(5, 3, Form::Segment).remove(1);
        let cm = to_configmap("cleanroom-system", &segment);
        assert_eq!(cm.name_any(), "cleanroom-audit-s-000000000004");
        assert_eq!(cm.labels()[LABEL], SEGMENT);
        assert_eq!(cm.labels()[labels::MANAGED_BY], labels::MANAGER);
        let annotations = cm.metadata.annotations.clone().expect("annotations");
        assert_eq!(annotations[PREV], segment.prev);
        assert_eq!(Some(&annotations[HEAD]), segment.head.as_ref());
        assert_eq!(from_configmap(&cm).expect("piece"), segment);
    }

    #[test]
    fn a_batch_of_the_earlier_layout_is_read_by_its_annotations() {
        let batch = pieces(2, 2, Form::Batch).remove(0);
        let mut cm = to_configmap("cleanroom-system", &batch);
        cm.metadata.annotations = Some(BTreeMap::from([
            (PREV.to_string(), "x".to_string()),
            (HEAD.to_string(), "y".to_string()),
        ]));
        let read = from_configmap(&cm).expect("piece");
        assert_eq!((read.prev.as_str(), read.head.as_deref()), ("x", Some("y")));
        // A first record that cannot be read names nothing.
        cm.metadata.annotations = None;
        cm.data
            .as_mut()
            .expect("data")
            .insert(data_key(1), "{".into());
        assert_eq!(from_configmap(&cm).expect("piece").prev, "");
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            parse_name("cleanroom-audit-s-000000000513"),
            Some((Form::Segment, Some(513)))
        );
        assert_eq!(
            parse_name("cleanroom-audit-00000002"),
            Some((Form::Segment, None))
        );
        assert_eq!(parse_name("cleanroom-auditor"), None);
        assert_eq!(parse_name("cleanroom-audit-b-12"), None);
    }
}
