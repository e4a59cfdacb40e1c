//! Figures of `agent scan` (`make bench-scan`).
//!
//! ```sh
//! cargo run -p cleanroom-agent --release --example bench_scan -- [MB] [DIR]
//! ```
//!
//! Generates into `DIR`: a raw dataset of 1 M rows of Chinese personal
//! data with its plan; an export holding one `MB`-megabyte CSV (default
//! 1024) of the kind an analyst writes (street, age band, month, income,
//! free text; in one row in 100 000 the text is a raw name); the same
//! product as Parquet (snappy, row groups of 1 Mi rows, as pyarrow writes
//! it; its MB/s are counted in the CSV's megabytes, the same data); an export of 1 M
//! microdata rows with 4 quasi-identifiers; and a contributor table of
//! 200 000 rows (`table/files/contrib.csv`, also read by
//! e2e/bench/tables_acro.py). Each step runs in a child process so its
//! peak RSS is its own, and prints wall time, CPU time (user + system,
//! every thread) and MB/s per CPU second. Loading the raw index is a step
//! of its own; the scan step's figures leave it out.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use cleanroom_agent::sample::SplitMix64;
use cleanroom_agent::scan::{self, policy::Policy, raw::RawSpec};
use sha2::{Digest, Sha256};

mod common;
use common::{cpu_seconds, peak_rss_mib, resident_id};

const RAW_ROWS: u64 = 1_000_000;
const MICRO_ROWS: u64 = 1_000_000;
const TABLE_ROWS: u64 = 200_000;
const STREETS: &[&str] = &[
    "建国路街道",
    "望京街道",
    "陆家嘴街道",
    "西湖街道",
    "南山街道",
    "武侯街道",
];
const NAMES: &[&str] = &[
    "张伟",
    "王芳",
    "李娜",
    "刘秀英",
    "陈敏",
    "杨静",
    "黄丽",
    "赵强",
    "欧阳磊",
    "司马军洋",
];

const RAW_PLAN: &str = r#"{"columns":[
 {"name":"姓名","type":"string","sensitivity":"Name","rule":{"kind":"redact"}},
 {"name":"身份证号","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}},
 {"name":"手机号","type":"string","sensitivity":"Mobile","rule":{"kind":"mask","keepFirst":3,"keepLast":4}},
 {"name":"年龄","type":"integer","sensitivity":"QuasiIdentifier","rule":{"kind":"generalize","bucket":10}},
 {"name":"性别","type":"string","sensitivity":"QuasiIdentifier","rule":{"kind":"keep"}},
 {"name":"街道","type":"string","sensitivity":"QuasiIdentifier","rule":{"kind":"keep"}},
 {"name":"收入","type":"decimal","sensitivity":"None","rule":{"kind":"keep"}}]}"#;

fn pick<'a>(rng: &mut SplitMix64, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len() as u64) as usize]
}

/// A unique name for raw row `i` (so raw names are many, as in life).
fn name(i: u64) -> String {
    format!(
        "{}{}",
        NAMES[(i % 10) as usize],
        ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"][(i / 10 % 10) as usize]
            .repeat(1 + (i / 100 % 3) as usize)
    )
}

fn write_rows(
    path: &Path,
    header: &str,
    rows: u64,
    mut line: impl FnMut(u64, &mut SplitMix64) -> String,
) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    w.write_all(header.as_bytes())?;
    let mut rng = SplitMix64::new(7);
    for i in 0..rows {
        w.write_all(line(i, &mut rng).as_bytes())?;
    }
    w.flush()
}

fn generate_raw(dir: &Path) -> std::io::Result<()> {
    fs::write(dir.join("raw-plan.json"), RAW_PLAN)?;
    write_rows(
        &dir.join("raw.csv"),
        "姓名,身份证号,手机号,年龄,性别,街道,收入\n",
        RAW_ROWS,
        |i, rng| {
            let (y, m, d) = (1940 + rng.below(65), 1 + rng.below(12), 1 + rng.below(28));
            let id = resident_id("110105", y, m, d, rng.below(1000));
            format!(
                "{},{id},1{}{:09},{},{},{},{}\n",
                name(i),
                3 + rng.below(7),
                rng.below(1_000_000_000),
                2025 - y,
                pick(rng, &["男", "女"]),
                pick(rng, STREETS),
                2000 + rng.below(50_000)
            )
        },
    )
}

