//! Readers and writers per format; the same format is written as read.

pub mod csv;
pub mod jsonl;
pub mod parquet;

use crate::desensitize::{Format, Options, Out, Stopped};
use crate::plan::Plan;
use crate::report::Report;
use crate::rules::Hmac;

/// Parquet files start (and end) with these four bytes.
pub const PARQUET_MAGIC: &[u8] = b"PAR1";

/// Refuse a file whose first bytes show another format than the declared one.
pub fn check_magic(format: Format, head: &[u8]) -> Result<(), String> {
    let what = if head.starts_with(PARQUET_MAGIC) {
        Some("a Parquet file (magic PAR1)")
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some("gzip-compressed")
    } else if head.starts_with(b"PK\x03\x04") {
        Some("a zip archive")
    } else {
        None
    };
    match (format, what) {
        (Format::Parquet, _) if head.starts_with(PARQUET_MAGIC) => Ok(()),
        (Format::Parquet, _) => Err(format!(
            "the input is not a Parquet file (it does not start with PAR1{})",
            what.map_or(String::new(), |w| format!("; it is {w}"))
        )),
        (_, Some(w)) => Err(format!(
            "the input is {w}, not {}",
            match format {
                Format::Csv => "CSV",
                _ => "JSON Lines",
            }
        )),
        (_, None) => Ok(()),
    }
}

/// Find every plan column among the input's columns; a missing one is an
/// error naming it and listing what the input has.
pub fn locate(plan: &Plan, available: &[String]) -> Result<Vec<usize>, String> {
    let mut found = Vec::new();
    for c in &plan.columns {
        let mut hits = available.iter().enumerate().filter(|(_, a)| **a == c.name);
        match (hits.next(), hits.next()) {
            (Some((i, _)), None) => found.push(i),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "column {:?} appears more than once in the input",
                    c.name
                ));
            }
            (None, _) => {
                return Err(format!(
                    "column {:?} of the plan is not in the input; the input has: {}",
                    c.name,
                    available
                        .iter()
                        .map(|a| format!("{a:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    Ok(found)
}

/// Indices (into the input's columns) of the delivered columns, in plan order.
pub fn output_indices(plan: &Plan, located: &[usize]) -> Vec<usize> {
    plan.columns
        .iter()
        .zip(located)
        .filter(|(c, _)| c.rule != crate::plan::Rule::Drop)
        .map(|(_, i)| *i)
        .collect()
}

/// Run the format's reader and writer.
pub fn process(
    opts: &Options,
    out: Out,
    hmac: Option<Hmac>,
    report: Report,
) -> Result<(Out, Report), Stopped> {
    match opts.format {
        Format::Csv => csv::process(opts, out, hmac, report),
        Format::Jsonl => jsonl::process(opts, out, hmac, report),
        Format::Parquet => parquet::process(opts, out, hmac, report),
    }
}
