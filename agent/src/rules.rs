//! Applying one masking rule to one value.
//!
//! Values arrive as text (CSV fields, JSON strings, Parquet values cast to
//! text) or as raw JSON literals (numbers, booleans); the result is written
//! into a reused [`Cell`] so that the hot loop does not allocate. Null and
//! empty values stay null and empty under every rule.

use std::fmt::Write as _;

use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

use crate::plan::{ColumnType, DatePart, Generalization, PlanColumn, Rule};
use crate::recognize::days_in_month;
use crate::sample::{hash3, unit};

/// Prefix of every pseudonym, so that one is recognisable as such.
pub const PSEUDONYM_PREFIX: &str = "p_";

/// One input value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// Null, missing, or an empty CSV field.
    Null,
    /// Text.
    Text(&'a str),
    /// A JSON literal other than a string (number, boolean, object, array).
    Raw(&'a str),
}

/// How an output value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    /// Text (quoted in JSON).
    Text,
    /// A literal written as is (numbers, booleans).
    Raw,
}

/// One output value; its buffer is reused from row to row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub kind: Kind,
    pub text: String,
}

impl Default for Cell {
    fn default() -> Self {
        Cell {
            kind: Kind::Null,
            text: String::new(),
        }
    }
}

impl Cell {
    fn set(&mut self, kind: Kind) -> &mut String {
        self.kind = kind;
        self.text.clear();
        &mut self.text
    }

    /// The value as text, `None` when null.
    pub fn as_str(&self) -> Option<&str> {
        (self.kind != Kind::Null).then_some(self.text.as_str())
    }
}

/// A value the rule cannot handle (the row is malformed). The reason never
/// contains the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("not a number")]
    NotANumber,
    #[error("not a date (YYYY-MM-DD...)")]
    NotADate,
}

/// HMAC-SHA256 (RFC 2104) with the key's inner and outer blocks absorbed
/// once. A value then costs its own blocks (one for up to 55 bytes) plus
/// one for the outer hash, fed straight to the SHA-256 compression
/// function: no hasher state is cloned, buffered or finalized per value.
#[derive(Clone)]
pub struct Hmac {
    /// SHA-256 state after the block `key ^ 0x36..`.
    inner: [u32; 8],
    /// SHA-256 state after the block `key ^ 0x5c..`.
    outer: [u32; 8],
}

impl std::fmt::Debug for Hmac {
    // The key never appears in logs, not even derived state.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hmac(..)")
    }
}

/// SHA-256 initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Compress whole 64-byte blocks into `state`.
fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    for block in blocks.chunks_exact(64) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

/// Finish a SHA-256 whose first 64 bytes (one key block) are already in
/// `state`: absorb `data`, pad, and return the digest.
fn finish_after_block(mut state: [u32; 8], data: &[u8]) -> [u8; 32] {
    let whole = data.len() - data.len() % 64;
    compress(&mut state, &data[..whole]);
    let rest = &data[whole..];
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let len = if rest.len() < 56 { 64 } else { 128 };
    let bits = (64 + data.len() as u64) * 8;
    tail[len - 8..len].copy_from_slice(&bits.to_be_bytes());
    compress(&mut state, &tail[..len]);
    let mut digest = [0u8; 32];
    for (d, w) in digest.chunks_exact_mut(4).zip(state) {
        d.copy_from_slice(&w.to_be_bytes());
    }
    digest
}

