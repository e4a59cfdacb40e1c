//! The `agent scan` binary as the operator runs it: a sealed export
//! (`manifest.json` and `files/`), a policy, optionally the raw data.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// A sealed export being put together.
struct Export {
    dir: TempDir,
    files: Vec<Value>,
}

impl Export {
    fn new() -> Self {
        let dir = TempDir::new().expect("tempdir");
        fs::create_dir_all(dir.path().join("files")).expect("mkdir");
        Export {
            dir,
            files: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Seal a file with its true size and digest.
    fn add(&mut self, name: &str, kind: &str, bytes: &[u8], columns: Option<Value>) {
        let p = self.path("files").join(name);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, bytes).expect("write");
        let mut entry = json!({"name": name, "kind": kind, "size": bytes.len(),
            "sha256": hex::encode(Sha256::digest(bytes))});
        if let Some(c) = columns {
            entry["columns"] = c;
        }
        self.files.push(entry);
    }

    fn seal(&self) -> PathBuf {
        let m = self.path("manifest.json");
        let body = json!({"version": 1, "files": self.files});
        fs::write(&m, body.to_string()).expect("manifest");
        m
    }

    fn scan(&self, policy: &str, raw: &[String]) -> (Output, Value, Value) {
        let manifest = self.seal();
        let policy_path = self.path("policy.json");
        fs::write(&policy_path, policy).expect("policy");
        let report = self.path("report.json");
        let log = self.path("termination-log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent"));
        cmd.arg("scan")
            .arg("--manifest")
            .arg(&manifest)
            .arg("--policy")
            .arg(&policy_path)
            .arg("--report")
            .arg(&report)
            .arg("--termination-log")
            .arg(&log);
        for r in raw {
            cmd.arg("--raw").arg(r);
        }
        let out = cmd.output().expect("run agent");
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let full: Value = fs::read(&report)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        (out, summary, full)
    }
}

fn file<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["files"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in {report}"))
}

