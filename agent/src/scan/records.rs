//! Reading CSV, JSON Lines and Parquet files row by row for the checks:
//! every value as text (`None` when null, missing or an empty CSV field).
//! A malformed row is reported by line (Parquet: row) number and a reason
//! that never holds the value; reading goes on.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_cast::cast;
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};

use super::filetype::FileType;

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

/// Read a whole file; `Err` when it cannot be read at all (no header,
/// not the format, an I/O error).
pub fn read(path: &Path, t: FileType, v: &mut dyn Visitor) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {}", e.kind()))?;
    match t {
        FileType::Csv => read_csv(file, v),
        FileType::Jsonl => read_jsonl(file, v),
        FileType::Parquet => read_parquet(file, v),
        other => Err(format!("{} is not a table format", other.name())),
    }
}

fn read_csv(file: File, v: &mut dyn Visitor) -> Result<(), String> {
    let mut r = ::csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(BUFFER)
        .from_reader(file);
    let header = r
        .byte_headers()
        .map_err(|e| format!("cannot read the CSV header: {}", csv_reason(&e)))?;
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = if i == 0 {
                f.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(f)
            } else {
                f
            };
            String::from_utf8_lossy(f).into_owned()
        })
        .collect();
    if names.is_empty() || (names.len() == 1 && names[0].is_empty()) {
        return Err("the CSV file has no header row".into());
    }
    v.header(&names);
    let mut record = ::csv::ByteRecord::new();
    let mut row = 0u64;
    loop {
        match r.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                v.malformed(line, csv_reason(&e));
                return Ok(());
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != names.len() {
            let reason = format!("expected {} fields, found {}", names.len(), record.len());
            v.malformed(line, reason);
            continue;
        }
        let Ok(text) = simdutf8::basic::from_utf8(record.as_slice()) else {
            v.malformed(line, "not valid UTF-8".into());
            continue;
        };
        let cells: Vec<Option<&str>> = (0..record.len())
            .map(|i| record.range(i).map(|r| &text[r]).filter(|s| !s.is_empty()))
            .collect();
        v.row(row, line, &cells);
        row += 1;
    }
}

/// The kind of a CSV error, never the data.
fn csv_reason(e: &::csv::Error) -> String {
    match e.kind() {
        ::csv::ErrorKind::Io(io) => format!("read error: {}", io.kind()),
        ::csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        ::csv::ErrorKind::UnequalLengths { .. } => "unequal record lengths".into(),
        _ => "malformed CSV".into(),
    }
}

fn read_jsonl(file: File, v: &mut dyn Visitor) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(BUFFER, file);
    let mut buf = Vec::new();
    let (mut line, mut row) = (0u64, 0u64);
    let mut names: Option<Vec<String>> = None;
    let mut texts: Vec<Option<String>> = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("read error: {}", e.kind()))?;
        if n == 0 {
            break;
        }
        line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let object: Map<String, Value> = match serde_json::from_slice(&buf) {
            Ok(o) => o,
            Err(e) => {
                v.malformed(line, format!("not a JSON object ({:?})", e.classify()));
                continue;
            }
        };
        let cols = names.get_or_insert_with(|| {
            let n: Vec<String> = object.keys().cloned().collect();
            v.header(&n);
            n
        });
        if let Some(extra) = object.keys().position(|k| !cols.contains(k)) {
            let reason = format!(
                "key number {} is not among the first line's keys",
                extra + 1
            );
            v.malformed(line, reason);
            continue;
        }
        texts.clear();
        texts.extend(cols.iter().map(|c| match object.get(c) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        }));
        let cells: Vec<Option<&str>> = texts
            .iter()
            .map(|t| t.as_deref().filter(|s| !s.is_empty()))
            .collect();
        v.row(row, line, &cells);
        row += 1;
    }
    if names.is_none() {
        return Err("the JSON Lines file holds no object".into());
    }
    Ok(())
}

fn read_parquet(file: File, v: &mut dyn Visitor) -> Result<(), String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    v.header(&names);
    let reader = builder
        .with_batch_size(8192)
        .build()
        .map_err(|e| format!("cannot read the Parquet file: {e}"))?;
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| format!("cannot read row {}: {e}", row + 1))?;
        let mut texts = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let text = cast(batch.column(i), &DataType::Utf8)
                .map_err(|_| format!("column {name:?}: its type cannot be read as text"))?;
            texts.push(text);
        }
        let strings: Vec<_> = texts.iter().map(|t| t.as_string::<i32>()).collect();
        let mut cells: Vec<Option<&str>> = Vec::with_capacity(names.len());
        for r in 0..batch.num_rows() {
            cells.clear();
            cells.extend(strings.iter().map(|s| {
                (!s.is_null(r))
                    .then(|| s.value(r))
                    .filter(|s| !s.is_empty())
            }));
            v.row(row, row + 1, &cells);
            row += 1;
        }
    }
    Ok(())
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