impl Hmac {
    pub fn new(key: &[u8]) -> Self {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| {
            let mut state = SHA256_IV;
            compress(&mut state, &block.map(|b| b ^ byte));
            state
        };
        Hmac {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        finish_after_block(self.outer, &finish_after_block(self.inner, data))
    }
}

/// One column's rule, ready to apply.
#[derive(Debug, Clone)]
pub struct Applier {
    rule: Rule,
    column_type: ColumnType,
    hmac: Option<Hmac>,
    /// Seed of the noise (the sampling seed, or 0).
    seed: u64,
    /// Separates the noise streams of columns (FNV-1a of the name).
    tag: u64,
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Applier {
    pub fn new(column: &PlanColumn, hmac: Option<Hmac>, seed: u64) -> Self {
        Applier {
            rule: column.rule.clone(),
            column_type: column.type_,
            hmac,
            seed,
            tag: fnv1a(&column.name),
        }
    }

    /// False when the output cannot hold an identifier by construction
    /// (pseudonyms, truncated dates), so the leak scan can skip it.
    pub fn output_may_identify(&self) -> bool {
        !matches!(
            self.rule,
            Rule::Hash
                | Rule::Generalize {
                    to: Generalization::Truncate(_)
                }
        )
    }

    /// Apply the rule to the value of row `row` (0-based data row index).
    pub fn apply(&self, row: u64, input: Input<'_>, out: &mut Cell) -> Result<(), ValueError> {
        let (text, raw) = match input {
            Input::Null => {
                out.set(Kind::Null);
                return Ok(());
            }
            Input::Text("") => {
                out.set(Kind::Text);
                return Ok(());
            }
            Input::Text(t) => (t, false),
            Input::Raw(t) => (t, true),
        };
        match &self.rule {
            Rule::Keep | Rule::Drop => {
                out.set(if raw { Kind::Raw } else { Kind::Text })
                    .push_str(text);
            }
            Rule::Redact { with } => out.set(Kind::Text).push_str(with),
            Rule::Mask {
                keep_first,
                keep_last,
            } => mask(
                text,
                *keep_first as usize,
                *keep_last as usize,
                out.set(Kind::Text),
            ),
            Rule::Hash => {
                let buf = out.set(Kind::Text);
                buf.push_str(PSEUDONYM_PREFIX);
                if let Some(h) = &self.hmac {
                    let mac = h.mac(text.as_bytes());
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let mut hex = [0u8; 32];
                    for (pair, b) in hex.chunks_exact_mut(2).zip(&mac[..16]) {
                        pair[0] = HEX[usize::from(b >> 4)];
                        pair[1] = HEX[usize::from(b & 15)];
                    }
                    buf.extend(hex.iter().map(|&c| char::from(c)));
                }
            }
            Rule::Generalize { to } => match to {
                Generalization::Bucket(w) => bucket(text, *w, out.set(Kind::Raw))?,
                Generalization::Truncate(part) => truncate(text, *part, out.set(Kind::Text))?,
                Generalization::Prefix(n) => {
                    out.set(Kind::Text).push_str(prefix(text, *n as usize))
                }
            },
            Rule::Noise { bound } => {
                let v = parse_number(text)?;
                let u = unit(hash3(self.seed, row, self.tag));
                let noisy = v + (2.0 * u - 1.0) * bound;
                let buf = out.set(Kind::Raw);
                if self.column_type == ColumnType::Integer {
                    let _ = write!(buf, "{}", noisy.round() as i64);
                } else {
                    let decimals = text.trim().split_once('.').map_or(0, |(_, f)| f.len());
                    let _ = write!(buf, "{noisy:.decimals$}");
                }
            }
        }
        Ok(())
    }
}

/// Keep `first` and `last` characters, `*` for the others; a value not
/// longer than `first + last` is masked entirely (never shown whole).
pub fn mask(text: &str, first: usize, last: usize, out: &mut String) {
    // Byte offsets of the kept head and tail (characters are bytes in ASCII).
    let (n, head, tail) = if text.is_ascii() {
        let n = text.len();
        (n, first.min(n), n.saturating_sub(last))
    } else {
        let n = text.chars().count();
        if n <= first + last {
            push_stars(out, n);
            return;
        }
        let head = text
            .char_indices()
            .nth(first)
            .map_or(text.len(), |(i, _)| i);
        let tail = match last {
            0 => text.len(),
            _ => text.char_indices().nth_back(last - 1).map_or(0, |(i, _)| i),
        };
        (n, head, tail)
    };
    if n <= first + last {
        push_stars(out, n);
        return;
    }
    out.push_str(&text[..head]);
    push_stars(out, n - first - last);
    out.push_str(&text[tail..]);
}

fn push_stars(out: &mut String, mut n: usize) {
    const STARS: &str = "********************************";
    while n > 0 {
        let k = n.min(STARS.len());
        out.push_str(&STARS[..k]);
        n -= k;
    }
}

/// The first `n` characters of `text`.
pub fn prefix(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn parse_number(text: &str) -> Result<f64, ValueError> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ValueError::NotANumber),
    }
}

/// Lower bound of the bucket of width `w` holding the value (floor, so
/// -3 with width 10 is -10).
pub fn bucket(text: &str, w: u64, out: &mut String) -> Result<(), ValueError> {
    let t = text.trim();
    let w = i128::from(w);
    let low = match t.parse::<i128>() {
        Ok(v) => v.div_euclid(w) * w,
        Err(_) => {
            let v = parse_number(t)?;
            ((v / w as f64).floor() * w as f64) as i128
        }
    };
    let _ = write!(out, "{low}");
    Ok(())
}

