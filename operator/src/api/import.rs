//! `Import`: third-party ("social") data entering a workspace through the
//! airlock (R6), namespaced in the workspace namespace `cr-<scenario>`.
//!
//! The files are never staged by analysts: the data operator's staff put
//! them on a claim in the import namespace (`cleanroom-import`) and label
//! it for the scenario (`cleanroom.io/import-for=<scenario>`), the way raw
//! data is staged in the vault. A member asks for them with an Import that
//! names the supplier, the legal basis and each file's declared schema. The
//! operator seals the files into a fresh volume (sizes, SHA-256s, manifest
//! hash), checks the sealed copy (`agent scan`: file types, identifiers, the
//! declared schema), waits for the approvals the Authorization asks for, and
//! hands the sealed volume into the workspace as claim `import-<name>`,
//! mounted read-only at `/imports/<name>`. What was reviewed is exactly what
//! the workspace reads. The status is the same as an Export's.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::airlock::ExportStatus;
use super::dataset::ColumnType;

/// The namespace where staff stage third-party files on claims, and where
/// imports are sealed and checked.
pub const IMPORT_NAMESPACE: &str = "cleanroom-import";

/// The label staff put on a staging claim: the scenario it is meant for.
/// Analysts cannot write in the import namespace, so an Import can only
/// name a claim staged for its own scenario.
pub const IMPORT_FOR_LABEL: &str = "cleanroom.io/import-for";

/// Where an approved import is mounted in the workspace: `/imports/<name>`.
pub const IMPORTS_MOUNT: &str = "/imports";

/// A request to bring third-party data into a workspace. The spec cannot
/// change once submitted; to change it, withdraw (delete) the import and
/// submit a new one, whose reviews start from zero.
// Several `printcolumn(type_ = ...)` read to clippy as one attribute repeated.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cleanroom.io",
    version = "v1alpha1",
    kind = "Import",
    plural = "imports",
    namespaced,
    category = "cleanroom",
    status = "ExportStatus",
    derive = "PartialEq",
    doc = "Reviewed third-party data for a workspace: files staged by the data operator's staff in cleanroom-import, sealed, checked against their declared schema, approved by reviewers and mounted read-only at /imports/<name>.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Submitted, Sealed, Checking, Blocked, InReview, Approved, Rejected, Returned, Released (mounted), Failed"
    ),
    printcolumn(
        name = "Supplier",
        type_ = "string",
        json_path = ".spec.supplier",
        description = "Who supplies the data"
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
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("an import cannot change once submitted: delete it (withdraw) and submit a new one"))]
pub struct ImportSpec {
    /// Who asks for the data: must be the user making the request (the API
    /// server refuses anyone else's name).
    #[schemars(length(min = 1, max = 253))]
    pub requester: String,
    /// Who supplies the data (an organisation).
    #[schemars(length(min = 1, max = 253))]
    pub supplier: String,
    /// Why the data may be used here.
    pub legal_basis: LegalBasis,
    /// The claim in `cleanroom-import` the staff staged the files on; it
    /// must carry `cleanroom.io/import-for=<this scenario>`.
    #[schemars(length(min = 1, max = 253))]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub staging_claim: String,
    /// The files, relative to the staging claim's root (at most 32).
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(f, self.exists_one(g, g.path == f.path))")
        .message("each file may be named once"))]
    pub files: Vec<ImportFile>,
    /// What the data is and what it is for.
    #[schemars(length(min = 1, max = 4096))]
    pub purpose: String,
}

/// The legal basis of an import: a contract with the supplier, or the data
/// subjects' consent, and its reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegalBasis {
    /// Contract or Consent.
    pub kind: LegalBasisKind,
    /// The contract's or consent record's reference.
    #[schemars(length(min = 1, max = 253))]
    pub reference: String,
}

/// What kind of legal basis.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LegalBasisKind {
    /// A data supply contract with the supplier.
    Contract,
    /// The data subjects' consent.
    Consent,
}

/// One file of an import and its declared schema.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportFile {
    /// Path on the staging claim: relative, no `..`, no hidden parts.
    #[schemars(length(min = 1, max = 255))]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][-._A-Za-z0-9]*(/[A-Za-z0-9_][-._A-Za-z0-9]*)*$"))]
    pub path: String,
    /// The columns, in order, for a CSV, JSON Lines or Parquet file: the
    /// file's header must be exactly these, and every value must parse as
    /// its type (empty is missing). Empty for a document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub schema: Vec<DeclaredColumn>,
}

/// One declared column.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredColumn {
    /// The column's name as in the file.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_: ColumnType,
}
