//! `agent scan`: automatic disclosure checks on a sealed export.
//!
//! Reads `<dir>/manifest.json`, checks every file at `<dir>/files/<name>`
//! (and any file there the manifest does not list) and gives each a
//! verdict, `pass`, `review` or `fail`, with the checks that fired and
//! where (row and column indexes or line numbers, never values). The
//! overall verdict is the worst file's. See agent/README.md.

pub mod filetype;
pub mod findings;
pub mod identifiers;
pub mod manifest;
pub mod media;
pub mod microdata;
pub mod policy;
pub mod raw;
pub mod records;
pub mod report;
pub mod schema;
pub mod tables;
pub mod text;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::parallel;

use sha2::{Digest, Sha256};

use filetype::FileType;
use findings::{Findings, Found, RowChecks};
use manifest::{Entry, Kind, Manifest};
use microdata::Classes;
use policy::{POLICY_VERSION, Policy};
use raw::{Matcher, RawIndex, RawSpec};
use records::{Prepare, Visitor};
use report::{Checks, FileReport, Position, ScanReport, Verdict};

/// What to scan.
#[derive(Debug, Clone)]
pub struct Options {
    pub manifest: PathBuf,
    pub policy: Policy,
    pub raw: Vec<RawSpec>,
}

/// Run the scan; `Err` only when it cannot run at all.
pub fn run(opts: &Options) -> Result<ScanReport, String> {
    let raw = if opts.raw.is_empty() {
        None
    } else {
        let mut index = RawIndex::new(&raw::random_key()?);
        for spec in &opts.raw {
            index.add(spec)?;
        }
        Some(index)
    };
    run_with(&opts.manifest, &opts.policy, raw)
}

/// Run the scan against raw data already indexed.
pub fn run_with(
    manifest: &Path,
    policy: &Policy,
    raw: Option<RawIndex>,
) -> Result<ScanReport, String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("cannot read the manifest {}: {e}", manifest.display()))?;
    let m = Manifest::from_json(&text)?;
    let files_dir = manifest.parent().unwrap_or(Path::new(".")).join("files");
    let files = scan_all(&m, &files_dir, policy, raw.as_ref());
    Ok(ScanReport {
        verdict: files.iter().map(|f| f.verdict).max().unwrap_or_default(),
        policy_version: POLICY_VERSION,
        policy: policy.clone(),
        files,
        raw: raw.map(|r| r.summaries).unwrap_or_default(),
    })
}

fn scan_all(m: &Manifest, files_dir: &Path, p: &Policy, raw: Option<&RawIndex>) -> Vec<FileReport> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for entry in &m.files {
        let mut f = scan_file(entry, files_dir, p, raw);
        if !seen.insert(entry.name.as_str()) {
            let mut checks = Checks::default();
            checks.note("manifest", Verdict::Fail, "the name is listed twice");
            f.checks.extend(checks.into_vec());
            f.verdict = Verdict::Fail;
        }
        out.push(f);
    }
    for name in manifest::listed_on_disk(files_dir) {
        if !seen.contains(name.as_str()) {
            let mut checks = Checks::default();
            checks.note(
                "manifest",
                Verdict::Fail,
                "the file is sealed but not listed in the manifest",
            );
            out.push(finish(
                FileReport {
                    name,
                    kind: "Unlisted".into(),
                    ..FileReport::default()
                },
                checks,
            ));
        }
    }
    out
}

fn finish(mut f: FileReport, checks: Checks) -> FileReport {
    f.verdict = checks.verdict();
    f.checks = checks.into_vec();
    f
}

/// Check one listed file.
pub fn scan_file(
    entry: &Entry,
    files_dir: &Path,
    p: &Policy,
    raw: Option<&RawIndex>,
) -> FileReport {
    let mut f = FileReport {
        name: entry.name.clone(),
        kind: format!("{:?}", entry.kind),
        ..FileReport::default()
    };
    let mut checks = Checks::default();
    if let Err(e) = open_checks(entry, files_dir, p, &mut f, &mut checks) {
        checks.note(e.0, Verdict::Fail, e.1);
        return finish(f, checks);
    }
    let path = files_dir.join(&entry.name);
    let t = match filetype::detect(&path) {
        Ok(t) => t,
        Err(e) => {
            checks.note(
                "malformed",
                Verdict::Fail,
                format!("cannot read: {}", e.kind()),
            );
            return finish(f, checks);
        }
    };
    f.detected_type = t.name().to_string();
    content_checks(entry, &path, t, p, raw, &mut f, &mut checks);
    finish(f, checks)
}

