//! Pins the exact output and report of `desensitize::run` on fixed,
//! generated inputs in every format, so that work on speed cannot change a
//! byte of what is delivered or reported.
//!
//! The inputs hit the edge cases of the hot paths: a BOM, quoted fields
//! with commas, quotes and line breaks, empty fields, ASCII and 4-byte
//! characters, identifiers inside free text (leaks reported in a
//! non-personal column), every rule, both samplings, malformed rows and a
//! personal leak. Each case pins the SHA-256 of the output file and of the
//! report's JSON.
//!
//! If a digest changes, the behaviour changed: find out why before
//! updating it. (A new `parquet` crate version may legitimately change the
//! Parquet bytes; check the values are the same, then update that digest.)

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use cleanroom_agent::desensitize::{self, Format, Options};
use cleanroom_agent::plan::Plan;
use cleanroom_agent::report::Report;
use cleanroom_agent::sample::SplitMix64;
use parquet::arrow::ArrowWriter;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const KEY: &[u8] = b"golden-key-0123456789abcdef";

const SURNAMES: &[&str] = &["张", "王", "欧阳", "司马", "Li", "李"];
const GIVEN: &[&str] = &["伟", "秀英", "", "Lei", "军洋", "娜"];
const PLACES: &[&str] = &[
    "北京市朝阳区建国路",
    "上海市浦东新区世纪大道",
    "广东省深圳市南山区科技园路",
    "浙江省杭州市西湖区文三路",
];
const NOTES: &[&str] = &[
    "客户来电咨询社保缴费基数调整事宜，已告知办理流程",
    "无",
    "",
    "请回电 13812345678 谢谢",
    "邮件 zhang.san@example.com 已发",
    "车牌粤B·D12345停在门口",
    "代码91350100M000100Y43",
    "卡号 6222021234567890128",
    "含逗号,和\"引号\"的备注",
    "第一行\n第二行",
    "回车\r\n换行",
    "plain ASCII note, with a comma",
    "表情😀和𠀀",
    "p_0123456789abcdef0123456789abcdef",
    "tel13912345678x",
    " 前后空格 ",
];

/// One generated person, as text.
struct Person {
    name: String,
    id: String,
    mobile: String,
    address: String,
    birth: String,
    age: i64,
    income: String,
    note: String,
    card: String,
}

fn resident_id(region: u64, y: u64, m: u64, d: u64, seq: u64) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("{region:06}{y:04}{m:02}{d:02}{seq:03}");
    let sum: u32 = body
        .bytes()
        .zip(W)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

