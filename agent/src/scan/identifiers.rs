//! Checks on single values: identifiers (the recognizers of
//! `recognize.rs`), pseudonyms (`p_` + hex) and raw personal values.

use super::raw::Matcher;
use super::report::{Checks, Position, Verdict};
use crate::recognize::{self, Kind};

/// Hex digits after `p_` for a value to count as a pseudonym (`hash`
/// writes 32).
pub const PSEUDONYM_MIN_HEX: usize = 16;

pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::ResidentId => "resident-id",
        Kind::Mobile => "mobile",
        Kind::CreditCode => "credit-code",
        Kind::BankCard => "bank-card",
        Kind::Plate => "plate",
        Kind::Email => "email",
    }
}

/// `p_` followed by at least [`PSEUDONYM_MIN_HEX`] lower-case hex digits,
/// not glued to a word before it.
pub fn has_pseudonym(s: &str) -> bool {
    let b = s.as_bytes();
    memchr::memchr_iter(b'_', b).any(|u| {
        let boundary = u < 2 || !b[u - 2].is_ascii_alphanumeric();
        let hex = b[u + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            .count();
        u >= 1 && b[u - 1] == b'p' && boundary && hex >= PSEUDONYM_MIN_HEX
    })
}

/// Whether no value lying within `bytes` (a whole CSV record, say) can
/// hold an identifier or a pseudonym, so that their per-value checks can
/// be skipped: no identifier can be found within it
/// ([`recognize::none_within`]) and it holds no `_` (every pseudonym has
/// one).
pub fn quiet(bytes: &[u8]) -> bool {
    memchr::memchr(b'_', bytes).is_none() && recognize::none_within(bytes)
}

/// One check that fired on a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub check: &'static str,
    pub verdict: Verdict,
    pub kind: Option<&'static str>,
}

/// A raw personal value found.
pub const RAW_VALUE: Hit = Hit {
    check: "raw-value",
    verdict: Verdict::Fail,
    kind: None,
};

/// Every value check on one value; what fires is pushed to `out`.
pub fn hits(value: &str, raw: Option<&Matcher>, out: &mut Vec<Hit>) {
    shape_hits(value, out);
    if raw.is_some_and(|m| m.is_raw_value(value)) {
        out.push(RAW_VALUE);
    }
}

/// The checks on a value's shape alone: identifiers and pseudonyms.
pub fn shape_hits(value: &str, out: &mut Vec<Hit>) {
    if let Some(k) = recognize::find(value) {
        let kind = Some(kind_name(k));
        out.push(Hit {
            check: "identifier",
            verdict: Verdict::Fail,
            kind,
        });
    }
    if has_pseudonym(value) {
        out.push(Hit {
            check: "pseudonym",
            verdict: Verdict::Review,
            kind: None,
        });
    }
}

/// Record a hit at a position.
pub fn record(checks: &mut Checks, at: Position, h: Hit) {
    match h.kind {
        Some(k) => checks.hit_kind(h.check, h.verdict, at, k),
        None => checks.hit(h.check, h.verdict, at),
    }
}

/// Run every value check on one value.
pub fn check_value(checks: &mut Checks, at: Position, value: &str, raw: Option<&Matcher>) {
    let mut found = Vec::new();
    hits(value, raw, &mut found);
    for h in found {
        record(checks, at.clone(), h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`quiet`] as written in its doc, byte by byte.
    fn quiet_by_definition(b: &[u8]) -> bool {
        let marked = b
            .iter()
            .any(|c| c.is_ascii_uppercase() || *c == b'@' || *c == b'_');
        let long_run = b.split(|c| !c.is_ascii_digit()).any(|run| run.len() >= 11);
        !marked && !long_run
    }

    #[test]
    fn quiet_rows() {
        assert!(quiet("南山街道,20-29,2024-03,12345.67,无".as_bytes()));
        assert!(quiet(b""));
        assert!(!quiet(b"a,b,13812345678"));
        assert!(!quiet(b"x@y"));
        assert!(!quiet(b"p_00"));
        assert!(!quiet("京A12345".as_bytes()));
        // 10 and 11 digits in a row at every offset, across words.
        for at in 0..24 {
            let mut b = vec![b'-'; at];
            b.extend_from_slice(b"1234567890");
            assert!(quiet(&b), "{at}");
            b.push(b'1');
            assert!(!quiet(&b), "{at}");
            b.extend_from_slice(b",xy");
            assert!(!quiet(&b), "{at}");
        }
    }

    proptest::proptest! {
        #[test]
        fn quiet_is_its_definition(b in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::prelude::Just(b'1'), proptest::prelude::Just(b','),
                proptest::prelude::Just(b'@'), proptest::prelude::Just(b'_'),
                proptest::prelude::Just(b'Z'), proptest::prelude::Just(b'['),
                proptest::prelude::Just(b'/'), proptest::prelude::Just(b':'),
                proptest::prelude::Just(b'?'), proptest::prelude::Just(0xb0u8),
                proptest::prelude::Just(0xc1u8), proptest::prelude::Just(0xdau8),
                proptest::prelude::any::<u8>(),
            ], 0..80)) {
            proptest::prop_assert_eq!(quiet(&b), quiet_by_definition(&b));
        }

        /// A quiet row's values fire no shape check.
        #[test]
        fn quiet_values_fire_nothing(s in "[0-9a-z.,:\\-张三京 ]{0,60}") {
            if quiet(s.as_bytes()) {
                for v in s.split(',') {
                    let mut out = Vec::new();
                    shape_hits(v, &mut out);
                    proptest::prop_assert!(out.is_empty(), "{v:?}");
                }
            }
        }
    }

    #[test]
    fn pseudonyms_by_shape() {
        assert!(has_pseudonym("p_0123456789abcdef0123456789abcdef"));
        assert!(has_pseudonym("id p_0123456789abcdef, next"));
        assert!(!has_pseudonym("p_0123456789abcde"));
        assert!(!has_pseudonym("map_0123456789abcdef0123"));
        assert!(!has_pseudonym("p_0123456789ABCDEF0123"));
        assert!(!has_pseudonym("p_"));
    }

    #[test]
    fn values_fire_the_right_checks() {
        let mut c = Checks::default();
        check_value(&mut c, Position::at(0, 1), "电话13812345678", None);
        check_value(
            &mut c,
            Position::at(1, 1),
            "p_0123456789abcdef0123456789abcdef",
            None,
        );
        check_value(&mut c, Position::at(2, 1), "138****5678", None);
        let id = c.get("identifier").expect("fired");
        assert_eq!((id.count, id.verdict), (1, Verdict::Fail));
        assert!(id.kinds.contains("mobile"));
        assert_eq!(id.positions, vec![Position::at(0, 1)]);
        assert_eq!(c.get("pseudonym").map(|p| p.verdict), Some(Verdict::Review));
        assert_eq!(c.verdict(), Verdict::Fail);
    }
}
