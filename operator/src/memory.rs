//! Giving freed heap back to the system.
//!
//! glibc's allocator keeps what is freed inside its heap for reuse and gives
//! back only the top of it: after a thousand scenarios were provisioned at
//! once, a third of the operator's resident memory (36 of 130 MiB, measured
//! with `malloc_trim` called from outside) was memory it had freed. Every
//! [`PERIOD`] the allocator is asked to return its free pages. The static
//! image's allocator (musl's) returns freed memory by itself: there this
//! does nothing.

use std::time::Duration;

/// How often freed memory is returned: often enough that a burst of passes
/// leaves no lasting footprint, rarely enough to cost nothing measurable
/// (one walk of the allocator's free lists).
pub const PERIOD: Duration = Duration::from_secs(2);

/// Returns freed memory every [`PERIOD`], for ever.
pub async fn return_freed_memory() {
    let mut every = tokio::time::interval(PERIOD);
    loop {
        every.tick().await;
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes the allocator's own locks and only releases
    // pages that hold no allocation; it may be called from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Resident anonymous memory of this process, in KiB.
    fn rss_anon_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("RssAnon")
    }

    #[test]
    fn freed_memory_inside_the_heap_goes_back_to_the_system() {
        // 96 MiB in blocks small enough to come from the heap, each touched;
        // all freed but the last, which keeps the heap's top in use so that
        // the allocator cannot give anything back by itself.
        let mut blocks: Vec<Vec<u8>> = (0..1536).map(|_| vec![1u8; 64 * 1024]).collect();
        let last = blocks.pop();
        drop(blocks);
        let before = rss_anon_kib();
        super::trim();
        let after = rss_anon_kib();
        drop(last);
        assert!(
            before.saturating_sub(after) >= 32 * 1024,
            "RssAnon {before} KiB before the trim, {after} KiB after"
        );
    }
}