/// Name, size, digest and size limit; `Err((check, detail))` stops the file.
fn open_checks(
    entry: &Entry,
    files_dir: &Path,
    p: &Policy,
    f: &mut FileReport,
    checks: &mut Checks,
) -> Result<(), (&'static str, String)> {
    let path = manifest::locate(files_dir, &entry.name).map_err(|e| ("manifest", e))?;
    let size = std::fs::metadata(&path)
        .map(|m| m.len())
        .map_err(|e| ("manifest", e.kind().to_string()))?;
    f.size = size;
    if size > p.max_file_bytes {
        return Err((
            "max-file-bytes",
            format!("{size} bytes, more than {}", p.max_file_bytes),
        ));
    }
    if size != entry.size {
        checks.note(
            "manifest",
            Verdict::Fail,
            format!("the size is {size}, the manifest says {}", entry.size),
        );
    }
    let digest = sha256(&path).map_err(|e| ("malformed", format!("cannot read: {}", e.kind())))?;
    if !digest.eq_ignore_ascii_case(&entry.sha256) {
        checks.note(
            "sha256",
            Verdict::Fail,
            "the content differs from the sealed SHA-256",
        );
    }
    Ok(())
}

fn sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(sha.finalize()));
        }
        sha.update(&buf[..n]);
    }
}

fn content_checks(
    entry: &Entry,
    path: &Path,
    t: FileType,
    p: &Policy,
    raw: Option<&RawIndex>,
    f: &mut FileReport,
    checks: &mut Checks,
) {
    if entry.kind == Kind::Model {
        return model(path, t, raw, f, checks);
    }
    if !t.allowed() {
        let what = format!(
            "{} content is not on the allow-list (CSV, JSON Lines, Parquet, text, Markdown, JSON, PNG, PDF)",
            t.name()
        );
        return checks.note("file-type", Verdict::Fail, what);
    }
    if matches!(entry.kind, Kind::Table | Kind::Microdata) && !t.tabular() {
        let what = format!(
            "a {:?} must be CSV, JSON Lines or Parquet; the content is {}",
            entry.kind,
            t.name()
        );
        return checks.note("file-type", Verdict::Fail, what);
    }
    if let Some(why) = schema_applies(entry, t) {
        return checks.note("schema", Verdict::Fail, why);
    }
    match t {
        FileType::Csv | FileType::Jsonl | FileType::Parquet => {
            tabular(entry, path, t, p, raw, f, checks)
        }
        FileType::Text | FileType::Json => text_file(path, raw, f, checks),
        _ => media_file(path, t, raw, f, checks),
    }
}

/// Why a declared schema cannot hold for this file: an import's tabular
/// file must declare its columns, and a document cannot have any.
fn schema_applies(entry: &Entry, t: FileType) -> Option<String> {
    let declared = entry.schema.as_ref()?;
    match (t.tabular(), declared.is_empty()) {
        (true, true) => Some(format!("a {} file must declare its columns", t.name())),
        (false, false) => Some(format!(
            "columns are declared but the content is {}",
            t.name()
        )),
        _ => None,
    }
}

/// PNG and PDF: their readable text is checked; what is drawn is not,
/// so the file is reviewed (or fails on what the text holds).
fn media_file(
    path: &Path,
    t: FileType,
    raw: Option<&RawIndex>,
    f: &mut FileReport,
    checks: &mut Checks,
) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            let what = format!("cannot read: {}", e.kind());
            return checks.note("malformed", Verdict::Fail, what);
        }
    };
    let found = if t == FileType::Png {
        media::png_texts(&bytes)
    } else {
        Ok(media::pdf_texts(&bytes))
    };
    let found = match found {
        Ok(e) => e,
        Err(e) => return checks.note("malformed", Verdict::Fail, e),
    };
    let matcher = raw.map(|r| Matcher::new(r, &[]));
    for (i, text) in found.texts.iter().enumerate() {
        text::check_text(checks, Position::part(i as u64 + 1), text, matcher.as_ref());
    }
    f.rows = Some(found.texts.len() as u64);
    if let Some(reason) = &found.over_limit {
        checks.note("inflate-limit", Verdict::Fail, reason.clone());
    }
    checks.note(
        "unchecked-content",
        Verdict::Review,
        format!(
            "content not machine-checked: {} text piece(s) read and checked; not read: {}",
            found.texts.len(),
            found.unread.join("; ")
        ),
    );
    f.not_checked.extend(
        found
            .unread
            .into_iter()
            .map(|u| format!("{}: {u}", t.name())),
    );
}

