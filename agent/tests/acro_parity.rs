//! agent scan's table rules against ACRO itself (the SACRO project's
//! checker, pinned in agent/python/requirements.txt): the same contributor
//! tables, ACRO's default risk appetite, and for every check the same
//! flagged cells and the same table verdict.
//!
//! ACRO runs from `target/pyvenv` (made by agent/python/venv.sh, which
//! `make unit` calls) or the Python named by `CLEANROOM_PYTHON`. Without
//! it the test says why and passes without comparing.
//!
//! Names: ACRO 1.0's `MinimumThresholdCheck`, `PresenceOfZeroCheck`,
//! `NKCheck` and `PPercentCheck` are our `threshold`, `zeros`, `nk-rule`
//! and `p-ratio`; with a negative value in the table ACRO's dominance
//! checks flag the cells holding one, which is our `negative`. ACRO 1.0
//! no longer runs `all-values-are-same` on sums, so it is not compared.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use cleanroom_agent::scan::policy::Policy;
use cleanroom_agent::scan::report::{Checks, Verdict};
use cleanroom_agent::scan::tables::{self, Spec, contributor_cells};
use serde_json::Value;

type Rows = Vec<(String, String, i64)>;

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLEANROOM_PYTHON") {
        return Some(p.into());
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyvenv/bin/python");
    venv.exists().then_some(venv)
}

fn has_acro(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import acro"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// SplitMix64, so the cases are the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cell(rows: &mut Rows, a: &str, b: &str, values: &[i64]) {
    rows.extend(values.iter().map(|v| (a.to_string(), b.to_string(), *v)));
}