/// The analyst's product: `mb` megabytes; every 100 000th row quotes a raw name.
fn generate_product(path: &Path, mb: u64) -> std::io::Result<u64> {
    let notes = [
        "本季度就业人数稳中有升",
        "老年人口占比较上年提高",
        "无",
        "社区卫生服务覆盖率达标",
        "学龄儿童入学率保持稳定",
    ];
    let rows = (mb << 20) / 72;
    write_rows(
        path,
        "街道,年龄段,月份,收入,备注\n",
        rows,
        |i, rng| {
            let note = if i % 100_000 == 99_999 {
                name(i % RAW_ROWS)
            } else {
                notes[(i % 5) as usize].to_string()
            };
            format!(
                "{},{}0-{}9,2024-{:02},{}.{:02},{note}\n",
                pick(rng, STREETS),
                2 + i % 7,
                2 + i % 7,
                1 + rng.below(12),
                2000 + rng.below(50_000),
                rng.below(100)
            )
        },
    )?;
    Ok(rows)
}

/// The product again as Parquet: the CSV's rows, its income a double.
fn product_parquet(csv: &Path, out: &Path) -> Result<(), String> {
    use std::io::BufRead;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(
        ["街道", "年龄段", "月份", "收入", "备注"]
            .iter()
            .map(|n| {
                let t = if *n == "收入" {
                    arrow_schema::DataType::Float64
                } else {
                    arrow_schema::DataType::Utf8
                };
                arrow_schema::Field::new(*n, t, false)
            })
            .collect::<Vec<_>>(),
    ));
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let file = File::create(out).map_err(|x| e(&x))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
        .map_err(|x| e(&x))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, File::open(csv).map_err(|x| e(&x))?);
    let mut cols: [Vec<String>; 5] = Default::default();
    let flush = |cols: &mut [Vec<String>; 5],
                 w: &mut parquet::arrow::ArrowWriter<File>|
     -> Result<(), String> {
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (i, c) in cols.iter_mut().enumerate() {
            let c = std::mem::take(c);
            arrays.push(if i == 3 {
                let v: Vec<f64> = c.iter().map(|x| x.parse().unwrap_or(0.0)).collect();
                std::sync::Arc::new(Float64Array::from(v))
            } else {
                std::sync::Arc::new(StringArray::from(c))
            });
        }
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|x| e(&x))?;
        w.write(&batch).map_err(|x| e(&x))
    };
    for line in reader.lines().skip(1) {
        let line = line.map_err(|x| e(&x))?;
        for (c, v) in cols.iter_mut().zip(line.split(',')) {
            c.push(v.to_string());
        }
        if cols[0].len() == 65536 {
            flush(&mut cols, &mut w)?;
        }
    }
    if !cols[0].is_empty() {
        flush(&mut cols, &mut w)?;
    }
    w.close().map_err(|x| e(&x))?;
    Ok(())
}

fn sha256(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(sha.finalize()));
        }
        sha.update(&buf[..n]);
    }
}

/// Seal `name` (already written under `export/files/`) as `kind`.
fn seal(export: &Path, name: &str, kind: &str, columns: &str) -> std::io::Result<()> {
    let path = export.join("files").join(name);
    let size = fs::metadata(&path)?.len();
    let manifest = format!(
        r#"{{"version":1,"files":[{{"name":"{name}","kind":"{kind}","size":{size},"sha256":"{}","columns":{columns}}}]}}"#,
        sha256(&path)?
    );
    fs::write(export.join("manifest.json"), manifest)
}

fn export_dir(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let e = dir.join(name);
    fs::create_dir_all(e.join("files"))?;
    Ok(e)
}

fn generate(dir: &Path, mb: u64) -> std::io::Result<u64> {
    generate_raw(dir)?;
    let product = export_dir(dir, "product")?;
    let rows = generate_product(&product.join("files/product.csv"), mb)?;
    seal(&product, "product.csv", "Report", "{}")?;
    let parquet = export_dir(dir, "product-parquet")?;
    product_parquet(
        &product.join("files/product.csv"),
        &parquet.join("files/product.parquet"),
    )
    .map_err(std::io::Error::other)?;
    seal(&parquet, "product.parquet", "Report", "{}")?;
    let micro = export_dir(dir, "micro")?;
    write_rows(
        &micro.join("files/people.csv"),
        "年龄,性别,街道,月份,诊断\n",
        MICRO_ROWS,
        |_, rng| {
            format!(
                "{},{},{},2024-{:02},{}\n",
                20 + rng.below(60),
                pick(rng, &["男", "女"]),
                pick(rng, STREETS),
                1 + rng.below(12),
                pick(rng, &["高血压", "糖尿病", "冠心病", "哮喘", "无"])
            )
        },
    )?;
    seal(
        &micro,
        "people.csv",
        "Microdata",
        r#"{"quasiIdentifiers":["年龄","性别","街道","月份"],"sensitive":["诊断"]}"#,
    )?;
    let table = export_dir(dir, "table")?;
    write_rows(
        &table.join("files/contrib.csv"),
        "a,b,v\n",
        TABLE_ROWS,
        |i, rng| {
            let v = if i % 5000 == 0 {
                1_000_000
            } else {
                rng.below(1000)
            };
            format!("k{},c{},{v}\n", rng.below(40), rng.below(25))
        },
    )?;
    seal(
        &table,
        "contrib.csv",
        "Table",
        r#"{"keys":["a","b"],"counts":[],"magnitudes":["v"]}"#,
    )?;
    Ok(rows)
}

