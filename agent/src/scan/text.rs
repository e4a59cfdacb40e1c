//! Plain text, Markdown and JSON documents: every line is checked for
//! identifiers and pseudonyms, and every line and token against the raw
//! personal values.

use std::io::{BufRead, BufReader};
use std::path::Path;

use super::identifiers::check_value;
use super::raw::Matcher;
use super::report::{Checks, Position, Verdict};

/// Characters that separate tokens in free text.
fn separator(c: char) -> bool {
    c.is_whitespace() || ",;:|\t\"'{}[]()<>=，。；：、（）《》“”".contains(c)
}

/// Scan a text file line by line; returns the number of lines.
pub fn scan(path: &Path, checks: &mut Checks, raw: Option<&Matcher>) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {}", e.kind()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("read error: {}", e.kind()))?;
        if n == 0 {
            return Ok(line);
        }
        line += 1;
        let bytes = if line == 1 {
            crate::formats::strip_bom(&buf)
        } else {
            &buf
        };
        let Ok(text) = simdutf8::basic::from_utf8(bytes) else {
            checks.hit_kind(
                "malformed",
                Verdict::Fail,
                Position::line(line),
                "not valid UTF-8",
            );
            continue;
        };
        check_text(checks, Position::line(line), text, raw);
    }
}

/// Every value check on a piece of free text, and the raw-value check on
/// it and on each of its tokens.
pub fn check_text(checks: &mut Checks, at: Position, text: &str, raw: Option<&Matcher>) {
    check_value(checks, at.clone(), text, None);
    let Some(m) = raw else { return };
    let whole = text.trim();
    if m.is_raw_value(whole) || whole.split(separator).any(|t| m.is_raw_value(t)) {
        checks.hit("raw-value", Verdict::Fail, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_checked_and_bad_bytes_named_by_line() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let p = dir.path().join("notes.md");
        let mut body = "# 结论\n\n联系人 zhang.san@example.com\n"
            .as_bytes()
            .to_vec();
        body.extend_from_slice(b"bad \xff byte\nid p_0123456789abcdef0123456789abcdef\n");
        std::fs::write(&p, body).expect("write");
        let mut c = Checks::default();
        assert_eq!(scan(&p, &mut c, None).expect("scan"), 5);
        let id = c.get("identifier").expect("e-mail found");
        assert_eq!(id.positions, vec![Position::line(3)]);
        assert_eq!(
            c.get("malformed").expect("bad line").positions,
            vec![Position::line(4)]
        );
        assert_eq!(
            c.get("pseudonym").expect("pseudonym").positions,
            vec![Position::line(5)]
        );
    }
}
