//! `agent desensitize`: stream a raw file through a plan into a prepared file.
//!
//! Order of work: check the plan (refusing `keep` on personal columns) and
//! the key before opening the input; check the input's format and columns;
//! then stream row by row (CSV, JSON Lines) or batch by batch (Parquet):
//! each planned column's rule is applied, every value that would be written
//! is scanned for identifiers, sampling decides which rows are written.
//! The output goes to `.<name>.partial-<pid>` beside the target and is
//! renamed only when the run succeeded: no malformed row and no leak in a
//! personal column. Otherwise the partial file is removed.
//!
//! Chunks of the input run on every core (`parallel.rs`; Parquet by row
//! group); memory is flat in the input size except for the reservoir
//! (`sampling.rows` rows), which runs on one thread.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use sha2::{Digest, Sha256};

use crate::formats;
use crate::plan::{Plan, PlanColumn, Rule};
use crate::recognize;
use crate::report::{ColumnReport, MAX_MALFORMED_LISTED, MalformedRow, Report};
use crate::rules::{Applier, Cell, Hmac, Input};
use crate::sample::{Decision, Reservoir, Sampler};

/// Input and output format (the same for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

/// What to run.
#[derive(Clone)]
pub struct Options {
    pub input: PathBuf,
    pub output: PathBuf,
    pub format: Format,
    pub plan: Plan,
    /// The per-scenario HMAC key (never logged).
    pub key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Options {
    // The key is never printed, not even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("input", &self.input)
            .field("output", &self.output)
            .field("format", &self.format)
            .field("plan", &self.plan)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A run that failed; `report` is filled as far as the run got.
#[derive(Debug)]
pub struct Failure {
    pub report: Box<Report>,
}

/// A processing error and the report so far (boxed: it is large).
pub type Stopped = Box<(String, Report)>;

pub fn stop(error: String, report: Report) -> Stopped {
    Box::new((error, report))
}

/// Shortest accepted key: 128 bits.
pub const MIN_KEY_BYTES: usize = 16;

/// Read the key file: its bytes with trailing line breaks removed (a
/// Secret written with `echo` ends with one).
pub fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    let mut key =
        fs::read(path).map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        key.pop();
    }
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "the key file holds {} bytes; at least {MIN_KEY_BYTES} are needed",
            key.len()
        ));
    }
    Ok(key)
}

/// A writer that counts and hashes what goes through it.
pub struct HashingWriter<W> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            sha: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the byte count and the hex SHA-256.
    pub fn into_parts(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.sha.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The output file as the sinks see it.
pub type Out = HashingWriter<File>;

/// Where processed rows go (one implementation per format).
pub trait Sink {
    fn write_row(&mut self, cells: &[Cell]) -> Result<(), String>;
    /// Bytes already encoded in this format (a chunk written by a worker).
    fn write_encoded(&mut self, _bytes: &[u8]) -> Result<(), String> {
        Err("this format takes rows, not encoded bytes".into())
    }
    /// The bytes of the row just written, when the sink still holds
    /// them (a chunk sink): the leak scan checks them whole first.
    fn last_row(&self) -> Option<&[u8]> {
        None
    }
    /// The encoded bytes a chunk sink holds (empty for file sinks).
    fn take_encoded(&mut self) -> Vec<u8> {
        Vec::new()
    }
    /// Record batches already built (a Parquet row group done by a worker).
    fn write_batches(&mut self, _batches: Vec<RecordBatch>) -> Result<(), String> {
        Err("this format takes rows, not record batches".into())
    }
    /// The record batches a Parquet chunk sink holds.
    fn take_batches(&mut self) -> Result<Vec<RecordBatch>, String> {
        Ok(Vec::new())
    }
    /// Flush everything and give the output file back.
    fn finish(self: Box<Self>) -> Result<Out, String>;
}

/// Why one value of a row cannot be read (the value is never included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellError {
    NotUtf8,
}

