//! Throughput and memory of `agent desensitize` on a large CSV, beside a
//! plain `csv`-crate parse-and-write of the same file (the floor).
//!
//! ```sh
//! cargo run -p cleanroom-agent --release --example bench_desensitize -- [MB] [DIR]
//! ```
//!
//! Generates `MB` megabytes (default 1024) of CSV with 7 columns of Chinese
//! personal data (name, resident id, mobile, address, birth date, income,
//! free text) into `DIR` (default: the system temp dir), then runs each
//! step in a child process of this binary so that each peak RSS (VmHWM) is
//! its own. Besides wall time each step reports its CPU time (user and
//! system, all threads, from `/proc/self/stat`): MB/s per core is input
//! megabytes per CPU second, which stays honest if work moves to another
//! thread, and is less disturbed than wall time on a shared machine. The
//! agent's line ends with the output's SHA-256 from its report, to check
//! that a faster build still writes the same bytes. The agent runs on one
//! worker thread, then on two; `DIR/times.json` keeps both wall times for
//! the DuckDB comparison that `make bench-agent` runs next.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cleanroom_agent::desensitize::{self, Format, Options};
use cleanroom_agent::plan::Plan;
use cleanroom_agent::sample::SplitMix64;

mod common;
use common::{cpu_seconds, peak_rss_mib, resident_id};

const SURNAMES: &[&str] = &[
    "张", "王", "李", "赵", "刘", "陈", "杨", "黄", "欧阳", "司马",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军洋",
];
const CITIES: &[(&str, &str)] = &[
    ("110105", "北京市朝阳区"),
    ("310115", "上海市浦东新区"),
    ("440305", "广东省深圳市南山区"),
    ("330106", "浙江省杭州市西湖区"),
    ("510107", "四川省成都市武侯区"),
];
const ROADS: &[&str] = &["建国路", "世纪大道", "科技园路", "文三路", "人民南路"];
const NOTES: &[&str] = &[
    "客户来电咨询社保缴费基数调整事宜，已告知办理流程",
    "申请公积金提取，材料齐全，待复核",
    "无",
    "反映小区停车位不足，建议增设公共停车场",
    "办理居住证续签，预约下周二到窗口领取",
];

const PLAN: &str = r#"{"columns":[
 {"name":"姓名","type":"string","sensitivity":"Name","rule":{"kind":"mask","keepFirst":1}},
 {"name":"身份证号","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}},
 {"name":"手机号","type":"string","sensitivity":"Mobile","rule":{"kind":"mask","keepFirst":3,"keepLast":4}},
 {"name":"地址","type":"string","sensitivity":"Address","rule":{"kind":"generalize","prefix":6}},
 {"name":"出生日期","type":"date","sensitivity":"QuasiIdentifier","rule":{"kind":"generalize","truncate":"month"}},
 {"name":"收入","type":"decimal","sensitivity":"None","rule":{"kind":"keep"}},
 {"name":"备注","type":"string","sensitivity":"FreeText","rule":{"kind":"keep"}}
]}"#;

fn generate(path: &Path, bytes: u64) -> std::io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let header = "姓名,身份证号,手机号,地址,出生日期,收入,备注\n";
    w.write_all(header.as_bytes())?;
    let mut written = header.len() as u64;
    let mut rng = SplitMix64::new(2024);
    let mut rows = 0;
    let pick = |rng: &mut SplitMix64, n: usize| rng.below(n as u64) as usize;
    while written < bytes {
        let (region, city) = CITIES[pick(&mut rng, CITIES.len())];
        let (y, m, d) = (1950 + rng.below(55), 1 + rng.below(12), 1 + rng.below(28));
        let line = format!(
            "{}{},{},1{}{:09},{}{}{}号,{y:04}-{m:02}-{d:02},{}.{:02},{}\n",
            SURNAMES[pick(&mut rng, SURNAMES.len())],
            GIVEN[pick(&mut rng, GIVEN.len())],
            resident_id(region, y, m, d, rng.below(1000)),
            3 + rng.below(7),
            rng.below(1_000_000_000),
            city,
            ROADS[pick(&mut rng, ROADS.len())],
            1 + rng.below(300),
            2000 + rng.below(50_000),
            rng.below(100),
            NOTES[pick(&mut rng, NOTES.len())],
        );
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
        rows += 1;
    }
    w.flush()?;
    Ok(rows)
}

