//! CSV records of a chunk, as the `csv` crate reads them (RFC 4180,
//! `flexible`, no header), without its byte-by-byte state machine when
//! it can be avoided: a chunk holding no `"` and no `\r` is split at
//! newlines and commas found eight bytes at a time, which is several
//! times faster and gives the same fields and line numbers. Any other
//! chunk goes through the `csv` crate. `tests` hold the two to each other.

use std::ops::Range;

/// One record: its fields are ranges of `bytes`.
#[derive(Debug, Clone, Copy)]
pub struct Rec<'a> {
    bytes: &'a [u8],
    bounds: &'a [Range<usize>],
    /// Where `bytes` start in the data read, when they are its own bytes
    /// (the `memchr` split; the `csv` crate copies records, unquoted).
    offset: Option<usize>,
}

impl<'a> Rec<'a> {
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// Every field's bytes lie in here (with separators, or not).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn range(&self, i: usize) -> Option<Range<usize>> {
        self.bounds.get(i).cloned()
    }

    pub fn field(&self, i: usize) -> &'a [u8] {
        &self.bytes[self.bounds[i].clone()]
    }

    /// Where the record's bytes start in the data read, when they are
    /// that data's own (so a caller may keep them past the callback).
    pub fn offset(&self) -> Option<usize> {
        self.offset
    }
}

/// Why reading stopped: the CSV could not be read (at a line, with a
/// reason that never holds data), or the caller's own error.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop<E> {
    Csv { line: u64, reason: String },
    Caller(E),
}

/// The kind of a CSV error, never the data.
pub fn reason(e: &::csv::Error) -> String {
    match e.kind() {
        ::csv::ErrorKind::Io(io) => format!("read error: {}", io.kind()),
        ::csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        ::csv::ErrorKind::UnequalLengths { .. } => "unequal record lengths".into(),
        _ => "malformed CSV".into(),
    }
}

/// Calls `f(line, record)` for every record of `data` in order; `line` is
/// the 1-based line within `data` that the `csv` crate gives the record.
pub fn records<E>(
    data: &[u8],
    mut f: impl FnMut(u64, Rec<'_>) -> Result<(), E>,
) -> Result<(), Stop<E>> {
    if memchr::memchr2(b'"', b'\r', data).is_some() {
        return with_csv_crate(data, f);
    }
    let mut bounds: Vec<Range<usize>> = Vec::new();
    // The csv crate gives a record the line its read started on: blank
    // lines skipped before a record count for the record after it.
    let (mut newlines, mut record_line) = (0u64, 1u64);
    let (mut start, mut from) = (0, 0);
    for at in Separators::new(data) {
        if data[at] == b',' {
            bounds.push(from - start..at - start);
            from = at + 1;
            continue;
        }
        newlines += 1;
        if at > start {
            bounds.push(from - start..at - start);
            let rec = Rec {
                bytes: &data[start..at],
                bounds: &bounds,
                offset: Some(start),
            };
            f(record_line, rec).map_err(Stop::Caller)?;
            record_line = newlines + 1;
        }
        bounds.clear();
        (start, from) = (at + 1, at + 1);
    }
    if start < data.len() {
        bounds.push(from - start..data.len() - start);
        let rec = Rec {
            bytes: &data[start..],
            bounds: &bounds,
            offset: Some(start),
        };
        f(record_line, rec).map_err(Stop::Caller)?;
    }
    Ok(())
}

/// The positions of `,` and `\n` in some bytes, in order, found eight
/// bytes at a time. Records are short: a `memchr` call per field or line
/// cost several times more than the search itself.
struct Separators<'a> {
    data: &'a [u8],
    /// Offset of the next eight bytes to look at.
    next: usize,
    /// Separators among the eight before `next`: the high bit of each byte.
    found: u64,
}

impl<'a> Separators<'a> {
    fn new(data: &'a [u8]) -> Self {
        Separators {
            data,
            next: 0,
            found: 0,
        }
    }
}

/// The high bit of every byte of `word` equal to `b` (exact: no carries
/// cross bytes).
fn bytes_equal(word: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let x = word ^ (u64::from(b) * 0x0101_0101_0101_0101);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

impl Iterator for Separators<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.found == 0 {
            let rest = self.data.get(self.next..).filter(|r| !r.is_empty())?;
            let word = match rest.first_chunk::<8>() {
                Some(w) => u64::from_le_bytes(*w),
                None => {
                    // Past the end, zeros: neither separator.
                    let mut w = [0u8; 8];
                    w[..rest.len()].copy_from_slice(rest);
                    u64::from_le_bytes(w)
                }
            };
            self.found = bytes_equal(word, b',') | bytes_equal(word, b'\n');
            self.next += 8;
        }
        let at = self.next - 8 + self.found.trailing_zeros() as usize / 8;
        self.found &= self.found - 1;
        Some(at)
    }
}