/// Applies the plan to rows and counts what happens.
pub struct Engine {
    appliers: Vec<Applier>,
    personal: Vec<bool>,
    names: Vec<String>,
    cells: Vec<Cell>,
    inputs_unchanged: Vec<bool>,
    sampler: Sampler,
    leaks: Vec<bool>,
    /// Columns whose output values are scanned for identifiers.
    scanned: Vec<bool>,
    reservoir: Reservoir<(Vec<Cell>, Vec<bool>)>,
    sink: Box<dyn Sink>,
    pub report: Report,
}

impl Engine {
    pub fn new(plan: &Plan, hmac: Option<Hmac>, sink: Box<dyn Sink>, report: Report) -> Self {
        let seed = plan.sampling.map_or(0, |s| s.seed());
        let cols: Vec<&PlanColumn> = plan.output_columns().collect();
        let mut report = report;
        report.columns = cols
            .iter()
            .map(|c| ColumnReport {
                name: c.name.clone(),
                rule: c.rule.describe(),
                personal: c.sensitivity.is_personal(),
                leaks: 0,
            })
            .collect();
        let appliers: Vec<Applier> = cols
            .iter()
            .map(|c| Applier::new(c, hmac.clone().filter(|_| c.rule == Rule::Hash), seed))
            .collect();
        Engine {
            scanned: appliers.iter().map(Applier::output_may_identify).collect(),
            appliers,
            personal: cols.iter().map(|c| c.sensitivity.is_personal()).collect(),
            names: cols.iter().map(|c| c.name.clone()).collect(),
            cells: vec![Cell::default(); cols.len()],
            inputs_unchanged: vec![false; cols.len()],
            leaks: vec![false; cols.len()],
            sampler: Sampler::new(plan.sampling),
            reservoir: Reservoir::new(),
            sink,
            report,
        }
    }

    /// Record a malformed row (counted; the first few listed).
    pub fn malformed(&mut self, line: u64, reason: String) {
        self.report.rows_in += 1;
        self.report.malformed += 1;
        if self.report.malformed_lines.len() < MAX_MALFORMED_LISTED {
            self.report
                .malformed_lines
                .push(MalformedRow { line, reason });
        }
    }

