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
