//! Reading CSV, JSON Lines and Parquet files row by row for the checks:
//! every value as text (`None` when null, missing or an empty CSV field).
//! Chunks of records (Parquet: row groups) run on every core; rows come
//! back in file order.
//! A malformed row is reported by line (Parquet: row) number and a reason
//! that never holds the value; reading goes on.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_cast::cast;
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};

use super::filetype::FileType;
use crate::formats::split;
use crate::parallel::{self, Chunk, Chunker};

const BUFFER: usize = 1 << 20;

/// What the checks see of a tabular file.
pub trait Visitor {
    /// The column names, once, before any row.
    fn header(&mut self, names: &[String]);
    /// One data row (`row` 0-based among data rows, `line` 1-based in the file).
    fn row(&mut self, row: u64, line: u64, cells: &[Option<&str>]);
    /// A row that cannot be read.
    fn malformed(&mut self, line: u64, reason: String);
}

/// Read a whole file on this thread; `Err` when it cannot be read at all
/// (no header, not the format, an I/O error).
pub fn read(path: &Path, t: FileType, v: &mut dyn Visitor) -> Result<(), String> {
    let head = header(path, t)?;
    v.header(&head.names);
    let mut row = 0u64;
    let to_owned = |cells: &[Option<&str>], _: Option<&[u8]>| -> Vec<Option<String>> {
        cells.iter().map(|c| c.map(str::to_string)).collect()
    };
    read_parallel(path, t, &head, 1, &to_owned, &mut |item| match item {
        Item::Row(line, cells) => {
            let cells: Vec<Option<&str>> = cells.iter().map(|c| c.as_deref()).collect();
            v.row(row, line, &cells);
            row += 1;
        }
        Item::Malformed(line, reason) => v.malformed(line, reason),
    })
}

/// The columns of a tabular file and where its rows start.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Header {
    pub names: Vec<String>,
    /// Byte offset of the first data row, and its line number.
    pub offset: u64,
    pub line: u64,
    /// Parquet: the rows of each row group.
    pub row_groups: Vec<u64>,
}

/// Read the header (CSV: the first record; JSON Lines: the keys of the
/// first object, which is also the first row; Parquet: the schema).
pub fn header(path: &Path, t: FileType) -> Result<Header, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {}", e.kind()))?;
    match t {
        FileType::Csv => csv_header(file),
        FileType::Jsonl => jsonl_header(file),
        FileType::Parquet => parquet_header(file),
        other => Err(format!("{} is not a table format", other.name())),
    }
}

fn parquet_header(file: File) -> Result<Header, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    Ok(Header {
        names: builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        row_groups: builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows().max(0) as u64)
            .collect(),
        ..Header::default()
    })
}

fn csv_header(file: File) -> Result<Header, String> {
    let mut r = ::csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let header = r
        .byte_headers()
        .map_err(|e| format!("cannot read the CSV header: {}", split::reason(&e)))?;
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = if i == 0 {
                crate::formats::strip_bom(f)
            } else {
                f
            };
            String::from_utf8_lossy(f).into_owned()
        })
        .collect();
    if names.is_empty() || (names.len() == 1 && names[0].is_empty()) {
        return Err("the CSV file has no header row".into());
    }
    let pos = r.position();
    Ok(Header {
        names,
        offset: pos.byte(),
        line: pos.line(),
        row_groups: Vec::new(),
    })
}