/// The number of records in `data` (a chunk tells it so that the next
/// chunks know the index of their first row).
pub fn count(data: &[u8]) -> Result<u64, Stop<()>> {
    let mut n = 0;
    records(data, |_, _| {
        n += 1;
        Ok::<(), ()>(())
    })?;
    Ok(n)
}

fn with_csv_crate<E>(
    data: &[u8],
    mut f: impl FnMut(u64, Rec<'_>) -> Result<(), E>,
) -> Result<(), Stop<E>> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut record = ::csv::ByteRecord::new();
    let mut bounds: Vec<Range<usize>> = Vec::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(1, |p| p.line());
                return Err(Stop::Csv {
                    line,
                    reason: reason(&e),
                });
            }
        }
        bounds.clear();
        bounds.extend((0..record.len()).filter_map(|i| record.range(i)));
        let line = record.position().map_or(1, |p| p.line());
        let rec = Rec {
            bytes: record.as_slice(),
            bounds: &bounds,
            offset: None,
        };
        f(line, rec).map_err(Stop::Caller)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Seen = Vec<(u64, Vec<Vec<u8>>)>;

    fn ours(data: &[u8]) -> Seen {
        let mut seen = Vec::new();
        records(data, |line, r| {
            seen.push((line, (0..r.len()).map(|i| r.field(i).to_vec()).collect()));
            Ok::<(), ()>(())
        })
        .expect("read");
        seen
    }

    fn theirs(data: &[u8]) -> Seen {
        let mut seen = Vec::new();
        with_csv_crate(data, |line, r| {
            seen.push((line, (0..r.len()).map(|i| r.field(i).to_vec()).collect()));
            Ok::<(), ()>(())
        })
        .expect("read");
        seen
    }

    #[test]
    fn blank_lines_and_a_missing_last_newline() {
        for data in [
            &b"a,b\n\n\nc,,d\n,\nlast"[..],
            b"\n\nx\n",
            b"",
            b"\n",
            b"one\n",
        ] {
            assert_eq!(
                ours(data),
                theirs(data),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        assert_eq!(ours(b"a,b\n\nc")[1].0, 2, "the csv crate's line for c");
    }

    #[test]
    fn fast_records_tell_where_they_lie() {
        let data = b"a,b\n\ncc,d\nlast";
        let mut seen = Vec::new();
        records(data, |_, r| {
            let at = r.offset().expect("the memchr split");
            assert_eq!(&data[at..at + r.bytes().len()], r.bytes());
            seen.push(at);
            Ok::<(), ()>(())
        })
        .expect("read");
        assert_eq!(seen, vec![0, 5, 10]);
        records(b"\"a\",b\n", |_, r| {
            assert_eq!(r.offset(), None, "the csv crate's copy");
            Ok::<(), ()>(())
        })
        .expect("read");
    }

    #[test]
    fn the_caller_can_stop() {
        let r = records(
            b"a\nb\nc\n",
            |line, _| if line == 2 { Err(line) } else { Ok(()) },
        );
        assert_eq!(r, Err(Stop::Caller(2)));
        assert_eq!(count(b"a\n\"b\nc\",d\n\ne").expect("count"), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn separators_are_every_comma_and_newline(data in proptest::collection::vec(
            prop_oneof![Just(b','), Just(b'\n'), Just(0x2c | 0x80), Just(0x0a | 0x80), any::<u8>()], 0..80)) {
            let want: Vec<usize> = (0..data.len()).filter(|&i| data[i] == b',' || data[i] == b'\n').collect();
            prop_assert_eq!(Separators::new(&data).collect::<Vec<_>>(), want);
        }

        // Without quotes or carriage returns: the fast path, field for
        // field and line for line what the csv crate reads.
        #[test]
        fn fast_path_reads_what_the_csv_crate_reads(data in "[a,\n 张1]{0,60}") {
            prop_assert_eq!(ours(data.as_bytes()), theirs(data.as_bytes()));
        }

        // With them: the csv crate itself.
        #[test]
        fn any_chunk_reads_what_the_csv_crate_reads(data in "[a,\"\r\n 张]{0,60}") {
            prop_assert_eq!(ours(data.as_bytes()), theirs(data.as_bytes()));
        }
    }
}
