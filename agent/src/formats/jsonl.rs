//! JSON Lines in and out: one object per line, keys in plan order on output.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};

use serde_json::{Map, Value};

use super::{Reader, read_error, write_error};
use crate::desensitize::{Engine, Options, Out, Sink};
use crate::report::Report;
use crate::rules::{Cell, Input, Kind};

const BUFFER: usize = 1 << 20;

struct JsonlSink {
    w: BufWriter<Out>,
    /// `"name":` for each delivered column, encoded once.
    keys: Vec<Vec<u8>>,
}

impl JsonlSink {
    fn write(&mut self, cells: &[Cell]) -> std::io::Result<()> {
        self.w.write_all(b"{")?;
        for (i, (key, cell)) in self.keys.iter().zip(cells).enumerate() {
            if i > 0 {
                self.w.write_all(b",")?;
            }
            self.w.write_all(key)?;
            match cell.kind {
                Kind::Null => self.w.write_all(b"null")?,
                Kind::Raw => self.w.write_all(cell.text.as_bytes())?,
                Kind::Text => serde_json::to_writer(&mut self.w, &cell.text)?,
            }
        }
        self.w.write_all(b"}\n")
    }
}

impl Sink for JsonlSink {
    fn write_row(&mut self, cells: &[Cell]) -> Result<(), String> {
        self.write(cells).map_err(write_error)
    }

    fn finish(self: Box<Self>) -> Result<Out, String> {
        self.w.into_inner().map_err(|e| write_error(e.error()))
    }
}

/// Reads one line at a time into one reused buffer.
pub struct JsonlReader {
    reader: BufReader<File>,
    /// Delivered column names, in plan order.
    names: Vec<String>,
}

impl Reader for JsonlReader {
    fn open(
        opts: &Options,
        input: File,
        out: Out,
        _: &mut Report,
    ) -> Result<(Self, Box<dyn Sink>), String> {
        let names: Vec<String> = opts.plan.output_columns().map(|c| c.name.clone()).collect();
        let keys = names
            .iter()
            .map(|n| {
                let mut k = serde_json::to_vec(n).unwrap_or_default();
                k.push(b':');
                k
            })
            .collect();
        let sink = JsonlSink {
            w: BufWriter::with_capacity(BUFFER, out),
            keys,
        };
        let reader = BufReader::with_capacity(BUFFER, input);
        Ok((JsonlReader { reader, names }, Box::new(sink)))
    }

    // The columns are checked against the first object, here.
    fn rows(mut self, opts: &Options, engine: &mut Engine) -> Result<(), String> {
        let names = &self.names;
        let mut buf = Vec::new();
        let mut raws = vec![String::new(); names.len()];
        let mut line = 0u64;
        let mut first = true;
        loop {
            buf.clear();
            if self
                .reader
                .read_until(b'\n', &mut buf)
                .map_err(read_error)?
                == 0
            {
                break;
            }
            line += 1;
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let object: Map<String, Value> = match serde_json::from_slice(&buf) {
                Ok(o) => o,
                Err(e) if first => {
                    return Err(format!(
                        "the input is not JSON Lines: line {line} is not a JSON object ({})",
                        e.classify_name()
                    ));
                }
                Err(e) => {
                    let reason = format!("not a JSON object ({})", e.classify_name());
                    engine.malformed(line, reason);
                    continue;
                }
            };
            if first {
                // Keys may be absent in later lines (null), but the first line
                // shows the columns: every plan column must be there.
                let available: Vec<String> = object.keys().cloned().collect();
                super::locate(&opts.plan, &available)?;
                engine.report.dropped_columns = available.len() - names.len();
                first = false;
            }
            for (raw, name) in raws.iter_mut().zip(names) {
                raw.clear();
                if let Some(
                    v @ (Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_)),
                ) = object.get(name)
                {
                    *raw = v.to_string();
                }
            }
            let inputs: Vec<Input<'_>> = names
                .iter()
                .zip(&raws)
                .map(|(n, raw)| match object.get(n) {
                    None | Some(Value::Null) => Input::Null,
                    Some(Value::String(s)) => Input::Text(s),
                    Some(_) => Input::Raw(raw),
                })
                .collect();
            engine.row(line, |j| Ok(inputs[j]))?;
        }
        Ok(())
    }
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