fn text_file(path: &Path, raw: Option<&RawIndex>, f: &mut FileReport, checks: &mut Checks) {
    let matcher = raw.map(|r| Matcher::new(r, &[]));
    match text::scan(path, checks, matcher.as_ref()) {
        Ok(lines) => f.rows = Some(lines),
        Err(e) => checks.note("malformed", Verdict::Fail, e),
    }
}

/// Models are always reviewed by a person.
fn model(
    path: &Path,
    t: FileType,
    raw: Option<&RawIndex>,
    f: &mut FileReport,
    checks: &mut Checks,
) {
    if let FileType::Executable(what) = t {
        return checks.note(
            "file-type",
            Verdict::Fail,
            format!("{what} executables never leave"),
        );
    }
    checks.note(
        "model",
        Verdict::Review,
        format!(
            "a model ({}, {} bytes) is always reviewed by a person",
            t.name(),
            f.size
        ),
    );
    f.not_checked.push(
        "model: whether training records can be recovered from it (memorisation, membership inference) is not checked".into(),
    );
    if matches!(t, FileType::Text | FileType::Json) {
        text_file(path, raw, f, checks);
    }
}

fn tabular(
    entry: &Entry,
    path: &Path,
    t: FileType,
    p: &Policy,
    raw: Option<&RawIndex>,
    f: &mut FileReport,
    checks: &mut Checks,
) {
    let mut scan = FileScan::new(entry, p, raw, checks);
    if let Err(e) = read_parallel(path, t, &mut scan) {
        scan.checks.note("malformed", Verdict::Fail, e);
        return;
    }
    f.rows = Some(scan.rows);
    scan.finish(f);
}

/// The value checks on every core, the rest in file order.
fn read_parallel(path: &Path, t: FileType, scan: &mut FileScan) -> Result<(), String> {
    let head = records::header(path, t)?;
    scan.header(&head.names);
    let (matcher, types) = (scan.matcher.take(), scan.types.take());
    let checks = RowChecks {
        matcher: matcher.as_ref(),
        keep: scan.keeps_cells(),
        types: types.as_deref(),
    };
    records::read_parallel(
        path,
        t,
        &head,
        parallel::threads(),
        &checks,
        &mut |item| match item {
            records::Item::Row(_, found) => scan.apply(found),
            records::Item::Malformed(line, reason) => scan.malformed(line, reason),
        },
    )
}

/// Everything done with each row of a tabular file.
struct FileScan<'a> {
    entry: &'a Entry,
    policy: &'a Policy,
    raw: Option<&'a RawIndex>,
    checks: &'a mut Checks,
    matcher: Option<Matcher<'a>>,
    /// The declared types, once the header is the declared one.
    types: Option<Vec<schema::Type>>,
    header: Vec<String>,
    rows: u64,
    /// Rows of a `Table`, while within the row limit.
    table: Option<Vec<(u64, Vec<Option<String>>)>>,
    classes: Option<Classes>,
    /// Quasi-identifier and sensitive column names, for the figures.
    stats_names: (Vec<String>, Vec<String>),
    not_checked: Vec<String>,
}

impl<'a> FileScan<'a> {
    fn new(
        entry: &'a Entry,
        policy: &'a Policy,
        raw: Option<&'a RawIndex>,
        checks: &'a mut Checks,
    ) -> Self {
        FileScan {
            entry,
            policy,
            raw,
            checks,
            matcher: None,
            types: None,
            header: Vec::new(),
            rows: 0,
            table: (entry.kind == Kind::Table).then(Vec::new),
            classes: None,
            stats_names: Default::default(),
            not_checked: Vec::new(),
        }
    }