fn jsonl_header(file: File) -> Result<Header, String> {
    let reader = BufReader::with_capacity(BUFFER, file);
    for line in reader.split(b'\n') {
        let line = line.map_err(|e| format!("read error: {}", e.kind()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return match serde_json::from_slice::<Map<String, Value>>(&line) {
            Ok(o) => Ok(Header {
                names: o.keys().cloned().collect(),
                offset: 0,
                line: 1,
                row_groups: Vec::new(),
            }),
            Err(e) => Err(format!(
                "the first line is not a JSON object ({:?})",
                e.classify()
            )),
        };
    }
    Err("the JSON Lines file holds no object".into())
}

/// What a worker makes of rows: from each row's values, and for CSV the
/// record's bytes, within which every value lies (for a check of the
/// whole row before its values). A closure over one row is one.
pub trait Prepare<P>: Sync {
    fn row(&self, cells: &[Option<&str>], record: Option<&[u8]>) -> P;

    /// A batch of rows, in order, one result each pushed to `out`; one
    /// by one unless the rows' memory accesses are worth overlapping.
    fn rows(&self, rows: &Rows<'_>, out: &mut Vec<P>) {
        out.extend((0..rows.len()).map(|i| self.row(rows.cells(i), rows.record(i))));
    }
}

impl<P, F: Fn(&[Option<&str>], Option<&[u8]>) -> P + Sync> Prepare<P> for F {
    fn row(&self, cells: &[Option<&str>], record: Option<&[u8]>) -> P {
        self(cells, record)
    }
}

/// Rows of a CSV chunk or Parquet batch handed to [`Prepare::rows`] together.
const BATCH: usize = 64;

/// Consecutive rows of one chunk or batch, every row `width` cells.
pub struct Rows<'r> {
    width: usize,
    lines: Vec<u64>,
    cells: Vec<Option<&'r str>>,
    records: Vec<&'r [u8]>,
}

impl<'r> Rows<'r> {
    fn new(width: usize, rows: usize) -> Self {
        Rows {
            width,
            lines: Vec::with_capacity(rows),
            cells: Vec::with_capacity(rows * width),
            records: Vec::with_capacity(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Every row's cells, one row after the other.
    pub fn all_cells(&self) -> &[Option<&'r str>] {
        &self.cells
    }

    pub fn cells(&self, i: usize) -> &[Option<&'r str>] {
        &self.cells[i * self.width..(i + 1) * self.width]
    }

    /// The CSV record holding row `i`'s values.
    pub fn record(&self, i: usize) -> Option<&'r [u8]> {
        self.records.get(i).copied()
    }

    /// A record whose fields (`record`'s ranges) lie in `text`.
    fn push(&mut self, line: u64, text: &'r str, record: &split::Rec<'_>) {
        self.lines.push(line);
        self.records.push(text.as_bytes());
        self.cells.extend(
            (0..record.len()).map(|i| record.range(i).map(|r| &text[r]).filter(|s| !s.is_empty())),
        );
    }

    /// A row without a record (Parquet's); a batch holds rows of one kind.
    fn push_cells(&mut self, line: u64, cells: impl Iterator<Item = Option<&'r str>>) {
        self.lines.push(line);
        self.cells.extend(cells);
    }

    /// Prepare the rows held, append them to `items` and start again.
    fn flush<P>(&mut self, prepare: &dyn Prepare<P>, items: &mut Vec<Item<P>>) {
        if self.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.len());
        prepare.rows(self, &mut out);
        items.extend(self.lines.drain(..).zip(out).map(|(l, p)| Item::Row(l, p)));
        self.cells.clear();
        self.records.clear();
    }
}

/// A row (its line and what `prepare` made of its cells), or a malformed one.
pub enum Item<P> {
    Row(u64, P),
    Malformed(u64, String),
}

/// The rows of a tabular file, cut into chunks at record boundaries
/// (Parquet: by row group) and run through `prepare` on `threads` worker
/// threads; `consume` gets them in file order.
pub fn read_parallel<P: Send>(
    path: &Path,
    t: FileType,
    head: &Header,
    threads: usize,
    prepare: &dyn Prepare<P>,
    consume: &mut dyn FnMut(Item<P>),
) -> Result<(), String> {
    if t == FileType::Parquet {
        return parquet_parallel(path, head, threads, prepare, consume);
    }
    let mut file = File::open(path).map_err(|e| format!("cannot open: {}", e.kind()))?;
    file.seek(SeekFrom::Start(head.offset))
        .map_err(|e| format!("read error: {}", e.kind()))?;
    let csv = t == FileType::Csv;
    let chunks = Chunker::with_size(file, csv, head.line, parallel::chunk_size())
        .map(|c| c.map_err(|e| format!("read error: {}", e.kind())));
    let work = |_, chunk: Chunk| {
        if csv {
            csv_chunk(&chunk, head.names.len(), prepare)
        } else {
            jsonl_chunk(&chunk, &head.names, prepare)
        }
    };
    parallel::ordered(chunks, threads, work, |items: Vec<Item<P>>| {
        items.into_iter().for_each(&mut *consume);
        Ok(())
    })
}

fn csv_chunk<P>(chunk: &Chunk, ncols: usize, prepare: &dyn Prepare<P>) -> Vec<Item<P>> {
    let data = &chunk.data[..];
    let mut items = Vec::new();
    let mut batch = Rows::new(ncols, BATCH);
    // UTF-8 checked once for the whole chunk, when its records are its own
    // bytes: their text is then a slice of it (per record only if not).
    let mut whole: Option<Option<&str>> = None;
    let read = split::records(data, |line, record| {
        let line = chunk.first_line + line - 1;
        let reason = if record.len() != ncols {
            Some(format!("expected {ncols} fields, found {}", record.len()))
        } else if let Some(at) = record.offset() {
            // The chunk's own bytes: the row can wait in the batch.
            let range = at..at + record.bytes().len();
            let whole = *whole.get_or_insert_with(|| simdutf8::basic::from_utf8(data).ok());
            let text = match whole {
                Some(w) => w.get(range),
                None => simdutf8::basic::from_utf8(&data[range]).ok(),
            };
            text.map(|t| batch.push(line, t, &record))
                .is_none()
                .then(not_utf8)
        } else {
            // A copy (the csv crate's, unquoted): prepared at once, in order.
            batch.flush(prepare, &mut items);
            let text = simdutf8::basic::from_utf8(record.bytes()).ok();
            let mut one = Rows::new(ncols, 1);
            let row = text.map(|t| one.push(line, t, &record));
            one.flush(prepare, &mut items);
            row.is_none().then(not_utf8)
        };
        if let Some(reason) = reason {
            batch.flush(prepare, &mut items);
            items.push(Item::Malformed(line, reason));
        } else if batch.len() == BATCH {
            batch.flush(prepare, &mut items);
        }
        Ok::<(), ()>(())
    });
    batch.flush(prepare, &mut items);
    if let Err(split::Stop::Csv { line, reason }) = read {
        items.push(Item::Malformed(chunk.first_line + line - 1, reason));
    }
    items
}

fn not_utf8() -> String {
    "not valid UTF-8".into()
}

fn jsonl_chunk<P>(chunk: &Chunk, names: &[String], prepare: &dyn Prepare<P>) -> Vec<Item<P>> {
    let mut items = Vec::new();
    let mut texts: Vec<Option<String>> = Vec::with_capacity(names.len());
    for (i, bytes) in chunk.data.split(|b| *b == b'\n').enumerate() {
        let line = chunk.first_line + i as u64;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let object: Map<String, Value> = match serde_json::from_slice(bytes) {
            Ok(o) => o,
            Err(e) => {
                items.push(Item::Malformed(
                    line,
                    format!("not a JSON object ({:?})", e.classify()),
                ));
                continue;
            }
        };
        if let Some(extra) = object.keys().position(|k| !names.contains(k)) {
            let reason = format!(
                "key number {} is not among the first line's keys",
                extra + 1
            );
            items.push(Item::Malformed(line, reason));
            continue;
        }
        texts.clear();
        texts.extend(names.iter().map(|c| match object.get(c) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        }));
        let cells: Vec<Option<&str>> = texts
            .iter()
            .map(|t| t.as_deref().filter(|s| !s.is_empty()))
            .collect();
        items.push(Item::Row(line, prepare.row(&cells, None)));
    }
    items
}

/// Parquet by row group: each worker reads its own row groups.
fn parquet_parallel<P: Send>(
    path: &Path,
    head: &Header,
    threads: usize,
    prepare: &dyn Prepare<P>,
    consume: &mut dyn FnMut(Item<P>),
) -> Result<(), String> {
    // Where each row group's rows start: known from the footer.
    let bases: Vec<u64> = head
        .row_groups
        .iter()
        .scan(0, |acc, n| {
            *acc += n;
            Some(*acc - n)
        })
        .collect();
    let work = |_, g: usize| row_group(path, g, bases[g], &head.names, prepare);
    let groups = (0..head.row_groups.len()).map(Ok::<usize, String>);
    parallel::ordered(
        groups,
        threads,
        work,
        |items: Result<Vec<Item<P>>, String>| {
            items?.into_iter().for_each(&mut *consume);
            Ok(())
        },
    )
}

/// The rows of row group `g`, whose first row is row `first` of the file;
/// rows are numbered from 1 in place of lines.
fn row_group<P>(
    path: &Path,
    g: usize,
    first: u64,
    names: &[String],
    prepare: &dyn Prepare<P>,
) -> Result<Vec<Item<P>>, String> {
    // Each worker opens the file: clones of one share its offset.
    let file = File::open(path).map_err(|e| format!("cannot open: {}", e.kind()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_row_groups(vec![g]).with_batch_size(8192).build())
        .map_err(|e| format!("cannot read the Parquet file: {e}"))?;
    let mut items = Vec::new();
    let mut row = first;
    for batch in reader {
        let batch = batch.map_err(|e| format!("cannot read row {}: {e}", row + 1))?;
        let mut texts = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let text = cast(batch.column(i), &DataType::Utf8)
                .map_err(|_| format!("column {name:?}: its type cannot be read as text"))?;
            texts.push(text);
        }
        let strings: Vec<_> = texts.iter().map(|t| t.as_string::<i32>()).collect();
        let mut rows = Rows::new(names.len(), BATCH);
        for r in 0..batch.num_rows() {
            row += 1;
            rows.push_cells(
                row,
                strings.iter().map(|s| {
                    (!s.is_null(r))
                        .then(|| s.value(r))
                        .filter(|s| !s.is_empty())
                }),
            );
            if rows.len() == BATCH {
                rows.flush(prepare, &mut items);
            }
        }
        rows.flush(prepare, &mut items);
    }
    Ok(items)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Collects everything, for tests.
    #[derive(Default, Debug)]
    pub struct Collect {
        pub header: Vec<String>,
        pub rows: Vec<(u64, u64, Vec<Option<String>>)>,
        pub malformed: Vec<(u64, String)>,
    }

    impl Visitor for Collect {
        fn header(&mut self, names: &[String]) {
            self.header = names.to_vec();
        }
        fn row(&mut self, row: u64, line: u64, cells: &[Option<&str>]) {
            let cells = cells.iter().map(|c| c.map(str::to_string)).collect();
            self.rows.push((row, line, cells));
        }
        fn malformed(&mut self, line: u64, reason: String) {
            self.malformed.push((line, reason));
        }
    }

    fn collect(bytes: &[u8], t: FileType) -> Result<Collect, String> {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).expect("write");
        let mut c = Collect::default();
        read(&p, t, &mut c).map(|()| c)
    }

    #[test]
    fn csv_rows_with_quoted_newlines_and_bad_rows() {
        let c = collect(
            "\u{feff}a,b\n1,\"two\nlines\"\n3\n,5\n".as_bytes(),
            FileType::Csv,
        );
        let c = c.expect("read");
        assert_eq!(c.header, vec!["a", "b"]);
        assert_eq!(c.rows.len(), 2);
        assert_eq!(
            c.rows[0].2,
            vec![Some("1".into()), Some("two\nlines".into())]
        );
        assert_eq!(c.rows[1], (1, 5, vec![None, Some("5".into())]));
        assert_eq!(c.malformed[0], (4, "expected 2 fields, found 1".into()));
        assert_eq!(c.malformed.len(), 1, "{:?}", c.malformed);
    }

    /// Rows past a batch, among short rows and (`utf8`) invalid ones.
    fn batches_with_bad_rows(utf8: bool) {
        let bad = |i: u64| i % 37 == 5 || (!utf8 && i % 37 == 9);
        let mut bytes = b"a,b\n".to_vec();
        for i in 0..300u64 {
            match i % 37 {
                5 => bytes.extend_from_slice(b"short\n"),
                9 if !utf8 => bytes.extend_from_slice(b"bad\xff,1\n"),
                _ => bytes.extend_from_slice(format!("{i},x\n").as_bytes()),
            }
        }
        let c = collect(&bytes, FileType::Csv).expect("read");
        let lines = |keep: bool| (0..300u64).filter(move |&i| bad(i) != keep).map(|i| i + 2);
        let rows: Vec<u64> = c.rows.iter().map(|r| r.1).collect();
        assert_eq!(rows, lines(true).collect::<Vec<_>>());
        let malformed: Vec<u64> = c.malformed.iter().map(|m| m.0).collect();
        assert_eq!(malformed, lines(false).collect::<Vec<_>>());
        assert_eq!(c.rows[1].2, vec![Some("1".into()), Some("x".into())]);
    }

    #[test]
    fn batched_rows_keep_their_order_among_bad_ones() {
        batches_with_bad_rows(true);
        batches_with_bad_rows(false);
    }

    #[test]
    fn invalid_utf8_is_malformed_without_the_value() {
        let mut bytes = b"a,b\n1,2\n".to_vec();
        bytes.extend_from_slice(b"secret\xff,3\n");
        let c = collect(&bytes, FileType::Csv).expect("read");
        assert_eq!(c.malformed, vec![(3, "not valid UTF-8".to_string())]);
    }

    #[test]
    fn jsonl_rows_nulls_numbers_and_bad_lines() {
        let c = collect(
            b"{\"a\":\"x\",\"b\":1}\n\n{\"b\":2.5}\nnot json 13812345678\n{\"a\":\"y\",\"c\":1}\n",
            FileType::Jsonl,
        )
        .expect("read");
        assert_eq!(c.header, vec!["a", "b"]);
        assert_eq!(c.rows[1], (1, 3, vec![None, Some("2.5".into())]));
        assert_eq!(c.malformed.len(), 2);
        assert_eq!(c.malformed[0].0, 4);
        assert!(!c.malformed[0].1.contains("1381"));
        assert_eq!(c.malformed[1].0, 5);
    }

    #[test]
    fn an_empty_file_cannot_be_read_as_a_table() {
        assert!(collect(b"", FileType::Jsonl).is_err());
        assert!(collect(b"", FileType::Csv).is_err());
        assert!(collect(b"PAR1 broken", FileType::Parquet).is_err());
    }
}
