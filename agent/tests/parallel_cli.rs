//! The parallel engine writes what the single-threaded one writes: the
//! same bytes, the same report (row counts, leaks, malformed lines), with
//! records cut across many small chunks, quoted newlines included.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Noise and sampling: each chunk needs its first row's index.
const PLAN: &str = r#"{"columns":[
 {"name":"id","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}},
 {"name":"phone","type":"string","sensitivity":"Mobile","rule":{"kind":"mask","keepFirst":3,"keepLast":4}},
 {"name":"note","type":"string","sensitivity":"FreeText","rule":{"kind":"keep"}},
 {"name":"income","type":"decimal","sensitivity":"None","rule":{"kind":"noise","bound":50}}],
 "sampling":{"fraction":0.7,"seed":9}}"#;

/// Neither: chunks stream without waiting for each other.
const PLAN_STREAMED: &str = r#"{"columns":[
 {"name":"id","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}},
 {"name":"phone","type":"string","sensitivity":"Mobile","rule":{"kind":"mask","keepFirst":3,"keepLast":4}},
 {"name":"note","type":"string","sensitivity":"FreeText","rule":{"kind":"keep"}}]}"#;

fn input(malformed: bool) -> String {
    let mut s = String::from("id,phone,note,income\n");
    for i in 0..400u64 {
        let note = match i % 5 {
            0 => "\"两行\n备注, 含逗号\"".to_string(),
            1 => format!("\"引号\"\"{i}\"\"\""),
            2 => "电话13812345678".to_string(),
            _ => format!("第{i}条"),
        };
        s.push_str(&format!("ID{i:05},139{i:08},{note},{}.25\n", 1000 + i * 7));
        if malformed && i % 97 == 3 {
            s.push_str("only,three,fields\n");
        }
    }
    s
}

fn run(dir: &Path, threads: &str, chunk: &str, tag: &str) -> (Vec<u8>, Value) {
    let out = dir.join(format!("out-{tag}.csv"));
    let key = dir.join("key");
    let o = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["desensitize", "--format", "csv"])
        .arg("--input")
        .arg(dir.join("in.csv"))
        .arg("--output")
        .arg(&out)
        .arg("--plan")
        .arg(dir.join("plan.json"))
        .arg("--key-file")
        .arg(&key)
        .arg("--termination-log")
        .arg(dir.join("none/log"))
        .env("AGENT_THREADS", threads)
        .env("AGENT_CHUNK_BYTES", chunk)
        .output()
        .expect("run");
    let report: Value = serde_json::from_slice(&o.stdout).expect("report");
    (std::fs::read(&out).unwrap_or_default(), report)
}

#[test]
fn chunks_on_several_threads_give_the_single_thread_result() {
    for (malformed, plan) in [
        (false, PLAN),
        (true, PLAN),
        (false, PLAN_STREAMED),
        (true, PLAN_STREAMED),
    ] {
        let dir = tempfile::TempDir::new().expect("tempdir");
        std::fs::write(dir.path().join("in.csv"), input(malformed)).expect("input");
        std::fs::write(dir.path().join("plan.json"), plan).expect("plan");
        std::fs::write(dir.path().join("key"), "0123456789abcdef0123").expect("key");
        let (one, r1) = run(dir.path(), "1", "1000000", "one");
        assert!(r1["rowsOut"].as_u64().is_some_and(|n| n > 200), "{r1}");
        let sampled = plan == PLAN;
        assert_eq!(
            r1["rowsOut"].as_u64().is_some_and(|n| n < 400),
            sampled,
            "{r1}"
        );
        for (threads, chunk) in [("2", "64"), ("3", "1"), ("4", "777")] {
            let (many, r) = run(dir.path(), threads, chunk, threads);
            assert_eq!(r, r1, "{threads} threads, {chunk}-byte chunks");
            assert_eq!(many, one, "{threads} threads, {chunk}-byte chunks");
        }
        if malformed {
            assert_eq!(r1["malformed"], 5);
            assert_eq!(r1["ok"], false);
            // Header, a two-line record, three records: the bad row is line 7.
            assert_eq!(r1["malformedLines"][0]["line"], 7);
        } else {
            assert_eq!(r1["ok"], true);
            assert_eq!(
                r1["columns"][2]["leaks"].as_u64().map(|n| n > 0),
                Some(true)
            );
        }
    }
}

/// JSON Lines: blank lines, numbers, nested values and nulls, and
/// broken lines if asked.
fn jsonl_input(broken: bool) -> String {
    let mut s = String::new();
    for i in 0..300u64 {
        let note = match i % 4 {
            0 => "\"两行\\n备注\"".to_string(),
            1 => "null".to_string(),
            2 => "\"电话13812345678\"".to_string(),
            _ => format!("{{\"k\":[{i},\"x\"]}}"),
        };
        s.push_str(&format!(
            "{{\"id\":\"ID{i:05}\",\"phone\":\"139{i:08}\",\"note\":{note},\"income\":{}.25}}\n",
            1000 + i * 7
        ));
        match i % 53 {
            7 => s.push_str("\n  \n"),
            9 if broken => s.push_str("{\"id\": broken\n"),
            _ => {}
        }
    }
    s
}

