//! Built-in recognizers for Chinese personal and organisation identifiers.
//!
//! Used twice: the plan refuses `keep` on personal columns, and every output
//! value is scanned ([`find`]) so that a value that still looks like an
//! identifier after masking is counted as a leak. Pure functions, no
//! allocation, so that scanning every output value stays cheap.

/// Which identifier a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ResidentId,
    Mobile,
    CreditCode,
    BankCard,
    Plate,
    Email,
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// Resident identity card number (GB 11643): 17 digits, a check character
/// (`0-9` or `X`), and a plausible birth date (1900-2099) at positions 7-14.
pub fn is_resident_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) || b[0] == b'0' {
        return false;
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = ID_CHECK[(sum % 11) as usize];
    if b[17].to_ascii_uppercase() != check {
        return false;
    }
    plausible_date(&b[6..14])
}

fn digits(b: &[u8]) -> u32 {
    b.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'))
}

/// `YYYYMMDD` with 1900 <= year <= 2099 and a real day of that month.
fn plausible_date(b: &[u8]) -> bool {
    let (y, m, d) = (digits(&b[..4]), digits(&b[4..6]), digits(&b[6..8]));
    (1900..=2099).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// Days in a month of the proleptic Gregorian calendar.
pub fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Mainland mobile number: `1[3-9]` and 9 more digits.
pub fn is_mobile(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && b.iter().all(u8::is_ascii_digit)
}

const CC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const CC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn cc_value(c: u8) -> Option<u32> {
    CC_ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Unified social credit code (GB 32100): 18 characters of
/// `0123456789ABCDEFGHJKLMNPQRTUWXY`, the last a mod-31 check.
pub fn is_credit_code(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 18 {
        return false;
    }
    let mut sum = 0;
    for (c, w) in b[..17].iter().zip(CC_WEIGHTS) {
        match cc_value(*c) {
            Some(v) => sum += v * w,
            None => return false,
        }
    }
    cc_value(b[17]) == Some((31 - sum % 31) % 31)
}

/// Bank card number: 13 to 19 digits passing the Luhn check.
pub fn is_bank_card(s: &str) -> bool {
    let b = s.as_bytes();
    (13..=19).contains(&b.len()) && b.iter().all(u8::is_ascii_digit) && luhn(b)
}

fn luhn(b: &[u8]) -> bool {
    let sum: u32 = b
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// One-character abbreviations of the provinces used on plates.
const PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";

/// Vehicle plate: a province character, a letter, an optional `·`, then 5
/// (ordinary) or 6 (new-energy) letters and digits, e.g. `京A12345`, `粤B·D12345`.
pub fn is_plate(s: &str) -> bool {
    plate_at(s).is_some_and(|len| len == s.len())
}

/// Length in bytes of a plate starting at the beginning of `s`.
fn plate_at(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    let (_, p) = chars.next()?;
    if !PROVINCES.contains(p) {
        return None;
    }
    let (_, letter) = chars.next()?;
    if !letter.is_ascii_uppercase() {
        return None;
    }
    let mut rest = &s[p.len_utf8() + 1..];
    if let Some(r) = rest.strip_prefix('·').or_else(|| rest.strip_prefix('•')) {
        rest = r;
    }
    let n = rest
        .bytes()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        .count();
    ((n == 5 || n == 6) && rest.bytes().take(n).any(|c| c.is_ascii_digit()))
        .then(|| s.len() - rest.len() + n)
}

fn email_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-".contains(&c)
}

fn email_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

/// E-mail address: `local@domain.tld` with a letters-only TLD of 2+ characters.
pub fn is_email(s: &str) -> bool {
    let b = s.as_bytes();
    match b.iter().position(|&c| c == b'@') {
        Some(at) => email_around(b, at) == Some((0, b.len())),
        None => false,
    }
}

/// The span of an e-mail address around the `@` at `at`, if there is one.
fn email_around(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let start = at
        - b[..at]
            .iter()
            .rev()
            .take_while(|&&c| email_local(c))
            .count();
    let end = at + 1 + b[at + 1..].iter().take_while(|&&c| email_domain(c)).count();
    let domain = std::str::from_utf8(&b[at + 1..end])
        .ok()?
        .trim_end_matches('.');
    let tld = domain.rsplit_once('.')?.1;
    let ok = start < at
        && !domain.starts_with('.')
        && tld.len() >= 2
        && tld.bytes().all(|c| c.is_ascii_alphabetic());
    ok.then_some((start, at + 1 + domain.len()))
}

/// Classify a whole value.
pub fn classify(s: &str) -> Option<Kind> {
    if is_resident_id(s) {
        Some(Kind::ResidentId)
    } else if is_credit_code(s) {
        Some(Kind::CreditCode)
    } else if is_mobile(s) {
        Some(Kind::Mobile)
    } else if is_bank_card(s) {
        Some(Kind::BankCard)
    } else if is_plate(s) {
        Some(Kind::Plate)
    } else if is_email(s) {
        Some(Kind::Email)
    } else {
        None
    }
}

/// The first identifier found anywhere inside `s` (free text included): runs
/// of digits (ID, mobile, bank card), runs of upper-case letters and digits
/// (credit code), province characters (plate), `@` (e-mail).
pub fn find(s: &str) -> Option<Kind> {
    let b = s.as_bytes();
    // Fast exit for most text: every identifier needs 11 digits, an
    // upper-case letter (plate, credit code) or an `@`.
    let (digits, marked) = digits_and_marks(b);
    if digits < 11 && !marked {
        return None;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() {
            // A maximal run of ASCII letters and digits.
            let len = b[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            let run = &s[i..i + len];
            if is_pseudonym_body(b, i, len) {
                i += len;
                continue;
            }
            if let Some(k) = find_in_run(run) {
                return Some(k);
            }
            i += len;
        } else if c == b'@' {
            if email_around(b, i).is_some() {
                return Some(Kind::Email);
            }
            i += 1;
        } else if c >= 0xE0 {
            // A three-byte character: maybe a province starting a plate.
            // Cheap test first: a plate's second character is A-Z.
            if b.get(i + 3).is_some_and(u8::is_ascii_uppercase)
                && s.is_char_boundary(i)
                && plate_at(&s[i..]).is_some()
            {
                return Some(Kind::Plate);
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    None
}

/// Whether [`find`] finds nothing in any value lying within `bytes` (a
/// whole record, say): `bytes` holds no ASCII capital letter or `@`, and
/// no run of 11 ASCII digits. Every identifier needs one of these: an
/// e-mail its `@`, a plate its capital; without a capital, a resident ID
/// or credit code needs 17 digits in a row, a mobile 11, a bank card 13.
/// Sixteen bytes at a time.
pub fn none_within(bytes: &[u8]) -> bool {
    // Digit flags of the bytes read so far, the newest in the top bits.
    let mut window = 0u64;
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        let block: &[u8; 16] = block.try_into().unwrap_or(&[0; 16]);
        if !none_within_block(block, &mut window) {
            return false;
        }
    }
    let mut last = [0u8; 16];
    last[..blocks.remainder().len()].copy_from_slice(blocks.remainder());
    none_within_block(&last, &mut window)
}

/// One block of [`none_within`]: `false` on a capital or `@`, or when its
/// digits after the previous blocks' make 11 in a row.
#[inline]
fn none_within_block(block: &[u8; 16], window: &mut u64) -> bool {
    let (marks, digits) = classify16(block);
    if marks != 0 {
        return false;
    }
    if digits == 0 {
        // A run of 11 ending before this block was seen before it.
        *window = 0;
        return true;
    }
    let w = (*window >> 16) | (u64::from(digits) << 48);
    *window = w;
    // Bit p of `r8`: bits p to p + 7 all set; of `r11`: p to p + 10.
    let r2 = w & (w >> 1);
    let r4 = r2 & (r2 >> 2);
    let r8 = r4 & (r4 >> 4);
    r8 & (r8 >> 3) == 0
}

/// Bit i of each mask: byte i is a capital or `@`; byte i is a digit.
#[cfg(target_arch = "x86_64")]
#[inline]
fn classify16(block: &[u8; 16]) -> (u16, u16) {
    use std::arch::x86_64::{
        _mm_add_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of every x86_64 target; the load reads the 16
    // bytes of `block`, unaligned.
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        // c in [lo, lo + n) exactly when c - lo + 128 (wrapping) is below
        // n - 128 as a signed byte.
        let within = |lo: u8, n: u8| {
            let shifted = _mm_add_epi8(v, _mm_set1_epi8(128u8.wrapping_sub(lo) as i8));
            _mm_movemask_epi8(_mm_cmplt_epi8(
                shifted,
                _mm_set1_epi8(n.wrapping_sub(128) as i8),
            )) as u16
        };
        // `@` (0x40) and A-Z (0x41-0x5a) are one range.
        (within(b'@', 27), within(b'0', 10))
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn classify16(block: &[u8; 16]) -> (u16, u16) {
    block.iter().enumerate().fold((0, 0), |(m, d), (i, &c)| {
        (
            m | u16::from(c.wrapping_sub(b'@') < 27) << i,
            d | u16::from(c.wrapping_sub(b'0') < 10) << i,
        )
    })
}

/// How many ASCII digits `b` holds, and whether it holds a capital or `@`:
/// one branch-free pass, 16 bytes at a time in byte-wide vector lanes.
fn digits_and_marks(b: &[u8]) -> (usize, bool) {
    let class = |c: u8| {
        (
            u8::from(c.wrapping_sub(b'0') < 10),
            u8::from(c.wrapping_sub(b'A') < 26) | u8::from(c == b'@'),
        )
    };
    let (mut digits, mut marks) = (0usize, 0u8);
    let mut chunks = b.chunks_exact(16);
    for chunk in &mut chunks {
        let (mut n, mut m) = (0u8, 0u8);
        for &c in chunk {
            let (d, k) = class(c);
            n += d;
            m |= k;
        }
        digits += usize::from(n);
        marks |= m;
    }
    for &c in chunks.remainder() {
        let (d, k) = class(c);
        digits += usize::from(d);
        marks |= k;
    }
    (digits, marks != 0)
}

/// `p_` and 32 lower-case hex digits: a pseudonym of `hash`, whose digit
/// stretches are chance (one in ~40 000 has a long run of digits).
fn is_pseudonym_body(b: &[u8], start: usize, len: usize) -> bool {
    len == 32
        && start >= 2
        && &b[start - 2..start] == crate::rules::PSEUDONYM_PREFIX.as_bytes()
        && b[start..start + len]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

fn find_in_run(run: &str) -> Option<Kind> {
    let b = run.as_bytes();
    if b.len() == 18 {
        if is_resident_id(run) {
            return Some(Kind::ResidentId);
        }
        if is_credit_code(run) {
            return Some(Kind::CreditCode);
        }
    }
    // Digit runs inside the run ("tel13812345678"), unless letters and
    // digits alternate more than letters-digits-letters: that is a code or
    // a hex pseudonym, whose digit stretches are chance.
    let transitions = b
        .windows(2)
        .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
        .count();
    if transitions > 2 {
        return None;
    }
    let mut j = 0;
    while j < b.len() {
        if !b[j].is_ascii_digit() {
            j += 1;
            continue;
        }
        let mut len = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 17 && matches!(b.get(j + 17), Some(b'X' | b'x')) {
            len = 18;
        }
        let digits = &run[j..j + len];
        if len == 18 && is_resident_id(digits) {
            return Some(Kind::ResidentId);
        }
        if is_mobile(digits) {
            return Some(Kind::Mobile);
        }
        if is_bank_card(digits) {
            return Some(Kind::BankCard);
        }
        j += len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// [`none_within`] as written in its doc, byte by byte.
    fn none_within_by_definition(b: &[u8]) -> bool {
        let marked = b.iter().any(|c| c.is_ascii_uppercase() || *c == b'@');
        let long_run = b.split(|c| !c.is_ascii_digit()).any(|run| run.len() >= 11);
        !marked && !long_run
    }

    #[test]
    fn none_within_rows() {
        assert!(none_within("南山街道,20-29,2024-03,12345.67,无".as_bytes()));
        assert!(none_within(b"p_0123456789abcdef"));
        assert!(none_within(b""));
        assert!(!none_within(b"a,b,13812345678"));
        assert!(!none_within(b"x@y"));
        assert!(!none_within("京A12345".as_bytes()));
        // 10 and 11 digits in a row at every offset, across words.
        for at in 0..24 {
            let mut b = vec![b'-'; at];
            b.extend_from_slice(b"1234567890");
            assert!(none_within(&b), "{at}");
            b.push(b'1');
            assert!(!none_within(&b), "{at}");
            b.extend_from_slice(b",xy");
            assert!(!none_within(&b), "{at}");
        }
    }

    // Check characters computed by hand with the GB 11643 weights.
    #[test]
    fn resident_ids() {
        for ok in [
            "11010519491231002X",
            "110101199003074477",
            "320311198001015674",
        ] {
            assert!(is_resident_id(ok), "{ok}");
            assert_eq!(classify(ok), Some(Kind::ResidentId));
        }
        assert!(is_resident_id("11010519491231002x"));
        for bad in [
            "110105194912310021", // wrong check character (X expected)
            "320311198001015678", // wrong check character (4 expected)
            "440524188001010014", // check fits, but born in 1880
            "110101199002304471", // 30 February
            "11010519491231002",  // 17 characters
            "A1010519491231002X",
        ] {
            assert!(!is_resident_id(bad), "{bad}");
        }
    }

    #[test]
    fn mobiles() {
        for ok in ["13812345678", "19912345678", "15000000000"] {
            assert!(is_mobile(ok), "{ok}");
        }
        for bad in ["12812345678", "1381234567", "138123456789", "1381234567a"] {
            assert!(!is_mobile(bad), "{bad}");
        }
    }

    #[test]
    fn credit_codes() {
        for ok in ["91350100M000100Y43", "91110000802100433B"] {
            assert!(is_credit_code(ok), "{ok}");
        }
        for bad in [
            "911100001000000001", // check R expected
            "91350100M000100Y44",
            "91350100M000100I43", // I is not in the alphabet
            "91350100M000100Y4",
        ] {
            assert!(!is_credit_code(bad), "{bad}");
        }
    }

    #[test]
    fn bank_cards() {
        for ok in ["4111111111111111", "6222021234567890128"] {
            assert!(is_bank_card(ok), "{ok}");
        }
        for bad in [
            "6222021234567890123",
            "4111111111111112",
            "411111111111",
            "41111111111111111111",
        ] {
            assert!(!is_bank_card(bad), "{bad}");
        }
    }

    #[test]
    fn plates() {
        for ok in ["京A12345", "粤B·D12345", "沪CD1234", "川A•12345F"] {
            assert!(is_plate(ok), "{ok}");
        }
        for bad in [
            "京a12345",
            "京A1234",
            "京A1234567",
            "X京A12345",
            "美A12345",
            "京AABCDE",
        ] {
            assert!(!is_plate(bad), "{bad}");
        }
    }

    #[test]
    fn emails() {
        for ok in ["zhang.san@example.com", "a+b@mail.qq.com"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "zhang@",
            "@example.com",
            "zhang@example",
            "zhang@example.c0m",
            "z**@***",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn find_inside_text() {
        assert_eq!(find("请联系13812345678谢谢"), Some(Kind::Mobile));
        assert_eq!(find("tel13812345678"), Some(Kind::Mobile));
        assert_eq!(find("身份证11010519491231002X。"), Some(Kind::ResidentId));
        assert_eq!(find("卡号 6222021234567890128"), Some(Kind::BankCard));
        assert_eq!(find("车牌粤B·D12345停在"), Some(Kind::Plate));
        assert_eq!(find("邮件 zhang.san@example.com 已发"), Some(Kind::Email));
        assert_eq!(find("代码91350100M000100Y43"), Some(Kind::CreditCode));
        // Only the exact pseudonym shape is skipped.
        assert_eq!(
            find("q_4111111111111111abcdefabcdefabcd"),
            Some(Kind::BankCard)
        );
        for clean in [
            "138****5678",
            "张**",
            "1101**********002X",
            "p_0123456789abcdef0123456789abcdef",
            "p_a13812345678b1381234567800000000",
            "p_4111111111111111abcdefabcdefabcd",
            "北京市朝阳区",
            "收入 12345",
            "",
        ] {
            assert_eq!(find(clean), None, "{clean}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn none_within_is_its_definition(b in proptest::collection::vec(
            prop_oneof![
                Just(b'1'), Just(b','), Just(b'@'), Just(b'Z'), Just(b'['),
                Just(b'/'), Just(b':'), Just(b'?'), Just(0xb0u8), Just(0xc1u8),
                Just(0xdau8), any::<u8>(),
            ], 0..80)) {
            prop_assert_eq!(none_within(&b), none_within_by_definition(&b));
        }

        /// Nothing is found in the values of a record found empty.
        #[test]
        fn none_within_means_nothing_found(s in "[0-9a-z.,:_\\-张三京 ]{0,60}") {
            if none_within(s.as_bytes()) {
                for v in s.split(',') {
                    prop_assert_eq!(find(v), None, "{:?}", v);
                }
            }
        }

        // Changing one digit of a valid ID always breaks the check.
        #[test]
        fn one_digit_changed_breaks_the_id(pos in 0usize..17, delta in 1u8..10) {
            let mut b = b"110101199003074477".to_vec();
            b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
            let s = String::from_utf8(b).expect("ascii");
            prop_assert!(!is_resident_id(&s));
        }

        // Masking any character of a mobile number hides it from the scan.
        #[test]
        fn masked_mobiles_are_not_found(pos in 0usize..11) {
            let mut s: Vec<char> = "13812345678".chars().collect();
            s[pos] = '*';
            let s: String = s.into_iter().collect();
            prop_assert_eq!(find(&s), None);
        }

        #[test]
        fn digits_and_marks_counts_every_byte(s in "\\PC{0,80}") {
            let b = s.as_bytes();
            let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
            let marked = b.iter().any(|c| c.is_ascii_uppercase() || *c == b'@');
            prop_assert_eq!(digits_and_marks(b), (digits, marked));
        }

        #[test]
        fn find_never_panics(s in ".{0,40}") {
            let _ = find(&s);
        }
    }
}
