//! `Authorization`: one agreement between the data bureau and one data operator.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Condition, Members, PositiveQuantity, State, Time, reason_required_rule, revoked_is_final_rule,
    short_dns_label_name_rule,
};
use crate::rules::credit_code;

/// Shortest audit retention the regulations allow (6 months).
pub const MIN_AUDIT_RETENTION_DAYS: i32 = 180;

/// Longest validity of one authorization: 3 years, counted as 1096 days so
/// that a span containing a leap day still fits.
pub const MAX_VALIDITY_HOURS: i64 = 1096 * 24;

/// The data bureau's grant (授权运营协议) to one data operator: who, under
/// which agreement, for how long (at most 3 years), which datasets at most,
/// how much compute and storage at most, and which people may enter its
/// workspaces. Every Scenario runs under exactly one Authorization.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cleanroom.io",
    version = "v1alpha1",
    kind = "Authorization",
    plural = "authorizations",
    shortname = "authz",
    category = "cleanroom",
    status = "AuthorizationStatus",
    derive = "PartialEq",
    doc = "A time-limited grant (at most 3 years) from the data bureau to one data operator: the agreement, the datasets and quota it may use at most, the people who may enter its workspaces, and its state (Active, Suspended or Revoked).",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Pending, Active, Suspended, Expired, Revoked or Rejected"),
    printcolumn(name = "Operator", type_ = "string", json_path = ".spec.operator.name", description = "The data operator holding the authorization"),
    printcolumn(name = "Scenarios", type_ = "integer", json_path = ".status.scenarios", description = "Live scenarios under this authorization"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.validUntil", description = "End of the validity period"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = short_dns_label_name_rule(),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.validUntil > self.validFrom")
    .message("validUntil must be after validFrom")
    .field_path(".validUntil"))]
#[x_kube(validation = Rule::new("self.validUntil - self.validFrom <= duration('26304h')")
    .message("an authorization lasts at most 3 years (1096 days): set validUntil no later than validFrom plus 3 years; to go on, renew with a new agreement")
    .field_path(".validUntil"))]
#[x_kube(validation = reason_required_rule())]
pub struct AuthorizationSpec {
    /// The data operator (数据运营主体) that receives the authorization.
    pub operator: DataOperator,
    /// Identifier of the signed authorization agreement (授权运营协议编号).
    #[schemars(length(min = 1, max = 128))]
    pub agreement_id: String,
    /// Start of the validity period (RFC 3339, for example
    /// `2025-01-01T00:00:00+08:00`). Workspaces are provisioned only from then.
    pub valid_from: Time,
    /// End of the validity period (RFC 3339), at most 3 years (1096 days)
    /// after validFrom. At this instant every scenario is torn down and wiped.
    pub valid_until: Time,
    /// Names of the Datasets that scenarios under this authorization may use
    /// (the ceiling; each scenario lists what it actually needs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub datasets: Vec<String>,
    /// Real-name people (users and groups) who may be given access to the
    /// workspaces; each scenario names a subset.
    #[serde(default)]
    pub members: Members,
    /// Ceiling on the resources of all scenarios together.
    pub quota: Quota,
    /// Desired state. Suspended seals every workspace (compute stopped, access
    /// removed, data kept); Revoked tears everything down and cannot be undone.
    /// Both need a reason.
    #[serde(default)]
    #[x_kube(validation = revoked_is_final_rule())]
    pub state: State,
    /// Why the state is Suspended or Revoked (required for both); recorded in
    /// the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
    /// Days the audit trail of this authorization is kept after it ends; at
    /// least 180 (6 months).
    #[serde(default = "default_audit_retention_days")]
    #[schemars(range(min = 180, max = 36500))]
    pub audit_retention_days: i32,
    /// The airlock: who reviews what leaves the workspaces, how many must
    /// approve, and who collects what is released.
    #[serde(default)]
    pub review: ReviewPolicy,
    /// The workspace images (algorithms) this authorization approved, each
    /// pinned by digest and naming the review it came from. Empty (the
    /// default): no image allow-list yet, any image may be used. Not empty: a
    /// scenario's `workspace.image` must be one of them exactly, and in its
    /// workspace the API server refuses any pod whose image is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["image"]))]
    pub approved_images: Vec<ApprovedImage>,
}