fn people(n: usize) -> Vec<Person> {
    let mut rng = SplitMix64::new(77);
    let pick = |list: &[&str], rng: &mut SplitMix64| {
        list[rng.below(list.len() as u64) as usize].to_string()
    };
    (0..n)
        .map(|i| {
            let (y, m, d) = (1940 + rng.below(70), 1 + rng.below(12), 1 + rng.below(28));
            let mut id = resident_id(110000 + rng.below(9999), y, m, d, rng.below(1000));
            if id.ends_with('X') && rng.below(2) == 0 {
                id = id.to_lowercase();
            }
            let birth = match rng.below(4) {
                0 => format!("{y:04}-{m:02}-{d:02}"),
                1 => format!("{y:04}/{m:02}/{d:02}"),
                2 => format!("{y:04}-{m:02}-{d:02}T08:30:00Z"),
                _ => format!("{y:04}-{m:02}-{d:02} 23:59"),
            };
            let income = match rng.below(3) {
                0 => format!("{}", rng.below(100_000)),
                1 => format!("{}.{:02}", rng.below(100_000), rng.below(100)),
                _ => format!("-{}.5", rng.below(1000)),
            };
            let empty = rng.below(20) == 0;
            Person {
                name: if empty {
                    String::new()
                } else {
                    let s = pick(SURNAMES, &mut rng);
                    s + &pick(GIVEN, &mut rng)
                },
                id: if i % 37 == 5 { String::new() } else { id },
                mobile: if i % 41 == 3 {
                    String::new()
                } else {
                    format!("1{}{:09}", 3 + rng.below(7), rng.below(1_000_000_000))
                },
                address: format!(
                    "{}{}号{}室",
                    pick(PLACES, &mut rng),
                    1 + rng.below(300),
                    rng.below(2000)
                ),
                birth: if i % 53 == 7 { String::new() } else { birth },
                age: rng.below(100) as i64 - 5,
                income,
                note: pick(NOTES, &mut rng),
                card: format!("6222{:015}", rng.below(1_000_000_000_000_000)),
            }
        })
        .collect()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

const HEADER: [&str; 10] = [
    "序号",
    "姓名",
    "身份证号",
    "手机号",
    "地址",
    "出生日期",
    "年龄",
    "收入",
    "备注",
    "银行卡",
];

fn people_csv(rows: &[Person]) -> Vec<u8> {
    let mut s = String::from("\u{feff}");
    s.push_str(&HEADER.join(","));
    s.push('\n');
    for (i, p) in rows.iter().enumerate() {
        let fields = [
            i.to_string(),
            p.name.clone(),
            p.id.clone(),
            p.mobile.clone(),
            p.address.clone(),
            p.birth.clone(),
            p.age.to_string(),
            p.income.clone(),
            p.note.clone(),
            p.card.clone(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        s.push_str(&line.join(","));
        s.push_str(if i % 3 == 0 { "\r\n" } else { "\n" });
    }
    s.into_bytes()
}

fn people_jsonl(rows: &[Person]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in rows.iter().enumerate() {
        let text = |s: &str| {
            if s.is_empty() { Value::Null } else { json!(s) }
        };
        let mut o = Map::new();
        o.insert("序号".into(), json!(i));
        o.insert("姓名".into(), text(&p.name));
        o.insert("身份证号".into(), text(&p.id));
        if !p.mobile.is_empty() {
            o.insert("手机号".into(), json!(p.mobile));
        }
        o.insert("地址".into(), json!(p.address));
        o.insert("出生日期".into(), text(&p.birth));
        o.insert("年龄".into(), json!(p.age));
        let income: f64 = p.income.parse().expect("number");
        o.insert("收入".into(), json!(income));
        o.insert("备注".into(), json!(p.note));
        o.insert("银行卡".into(), json!(p.card));
        out.extend(serde_json::to_vec(&Value::Object(o)).expect("json"));
        out.extend(if i % 50 == 10 { &b"\n\n"[..] } else { b"\n" });
    }
    out
}

fn write_people_parquet(rows: &[Person], path: &Path) {
    let text = |f: fn(&Person) -> &String| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.iter()
                .map(|p| Some(f(p).as_str()).filter(|s| !s.is_empty()))
                .collect::<Vec<_>>(),
        ))
    };
    let ages: ArrayRef = Arc::new(Int64Array::from(
        rows.iter().map(|p| p.age).collect::<Vec<_>>(),
    ));
    let incomes: ArrayRef = Arc::new(Float64Array::from(
        rows.iter()
            .map(|p| p.income.parse::<f64>().ok())
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_from_iter(vec![
        ("姓名", text(|p| &p.name)),
        ("身份证号", text(|p| &p.id)),
        ("手机号", text(|p| &p.mobile)),
        ("地址", text(|p| &p.address)),
        ("出生日期", text(|p| &p.birth)),
        ("年龄", ages),
        ("收入", incomes),
        ("备注", text(|p| &p.note)),
        ("银行卡", text(|p| &p.card)),
    ])
    .expect("batch");
    let mut w = ArrowWriter::try_new(File::create(path).expect("create"), batch.schema(), None)
        .expect("writer");
    for start in (0..batch.num_rows()).step_by(3000) {
        let len = 3000.min(batch.num_rows() - start);
        w.write(&batch.slice(start, len)).expect("write");
    }
    w.close().expect("close");
}

/// Every rule; `序号` and `银行卡`'s neighbours are not all listed.
fn plan(sampling: &str) -> String {
    format!(
        r#"{{"columns":[
 {{"name":"姓名","type":"string","sensitivity":"Name","rule":{{"kind":"mask","keepFirst":1}}}},
 {{"name":"身份证号","type":"string","sensitivity":"ResidentId","rule":{{"kind":"hash"}}}},
 {{"name":"手机号","type":"string","sensitivity":"Mobile","rule":{{"kind":"mask","keepFirst":3,"keepLast":4}}}},
 {{"name":"地址","type":"string","sensitivity":"Address","rule":{{"kind":"generalize","prefix":6}}}},
 {{"name":"出生日期","type":"date","sensitivity":"QuasiIdentifier","rule":{{"kind":"generalize","truncate":"month"}}}},
 {{"name":"年龄","type":"integer","sensitivity":"QuasiIdentifier","rule":{{"kind":"generalize","bucket":10}}}},
 {{"name":"收入","type":"decimal","sensitivity":"None","rule":{{"kind":"noise","bound":50.0}}}},
 {{"name":"备注","type":"string","sensitivity":"FreeText","rule":{{"kind":"keep"}}}},
 {{"name":"银行卡","type":"string","sensitivity":"BankCard","rule":{{"kind":"redact","with":"[卡]"}}}}
]{sampling}}}"#
    )
}

