//! `Scenario`: one application scenario under one Authorization, with its own workspace.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Condition, Members, PositiveQuantity, State, Time, WipeAttestation, reason_required_rule,
    revoked_is_final_rule, short_dns_label_name_rule,
};
use super::masking::MaskingRule;

/// Prefix of every workspace namespace: `cr-<scenario>`.
pub const NAMESPACE_PREFIX: &str = "cr-";

/// One application scenario (应用场景) under exactly one Authorization
/// (一场景一授权): its purpose, the datasets and columns it needs (minimum
/// necessary data), how they are sampled and masked, the workspace that
/// processes them, and who may enter it. The workspace lives in the namespace
/// `cr-<name>` until the scenario expires or is revoked; then every volume is
/// wiped and the namespace deleted.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cleanroom.io",
    version = "v1alpha1",
    kind = "Scenario",
    plural = "scenarios",
    shortname = "scn",
    category = "cleanroom",
    status = "ScenarioStatus",
    derive = "PartialEq",
    doc = "One application scenario under exactly one Authorization: purpose, the dataset columns it needs with sampling and masking, its isolated workspace (namespace cr-<name>) and its members. Torn down and wiped when it or its authorization expires or is revoked.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Where the scenario is in its life"),
    printcolumn(name = "Authorization", type_ = "string", json_path = ".spec.authorization", description = "The Authorization it runs under"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt", description = "Effective end: the earlier of its own and its authorization's validUntil"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = short_dns_label_name_rule(),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = reason_required_rule())]
#[x_kube(validation = Rule::new("has(self.data) == has(oldSelf.data) && (!has(self.data) || self.data == oldSelf.data)")
    .message("data is fixed when the scenario is approved (the columns, sampling and rules are what was prepared): create a new Scenario for other data")
    .field_path(".data"))]
pub struct ScenarioSpec {
    /// Name of the Authorization this scenario runs under. Cannot be changed.
    #[schemars(length(min = 1, max = 60))]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("authorization is immutable: a scenario belongs to one authorization for life; create a new Scenario instead"))]
    pub authorization: String,
    /// What the scenario is for, as approved (应用场景用途).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.trim().size() > 0")
        .message("purpose must say what the scenario is for; it cannot be blank"))]
    pub purpose: String,
    /// End of the scenario (RFC 3339), no later than the authorization's
    /// validUntil. When omitted the scenario ends with its authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Time>,
    /// Desired state. Suspended seals the workspace (compute stopped, access
    /// removed, data kept); Revoked tears it down and cannot be undone. Both
    /// need a reason.
    #[serde(default)]
    #[x_kube(validation = revoked_is_final_rule())]
    pub state: State,
    /// Why the state is Suspended or Revoked (required for both); recorded in
    /// the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
    /// The data the scenario needs: for each dataset the columns, sampling and
    /// any stronger masking rules. Datasets must be allowed by the
    /// authorization. May be empty (a workspace on synthetic data only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["dataset".into()]))]
    pub data: Vec<DataRequest>,
    /// The compute that works on the prepared data.
    pub workspace: Workspace,
    /// People given access to the workspace; a subset of the authorization's members.
    #[serde(default)]
    pub members: Members,
}

/// Columns of one dataset requested by a scenario.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.rules) || self.rules.all(r, r.column in self.columns)")
    .message("every rules[].column must also be listed in columns")
    .field_path(".rules"))]
pub struct DataRequest {
    /// Name of the Dataset.
    #[schemars(length(min = 1, max = 63))]
    pub dataset: String,
    /// Names of the columns needed (minimum necessary data); the others are
    /// not delivered.
    #[schemars(length(min = 1, max = 256), inner(length(min = 1, max = 128)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub columns: Vec<String>,
    /// Which rows are delivered; all rows when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// Masking rules that replace the dataset's default for some columns.
    /// Each must be at least as strong as the default.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["column".into()]))]
    pub rules: Vec<ColumnRule>,
}

/// A masking rule for one column, overriding the dataset's default.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnRule {
    /// Column name; must be listed in columns.
    #[schemars(length(min = 1, max = 128))]
    pub column: String,
    /// The rule; at least as strong as the dataset's default for the column.
    pub rule: MaskingRule,
}

/// A reproducible random sample of rows: exactly one of fraction or rows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.fraction) != has(self.rows)")
    .message("sampling needs exactly one of fraction (0 < fraction <= 1) or rows (>= 1)"))]