/// Cut a date or date-time (`YYYY-MM-DD`, `YYYY/MM/DD`, optionally followed
/// by a time) to a year, month or day.
pub fn truncate(text: &str, part: DatePart, out: &mut String) -> Result<(), ValueError> {
    let b = text.trim().as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|s| s.iter().all(u8::is_ascii_digit))
            .map(|s| s.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let sep = b.get(4).copied();
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return Err(ValueError::NotADate);
    };
    let ok = matches!(sep, Some(b'-' | b'/'))
        && b.get(7) == sep.as_ref()
        && (1..=12).contains(&m)
        && d >= 1
        && d <= days_in_month(y, m)
        && b.get(10).is_none_or(|c| matches!(c, b'T' | b' '));
    if !ok {
        return Err(ValueError::NotADate);
    }
    // The digits as they came (each part was checked to be all digits),
    // with `-` between them whatever the input's separator.
    let text = |r: std::ops::Range<usize>| std::str::from_utf8(&b[r]).unwrap_or_default();
    out.push_str(text(0..4));
    if part != DatePart::Year {
        out.push('-');
        out.push_str(text(5..7));
    }
    if part == DatePart::Day {
        out.push('-');
        out.push_str(text(8..10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Sensitivity;
    use proptest::prelude::*;

    fn col(rule: Rule, type_: ColumnType) -> PlanColumn {
        PlanColumn {
            name: "c".into(),
            type_,
            sensitivity: Sensitivity::None,
            rule,
        }
    }

    fn apply(rule: Rule, type_: ColumnType, v: &str) -> Result<String, ValueError> {
        let a = Applier::new(&col(rule, type_), Some(Hmac::new(b"key-one")), 42);
        let mut c = Cell::default();
        a.apply(0, Input::Text(v), &mut c)?;
        Ok(c.text)
    }

    fn masked(v: &str, first: u32, last: u32) -> String {
        apply(
            Rule::Mask {
                keep_first: first,
                keep_last: last,
            },
            ColumnType::String,
            v,
        )
        .expect("mask")
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = Hmac::new(b"Jefe").mac(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Keys longer than a block are hashed first (RFC 4231 case 6).
        let mac =
            Hmac::new(&[0xaa; 131]).mac(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    /// HMAC-SHA256 as RFC 2104 writes it, through the `Sha256` hasher.
    fn textbook_hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(block.map(|b| b ^ 0x36));
        inner.update(data);
        let mut outer = Sha256::new();
        outer.update(block.map(|b| b ^ 0x5c));
        outer.update(inner.finalize());
        outer.finalize().into()
    }

    #[test]
    fn hmac_matches_the_textbook_at_every_padding_boundary() {
        let key = b"0123456789abcdef-scenario-one";
        let data: Vec<u8> = (0..=255).collect();
        for len in 0..=data.len() {
            assert_eq!(
                Hmac::new(key).mac(&data[..len]),
                textbook_hmac(key, &data[..len]),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn mask_counts_characters_not_bytes() {
        assert_eq!(masked("13812345678", 3, 4), "138****5678");
        assert_eq!(masked("张三丰", 1, 0), "张**");
        assert_eq!(masked("北京市朝阳区建国路88号", 3, 0), "北京市*********");
        assert_eq!(masked("欧阳", 1, 1), "**");
        assert_eq!(masked("", 1, 1), "");
    }

    #[test]
    fn redact_and_keep() {
        assert_eq!(
            apply(Rule::Redact { with: "***".into() }, ColumnType::String, "x").expect("ok"),
            "***"
        );
        assert_eq!(
            apply(Rule::Keep, ColumnType::String, "张三").expect("ok"),
            "张三"
        );
        let a = Applier::new(
            &col(Rule::Redact { with: "X".into() }, ColumnType::String),
            None,
            0,
        );
        let mut c = Cell::default();
        a.apply(0, Input::Null, &mut c).expect("ok");
        assert_eq!(c.kind, Kind::Null);
    }

    #[test]
    fn hash_is_a_keyed_stable_pseudonym() {
        let h1 = Applier::new(
            &col(Rule::Hash, ColumnType::String),
            Some(Hmac::new(b"k1")),
            0,
        );
        let h2 = Applier::new(
            &col(Rule::Hash, ColumnType::String),
            Some(Hmac::new(b"k2")),
            0,
        );
        let run = |a: &Applier, v: &str| {
            let mut c = Cell::default();
            a.apply(0, Input::Text(v), &mut c).expect("ok");
            c.text
        };
        let p = run(&h1, "11010519491231002X");
        assert_eq!(p.len(), PSEUDONYM_PREFIX.len() + 32);
        assert!(p.starts_with(PSEUDONYM_PREFIX));
        assert_eq!(p, run(&h1, "11010519491231002X"));
        assert_ne!(p, run(&h2, "11010519491231002X"));
        assert_ne!(p, run(&h1, "110101199003074477"));
    }

    #[test]
    fn generalize_numbers_dates_prefixes() {
        let b = |v| {
            apply(
                Rule::Generalize {
                    to: Generalization::Bucket(10),
                },
                ColumnType::Integer,
                v,
            )
        };
        assert_eq!(b("37").expect("ok"), "30");
        assert_eq!(b("-3").expect("ok"), "-10");
        assert_eq!(b("40").expect("ok"), "40");
        assert_eq!(b("37.9").expect("ok"), "30");
        assert_eq!(b("abc"), Err(ValueError::NotANumber));
        let t = |p, v| {
            apply(
                Rule::Generalize {
                    to: Generalization::Truncate(p),
                },
                ColumnType::Date,
                v,
            )
        };
        assert_eq!(t(DatePart::Month, "1990-03-07").expect("ok"), "1990-03");
        assert_eq!(t(DatePart::Year, "1990/03/07").expect("ok"), "1990");
        assert_eq!(
            t(DatePart::Day, "1990-03-07T10:11:12Z").expect("ok"),
            "1990-03-07"
        );
        assert_eq!(t(DatePart::Day, "1990-02-30"), Err(ValueError::NotADate));
        assert_eq!(t(DatePart::Day, "1990-03-07x"), Err(ValueError::NotADate));
        assert_eq!(t(DatePart::Day, "19900307"), Err(ValueError::NotADate));
        let p = |v| {
            apply(
                Rule::Generalize {
                    to: Generalization::Prefix(6),
                },
                ColumnType::String,
                v,
            )
        };
        assert_eq!(p("11010519491231002X").expect("ok"), "110105");
        assert_eq!(p("北京市朝阳区建国路88号").expect("ok"), "北京市朝阳区");
    }

    #[test]
    fn noise_rounds_integers_and_keeps_decimals() {
        let n = |t, v| apply(Rule::Noise { bound: 5.0 }, t, v).expect("ok");
        assert!(n(ColumnType::Integer, "100").parse::<i64>().is_ok());
        let d = n(ColumnType::Decimal, "100.25");
        assert_eq!(d.split_once('.').map(|(_, f)| f.len()), Some(2), "{d}");
        assert_eq!(
            apply(Rule::Noise { bound: 5.0 }, ColumnType::Decimal, "x"),
            Err(ValueError::NotANumber)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn mask_keeps_length_in_characters(s in "\\PC{0,30}", first in 0u32..5, last in 0u32..5) {
            let m = masked(&s, first, last);
            prop_assert_eq!(m.chars().count(), s.chars().count());
            if s.chars().count() > (first + last) as usize {
                prop_assert!(m.chars().take(first as usize).eq(s.chars().take(first as usize)));
            } else {
                prop_assert!(m.chars().all(|c| c == '*'));
            }
        }

        #[test]
        fn mask_and_prefix_equal_their_definitions(s in "\\PC{0,40}|[0-9A-Za-z]{0,40}",
                                                   first in 0usize..6, last in 0usize..6) {
            let n = s.chars().count();
            let expected: String = if n <= first + last {
                "*".repeat(n)
            } else {
                s.chars()
                    .enumerate()
                    .map(|(i, c)| if i < first || i >= n - last { c } else { '*' })
                    .collect()
            };
            let mut out = String::new();
            mask(&s, first, last, &mut out);
            prop_assert_eq!(out, expected);
            prop_assert_eq!(prefix(&s, first), s.chars().take(first).collect::<String>());
        }

        #[test]
        fn noise_is_bounded_and_reproducible(v in -1e6f64..1e6, row in any::<u64>(), bound in 0.0f64..100.0) {
            let a = Applier::new(&col(Rule::Noise { bound }, ColumnType::Decimal), None, 9);
            let text = format!("{v:.3}");
            let mut c1 = Cell::default();
            let mut c2 = Cell::default();
            a.apply(row, Input::Text(&text), &mut c1).expect("ok");
            a.apply(row, Input::Text(&text), &mut c2).expect("ok");
            prop_assert_eq!(&c1, &c2);
            let out: f64 = c1.text.parse().expect("number");
            let base: f64 = text.parse().expect("number");
            prop_assert!((out - base).abs() <= bound + 0.001, "{} {} {}", base, out, bound);
        }

        #[test]
        fn bucket_is_a_lower_bound(v in -1_000_000i64..1_000_000, w in 1u64..1000) {
            let mut out = String::new();
            bucket(&v.to_string(), w, &mut out).expect("ok");
            let low: i64 = out.parse().expect("int");
            prop_assert!(low <= v && v < low + w as i64 && low % w as i64 == 0);
        }

        #[test]
        fn hmac_equals_the_textbook(key in proptest::collection::vec(any::<u8>(), 0..150),
                                    data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(Hmac::new(&key).mac(&data), textbook_hmac(&key, &data));
        }

        #[test]
        fn hash_is_stable_within_a_key(v in "\\PC{1,20}") {
            let h = Applier::new(&col(Rule::Hash, ColumnType::String), Some(Hmac::new(b"k")), 0);
            let (mut a, mut b) = (Cell::default(), Cell::default());
            h.apply(0, Input::Text(&v), &mut a).expect("ok");
            h.apply(99, Input::Text(&v), &mut b).expect("ok");
            prop_assert_eq!(a, b);
        }
    }
}
