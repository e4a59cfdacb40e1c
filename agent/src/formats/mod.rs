//! Readers and writers per format; the same format is written as read.

pub mod csv;
pub mod jsonl;
pub mod parquet;
pub mod split;

use std::fs::File;

use crate::desensitize::{Engine, Format, Options, Out, Sink, Stopped, stop};
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

/// One format's reader: what differs between formats. Everything else
/// (opening the input, the engine, carrying the report into every error)
/// is [`run`]'s.
pub trait Reader: Sized {
    /// Read the header or schema from `input`, check the plan's columns
    /// against it (setting `report.dropped_columns`), and give the reader
    /// back with the sink that writes the output into `out`.
    fn open(
        opts: &Options,
        input: File,
        out: Out,
        report: &mut Report,
    ) -> Result<(Self, Box<dyn Sink>), String>;

    /// Feed every row to the engine.
    fn rows(self, opts: &Options, engine: &mut Engine) -> Result<(), String>;
}

/// Run one format's reader through the engine into its sink.
fn run<R: Reader>(
    opts: &Options,
    out: Out,
    hmac: Option<Hmac>,
    mut report: Report,
) -> Result<(Out, Report), Stopped> {
    let input = match File::open(&opts.input) {
        Ok(f) => f,
        Err(e) => return Err(stop(format!("cannot open the input: {e}"), report)),
    };
    let (reader, sink) = match R::open(opts, input, out, &mut report) {
        Ok(r) => r,
        Err(e) => return Err(stop(e, report)),
    };
    let mut engine = Engine::new(&opts.plan, hmac, sink, report);
    if let Err(e) = reader.rows(opts, &mut engine) {
        return Err(stop(e, engine.report));
    }
    engine.finish()
}

/// The message of a failed write.
pub fn write_error(e: impl std::fmt::Display) -> String {
    format!("cannot write the output: {e}")
}

/// The message of a failed read.
pub fn read_error(e: impl std::fmt::Display) -> String {
    format!("cannot read the input: {e}")
}

/// Run the format's reader and writer.
pub fn process(
    opts: &Options,
    out: Out,
    hmac: Option<Hmac>,
    report: Report,
) -> Result<(Out, Report), Stopped> {
    match opts.format {
        Format::Csv => run::<csv::CsvReader>(opts, out, hmac, report),
        Format::Jsonl => run::<jsonl::JsonlReader>(opts, out, hmac, report),
        Format::Parquet => run::<parquet::ParquetReader>(opts, out, hmac, report),
    }
}

/// `bytes` without a leading UTF-8 byte order mark (spreadsheets write one).
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}
