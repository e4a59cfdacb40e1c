//! The `agent desensitize` binary as a Job runs it, on small files of
//! Chinese personal data in each format.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const IDS: [&str; 3] = [
    "11010519491231002X",
    "110101199003074477",
    "320311198001015674",
];
const MOBILES: [&str; 3] = ["13812345678", "13912345678", "15000000000"];
const CARDS: [&str; 3] = [
    "6222021234567890128",
    "4111111111111111",
    "6222021234567890128",
];

/// Four rows; rows 1 and 4 are the same person (same ID).
fn people_csv() -> String {
    let mut s = String::from("姓名,身份证号,手机号,地址,银行卡,收入,备注,内部编号\n");
    let rows = [
        ("张三", 0, "北京市朝阳区建国路88号", 12345.5, "按时缴费"),
        ("李四", 1, "上海市浦东新区世纪大道1号", 8000.0, "无"),
        (
            "欧阳娜娜",
            2,
            "广东省深圳市南山区科技园路3号",
            15000.25,
            "咨询公积金",
        ),
        ("张三", 0, "北京市朝阳区建国路88号", 12500.0, "再次来电"),
    ];
    for (i, (name, p, addr, income, note)) in rows.iter().enumerate() {
        s.push_str(&format!(
            "{name},{},{},{addr},{},{income},{note},N{i}\n",
            IDS[*p], MOBILES[*p], CARDS[*p]
        ));
    }
    s
}

const PLAN: &str = r#"{"columns":[
 {"name":"手机号","type":"string","sensitivity":"Mobile","rule":{"kind":"mask","keepFirst":3,"keepLast":4}},
 {"name":"身份证号","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}},
 {"name":"姓名","type":"string","sensitivity":"Name","rule":{"kind":"mask","keepFirst":1}},
 {"name":"地址","type":"string","sensitivity":"Address","rule":{"kind":"generalize","prefix":6}},
 {"name":"银行卡","type":"string","sensitivity":"BankCard","rule":{"kind":"drop"}},
 {"name":"收入","type":"decimal","sensitivity":"None","rule":{"kind":"noise","bound":100}},
 {"name":"备注","type":"string","sensitivity":"FreeText","rule":{"kind":"keep"}}
]}"#;

struct Run {
    dir: TempDir,
}

impl Run {
    fn new() -> Self {
        let dir = TempDir::new().expect("tempdir");
        fs::write(dir.path().join("key1"), "0123456789abcdef-scenario-one\n").expect("key");
        fs::write(dir.path().join("key2"), "fedcba9876543210-scenario-two\n").expect("key");
        Run { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, content).expect("write");
        p
    }

    fn agent(&self, input: &str, output: &str, format: &str, plan: &str, key: &str) -> Output {
        let plan_path = self.write("plan.json", plan);
        Command::new(env!("CARGO_BIN_EXE_agent"))
            .args(["desensitize", "--format", format, "--input"])
            .arg(self.path(input))
            .arg("--output")
            .arg(self.path(output))
            .arg("--plan")
            .arg(plan_path)
            .arg("--key-file")
            .arg(self.path(key))
            .arg("--termination-log")
            .arg(self.path("termination-log"))
            .output()
            .expect("runs")
    }

    /// Files in the directory whose name contains `.partial-`.
    fn partials(&self) -> Vec<String> {
        fs::read_dir(self.dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".partial-"))
            .collect()
    }
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn assert_no_raw_identifier(text: &str) {
    for raw in IDS.iter().chain(&MOBILES).chain(&CARDS) {
        assert!(!text.contains(raw), "{raw} left in the output:\n{text}");
    }
    for addr in ["建国路", "世纪大道", "科技园路"] {
        assert!(!text.contains(addr), "{addr} left in the output");
    }
}

