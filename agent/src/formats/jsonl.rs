//! JSON Lines in and out: one object per line, keys in plan order on output.
//! Lines are independent, so the file is cut into chunks at newlines and
//! the chunks run on every core (see `parallel.rs`), merged in input order.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};

use serde_json::{Map, Value};

use super::{Reader, read_error, write_error};
use crate::desensitize::{Engine, Options, Out, Sink};
use crate::parallel;
use crate::report::Report;
use crate::rules::{Cell, Hmac, Input, Kind};

const BUFFER: usize = 1 << 20;

/// `"name":` for each delivered column, encoded once.
fn encoded_keys(names: &[String]) -> Vec<Vec<u8>> {
    names
        .iter()
        .map(|n| {
            let mut k = serde_json::to_vec(n).unwrap_or_default();
            k.push(b':');
            k
        })
        .collect()
}

/// Append one output object and its newline to `buf`.
fn encode_row(buf: &mut Vec<u8>, keys: &[Vec<u8>], cells: &[Cell]) {
    buf.push(b'{');
    for (i, (key, cell)) in keys.iter().zip(cells).enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(key);
        match cell.kind {
            Kind::Null => buf.extend_from_slice(b"null"),
            Kind::Raw => buf.extend_from_slice(cell.text.as_bytes()),
            // Writing a string into a Vec cannot fail.
            Kind::Text => {
                let _ = serde_json::to_writer(&mut *buf, &cell.text);
            }
        }
    }
    buf.extend_from_slice(b"}\n");
}

/// The output file: objects encoded into one reused buffer.
struct JsonlSink {
    buf: Vec<u8>,
    out: Out,
    keys: Vec<Vec<u8>>,
}

