//! What `cleanroom import create` sends, checked before it is sent: the
//! `--file PATH[:COLUMN=TYPE,...]`, `--legal-basis` and `--staging-claim`
//! arguments and the rules of the Import schema, so that a mistake is named
//! here (exit 2) rather than by the API server. The checks an Import shares
//! with an Export (name, files, texts, paths) are the export's.

use crate::api::dataset::ColumnType;
use crate::api::import::{DeclaredColumn, ImportFile, LegalBasis, LegalBasisKind};
use crate::api::{Import, ImportSpec};

use super::common::workspace_namespace;
use super::export_spec::{MAX_TEXT, PATH_RULE, check_files, check_name, check_text};
use super::import::CreateArgs;

/// Most declared columns per file (the schema's bound).
pub const MAX_COLUMNS: usize = 256;
/// Longest supplier, reference, claim or column name (the schema's bound).
pub const MAX_NAME: usize = 253;
/// The column types, as `--file` spells them.
pub const TYPES: &str = "string, integer, decimal, date, datetime or boolean";

/// Parses `PATH[:COLUMN=TYPE,COLUMN=TYPE,...]`: a file on the staging claim
/// and, for a table, its declared columns in order (none for a document).
pub fn parse_file(s: &str) -> Result<ImportFile, String> {
    let (path, schema) = match s.split_once(':') {
        Some((path, schema)) => (path, Some(schema)),
        None => (s, None),
    };
    if !super::export_spec::relative_path_ok(path) {
        return Err(format!(
            "{path:?}: name a file by its path relative to the staging claim's root; {PATH_RULE}"
        ));
    }
    let schema = schema.map(parse_schema).transpose()?.unwrap_or_default();
    Ok(ImportFile {
        path: path.to_string(),
        schema,
    })
}

/// `COLUMN=TYPE,COLUMN=TYPE,...`, in the file's order.
fn parse_schema(s: &str) -> Result<Vec<DeclaredColumn>, String> {
    if s.trim().is_empty() {
        return Err(format!(
            "an empty schema after ':': declare COLUMN=TYPE,... ({TYPES}), \
             or leave out ':' for a document"
        ));
    }
    let mut columns: Vec<DeclaredColumn> = Vec::new();
    for item in s.split(',') {
        let (name, type_) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: a column is NAME=TYPE ({TYPES})"))?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(format!(
                "{item:?}: a column's name is 1 to {MAX_NAME} characters"
            ));
        }
        if columns.iter().any(|c| c.name == name) {
            return Err(format!("column {name:?} is declared twice"));
        }
        columns.push(DeclaredColumn {
            name: name.to_string(),
            type_: parse_type(type_.trim())?,
        });
    }
    if columns.len() > MAX_COLUMNS {
        return Err(format!(
            "{} columns declared; at most {MAX_COLUMNS} per file",
            columns.len()
        ));
    }
    Ok(columns)
}

/// A column type, in any case.
pub fn parse_type(t: &str) -> Result<ColumnType, String> {
    [
        ColumnType::String,
        ColumnType::Integer,
        ColumnType::Decimal,
        ColumnType::Date,
        ColumnType::Datetime,
        ColumnType::Boolean,
    ]
    .into_iter()
    .find(|c| format!("{c:?}").eq_ignore_ascii_case(t))
    .ok_or_else(|| format!("unknown column type {t:?}: {TYPES}"))
}

/// Parses `contract:REFERENCE` or `consent:REFERENCE`.
pub fn parse_legal_basis(s: &str) -> Result<LegalBasis, String> {
    let wrong = || {
        format!(
            "{s:?}: the legal basis is contract:REFERENCE (a data supply contract with the \
             supplier) or consent:REFERENCE (the data subjects' consent record)"
        )
    };
    let (kind, reference) = s.split_once(':').ok_or_else(wrong)?;
    let kind = match kind.trim().to_ascii_lowercase().as_str() {
        "contract" => LegalBasisKind::Contract,
        "consent" => LegalBasisKind::Consent,
        _ => return Err(wrong()),
    };
    let reference = reference.trim();
    if reference.is_empty() || reference.chars().count() > MAX_NAME {
        return Err(format!(
            "{s:?}: the reference is 1 to {MAX_NAME} characters"
        ));
    }
    Ok(LegalBasis {
        kind,
        reference: reference.to_string(),
    })
}

/// A claim's name as the schema wants it (a DNS-1123 label, at most 253).
pub fn parse_claim(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_NAME
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if !ok {
        return Err(format!(
            "{s:?} is not a claim's name: lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        ));
    }
    Ok(s.to_string())
}

/// An import request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRequest {
    pub name: String,
    pub namespace: String,
    pub supplier: String,
    pub legal_basis: LegalBasis,
    pub staging_claim: String,
    pub files: Vec<ImportFile>,
    pub purpose: String,
}

impl ImportRequest {
    pub(super) fn from_args(a: &CreateArgs) -> anyhow::Result<ImportRequest> {
        let r = ImportRequest {
            name: a.name.clone(),
            namespace: workspace_namespace(&a.scenario),
            supplier: a.supplier.trim().to_string(),
            legal_basis: a.legal_basis.clone(),
            staging_claim: a.staging_claim.clone(),
            files: a.files.clone(),
            purpose: a.purpose.clone(),
        };
        r.check()?;
        Ok(r)
    }

    /// The schema's rules, said plainly (exit 2).
    pub fn check(&self) -> anyhow::Result<()> {
        check_name(&self.name)?;
        check_text("--supplier", &self.supplier, MAX_NAME)?;
        let paths: Vec<&str> = self.files.iter().map(|f| f.path.as_str()).collect();
        check_files("import", &paths)?;
        check_text("--purpose", &self.purpose, MAX_TEXT)
    }

    /// The Import to create, in the requester's name.
    pub fn import(&self, requester: &str) -> Import {
        let mut i = Import::new(
            &self.name,
            ImportSpec {
                requester: requester.to_string(),
                supplier: self.supplier.clone(),
                legal_basis: self.legal_basis.clone(),
                staging_claim: self.staging_claim.clone(),
                files: self.files.clone(),
                purpose: self.purpose.clone(),
            },
        );
        i.metadata.namespace = Some(self.namespace.clone());
        i
    }
}