#[test]
fn csv_keeps_only_approved_columns_in_plan_order_and_no_raw_identifier() {
    let run = Run::new();
    run.write("people.csv", people_csv());
    let out = run.agent("people.csv", "prepared.csv", "csv", PLAN, "key1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep = report(&out);
    let text = fs::read_to_string(run.path("prepared.csv")).expect("output");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("手机号,身份证号,姓名,地址,收入,备注"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0][0], "138****5678");
    assert!(rows[0][1].starts_with("p_") && rows[0][1].len() == 34);
    assert_eq!(rows[2][2], "欧***");
    assert_eq!(rows[1][3], "上海市浦东新");
    let income: f64 = rows[0][4].parse().expect("number");
    assert!((income - 12345.5).abs() <= 100.0);
    assert_no_raw_identifier(&text);
    // The same person has the same pseudonym; different people differ.
    assert_eq!(rows[0][1], rows[3][1]);
    assert_ne!(rows[0][1], rows[1][1]);

    assert_eq!(rep["ok"], true);
    assert_eq!(rep["rowsIn"], 4);
    assert_eq!(rep["rowsOut"], 4);
    assert_eq!(rep["malformed"], 0);
    assert_eq!(rep["droppedColumns"], 2);
    assert_eq!(rep["columns"][1]["rule"], "hash");
    assert!(
        rep["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .all(|c| c["leaks"] == 0)
    );
    assert_eq!(
        rep["outputSha256"],
        hex::encode(Sha256::digest(text.as_bytes()))
    );
    assert_eq!(rep["bytesOut"], text.len());
    let log = fs::read_to_string(run.path("termination-log")).expect("log");
    assert!(log.len() < 4096);
    assert_eq!(
        serde_json::from_str::<Value>(&log).expect("json"),
        rep,
        "termination log = stdout"
    );
    // The key is nowhere in the report.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("scenario-one"));
    assert!(run.partials().is_empty());
}

#[test]
fn pseudonyms_are_stable_per_key_and_unrelated_across_keys() {
    let run = Run::new();
    run.write("people.csv", people_csv());
    let plan = r#"{"columns":[{"name":"身份证号","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}}]}"#;
    let column = |output: &str, key: &str| -> Vec<String> {
        let out = run.agent("people.csv", output, "csv", plan, key);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::read_to_string(run.path(output))
            .expect("output")
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    let a = column("a.csv", "key1");
    let again = column("again.csv", "key1");
    let b = column("b.csv", "key2");
    assert_eq!(a, again);
    assert_eq!(a[0], a[3]);
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x, y);
    }
}

#[test]
fn jsonl_keeps_types_nulls_and_plan_order() {
    let run = Run::new();
    let lines = [
        r#"{"id":"11010519491231002X","name":"张三","age":37,"birth":"1990-03-07","extra":"x"}"#,
        r#"{"id":"110101199003074477","name":null,"age":null,"birth":"1985-12-01","extra":"y"}"#,
        "",
        r#"{"id":"320311198001015674","age":-3,"birth":"2001-01-31","extra":"z"}"#,
    ];
    run.write("people.jsonl", lines.join("\n") + "\n");
    let plan = r#"{"columns":[
     {"name":"age","type":"integer","sensitivity":"QuasiIdentifier","rule":{"kind":"generalize","bucket":10}},
     {"name":"name","type":"string","sensitivity":"Name","rule":{"kind":"redact"}},
     {"name":"id","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}},
     {"name":"birth","type":"date","sensitivity":"QuasiIdentifier","rule":{"kind":"generalize","truncate":"year"}}
    ]}"#;
    let out = run.agent("people.jsonl", "out.jsonl", "jsonl", plan, "key1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(run.path("out.jsonl")).expect("output");
    assert_no_raw_identifier(&text);
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("object"))
        .collect();
    assert_eq!(rows.len(), 3);
    // Keys in plan order, "extra" dropped.
    let first = text.lines().next().expect("line");
    let order: Vec<usize> = ["\"age\"", "\"name\"", "\"id\"", "\"birth\""]
        .iter()
        .map(|k| first.find(k).expect("key"))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{first}");
    assert!(!first.contains("extra"));
    assert_eq!(rows[0]["age"], 30);
    assert_eq!(rows[0]["name"], "***");
    assert_eq!(rows[0]["birth"], "1990");
    assert_eq!(rows[1]["age"], Value::Null);
    assert_eq!(rows[1]["name"], Value::Null);
    assert_eq!(rows[2]["age"], -10);
    assert_eq!(rows[2]["name"], Value::Null, "missing key is null");
    assert_eq!(report(&out)["rowsIn"], 3);
}

