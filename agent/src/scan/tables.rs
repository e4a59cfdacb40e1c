//! ACRO's table rules, with ACRO's names and defaults, on `Table` files.
//!
//! A table file comes in one of two shapes:
//! - **totals**: one row per cell with one or more count columns (and
//!   perhaps magnitude totals). Counts get `threshold` (fewer than
//!   `threshold`, zero included), `zeros` (a zero count), `negative` and
//!   `missing` (review). Dominance cannot be judged from totals: a
//!   magnitude column makes the file `review` (`dominance-unchecked`).
//! - **contributors**: no count column; each row is one contributor and
//!   the cells are the key combinations, as ACRO's `crosstab` builds them
//!   (every combination of the keys' values, so empty cells are zeros).
//!   Per cell: `threshold` and `zeros` on the number of rows, and per
//!   magnitude column `nk-rule` (the `nkN` largest make up `nkK` or more
//!   of the total), `p-ratio` ((total - two largest) / largest below
//!   `pRatio`), `all-values-are-same`, `negative` (any negative value in
//!   the column: dominance is then not defined, the cells holding one are
//!   `review`) and `missing` (review).

use std::collections::{BTreeMap, BTreeSet};

use super::manifest::Columns;
use super::policy::Policy;
use super::report::{Checks, Position, Verdict};

/// Column names inferred as counts (lower-cased).
const COUNT_NAMES: &[&str] = &[
    "n",
    "count",
    "counts",
    "cnt",
    "freq",
    "frequency",
    "人数",
    "数量",
    "计数",
    "频数",
    "户数",
];

/// Why a table of totals with magnitudes is reviewed: ACRO checks
/// dominance only on tables it builds from the contributions, and gives
/// anything else (`custom_output`) to a person; so do we.
pub const DOMINANCE_UNCHECKED: &str = "dominance not checkable without contributions: \
nk-rule and p-ratio need each contributor's value, and this table holds totals";

/// Cross products larger than this are not expanded for zeros.
pub const MAX_CROSS: usize = 100_000;

/// Which columns (by index) play which role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spec {
    pub keys: Vec<usize>,
    pub counts: Vec<usize>,
    pub magnitudes: Vec<usize>,
}

fn is_number(s: &str) -> bool {
    s.trim().parse::<f64>().is_ok_and(f64::is_finite)
}

/// Declared lists by name; absent lists inferred from the values: text
/// columns are keys, numeric ones counts (by name) or magnitudes.
pub fn spec(
    header: &[String],
    rows: &[Vec<Option<String>>],
    declared: Option<&Columns>,
) -> Result<Spec, String> {
    let find = |names: &Option<Vec<String>>| -> Result<Option<Vec<usize>>, String> {
        names
            .as_ref()
            .map(|ns| {
                ns.iter()
                    .map(|n| {
                        header
                            .iter()
                            .position(|h| h == n)
                            .ok_or_else(|| format!("declared column {n:?} is not in the file"))
                    })
                    .collect()
            })
            .transpose()
    };
    let empty = Columns::default();
    let d = declared.unwrap_or(&empty);
    let (keys, counts, magnitudes) = (find(&d.keys)?, find(&d.counts)?, find(&d.magnitudes)?);
    let taken: BTreeSet<usize> = [&keys, &counts, &magnitudes]
        .into_iter()
        .flatten()
        .flatten()
        .copied()
        .collect();
    let numeric = |i: usize| {
        rows.iter().any(|r| r[i].is_some())
            && rows.iter().all(|r| r[i].as_deref().is_none_or(is_number))
    };
    let free: Vec<usize> = (0..header.len()).filter(|i| !taken.contains(i)).collect();
    let count_name = |i: usize| COUNT_NAMES.contains(&header[i].trim().to_lowercase().as_str());
    Ok(Spec {
        keys: keys.unwrap_or_else(|| free.iter().copied().filter(|&i| !numeric(i)).collect()),
        counts: counts.unwrap_or_else(|| {
            free.iter()
                .copied()
                .filter(|&i| numeric(i) && count_name(i))
                .collect()
        }),
        magnitudes: magnitudes.unwrap_or_else(|| {
            free.iter()
                .copied()
                .filter(|&i| numeric(i) && !count_name(i))
                .collect()
        }),
    })
}

/// Run the table rules on the collected rows.
pub fn check(
    checks: &mut Checks,
    spec: &Spec,
    rows: &[(u64, Vec<Option<String>>)],
    policy: &Policy,
) {
    if spec.keys.is_empty() {
        checks.note(
            "table-shape",
            Verdict::Review,
            "no key column declared or found (text columns are keys): the cells cannot be told apart",
        );
        return;
    }
    if spec.counts.is_empty() {
        contributors(checks, spec, rows, policy);
    } else {
        totals(checks, spec, rows, policy);
    }
}

