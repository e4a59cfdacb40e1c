//! Container output bookkeeping: the in-memory tail used for `FallbackToLogsOnError`
//! and the termination message read back from the container's message file.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;

/// Kubelet limits (pkg/kubelet/container): a termination message is at most 4096 bytes,
/// a message taken from the logs at most 80 lines and 2048 bytes.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;
pub const FALLBACK_MAX_LINES: usize = 80;
pub const FALLBACK_MAX_BYTES: usize = 2048;

/// Keeps the last `capacity` bytes written to it.
#[derive(Debug)]
pub struct Tail {
    buf: VecDeque<u8>,
    capacity: usize,
}

impl Default for Tail {
    fn default() -> Self {
        // Somewhat more than the fallback limit so that line trimming has whole lines to work on.
        Self::with_capacity(4 * FALLBACK_MAX_BYTES)
    }
}

impl Tail {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.capacity {
            &data[data.len() - self.capacity..]
        } else {
            data
        };
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.capacity);
        self.buf.drain(..overflow);
        self.buf.extend(data);
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// The message a kubelet derives from the logs: the last 80 lines, then at most the last
/// 2048 bytes of those (cut on a character boundary).
pub fn fallback_message(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.len().saturating_sub(FALLBACK_MAX_LINES);
    let joined: String = lines[start..].concat();
    let mut cut = joined.len().saturating_sub(FALLBACK_MAX_BYTES);
    while !joined.is_char_boundary(cut) {
        cut += 1;
    }
    joined[cut..].to_string()
}

/// Reads at most [`MAX_TERMINATION_MESSAGE`] bytes of the termination message file;
/// a missing file is an empty message.
pub fn read_termination_message(path: &Path) -> std::io::Result<String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    file.take(MAX_TERMINATION_MESSAGE as u64)
        .read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The container's final message: the file's content, or for a failed container with
/// `FallbackToLogsOnError` and an empty file, the tail of its output.
pub fn termination_message(
    file_content: String,
    failed: bool,
    policy: Option<&str>,
    output_tail: &[u8],
) -> String {
    if file_content.is_empty() && failed && policy == Some("FallbackToLogsOnError") {
        fallback_message(output_tail)
    } else {
        file_content
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_bytes() {
        let mut t = Tail::with_capacity(5);
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(t.bytes(), b"cdefg");
        t.push(b"0123456789");
        assert_eq!(t.bytes(), b"56789");
        t.clear();
        assert!(t.bytes().is_empty());
    }

    #[test]
    fn fallback_takes_last_80_lines() {
        let out: String = (0..100).map(|i| format!("l{i}\n")).collect();
        let msg = fallback_message(out.as_bytes());
        assert!(msg.starts_with("l20\n"), "{msg}");
        assert!(msg.ends_with("l99\n"));
        assert_eq!(msg.lines().count(), 80);
    }

    #[test]
    fn fallback_caps_bytes_on_char_boundary() {
        // 'é' is two bytes, so a cut at an odd offset must move forward.
        let out = format!("x{}", "é".repeat(2000));
        let msg = fallback_message(out.as_bytes());
        assert!(msg.len() <= FALLBACK_MAX_BYTES);
        assert!(msg.len() >= FALLBACK_MAX_BYTES - 1);
        assert!(msg.chars().all(|c| c == 'é'));
    }

    #[test]
    fn message_policy() {
        let tail = b"boom\n";
        assert_eq!(
            termination_message(String::new(), true, Some("FallbackToLogsOnError"), tail),
            "boom\n"
        );
        assert_eq!(
            termination_message(String::new(), true, Some("File"), tail),
            ""
        );
        assert_eq!(
            termination_message(String::new(), false, Some("FallbackToLogsOnError"), tail),
            ""
        );
        assert_eq!(
            termination_message("done\n".into(), true, Some("FallbackToLogsOnError"), tail),
            "done\n"
        );
    }

    #[test]
    fn termination_file_is_capped() {
        let dir = std::env::temp_dir().join(format!("cleanroom-logs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("msg");
        std::fs::write(&file, "a".repeat(5000)).unwrap();
        assert_eq!(
            read_termination_message(&file).unwrap().len(),
            MAX_TERMINATION_MESSAGE
        );
        assert_eq!(read_termination_message(&dir.join("missing")).unwrap(), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
