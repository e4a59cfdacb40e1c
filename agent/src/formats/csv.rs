//! CSV (RFC 4180, UTF-8, header row) in and out, record by record.

use std::fs::File;

use crate::desensitize::{CellError, Engine, Options, Out, Sink, Stopped, stop};
use crate::report::Report;
use crate::rules::{Cell, Hmac, Input};

/// Read and write buffers: large enough that system calls are rare.
const BUFFER: usize = 1 << 20;

struct CsvSink {
    w: ::csv::Writer<Out>,
}

impl Sink for CsvSink {
    fn write_row(&mut self, cells: &[Cell]) -> Result<(), String> {
        self.w
            .write_record(cells.iter().map(|c| c.text.as_bytes()))
            .map_err(|e| format!("cannot write the output: {e}"))
    }

    fn finish(self: Box<Self>) -> Result<Out, String> {
        self.w
            .into_inner()
            .map_err(|e| format!("cannot write the output: {}", e.error()))
    }
}

pub fn process(
    opts: &Options,
    out: Out,
    hmac: Option<Hmac>,
    report: Report,
) -> Result<(Out, Report), Stopped> {
    let file = match File::open(&opts.input) {
        Ok(f) => f,
        Err(e) => return Err(stop(format!("cannot open the input: {e}"), report)),
    };
    let mut reader = ::csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .buffer_capacity(BUFFER)
        .from_reader(file);
    let header: Vec<String> = match reader.byte_headers() {
        Ok(h) => match h
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let f = if i == 0 {
                    f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
                } else {
                    f
                };
                std::str::from_utf8(f).map(str::to_string)
            })
            .collect::<Result<_, _>>()
        {
            Ok(h) => h,
            Err(_) => {
                return Err(stop(
                    "the input is not CSV in UTF-8: the header row is not valid UTF-8".into(),
                    report,
                ));
            }
        },
        Err(e) => return Err(stop(format!("cannot read the CSV header: {e}"), report)),
    };
    let located = match super::locate(&opts.plan, &header) {
        Ok(l) => l,
        Err(e) => return Err(stop(e, report)),
    };
    let idx = super::output_indices(&opts.plan, &located);
    let mut report = report;
    report.dropped_columns = header.len() - idx.len();
    let mut writer = ::csv::WriterBuilder::new()
        .buffer_capacity(BUFFER)
        .from_writer(out);
    if let Err(e) = writer.write_record(opts.plan.output_columns().map(|c| c.name.as_bytes())) {
        return Err(stop(format!("cannot write the output: {e}"), report));
    }
    let mut engine = Engine::new(&opts.plan, hmac, Box::new(CsvSink { w: writer }), report);
    let ncols = header.len();
    let mut record = ::csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(stop(format!("cannot read the input: {e}"), engine.report)),
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != ncols {
            let reason = format!("expected {ncols} fields, found {}", record.len());
            engine.malformed(line, reason);
            continue;
        }
        let r = &record;
        // One validation of the whole record (fields split at ASCII
        // delimiters stay valid); field by field only when it fails, so
        // that bad bytes in a column the plan drops do not matter.
        let whole = std::str::from_utf8(r.as_slice()).ok();
        let got = engine.row(line, |j| {
            let field = idx[j];
            match (whole, r.range(field)) {
                (Some(w), Some(range)) => w.get(range).map(Input::Text),
                _ => std::str::from_utf8(&r[field]).ok().map(Input::Text),
            }
            .ok_or(CellError::NotUtf8)
        });
        if let Err(e) = got {
            return Err(stop(e, engine.report));
        }
    }
    engine.finish()
}
