//! The scan's report: per file a verdict, the checks that fired with counts
//! and positions (row and column indexes, never values), and the short
//! summary for the termination log.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::policy::Policy;
use crate::report::TERMINATION_LOG_LIMIT;

/// Positions listed per check; the rest are counted.
pub const MAX_POSITIONS: usize = 20;

/// A verdict, ordered from best to worst.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    #[default]
    Pass,
    Review,
    Fail,
}

/// Where a check fired: any of a data row (0-based, header excluded), a
/// column (0-based), a line of the file (1-based), or a table cell given
/// by the index of each key's value in that key's sorted distinct values.
#[derive(Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<Vec<usize>>,
    /// The n-th piece of text (1-based) read from a PNG or PDF.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<u64>,
}

impl Position {
    pub fn at(row: u64, column: usize) -> Self {
        Position {
            row: Some(row),
            column: Some(column),
            ..Position::default()
        }
    }

    pub fn line(line: u64) -> Self {
        Position {
            line: Some(line),
            ..Position::default()
        }
    }

    pub fn part(part: u64) -> Self {
        Position {
            part: Some(part),
            ..Position::default()
        }
    }
}

/// One check that fired on a file.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    /// How many cells, rows or lines it fired on.
    pub count: u64,
    /// The first [`MAX_POSITIONS`] of them.
    pub positions: Vec<Position>,
    /// Kinds of what was found (identifier kinds, reasons), never values.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub kinds: BTreeSet<String>,
    /// What it means, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The checks of one file, by name.
#[derive(Debug, Clone, Default)]
pub struct Checks(BTreeMap<&'static str, Check>);

impl Checks {
    /// Record one hit of check `name`.
    pub fn hit(&mut self, name: &'static str, verdict: Verdict, at: Position) {
        let c = self.entry(name, verdict);
        c.count += 1;
        if c.positions.len() < MAX_POSITIONS {
            c.positions.push(at);
        }
    }

    /// Record one hit with a kind (e.g. which identifier).
    pub fn hit_kind(&mut self, name: &'static str, verdict: Verdict, at: Position, kind: &str) {
        self.hit(name, verdict, at);
        let c = self.entry(name, verdict);
        if !c.kinds.contains(kind) {
            c.kinds.insert(kind.to_string());
        }
    }

    /// A check about the whole file, with an explanation.
    pub fn note(&mut self, name: &'static str, verdict: Verdict, detail: impl Into<String>) {
        let c = self.entry(name, verdict);
        c.count += 1;
        c.detail = Some(detail.into());
    }

    fn entry(&mut self, name: &'static str, verdict: Verdict) -> &mut Check {
        let c = self.0.entry(name).or_insert_with(|| Check {
            name,
            verdict,
            ..Check::default()
        });
        c.verdict = c.verdict.max(verdict);
        c
    }

    pub fn get(&self, name: &str) -> Option<&Check> {
        self.0.get(name)
    }

    /// The worst verdict (pass when nothing fired).
    pub fn verdict(&self) -> Verdict {
        self.0.values().map(|c| c.verdict).max().unwrap_or_default()
    }

    pub fn into_vec(self) -> Vec<Check> {
        self.0.into_values().collect()
    }
}

/// k-anonymity and l-diversity figures of a `Microdata` file.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MicrodataStats {
    pub quasi_identifiers: Vec<String>,
    pub sensitive: Vec<String>,
    pub classes: u64,
    pub smallest_class: u64,
    pub classes_below_k: u64,
    pub rows_below_k: u64,
    /// 1 / smallest class: the chance a known person's row is re-identified.
    pub prosecutor_risk: f64,
    pub classes_below_l: u64,
}

/// One scanned file.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FileReport {
    pub name: String,
    pub kind: String,
    pub verdict: Verdict,
    pub size: u64,
    /// What the content is, by its bytes (`csv`, `parquet`, `png`, ...).
    pub detected_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microdata: Option<MicrodataStats>,
    /// What was not checked, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<String>,
}

/// What was learnt from one raw dataset.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RawSummary {
    pub format: String,
    pub rows: u64,
    pub malformed: u64,
    pub personal_columns: Vec<String>,
    pub quasi_identifiers: Vec<String>,
    /// Distinct keyed hashes of personal values held.
    pub personal_values: u64,
    /// Quasi-identifier combinations that occur once in the raw data.
    pub unique_combinations: u64,
}

