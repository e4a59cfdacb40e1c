//! PNG and PDF: the text that can be read from them without rendering.
//!
//! PNG: the text chunks (`tEXt`, uncompressed `iTXt`; `zTXt` and
//! compressed `iTXt` are counted as not read). PDF: the literal `(...)`
//! and hex `<...>` strings outside compressed streams (the document's
//! metadata and any uncompressed content). What is drawn (pixels, glyphs
//! of embedded fonts, compressed streams) is not read: such files are
//! never `pass`, at best `review`.

/// Pieces of text found, and what could not be read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    pub texts: Vec<String>,
    /// What was left unread, in words (never content).
    pub unread: Vec<String>,
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The text chunks of a PNG; `Err` when the chunk structure is broken.
pub fn png_texts(bytes: &[u8]) -> Result<Extracted, String> {
    let mut rest = bytes
        .strip_prefix(PNG_SIGNATURE)
        .ok_or("not a PNG signature")?;
    let mut out = Extracted::default();
    let mut compressed = 0;
    let mut ended = false;
    while rest.len() >= 12 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = &rest[4..8];
        let data = rest
            .get(8..8 + len)
            .ok_or("a PNG chunk runs past the end of the file")?;
        match kind {
            b"tEXt" => out.texts.push(latin1(data)),
            b"iTXt" => match itxt(data) {
                Some(t) => out.texts.push(t),
                None => compressed += 1,
            },
            b"zTXt" => compressed += 1,
            _ => {}
        }
        rest = &rest[(12 + len).min(rest.len())..];
        if kind == b"IEND" {
            ended = true;
            break;
        }
    }
    if !ended {
        return Err("the PNG ends before its IEND chunk".into());
    }
    if compressed > 0 {
        out.unread.push(format!(
            "{compressed} compressed PNG text chunk(s) (zTXt, compressed iTXt)"
        ));
    }
    out.unread
        .push("the image itself: text drawn in its pixels".into());
    Ok(out)
}

/// `tEXt` is Latin-1: keyword, NUL, text; both are checked.
fn latin1(data: &[u8]) -> String {
    data.iter()
        .map(|&b| if b == 0 { ' ' } else { char::from(b) })
        .collect()
}

/// An uncompressed `iTXt`: keyword, NUL, flag, method, language, NUL,
/// translated keyword, NUL, UTF-8 text. `None` when compressed.
fn itxt(data: &[u8]) -> Option<String> {
    let nul = data.iter().position(|&b| b == 0)?;
    let (keyword, rest) = (&data[..nul], &data[nul + 1..]);
    if rest.first() != Some(&0) {
        return None;
    }
    let rest = rest.get(2..)?;
    let lang_end = rest.iter().position(|&b| b == 0)?;
    let rest = &rest[lang_end + 1..];
    let tk_end = rest.iter().position(|&b| b == 0)?;
    let mut text = latin1(keyword);
    for part in [&rest[..tk_end], &rest[tk_end + 1..]] {
        text.push(' ');
        text.push_str(&String::from_utf8_lossy(part));
    }
    Some(text)
}

/// The strings of a PDF outside its compressed streams.
pub fn pdf_texts(bytes: &[u8]) -> Extracted {
    let mut out = Extracted::default();
    let mut compressed = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' => {
                let (s, end) = literal(bytes, i + 1);
                push_text(&mut out.texts, &s);
                i = end;
            }
            b'<' if bytes.get(i + 1) == Some(&b'<') => i += 2,
            b'<' => {
                let (s, end) = hex_string(bytes, i + 1);
                push_text(&mut out.texts, &s);
                i = end;
            }
            b'%' => i = line_end(bytes, i),
            b's' if bytes[i..].starts_with(b"stream") && starts_stream(bytes, i) => {
                let (end, filtered) = stream_end(bytes, i);
                if filtered {
                    compressed += 1;
                } else {
                    // An uncompressed stream: its strings are read as above.
                    i += b"stream".len();
                    continue;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if compressed > 0 {
        out.unread
            .push(format!("{compressed} compressed or encoded PDF stream(s)"));
    }
    out.unread.push(
        "text drawn with embedded font encodings, and images: what a reader sees may differ from the strings".into(),
    );
    out
}

fn push_text(texts: &mut Vec<String>, bytes: &[u8]) {
    let t = decode_pdf_string(bytes);
    if !t.trim().is_empty() {
        texts.push(t);
    }
}

/// PDF text strings are UTF-16BE with a byte order mark, or else a
/// Latin-1 superset (PDFDocEncoding); UTF-8 is accepted as written.
fn decode_pdf_string(b: &[u8]) -> String {
    if let Some(rest) = b.strip_prefix(b"\xfe\xff") {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => b.iter().map(|&c| char::from(c)).collect(),
    }
}

/// A literal string from just after its `(`: balanced parentheses and
/// backslash escapes. Returns the bytes and the index after the `)`.
fn literal(b: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut depth = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        match c {
            b'\\' => {
                let Some(&e) = b.get(i) else { break };
                i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'0'..=b'7' => {
                        let digits = b[i - 1..]
                            .iter()
                            .take(3)
                            .take_while(|d| (b'0'..=b'7').contains(d))
                            .count();
                        let v = b[i - 1..i - 1 + digits]
                            .iter()
                            .fold(0u32, |n, d| n * 8 + u32::from(d - b'0'));
                        out.push(v as u8);
                        i += digits - 1;
                    }
                    b'\r' | b'\n' => {}
                    other => out.push(other),
                }
            }
            b'(' => {
                depth += 1;
                out.push(c);
            }
            b')' if depth == 0 => return (out, i),
            b')' => {
                depth -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    (out, i)
}

/// A hex string from just after its `<`, up to `>`.
fn hex_string(b: &[u8], i: usize) -> (Vec<u8>, usize) {
    let end = b[i..]
        .iter()
        .position(|&c| c == b'>')
        .map_or(b.len(), |p| i + p);
    let digits: Vec<u8> = b[i..end]
        .iter()
        .filter_map(|c| (*c as char).to_digit(16).map(|d| d as u8))
        .collect();
    let bytes = digits
        .chunks(2)
        .map(|p| (p[0] << 4) | p.get(1).copied().unwrap_or(0))
        .collect();
    (bytes, (end + 1).min(b.len()))
}

fn line_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map_or(b.len(), |p| i + p)
}

/// `stream` as a keyword (not inside `endstream` or a name).
fn starts_stream(b: &[u8], i: usize) -> bool {
    let before = i.checked_sub(1).map(|j| b[j]);
    let after = b.get(i + 6);
    !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'/')
        && matches!(after, Some(b'\r' | b'\n'))
}

