//! k-anonymity and distinct l-diversity of a `Microdata` file, streamed:
//! memory grows with the number of equivalence classes, not rows.

use std::collections::HashMap;
use std::hash::BuildHasher;

use super::policy::Policy;
use super::report::{Checks, MicrodataStats, Position, Verdict};

/// One equivalence class (rows sharing every quasi-identifier value).
#[derive(Debug, Default, Clone)]
struct Class {
    rows: u64,
    first_row: u64,
    /// Per sensitive column, distinct values seen (hashes), up to `l`.
    distinct: Vec<Vec<u64>>,
}

/// Counts classes row by row.
pub struct Classes {
    qi: Vec<usize>,
    sensitive: Vec<usize>,
    l: usize,
    classes: HashMap<Box<[u8]>, Class>,
    hasher: std::collections::hash_map::RandomState,
    buf: Vec<u8>,
}

impl Classes {
    /// `qi` and `sensitive` are column indexes of the file.
    pub fn new(qi: Vec<usize>, sensitive: Vec<usize>, policy: &Policy) -> Self {
        Classes {
            qi,
            sensitive,
            l: policy.l as usize,
            classes: HashMap::new(),
            hasher: Default::default(),
            buf: Vec::new(),
        }
    }

    pub fn row(&mut self, row: u64, cells: &[Option<&str>]) {
        self.buf.clear();
        for &i in &self.qi {
            match cells[i] {
                Some(v) => self.buf.extend_from_slice(v.as_bytes()),
                None => self.buf.push(0x1e),
            }
            self.buf.push(0x1f);
        }
        let ns = self.sensitive.len();
        let class = match self.classes.get_mut(self.buf.as_slice()) {
            Some(c) => c,
            None => self
                .classes
                .entry(self.buf.clone().into_boxed_slice())
                .or_insert(Class {
                    first_row: row,
                    distinct: vec![Vec::new(); ns],
                    ..Class::default()
                }),
        };
        class.rows += 1;
        for (d, &s) in class.distinct.iter_mut().zip(&self.sensitive) {
            if d.len() < self.l {
                let h = self.hasher.hash_one(cells[s]);
                if !d.contains(&h) {
                    d.push(h);
                }
            }
        }
    }

    /// Fire `k-anonymity` and `l-diversity` and give the figures.
    pub fn finish(self, checks: &mut Checks, policy: &Policy) -> MicrodataStats {
        let mut s = MicrodataStats {
            classes: self.classes.len() as u64,
            smallest_class: self.classes.values().map(|c| c.rows).min().unwrap_or(0),
            ..MicrodataStats::default()
        };
        s.prosecutor_risk = if s.smallest_class > 0 {
            1.0 / s.smallest_class as f64
        } else {
            0.0
        };
        let mut below: Vec<&Class> = self
            .classes
            .values()
            .filter(|c| c.rows < policy.k)
            .collect();
        below.sort_by_key(|c| c.first_row);
        s.classes_below_k = below.len() as u64;
        s.rows_below_k = below.iter().map(|c| c.rows).sum();
        for c in below {
            checks.hit(
                "k-anonymity",
                Verdict::Fail,
                Position {
                    row: Some(c.first_row),
                    ..Position::default()
                },
            );
        }
        let mut not_diverse: Vec<&Class> = self
            .classes
            .values()
            .filter(|c| c.distinct.iter().any(|d| d.len() < self.l))
            .collect();
        not_diverse.sort_by_key(|c| c.first_row);
        s.classes_below_l = not_diverse.len() as u64;
        for c in not_diverse {
            checks.hit(
                "l-diversity",
                Verdict::Fail,
                Position {
                    row: Some(c.first_row),
                    ..Position::default()
                },
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(rows: &[[&str; 3]], p: &Policy) -> (Checks, MicrodataStats) {
        let mut c = Classes::new(vec![0, 1], vec![2], p);
        for (i, r) in rows.iter().enumerate() {
            let cells: Vec<Option<&str>> = r.iter().map(|s| Some(*s)).collect();
            c.row(i as u64, &cells);
        }
        let mut checks = Checks::default();
        let stats = c.finish(&mut checks, p);
        (checks, stats)
    }

    #[test]
    fn a_class_of_exactly_k_passes_one_less_fails() {
        let p = Policy::default();
        let mut rows = vec![["30", "东", "病甲"]; 5];
        rows.extend(vec![["40", "西", "病乙"]; 4]);
        rows[0][2] = "病丙";
        rows[5][2] = "病丁";
        let (checks, s) = classes(&rows, &p);
        assert_eq!(
            (
                s.classes,
                s.smallest_class,
                s.classes_below_k,
                s.rows_below_k
            ),
            (2, 4, 1, 4)
        );
        assert_eq!(s.prosecutor_risk, 0.25);
        let k = checks.get("k-anonymity").expect("fired");
        assert_eq!(
            k.positions,
            vec![Position {
                row: Some(5),
                ..Position::default()
            }]
        );
        assert_eq!(checks.get("l-diversity"), None);
        rows.push(["40", "西", "病乙"]);
        let (checks, s) = classes(&rows, &p);
        assert_eq!(s.classes_below_k, 0);
        assert_eq!(checks.verdict(), Verdict::Pass);
    }

    #[test]
    fn one_sensitive_value_per_class_is_not_diverse() {
        let p = Policy::default();
        let rows = vec![["30", "东", "病甲"]; 6];
        let (checks, s) = classes(&rows, &p);
        assert_eq!(s.classes_below_l, 1);
        assert_eq!(
            checks.get("l-diversity").map(|c| c.verdict),
            Some(Verdict::Fail)
        );
    }
}