fn write_parquet(path: &Path) {
    let ids: ArrayRef = Arc::new(StringArray::from(vec![Some(IDS[0]), Some(IDS[1]), None]));
    let mobiles: ArrayRef = Arc::new(StringArray::from(vec![MOBILES[0], MOBILES[1], MOBILES[2]]));
    let income: ArrayRef = Arc::new(Int64Array::from(vec![Some(12345), None, Some(8000)]));
    // 1990-03-07, 1985-12-01, 2001-01-31 as days since 1970-01-01.
    let birth: ArrayRef = Arc::new(Date32Array::from(vec![7370, 5813, 11353]));
    let batch = RecordBatch::try_from_iter(vec![
        ("身份证号", ids),
        ("手机号", mobiles),
        ("收入", income),
        ("出生日期", birth),
    ])
    .expect("batch");
    let mut w = ArrowWriter::try_new(File::create(path).expect("create"), batch.schema(), None)
        .expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
}

#[test]
fn parquet_round_trip_with_types() {
    let run = Run::new();
    write_parquet(&run.path("people.parquet"));
    let plan = r#"{"columns":[
     {"name":"出生日期","type":"date","sensitivity":"QuasiIdentifier","rule":{"kind":"generalize","truncate":"month"}},
     {"name":"身份证号","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}},
     {"name":"手机号","type":"string","sensitivity":"Mobile","rule":{"kind":"mask","keepFirst":3,"keepLast":4}},
     {"name":"收入","type":"integer","sensitivity":"None","rule":{"kind":"noise","bound":10}}
    ],"sampling":{"fraction":1.0,"seed":3}}"#;
    let out = run.agent("people.parquet", "out.parquet", "parquet", plan, "key1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = ParquetRecordBatchReaderBuilder::try_new(
        File::open(run.path("out.parquet")).expect("open"),
    )
    .expect("parquet")
    .build()
    .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let batch = &batches[0];
    let names: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["出生日期", "身份证号", "手机号", "收入"]);
    let birth = batch.column(0).as_string::<i32>();
    assert_eq!(birth.value(0), "1990-03");
    assert_eq!(birth.value(2), "2001-01");
    let ids = batch.column(1).as_string::<i32>();
    assert!(ids.value(0).starts_with("p_"));
    assert!(ids.is_null(2), "null stays null");
    assert_eq!(batch.column(2).as_string::<i32>().value(1), "139****5678");
    let income = batch.column(3).as_primitive::<Int64Type>();
    assert!((income.value(0) - 12345).abs() <= 10);
    assert!(income.is_null(1));
    assert_eq!(report(&out)["rowsOut"], 3);
}

#[test]
fn malformed_rows_fail_with_line_numbers_and_leave_no_output() {
    let run = Run::new();
    let mut csv = people_csv();
    csv.push_str("王五,only-three-fields,x\n"); // line 6
    csv.push_str(
        "赵六,110101199003074477,13912345678,地址,6222021234567890128,not-a-number,无,N9\n",
    ); // line 7
    run.write("bad.csv", csv);
    let out = run.agent("bad.csv", "prepared.csv", "csv", PLAN, "key1");
    assert!(!out.status.success());
    let rep = report(&out);
    assert_eq!(rep["ok"], false);
    assert_eq!(rep["malformed"], 2);
    let lines: Vec<u64> = rep["malformedLines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|m| m["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, [6, 7]);
    assert!(
        rep["malformedLines"][1]["reason"]
            .as_str()
            .expect("reason")
            .contains("收入")
    );
    // The raw value is never in the report.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not-a-number"));
    assert!(rep["error"].as_str().expect("error").contains("6, 7"));
    assert!(!run.path("prepared.csv").exists());
    assert!(run.partials().is_empty(), "{:?}", run.partials());
}

