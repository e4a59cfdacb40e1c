//! An import's declared schema: the file's header must be exactly the
//! declared columns, in order, and every value must parse as its column's
//! type (an empty cell is a missing value and fits any type). Third-party
//! data whose shape differs from what was declared and approved does not
//! enter a workspace.

use serde::Deserialize;

/// A declared column type: the Dataset's column types, as plans carry them.
pub use crate::plan::ColumnType as Type;

/// One declared column.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: Type,
}

/// Why the header is not the declared one. Only declared names and
/// positions are said: a file's own header is content, never quoted.
pub fn header_mismatch(declared: &[Declared], header: &[String]) -> Option<String> {
    let differs = declared.iter().zip(header).position(|(d, h)| d.name != *h);
    match differs {
        Some(i) => Some(format!(
            "column {} is not the declared {:?}",
            i + 1,
            declared[i].name
        )),
        None if declared.len() != header.len() => Some(format!(
            "the file has {} columns where {} are declared",
            header.len(),
            declared.len()
        )),
        None => None,
    }
}

/// The columns whose value does not parse as declared.
pub fn misfits(types: &[Type], cells: &[Option<&str>]) -> Vec<usize> {
    types
        .iter()
        .zip(cells)
        .enumerate()
        .filter(|(_, (t, v))| v.is_some_and(|v| !v.is_empty() && !fits(**t, v)))
        .map(|(c, _)| c)
        .collect()
}

/// Whether `v` is a value of type `t`.
pub fn fits(t: Type, v: &str) -> bool {
    match t {
        Type::String => true,
        Type::Integer => integer(v),
        Type::Decimal => decimal(v),
        Type::Boolean => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
        Type::Date => date(v),
        Type::Datetime => datetime(v),
    }
}

fn digits(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

fn integer(v: &str) -> bool {
    digits(v.strip_prefix(['-', '+']).unwrap_or(v))
}

fn decimal(v: &str) -> bool {
    let unsigned = v.strip_prefix(['-', '+']).unwrap_or(v);
    match unsigned.split_once('.') {
        None => digits(unsigned),
        Some((whole, frac)) => {
            (digits(whole) || whole.is_empty())
                && (digits(frac) || frac.is_empty())
                && !(whole.is_empty() && frac.is_empty())
        }
    }
}

/// `YYYY-MM-DD` with a real month and day.
fn date(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (y, m, d) = (&v[0..4], &v[5..7], &v[8..10]);
    if !(digits(y) && digits(m) && digits(d)) {
        return false;
    }
    let (y, m, d): (u32, u32, u32) = (
        y.parse().unwrap_or(0),
        m.parse().unwrap_or(0),
        d.parse().unwrap_or(0),
    );
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// A date, `T` or a space, then `hh:mm` or `hh:mm:ss` with anything after
/// the seconds (fractions, a zone) left to the reader.
fn datetime(v: &str) -> bool {
    if v.len() < 16 || !v.is_char_boundary(10) || !date(&v[..10]) {
        return false;
    }
    let rest = &v.as_bytes()[10..];
    let two = |i: usize, max: u32| {
        rest.get(i..i + 2)
            .and_then(|s| std::str::from_utf8(s).ok())
            .filter(|s| digits(s))
            .and_then(|s| s.parse::<u32>().ok())
            .is_some_and(|n| n <= max)
    };
    matches!(rest[0], b'T' | b' ') && two(1, 23) && rest[3] == b':' && two(4, 59)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(cols: &[(&str, Type)]) -> Vec<Declared> {
        cols.iter()
            .map(|(n, t)| Declared {
                name: n.to_string(),
                type_: *t,
            })
            .collect()
    }

    #[test]
    fn the_header_must_be_the_declared_columns_in_order() {
        let d = declared(&[("day", Type::Date), ("rain_mm", Type::Decimal)]);
        let header = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(header_mismatch(&d, &header(&["day", "rain_mm"])), None);
        assert!(header_mismatch(&d, &header(&["rain_mm", "day"])).is_some());
        assert!(header_mismatch(&d, &header(&["day"])).is_some());
        assert!(header_mismatch(&d, &header(&["day", "rain_mm", "name"])).is_some());
    }

    #[test]
    fn each_type_takes_its_values_and_refuses_others() {
        let cases = [
            (
                Type::Integer,
                &["0", "-12", "+7", "123456789012"][..],
                &["1.5", "", "-", "1e3", "12a"][..],
            ),
            (
                Type::Decimal,
                &["1.5", "-0.25", "3", ".5", "5."],
                &[".", "1,5", "1.2.3", "abc"],
            ),
            (Type::Boolean, &["true", "FALSE"], &["yes", "1"]),
            (
                Type::Date,
                &["2026-11-30", "2024-02-29"],
                &["2026-02-29", "2026-13-01", "2026-1-01", "30/11/2026"],
            ),
            (
                Type::Datetime,
                &["2026-11-30T23:59:00Z", "2026-11-30 08:15"],
                &["2026-11-30", "2026-11-30T24:00", "2026-11-30x08:15"],
            ),
        ];
        for (t, good, bad) in cases {
            for v in good {
                assert!(fits(t, v), "{t:?} should take {v:?}");
            }
            for v in bad {
                assert!(!fits(t, v), "{t:?} should refuse {v:?}");
            }
        }
        assert!(fits(Type::String, "anything at all"));
    }

    #[test]
    fn misfits_name_the_columns_and_empty_is_missing() {
        let types = [Type::Date, Type::Integer, Type::String];
        assert_eq!(
            misfits(&types, &[Some("2026-01-01"), Some(""), None]),
            Vec::<usize>::new()
        );
        assert_eq!(
            misfits(&types, &[Some("yesterday"), Some("4"), Some("x")]),
            vec![0]
        );
        assert_eq!(
            misfits(&types, &[Some("2026-01-01"), Some("four"), Some("x")]),
            vec![1]
        );
    }
}
