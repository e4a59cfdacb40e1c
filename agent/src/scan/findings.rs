//! The checks on each row's values, run on the worker threads: shapes
//! (identifiers, pseudonyms), raw personal values, a unique raw
//! quasi-identifier combination, declared types. Rows come in batches so
//! that their raw-value look-ups, each a likely cache miss, overlap.

use super::identifiers::{self, Hit};
use super::raw::Matcher;
use super::records::{Prepare, Rows};
use super::schema;

/// What the checks on values found in one row: for most rows nothing.
/// Every row's result waits until the rows before it are consumed, so
/// what was found is one pointer, not three fields (80 bytes written and
/// read back a row).
pub struct Findings {
    pub found: Option<Box<Found>>,
    /// The row itself, when a table or microdata check needs it (every
    /// row then: not boxed again).
    pub cells: Option<Vec<Option<String>>>,
}

/// What a row's checks found.
#[derive(Default)]
pub struct Found {
    pub hits: Vec<(usize, Hit)>,
    pub unique_combination: bool,
    /// Columns whose value is not of the declared type.
    pub misfits: Vec<usize>,
}

/// The checks of one file's rows.
pub struct RowChecks<'a> {
    pub matcher: Option<&'a Matcher<'a>>,
    /// Keep each row's values (tables, microdata).
    pub keep: bool,
    /// The declared types, when the header is the declared one.
    pub types: Option<&'a [schema::Type]>,
}

impl RowChecks<'_> {
    /// Everything but the raw-value look-ups. `record`: bytes holding
    /// every value (a CSV record), checked whole first: when no value in
    /// it can hold an identifier or a pseudonym, the per-value shape
    /// checks are skipped.
    fn findings(&self, cells: &[Option<&str>], record: Option<&[u8]>) -> Findings {
        let mut hits = Vec::new();
        if !record.is_some_and(identifiers::quiet) {
            let mut found = Vec::new();
            for (c, v) in cells.iter().enumerate() {
                if let Some(v) = v {
                    identifiers::shape_hits(v, &mut found);
                    hits.extend(found.drain(..).map(|h| (c, h)));
                }
            }
        }
        let found = Found {
            hits,
            unique_combination: self.matcher.is_some_and(|m| m.unique_combination(cells)),
            misfits: self
                .types
                .map_or_else(Vec::new, |t| schema::misfits(t, cells)),
        };
        let nothing =
            found.hits.is_empty() && !found.unique_combination && found.misfits.is_empty();
        Findings {
            found: (!nothing).then(|| Box::new(found)),
            cells: self
                .keep
                .then(|| cells.iter().map(|c| c.map(str::to_string)).collect()),
        }
    }

    /// The findings of `n` rows of `width` cells each, one after the
    /// other in `cells` (`record(i)`: row `i`'s record), pushed to `out`.
    /// The raw-value look-ups miss the cache: every value's line is asked
    /// for first, the other checks run meanwhile, then the values are
    /// looked up, their hits after the row's others.
    fn check<'v>(
        &self,
        cells: &'v [Option<&'v str>],
        (n, width): (usize, usize),
        record: impl Fn(usize) -> Option<&'v [u8]>,
        out: &mut Vec<Findings>,
    ) {
        let hashes: Vec<Option<u64>> = match self.matcher {
            Some(m) => cells
                .iter()
                .map(|v| v.and_then(|v| m.prefetch(v)))
                .collect(),
            None => Vec::new(),
        };
        let first = out.len();
        out.extend((0..n).map(|i| self.findings(&cells[i * width..(i + 1) * width], record(i))));
        let Some(m) = self.matcher else { return };
        for (k, (v, h)) in cells.iter().zip(hashes).enumerate() {
            if let (Some(v), Some(h)) = (v, h)
                && m.is_raw_hashed(v, h)
            {
                let found = out[first + k / width].found.get_or_insert_default();
                found.hits.push((k % width, identifiers::RAW_VALUE));
            }
        }
    }
}

impl Prepare<Findings> for RowChecks<'_> {
    fn row(&self, cells: &[Option<&str>], record: Option<&[u8]>) -> Findings {
        let mut out = Vec::with_capacity(1);
        self.check(cells, (1, cells.len()), |_| record, &mut out);
        // `check` pushes one per row.
        out.swap_remove(0)
    }

    fn rows(&self, rows: &Rows<'_>, out: &mut Vec<Findings>) {
        let shape = (rows.len(), rows.width());
        self.check(rows.all_cells(), shape, |i| rows.record(i), out);
    }
}
