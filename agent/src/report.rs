//! The JSON report of `agent desensitize`: counts and digests, never values.

use serde::Serialize;

use crate::plan::Sampling;

/// Malformed rows listed by line (Parquet: row) number; the rest are counted.
pub const MAX_MALFORMED_LISTED: usize = 5;

/// Kubernetes keeps at most 4096 bytes of a termination log.
pub const TERMINATION_LOG_LIMIT: usize = 4096;

/// The outcome of one run, printed on stdout and written to the termination log.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// True when the output was written (renamed into place).
    pub ok: bool,
    /// `csv`, `jsonl` or `parquet`.
    pub format: String,
    /// Data rows read (headers and blank lines excluded).
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Rows that could not be processed; any fails the run.
    pub malformed: u64,
    /// The first few of them.
    pub malformed_lines: Vec<MalformedRow>,
    /// Delivered columns in output order.
    pub columns: Vec<ColumnReport>,
    /// Columns removed by `drop` or because the plan does not list them.
    pub dropped_columns: usize,
    /// The sampling applied.
    pub sampling: Option<Sampling>,
    /// SHA-256 of the output file (when written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_sha256: Option<String>,
    /// Size of the output file.
    pub bytes_out: u64,
    /// Why the run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One malformed row.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct MalformedRow {
    /// 1-based line of the input (CSV: where the record starts; Parquet: row number).
    pub line: u64,
    /// What is wrong, without the value.
    pub reason: String,
}

/// One delivered column.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ColumnReport {
    pub name: String,
    /// The rule applied, e.g. `mask(3,4)`.
    pub rule: String,
    /// Personal sensitivity: any leak fails the run.
    pub personal: bool,
    /// Output values that still look like an identifier (or, for personal
    /// columns, were delivered unchanged).
    pub leaks: u64,
}

impl Report {
    /// Names of personal columns with leaks.
    pub fn leaking_personal_columns(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| c.personal && c.leaks > 0)
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The report as JSON for the termination log: shortened (column list,
    /// then error text) until it fits in [`TERMINATION_LOG_LIMIT`].
    pub fn to_json_limited(&self) -> String {
        let full = serde_json::to_string(self).unwrap_or_default();
        if full.len() < TERMINATION_LOG_LIMIT {
            return full;
        }
        let mut short = self.clone();
        short.columns.retain(|c| c.leaks > 0);
        short.columns.truncate(8);
        if let Some(e) = &mut short.error {
            let mut cut = e.len().min(1024);
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            e.truncate(cut);
        }
        serde_json::to_string(&short).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reports_fit_the_termination_log() {
        let r = Report {
            columns: (0..500)
                .map(|i| ColumnReport {
                    name: format!("第{i}列"),
                    rule: "hash".into(),
                    personal: true,
                    leaks: u64::from(i == 3),
                })
                .collect(),
            error: Some("错".repeat(3000)),
            ..Report::default()
        };
        let json = r.to_json_limited();
        assert!(json.len() < TERMINATION_LOG_LIMIT, "{}", json.len());
        assert!(json.contains("第3列"));
        assert_eq!(r.leaking_personal_columns(), vec!["第3列"]);
    }
}
