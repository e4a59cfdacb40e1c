//! What a file is, by its bytes (never by its name), and the allow-list.

use std::io::Read;
use std::path::Path;

/// Bytes read to decide.
const HEAD: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Csv,
    Jsonl,
    Parquet,
    Json,
    Text,
    Png,
    Pdf,
    Archive(&'static str),
    Executable(&'static str),
    /// Python pickle: runs code when loaded; only ever a model.
    Pickle,
    Unknown,
}

impl FileType {
    pub fn name(self) -> &'static str {
        match self {
            FileType::Csv => "csv",
            FileType::Jsonl => "jsonl",
            FileType::Parquet => "parquet",
            FileType::Json => "json",
            FileType::Text => "text",
            FileType::Png => "png",
            FileType::Pdf => "pdf",
            FileType::Archive(a) | FileType::Executable(a) => a,
            FileType::Pickle => "pickle",
            FileType::Unknown => "unknown",
        }
    }

    /// On the allow-list.
    pub fn allowed(self) -> bool {
        !matches!(
            self,
            FileType::Archive(_) | FileType::Executable(_) | FileType::Pickle | FileType::Unknown
        )
    }

    /// CSV, JSON Lines or Parquet: read row by row.
    pub fn tabular(self) -> bool {
        matches!(self, FileType::Csv | FileType::Jsonl | FileType::Parquet)
    }
}

const MAGIC: &[(&[u8], FileType)] = &[
    (b"PAR1", FileType::Parquet),
    (b"\x89PNG\r\n\x1a\n", FileType::Png),
    (b"%PDF-", FileType::Pdf),
    (b"\x1f\x8b", FileType::Archive("gzip")),
    (b"PK\x03\x04", FileType::Archive("zip")),
    (b"PK\x05\x06", FileType::Archive("zip")),
    (b"7z\xbc\xaf\x27\x1c", FileType::Archive("7z")),
    (b"Rar!", FileType::Archive("rar")),
    (b"\xfd7zXZ\0", FileType::Archive("xz")),
    (b"BZh", FileType::Archive("bzip2")),
    (b"\x28\xb5\x2f\xfd", FileType::Archive("zstd")),
    (b"\x7fELF", FileType::Executable("elf")),
    (b"MZ", FileType::Executable("pe")),
    (b"\xcf\xfa\xed\xfe", FileType::Executable("mach-o")),
    (b"\xce\xfa\xed\xfe", FileType::Executable("mach-o")),
    (b"\xca\xfe\xba\xbe", FileType::Executable("mach-o")),
    (b"#!", FileType::Executable("script")),
    (b"\0asm", FileType::Executable("wasm")),
];

/// Decide from the first bytes of a file.
pub fn detect(path: &Path) -> std::io::Result<FileType> {
    let mut head = Vec::with_capacity(HEAD);
    std::fs::File::open(path)?
        .take(HEAD as u64)
        .read_to_end(&mut head)?;
    Ok(detect_bytes(&head))
}

pub fn detect_bytes(head: &[u8]) -> FileType {
    if let Some((_, t)) = MAGIC.iter().find(|(m, _)| head.starts_with(m)) {
        return *t;
    }
    if head.len() > 262 && &head[257..262] == b"ustar" {
        return FileType::Archive("tar");
    }
    if matches!(head, [0x80, 2..=5, ..]) {
        return FileType::Pickle;
    }
    let head = crate::formats::strip_bom(head);
    match text_prefix(head) {
        Some(text) => text_type(text),
        None => FileType::Unknown,
    }
}

/// The head as text, allowing a character cut at the end; no NUL bytes.
fn text_prefix(head: &[u8]) -> Option<&str> {
    if head.contains(&0) {
        return None;
    }
    match std::str::from_utf8(head) {
        Ok(s) => Some(s),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    }
}

fn text_type(text: &str) -> FileType {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return FileType::Text;
    };
    let trimmed = first.trim_start();
    if trimmed.starts_with('{')
        && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(first).is_ok()
    {
        return FileType::Jsonl;
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return FileType::Json;
    }
    if looks_like_csv(text) {
        FileType::Csv
    } else {
        FileType::Text
    }
}

/// A header of two or more fields, and most of the first records of the
/// same width (a malformed row does not make a CSV file text).
fn looks_like_csv(text: &str) -> bool {
    // Drop a last line that may be cut.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => text,
    };
    let mut r = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(complete.as_bytes());
    let widths: Vec<usize> = r
        .records()
        .take(50)
        .map_while(Result::ok)
        .map(|r| r.len())
        .collect();
    match widths.split_first() {
        Some((&w, rest)) if w >= 2 => {
            let same = rest.iter().filter(|&&x| x == w).count();
            rest.is_empty() || same * 2 > rest.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_content() {
        let cases: &[(&[u8], &str)] = &[
            (b"PAR1\x15\x04", "parquet"),
            (b"\x89PNG\r\n\x1a\n\0\0", "png"),
            (b"%PDF-1.7\n", "pdf"),
            (b"\x1f\x8b\x08\0", "gzip"),
            (b"PK\x03\x04rest", "zip"),
            (b"\x7fELF\x02\x01", "elf"),
            (b"#!/bin/sh\nrm -rf /\n", "script"),
            (b"\x80\x04\x95", "pickle"),
            (b"district,n\nA,12\nB,30\n", "csv"),
            (b"district,n\nA,12\nB\nC,30\n", "csv"),
            (b"one,two\nthree\nfour\n", "text"),
            ("\u{feff}区,人数\n东,12\n".as_bytes(), "csv"),
            (b"{\"a\":1}\n{\"a\":2}\n", "jsonl"),
            (b"{\n  \"a\": 1\n}\n", "json"),
            (b"[1, 2]", "json"),
            (b"# Findings\n\nThe rate rose.\n", "text"),
            (b"", "text"),
            (b"\0\x01\x02binary", "unknown"),
            (b"\xff\xfe\xfd", "unknown"),
        ];
        for (bytes, want) in cases {
            assert_eq!(detect_bytes(bytes).name(), *want, "{bytes:?}");
        }
    }

    #[test]
    fn the_extension_does_not_matter_and_the_allow_list_holds() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let p = dir.path().join("report.csv");
        std::fs::write(&p, b"PK\x03\x04zip inside").expect("write");
        let t = detect(&p).expect("read");
        assert_eq!(t, FileType::Archive("zip"));
        assert!(!t.allowed());
        for ok in [FileType::Csv, FileType::Png, FileType::Pdf, FileType::Text] {
            assert!(ok.allowed());
        }
        assert!(!FileType::Executable("elf").allowed());
        assert!(!FileType::Unknown.allowed());
    }

    #[test]
    fn a_text_cut_inside_a_character_is_still_text() {
        let mut b = "说明,数值\n甲,1\n".repeat(3).into_bytes();
        b.extend_from_slice(&"乙".as_bytes()[..2]);
        assert_eq!(detect_bytes(&b), FileType::Csv);
    }
}