/// A number, or the check it fires.
fn number(v: Option<&str>) -> Result<f64, (&'static str, Verdict)> {
    match v {
        None => Err(("missing", Verdict::Review)),
        Some(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or(("malformed", Verdict::Fail)),
    }
}

fn totals(checks: &mut Checks, spec: &Spec, rows: &[(u64, Vec<Option<String>>)], p: &Policy) {
    for (row, cells) in rows {
        for &c in &spec.counts {
            let at = Position::at(*row, c);
            match number(cells[c].as_deref()) {
                Err((name, v)) => checks.hit(name, v, at),
                Ok(n) if n < 0.0 => checks.hit("negative", Verdict::Review, at),
                Ok(n) => {
                    if n == 0.0 && p.zeros_disclosive {
                        checks.hit("zeros", Verdict::Fail, at.clone());
                    }
                    if n < p.threshold as f64 {
                        checks.hit("threshold", Verdict::Fail, at);
                    }
                }
            }
        }
        for &m in &spec.magnitudes {
            let at = Position::at(*row, m);
            match number(cells[m].as_deref()) {
                Err((name, v)) => checks.hit(name, v, at),
                Ok(x) if x < 0.0 => checks.hit("negative", Verdict::Review, at),
                Ok(_) => {}
            }
        }
    }
    if !spec.magnitudes.is_empty() {
        checks.note("dominance-unchecked", Verdict::Review, DOMINANCE_UNCHECKED);
    }
}

/// One cell of a contributor table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cell {
    /// Index of each key's value among that key's sorted distinct values.
    pub key: Vec<usize>,
    pub first_row: Option<u64>,
    pub count: u64,
    /// Per magnitude column: the values, and whether one was missing.
    pub values: Vec<Vec<f64>>,
    pub missing: Vec<bool>,
    /// Checks that fired, with the magnitude column (None: the count).
    pub flags: BTreeMap<(&'static str, Option<usize>), Verdict>,
}

/// The cells of a contributor table with ACRO's flags; malformed
/// magnitudes are reported through `bad`.
pub fn contributor_cells(
    spec: &Spec,
    rows: &[(u64, Vec<Option<String>>)],
    p: &Policy,
    mut bad: impl FnMut(u64, usize),
) -> (Vec<Vec<String>>, Vec<Cell>) {
    let distinct: Vec<Vec<String>> = spec
        .keys
        .iter()
        .map(|&k| {
            let set: BTreeSet<&str> = rows
                .iter()
                .map(|(_, r)| r[k].as_deref().unwrap_or(""))
                .collect();
            set.into_iter().map(str::to_string).collect()
        })
        .collect();
    let mut cells: BTreeMap<Vec<usize>, Cell> = BTreeMap::new();
    let nm = spec.magnitudes.len();
    for (row, r) in rows {
        let key: Vec<usize> = spec
            .keys
            .iter()
            .zip(&distinct)
            .map(|(&k, d)| {
                d.binary_search_by(|x| x.as_str().cmp(r[k].as_deref().unwrap_or("")))
                    .unwrap_or(0)
            })
            .collect();
        let cell = cells.entry(key.clone()).or_insert_with(|| Cell {
            key,
            first_row: Some(*row),
            values: vec![Vec::new(); nm],
            missing: vec![false; nm],
            ..Cell::default()
        });
        cell.count += 1;
        for (j, &m) in spec.magnitudes.iter().enumerate() {
            match number(r[m].as_deref()) {
                Ok(x) => cell.values[j].push(x),
                Err(("missing", _)) => cell.missing[j] = true,
                Err(_) => bad(*row, m),
            }
        }
    }
    let cross: usize = distinct.iter().map(Vec::len).product();
    if cross <= MAX_CROSS {
        for key in cross_product(&distinct) {
            cells.entry(key.clone()).or_insert_with(|| Cell {
                key,
                values: vec![Vec::new(); nm],
                missing: vec![false; nm],
                ..Cell::default()
            });
        }
    }
    let negative: Vec<bool> = (0..nm)
        .map(|j| cells.values().any(|c| c.values[j].iter().any(|x| *x < 0.0)))
        .collect();
    let mut cells: Vec<Cell> = cells.into_values().collect();
    for c in &mut cells {
        flag_cell(c, &negative, p);
    }
    (distinct, cells)
}

fn cross_product(distinct: &[Vec<String>]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for d in distinct {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                (0..d.len()).map(move |i| {
                    let mut k = prefix.clone();
                    k.push(i);
                    k
                })
            })
            .collect();
    }
    out
}