/// Hand-made boundaries: counts 9, 10, 11 and an empty cell; nk exactly
/// at k; p exactly at the ratio; all-zero values; one huge contributor.
fn boundary_cases() -> Vec<Rows> {
    let mut counts = Rows::new();
    cell(&mut counts, "a1", "b1", &[5; 9]);
    cell(&mut counts, "a1", "b2", &[5; 10]);
    cell(&mut counts, "a2", "b1", &[5; 11]);
    let mut dominance = Rows::new();
    let mut nk = vec![45, 45];
    nk.extend([1; 10]);
    cell(&mut dominance, "x", "p", &nk);
    let mut p = vec![1000, 500, 100];
    p.extend([0; 9]);
    cell(&mut dominance, "x", "q", &p);
    let mut p_under = vec![1000, 500, 99];
    p_under.extend([0; 9]);
    cell(&mut dominance, "y", "p", &p_under);
    cell(&mut dominance, "y", "q", &[0; 12]);
    let mut huge = vec![100_000];
    huge.extend([3; 14]);
    cell(&mut dominance, "z", "p", &huge);
    cell(&mut dominance, "z", "q", &[7; 20]);
    let mut negative = Rows::new();
    cell(&mut negative, "m", "u", &[4, -2, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
    cell(&mut negative, "n", "u", &[10; 12]);
    cell(
        &mut negative,
        "n",
        "v",
        &[900, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    );
    cell(&mut negative, "m", "v", &[3; 4]);
    vec![counts, dominance, negative]
}

/// Skewed random tables: a few keys, counts around the threshold,
/// sometimes one dominant contributor.
fn random_case(seed: u64) -> Rows {
    let mut rng = Rng(seed);
    let (na, nb) = (2 + rng.below(4), 2 + rng.below(4));
    let mut rows = Rows::new();
    for i in 0..na {
        for j in 0..nb {
            let n = match rng.below(4) {
                0 => rng.below(12),
                1 => 8 + rng.below(5),
                _ => 10 + rng.below(40),
            };
            for k in 0..n {
                let v = if k == 0 && rng.below(3) == 0 {
                    (rng.below(50_000)) as i64
                } else {
                    rng.below(100) as i64
                };
                rows.push((format!("a{i}"), format!("b{j}"), v));
            }
        }
    }
    rows
}

fn write_case(dir: &Path, name: &str, rows: &Rows) {
    let mut s = String::from("a,b,v\n");
    for (a, b, v) in rows {
        s.push_str(&format!("{a},{b},{v}\n"));
    }
    std::fs::write(dir.join(format!("{name}.csv")), s).expect("write case");
    let mut t = String::from("a,b,n,v\n");
    for ((a, b), (n, v)) in totals(rows) {
        t.push_str(&format!("{a},{b},{n},{v}\n"));
    }
    std::fs::create_dir_all(dir.join("totals")).expect("totals dir");
    std::fs::write(dir.join("totals").join(format!("{name}.csv")), t).expect("write totals");
}

/// The table as an analyst's totals: per non-empty cell, its count and sum.
fn totals(rows: &Rows) -> BTreeMap<(String, String), (i64, i64)> {
    let mut t = BTreeMap::new();
    for (a, b, v) in rows {
        let e = t.entry((a.clone(), b.clone())).or_insert((0, 0));
        e.0 += 1;
        e.1 += v;
    }
    t
}

/// Our checks on the totals table: the cells below the threshold, and
/// the verdict.
fn ours_on_totals(rows: &Rows, distinct: &[Vec<String>]) -> (Cells, u64, Verdict) {
    let t = totals(rows);
    let table: Vec<(u64, Vec<Option<String>>)> = t
        .iter()
        .enumerate()
        .map(|(i, ((a, b), (n, v)))| {
            let cells = vec![
                Some(a.clone()),
                Some(b.clone()),
                Some(n.to_string()),
                Some(v.to_string()),
            ];
            (i as u64, cells)
        })
        .collect();
    let spec = Spec {
        keys: vec![0, 1],
        counts: vec![2],
        magnitudes: vec![3],
    };
    let mut checks = Checks::default();
    tables::check(&mut checks, &spec, &table, &Policy::default());
    let keys: Vec<(usize, usize)> = t
        .keys()
        .map(|(a, b)| {
            let at = |d: &[String], x: &str| d.iter().position(|y| y == x).expect("label");
            (at(&distinct[0], a), at(&distinct[1], b))
        })
        .collect();
    let (cells, count) = checks.get("threshold").map_or((Cells::new(), 0), |c| {
        let rows = c.positions.iter().filter_map(|p| p.row);
        (rows.map(|r| keys[r as usize]).collect(), c.count)
    });
    let unchecked = checks
        .get("dominance-unchecked")
        .and_then(|c| c.detail.clone());
    assert_eq!(unchecked.as_deref(), Some(tables::DOMINANCE_UNCHECKED));
    (cells, count, checks.verdict())
}

type Cells = BTreeSet<(usize, usize)>;
/// Per ACRO check name: flagged cells of the count table and of the sum table.
type Flagged = [(&'static str, Cells, Cells); 4];

/// Our flagged cells per ACRO check name, and the tables' verdicts.
fn ours(rows: &Rows) -> (Vec<Vec<String>>, Flagged, [&'static str; 2]) {
    let table: Vec<(u64, Vec<Option<String>>)> = rows
        .iter()
        .enumerate()
        .map(|(i, (a, b, v))| {
            (
                i as u64,
                vec![Some(a.clone()), Some(b.clone()), Some(v.to_string())],
            )
        })
        .collect();
    let spec = Spec {
        keys: vec![0, 1],
        counts: vec![],
        magnitudes: vec![2],
    };
    let (distinct, cells) = contributor_cells(&spec, &table, &Policy::default(), |_, _| {
        panic!("malformed")
    });
    let with = |names: &[&str]| -> Cells {
        cells
            .iter()
            .filter(|c| c.flags.keys().any(|(n, _)| names.contains(n)))
            .map(|c| (c.key[0], c.key[1]))
            .collect()
    };
    let threshold = with(&["threshold"]);
    let verdict = |fail: bool, review: bool| {
        if fail {
            "fail"
        } else if review {
            "review"
        } else {
            "pass"
        }
    };
    let count_verdict = verdict(!threshold.is_empty() || !with(&["zeros"]).is_empty(), false);
    let sum_fail = !threshold.is_empty() || !with(&["nk-rule", "p-ratio"]).is_empty();
    let sum_verdict = verdict(sum_fail, !with(&["negative"]).is_empty());
    let checks = [
        ("MinimumThresholdCheck", threshold.clone(), threshold),
        ("PresenceOfZeroCheck", with(&["zeros"]), Cells::new()),
        ("NKCheck", Cells::new(), with(&["nk-rule", "negative"])),
        (
            "PPercentCheck",
            Cells::new(),
            with(&["p-ratio", "negative"]),
        ),
    ];
    (distinct, checks, [count_verdict, sum_verdict])
}

fn acro_cells(table: &Value, check: &str) -> Cells {
    table["cells"][check]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c[0].as_u64().unwrap_or(0) as usize,
                        c[1].as_u64().unwrap_or(0) as usize,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn compare(name: &str, rows: &Rows, acro: &Value) {
    let (distinct, checks, verdicts) = ours(rows);
    let labels = |k: &str| -> Vec<String> {
        acro[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        distinct,
        vec![labels("rows"), labels("columns")],
        "{name}: cells differ"
    );
    assert_eq!(labels("sumRows"), labels("rows"), "{name}");
    for (check, count_cells, sum_cells) in &checks {
        assert_eq!(
            &acro_cells(&acro["count"], check),
            count_cells,
            "{name}: count table, {check}"
        );
        assert_eq!(
            &acro_cells(&acro["sum"], check),
            sum_cells,
            "{name}: sum table, {check}"
        );
    }
    assert_eq!(
        acro["count"]["status"], verdicts[0],
        "{name}: count table verdict"
    );
    assert_eq!(
        acro["sum"]["status"], verdicts[1],
        "{name}: sum table verdict"
    );
    compare_totals(name, rows, &distinct, acro);
}

/// The same table as totals: ACRO cannot check it and hands it to a
/// person (review); we check its counts as ACRO's count table does and
/// review it for dominance, so it is never `pass` where ACRO, given the
/// contributions, would fail or review the sums.
fn compare_totals(name: &str, rows: &Rows, distinct: &[Vec<String>], acro: &Value) {
    assert_eq!(acro["totals"], "review", "{name}: ACRO on the totals");
    let (cells, count, verdict) = ours_on_totals(rows, distinct);
    let non_empty: BTreeSet<(usize, usize)> = ours_on_totals_keys(rows, distinct);
    let acro_threshold: Cells = acro_cells(&acro["count"], "MinimumThresholdCheck")
        .intersection(&non_empty)
        .copied()
        .collect();
    assert_eq!(
        count as usize,
        acro_threshold.len(),
        "{name}: totals, threshold"
    );
    assert!(
        cells.is_subset(&acro_threshold),
        "{name}: totals, threshold cells"
    );
    let want = if acro_threshold.is_empty() {
        Verdict::Review
    } else {
        Verdict::Fail
    };
    assert_eq!(verdict, want, "{name}: totals verdict");
}

fn ours_on_totals_keys(rows: &Rows, distinct: &[Vec<String>]) -> Cells {
    let at = |d: &[String], x: &str| d.iter().position(|y| y == x).expect("label");
    totals(rows)
        .keys()
        .map(|(a, b)| (at(&distinct[0], a), at(&distinct[1], b)))
        .collect()
}

#[test]
fn table_verdicts_match_acro_cell_by_cell() {
    let Some(python) = python().filter(|p| has_acro(p)) else {
        println!(
            "skipped: ACRO is not installed (run agent/python/venv.sh, or set CLEANROOM_PYTHON)"
        );
        return;
    };
    let dir = tempfile::TempDir::new().expect("tempdir");
    let mut cases: Vec<(String, Rows)> = boundary_cases()
        .into_iter()
        .enumerate()
        .map(|(i, r)| (format!("boundary{i}"), r))
        .collect();
    cases.extend((1..=12).map(|s| (format!("random{s:02}"), random_case(s))));
    for (name, rows) in &cases {
        write_case(dir.path(), name, rows);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/acro_parity.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("run ACRO");
    assert!(
        out.status.success(),
        "ACRO failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut flagged = 0;
    for (name, rows) in &cases {
        let path = dir.path().join(format!("{name}.acro.json"));
        let acro: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("ACRO result")).expect("json");
        compare(name, rows, &acro);
        flagged += acro_cells(&acro["sum"], "NKCheck").len();
    }
    assert!(flagged > 0, "the cases never exercised dominance");
    println!(
        "ACRO parity: {} tables, every check's cells and verdicts equal",
        cases.len()
    );
}