/// Output digest (None when nothing was written) and report JSON.
fn run(dir: &Path, input: &Path, format: Format, plan: &str) -> (Option<String>, Report) {
    let output = dir.join(format!(
        "out-{}",
        input.file_name().and_then(|n| n.to_str()).expect("name")
    ));
    let _ = fs::remove_file(&output);
    let opts = Options {
        input: input.to_path_buf(),
        output: output.clone(),
        format,
        plan: Plan::from_json(plan).expect("plan"),
        key: Some(KEY.to_vec()),
    };
    let report = match desensitize::run(&opts) {
        Ok(r) => r,
        Err(f) => *f.report,
    };
    let digest = fs::read(&output)
        .ok()
        .map(|bytes| hex::encode(Sha256::digest(&bytes)));
    (digest, report)
}

/// Compare with the pinned digests; a mismatch is noted with what was
/// produced, so that one run shows every case that changed.
fn check(
    changed: &mut Vec<String>,
    case: &str,
    got: (Option<String>, Report),
    output: Option<&str>,
    report: &str,
) {
    let json = serde_json::to_string(&got.1).expect("report");
    let report_digest = hex::encode(Sha256::digest(json.as_bytes()));
    if (got.0.as_deref(), report_digest.as_str()) != (output, report) {
        changed.push(format!(
            "{case}: output {:?} report {report_digest}; the report is now\n{json}",
            got.0
        ));
    }
    if let Some(d) = &got.0 {
        assert_eq!(got.1.output_sha256.as_deref(), Some(d.as_str()), "{case}");
    }
}

fn assert_unchanged(changed: &[String]) {
    assert!(changed.is_empty(), "{}", changed.join("\n"));
}

const ROWS: usize = 3000;