pub struct Sampling {
    /// Share of the rows, greater than 0 and at most 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0")
        .message("fraction must be greater than 0 and at most 1"))]
    pub fraction: Option<f64>,
    /// Number of rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rows: Option<i64>,
    /// Seed of the random choice, so that the same sample can be drawn again.
    #[serde(default)]
    pub seed: i64,
}

/// The compute of a workspace. It runs without network egress, without a
/// service account token, with the prepared data read-only at
/// `/data/<dataset>` and a scratch volume at `/work`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// Container image.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Entrypoint (replaces the image's ENTRYPOINT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Arguments (replace the image's CMD).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub args: Vec<String>,
    /// Environment variables with plain values (no references to Secrets or
    /// other objects).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Vec<EnvVar>,
    /// CPU and memory of the workspace container (requests equal limits).
    pub resources: WorkspaceResources,
    /// Size of the scratch volume mounted at /work, for example "10Gi".
    pub scratch: PositiveQuantity,
    /// Service runs a long-lived Deployment; Batch runs a Job to completion.
    #[serde(default)]
    pub mode: WorkspaceMode,
    /// Whether members may enter the workspace (`exec`, `attach`,
    /// `port-forward`, logs). An interactive session is itself a channel
    /// out: when false, results leave only through a reviewed Export.
    #[serde(default = "interactive_by_default")]
    pub interactive: bool,
}

fn interactive_by_default() -> bool {
    true
}

/// An environment variable with a plain value.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    )]
    pub name: String,
    /// Value.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// CPU and memory of a workspace; requests equal limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceResources {
    /// CPU, for example "2" or "500m".
    pub cpu: PositiveQuantity,
    /// Memory, for example "8Gi".
    pub memory: PositiveQuantity,
}

/// How the workspace runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum WorkspaceMode {
    /// A Deployment with one replica that keeps running.
    #[default]
    Service,
    /// A Job that runs to completion.
    Batch,
}

/// Observed state of a Scenario.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the scenario is in its life: Pending, Provisioning,
    /// PreparingData, Ready, Suspended, TearingDown, Closed or Rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ScenarioPhase>,
    /// Standard conditions: Ready, Provisioned, DataPrepared, Suspended,
    /// Expired, Revoked, Wiped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The workspace namespace (cr-<name>).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// When the scenario was admitted: its place in its authorization's
    /// quota, held in this order (a scenario admitted later, or fixed
    /// later, never takes it). Cleared when it is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted_at: Option<Time>,
    /// Effective end: the earlier of spec.validUntil and the authorization's validUntil.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// One attestation per wiped volume, recorded before its claim is deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub wipes: Vec<WipeAttestation>,
    /// One record per prepared dataset: what the workspace received, saved
    /// before the volume is handed over to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub data: Vec<PreparedData>,
}

/// What `agent desensitize` delivered for one dataset (counts and a digest,
/// never values).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreparedData {
    /// The Dataset.
    #[schemars(length(max = 63))]
    pub dataset: String,
    /// The PersistentVolume holding the prepared file, handed over to the
    /// workspace as claim `data-<dataset>`.
    #[schemars(length(max = 253))]
    pub volume: String,
    /// Size of that volume (counted in the workspace's storage quota).
    #[schemars(length(max = 64))]
    pub capacity: String,
    /// Rows read from the raw file.
    pub rows_in: i64,
    /// Rows delivered (after sampling).
    pub rows_out: i64,
    /// Size of the prepared file.
    pub bytes: i64,
    /// SHA-256 (hex) of the prepared file.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub digest: String,
    /// When the preparation finished.
    pub prepared_at: Time,
}

/// Where a scenario is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = super::common::without_description)]
pub enum ScenarioPhase {
    /// Accepted, waiting for its authorization to be in force.
    Pending,
    /// Namespace, network policy, quota, access and scratch volume are being created.
    Provisioning,
    /// Datasets are being sampled and masked into the scenario's volumes.
    PreparingData,
    /// The workspace runs.
    Ready,
    /// Sealed: compute stopped, access removed, data kept.
    Suspended,
    /// Compute stopped, volumes being wiped, namespace being deleted.
    TearingDown,
    /// Everything is gone; the object stays as a record.
    Closed,
    /// Refused: it asks for more than its authorization allows (see the Ready condition).
    Rejected,
}

impl Scenario {
    /// Name of the workspace namespace: `cr-<name>`.
    pub fn namespace_name(&self) -> Option<String> {
        self.metadata
            .name
            .as_ref()
            .map(|name| format!("{NAMESPACE_PREFIX}{name}"))
    }
}