/// The floor: parse every record and write it back, nothing else.
fn floor(input: &Path, output: &Path) -> Result<u64, String> {
    let mut r = csv::ReaderBuilder::new()
        .buffer_capacity(1 << 20)
        .from_path(input)
        .map_err(|e| e.to_string())?;
    let mut w = csv::WriterBuilder::new()
        .buffer_capacity(1 << 20)
        .from_path(output)
        .map_err(|e| e.to_string())?;
    w.write_byte_record(r.byte_headers().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mut rec = csv::ByteRecord::new();
    let mut rows = 0;
    while r.read_byte_record(&mut rec).map_err(|e| e.to_string())? {
        w.write_byte_record(&rec).map_err(|e| e.to_string())?;
        rows += 1;
    }
    w.flush().map_err(|e| e.to_string())?;
    Ok(rows)
}

/// Child mode: run one step and print
/// `rows seconds peak_rss_mib user_s system_s [output_sha256]`.
fn child(step: &str, dir: &Path) -> Result<(), String> {
    let input = dir.join("input.csv");
    let start = Instant::now();
    let mut digest = String::new();
    let rows = match step {
        "floor" => floor(&input, &dir.join("floor.csv"))?,
        "agent" => {
            let opts = Options {
                input: input.clone(),
                output: dir.join("prepared.csv"),
                format: Format::Csv,
                plan: Plan::from_json(PLAN)?,
                key: Some(b"bench-key-0123456789abcdef".to_vec()),
            };
            let report = desensitize::run(&opts).map_err(|f| format!("{:?}", f.report.error))?;
            digest = report.output_sha256.unwrap_or_default();
            report.rows_out
        }
        other => return Err(format!("unknown step {other}")),
    };
    let secs = start.elapsed().as_secs_f64();
    let (user, system) = cpu_seconds();
    println!("{rows} {secs} {} {user} {system} {digest}", peak_rss_mib());
    Ok(())
}

/// Run one step in a child process on `threads` worker threads (the
/// agent's default when `None`); returns its wall seconds.
fn run_child(step: &str, threads: Option<usize>, dir: &Path, input_mb: f64) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(["--child", step]).arg(dir);
    if let Some(t) = threads {
        cmd.env("AGENT_THREADS", t.to_string());
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let parts: Vec<f64> = words.iter().filter_map(|p| p.parse().ok()).collect();
    let [rows, secs, rss, user, system, ..] = parts[..] else {
        return Err(format!(
            "{step} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    };
    let cpu = user + system;
    let step = match threads {
        Some(t) => format!("{step}/{t}t"),
        None => step.to_string(),
    };
    println!(
        "{step:<9} {rows:>10} rows  {secs:>6.2} s wall  {:>6.1} MB/s  {:>9.0} rows/s  \
         | CPU {user:.2} user + {system:.2} sys: {:>6.1} MB/s {:>9.0} rows/s per core  \
         | peak RSS {rss:.1} MiB",
        input_mb / secs,
        rows / secs,
        input_mb / cpu,
        rows / cpu,
    );
    if let Some(digest) = words.get(5) {
        println!("          output sha256 {digest}");
    }
    Ok(secs)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let (Some(step), Some(dir)) = (args.get(1), args.get(2)) else {
            return Err("usage: --child STEP DIR".into());
        };
        return child(step, Path::new(dir));
    }
    let mb: u64 = match args.first() {
        Some(a) => a.parse().map_err(|_| format!("not a size in MB: {a}"))?,
        None => 1024,
    };
    let dir = args.get(1).map_or_else(
        || std::env::temp_dir().join("cleanroom-bench-desensitize"),
        PathBuf::from,
    );
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let input = dir.join("input.csv");
    let start = Instant::now();
    let rows = generate(&input, mb << 20).map_err(|e| e.to_string())?;
    let size = fs::metadata(&input).map_err(|e| e.to_string())?.len();
    let input_mb = size as f64 / 1e6;
    println!(
        "generated {} ({input_mb:.0} MB, {rows} rows) in {:.1} s",
        input.display(),
        start.elapsed().as_secs_f64()
    );
    println!("MB/s is input megabytes (10^6 bytes) per second of wall time, then per CPU second");
    run_child("floor", None, &dir, input_mb)?;
    let one = run_child("agent", Some(1), &dir, input_mb)?;
    let two = run_child("agent", Some(2), &dir, input_mb)?;
    let _ = fs::remove_file(dir.join("floor.csv"));
    // For the comparisons run after this one (e2e/bench/desensitize_duckdb.py).
    let times = format!(r#"{{"agent1":{one},"agent2":{two},"inputMb":{input_mb},"rows":{rows}}}"#);
    fs::write(dir.join("times.json"), times).map_err(|e| e.to_string())?;
    Ok(())
}