#[test]
fn csv_output_and_report_are_pinned() {
    let mut changed = Vec::new();
    let dir = TempDir::new().expect("tempdir");
    let input = dir.path().join("people.csv");
    fs::write(&input, people_csv(&people(ROWS))).expect("write");
    check(
        &mut changed,
        "all rows",
        run(dir.path(), &input, Format::Csv, &plan("")),
        Some("e71a5bdcbabcd8dac7fbbb75656f4dbf75d66ed1b0929e6b437302df9dc79d86"),
        "8f2485965b5e5ed6b658dd3a4627650f15aac4074211141249c7167abd746730",
    );
    check(
        &mut changed,
        "fraction",
        run(
            dir.path(),
            &input,
            Format::Csv,
            &plan(r#","sampling":{"fraction":0.3,"seed":7}"#),
        ),
        Some("a7550bd92f090702dac4ba21bbd4665f01bed0d994cf9c0e315e9f099275a15b"),
        "25ee83c79307d2b7effd0e4ac42e0ea424b388b868439dfb0f863a60ece4ea67",
    );
    check(
        &mut changed,
        "reservoir",
        run(
            dir.path(),
            &input,
            Format::Csv,
            &plan(r#","sampling":{"rows":100,"seed":9}"#),
        ),
        Some("212e919fcd36427841fc85febeca2cbe216c7c9cc4702c3a0fb4509ba9836157"),
        "7f7d3775bd0c2e17c7439b31a39275b82556a38ad3a988f703386fe795fb833a",
    );
    assert_unchanged(&changed);
}

#[test]
fn csv_single_column_of_empty_values_is_pinned() {
    let mut changed = Vec::new();
    // csv writes a record of one empty field as `""`, not as an empty line.
    let dir = TempDir::new().expect("tempdir");
    let input = dir.path().join("one.csv");
    fs::write(&input, "a,b\n,1\nx,2\n\"\",3\n\"y,z\",4\n").expect("write");
    let plan =
        r#"{"columns":[{"name":"a","type":"string","sensitivity":"None","rule":{"kind":"keep"}}]}"#;
    check(
        &mut changed,
        "one column",
        run(dir.path(), &input, Format::Csv, plan),
        Some("0d0433cbfeaea45b38d4a5b90e657cbd5f3ba27675cc736f3e81e9e3f168af44"),
        "b569e7573e1fb8df0da8c2d2a25e5a306406525bfd77205d239996d1bc5cb7e0",
    );
    assert_unchanged(&changed);
}

#[test]
fn csv_failures_are_pinned() {
    let mut changed = Vec::new();
    let dir = TempDir::new().expect("tempdir");
    let mut bytes = people_csv(&people(200));
    // Line 202: invalid UTF-8 in a delivered column (malformed).
    bytes.extend(b"200,\xE5\xBC,11010519491231002X,13812345678,addr,1990-01-01,3,1.5,n,6222\n");
    // Line 203: invalid UTF-8 only in a column the plan does not deliver (fine).
    bytes.extend(b"\xFF\xFE,name,11010519491231002X,13812345678,addr,1990-01-01,3,1.5,n,6222\n");
    // Line 204: too few fields; 205: not a number; 206: not a date.
    bytes.extend("201,张三,x\n".as_bytes());
    bytes.extend("202,张三,x,y,z,1990-01-01,abc,1,n,c\n".as_bytes());
    bytes.extend("203,张三,x,y,z,1990-02-30,3,1,n,c\n".as_bytes());
    let input = dir.path().join("bad.csv");
    fs::write(&input, &bytes).expect("write");
    check(
        &mut changed,
        "malformed",
        run(dir.path(), &input, Format::Csv, &plan("")),
        None,
        "c9fa449a4b1a9dafb8df8b22483040ea0f0db329270ced55f5cf199da976269e",
    );
    // An address prefix as long as the address delivers it whole: a leak.
    let input = dir.path().join("leak.csv");
    fs::write(&input, people_csv(&people(300))).expect("write");
    let leaky = plan("").replace(r#""prefix":6"#, r#""prefix":60"#);
    check(
        &mut changed,
        "personal leak",
        run(dir.path(), &input, Format::Csv, &leaky),
        None,
        "350fc69d2d9ad4a371dfcb6b76516643f8989bd536e4ea7db5055d00cd23f1a3",
    );
    assert_unchanged(&changed);
}

#[test]
fn jsonl_output_and_report_are_pinned() {
    let mut changed = Vec::new();
    let dir = TempDir::new().expect("tempdir");
    let input = dir.path().join("people.jsonl");
    fs::write(&input, people_jsonl(&people(ROWS))).expect("write");
    check(
        &mut changed,
        "all rows",
        run(dir.path(), &input, Format::Jsonl, &plan("")),
        Some("4e1b1998c684b4ee8c271fe7a71c3afe8bbc458445d90c03b7badb77c9fa3c2d"),
        "7db5888bc125487f5f6c883ba777d81a8260163b1993006791010edf9f0a273c",
    );
    check(
        &mut changed,
        "reservoir",
        run(
            dir.path(),
            &input,
            Format::Jsonl,
            &plan(r#","sampling":{"rows":100,"seed":9}"#),
        ),
        Some("b335b0e0ade69422578188f92383f0c9ede2777d8e9c63375bd8e47eadca194f"),
        "199c9d0f8e8b162d69551f44b0062a5f1f96a500d06dec060aea7f91e9960172",
    );
    assert_unchanged(&changed);
}

#[test]
fn parquet_output_and_report_are_pinned() {
    let mut changed = Vec::new();
    let dir = TempDir::new().expect("tempdir");
    let input = dir.path().join("people.parquet");
    write_people_parquet(&people(ROWS), &input);
    check(
        &mut changed,
        "all rows",
        run(dir.path(), &input, Format::Parquet, &plan("")),
        Some("40807b347273f0acfe11774341f27ed5000ec65b1c6145c94536abdc60a0a37a"),
        "ffa3685a91119a91839a53c909f5ba83dad4678af52c9d73df2995e6bf7c04d4",
    );
    check(
        &mut changed,
        "fraction",
        run(
            dir.path(),
            &input,
            Format::Parquet,
            &plan(r#","sampling":{"fraction":0.3,"seed":7}"#),
        ),
        Some("3920b4f0a93f9d76547e65d0d51adfa2755bb5070bfc251c8dec276f3e82e277"),
        "71c35985b54c5a949b52a604fa165f4c0d63b3337c43e8f4690b6beed6df0657",
    );
    assert_unchanged(&changed);
}
