//! Segments as ConfigMaps: `cleanroom-audit-<index>` in the audit namespace
//! (`cleanroom-system` by default), one record per data key (its zero-padded
//! sequence number), the chain links in annotations, `immutable: true` once
//! sealed. Reading needs only `list` on ConfigMaps in that namespace, so
//! `cleanroom audit verify` works for any auditor allowed that.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta};
use kube::{Api, ResourceExt};

use super::chain::{Segment, segment_name};
use crate::workspace::labels;

/// Default namespace of the ledger.
pub const DEFAULT_NAMESPACE: &str = "cleanroom-system";
/// Name prefix of the segments.
pub const PREFIX: &str = "cleanroom-audit";
/// Label that marks a segment (value [`SEGMENT`]).
pub const LABEL: &str = "cleanroom.io/audit";
pub const SEGMENT: &str = "segment";
/// Annotation: hash of the last record of the previous segment.
pub const PREV: &str = "cleanroom.io/audit-prev";
/// Annotation: hash of this segment's last record.
pub const HEAD: &str = "cleanroom.io/audit-head";

/// The index of a segment from its name, if it is one.
pub fn index_of(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.strip_prefix('-')?.parse().ok()
}

/// A segment read from its ConfigMap.
pub fn from_configmap(cm: &ConfigMap) -> Option<Segment> {
    let name = cm.name_any();
    let index = index_of(&name)?;
    let annotations = cm.annotations();
    Some(Segment {
        index,
        prev: annotations.get(PREV).cloned().unwrap_or_default(),
        head: annotations.get(HEAD).cloned(),
        sealed: cm.immutable == Some(true),
        entries: cm.data.clone().unwrap_or_default().into_iter().collect(),
        name,
    })
}

/// A new, empty segment `index` that follows the record hashing to `prev`.
pub fn new_configmap(namespace: &str, index: u64, prev: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(segment_name(PREFIX, index)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
                (LABEL.to_string(), SEGMENT.to_string()),
            ])),
            annotations: Some(BTreeMap::from([(PREV.to_string(), prev.to_string())])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::new()),
        ..ConfigMap::default()
    }
}

/// Every segment ConfigMap in `api`'s namespace, in chain order.
pub async fn list(api: &Api<ConfigMap>) -> Result<Vec<ConfigMap>, kube::Error> {
    let mut items = api
        .list(&ListParams::default().labels(&format!("{LABEL}={SEGMENT}")))
        .await?
        .items;
    items.retain(|cm| index_of(&cm.name_any()).is_some());
    items.sort_by_key(|cm| index_of(&cm.name_any()));
    Ok(items)
}

/// Every segment in `api`'s namespace, in chain order.
pub async fn segments(api: &Api<ConfigMap>) -> Result<Vec<Segment>, kube::Error> {
    Ok(list(api).await?.iter().filter_map(from_configmap).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_round_trips_through_its_configmap() {
        let mut cm = new_configmap("cleanroom-system", 12, "ab");
        assert_eq!(cm.name_any(), "cleanroom-audit-00000012");
        assert_eq!(index_of("cleanroom-audit-00000012"), Some(12));
        assert_eq!(index_of("cleanroom-auditor"), None);
        cm.data = Some(BTreeMap::from([("000000000001".into(), "{}".into())]));
        cm.immutable = Some(true);
        let s = from_configmap(&cm).expect("segment");
        assert_eq!((s.index, s.prev.as_str(), s.sealed), (12, "ab", true));
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.head, None);
    }
}