/// Where the stream starting at `i` ends (after `endstream`), and whether
/// its dictionary names a filter (compressed or encoded).
fn stream_end(b: &[u8], i: usize) -> (usize, bool) {
    let dict_start = memchr::memmem::rfind(&b[..i], b"<<").unwrap_or(0);
    let filtered = memchr::memmem::find(&b[dict_start..i], b"/Filter").is_some();
    let end = memchr::memmem::find(&b[i..], b"endstream").map_or(b.len(), |p| i + p + 9);
    (end, filtered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&[0; 4]); // CRC, not checked
        c
    }

    fn png(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut p = PNG_SIGNATURE.to_vec();
        p.extend(chunk(b"IHDR", &[0; 13]));
        for c in chunks {
            p.extend_from_slice(c);
        }
        p.extend(chunk(b"IEND", b""));
        p
    }

    #[test]
    fn png_text_chunks_are_read_and_compressed_ones_counted() {
        let p = png(&[
            chunk(b"tEXt", b"Author\0zhang.san@example.com"),
            chunk(b"iTXt", "Comment\0\0\0zh\0\0电话13812345678".as_bytes()),
            chunk(b"iTXt", b"Comment\0\x01\0\0\0x\x9c"),
            chunk(b"zTXt", b"Note\0\0x\x9c"),
        ]);
        let e = png_texts(&p).expect("png");
        assert_eq!(e.texts.len(), 2, "{e:?}");
        assert!(e.texts[0].contains("zhang.san@example.com"));
        assert!(e.texts[1].contains("电话13812345678"));
        assert!(e.unread[0].starts_with("2 compressed"), "{e:?}");
        assert!(e.unread.iter().any(|u| u.contains("pixels")));
    }

    #[test]
    fn a_broken_png_is_an_error() {
        let mut p = png(&[chunk(b"tEXt", b"a\0b")]);
        p.truncate(PNG_SIGNATURE.len() + 25 + 10);
        assert!(png_texts(&p).is_err());
        assert!(png_texts(b"GIF89a").is_err());
    }

    #[test]
    fn pdf_strings_outside_compressed_streams() {
        let pdf = b"%PDF-1.7\n1 0 obj << /Title (Report \\(draft\\) 13812345678) /Author <FEFF5F204E09> >> endobj\n\
2 0 obj << /Length 20 >>\nstream\nBT (tel 11010519491231002X) Tj ET\nendstream\nendobj\n\
3 0 obj << /Length 9 /Filter /FlateDecode >>\nstream\n(hidden)\nendstream\nendobj\n%%EOF\n";
        let e = pdf_texts(pdf);
        assert_eq!(
            e.texts,
            vec![
                "Report (draft) 13812345678".to_string(),
                "张三".to_string(),
                "tel 11010519491231002X".to_string(),
            ]
        );
        assert_eq!(e.unread[0], "1 compressed or encoded PDF stream(s)");
    }

    #[test]
    fn pdf_escapes_and_hex_strings() {
        let (s, end) = literal(b"a\\101\\nb(c)d) rest", 0);
        assert_eq!(s, b"aA\nb(c)d");
        assert_eq!(end, 13);
        let (h, end) = hex_string(b"31 33 8> x", 0);
        assert_eq!((h, end), (vec![0x31, 0x33, 0x80], 8));
    }
}
