//! What `cleanroom export create` sends, checked before it is sent: the
//! `--file PATH:KIND[:ROLES]` arguments and the rules of the Export schema,
//! so that a mistake is named here rather than by the API server.

use crate::api::Export;
use crate::api::airlock::{ColumnRoles, ExportFile, ExportSpec, ProductKind};

use super::common::{Exit, workspace_namespace};
use super::export::CreateArgs;

/// Where the outbox is mounted in a workspace.
pub const OUTBOX_DIR: &str = "/work/outbox";
/// Most files in one export (the schema's bound).
pub const MAX_FILES: usize = 32;
/// Longest context or controls text, in characters (the schema's bound).
pub const MAX_TEXT: usize = 4096;
/// Most columns per role (the schema's bound).
const MAX_COLUMNS: usize = 64;

/// Parses `PATH:KIND[:ROLES]`.
pub fn parse_file(s: &str) -> Result<ExportFile, String> {
    let mut parts = s.splitn(3, ':');
    let path = outbox_path(parts.next().unwrap_or_default())?;
    let kind = parts
        .next()
        .ok_or_else(|| format!("{s:?}: missing :KIND (Table, Report, Model, Microdata or Other)"))
        .and_then(parse_kind)?;
    let columns = parts.next().map(parse_roles).transpose()?;
    Ok(ExportFile {
        path,
        kind,
        columns,
    })
}

/// The path relative to the outbox, checked as the schema checks it.
pub fn outbox_path(p: &str) -> Result<String, String> {
    let under = p
        .strip_prefix(OUTBOX_DIR)
        .and_then(|rest| rest.strip_prefix('/'));
    let relative = match under {
        Some(rest) => rest,
        None if p.starts_with('/') => {
            return Err(format!("{p:?} is not under {OUTBOX_DIR}"));
        }
        None => p,
    };
    if !relative_path_ok(relative) {
        return Err(format!(
            "{p:?}: name a file under {OUTBOX_DIR}; {PATH_RULE}"
        ));
    }
    Ok(relative.to_string())
}

/// The schema's rule for a file's path, said plainly.
pub const PATH_RULE: &str = "each part of its path starts with a letter, digit or '_' and \
     holds only letters, digits, '-', '.' and '_' (no '..', no hidden parts)";

/// Whether a relative path passes the schema's rule for a file's path
/// (exports and imports alike): at most 255 characters, and each part starts
/// with a letter, digit or '_' and holds only letters, digits, '-', '.', '_'.
pub fn relative_path_ok(relative: &str) -> bool {
    let part_ok = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    };
    !relative.is_empty() && relative.len() <= 255 && relative.split('/').all(part_ok)
}

fn parse_kind(k: &str) -> Result<ProductKind, String> {
    use ProductKind::*;
    [Table, Report, Model, Microdata, Other]
        .into_iter()
        .find(|kind| format!("{kind:?}").eq_ignore_ascii_case(k))
        .ok_or_else(|| format!("unknown kind {k:?}: Table, Report, Model, Microdata or Other"))
}

/// `keys=a,b;counts=n;...` as column roles.
fn parse_roles(s: &str) -> Result<ColumnRoles, String> {
    let mut roles = ColumnRoles::default();
    for item in s.split(';').filter(|i| !i.trim().is_empty()) {
        let (role, columns) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: a role is ROLE=COLUMN[,COLUMN...]"))?;
        let list = role_list(&mut roles, role.trim())?;
        if !list.is_empty() {
            return Err(format!("role {role:?} is named twice"));
        }
        *list = columns.split(',').map(|c| c.trim().to_string()).collect();
        if list.iter().any(String::is_empty) || list.len() > MAX_COLUMNS {
            return Err(format!(
                "{item:?}: 1 to {MAX_COLUMNS} column names, none empty"
            ));
        }
    }
    Ok(roles)
}

fn role_list<'a>(roles: &'a mut ColumnRoles, role: &str) -> Result<&'a mut Vec<String>, String> {
    Ok(match role {
        "keys" => &mut roles.keys,
        "counts" => &mut roles.counts,
        "magnitudes" => &mut roles.magnitudes,
        "quasi-identifiers" | "quasiIdentifiers" => &mut roles.quasi_identifiers,
        "sensitive" => &mut roles.sensitive,
        other => {
            return Err(format!(
                "unknown role {other:?}: keys, counts, magnitudes, quasi-identifiers or sensitive"
            ));
        }
    })
}

/// An export request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub name: String,
    pub namespace: String,
    pub files: Vec<ExportFile>,
    pub context: String,
    pub controls: String,
}

impl Request {
    pub(super) fn from_args(a: &CreateArgs) -> anyhow::Result<Request> {
        let r = Request {
            name: a.name.clone(),
            namespace: workspace_namespace(&a.scenario),
            files: a.files.clone(),
            context: a.context.clone(),
            controls: a.controls.clone(),
        };
        r.check()?;
        Ok(r)
    }

    /// The schema's rules, said plainly.
    pub fn check(&self) -> anyhow::Result<()> {
        check_name(&self.name)?;
        let paths: Vec<&str> = self.files.iter().map(|f| f.path.as_str()).collect();
        check_files("export", &paths)?;
        check_text("--context", &self.context, MAX_TEXT)?;
        check_text("--controls", &self.controls, MAX_TEXT)
    }

    /// The Export to create, in the requester's name.
    pub fn export(&self, requester: &str) -> Export {
        let mut e = Export::new(
            &self.name,
            ExportSpec {
                requester: requester.to_string(),
                files: self.files.clone(),
                context: self.context.clone(),
                controls: self.controls.clone(),
            },
        );
        e.metadata.namespace = Some(self.namespace.clone());
        e
    }
}

/// 1 to 32 files, each named once (exports and imports alike).
pub fn check_files(noun: &str, paths: &[&str]) -> anyhow::Result<()> {
    let n = paths.len();
    if !(1..=MAX_FILES).contains(&n) {
        return Err(Exit::usage(format!(
            "an {noun} names 1 to {MAX_FILES} files, not {n}: split it into several {noun}s"
        )));
    }
    for (i, p) in paths.iter().enumerate() {
        if paths[..i].contains(p) {
            return Err(Exit::usage(format!("{p} is named twice")));
        }
    }
    Ok(())
}

/// A text the schema wants non-blank and at most `max` characters.
pub fn check_text(flag: &str, text: &str, max: usize) -> anyhow::Result<()> {
    let n = text.chars().count();
    if text.trim().is_empty() {
        return Err(Exit::usage(format!("{flag} must say something")));
    }
    if n > max {
        return Err(Exit::usage(format!(
            "{flag} is {n} characters; at most {max}"
        )));
    }
    Ok(())
}

/// A Kubernetes object name (DNS-1123 subdomain).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        return Ok(());
    }
    Err(Exit::usage(format!(
        "{name:?} is not a valid name: lowercase letters, digits, '-' and '.', \
         starting and ending with a letter or digit, at most 253 characters"
    )))
}
