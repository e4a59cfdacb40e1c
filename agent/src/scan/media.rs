//! PNG and PDF: the text that can be read from them without rendering.
//!
//! PNG: the text chunks (`tEXt`, `iTXt`, `zTXt`; the compressed ones
//! inflated). PDF: the literal `(...)` and hex `<...>` strings outside
//! streams and inside uncompressed or `FlateDecode` streams (inflated),
//! and the whole text of embedded files. Every inflation of one file
//! shares one cap ([`MAX_INFLATED`]): past it the file fails, so a
//! decompression bomb costs at most the cap in memory. What is drawn
//! (pixels, glyphs of embedded fonts, streams with other filters) is not
//! read: such files are never `pass`, at best `review`.

use std::io::Read;

/// The most bytes inflated from one file's compressed parts together.
pub const MAX_INFLATED: usize = 64 << 20;

/// Pieces of text found, and what could not be read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    pub texts: Vec<String>,
    /// What was left unread, in words (never content).
    pub unread: Vec<String>,
    /// Set when the compressed parts inflate past the cap: the reason,
    /// in words. Nothing after that point was read; the file fails.
    pub over_limit: Option<String>,
}

/// What one inflation gave.
enum Inflated {
    /// The whole stream.
    Whole(Vec<u8>),
    /// A damaged or truncated stream: what could be inflated of it.
    Damaged(Vec<u8>),
    /// Past the cap; nothing is kept.
    OverCap,
}

/// Inflates zlib streams under one cap shared by a whole file.
struct Inflater {
    left: usize,
    cap: usize,
}

impl Inflater {
    fn new(cap: usize) -> Self {
        Inflater { left: cap, cap }
    }

    fn inflate(&mut self, data: &[u8]) -> Inflated {
        let mut out = Vec::new();
        // One byte more than is left tells "over" from "exactly at".
        let r = flate2::bufread::ZlibDecoder::new(data)
            .take(self.left as u64 + 1)
            .read_to_end(&mut out);
        if out.len() > self.left {
            self.left = 0;
            return Inflated::OverCap;
        }
        self.left -= out.len();
        match r {
            Ok(_) => Inflated::Whole(out),
            Err(_) => Inflated::Damaged(out),
        }
    }

