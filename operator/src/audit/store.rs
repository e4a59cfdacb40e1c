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
//! One record per data key (its zero-padded sequence number); the chain
//! links in annotations. Reading needs only `list` on ConfigMaps in that
//! namespace, so `cleanroom audit verify` works for any auditor allowed that.
//! A segment of the earlier layout (`cleanroom-audit-<8 digits>`, rewritten
//! in place) is still read, as a segment starting at its first record.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta};
use kube::{Api, ResourceExt};

use super::chain::{Form, Segment, piece_name};
use super::record::Record;
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
    let entries: Vec<(String, String)> = cm.data.unwrap_or_default().into_iter().collect();
    let first = match first {
        Some(f) => f,
        None => entries
            .iter()
            .filter_map(|(_, l)| Record::parse(l).ok())
            .map(|r| r.seq)
            .min()?,
    };
    Some(Segment {
        form,
        first,
        prev: annotations.remove(PREV).unwrap_or_default(),
        head: annotations.remove(HEAD),
        sealed,
        entries,
        name,
    })
}

/// The immutable ConfigMap of `piece` (its name is made from its form and
/// first record) in `namespace`.
pub fn to_configmap(namespace: &str, piece: &Segment) -> ConfigMap {
    let value = match piece.form {
        Form::Batch => BATCH,
        Form::Segment => SEGMENT,
    };
    let mut annotations = BTreeMap::from([(PREV.to_string(), piece.prev.clone())]);
    if let Some(head) = &piece.head {
        annotations.insert(HEAD.to_string(), head.clone());
    }
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(piece_name(PREFIX, piece.form, piece.first)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
                (LABEL.to_string(), value.to_string()),
            ])),
            annotations: Some(annotations),
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

    #[test]
    fn a_piece_round_trips_through_its_immutable_configmap() {
        let piece = Segment {
            name: String::new(),
            form: Form::Batch,
            first: 12,
            prev: "ab".into(),
            head: Some("cd".into()),
            sealed: true,
            entries: vec![("000000000012".into(), "{}".into())],
        };
        let cm = to_configmap("cleanroom-system", &piece);
        assert_eq!(cm.name_any(), "cleanroom-audit-b-000000000012");
        assert_eq!(cm.immutable, Some(true));
        assert_eq!(cm.labels()[LABEL], BATCH);
        let s = from_configmap(&cm).expect("piece");
        assert_eq!(
            (
                s.form,
                s.first,
                s.prev.as_str(),
                s.head.as_deref(),
                s.sealed
            ),
            (Form::Batch, 12, "ab", Some("cd"), true)
        );
        assert_eq!(s.entries, piece.entries);
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