/// Form of an approved image reference: `[host[:port]/]path@sha256:<64 hex>`,
/// no tag (a tag beside a digest says something the digest does not).
pub const APPROVED_IMAGE_PATTERN: &str = r"^([a-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*@sha256:[0-9a-f]{64}$";

/// One image approved by an algorithm review.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovedImage {
    /// The image reference pinned by digest, without a tag, for example
    /// `acme/notebook@sha256:<64 hex digits>`.
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(format!("self.matches('{APPROVED_IMAGE_PATTERN}')"))
        .message("an approved image is pinned by digest and has no tag: <repository>@sha256:<64 lowercase hex digits>"))]
    pub image: String,
    /// Reference of the algorithm review that approved it.
    #[schemars(length(min = 1, max = 256))]
    pub review: String,
}

/// How this authorization's exports are reviewed and delivered.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewPolicy {
    /// Approvals an export needs; by default 2 when the scenario uses an
    /// `Important` or `Core` dataset, else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub approvals: Option<i32>,
    /// Who may review exports (never a member: the API server refuses a
    /// review by a member or by the requester).
    #[serde(default)]
    pub reviewers: Members,
    /// The data operator's delivery identity: who may read the release claim.
    #[serde(default)]
    pub delivery: Members,
    /// Workspaces using a `Core` dataset must be non-interactive
    /// (`workspace.interactive: false`): results leave only through review.
    #[serde(default)]
    pub require_reviewed_output: bool,
    /// Thresholds of the automatic checks, stricter than the defaults only
    /// within bounds (never below a cell count of 5 or k of 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanThresholds>,
}

/// Overrides of the automatic checks' thresholds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanThresholds {
    /// Smallest cell count of a table (ACRO's `threshold`; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 1000))]
    pub threshold: Option<i32>,
    /// k of k-anonymity for microdata (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3, max = 1000))]
    pub k: Option<i32>,
}

fn default_audit_retention_days() -> i32 {
    MIN_AUDIT_RETENTION_DAYS
}

/// Identity of a data operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataOperator {
    /// Registered name of the organisation.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Unified social credit code (统一社会信用代码, GB 32100-2015): 18
    /// characters, the last one a check character.
    #[schemars(regex(pattern = r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"))]
    #[schemars(length(min = 18, max = 18))]
    #[x_kube(validation = Rule::new(credit_code::cel_rule())
        .message("creditCode check character (the 18th) does not match GB 32100-2015: the code has a typo"))]
    pub credit_code: String,
}

/// Resource ceiling of an authorization, shared by all its scenarios.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// CPU, for example "16" or "500m".
    pub cpu: PositiveQuantity,
    /// Memory, for example "64Gi".
    pub memory: PositiveQuantity,
    /// Storage for scratch volumes, for example "1Ti".
    pub storage: PositiveQuantity,
    /// Most scenarios alive at the same time.
    #[schemars(range(min = 0, max = 1000))]
    pub scenarios: i32,
}

/// Observed state of an Authorization.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary for humans: Pending (before validFrom), Active, Suspended,
    /// Expired, Revoked or Rejected (invalid; see the Ready condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AuthorizationPhase>,
    /// Standard conditions (Ready, Suspended, Expired, Revoked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// When the authorization ends (its validUntil).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Scenarios under this authorization that are not Closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenarios: Option<i32>,
}

/// Summary of an Authorization's state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = super::common::without_description)]
pub enum AuthorizationPhase {
    /// Valid but validFrom has not come yet.
    Pending,
    /// In force.
    Active,
    /// Sealed by the bureau; see spec.reason.
    Suspended,
    /// validUntil has passed.
    Expired,
    /// Terminated by the bureau; see spec.reason.
    Revoked,
    /// Fails a check the API server cannot make (see the Ready condition).
    Rejected,
}
