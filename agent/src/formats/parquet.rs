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
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{Reader, read_error, write_error};
use crate::desensitize::{Engine, Options, Out, Sink};
use crate::plan::{ColumnType, Generalization, PlanColumn, Rule};
use crate::report::Report;
use crate::rules::{Cell, Input};

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
        self.writer.write(&batch).map_err(write_error)?;
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
        let buffered = self.writer.into_inner().map_err(write_error)?;
        buffered.into_inner().map_err(|e| write_error(e.error()))
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

/// Reads record batches of the delivered columns only.
pub struct ParquetReader {
    reader: ParquetRecordBatchReader,
}

impl Reader for ParquetReader {
    fn open(
        opts: &Options,
        input: File,
        out: Out,
        report: &mut Report,
    ) -> Result<(Self, Box<dyn Sink>), String> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(input)
            .map_err(|e| format!("the input is not a readable Parquet file: {e}"))?;
        let schema = builder.schema().clone();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let located = super::locate(&opts.plan, &names)?;
        let idx = super::output_indices(&opts.plan, &located);
        report.dropped_columns = names.len() - idx.len();
        let mut fields = Vec::new();
        for (c, &i) in opts.plan.output_columns().zip(&idx) {
            let input = schema.field(i).data_type();
            let output = output_type(c, input);
            if !can_cast_types(input, &DataType::Utf8) || !can_cast_types(&DataType::Utf8, &output)
            {
                return Err(format!(
                    "column {:?}: the Parquet type {input} is not supported",
                    c.name
                ));
            }
            fields.push(Field::new(c.name.clone(), output, true));
        }
        let out_schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let writer = ArrowWriter::try_new(
            BufWriter::with_capacity(1 << 20, out),
            out_schema.clone(),
            Some(props),
        )
        .map_err(write_error)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), idx.iter().copied());
        let reader = builder
            .with_projection(mask)
            .with_batch_size(BATCH)
            .build()
            .map_err(read_error)?;
        let sink = ParquetSink {
            writer,
            schema: out_schema,
            builders: idx.iter().map(|_| StringBuilder::new()).collect(),
            rows: 0,
        };
        Ok((ParquetReader { reader }, Box::new(sink)))
    }

    fn rows(self, opts: &Options, engine: &mut Engine) -> Result<(), String> {
        let out_names: Vec<String> = opts.plan.output_columns().map(|c| c.name.clone()).collect();
        let mut row_number = 0u64;
        for batch in self.reader {
            let batch = batch.map_err(read_error)?;
            let mut texts = Vec::with_capacity(out_names.len());
            for name in &out_names {
                let col = batch
                    .column_by_name(name)
                    .ok_or_else(|| format!("column {name:?} is missing from a record batch"))?;
                let text = cast(col, &DataType::Utf8)
                    .map_err(|e| format!("column {name:?}: cannot read as text: {e}"))?;
                texts.push(text);
            }
            let strings: Vec<_> = texts.iter().map(|t| t.as_string::<i32>()).collect();
            for r in 0..batch.num_rows() {
                row_number += 1;
                engine.row(row_number, |j| {
                    let s = strings[j];
                    Ok(if s.is_null(r) {
                        Input::Null
                    } else {
                        Input::Text(s.value(r))
                    })
                })?;
            }
        }
        Ok(())
    }
}