fn run_format(
    dir: &Path,
    format: &str,
    input: &str,
    threads: &str,
    chunk: &str,
) -> (Vec<u8>, Value) {
    let out = dir.join(format!("out-{threads}-{chunk}.{format}"));
    let o = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["desensitize", "--format", format])
        .arg("--input")
        .arg(dir.join(input))
        .arg("--output")
        .arg(&out)
        .arg("--plan")
        .arg(dir.join("plan.json"))
        .arg("--key-file")
        .arg(dir.join("key"))
        .arg("--termination-log")
        .arg(dir.join("none/log"))
        .env("AGENT_THREADS", threads)
        .env("AGENT_CHUNK_BYTES", chunk)
        .output()
        .expect("run");
    let report: Value = serde_json::from_slice(&o.stdout).expect("report");
    (std::fs::read(&out).unwrap_or_default(), report)
}

#[test]
fn jsonl_chunks_on_several_threads_give_the_single_thread_result() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    std::fs::write(dir.path().join("key"), "0123456789abcdef0123").expect("key");
    for (broken, plan) in [(true, PLAN), (false, PLAN), (false, PLAN_STREAMED)] {
        std::fs::write(dir.path().join("in.jsonl"), jsonl_input(broken)).expect("input");
        std::fs::write(dir.path().join("plan.json"), plan).expect("plan");
        let (one, r1) = run_format(dir.path(), "jsonl", "in.jsonl", "1", "1000000");
        if broken {
            assert_eq!(r1["malformed"], 6, "{r1}");
            assert_eq!(r1["malformedLines"][0]["line"], 13, "{r1}");
        } else {
            assert_eq!(r1["ok"], true, "{r1}");
            assert!(!one.is_empty());
        }
        assert!(
            r1["columns"][2]["leaks"].as_u64().is_some_and(|n| n > 0),
            "{r1}"
        );
        for (threads, chunk) in [("2", "64"), ("3", "1"), ("4", "777")] {
            let (many, r) = run_format(dir.path(), "jsonl", "in.jsonl", threads, chunk);
            assert_eq!(r, r1, "{threads} threads, {chunk}-byte chunks");
            assert_eq!(many, one, "{threads} threads, {chunk}-byte chunks");
        }
    }
}

/// Parquet in row groups of `group` rows (id, phone, note, income).
fn parquet_input(path: &Path, group: usize) {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    let text = |f: &dyn Fn(u64) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from((0..500).map(f).collect::<Vec<_>>()))
    };
    let income: ArrayRef = Arc::new(Float64Array::from(
        (0..500)
            .map(|i| 1000.25 + i as f64 * 7.0)
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_from_iter([
        ("id", text(&|i| Some(format!("ID{i:05}")))),
        (
            "phone",
            text(&|i| (i % 9 != 0).then(|| format!("139{i:08}"))),
        ),
        (
            "note",
            text(&|i| {
                Some(if i % 5 == 2 {
                    "电话13812345678".into()
                } else {
                    format!("第{i}条")
                })
            }),
        ),
        ("income", income),
    ])
    .expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let file = std::fs::File::create(path).expect("create");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

#[test]
fn parquet_row_groups_on_several_threads_give_the_single_thread_result() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    std::fs::write(dir.path().join("key"), "0123456789abcdef0123").expect("key");
    for group in [37, 500] {
        parquet_input(&dir.path().join("in.parquet"), group);
        for plan in [PLAN, PLAN_STREAMED] {
            std::fs::write(dir.path().join("plan.json"), plan).expect("plan");
            let (one, r1) = run_format(dir.path(), "parquet", "in.parquet", "1", "1000000");
            assert_eq!(r1["ok"], true, "{r1}");
            assert_eq!(r1["rowsIn"], 500, "{r1}");
            for threads in ["2", "3"] {
                let (many, r) = run_format(dir.path(), "parquet", "in.parquet", threads, "64");
                assert_eq!(r, r1, "{threads} threads, groups of {group}");
                assert_eq!(many, one, "{threads} threads, groups of {group}");
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    // Any chunk size and thread count: the same bytes and report as one
    // thread, for CSV with quoted newlines and for JSON Lines.
    #[test]
    fn any_chunk_size_gives_the_single_thread_result(
        chunk in 1usize..400,
        threads in 2usize..5,
        noisy in proptest::bool::ANY,
        broken in proptest::bool::ANY,
    ) {
        let dir = tempfile::TempDir::new().expect("tempdir");
        std::fs::write(dir.path().join("in.csv"), input(broken)).expect("input");
        std::fs::write(dir.path().join("in.jsonl"), jsonl_input(broken)).expect("input");
        std::fs::write(dir.path().join("key"), "0123456789abcdef0123").expect("key");
        let plan = if noisy { PLAN } else { PLAN_STREAMED };
        std::fs::write(dir.path().join("plan.json"), plan).expect("plan");
        let (t, c) = (threads.to_string(), chunk.to_string());
        for (format, file) in [("csv", "in.csv"), ("jsonl", "in.jsonl")] {
            let one = run_format(dir.path(), format, file, "1", "1000000");
            let many = run_format(dir.path(), format, file, &t, &c);
            proptest::prop_assert_eq!(&many.1, &one.1);
            proptest::prop_assert!(many.0 == one.0, "{} output differs", format);
        }
    }
}