/// The full report (`--report`).
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    pub verdict: Verdict,
    pub policy_version: &'static str,
    pub policy: Policy,
    pub files: Vec<FileReport>,
    pub raw: Vec<RawSummary>,
}

/// One file in the summary line.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct SummaryFile<'a> {
    pub name: &'a str,
    pub verdict: Verdict,
    pub checks: Vec<&'static str>,
}

/// The summary line (stdout and termination log).
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary<'a> {
    pub verdict: Verdict,
    pub policy_version: &'static str,
    pub files: Vec<SummaryFile<'a>>,
    /// Files left out to stay under 4096 bytes (passing ones first).
    #[serde(skip_serializing_if = "is_zero")]
    pub omitted_files: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl ScanReport {
    /// The summary as one JSON line under the termination log's limit:
    /// files that pass are left out first, then the last ones, then
    /// names are cut.
    pub fn summary_json(&self) -> String {
        let mut files: Vec<SummaryFile> = self
            .files
            .iter()
            .map(|f| SummaryFile {
                name: &f.name,
                verdict: f.verdict,
                checks: f.checks.iter().map(|c| c.name).collect(),
            })
            .collect();
        let total = files.len();
        let encode = |files: Vec<SummaryFile>| {
            let omitted_files = total - files.len();
            let s = Summary {
                verdict: self.verdict,
                policy_version: self.policy_version,
                files,
                omitted_files,
            };
            serde_json::to_string(&s).unwrap_or_default()
        };
        let json = encode(files.clone());
        if json.len() < TERMINATION_LOG_LIMIT {
            return json;
        }
        // Worst first, so that what is cut is what matters least.
        files.sort_by_key(|f| std::cmp::Reverse(f.verdict));
        files.retain(|f| f.verdict != Verdict::Pass);
        for f in &mut files {
            f.name = cut(f.name, 200);
        }
        while !files.is_empty() {
            let json = encode(files.clone());
            if json.len() < TERMINATION_LOG_LIMIT {
                return json;
            }
            files.pop();
        }
        encode(files)
    }
}

fn cut(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: String, verdict: Verdict) -> FileReport {
        let mut checks = Checks::default();
        if verdict != Verdict::Pass {
            checks.hit("threshold", verdict, Position::at(1, 2));
        }
        FileReport {
            name,
            verdict,
            checks: checks.into_vec(),
            ..FileReport::default()
        }
    }

    #[test]
    fn checks_keep_the_worst_verdict_and_cap_positions() {
        let mut c = Checks::default();
        for r in 0..50 {
            c.hit("identifier", Verdict::Review, Position::at(r, 0));
        }
        c.hit_kind("identifier", Verdict::Fail, Position::at(99, 1), "mobile");
        let check = c.get("identifier").expect("fired");
        assert_eq!(check.count, 51);
        assert_eq!(check.positions.len(), MAX_POSITIONS);
        assert_eq!(check.verdict, Verdict::Fail);
        assert_eq!(c.verdict(), Verdict::Fail);
        assert_eq!(Checks::default().verdict(), Verdict::Pass);
    }

    #[test]
    fn the_summary_fits_and_keeps_the_worst_files() {
        let mut files: Vec<FileReport> = (0..400)
            .map(|i| file(format!("目录/文件-{i:04}.csv"), Verdict::Pass))
            .collect();
        files.push(file("bad.csv".into(), Verdict::Fail));
        files.push(file("x".repeat(5000), Verdict::Review));
        let report = ScanReport {
            verdict: Verdict::Fail,
            policy_version: super::super::policy::POLICY_VERSION,
            policy: Policy::default(),
            files,
            raw: Vec::new(),
        };
        let json = report.summary_json();
        assert!(json.len() < TERMINATION_LOG_LIMIT, "{}", json.len());
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["verdict"], "fail");
        assert_eq!(v["files"][0]["name"], "bad.csv");
        assert_eq!(v["files"][0]["checks"][0], "threshold");
        assert_eq!(v["omittedFiles"], 400);
    }

    #[test]
    fn a_short_summary_lists_every_file() {
        let report = ScanReport {
            verdict: Verdict::Pass,
            policy_version: "v",
            policy: Policy::default(),
            files: vec![file("a.csv".into(), Verdict::Pass)],
            raw: Vec::new(),
        };
        assert_eq!(
            report.summary_json(),
            r#"{"verdict":"pass","policyVersion":"v","files":[{"name":"a.csv","verdict":"pass","checks":[]}]}"#
        );
    }
}