impl JsonlSink {
    fn flush_if_full(&mut self) -> Result<(), String> {
        if self.buf.len() >= BUFFER {
            self.out.write_all(&self.buf).map_err(write_error)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Sink for JsonlSink {
    fn write_row(&mut self, cells: &[Cell]) -> Result<(), String> {
        encode_row(&mut self.buf, &self.keys, cells);
        self.flush_if_full()
    }

    fn write_encoded(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() >= BUFFER {
            // A worker's whole chunk: written as it is, not copied first.
            self.out.write_all(&self.buf).map_err(write_error)?;
            self.buf.clear();
            return self.out.write_all(bytes).map_err(write_error);
        }
        self.buf.extend_from_slice(bytes);
        self.flush_if_full()
    }

    fn finish(mut self: Box<Self>) -> Result<Out, String> {
        self.out.write_all(&self.buf).map_err(write_error)?;
        Ok(self.out)
    }
}

/// A worker's sink: the chunk's objects, encoded, in memory.
struct ChunkSink {
    buf: Vec<u8>,
    keys: Vec<Vec<u8>>,
}

impl Sink for ChunkSink {
    fn write_row(&mut self, cells: &[Cell]) -> Result<(), String> {
        encode_row(&mut self.buf, &self.keys, cells);
        Ok(())
    }

    fn take_encoded(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    fn finish(self: Box<Self>) -> Result<Out, String> {
        Err("a chunk sink has no output file".into())
    }
}

/// Reads the first object (the columns), then the file chunk by chunk.
pub struct JsonlReader {
    input: File,
    /// Delivered column names, in plan order.
    names: Vec<String>,
    keys: Vec<Vec<u8>>,
}

impl Reader for JsonlReader {
    fn open(
        opts: &Options,
        input: File,
        out: Out,
        report: &mut Report,
    ) -> Result<(Self, Box<dyn Sink>), String> {
        let names: Vec<String> = opts.plan.output_columns().map(|c| c.name.clone()).collect();
        // Keys may be absent in later lines (null), but the first object
        // shows the columns: every plan column must be there.
        if let Some(available) = first_object_keys(&input)? {
            super::locate(&opts.plan, &available)?;
            report.dropped_columns = available.len() - names.len();
        }
        let keys = encoded_keys(&names);
        let sink = JsonlSink {
            buf: Vec::with_capacity(BUFFER + (64 << 10)),
            out,
            keys: keys.clone(),
        };
        Ok((JsonlReader { input, names, keys }, Box::new(sink)))
    }

    fn rows(self, opts: &Options, engine: &mut Engine) -> Result<(), String> {
        if !Engine::stateless(&opts.plan) || parallel::threads() == 1 {
            // A reservoir decides rows against each other: one engine sees them all.
            return self.rows_in_order(engine);
        }
        (&self.input).seek(SeekFrom::Start(0)).map_err(read_error)?;
        let chunks = parallel::Chunker::with_size(&self.input, false, 1, parallel::chunk_size())
            .map(|c| c.map_err(read_error));
        let bases = parallel::RowBases::default();
        let hmac = opts.key.as_deref().map(Hmac::new);
        let indexed = Engine::needs_row_index(&opts.plan);
        let (names, keys) = (&self.names, &self.keys);
        let work = |seq: usize, chunk: parallel::Chunk| {
            // Every line that is not blank is a row (malformed ones too).
            let base = if indexed {
                bases.base(seq, rows_in(&chunk.data))
            } else {
                0
            };
            let sink = Box::new(ChunkSink {
                buf: parallel::buffer(chunk.data.len()),
                keys: keys.clone(),
            });
            let report = Report {
                rows_in: base,
                ..Report::default()
            };
            let mut e = Engine::new(&opts.plan, hmac.clone(), sink, report);
            let mut raws = vec![String::new(); names.len()];
            for (i, line) in chunk.data.split(|b| *b == b'\n').enumerate() {
                let number = chunk.first_line + i as u64;
                process_line(&mut e, number, line, names, &mut raws)?;
            }
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
        parallel::ordered(chunks, parallel::threads(), work, consume)
    }
}

impl JsonlReader {
    /// Every line through the given engine, on this thread.
    fn rows_in_order(self, engine: &mut Engine) -> Result<(), String> {
        (&self.input).seek(SeekFrom::Start(0)).map_err(read_error)?;
        let mut reader = BufReader::with_capacity(BUFFER, &self.input);
        let mut buf = Vec::new();
        let mut raws = vec![String::new(); self.names.len()];
        let mut line = 0u64;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(read_error)? == 0 {
                return Ok(());
            }
            line += 1;
            let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
            process_line(engine, line, text, &self.names, &mut raws)?;
        }
    }
}

/// Rows in a chunk: its lines that are not blank.
fn rows_in(data: &[u8]) -> u64 {
    data.split(|b| *b == b'\n').filter(|l| !blank(l)).count() as u64
}

fn blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The keys of the first object, which show the columns; a first line
/// that is not an object means the input is not JSON Lines.
fn first_object_keys(input: &File) -> Result<Option<Vec<String>>, String> {
    let reader = BufReader::with_capacity(BUFFER, input);
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(read_error)?;
        if blank(&line) {
            continue;
        }
        return match serde_json::from_slice::<Map<String, Value>>(&line) {
            Ok(o) => Ok(Some(o.keys().cloned().collect())),
            Err(e) => Err(format!(
                "the input is not JSON Lines: line {} is not a JSON object ({})",
                i + 1,
                e.classify_name()
            )),
        };
    }
    // No object at all: no rows, and no column to check.
    Ok(None)
}

/// One line through the engine: blank lines are skipped, a line that is
/// not an object is malformed.
fn process_line(
    engine: &mut Engine,
    line: u64,
    bytes: &[u8],
    names: &[String],
    raws: &mut [String],
) -> Result<(), String> {
    if blank(bytes) {
        return Ok(());
    }
    let object: Map<String, Value> = match serde_json::from_slice(bytes) {
        Ok(o) => o,
        Err(e) => {
            let reason = format!("not a JSON object ({})", e.classify_name());
            engine.malformed(line, reason);
            return Ok(());
        }
    };
    for (raw, name) in raws.iter_mut().zip(names) {
        raw.clear();
        if let Some(v @ (Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_))) =
            object.get(name)
        {
            *raw = v.to_string();
        }
    }
    engine.row(line, |j| {
        Ok(match object.get(&names[j]) {
            None | Some(Value::Null) => Input::Null,
            Some(Value::String(s)) => Input::Text(s),
            Some(_) => Input::Raw(&raws[j]),
        })
    })
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    // Only the category: serde's message could quote the data.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "not an object",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}