    /// Quasi-identifier and sensitive columns of a `Microdata` file.
    fn microdata_columns(&mut self) {
        let cols = self.entry.columns.clone().unwrap_or_default();
        let by_name = |names: &[String]| -> Result<Vec<usize>, String> {
            names
                .iter()
                .map(|n| {
                    self.header
                        .iter()
                        .position(|h| h == n)
                        .ok_or_else(|| format!("declared column {n:?} is not in the file"))
                })
                .collect()
        };
        let qi_names: Vec<String> = match cols.quasi_identifiers.filter(|q| !q.is_empty()) {
            Some(q) => q,
            None => self
                .raw
                .map(|r| {
                    r.quasi_names
                        .iter()
                        .filter(|n| self.header.contains(n))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
        };
        let sensitive = cols.sensitive.unwrap_or_default();
        match (by_name(&qi_names), by_name(&sensitive)) {
            (Err(e), _) | (_, Err(e)) => self.checks.note("columns", Verdict::Fail, e),
            (Ok(qi), _) if qi.is_empty() => {
                self.checks.note(
                    "k-anonymity",
                    Verdict::Review,
                    "no quasi-identifier column declared or known from the raw plans",
                );
            }
            (Ok(qi), Ok(s)) => {
                if s.is_empty() {
                    self.not_checked
                        .push("l-diversity: no sensitive column declared".into());
                }
                self.classes = Some(Classes::new(qi, s, self.policy));
            }
        }
        self.stats_names = (qi_names, sensitive);
    }

    /// Whether rows are kept or counted (tables, microdata).
    fn keeps_cells(&self) -> bool {
        self.table.is_some() || self.classes.is_some()
    }

    /// Record one row's findings, in file order.
    fn apply(&mut self, found: Findings) {
        let row = self.rows;
        self.rows += 1;
        let cells = found.cells;
        if let Some(found) = found.found {
            self.found(row, *found);
        }
        let Some(cells) = cells else { return };
        if let Some(c) = &mut self.classes {
            let refs: Vec<Option<&str>> = cells.iter().map(|c| c.as_deref()).collect();
            c.row(row, &refs);
        }
        if let Some(t) = &mut self.table
            && self.rows <= self.policy.max_table_rows
        {
            t.push((row, cells));
        }
    }

    /// Record what the checks found in row `row`.
    fn found(&mut self, row: u64, found: Found) {
        for (c, h) in found.hits {
            identifiers::record(self.checks, Position::at(row, c), h);
        }
        for c in found.misfits {
            self.checks
                .hit("schema-type", Verdict::Fail, Position::at(row, c));
        }
        if found.unique_combination {
            let at = Position {
                row: Some(row),
                ..Position::default()
            };
            self.checks.hit("raw-qi-combination", Verdict::Review, at);
        }
    }

    fn finish(self, f: &mut FileReport) {
        f.not_checked.extend(self.not_checked);
        if let Some(rows) = self.table {
            if self.rows > self.policy.max_table_rows {
                let what = format!(
                    "{} rows, more than {}",
                    self.rows, self.policy.max_table_rows
                );
                self.checks.note("max-table-rows", Verdict::Fail, what);
                return;
            }
            let plain: Vec<Vec<Option<String>>> = rows.iter().map(|r| r.1.clone()).collect();
            match tables::spec(&self.header, &plain, self.entry.columns.as_ref()) {
                Ok(spec) => tables::check(self.checks, &spec, &rows, self.policy),
                Err(e) => self.checks.note("columns", Verdict::Fail, e),
            }
        }
        if let Some(classes) = self.classes {
            let mut stats = classes.finish(self.checks, self.policy);
            (stats.quasi_identifiers, stats.sensitive) = self.stats_names;
            f.microdata = Some(stats);
        }
    }
}

impl Visitor for FileScan<'_> {
    fn header(&mut self, names: &[String]) {
        self.header = names.to_vec();
        self.matcher = self.raw.map(|r| Matcher::new(r, names));
        if let Some(declared) = &self.entry.schema {
            match schema::header_mismatch(declared, names) {
                Some(why) => self.checks.note("schema", Verdict::Fail, why),
                None => self.types = Some(declared.iter().map(|d| d.type_).collect()),
            }
        }
        if self.entry.kind == Kind::Microdata {
            self.microdata_columns();
        }
    }

    fn row(&mut self, _row: u64, _line: u64, cells: &[Option<&str>]) {
        let checks = RowChecks {
            matcher: self.matcher.as_ref(),
            keep: self.keeps_cells(),
            types: self.types.as_deref(),
        };
        let found = checks.row(cells, None);
        self.apply(found);
    }

    fn malformed(&mut self, line: u64, reason: String) {
        self.checks
            .hit_kind("malformed", Verdict::Fail, Position::line(line), &reason);
    }
}