    /// Process one data row: `get(j)` is the input of output column `j`.
    pub fn row<'a>(
        &mut self,
        line: u64,
        mut get: impl FnMut(usize) -> Result<Input<'a>, CellError>,
    ) -> Result<(), String> {
        let index = self.report.rows_in;
        for j in 0..self.appliers.len() {
            let input = match get(j) {
                Ok(v) => v,
                Err(CellError::NotUtf8) => {
                    let reason = format!("column {:?}: not valid UTF-8", self.names[j]);
                    self.malformed(line, reason);
                    return Ok(());
                }
            };
            if let Err(e) = self.appliers[j].apply(index, input, &mut self.cells[j]) {
                let reason = format!("column {:?}: {e}", self.names[j]);
                self.malformed(line, reason);
                return Ok(());
            }
            // A personal value delivered as it came is a leak even when no
            // recognizer knows its shape (names, addresses).
            self.inputs_unchanged[j] = self.personal[j]
                && matches!(input, Input::Text(t) | Input::Raw(t)
                    if !t.is_empty() && self.cells[j].text == t);
        }
        self.report.rows_in += 1;
        match self.sampler.decide(index) {
            Decision::Write => {
                self.sink.write_row(&self.cells)?;
                // No identifier anywhere in the row written: none in its values.
                let quiet = self.sink.last_row().is_some_and(recognize::none_within);
                self.scan_current(quiet);
                for (j, leak) in self.leaks.iter().enumerate() {
                    self.report.columns[j].leaks += u64::from(*leak);
                }
                self.report.rows_out += 1;
            }
            Decision::Store(slot) => {
                // Leaks of a reservoir row count only if it is still there at the end.
                self.scan_current(false);
                self.reservoir
                    .store(slot, index, (self.cells.clone(), self.leaks.clone()));
            }
            Decision::Skip => {}
        }
        Ok(())
    }

    /// Which values of the current row leak; `quiet`: the row is known
    /// to hold no identifier ([`recognize::none_within`]).
    fn scan_current(&mut self, quiet: bool) {
        for (j, cell) in self.cells.iter().enumerate() {
            self.leaks[j] = self.inputs_unchanged[j]
                || !quiet
                    && self.scanned[j]
                    && cell
                        .as_str()
                        .is_some_and(|s| !s.is_empty() && recognize::find(s).is_some());
        }
    }

    /// Whether rows are decided one by one, independently of the rows
    /// before them (no reservoir): chunks can then run in parallel.
    pub fn stateless(plan: &Plan) -> bool {
        !matches!(plan.sampling, Some(crate::plan::Sampling::Rows { .. }))
    }

    /// Whether a row's output depends on its index (noise, sampling): a
    /// chunk must then know where its rows start before it runs.
    pub fn needs_row_index(plan: &Plan) -> bool {
        plan.sampling.is_some()
            || plan
                .columns
                .iter()
                .any(|c| matches!(c.rule, Rule::Noise { .. }))
    }

    /// A chunk's encoded rows and report: `rows_in` counted from the base
    /// the chunk engine started at.
    pub fn into_chunk(mut self, base: u64) -> (Vec<u8>, Report) {
        let bytes = self.sink.take_encoded();
        self.report.rows_in -= base;
        (bytes, self.report)
    }

    /// A Parquet chunk's batches and report, as [`Engine::into_chunk`].
    pub fn into_batches(mut self, base: u64) -> Result<(Vec<RecordBatch>, Report), String> {
        let batches = self.sink.take_batches()?;
        self.report.rows_in -= base;
        Ok((batches, self.report))
    }

    /// Append a chunk processed by a worker, in input order.
    pub fn merge_chunk(&mut self, bytes: &[u8], chunk: Report) -> Result<(), String> {
        self.sink.write_encoded(bytes)?;
        self.merge_report(chunk);
        Ok(())
    }

    /// Append a Parquet chunk processed by a worker, in input order.
    pub fn merge_batches(
        &mut self,
        batches: Vec<RecordBatch>,
        chunk: Report,
    ) -> Result<(), String> {
        self.sink.write_batches(batches)?;
        self.merge_report(chunk);
        Ok(())
    }

    fn merge_report(&mut self, chunk: Report) {
        let r = &mut self.report;
        r.rows_in += chunk.rows_in;
        r.rows_out += chunk.rows_out;
        r.malformed += chunk.malformed;
        let room = MAX_MALFORMED_LISTED.saturating_sub(r.malformed_lines.len());
        r.malformed_lines
            .extend(chunk.malformed_lines.into_iter().take(room));
        for (c, d) in r.columns.iter_mut().zip(chunk.columns) {
            c.leaks += d.leaks;
        }
    }

    /// Write the reservoir and close the sink.
    pub fn finish(mut self) -> Result<(Out, Report), Stopped> {
        let reservoir = std::mem::take(&mut self.reservoir);
        for (_, (row, leaks)) in reservoir.into_sorted() {
            for (j, leak) in leaks.iter().enumerate() {
                self.report.columns[j].leaks += u64::from(*leak);
            }
            self.report.rows_out += 1;
            if let Err(e) = self.sink.write_row(&row) {
                return Err(stop(e, self.report));
            }
        }
        match self.sink.finish() {
            Ok(out) => Ok((out, self.report)),
            Err(e) => Err(stop(e, self.report)),
        }
    }
}

/// `.<name>.partial-<pid>` in the output's directory.
pub fn partial_path(output: &Path) -> Result<PathBuf, String> {
    let name = output
        .file_name()
        .ok_or_else(|| format!("the output {} has no file name", output.display()))?;
    let mut partial = std::ffi::OsString::from(".");
    partial.push(name);
    partial.push(format!(".partial-{}", std::process::id()));
    Ok(output.with_file_name(partial))
}

/// The first bytes of a file, for format checks.
pub fn magic(path: &Path) -> Result<Vec<u8>, String> {
    let mut f =
        File::open(path).map_err(|e| format!("cannot open the input {}: {e}", path.display()))?;
    let mut buf = [0u8; 4];
    let mut n = 0;
    while n < 4 {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("cannot read the input: {e}")),
        }
    }
    Ok(buf[..n].to_vec())
}

