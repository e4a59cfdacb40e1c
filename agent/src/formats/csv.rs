//! CSV (RFC 4180, UTF-8, header row) in and out, record by record.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use super::split::{self, Rec};
use super::{Reader, read_error, write_error};
use crate::desensitize::{CellError, Engine, Options, Out, Sink};
use crate::parallel;
use crate::report::Report;
use crate::rules::{Cell, Hmac, Input};

/// Read and write buffers: large enough that system calls are rare.
const BUFFER: usize = 1 << 20;

/// Writes records exactly as `csv::Writer` does with its defaults (comma,
/// `"` doubled inside quotes, `\n` after each record, quotes only when a
/// field holds `,`, `"`, `\r` or `\n`, and a record of one empty field
/// written as `""`), straight into one reused buffer: the generic writer's
/// per-field state machine was a tenth of the run time.
struct CsvSink {
    buf: Vec<u8>,
    out: Out,
}

impl CsvSink {
    fn new(out: Out) -> Self {
        CsvSink {
            buf: Vec::with_capacity(BUFFER + (64 << 10)),
            out,
        }
    }

    fn record<'a>(&mut self, fields: impl ExactSizeIterator<Item = &'a [u8]>) -> io::Result<()> {
        write_record(&mut self.buf, fields);
        if self.buf.len() >= BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// Append one record to `buf` as `csv::Writer` writes it.
fn write_record<'a>(buf: &mut Vec<u8>, fields: impl ExactSizeIterator<Item = &'a [u8]>) {
    let n = fields.len();
    for (i, f) in fields.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        if n == 1 && f.is_empty() {
            // An empty line would read back as no record at all.
            buf.extend_from_slice(b"\"\"");
        } else if needs_quotes(f) {
            buf.push(b'"');
            for (k, part) in f.split(|&b| b == b'"').enumerate() {
                if k > 0 {
                    buf.extend_from_slice(b"\"\"");
                }
                buf.extend_from_slice(part);
            }
            buf.push(b'"');
        } else {
            buf.extend_from_slice(f);
        }
    }
    buf.push(b'\n');
}

/// Bytes that make the csv crate's writer quote a field.
fn needs_quotes(field: &[u8]) -> bool {
    // No early exit: short fields are checked faster without branches.
    field
        .iter()
        .fold(false, |q, &b| q | matches!(b, b',' | b'"' | b'\r' | b'\n'))
}

impl Sink for CsvSink {
    fn write_row(&mut self, cells: &[Cell]) -> Result<(), String> {
        self.record(cells.iter().map(|c| c.text.as_bytes()))
            .map_err(write_error)
    }

