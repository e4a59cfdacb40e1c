//! The workspace namespace and the guards that exist before any pod does:
//! Pod Security `restricted`, a default-deny network policy for ingress and
//! egress, a ResourceQuota and a LimitRange.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::Identity;
use crate::api::{ApprovedImage, PreparedData, ScenarioSpec};
use crate::rules::quantity;

/// Annotation on a workspace namespace once its scenario has begun to end:
/// the end's reason. Written right after compute and access are stopped,
/// before any status or ledger write, so the end is final even while those
/// cannot be written (see `controller::lifecycle::ended`).
pub const ENDING_ANNOTATION: &str = "cleanroom.io/ending";
/// When compute and access were stopped (RFC 3339), beside [`ENDING_ANNOTATION`].
pub const ENDED_AT_ANNOTATION: &str = "cleanroom.io/ended-at";

/// Annotation on a workspace namespace: the images its authorization
/// approved (`repository@sha256:<digest>`, comma-separated), absent when it
/// approved none in particular. The admission policy `cleanroom-workspace-images`
/// reads it: when present, every container of every pod in the namespace
/// uses one of these images exactly (or the operator's agent image).
pub const APPROVED_IMAGES_ANNOTATION: &str = "cleanroom.io/approved-images";

/// Name of the default-deny network policy.
pub const DENY_ALL: &str = "deny-all";
/// Name of the quota and of the limit range.
pub const LIMITS: &str = "workspace";

/// The namespace `cr-<scenario>`, with Pod Security `restricted` enforced
/// (and audited and warned, so a violation is visible however it arrives).
pub fn namespace(id: &Identity) -> Namespace {
    namespace_approving(id, &[])
}

/// [`namespace`], with the authorization's approved images in
/// [`APPROVED_IMAGES_ANNOTATION`] when there are any.
pub fn namespace_approving(id: &Identity, approved: &[ApprovedImage]) -> Namespace {
    let annotations = (!approved.is_empty()).then(|| {
        let images: Vec<&str> = approved.iter().map(|a| a.image.as_str()).collect();
        BTreeMap::from([(APPROVED_IMAGES_ANNOTATION.to_string(), images.join(","))])
    });
    let mut labels = id.labels();
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_string(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".to_string(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(id.namespace.clone()),
            labels: Some(labels),
            annotations,
            owner_references: Some(vec![id.owner()]),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Selects every pod and allows nothing in either direction: raw data must not
/// leave the domain in any form, and nothing may reach into a workspace.
pub fn deny_all(id: &Identity) -> NetworkPolicy {
    NetworkPolicy {
        metadata: id.meta(DENY_ALL),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: None,
            egress: None,
        }),
    }
}

fn q(s: &str) -> Quantity {
    Quantity(s.to_string())
}