/// Run the whole command.
pub fn run(opts: &Options) -> Result<Report, Failure> {
    let mut report = Report {
        format: opts.format.name().to_string(),
        sampling: opts.plan.sampling,
        ..Report::default()
    };
    let fail = |mut report: Report, e: String| {
        report.error = Some(e);
        Failure {
            report: Box::new(report),
        }
    };
    if let Err(e) = opts.plan.check(opts.key.is_some()) {
        return Err(fail(report, format!("plan refused: {e}")));
    }
    let head = match magic(&opts.input) {
        Ok(h) => h,
        Err(e) => return Err(fail(report, e)),
    };
    if let Err(e) = formats::check_magic(opts.format, &head) {
        return Err(fail(report, e));
    }
    let partial = match partial_path(&opts.output) {
        Ok(p) => p,
        Err(e) => return Err(fail(report, e)),
    };
    let file = match File::create(&partial) {
        Ok(f) => f,
        Err(e) => {
            return Err(fail(
                report,
                format!("cannot create {}: {e}", partial.display()),
            ));
        }
    };
    let hmac = opts.key.as_deref().map(Hmac::new);
    report.dropped_columns = opts.plan.columns.len() - opts.plan.output_columns().count();
    let result = formats::process(opts, HashingWriter::new(file), hmac, report.clone());
    let outcome = result.and_then(|(out, mut report)| {
        let (file, bytes, digest) = out.into_parts();
        file.sync_all()
            .map_err(|e| stop(format!("cannot sync the output: {e}"), report.clone()))?;
        report.bytes_out = bytes;
        report.output_sha256 = Some(digest);
        Ok(report)
    });
    let mut report = match outcome {
        Ok(r) => r,
        Err(stopped) => {
            let (e, r) = *stopped;
            let _ = fs::remove_file(&partial);
            return Err(fail(r, e));
        }
    };
    let leaking = report.leaking_personal_columns();
    let problem = if report.malformed > 0 {
        Some(format!(
            "{} malformed row(s), first at line(s) {}",
            report.malformed,
            report
                .malformed_lines
                .iter()
                .map(|m| m.line.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else if !leaking.is_empty() {
        Some(format!(
            "values that still look like identifiers in personal column(s) {}",
            leaking.join(", ")
        ))
    } else {
        None
    };
    if let Some(e) = problem {
        let _ = fs::remove_file(&partial);
        report.output_sha256 = None;
        report.bytes_out = 0;
        return Err(fail(report, e));
    }
    if let Err(e) = fs::rename(&partial, &opts.output) {
        let _ = fs::remove_file(&partial);
        return Err(fail(
            report,
            format!("cannot rename to {}: {e}", opts.output.display()),
        ));
    }
    report.ok = true;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let opts = Options {
            input: "in.csv".into(),
            output: "out.csv".into(),
            format: Format::Csv,
            plan: Plan {
                columns: Vec::new(),
                sampling: None,
            },
            key: Some(b"super-secret-key-material".to_vec()),
        };
        let dump = format!("{opts:?} {:?}", Hmac::new(b"super-secret-key-material"));
        assert!(!dump.contains("super-secret"), "{dump}");
        assert!(!dump.contains("115, 117, 112"), "{dump}");
    }

    #[test]
    fn partial_name_is_hidden_beside_the_output() {
        let p = partial_path(Path::new("/data/prepared.csv")).expect("path");
        assert_eq!(p.parent(), Some(Path::new("/data")));
        let name = p.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(name.starts_with(".prepared.csv.partial-"), "{name}");
    }

    #[test]
    fn short_keys_are_refused() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let short = dir.path().join("short");
        fs::write(&short, "abc\n").expect("write");
        assert!(read_key(&short).is_err());
        let ok = dir.path().join("ok");
        fs::write(&ok, "0123456789abcdef\r\n").expect("write");
        assert_eq!(read_key(&ok).expect("key"), b"0123456789abcdef");
    }
}
