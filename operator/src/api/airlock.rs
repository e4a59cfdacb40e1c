//! The airlock: `Export` (a data product leaving a workspace) and `Review`
//! (one reviewer's decision on it), both namespaced in the workspace
//! namespace `cr-<scenario>`.
//!
//! What is reviewed is exactly what is released: the operator seals the named
//! files into a fresh volume in the vault (sizes, SHA-256s and a manifest
//! hash in status), checks the sealed copy with `agent scan`, waits for the
//! approvals the Authorization asks for, and copies the sealed files to the
//! authorization's release claim, verifying every hash again on arrival.
//! Who asked and who reviewed is the caller the API server saw: admission
//! policies in the chart refuse a `requester` or `reviewer` that is not the
//! caller, and a review by the requester or by a member of the authorization.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, Time, WipeAttestation};

/// Where the files of an export are taken from in the workspace: the
/// scratch volume's `outbox` directory (mounted at `/work/outbox`).
pub const OUTBOX: &str = "outbox";

/// A request to release data products from a workspace: which files, what
/// they are, and how disclosure was controlled. The spec cannot change once
/// submitted; to change a file, withdraw (delete) the export and submit a
/// new one, whose reviews start from zero.
// Several `printcolumn(type_ = ...)` read to clippy as one attribute repeated.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cleanroom.io",
    version = "v1alpha1",
    kind = "Export",
    plural = "exports",
    namespaced,
    category = "cleanroom",
    status = "ExportStatus",
    derive = "PartialEq",
    doc = "A reviewed release of data products from a workspace: the files under /work/outbox, sealed, checked automatically, approved by reviewers and copied to the authorization's release claim.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Submitted, Sealed, Checking, Blocked, InReview, Approved, Rejected, Returned, Released, Recalled, Failed"
    ),
    printcolumn(
        name = "Requester",
        type_ = "string",
        json_path = ".spec.requester",
        description = "Who asked (checked against the caller by the API server)"
    ),
    printcolumn(
        name = "Verdict",
        type_ = "string",
        json_path = ".status.scan.verdict",
        description = "The automatic checks' verdict"
    ),
    printcolumn(
        name = "Approvals",
        type_ = "string",
        json_path = ".status.approvals",
        description = "Approvals so far"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("an export cannot change once submitted: delete it (withdraw) and submit a new one"))]
pub struct ExportSpec {
    /// Who asks for the release: must be the user making the request (the
    /// API server refuses anyone else's name).
    #[schemars(length(min = 1, max = 253))]
    pub requester: String,
    /// The files, relative to `/work/outbox` on the scratch volume (at most
    /// 32: their hashes must fit the sealing Job's termination message).
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(f, self.exists_one(g, g.path == f.path))")
        .message("each file may be named once"))]
    pub files: Vec<ExportFile>,
    /// What the outputs are and what they are for.
    #[schemars(length(min = 1, max = 4096))]
    pub context: String,
    /// How disclosure was controlled (suppression, rounding, aggregation).
    #[schemars(length(min = 1, max = 4096))]
    pub controls: String,
}

/// One file of an export.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportFile {
    /// Path under `/work/outbox`: relative, no `..`, no hidden parts.
    #[schemars(length(min = 1, max = 255))]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][-._A-Za-z0-9]*(/[A-Za-z0-9_][-._A-Za-z0-9]*)*$"))]
    pub path: String,
    /// What the file is; decides which checks apply.
    pub kind: ProductKind,
    /// Columns' roles for the table and microdata checks (inferred when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<ColumnRoles>,
}

/// What a file is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ProductKind {
    /// A statistical table: key columns and counts or magnitudes.
    Table,
    /// A text or document.
    Report,
    /// A trained model (always goes to a human).
    Model,
    /// Record-level data (k-anonymity and l-diversity).
    Microdata,
    /// Anything else.
    Other,
}

/// The roles of a file's columns, for the automatic checks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnRoles {
    /// Key (grouping) columns of a table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub keys: Vec<String>,
    /// Count columns of a table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub counts: Vec<String>,
    /// Magnitude (sum) columns of a table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub magnitudes: Vec<String>,
    /// Quasi-identifier columns of microdata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub quasi_identifiers: Vec<String>,
    /// Sensitive columns of microdata (l-diversity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub sensitive: Vec<String>,
}

/// Where an export stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ExportPhase {
    /// Accepted; the files are being copied into the vault.
    Submitted,
    /// The sealed copy and its hashes are recorded.
    Sealed,
    /// The automatic checks run on the sealed copy.
    Checking,
    /// A check failed: never releasable; it can only be withdrawn.
    Blocked,
    /// Waiting for reviewers.
    InReview,
    /// Enough approvals; the release copy is being made.
    Approved,
    /// A reviewer rejected it (final).
    Rejected,
    /// A reviewer sent it back: change the files and submit a new export.
    Returned,
    /// Copied to the release claim, hashes verified.
    Released,
    /// Taken back after release by a reviewer; its content can never be
    /// released again.
    Recalled,
    /// A step could not finish (the message says which and why).
    Failed,
}

impl ExportPhase {
    /// Phases after which nothing more happens to the export but cleaning up.
    pub fn is_final(self) -> bool {
        use ExportPhase::*;
        matches!(
            self,
            Blocked | Rejected | Returned | Released | Recalled | Failed
        )
    }
}