/// Child mode: one step; prints `seconds rss user system verdict`.
fn child(step: &str, dir: &Path) -> Result<(), String> {
    let policy = Policy {
        max_file_bytes: 1 << 40,
        max_table_rows: 1 << 30,
        ..Policy::default()
    };
    let raw = vec![RawSpec::parse(&format!(
        "csv:{}:{}",
        dir.join("raw-plan.json").display(),
        dir.join("raw.csv").display()
    ))?];
    let (export, raw) = match step {
        "raw" => ("none", raw),
        "scan" => ("product", raw),
        "scan-parquet" => ("product-parquet", raw),
        "kanon" => ("micro", vec![]),
        "table" => ("table", vec![]),
        other => return Err(format!("unknown step {other}")),
    };
    let start = Instant::now();
    let index = if raw.is_empty() {
        None
    } else {
        let mut index = scan::raw::RawIndex::new(&scan::raw::random_key()?);
        index.add(&raw[0])?;
        Some(index)
    };
    let (load_secs, (load_user, load_sys)) = (start.elapsed().as_secs_f64(), cpu_seconds());
    let verdict = if export == "none" {
        format!("{}-personal-values", index.map_or(0, |i| i.personal.len()))
    } else {
        let report = scan::run_with(&dir.join(export).join("manifest.json"), &policy, index)?;
        let f = &report.files[0];
        let fired: Vec<String> = f
            .checks
            .iter()
            .map(|c| format!("{}:{}", c.name, c.count))
            .collect();
        format!("{:?}[{}]", f.verdict, fired.join(","))
    };
    let secs = start.elapsed().as_secs_f64();
    let (user, system) = cpu_seconds();
    // The raw index is its own step: a scan's figures leave its loading out.
    let (secs, user, system) = if export == "none" {
        (secs, user, system)
    } else {
        (secs - load_secs, user - load_user, system - load_sys)
    };
    println!("{secs} {} {user} {system} {verdict}", peak_rss_mib());
    Ok(())
}

fn run_child(step: &str, dir: &Path, mb: f64, what: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["--child", step])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let nums: Vec<f64> = words
        .iter()
        .take(4)
        .filter_map(|w| w.parse().ok())
        .collect();
    let [secs, rss, user, system] = nums[..] else {
        return Err(format!(
            "{step} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    };
    println!(
        "{what:<44} {secs:>6.2} s wall  CPU {user:.2} + {system:.2} s  {:>6.1} MB/s per core  peak RSS {rss:.0} MiB  {}",
        mb / (user + system),
        words.get(4).unwrap_or(&"")
    );
    Ok(())
}

fn size_mb(p: &Path) -> f64 {
    fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1e6)
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let (Some(step), Some(dir)) = (args.get(1), args.get(2)) else {
            return Err("usage: --child STEP DIR".into());
        };
        return child(step, Path::new(dir));
    }
    let mb: u64 = args.first().map_or(Ok(1024), |a| {
        a.parse().map_err(|_| format!("not a size in MB: {a}"))
    })?;
    let dir = args.get(1).map_or_else(
        || std::env::temp_dir().join("cleanroom-bench-scan"),
        PathBuf::from,
    );
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let rows = generate(&dir, mb).map_err(|e| e.to_string())?;
    let (raw_mb, product_mb) = (
        size_mb(&dir.join("raw.csv")),
        size_mb(&dir.join("product/files/product.csv")),
    );
    println!(
        "generated in {:.1} s: raw {raw_mb:.0} MB ({RAW_ROWS} rows), product {product_mb:.0} MB ({rows} rows; {:.0} MB as Parquet), on {} threads",
        start.elapsed().as_secs_f64(),
        size_mb(&dir.join("product-parquet/files/product.parquet")),
        cleanroom_agent::parallel::threads()
    );
    run_child(
        "raw",
        &dir,
        raw_mb,
        "raw index: 1 M rows, 3 personal + 3 QI columns",
    )?;
    run_child(
        "scan",
        &dir,
        product_mb,
        "scan of the product against the raw index",
    )?;
    run_child(
        "scan-parquet",
        &dir,
        product_mb,
        "the same product as Parquet (its CSV's MB)",
    )?;
    run_child(
        "kanon",
        &dir,
        size_mb(&dir.join("micro/files/people.csv")),
        "microdata: k-anonymity, 4 QIs, 1 M rows",
    )?;
    run_child(
        "table",
        &dir,
        size_mb(&dir.join("table/files/contrib.csv")),
        "table checks: 200 000 contributors",
    )?;
    Ok(())
}