    fn write_encoded(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() >= BUFFER {
            // A worker's whole chunk: written as it is, not copied first.
            self.flush().map_err(write_error)?;
            return self.out.write_all(bytes).map_err(write_error);
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= BUFFER {
            self.flush().map_err(write_error)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Out, String> {
        self.flush().map_err(write_error)?;
        Ok(self.out)
    }
}

/// A worker's sink: the chunk's records, encoded, in memory.
#[derive(Default)]
struct ChunkSink {
    buf: Vec<u8>,
    /// Where the last record written starts.
    last: usize,
}

impl Sink for ChunkSink {
    fn write_row(&mut self, cells: &[Cell]) -> Result<(), String> {
        self.last = self.buf.len();
        write_record(&mut self.buf, cells.iter().map(|c| c.text.as_bytes()));
        Ok(())
    }

    fn last_row(&self) -> Option<&[u8]> {
        self.buf.get(self.last..)
    }

    fn take_encoded(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    fn finish(self: Box<Self>) -> Result<Out, String> {
        Err("a chunk sink has no output file".into())
    }
}

/// Reads records into one reused `ByteRecord`.
pub struct CsvReader {
    reader: ::csv::Reader<File>,
    /// Input field of each delivered column.
    idx: Vec<usize>,
    /// Fields in the header: every record must have as many.
    ncols: usize,
}

impl Reader for CsvReader {
    fn open(
        opts: &Options,
        input: File,
        out: Out,
        report: &mut Report,
    ) -> Result<(Self, Box<dyn Sink>), String> {
        let mut reader = ::csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .buffer_capacity(BUFFER)
            .from_reader(input);
        let header = reader
            .byte_headers()
            .map_err(|e| format!("cannot read the CSV header: {e}"))?;
        let header: Vec<String> = header
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let f = if i == 0 { super::strip_bom(f) } else { f };
                std::str::from_utf8(f).map(str::to_string)
            })
            .collect::<Result<_, _>>()
            .map_err(|_| {
                "the input is not CSV in UTF-8: the header row is not valid UTF-8".to_string()
            })?;
        let located = super::locate(&opts.plan, &header)?;
        let idx = super::output_indices(&opts.plan, &located);
        report.dropped_columns = header.len() - idx.len();
        let mut sink = CsvSink::new(out);
        let names: Vec<&[u8]> = opts
            .plan
            .output_columns()
            .map(|c| c.name.as_bytes())
            .collect();
        sink.record(names.into_iter()).map_err(write_error)?;
        let ncols = header.len();
        Ok((CsvReader { reader, idx, ncols }, Box::new(sink)))
    }

    fn rows(self, opts: &Options, engine: &mut Engine) -> Result<(), String> {
        if Engine::stateless(&opts.plan) {
            return self.rows_parallel(opts, engine, parallel::threads());
        }
        // A reservoir decides rows against each other: one engine sees them all.
        for chunk in self.chunks(opts)? {
            feed_chunk(&chunk?, engine, &self.idx, self.ncols)?;
        }
        Ok(())
    }
}

/// One record through the engine (a wrong field count is malformed).
fn process_record(
    engine: &mut Engine,
    r: Rec<'_>,
    line: u64,
    idx: &[usize],
    ncols: usize,
) -> Result<(), String> {
    if r.len() != ncols {
        let reason = format!("expected {ncols} fields, found {}", r.len());
        engine.malformed(line, reason);
        return Ok(());
    }
    // One validation of the whole record (fields split at ASCII
    // delimiters stay valid); field by field only when it fails, so
    // that bad bytes in a column the plan drops do not matter.
    let whole = simdutf8::basic::from_utf8(r.bytes()).ok();
    engine.row(line, |j| {
        let field = idx[j];
        match (whole, r.range(field)) {
            (Some(w), Some(range)) => w.get(range).map(Input::Text),
            _ => simdutf8::basic::from_utf8(r.field(field))
                .ok()
                .map(Input::Text),
        }
        .ok_or(CellError::NotUtf8)
    })
}

/// Every record of a chunk through the engine.
fn feed_chunk(
    chunk: &parallel::Chunk,
    engine: &mut Engine,
    idx: &[usize],
    ncols: usize,
) -> Result<(), String> {
    split::records(&chunk.data, |line, r| {
        process_record(engine, r, chunk.first_line + line - 1, idx, ncols)
    })
    .map_err(|stop| stopped(stop, chunk.first_line))
}

/// The message of a chunk that could not be read.
fn stopped(stop: split::Stop<String>, first_line: u64) -> String {
    match stop {
        split::Stop::Csv { line, reason } => {
            read_error(format!("{reason} at line {}", first_line + line - 1))
        }
        split::Stop::Caller(e) => e,
    }
}

impl CsvReader {
    /// The data records, cut into chunks at record boundaries.
    fn chunks(
        &self,
        opts: &Options,
    ) -> Result<impl Iterator<Item = Result<parallel::Chunk, String>> + Send + use<>, String> {
        let pos = self.reader.position().clone();
        let mut file = File::open(&opts.input).map_err(read_error)?;
        file.seek(SeekFrom::Start(pos.byte())).map_err(read_error)?;
        let chunks = parallel::Chunker::with_size(file, true, pos.line(), parallel::chunk_size());
        Ok(chunks.map(|c| c.map_err(read_error)))
    }

    /// The data records cut into chunks at record boundaries, each run
    /// through its own engine on a worker thread, merged in input order.
    fn rows_parallel(
        self,
        opts: &Options,
        engine: &mut Engine,
        threads: usize,
    ) -> Result<(), String> {
        let chunks = self.chunks(opts)?;
        let bases = parallel::RowBases::default();
        let hmac = opts.key.as_deref().map(Hmac::new);
        let indexed = Engine::needs_row_index(&opts.plan);
        let work = |seq: usize, chunk: parallel::Chunk| {
            let sink = Box::new(ChunkSink {
                buf: parallel::buffer(chunk.data.len()),
                last: 0,
            });
            // Row-indexed rules need the chunk's first row index: count
            // its records and wait for the chunks before it to have done so.
            let base = if indexed {
                let n = split::count(&chunk.data);
                let base = bases.base(seq, *n.as_ref().unwrap_or(&0));
                if let Err(split::Stop::Csv { line, reason }) = n {
                    return Err(stopped(split::Stop::Csv { line, reason }, chunk.first_line));
                }
                base
            } else {
                0
            };
            let report = Report {
                rows_in: base,
                ..Report::default()
            };
            let mut e = Engine::new(&opts.plan, hmac.clone(), sink, report);
            feed_chunk(&chunk, &mut e, &self.idx, self.ncols)?;
            Ok(e.into_chunk(base))
        };
        let consume = |done: Result<(Vec<u8>, Report), String>| {
            let merged = done.and_then(|(bytes, report)| {
                let merged = engine.merge_chunk(&bytes, report);
                parallel::give_back(bytes);
                merged
            });
            if merged.is_err() {
                bases.abort();
            }
            merged
        };
        parallel::ordered(chunks, threads, work, consume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desensitize::HashingWriter;
    use proptest::prelude::*;

    /// What `csv::Writer` with its defaults writes for these records
    /// (`flexible` only allows records of different lengths).
    fn reference(records: &[Vec<String>]) -> Vec<u8> {
        let mut w = ::csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        for r in records {
            w.write_record(r).expect("write");
        }
        w.into_inner().expect("flush")
    }

    fn ours(records: &[Vec<String>]) -> Vec<u8> {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let path = dir.path().join("out.csv");
        let mut sink = CsvSink::new(HashingWriter::new(File::create(&path).expect("create")));
        for r in records {
            sink.record(r.iter().map(|f| f.as_bytes())).expect("write");
        }
        drop(Box::new(sink).finish().expect("finish"));
        std::fs::read(&path).expect("read")
    }

    #[test]
    fn writes_what_the_csv_crate_writes() {
        let records: Vec<Vec<String>> = [
            &["a", "b,c", "say \"hi\""][..],
            &[""],
            &["", ""],
            &["\"\""],
            &["line\nbreak", "cr\r", "张三,李四"],
            &[" spaced ", "#", "\\"],
        ]
        .iter()
        .map(|r| r.iter().map(|f| f.to_string()).collect())
        .collect();
        assert_eq!(
            String::from_utf8(ours(&records)),
            String::from_utf8(reference(&records))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_records_are_written_as_the_csv_crate_does(
            records in proptest::collection::vec(
                proptest::collection::vec("[a,\"\r\n 张]{0,6}|\\PC{0,12}", 1..5), 0..8)
        ) {
            prop_assert_eq!(ours(&records), reference(&records));
        }
    }
}