/// Observed state of an Export.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportStatus {
    /// Where the export stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ExportPhase>,
    /// Why it stands there (human-readable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The scenario whose workspace it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// The sealed copy: what is reviewed and released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedCopy>,
    /// The automatic checks' summary (the whole report is beside the sealed copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanSummary>,
    /// Approvals required by the authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<i32>,
    /// Approvals so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<i32>,
    /// The reviews counted, in the order they were made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<ReviewRecord>,
    /// Where the release copy is, once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<ReleasedCopy>,
    /// Who recalled the released copy, and the wipe that removed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled: Option<RecalledCopy>,
    /// The sealed copy's wipe, for exports that will never be released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe: Option<WipeAttestation>,
    /// When the current step must be done by; past it the export is Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    /// Ready (released), Sealed, Checked, Reviewed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The sealed copy of an export's files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedCopy {
    /// The volume that holds it.
    pub volume: String,
    /// SHA-256 of the manifest (the list of names, kinds, sizes and hashes).
    pub manifest_sha256: String,
    /// Each file as sealed.
    pub files: Vec<SealedFile>,
    /// When it was sealed.
    pub sealed_at: Time,
}

/// One sealed file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedFile {
    /// Path under the outbox.
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256 of the content.
    pub sha256: String,
}

/// The automatic checks' verdict, summarized.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanSummary {
    /// `pass`, `review` or `fail`: the worst of the files'.
    pub verdict: String,
    /// Version of the rules and thresholds applied.
    #[serde(default)]
    pub policy_version: String,
    /// Each file's verdict and the checks that fired.
    #[serde(default)]
    pub files: Vec<FileVerdict>,
}

/// One file's verdict.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileVerdict {
    /// Path under the outbox.
    pub name: String,
    /// `pass`, `review` or `fail`.
    pub verdict: String,
    /// The checks that fired (ACRO's names for the table rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
}

/// A review as counted by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRecord {
    /// The Review object.
    pub name: String,
    /// The reviewer, as the API server saw them.
    pub reviewer: String,
    /// Their decision.
    pub decision: Decision,
}

/// Where the released copy is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleasedCopy {
    /// `cleanroom-release/<claim>`.
    pub claim: String,
    /// Directory on that claim: `<namespace>.<export>`.
    pub path: String,
    /// When the copy was verified.
    pub released_at: Time,
}

/// A released copy taken back: by whom, and the attestation of its wipe
/// from the release claim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecalledCopy {
    /// The Review (decision `Recall`) that asked for it.
    pub review: String,
    /// The reviewer, as the API server saw them.
    pub reviewer: String,
    /// The released files overwritten, verified and removed.
    pub wipe: WipeAttestation,
}

/// One reviewer's decision on one export. Cannot change once made.
// Several `printcolumn(type_ = ...)` read to clippy as one attribute repeated.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cleanroom.io",
    version = "v1alpha1",
    kind = "Review",
    plural = "reviews",
    namespaced,
    category = "cleanroom",
    derive = "PartialEq",
    doc = "One reviewer's decision (Approve, Reject, Return, or Recall after release) on one Export or Import in the same namespace. The API server checks that the reviewer is the caller, not the requester and not a member of the authorization.",
    printcolumn(
        name = "Export",
        type_ = "string",
        json_path = ".spec.export",
        description = "The export reviewed"
    ),
    printcolumn(
        name = "Import",
        type_ = "string",
        json_path = ".spec.import",
        description = "The import reviewed"
    ),
    printcolumn(
        name = "Reviewer",
        type_ = "string",
        json_path = ".spec.reviewer",
        description = "Who decided"
    ),
    printcolumn(
        name = "Decision",
        type_ = "string",
        json_path = ".spec.decision",
        description = "Approve, Reject, Return or Recall"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("a review cannot change once made: make a new one"))]
#[x_kube(validation = Rule::new("self.decision == 'Approve' || self.comment.trim().size() > 0")
    .message("a Reject, Return or Recall needs a comment that says why")
    .field_path(".comment"))]
#[x_kube(validation = Rule::new("has(self.export) != has(self.__import__)")
    .message("a review names one export or one import"))]
#[x_kube(validation = Rule::new("!has(self.__import__) || self.decision != 'Recall'")
    .message("an import is not recalled: its requester withdraws it (delete), which wipes it from the workspace")
    .field_path(".decision"))]
pub struct ReviewSpec {
    /// The Export (in this namespace) under review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub export: Option<String>,
    /// The Import (in this namespace) under review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub import: Option<String>,
    /// Who decides: must be the user making the request.
    #[schemars(length(min = 1, max = 253))]
    pub reviewer: String,
    /// The decision.
    pub decision: Decision,
    /// Why.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub comment: String,
    /// Notes per file (the decision is for the whole export).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub files: Vec<FileNote>,
}

/// What a review is of: an export or an import, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    Export(&'a str),
    Import(&'a str),
}

impl ReviewSpec {
    /// The export or import reviewed (`None` only for a review the API
    /// server's rule would have refused: neither or both named).
    pub fn subject(&self) -> Option<Subject<'_>> {
        match (&self.export, &self.import) {
            (Some(e), None) => Some(Subject::Export(e)),
            (None, Some(i)) => Some(Subject::Import(i)),
            _ => None,
        }
    }
}

/// A reviewer's decision.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Decision {
    /// Counts towards the approvals required.
    Approve,
    /// Rejects the export (final; its sealed copy is wiped).
    Reject,
    /// Sends it back to the requester to change and resubmit.
    Return,
    /// After release: deletes the released copy; the content can never be
    /// released again.
    Recall,
}

/// A reviewer's note on one file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileNote {
    /// Path under the outbox.
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// The note.
    #[schemars(length(max = 4096))]
    pub comment: String,
}