/// The workspace may use what the scenario asked for and no more: one compute
/// pod plus one agent pod at a time, one scratch claim plus one per dataset.
///
/// Beside the workspace itself there is room for one export being sealed at
/// a time (see [`super::airlock`]): its claim, as large as the scratch
/// volume, and its agent pod at the LimitRange's defaults. A second export
/// waits for the first seal to move out.
pub fn resource_quota(id: &Identity, spec: &ScenarioSpec, data: &[PreparedData]) -> ResourceQuota {
    let ws = &spec.workspace;
    let claims = 2 + spec.data.len();
    let (agent_cpu, agent_memory) = agent_defaults(spec);
    // Scratch, plus each prepared dataset's volume once it is on its way in.
    let storage = quantity::parse(&ws.scratch.0.0)
        .ok()
        .filter(|_| !data.is_empty())
        .and_then(|scratch| {
            data.iter().try_fold(scratch, |sum, d| {
                sum.checked_add(quantity::parse(&d.capacity).ok()?)
            })
        })
        .map_or_else(
            || ws.scratch.0.clone(),
            |sum| q(&sum.units_ceil().to_string()),
        );
    let storage = plus(&storage, &ws.scratch.0);
    let hard = BTreeMap::from([
        (
            "limits.cpu".to_string(),
            plus(&ws.resources.cpu.0, &agent_cpu),
        ),
        (
            "limits.memory".to_string(),
            plus(&ws.resources.memory.0, &agent_memory),
        ),
        ("requests.storage".to_string(), storage),
        ("persistentvolumeclaims".to_string(), q(&claims.to_string())),
        ("pods".to_string(), q("4")),
        ("services.loadbalancers".to_string(), q("0")),
        ("services.nodeports".to_string(), q("0")),
    ]);
    ResourceQuota {
        metadata: id.meta(LIMITS),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// `preferred`, or `ceiling` when that is smaller (or cannot be compared):
/// a LimitRange default above its max is invalid.
fn at_most(preferred: &str, ceiling: &Quantity) -> Quantity {
    match (quantity::parse(preferred), quantity::parse(&ceiling.0)) {
        (Ok(p), Ok(c)) if p <= c => q(preferred),
        _ => ceiling.clone(),
    }
}

/// CPU and memory of a container that does not say (agent pods): small, and
/// never above the workspace's own size.
fn agent_defaults(spec: &ScenarioSpec) -> (Quantity, Quantity) {
    let ws = &spec.workspace.resources;
    (at_most("100m", &ws.cpu.0), at_most("128Mi", &ws.memory.0))
}

/// `a + b`, exactly (in the smallest unit either needs); `a` when either
/// cannot be read.
fn plus(a: &Quantity, b: &Quantity) -> Quantity {
    match (quantity::parse(&a.0), quantity::parse(&b.0)) {
        (Ok(x), Ok(y)) => x.checked_add(y).map_or_else(
            || a.clone(),
            |sum| match sum.millis_ceil() {
                m if m % 1000 == 0 => q(&(m / 1000).to_string()),
                m => q(&format!("{m}m")),
            },
        ),
        _ => a.clone(),
    }
}

/// Defaults for any container that does not say (agent pods), so the quota
/// above can always be evaluated, and a ceiling equal to the workspace's size.
pub fn limit_range(id: &Identity, spec: &ScenarioSpec) -> LimitRange {
    let (cpu, memory) = (
        &spec.workspace.resources.cpu.0,
        &spec.workspace.resources.memory.0,
    );
    let (agent_cpu, agent_memory) = agent_defaults(spec);
    let defaults = BTreeMap::from([
        ("cpu".to_string(), agent_cpu),
        ("memory".to_string(), agent_memory),
    ]);
    let max = BTreeMap::from([
        ("cpu".to_string(), cpu.clone()),
        ("memory".to_string(), memory.clone()),
    ]);
    LimitRange {
        metadata: id.meta(LIMITS),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(defaults.clone()),
                default_request: Some(defaults),
                max: Some(max),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::workspace::testing::identity;

    fn spec() -> ScenarioSpec {
        serde_json::from_value(json!({
            "authorization": "acme-2026",
            "purpose": "population statistics",
            "data": [{"dataset": "population", "columns": ["age"]}],
            "workspace": {
                "image": "python:3.12",
                "resources": {"cpu": "2", "memory": "4Gi"},
                "scratch": "10Gi"
            }
        }))
        .unwrap()
    }

    #[test]
    fn namespace_enforces_restricted_pod_security() {
        let ns = namespace(&identity());
        assert_eq!(ns.metadata.name.as_deref(), Some("cr-census"));
        let labels = ns.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("restricted")
        );
        assert_eq!(
            labels.get("cleanroom.io/scenario").map(String::as_str),
            Some("census")
        );
    }

    #[test]
    fn network_policy_denies_ingress_and_egress_for_every_pod() {
        let np = serde_json::to_value(deny_all(&identity())).unwrap();
        assert_eq!(
            np["spec"],
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        );
    }

    #[test]
    fn quota_is_the_scenarios_size_with_one_claim_per_dataset_plus_scratch_and_one_seal() {
        let rq = resource_quota(&identity(), &spec(), &[]);
        let hard = rq.spec.unwrap().hard.unwrap();
        // The workspace's 2 CPUs and 4Gi, and a seal's agent pod (100m, 128Mi).
        assert_eq!(hard["limits.cpu"].0, "2100m");
        assert_eq!(
            hard["limits.memory"].0,
            ((4u64 << 30) + (128 << 20)).to_string()
        );
        // Scratch and a seal claim as large.
        assert_eq!(hard["requests.storage"].0, (20u64 << 30).to_string());
        // Scratch, one dataset, one seal.
        assert_eq!(hard["persistentvolumeclaims"].0, "3");
        assert_eq!(hard["services.loadbalancers"].0, "0");
    }

    #[test]
    fn quota_makes_room_for_each_prepared_volume() {
        let record = |capacity: &str| PreparedData {
            dataset: "d".into(),
            volume: "pv".into(),
            capacity: capacity.into(),
            rows_in: 1,
            rows_out: 1,
            bytes: 1,
            digest: "0".repeat(64),
            prepared_at: crate::api::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        };
        let rq = resource_quota(&identity(), &spec(), &[record("1Gi"), record("512Mi")]);
        let hard = rq.spec.unwrap().hard.unwrap();
        // 10Gi + 1Gi + 512Mi, in bytes, and a seal claim of 10Gi.
        assert_eq!(hard["requests.storage"].0, (43u64 << 29).to_string());
    }

    #[test]
    fn limit_range_defaults_never_exceed_a_small_workspace() {
        let mut small = spec();
        small.workspace.resources.memory = "64Mi".into();
        small.workspace.resources.cpu = "50m".into();
        let lr = limit_range(&identity(), &small);
        let item = &lr.spec.unwrap().limits[0];
        assert_eq!(item.default.as_ref().unwrap()["memory"].0, "64Mi");
        assert_eq!(item.default_request.as_ref().unwrap()["cpu"].0, "50m");
        assert_eq!(item.max.as_ref().unwrap()["memory"].0, "64Mi");
    }

    #[test]
    fn limit_range_gives_defaults_and_caps_at_the_workspace_size() {
        let lr = limit_range(&identity(), &spec());
        let item = &lr.spec.unwrap().limits[0];
        assert_eq!(item.type_, "Container");
        assert_eq!(item.max.as_ref().unwrap()["cpu"].0, "2");
        assert_eq!(item.default.as_ref().unwrap()["memory"].0, "128Mi");
    }
}