fn flag_cell(c: &mut Cell, negative: &[bool], p: &Policy) {
    if c.count < p.threshold {
        c.flags.insert(("threshold", None), Verdict::Fail);
    }
    if c.count == 0 && p.zeros_disclosive {
        c.flags.insert(("zeros", None), Verdict::Fail);
    }
    for (j, values) in c.values.iter().enumerate() {
        if c.missing[j] {
            c.flags.insert(("missing", Some(j)), Verdict::Review);
        }
        if negative[j] {
            if values.iter().any(|x| *x < 0.0) {
                c.flags.insert(("negative", Some(j)), Verdict::Review);
            }
            continue;
        }
        if c.count == 0 || values.is_empty() {
            continue;
        }
        for (name, fired) in dominance(values, p) {
            if fired {
                c.flags.insert((name, Some(j)), Verdict::Fail);
            }
        }
    }
}

/// ACRO's `nk-rule`, `p-ratio` and `all-values-are-same` on one cell's
/// values (none negative), computed as ACRO does: a total of zero leaves
/// nk undefined (not fired); a largest value of zero makes p the
/// remainder itself.
pub fn dominance(values: &[f64], p: &Policy) -> [(&'static str, bool); 3] {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let sum: f64 = sorted.iter().sum();
    let top_n: f64 = sorted.iter().take(p.nk_n).sum();
    let nk = sum != 0.0 && top_n / sum >= p.nk_k;
    let top1 = sorted[0];
    let rest = sum - sorted.iter().take(2).sum::<f64>();
    let ratio = if top1 == 0.0 { rest } else { rest / top1 };
    let same = sorted.iter().all(|x| *x == top1);
    [
        ("nk-rule", nk),
        ("p-ratio", ratio < p.p_ratio),
        ("all-values-are-same", same),
    ]
}

fn contributors(checks: &mut Checks, spec: &Spec, rows: &[(u64, Vec<Option<String>>)], p: &Policy) {
    let (_, cells) = contributor_cells(spec, rows, p, |row, col| {
        checks.hit("malformed", Verdict::Fail, Position::at(row, col));
    });
    for c in cells {
        for ((name, j), verdict) in c.flags {
            let at = Position {
                row: c.first_row,
                column: j.map(|j| spec.magnitudes[j]),
                cell: Some(c.key.clone()),
                ..Position::default()
            };
            checks.hit(name, verdict, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: &[&[&str]]) -> Vec<(u64, Vec<Option<String>>)> {
        data.iter()
            .enumerate()
            .map(|(i, r)| {
                let cells = r
                    .iter()
                    .map(|s| (!s.is_empty()).then(|| s.to_string()))
                    .collect();
                (i as u64, cells)
            })
            .collect()
    }

    fn header(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn run(h: &[&str], data: &[&[&str]], p: &Policy) -> Checks {
        let rows = rows(data);
        let plain: Vec<Vec<Option<String>>> = rows.iter().map(|r| r.1.clone()).collect();
        let spec = spec(&header(h), &plain, None).expect("spec");
        let mut c = Checks::default();
        check(&mut c, &spec, &rows, p);
        c
    }

    #[test]
    fn a_count_of_exactly_the_threshold_passes_one_less_fails() {
        let p = Policy::default();
        let c = run(&["district", "n"], &[&["东", "10"], &["西", "11"]], &p);
        assert_eq!(c.verdict(), Verdict::Pass, "{c:?}");
        let c = run(&["district", "n"], &[&["东", "10"], &["西", "9"]], &p);
        let t = c.get("threshold").expect("fired");
        assert_eq!((t.count, t.verdict), (1, Verdict::Fail));
        assert_eq!(t.positions, vec![Position::at(1, 1)]);
    }

    #[test]
    fn zeros_negatives_and_missing_counts() {
        let p = Policy::default();
        let c = run(
            &["d", "n"],
            &[&["a", "0"], &["b", "-3"], &["c", ""], &["e", "20"]],
            &p,
        );
        assert_eq!(c.get("zeros").map(|z| z.count), Some(1));
        assert_eq!(c.get("threshold").map(|z| z.count), Some(1));
        assert_eq!(c.get("negative").map(|z| z.verdict), Some(Verdict::Review));
        assert_eq!(c.get("missing").map(|z| z.verdict), Some(Verdict::Review));
        let lenient = Policy {
            zeros_disclosive: false,
            ..Policy::default()
        };
        let c = run(&["d", "n"], &[&["a", "0"]], &lenient);
        assert!(c.get("zeros").is_none());
    }

    #[test]
    fn totals_with_magnitudes_need_review() {
        let c = run(
            &["d", "n", "income"],
            &[&["a", "12", "5000"]],
            &Policy::default(),
        );
        assert_eq!(c.verdict(), Verdict::Review);
        let d = c.get("dominance-unchecked").expect("fired");
        assert_eq!(d.detail.as_deref(), Some(DOMINANCE_UNCHECKED));
        assert!(DOMINANCE_UNCHECKED.starts_with("dominance not checkable without contributions"));
        // Counts alone have no dominance to check.
        let c = run(&["d", "n"], &[&["a", "12"]], &Policy::default());
        assert_eq!(c.verdict(), Verdict::Pass, "{c:?}");
    }

    #[test]
    fn the_shape_is_inferred_or_declared() {
        let h = header(&["区", "人数", "收入", "年份"]);
        let data = vec![vec![
            Some("东".to_string()),
            Some("3".into()),
            Some("2.5".into()),
            Some("2024".into()),
        ]];
        let s = spec(&h, &data, None).expect("spec");
        assert_eq!(
            s,
            Spec {
                keys: vec![0],
                counts: vec![1],
                magnitudes: vec![2, 3]
            }
        );
        let declared = Columns {
            keys: Some(vec!["区".into(), "年份".into()]),
            ..Columns::default()
        };
        let s = spec(&h, &data, Some(&declared)).expect("spec");
        assert_eq!(
            s,
            Spec {
                keys: vec![0, 3],
                counts: vec![1],
                magnitudes: vec![2]
            }
        );
        let wrong = Columns {
            counts: Some(vec!["n".into()]),
            ..Columns::default()
        };
        assert!(spec(&h, &data, Some(&wrong)).is_err());
    }

    #[test]
    fn dominance_at_the_boundaries() {
        let p = Policy::default();
        let fired = |v: &[f64]| -> Vec<&str> {
            dominance(v, &p)
                .iter()
                .filter(|(_, f)| *f)
                .map(|(n, _)| *n)
                .collect()
        };
        // Two largest are exactly 90 % of the total: nk fires (>=).
        assert!(fired(&[45.0, 45.0, 5.0, 5.0]).contains(&"nk-rule"));
        assert!(!fired(&[44.0, 45.0, 6.0, 5.0]).contains(&"nk-rule"));
        // Remainder exactly 10 % of the largest: p-ratio does not fire (<).
        assert!(!fired(&[100.0, 50.0, 10.0]).contains(&"p-ratio"));
        assert!(fired(&[100.0, 50.0, 9.0]).contains(&"p-ratio"));
        assert_eq!(fired(&[3.0, 3.0, 3.0]), vec!["all-values-are-same"]);
        // All zero: nk undefined, p-ratio fires as in ACRO.
        assert_eq!(
            fired(&[0.0, 0.0, 0.0]),
            vec!["p-ratio", "all-values-are-same"]
        );
    }

    #[test]
    fn contributor_tables_get_crosstab_cells_with_zeros() {
        let mut data: Vec<Vec<&str>> = Vec::new();
        for i in 0..12 {
            data.push(vec!["a", "x", if i == 0 { "1000" } else { "10" }]);
            data.push(vec!["a", "y", "10"]);
        }
        for _ in 0..10 {
            data.push(vec!["b", "x", "10"]);
        }
        let refs: Vec<&[&str]> = data.iter().map(Vec::as_slice).collect();
        let rows = rows(&refs);
        let spec = Spec {
            keys: vec![0, 1],
            counts: vec![],
            magnitudes: vec![2],
        };
        let (distinct, cells) = contributor_cells(&spec, &rows, &Policy::default(), |_, _| {});
        assert_eq!(distinct, vec![vec!["a", "b"], vec!["x", "y"]]);
        assert_eq!(cells.len(), 4);
        let flags = |k: [usize; 2]| -> Vec<&str> {
            let c = cells.iter().find(|c| c.key == k).expect("cell");
            c.flags.keys().map(|(n, _)| *n).collect()
        };
        assert_eq!(flags([0, 0]), vec!["nk-rule"]);
        assert_eq!(flags([0, 1]), vec!["all-values-are-same"]);
        assert_eq!(flags([1, 0]), vec!["all-values-are-same"]);
        assert_eq!(flags([1, 1]), vec!["threshold", "zeros"]);
    }

    #[test]
    fn negative_values_make_dominance_undefined() {
        let mut data: Vec<Vec<&str>> = Vec::new();
        for i in 0..10 {
            data.push(vec!["a", if i == 0 { "-5" } else { "7" }]);
            data.push(vec!["b", if i == 0 { "900" } else { "1" }]);
        }
        let refs: Vec<&[&str]> = data.iter().map(Vec::as_slice).collect();
        let c = run(&["k", "v"], &refs, &Policy::default());
        assert_eq!(c.get("negative").map(|n| n.count), Some(1));
        assert!(c.get("nk-rule").is_none(), "{c:?}");
        assert_eq!(c.verdict(), Verdict::Review);
    }
}
