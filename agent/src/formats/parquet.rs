//! Parquet in and out, record batch by record batch.
//!
//! Each delivered column is cast to text, the rules run on the text, and
//! the result is cast back: `keep` to the input type, `noise` to Int64
//! (integer columns) or Float64, `generalize.bucket` to Int64, the other
//! rules to Utf8. Output pages are Snappy-compressed; input may be
//! uncompressed or Snappy (other codecs are not compiled in, to stay small
//! and pure Rust, and fail with the parquet crate's message).

use std::fs::File;
use std::io::BufWriter;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::{can_cast_types, cast};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::desensitize::{Engine, Options, Out, Sink, Stopped, stop};
use crate::plan::{ColumnType, Generalization, PlanColumn, Rule};
use crate::report::Report;
use crate::rules::{Cell, Hmac, Input};

/// Rows per record batch, read and written.
const BATCH: usize = 8192;

struct ParquetSink {
    writer: ArrowWriter<BufWriter<Out>>,
    schema: SchemaRef,
    builders: Vec<StringBuilder>,
    rows: usize,
}

impl ParquetSink {
    fn flush(&mut self) -> Result<(), String> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.builders.len());
        for (b, field) in self.builders.iter_mut().zip(self.schema.fields()) {
            let text: ArrayRef = Arc::new(b.finish());
            let typed = cast(&text, field.data_type()).map_err(|e| {
                format!(
                    "column {:?}: cannot write as {}: {e}",
                    field.name(),
                    field.data_type()
                )
            })?;
            columns.push(typed);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| format!("cannot build a record batch: {e}"))?;
        self.writer
            .write(&batch)
            .map_err(|e| format!("cannot write the output: {e}"))?;
        self.rows = 0;
        Ok(())
    }
}

impl Sink for ParquetSink {
    fn write_row(&mut self, cells: &[Cell]) -> Result<(), String> {
        for (b, c) in self.builders.iter_mut().zip(cells) {
            b.append_option(c.as_str());
        }
        self.rows += 1;
        if self.rows >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Out, String> {
        self.flush()?;
        let buffered = self
            .writer
            .into_inner()
            .map_err(|e| format!("cannot write the output: {e}"))?;
        buffered
            .into_inner()
            .map_err(|e| format!("cannot write the output: {}", e.error()))
    }
}

/// The output type of a column.
fn output_type(c: &PlanColumn, input: &DataType) -> DataType {
    match c.rule {
        Rule::Keep => input.clone(),
        Rule::Noise { .. } if c.type_ == ColumnType::Integer => DataType::Int64,
        Rule::Noise { .. } => DataType::Float64,
        Rule::Generalize {
            to: Generalization::Bucket(_),
        } => DataType::Int64,
        _ => DataType::Utf8,
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
    let builder = match ParquetRecordBatchReaderBuilder::try_new(file) {
        Ok(b) => b,
        Err(e) => {
            return Err(stop(
                format!("the input is not a readable Parquet file: {e}"),
                report,
            ));
        }
    };
    let schema = builder.schema().clone();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let located = match super::locate(&opts.plan, &names) {
        Ok(l) => l,
        Err(e) => return Err(stop(e, report)),
    };
    let idx = super::output_indices(&opts.plan, &located);
    let mut report = report;
    report.dropped_columns = names.len() - idx.len();
    let mut fields = Vec::new();
    for (c, &i) in opts.plan.output_columns().zip(&idx) {
        let input = schema.field(i).data_type();
        let output = output_type(c, input);
        if !can_cast_types(input, &DataType::Utf8) || !can_cast_types(&DataType::Utf8, &output) {
            return Err(stop(
                format!(
                    "column {:?}: the Parquet type {input} is not supported",
                    c.name
                ),
                report,
            ));
        }
        fields.push(Field::new(c.name.clone(), output, true));
    }
    let out_schema = Arc::new(Schema::new(fields));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let writer = match ArrowWriter::try_new(
        BufWriter::with_capacity(1 << 20, out),
        out_schema.clone(),
        Some(props),
    ) {
        Ok(w) => w,
        Err(e) => return Err(stop(format!("cannot write the output: {e}"), report)),
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), idx.iter().copied());
    let reader = match builder.with_projection(mask).with_batch_size(BATCH).build() {
        Ok(r) => r,
        Err(e) => return Err(stop(format!("cannot read the input: {e}"), report)),
    };
    let sink = ParquetSink {
        writer,
        schema: out_schema,
        builders: idx.iter().map(|_| StringBuilder::new()).collect(),
        rows: 0,
    };
    let out_names: Vec<String> = opts.plan.output_columns().map(|c| c.name.clone()).collect();
    let mut engine = Engine::new(&opts.plan, hmac, Box::new(sink), report);
    let mut row_number = 0u64;
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => return Err(stop(format!("cannot read the input: {e}"), engine.report)),
        };
        let mut texts = Vec::with_capacity(out_names.len());
        for name in &out_names {
            let text = batch
                .column_by_name(name)
                .ok_or_else(|| format!("column {name:?} is missing from a record batch"))
                .and_then(|col| {
                    cast(col, &DataType::Utf8)
                        .map_err(|e| format!("column {name:?}: cannot read as text: {e}"))
                });
            match text {
                Ok(t) => texts.push(t),
                Err(e) => return Err(stop(e, engine.report)),
            }
        }
        let strings: Vec<_> = texts.iter().map(|t| t.as_string::<i32>()).collect();
        for r in 0..batch.num_rows() {
            row_number += 1;
            let got = engine.row(row_number, |j| {
                let s = strings[j];
                Ok(if s.is_null(r) {
                    Input::Null
                } else {
                    Input::Text(s.value(r))
                })
            });
            if let Err(e) = got {
                return Err(stop(e, engine.report));
            }
        }
    }
    engine.finish()
}