#[test]
fn wrong_format_fails_clearly() {
    let run = Run::new();
    write_parquet(&run.path("people.parquet"));
    run.write("people.csv", people_csv());
    run.write("notjson.jsonl", people_csv());
    let plan = r#"{"columns":[{"name":"身份证号","type":"string","sensitivity":"ResidentId","rule":{"kind":"hash"}}]}"#;
    for (input, format, expected) in [
        ("people.parquet", "csv", "Parquet"),
        ("people.parquet", "jsonl", "Parquet"),
        ("people.csv", "parquet", "not a Parquet file"),
        ("notjson.jsonl", "jsonl", "not JSON Lines"),
    ] {
        let out = run.agent(input, "out", format, plan, "key1");
        assert!(!out.status.success(), "{input} as {format}");
        let err = report(&out)["error"].as_str().expect("error").to_string();
        assert!(err.contains(expected), "{input} as {format}: {err}");
        assert!(!run.path("out").exists());
        assert!(run.partials().is_empty());
    }
}

#[test]
fn keep_on_a_personal_column_is_refused_before_reading_data() {
    let run = Run::new();
    let plan = r#"{"columns":[{"name":"手机号","type":"string","sensitivity":"Mobile","rule":{"kind":"keep"}}]}"#;
    // The input does not even exist: the plan is refused first.
    let out = run.agent("missing.csv", "out.csv", "csv", plan, "key1");
    assert!(!out.status.success());
    let err = report(&out)["error"].as_str().expect("error").to_string();
    assert!(err.contains("never delivered in clear"), "{err}");
    assert!(err.contains("手机号"));
}

#[test]
fn a_personal_column_left_readable_fails_and_removes_the_output() {
    let run = Run::new();
    run.write("people.csv", people_csv());
    // A prefix as long as the value delivers it whole.
    let plan = r#"{"columns":[{"name":"身份证号","type":"string","sensitivity":"ResidentId","rule":{"kind":"generalize","prefix":18}}]}"#;
    let out = run.agent("people.csv", "out.csv", "csv", plan, "key1");
    assert!(!out.status.success());
    let rep = report(&out);
    assert_eq!(rep["columns"][0]["leaks"], 4);
    assert!(rep["error"].as_str().expect("error").contains("身份证号"));
    assert!(!run.path("out.csv").exists());
    assert!(run.partials().is_empty());
}

#[test]
fn missing_column_is_named_with_the_real_ones() {
    let run = Run::new();
    run.write("people.csv", people_csv());
    let plan = r#"{"columns":[{"name":"邮箱","type":"string","sensitivity":"Email","rule":{"kind":"hash"}}]}"#;
    let out = run.agent("people.csv", "out.csv", "csv", plan, "key1");
    assert!(!out.status.success());
    let err = report(&out)["error"].as_str().expect("error").to_string();
    assert!(
        err.contains("\"邮箱\"") && err.contains("\"身份证号\""),
        "{err}"
    );
}

#[test]
fn reservoir_sampling_is_reproducible_and_keeps_input_order() {
    let run = Run::new();
    let mut csv = String::from("n,手机号\n");
    for i in 0..50 {
        csv.push_str(&format!("{i},1381234{i:04}\n"));
    }
    run.write("many.csv", csv);
    let plan = r#"{"columns":[
     {"name":"n","type":"integer","sensitivity":"None","rule":{"kind":"keep"}},
     {"name":"手机号","type":"string","sensitivity":"Mobile","rule":{"kind":"redact"}}
    ],"sampling":{"rows":5,"seed":11}}"#;
    let sample = |output: &str| -> Vec<u64> {
        let out = run.agent("many.csv", output, "csv", plan, "key1");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(report(&out)["rowsOut"], 5);
        fs::read_to_string(run.path(output))
            .expect("output")
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().and_then(|n| n.parse().ok()).expect("n"))
            .collect()
    };
    let a = sample("a.csv");
    assert_eq!(a.len(), 5);
    assert!(a.windows(2).all(|w| w[0] < w[1]), "{a:?}");
    assert_eq!(a, sample("b.csv"));
}