    fn reason(&self, what: &str) -> String {
        format!(
            "{what} inflate to more than {} MiB together (a decompression bomb, or more than is checked): not read past that point",
            self.cap >> 20
        )
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The text chunks of a PNG; `Err` when the chunk structure is broken.
pub fn png_texts(bytes: &[u8]) -> Result<Extracted, String> {
    png_texts_capped(bytes, MAX_INFLATED)
}

fn png_texts_capped(bytes: &[u8], cap: usize) -> Result<Extracted, String> {
    let mut rest = bytes
        .strip_prefix(PNG_SIGNATURE)
        .ok_or("not a PNG signature")?;
    let mut out = Extracted::default();
    let mut inflater = Inflater::new(cap);
    let mut damaged = 0;
    let mut ended = false;
    while rest.len() >= 12 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = &rest[4..8];
        let data = rest
            .get(8..8 + len)
            .ok_or("a PNG chunk runs past the end of the file")?;
        let piece = match kind {
            b"tEXt" => Some(Chunk::Text(latin1(data))),
            b"iTXt" => Some(itxt(data, &mut inflater)),
            b"zTXt" => Some(ztxt(data, &mut inflater)),
            _ => None,
        };
        match piece {
            Some(Chunk::Text(t)) => out.texts.push(t),
            Some(Chunk::Damaged(t)) => {
                damaged += 1;
                out.texts.push(t);
            }
            Some(Chunk::OverCap) => {
                out.over_limit = Some(inflater.reason("the PNG's compressed text chunks"));
                return Ok(out);
            }
            None => {}
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
    if damaged > 0 {
        out.unread.push(format!(
            "{damaged} damaged PNG text chunk(s): only what could be inflated or parsed was read"
        ));
    }
    out.unread
        .push("the image itself: text drawn in its pixels".into());
    Ok(out)
}

/// A text chunk read: its text, a damaged one's readable part, or over the cap.
enum Chunk {
    Text(String),
    Damaged(String),
    OverCap,
}

/// `tEXt` is Latin-1: keyword, NUL, text; both are checked.
fn latin1(data: &[u8]) -> String {
    data.iter()
        .map(|&b| if b == 0 { ' ' } else { char::from(b) })
        .collect()
}

/// `zTXt`: keyword, NUL, method (0: zlib), Latin-1 text compressed.
fn ztxt(data: &[u8], inflater: &mut Inflater) -> Chunk {
    let Some(nul) = data.iter().position(|&b| b == 0) else {
        return Chunk::Damaged(latin1(data));
    };
    let keyword = latin1(&data[..nul]);
    let compressed = data.get(nul + 2..).unwrap_or_default();
    match inflater.inflate(compressed) {
        Inflated::Whole(t) => Chunk::Text(format!("{keyword} {}", latin1(&t))),
        Inflated::Damaged(t) => Chunk::Damaged(format!("{keyword} {}", latin1(&t))),
        Inflated::OverCap => Chunk::OverCap,
    }
}

/// `iTXt`: keyword, NUL, compression flag, method, language, NUL,
/// translated keyword, NUL, UTF-8 text (zlib-compressed when the flag is 1).
fn itxt(data: &[u8], inflater: &mut Inflater) -> Chunk {
    let Some(nul) = data.iter().position(|&b| b == 0) else {
        return Chunk::Damaged(latin1(data));
    };
    let (keyword, rest) = (&data[..nul], &data[nul + 1..]);
    let compressed = rest.first() == Some(&1);
    let parsed = rest.get(2..).and_then(|rest| {
        let lang_end = rest.iter().position(|&b| b == 0)?;
        let rest = &rest[lang_end + 1..];
        let tk_end = rest.iter().position(|&b| b == 0)?;
        Some((&rest[..tk_end], &rest[tk_end + 1..]))
    });
    let Some((translated, body)) = parsed else {
        // Not parseable: whatever bytes it holds are still checked.
        return Chunk::Damaged(format!(
            "{} {}",
            latin1(keyword),
            String::from_utf8_lossy(rest)
        ));
    };
    let head = format!(
        "{} {}",
        latin1(keyword),
        String::from_utf8_lossy(translated)
    );
    if !compressed {
        return Chunk::Text(format!("{head} {}", String::from_utf8_lossy(body)));
    }
    match inflater.inflate(body) {
        Inflated::Whole(t) => Chunk::Text(format!("{head} {}", String::from_utf8_lossy(&t))),
        Inflated::Damaged(t) => Chunk::Damaged(format!("{head} {}", String::from_utf8_lossy(&t))),
        Inflated::OverCap => Chunk::OverCap,
    }
}

/// The strings of a PDF: outside streams, and inside uncompressed and
/// `FlateDecode` streams (inflated); embedded files' whole text.
pub fn pdf_texts(bytes: &[u8]) -> Extracted {
    pdf_texts_capped(bytes, MAX_INFLATED)
}

fn pdf_texts_capped(bytes: &[u8], cap: usize) -> Extracted {
    let mut out = Extracted::default();
    let mut pdf = Pdf {
        inflater: Inflater::new(cap),
        other_filters: 0,
        damaged: 0,
        predicted: 0,
    };
    pdf.strings(bytes, true, &mut out);
    if pdf.other_filters > 0 {
        out.unread.push(format!(
            "{} PDF stream(s) with filters other than FlateDecode alone",
            pdf.other_filters
        ));
    }
    if pdf.damaged > 0 {
        out.unread.push(format!(
            "{} damaged FlateDecode stream(s): only what could be inflated was read",
            pdf.damaged
        ));
    }
    if pdf.predicted > 0 {
        out.unread.push(format!(
            "{} FlateDecode stream(s) with a predictor: read as inflated, not un-predicted",
            pdf.predicted
        ));
    }
    out.unread.push(
        "text drawn with embedded font encodings, and images: what a reader sees may differ from the strings".into(),
    );
    out
}

/// What a PDF's streams held that was not (wholly) read.
struct Pdf {
    inflater: Inflater,
    other_filters: usize,
    damaged: usize,
    predicted: usize,
}

impl Pdf {
    /// The strings of `bytes`; with `streams`, filtered streams are
    /// inflated and read too (inflated content holds no further streams
    /// worth reading: object streams hold no streams). Stops at the cap.
    fn strings(&mut self, bytes: &[u8], streams: bool, out: &mut Extracted) {
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
                b's' if streams && bytes[i..].starts_with(b"stream") && starts_stream(bytes, i) => {
                    let dict = stream_dict(bytes, i);
                    match filter(dict) {
                        // An uncompressed stream: its strings are read as above.
                        Filter::None => {
                            i += b"stream".len();
                            continue;
                        }
                        Filter::Flate => {
                            let (data, end) = stream_data(bytes, i);
                            i = end;
                            if !self.flate(dict, data, out) {
                                return;
                            }
                        }
                        Filter::Other => {
                            self.other_filters += 1;
                            i = stream_data(bytes, i).1;
                        }
                    }
                }
                _ => i += 1,
            }
        }
    }

    /// Inflate one `FlateDecode` stream and read it; `false` past the cap.
    fn flate(&mut self, dict: &[u8], data: &[u8], out: &mut Extracted) -> bool {
        if has_name(dict, b"/Subtype", b"/Image") {
            // Pixels: listed among what is not read.
            return true;
        }
        if memchr::memmem::find(dict, b"/Predictor").is_some() {
            self.predicted += 1;
        }
        let text = match self.inflater.inflate(data) {
            Inflated::Whole(t) => t,
            Inflated::Damaged(t) => {
                self.damaged += 1;
                t
            }
            Inflated::OverCap => {
                out.over_limit = Some(self.inflater.reason("the PDF's FlateDecode streams"));
                return false;
            }
        };
        if has_name(dict, b"/Type", b"/EmbeddedFile") {
            // An attached file: its whole text, line by line.
            for line in String::from_utf8_lossy(&text).lines() {
                if !line.trim().is_empty() {
                    out.texts.push(line.to_string());
                }
            }
        } else {
            self.strings(&text, false, out);
        }
        true
    }
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

/// The dictionary just before the `stream` keyword at `i`: from its
/// `<<` to its `>>`, nested dictionaries included.
fn stream_dict(b: &[u8], i: usize) -> &[u8] {
    let Some(close) = memchr::memmem::rfind(&b[..i], b">>") else {
        return &[];
    };
    let mut depth = 0usize;
    let mut j = close + 2;
    while j >= 2 {
        match &b[j - 2..j] {
            b">>" => {
                depth += 1;
                j -= 2;
            }
            b"<<" => {
                depth -= 1;
                j -= 2;
                if depth == 0 {
                    return &b[j..close + 2];
                }
            }
            _ => j -= 1,
        }
    }
    &b[..close + 2]
}

enum Filter {
    None,
    Flate,
    Other,
}

/// The stream's filter: none, `FlateDecode` alone (`/Fl` abbreviated,
/// or an array of just it), or anything else.
fn filter(dict: &[u8]) -> Filter {
    let Some(at) = memchr::memmem::find(dict, b"/Filter") else {
        return Filter::None;
    };
    let rest = trim_start(&dict[at + b"/Filter".len()..]);
    let rest = match rest.strip_prefix(b"[") {
        Some(inner) => {
            let inner = trim_start(inner);
            let name_end = name_len(inner);
            if trim_start(&inner[name_end..]).first() != Some(&b']') {
                return Filter::Other;
            }
            inner
        }
        None => rest,
    };
    match &rest[..name_len(rest)] {
        b"/FlateDecode" | b"/Fl" => Filter::Flate,
        _ => Filter::Other,
    }
}

/// Whether `dict` holds `key` followed by the name `value`.
fn has_name(dict: &[u8], key: &[u8], value: &[u8]) -> bool {
    memchr::memmem::find_iter(dict, key).any(|at| {
        let rest = &dict[at + key.len()..];
        if rest.first().is_some_and(u8::is_ascii_alphanumeric) {
            return false; // a longer key, e.g. /Types
        }
        let rest = trim_start(rest);
        rest[..name_len(rest)] == *value
    })
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// The length of the name at the start of `b` (`/` and its characters).
fn name_len(b: &[u8]) -> usize {
    if b.first() != Some(&b'/') {
        return 0;
    }
    1 + b[1..]
        .iter()
        .take_while(|c| !c.is_ascii_whitespace() && !b"/[]<>()".contains(c))
        .count()
}

/// The data of the stream whose keyword starts at `i` (after its end of
/// line, up to `endstream`), and the index after `endstream`.
fn stream_data(b: &[u8], i: usize) -> (&[u8], usize) {
    let mut start = i + b"stream".len();
    if b.get(start) == Some(&b'\r') {
        start += 1;
    }
    if b.get(start) == Some(&b'\n') {
        start += 1;
    }
    let start = start.min(b.len());
    match memchr::memmem::find(&b[start..], b"endstream") {
        Some(p) => (&b[start..start + p], start + p + b"endstream".len()),
        None => (&b[start..], b.len()),
    }
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

    /// zlib, as PNG and PDF write it.
    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(data).expect("deflate");
        z.finish().expect("deflate")
    }

    /// A zlib stream of `1 + 258 * copies` zero bytes, written by hand
    /// (fixed Huffman codes: one literal 0, then copies of 258 bytes at
    /// distance 1), so a bomb of any size costs the test no compression.
    pub(crate) fn zlib_zeros(copies: usize) -> Vec<u8> {
        struct Bits(Vec<u8>, u64, u32);
        impl Bits {
            fn put(&mut self, v: u64, n: u32) {
                self.1 |= v << self.2;
                self.2 += n;
                while self.2 >= 8 {
                    self.0.push(self.1 as u8);
                    self.1 >>= 8;
                    self.2 -= 8;
                }
            }
            /// A Huffman code goes most significant bit first.
            fn code(&mut self, c: u64, n: u32) {
                let r = (0..n).fold(0, |r, i| r | ((c >> i) & 1) << (n - 1 - i));
                self.put(r, n);
            }
        }
        let mut b = Bits(vec![0x78, 0x01], 0, 0);
        b.put(1, 1); // the final block
        b.put(1, 2); // fixed Huffman codes
        b.code(0x30, 8); // literal 0
        for _ in 0..copies {
            b.code(0xc5, 8); // length 258
            b.code(0, 5); // distance 1
        }
        b.code(0, 7); // end of block
        let pad = (8 - b.2) % 8;
        b.put(0, pad); // to a byte boundary
        let n = 1 + 258 * copies as u64;
        let adler = ((n % 65521) << 16) | 1;
        b.0.extend_from_slice(&(adler as u32).to_be_bytes());
        b.0
    }

    #[test]
    fn the_hand_written_bomb_is_valid_zlib() {
        let mut i = Inflater::new(1 << 20);
        match i.inflate(&zlib_zeros(10)) {
            Inflated::Whole(t) => assert_eq!(t, vec![0; 2581]),
            _ => panic!("not whole"),
        }
    }

    #[test]
    fn png_text_chunks_are_read_and_compressed_ones_inflated() {
        let mut itxt_z = b"Comment\0\x01\0zh\0\0".to_vec();
        itxt_z.extend(zlib("身份证11010519491231002X".as_bytes()));
        let mut ztxt = b"Note\0\0".to_vec();
        ztxt.extend(zlib(b"call 13912345678"));
        let p = png(&[
            chunk(b"tEXt", b"Author\0zhang.san@example.com"),
            chunk(b"iTXt", "Comment\0\0\0zh\0\0电话13812345678".as_bytes()),
            chunk(b"iTXt", &itxt_z),
            chunk(b"zTXt", &ztxt),
            chunk(b"zTXt", b"Bad\0\0x\x9c"),
        ]);
        let e = png_texts(&p).expect("png");
        assert_eq!(e.texts.len(), 5, "{e:?}");
        assert!(e.texts[0].contains("zhang.san@example.com"));
        assert!(e.texts[1].contains("电话13812345678"));
        assert_eq!(e.texts[2], "Comment  身份证11010519491231002X");
        assert_eq!(e.texts[3], "Note call 13912345678");
        assert_eq!(e.over_limit, None);
        assert!(e.unread[0].starts_with("1 damaged"), "{e:?}");
        assert!(e.unread.iter().any(|u| u.contains("pixels")));
    }

    #[test]
    fn png_text_past_the_cap_stops_the_reading() {
        let mut ztxt = b"Note\0\0".to_vec();
        ztxt.extend(zlib_zeros(8200)); // 2 MiB + 1
        let p = png(&[
            chunk(b"tEXt", b"a\0b"),
            chunk(b"zTXt", &ztxt),
            chunk(b"tEXt", b"c\0d"),
        ]);
        let e = png_texts_capped(&p, 2 << 20).expect("png");
        assert_eq!(e.texts, vec!["a b".to_string()]);
        let reason = e.over_limit.expect("over the cap");
        assert!(reason.contains("more than 2 MiB"), "{reason}");
        // Exactly at the cap is not over it.
        let e = png_texts_capped(&p, 1 + 258 * 8200).expect("png");
        assert_eq!((e.texts.len(), e.over_limit), (3, None));
    }

    #[test]
    fn a_broken_png_is_an_error() {
        let mut p = png(&[chunk(b"tEXt", b"a\0b")]);
        p.truncate(PNG_SIGNATURE.len() + 25 + 10);
        assert!(png_texts(&p).is_err());
        assert!(png_texts(b"GIF89a").is_err());
    }

    /// A PDF with these streams (dictionary entries, data).
    fn pdf(streams: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut p = b"%PDF-1.7\n1 0 obj << /Title (Report \\(draft\\) 13812345678) /Author <FEFF5F204E09> >> endobj\n".to_vec();
        for (n, (dict, data)) in streams.iter().enumerate() {
            p.extend(
                format!(
                    "{} 0 obj << /Length {} {dict} >>\nstream\r\n",
                    n + 2,
                    data.len()
                )
                .bytes(),
            );
            p.extend_from_slice(data);
            p.extend_from_slice(b"\r\nendstream\nendobj\n");
        }
        p.extend_from_slice(b"%%EOF\n");
        p
    }

    #[test]
    fn pdf_strings_in_plain_and_flate_streams() {
        let content = b"BT /F1 12 Tf 72 712 Td (id 11010519491231002X) Tj ET".to_vec();
        let attached = "姓名,手机\n张三,13812345678\n".as_bytes();
        let p = pdf(&[
            ("", b"BT (tel 11010519491231002X) Tj ET".to_vec()),
            ("/Filter /FlateDecode", zlib(&content)),
            (
                "/Filter [ /Fl ] /DecodeParms << /Columns 4 >>",
                zlib(b"(in an array)"),
            ),
            ("/Type /EmbeddedFile /Filter /FlateDecode", zlib(attached)),
            ("/Filter /DCTDecode", b"(not read)".to_vec()),
            ("/Filter [/FlateDecode /ASCII85Decode]", zlib(b"(not read)")),
            ("/Subtype /Image /Filter /FlateDecode", zlib(b"(pixels)")),
        ]);
        let e = pdf_texts(&p);
        assert_eq!(
            e.texts,
            vec![
                "Report (draft) 13812345678".to_string(),
                "张三".to_string(),
                "tel 11010519491231002X".to_string(),
                "id 11010519491231002X".to_string(),
                "in an array".to_string(),
                "姓名,手机".to_string(),
                "张三,13812345678".to_string(),
            ]
        );
        assert_eq!(e.over_limit, None);
        assert_eq!(
            e.unread[0],
            "2 PDF stream(s) with filters other than FlateDecode alone"
        );
    }

    #[test]
    fn a_damaged_flate_stream_is_read_as_far_as_it_goes() {
        let mut z = zlib(b"(13812345678) Tj (more text that is cut off here)");
        z.truncate(z.len() - 12);
        let e = pdf_texts(&pdf(&[("/Filter /FlateDecode", z)]));
        assert!(e.texts.iter().any(|t| t == "13812345678"), "{e:?}");
        assert!(e.unread[0].starts_with("1 damaged"), "{e:?}");
    }

    #[test]
    fn a_pdf_bomb_stops_at_the_cap() {
        // Two streams of 1 MiB each fit a cap of 2 MiB together; a third
        // does not, and nothing after it is read.
        let mib = 4064; // 1 + 258 * 4064 bytes: just under 1 MiB
        let p = pdf(&[
            ("/Filter /FlateDecode", zlib_zeros(mib)),
            ("/Filter /FlateDecode", zlib_zeros(mib)),
            ("/Filter /FlateDecode", zlib_zeros(mib)),
            ("", b"(after the bomb)".to_vec()),
        ]);
        let e = pdf_texts_capped(&p, 2 << 20);
        let reason = e.over_limit.clone().expect("over");
        assert!(
            reason.starts_with("the PDF's FlateDecode streams inflate to more than 2 MiB"),
            "{reason}"
        );
        assert!(!e.texts.iter().any(|t| t.contains("after")), "{e:?}");
        // The real cap: a bomb of 64 MiB and 1 byte, 0.4 MB on disk.
        let bomb = pdf(&[("/Filter /FlateDecode", zlib_zeros(MAX_INFLATED / 258 + 1))]);
        assert!(bomb.len() < 500_000);
        assert!(pdf_texts(&bomb).over_limit.is_some());
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