fn checks(report: &Value, name: &str) -> Vec<String> {
    file(report, name)["checks"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn check<'a>(report: &'a Value, name: &str, check: &str) -> &'a Value {
    file(report, name)["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == check))
        .unwrap_or_else(|| panic!("{check} did not fire on {name}"))
}

fn big_table(n: u32) -> String {
    let mut s = String::from("district,n\n");
    for (d, c) in [("东城", n), ("西城", 40)] {
        s.push_str(&format!("{d},{c}\n"));
    }
    s
}

#[test]
fn a_clean_export_passes_and_the_summary_is_written_twice() {
    let mut e = Export::new();
    e.add("by-district.csv", "Table", big_table(10).as_bytes(), None);
    e.add(
        "notes/summary.md",
        "Report",
        "# 结论\n\n老年人口占比上升。\n".as_bytes(),
        None,
    );
    let (out, summary, full) = e.scan("{}", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary["verdict"], "pass", "{summary}");
    assert_eq!(summary["policyVersion"], "cleanroom-scan/1");
    assert_eq!(summary["files"].as_array().map(Vec::len), Some(2));
    let log = fs::read_to_string(e.path("termination-log")).expect("log");
    assert_eq!(log.trim(), String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(full["policy"]["threshold"], 10);
    assert_eq!(file(&full, "by-district.csv")["detectedType"], "csv");
}

#[test]
fn a_cell_of_nine_fails_and_the_scan_still_exits_zero() {
    let mut e = Export::new();
    e.add("by-district.csv", "Table", big_table(9).as_bytes(), None);
    let (out, summary, full) = e.scan("{}", &[]);
    assert!(out.status.success());
    assert_eq!(summary["verdict"], "fail");
    assert_eq!(summary["files"][0]["checks"], json!(["threshold"]));
    let t = check(&full, "by-district.csv", "threshold");
    assert_eq!(t["positions"], json!([{"row": 0, "column": 1}]));
    // A looser policy within bounds lets it through.
    let (_, summary, _) = e.scan(r#"{"threshold": 5}"#, &[]);
    assert_eq!(summary["verdict"], "pass");
}

#[test]
fn identifiers_and_pseudonyms_are_found_and_never_quoted() {
    let mut e = Export::new();
    let csv = "区,备注\n东城,回访电话13812345678\n西城,p_0123456789abcdef0123456789abcdef\n";
    e.add("list.csv", "Report", csv.as_bytes(), None);
    e.add(
        "only-pseudonyms.jsonl",
        "Report",
        b"{\"id\":\"p_0123456789abcdef0123456789abcdef\"}\n",
        None,
    );
    let (out, summary, full) = e.scan("{}", &[]);
    assert!(out.status.success());
    assert_eq!(file(&full, "list.csv")["verdict"], "fail");
    assert_eq!(
        check(&full, "list.csv", "identifier")["positions"],
        json!([{"row": 0, "column": 1}])
    );
    assert_eq!(
        check(&full, "list.csv", "identifier")["kinds"],
        json!(["mobile"])
    );
    assert_eq!(file(&full, "only-pseudonyms.jsonl")["verdict"], "review");
    let all = format!("{summary}{full}");
    assert!(
        !all.contains("13812345678"),
        "a value leaked into the report"
    );
    assert!(
        !all.contains("0123456789abcdef"),
        "a value leaked into the report"
    );
}

#[test]
fn file_types_limits_and_the_seal_are_enforced() {
    let mut e = Export::new();
    e.add("data.csv", "Report", b"PK\x03\x04 a zip named csv", None);
    e.add("tool", "Other", b"\x7fELF\x02\x01\x01", None);
    e.add("chart.png", "Report", &png(&[]), None);
    e.add("model.pkl", "Model", b"\x80\x04\x95 weights", None);
    e.add("big.txt", "Report", &vec![b'a'; 2048], None);
    e.add("table.md", "Table", b"# not a table\n", None);
    e.add("rows.csv", "Table", b"k,n\na,11\nb,12\nc,13\n", None);
    e.add("broken.csv", "Report", b"a,b\n1,2\n3\n4,5\n", None);
    e.add("tampered.csv", "Report", b"a,b\n1,2\n", None);
    fs::write(e.path("files/tampered.csv"), b"a,b\n1,3\n").expect("tamper");
    fs::write(e.path("files/smuggled.csv"), b"a,b\n1,2\n").expect("smuggle");
    e.files
        .push(json!({"name": "../escape.csv", "kind": "Report", "size": 1, "sha256": "00"}));
    let (out, summary, full) = e.scan(r#"{"maxFileBytes": 1024, "maxTableRows": 2}"#, &[]);
    assert!(out.status.success());
    assert_eq!(summary["verdict"], "fail");
    let want = [
        ("data.csv", "fail", "file-type"),
        ("tool", "fail", "file-type"),
        ("chart.png", "review", "unchecked-content"),
        ("model.pkl", "review", "model"),
        ("big.txt", "fail", "max-file-bytes"),
        ("table.md", "fail", "file-type"),
        ("rows.csv", "fail", "max-table-rows"),
        ("broken.csv", "fail", "malformed"),
        ("tampered.csv", "fail", "sha256"),
        ("smuggled.csv", "fail", "manifest"),
        ("../escape.csv", "fail", "manifest"),
    ];
    for (name, verdict, fired) in want {
        assert_eq!(
            file(&full, name)["verdict"],
            verdict,
            "{name}: {}",
            file(&full, name)
        );
        assert!(
            checks(&full, name).contains(&fired.to_string()),
            "{name}: {:?}",
            checks(&full, name)
        );
    }
    assert_eq!(
        check(&full, "broken.csv", "malformed")["positions"],
        json!([{"line": 3}])
    );
    assert!(
        file(&full, "model.pkl")["notChecked"]
            .as_array()
            .is_some_and(|n| !n.is_empty())
    );
}

#[test]
fn raw_values_and_unique_quasi_identifiers_are_matched() {
    let mut e = Export::new();
    let raw = e.path("raw.csv");
    let mut body = String::from("身份证号,姓名,年龄,街道,收入\n");
    for i in 0..20 {
        body.push_str(&format!(
            "1101051949123100{i:02},居民{i:02},{},东街,{}\n",
            30 + i % 2,
            1000 + i
        ));
    }
    body.push_str("110105194912310099,欧阳娜娜,97,西街,500\n");
    fs::write(&raw, body).expect("raw");
    let plan = e.path("plan.json");
    fs::write(
        &plan,
        r#"{"columns":[
        {"name":"身份证号","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}},
        {"name":"姓名","type":"string","sensitivity":"Name","rule":{"kind":"redact"}},
        {"name":"年龄","type":"integer","sensitivity":"QuasiIdentifier","rule":{"kind":"generalize","bucket":10}},
        {"name":"街道","type":"string","sensitivity":"QuasiIdentifier","rule":{"kind":"keep"}},
        {"name":"收入","type":"decimal","sensitivity":"None","rule":{"kind":"keep"}}]}"#,
    )
    .expect("plan");
    e.add(
        "names.csv",
        "Report",
        "序号,称呼\n1,欧阳娜娜\n2,某人\n".as_bytes(),
        None,
    );
    e.add(
        "people.csv",
        "Microdata",
        "年龄,街道,收入\n97,西街,500\n30,东街,1000\n".as_bytes(),
        None,
    );
    let spec = format!("csv:{}:{}", plan.display(), raw.display());
    let (out, _, full) = e.scan("{}", &[spec]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        check(&full, "names.csv", "raw-value")["positions"],
        json!([{"row": 0, "column": 1}])
    );
    let qi = check(&full, "people.csv", "raw-qi-combination");
    assert_eq!(qi["positions"], json!([{"row": 0}]));
    assert_eq!(qi["verdict"], "review");
    // The raw plan's quasi-identifiers reach the file: k-anonymity runs on them.
    let stats = &file(&full, "people.csv")["microdata"];
    assert_eq!(stats["quasiIdentifiers"], json!(["年龄", "街道"]));
    assert_eq!(stats["smallestClass"], 1);
    assert_eq!(file(&full, "people.csv")["verdict"], "fail");
    assert_eq!(full["raw"][0]["rows"], 21);
    assert!(!full.to_string().contains("欧阳娜娜"));
}

#[test]
fn microdata_k_anonymity_with_declared_columns() {
    let mut e = Export::new();
    let mut body = String::from("age,district,diagnosis\n");
    for i in 0..5 {
        body.push_str(&format!("30,东城,{}\n", ["A", "B"][i % 2]));
    }
    e.add(
        "ok.csv",
        "Microdata",
        body.as_bytes(),
        Some(json!({"quasiIdentifiers": ["age", "district"], "sensitive": ["diagnosis"]})),
    );
    let (_, summary, full) = e.scan("{}", &[]);
    assert_eq!(summary["verdict"], "pass", "{full}");
    let stats = &file(&full, "ok.csv")["microdata"];
    assert_eq!(
        (
            stats["smallestClass"].clone(),
            stats["prosecutorRisk"].clone()
        ),
        (json!(5), json!(0.2))
    );
    let (_, summary, _) = e.scan(r#"{"k": 6}"#, &[]);
    assert_eq!(summary["files"][0]["checks"], json!(["k-anonymity"]));
}

#[test]
fn the_scan_refuses_to_run_without_a_valid_manifest_or_policy() {
    let mut e = Export::new();
    e.add("a.csv", "Report", b"a,b\n1,2\n", None);
    let (out, _, _) = e.scan(r#"{"k": 2}"#, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("k 2 is looser"));
    let log: Value =
        serde_json::from_str(&fs::read_to_string(e.path("termination-log")).expect("log"))
            .expect("json");
    assert!(
        log["error"]
            .as_str()
            .is_some_and(|m| m.contains("policy refused"))
    );
    let (out, _, _) = e.scan(r#"{"threshold": 3}"#, &[]);
    assert_eq!(out.status.code(), Some(2));
    fs::write(e.path("manifest.json"), "{").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args(["scan", "--policy"])
        .arg(e.path("policy.json"))
        .arg("--manifest")
        .arg(Path::new("/nonexistent/manifest.json"))
        .arg("--report")
        .arg(e.path("r.json"))
        .arg("--termination-log")
        .arg(e.path("no-dir/log"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn the_report_is_the_same_on_one_thread_and_many() {
    let mut e = Export::new();
    let mut csv = String::from("年龄,街道,备注\n");
    let mut jsonl = String::new();
    for i in 0..300 {
        let note = match i % 7 {
            0 => "\"回访\n电话13812345678\"".to_string(),
            3 => "p_0123456789abcdef0123456789abcdef".to_string(),
            _ => format!("第{i}条"),
        };
        csv.push_str(&format!("{},{},{note}\n", 20 + i % 50, ["东", "西"][i % 2]));
        jsonl.push_str(&format!(
            "{{\"n\":{i},\"t\":\"{}\"}}\n",
            if i % 11 == 0 { "a@b.cn" } else { "x" }
        ));
        if i % 101 == 5 {
            csv.push_str("bad row\n");
            jsonl.push_str("{broken\n");
        }
    }
    let qi = json!({"quasiIdentifiers": ["年龄", "街道"]});
    e.add("people.csv", "Microdata", csv.as_bytes(), Some(qi));
    e.add("events.jsonl", "Report", jsonl.as_bytes(), None);
    let names: Vec<String> = (0..90)
        .map(|i| {
            if i % 13 == 4 {
                "13812345678".into()
            } else {
                format!("区{i}")
            }
        })
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let counts: Vec<i64> = (0..90).map(|i| i % 17).collect();
    e.add(
        "groups.parquet",
        "Table",
        &parquet_groups(&names, &counts, 7),
        None,
    );
    let manifest = e.seal();
    fs::write(e.path("policy.json"), "{}").expect("policy");
    let run = |threads: &str, chunk: &str| -> Value {
        let report = e.path(&format!("report-{threads}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_agent"))
            .arg("scan")
            .arg("--manifest")
            .arg(&manifest)
            .arg("--policy")
            .arg(e.path("policy.json"))
            .arg("--report")
            .arg(&report)
            .arg("--termination-log")
            .arg(e.path("none/log"))
            .env("AGENT_THREADS", threads)
            .env("AGENT_CHUNK_BYTES", chunk)
            .output()
            .expect("run");
        assert!(out.status.success());
        serde_json::from_slice(&fs::read(&report).expect("report")).expect("json")
    };
    let one = run("1", "1000000");
    assert_eq!(check(&one, "people.csv", "identifier")["count"], 43);
    assert_eq!(
        check(&one, "people.csv", "malformed")["positions"][0],
        json!({"line": 9})
    );
    assert_eq!(check(&one, "events.jsonl", "identifier")["count"], 28);
    assert_eq!(file(&one, "people.csv")["microdata"]["classes"], 50);
    // 13 row groups of 7 rows: rows numbered across them, in order.
    let ids = &check(&one, "groups.parquet", "identifier")["positions"];
    assert_eq!(ids[1], json!({"row": 17, "column": 0}));
    assert_eq!(check(&one, "groups.parquet", "threshold")["count"], 55);
    for (threads, chunk) in [("2", "50"), ("3", "1"), ("4", "333")] {
        assert_eq!(
            run(threads, chunk),
            one,
            "{threads} threads, {chunk}-byte chunks"
        );
    }
}

/// A Parquet file with a text and an integer column.
fn parquet_table(districts: &[&str], counts: &[i64]) -> Vec<u8> {
    parquet_groups(districts, counts, 1 << 20)
}

/// The same, cut into row groups of `group` rows.
fn parquet_groups(districts: &[&str], counts: &[i64], group: usize) -> Vec<u8> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    let d: ArrayRef = Arc::new(StringArray::from(districts.to_vec()));
    let n: ArrayRef = Arc::new(Int64Array::from(counts.to_vec()));
    let batch = RecordBatch::try_from_iter([("district", d), ("n", n)]).expect("batch");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props))
        .expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    out
}

/// A PNG of no pixels with these chunks between its header and its end.
fn png(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr: (&[u8; 4], &[u8]) = (b"IHDR", &[0; 13]);
    let iend: (&[u8; 4], &[u8]) = (b"IEND", b"");
    for (kind, data) in [ihdr].iter().chain(chunks).chain([iend].iter()) {
        p.extend_from_slice(&(data.len() as u32).to_be_bytes());
        p.extend_from_slice(*kind);
        p.extend_from_slice(data);
        p.extend_from_slice(&[0; 4]);
    }
    p
}

#[test]
fn png_and_pdf_text_is_checked_and_the_rest_reviewed() {
    let mut e = Export::new();
    e.add(
        "plain.png",
        "Report",
        &png(&[(b"tEXt", b"Software\0plotters")]),
        None,
    );
    e.add(
        "tagged.png",
        "Report",
        &png(&[(b"tEXt", b"Author\0tel 13812345678")]),
        None,
    );
    e.add(
        "report.pdf",
        "Report",
        b"%PDF-1.4\n1 0 obj << /Title (Rates by district) >> endobj\n%%EOF\n",
        None,
    );
    e.add(
        "leaky.pdf",
        "Report",
        b"%PDF-1.4\n1 0 obj << /Length 30 >>\nstream\nBT (zhang.san@example.com) Tj ET\nendstream\nendobj\n",
        None,
    );
    let (out, _, full) = e.scan("{}", &[]);
    assert!(out.status.success());
    for (name, verdict) in [
        ("plain.png", "review"),
        ("tagged.png", "fail"),
        ("report.pdf", "review"),
        ("leaky.pdf", "fail"),
    ] {
        assert_eq!(
            file(&full, name)["verdict"],
            verdict,
            "{name}: {}",
            file(&full, name)
        );
        let unchecked = check(&full, name, "unchecked-content");
        let detail = unchecked["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("content not machine-checked"),
            "{detail}"
        );
    }
    assert_eq!(
        check(&full, "tagged.png", "identifier")["positions"],
        json!([{"part": 1}])
    );
    assert_eq!(
        check(&full, "leaky.pdf", "identifier")["kinds"],
        json!(["email"])
    );
    let text = full.to_string();
    assert!(
        !text.contains("13812345678") && !text.contains("zhang.san"),
        "a value leaked"
    );
}

/// zlib, as PDF's `FlateDecode` and PNG's compressed text are written.
fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).expect("deflate");
    z.finish().expect("deflate")
}

/// A PDF whose one page's content is this `FlateDecode` stream.
fn flate_pdf(stream: &[u8]) -> Vec<u8> {
    let mut p = format!(
        "%PDF-1.5\n1 0 obj << /Title (Rates by district) >> endobj\n\
         2 0 obj << /Length {} /Filter /FlateDecode >>\nstream\n",
        stream.len()
    )
    .into_bytes();
    p.extend_from_slice(stream);
    p.extend_from_slice(b"\nendstream\nendobj\n%%EOF\n");
    p
}

#[test]
fn compressed_pdf_and_png_text_is_inflated_and_checked() {
    let mut e = Export::new();
    let id = "11010519491231002X";
    e.add(
        "hidden.pdf",
        "Report",
        &flate_pdf(&zlib(
            format!("BT /F1 9 Tf 72 700 Td (ID {id}) Tj ET").as_bytes(),
        )),
        None,
    );
    e.add(
        "clean.pdf",
        "Report",
        &flate_pdf(&zlib(b"BT /F1 9 Tf 72 700 Td (Rate per 1000: 4.2) Tj ET")),
        None,
    );
    // 65 MiB of zeros from 66 KB: past the 64 MiB cap on what is inflated.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..65 {
        std::io::Write::write_all(&mut z, &zeros).expect("deflate");
    }
    let mut bomb_stream = z.finish().expect("deflate");
    bomb_stream.extend(zlib(id.as_bytes())); // never reached
    e.add("bomb.pdf", "Report", &flate_pdf(&bomb_stream), None);
    let mut ztxt = b"Comment\0\0".to_vec();
    ztxt.extend(zlib(format!("tel 13812345678 {id}").as_bytes()));
    e.add("chart.png", "Report", &png(&[(b"zTXt", &ztxt)]), None);
    let (out, _, full) = e.scan("{}", &[]);
    assert!(out.status.success());
    assert_eq!(file(&full, "hidden.pdf")["verdict"], "fail");
    assert_eq!(
        check(&full, "hidden.pdf", "identifier")["kinds"],
        json!(["resident-id"])
    );
    // Clean: what is drawn is still not read, so a person reviews it.
    assert_eq!(file(&full, "clean.pdf")["verdict"], "review");
    assert!(
        file(&full, "clean.pdf")["checks"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["name"] == "unchecked-content"))
    );
    assert_eq!(file(&full, "bomb.pdf")["verdict"], "fail");
    let limit = check(&full, "bomb.pdf", "inflate-limit");
    assert!(
        limit["detail"]
            .as_str()
            .is_some_and(|d| d.contains("more than 64 MiB")),
        "{limit}"
    );
    assert_eq!(file(&full, "chart.png")["verdict"], "fail");
    assert_eq!(
        check(&full, "chart.png", "identifier")["kinds"],
        json!(["mobile"])
    );
    let text = format!("{full}{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        !text.contains(id) && !text.contains("13812345678"),
        "a value leaked"
    );
}

#[test]
fn parquet_tables_get_the_same_checks() {
    let mut e = Export::new();
    e.add(
        "t.parquet",
        "Table",
        &parquet_table(&["东城", "西城", "13812345678"], &[10, 9, 40]),
        None,
    );
    let (out, _, full) = e.scan("{}", &[]);
    assert!(out.status.success());
    assert_eq!(file(&full, "t.parquet")["detectedType"], "parquet");
    assert_eq!(file(&full, "t.parquet")["rows"], 3);
    assert_eq!(
        check(&full, "t.parquet", "threshold")["positions"],
        json!([{"row": 1, "column": 1}])
    );
    assert_eq!(
        check(&full, "t.parquet", "identifier")["positions"],
        json!([{"row": 2, "column": 0}])
    );
    assert_eq!(file(&full, "t.parquet")["verdict"], "fail");
}

/// An import's file: the header and every value against the declared schema.
#[test]
fn an_import_is_held_to_its_declared_schema() {
    let schema = json!([{"name": "day", "type": "date"}, {"name": "rain_mm", "type": "decimal"}]);
    let with_schema = |body: &str, schema: &Value| {
        let mut e = Export::new();
        e.add("daily.csv", "Other", body.as_bytes(), None);
        e.files[0]["schema"] = schema.clone();
        e.scan("{}", &[])
    };
    let (_, summary, _) = with_schema("day,rain_mm\n2026-11-01,3.5\n2026-11-02,\n", &schema);
    assert_eq!(summary["verdict"], "pass", "{summary}");

    let (_, summary, full) = with_schema("day,rain_mm\n2026-11-01,3.5\n2026-11-31,lots\n", &schema);
    assert_eq!(summary["verdict"], "fail", "{summary}");
    let c = check(&full, "daily.csv", "schema-type");
    assert_eq!(
        c["positions"],
        json!([{"row": 1, "column": 0}, {"row": 1, "column": 1}])
    );
    assert!(
        !full.to_string().contains("lots"),
        "a value is quoted: {full}"
    );

    let (_, summary, full) = with_schema("rain_mm,day\n3.5,2026-11-01\n", &schema);
    assert_eq!(
        summary["files"][0]["checks"],
        json!(["schema"]),
        "{summary}"
    );
    let detail = check(&full, "daily.csv", "schema")["detail"].to_string();
    assert!(
        detail.contains("column 1 is not the declared \\\"day\\\""),
        "{detail}"
    );

    // A tabular file must declare its columns; a document cannot have any.
    let (_, summary, _) = with_schema("day,rain_mm\n2026-11-01,3.5\n", &json!([]));
    assert_eq!(
        summary["files"][0]["checks"],
        json!(["schema"]),
        "{summary}"
    );
    let (_, summary, _) = with_schema("# Notes\n\nRain was heavy.\n", &schema);
    assert_eq!(
        summary["files"][0]["checks"],
        json!(["schema"]),
        "{summary}"
    );
}
