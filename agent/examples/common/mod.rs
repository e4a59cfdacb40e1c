//! What the agent's benchmarks share: generated Chinese identifiers, and
//! the peak RSS and CPU time of the running process.

use std::fs;

/// A resident ID with a valid GB 11643 check character.
pub fn resident_id(region: &str, y: u64, m: u64, d: u64, seq: u64) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("{region}{y:04}{m:02}{d:02}{seq:03}");
    let sum: u32 = body
        .bytes()
        .zip(W)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

/// Peak resident set size of this process (VmHWM), MiB.
pub fn peak_rss_mib() -> f64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// User and system CPU seconds of this process so far (every thread).
pub fn cpu_seconds() -> (f64, f64) {
    // Clock ticks per second: 100 on every Linux this runs on
    // (`getconf CLK_TCK`); std does not expose sysconf.
    const TICKS: f64 = 100.0;
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |n: usize| -> f64 {
        rest.split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    (field(14) / TICKS, field(15) / TICKS)
}
