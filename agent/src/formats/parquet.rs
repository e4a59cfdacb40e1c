//! Parquet in and out, record batch by record batch; each row group is a
//! chunk for a worker thread, and the output batches are written in input
//! order (a reservoir sample reads every row group on one thread).
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

use super::{Reader, read_error, write_error};
use crate::desensitize::{Engine, Options, Out, Sink};
use crate::parallel;
use crate::plan::{ColumnType, Generalization, PlanColumn, Rule};
use crate::report::Report;
use crate::rules::{Cell, Hmac, Input};

/// Rows per record batch, read and written.
const BATCH: usize = 8192;

/// Builds typed record batches of at most [`BATCH`] rows from the rows
/// the engine writes.
struct Batches {
    schema: SchemaRef,
    builders: Vec<StringBuilder>,
    rows: usize,
    done: Vec<RecordBatch>,
}

impl Batches {
    fn new(schema: SchemaRef) -> Self {
        Batches {
            builders: schema
                .fields()
                .iter()
                .map(|_| StringBuilder::new())
                .collect(),
            schema,
            rows: 0,
            done: Vec::new(),
        }
    }

    fn push(&mut self, cells: &[Cell]) -> Result<(), String> {
        for (b, c) in self.builders.iter_mut().zip(cells) {
            b.append_option(c.as_str());
        }
        self.rows += 1;
        if self.rows >= BATCH {
            self.cut()?;
        }
        Ok(())
    }

    /// The rows so far as one batch, cast back to the output types.
    fn cut(&mut self) -> Result<(), String> {
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
        self.done.push(batch);
        self.rows = 0;
        Ok(())
    }
}

/// The output file.
struct ParquetSink {
    writer: ArrowWriter<BufWriter<Out>>,
    batches: Batches,
}

impl ParquetSink {
    fn write_done(&mut self) -> Result<(), String> {
        for b in std::mem::take(&mut self.batches.done) {
            self.writer.write(&b).map_err(write_error)?;
        }
        Ok(())
    }
}

impl Sink for ParquetSink {
    fn write_row(&mut self, cells: &[Cell]) -> Result<(), String> {
        self.batches.push(cells)?;
        self.write_done()
    }

    fn write_batches(&mut self, batches: Vec<RecordBatch>) -> Result<(), String> {
        for b in batches {
            self.writer.write(&b).map_err(write_error)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Out, String> {
        self.batches.cut()?;
        self.write_done()?;
        let buffered = self.writer.into_inner().map_err(write_error)?;
        buffered.into_inner().map_err(|e| write_error(e.error()))
    }
}

/// A worker's sink: one row group's output batches, in memory.
struct ChunkSink(Batches);

impl Sink for ChunkSink {
    fn write_row(&mut self, cells: &[Cell]) -> Result<(), String> {
        self.0.push(cells)
    }

    fn take_batches(&mut self) -> Result<Vec<RecordBatch>, String> {
        self.0.cut()?;
        Ok(std::mem::take(&mut self.0.done))
    }

    fn finish(self: Box<Self>) -> Result<Out, String> {
        Err("a chunk sink has no output file".into())
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

/// Reads record batches of the delivered columns only, row group by row
/// group: each row group is a chunk for a worker thread.
pub struct ParquetReader {
    /// Input column of each delivered column.
    idx: Vec<usize>,
    /// Rows of each row group.
    row_groups: Vec<u64>,
    schema: SchemaRef,
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
        let row_groups = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows().max(0) as u64)
            .collect();
        let sink = ParquetSink {
            writer,
            batches: Batches::new(out_schema.clone()),
        };
        let reader = ParquetReader {
            idx,
            row_groups,
            schema: out_schema,
        };
        Ok((reader, Box::new(sink)))
    }

    fn rows(self, opts: &Options, engine: &mut Engine) -> Result<(), String> {
        let groups: Vec<usize> = (0..self.row_groups.len()).collect();
        if !Engine::stateless(&opts.plan) {
            // A reservoir decides rows against each other: one engine sees them all.
            return self.feed(opts, groups, 0, engine);
        }
        let hmac = opts.key.as_deref().map(Hmac::new);
        // Where each row group's rows start: known from the footer.
        let bases: Vec<u64> = self
            .row_groups
            .iter()
            .scan(0, |acc, n| {
                *acc += n;
                Some(*acc - n)
            })
            .collect();
        let work = |_, g: usize| {
            let sink = Box::new(ChunkSink(Batches::new(self.schema.clone())));
            let report = Report {
                rows_in: bases[g],
                ..Report::default()
            };
            let mut e = Engine::new(&opts.plan, hmac.clone(), sink, report);
            self.feed(opts, vec![g], bases[g], &mut e)?;
            e.into_batches(bases[g])
        };
        let consume = |done: Result<(Vec<RecordBatch>, Report), String>| {
            done.and_then(|(batches, report)| engine.merge_batches(batches, report))
        };
        let items = groups.into_iter().map(Ok::<usize, String>);
        parallel::ordered(items, parallel::threads(), work, consume)
    }
}

impl ParquetReader {
    /// The rows of the given row groups through `engine`; `first` is the
    /// index of their first row in the file.
    fn feed(
        &self,
        opts: &Options,
        groups: Vec<usize>,
        first: u64,
        engine: &mut Engine,
    ) -> Result<(), String> {
        // Opened anew: clones of one file share its offset, which the
        // reader seeks, so threads cannot share one.
        let input = File::open(&opts.input).map_err(read_error)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(input)
            .map_err(|e| format!("the input is not a readable Parquet file: {e}"))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), self.idx.iter().copied());
        let reader = builder
            .with_projection(mask)
            .with_row_groups(groups)
            .with_batch_size(BATCH)
            .build()
            .map_err(read_error)?;
        let out_names: Vec<String> = opts.plan.output_columns().map(|c| c.name.clone()).collect();
        let mut row_number = first;
        for batch in reader {
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
