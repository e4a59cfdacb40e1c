//! The sealed export the operator hands over: `<dir>/manifest.json` and
//! the files at `<dir>/files/<name>`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What a file is meant to be; decides which checks run.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Table,
    Report,
    Model,
    Microdata,
    Other,
}

/// Declared roles of columns; a list left out is inferred.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Columns {
    pub keys: Option<Vec<String>>,
    pub counts: Option<Vec<String>>,
    pub magnitudes: Option<Vec<String>>,
    pub quasi_identifiers: Option<Vec<String>>,
    pub sensitive: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    pub sha256: String,
    #[serde(default)]
    pub columns: Option<Columns>,
    /// An import's declared columns: when present, the file must be
    /// tabular with exactly these columns and value types.
    #[serde(default)]
    pub schema: Option<Vec<super::schema::Declared>>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Manifest {
    pub version: u32,
    pub files: Vec<Entry>,
}

impl Manifest {
    pub fn from_json(text: &str) -> Result<Manifest, String> {
        let m: Manifest =
            serde_json::from_str(text).map_err(|e| format!("the manifest is not valid: {e}"))?;
        if m.version != 1 {
            return Err(format!(
                "manifest version {} is not supported (1 is)",
                m.version
            ));
        }
        Ok(m)
    }
}

/// A plain relative name: parts separated by `/`, none empty, `.` or
/// `..`; not absolute.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('\0') {
        return Err("the name is empty or holds a NUL byte".into());
    }
    if name.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return Err("the name must be relative, without empty, `.` or `..` parts".into());
    }
    Ok(())
}

/// `<dir>/files/<name>` when it is a regular file inside `files/` (no
/// symbolic link on the way: a link could point at raw data).
pub fn locate(files_dir: &Path, name: &str) -> Result<PathBuf, String> {
    check_name(name)?;
    let mut path = files_dir.to_path_buf();
    for part in Path::new(name).components() {
        path.push(part);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("the file cannot be read: {}", e.kind()))?;
        if meta.file_type().is_symlink() {
            return Err("a symbolic link is not accepted".into());
        }
    }
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return Err("not a regular file".into());
    }
    Ok(path)
}

/// Every regular file (and link) under `files/`, as names relative to it.
pub fn listed_on_disk(files_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![files_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) => {
                    if let Ok(rel) = p.strip_prefix(files_dir) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                }
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_operator_contract() {
        let m = Manifest::from_json(
            r#"{"version":1,"files":[{"name":"by-district.csv","kind":"Table","size":1234,"sha256":"ab",
            "columns":{"keys":["district"],"counts":["n"],"magnitudes":["income"],"quasiIdentifiers":[],"sensitive":[]}},
            {"name":"notes/readme.md","kind":"Report","size":1,"sha256":"cd"}]}"#,
        )
        .expect("valid");
        assert_eq!(m.files.len(), 2);
        let c = m.files[0].columns.clone().expect("columns");
        assert_eq!(c.keys, Some(vec!["district".to_string()]));
        assert_eq!(c.quasi_identifiers, Some(vec![]));
        assert_eq!(m.files[1].kind, Kind::Report);
        assert_eq!(m.files[1].columns, None);
        assert!(Manifest::from_json(r#"{"version":2,"files":[]}"#).is_err());
        assert!(
            Manifest::from_json(
                r#"{"version":1,"files":[{"name":"a","kind":"Virus","size":1,"sha256":""}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn names_must_stay_inside() {
        for ok in ["a.csv", "sub/dir/a.csv", "表.csv"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../a",
            "a/../../b",
            "/etc/passwd",
            "./a",
            "a/./b",
            "a//b",
            "a/",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_are_refused() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        std::fs::write(dir.path().join("real.csv"), "a\n").expect("write");
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link.csv")).expect("link");
        assert!(locate(dir.path(), "real.csv").is_ok());
        let e = locate(dir.path(), "link.csv").expect_err("refused");
        assert!(e.contains("symbolic link"), "{e}");
        assert!(locate(dir.path(), "missing.csv").is_err());
        assert_eq!(listed_on_disk(dir.path()), vec!["link.csv", "real.csv"]);
    }
}
