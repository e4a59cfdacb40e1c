//! The airlock's verbs: argument parsing, the checks made before sending,
//! what is printed, and the report's exports from ledger records.

use clap::Parser;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::airlock_view::{ExportView, list_table};
use super::common::Output;
use super::export::{ExportCommand, withdrawn_message};
use super::export_spec::{Request, check_name, outbox_path, parse_file};
use super::report_airlock::{self, Airlock, AirlockLine, lines};
use super::review::{self, name_prefix, parse_note, slug};
use super::*;
use crate::api::Export;
use crate::api::airlock::{Decision, ProductKind};
use crate::audit::record::GENESIS;
use crate::audit::{Action, Draft, Record};

fn parse(args: &[&str]) -> Result<Command, clap::Error> {
    Cli::try_parse_from(args).map(|c| c.command)
}

fn create(extra: &[&str]) -> Result<super::export::CreateArgs, clap::Error> {
    let mut args = vec![
        "cleanroom",
        "export",
        "create",
        "q1",
        "--scenario",
        "census",
        "--context",
        "c",
        "--controls",
        "k",
    ];
    args.extend_from_slice(extra);
    match parse(&args)? {
        Command::Export(e) => match e.command {
            ExportCommand::Create(c) => Ok(c),
            other => panic!("expected create, got {other:?}"),
        },
        other => panic!("expected export, got {other:?}"),
    }
}

#[test]
fn export_create_parses_files_with_kinds_and_column_roles() {
    let c = create(&[
        "--file",
        "/work/outbox/tables/by-district.csv:Table:keys=district,age_band;counts=n",
        "--file",
        "summary.pdf:report",
        "-o",
        "json",
    ])
    .expect("parses");
    assert_eq!(c.files.len(), 2);
    assert_eq!(c.files[0].path, "tables/by-district.csv");
    assert_eq!(c.files[0].kind, ProductKind::Table);
    let roles = c.files[0].columns.clone().expect("roles");
    assert_eq!(roles.keys, ["district", "age_band"]);
    assert_eq!(roles.counts, ["n"]);
    assert_eq!(c.files[1].path, "summary.pdf");
    assert_eq!(c.files[1].kind, ProductKind::Report);
    assert_eq!(c.files[1].columns, None);
    assert_eq!(c.output.output, Output::Json);
    let none = create(&[]).expect_err("at least one --file");
    assert_eq!(none.exit_code(), 2);
}

#[test]
fn a_file_outside_the_outbox_or_of_no_kind_is_a_usage_error() {
    for bad in [
        "/etc/passwd:Other",
        "../secret.csv:Table",
        "tables/.hidden:Table",
        "x.csv",
        "x.csv:Spreadsheet",
        "x.csv:Table:rows=3",
        "x.csv:Table:keys=a;keys=b",
        "x.csv:Table:keys=",
        "/work/outbox/:Table",
    ] {
        let e = create(&["--file", bad]).expect_err(bad);
        assert_eq!(e.exit_code(), 2, "{bad}");
    }
    assert_eq!(outbox_path("/work/outbox/a/b.csv"), Ok("a/b.csv".into()));
    assert!(outbox_path("/work/outboxes/a.csv").is_err());
    let m = parse_file("m.bin:Microdata:quasi-identifiers=age,sex;sensitive=diagnosis")
        .expect("parses");
    let roles = m.columns.expect("roles");
    assert_eq!(roles.quasi_identifiers, ["age", "sex"]);
    assert_eq!(roles.sensitive, ["diagnosis"]);
}

#[test]
fn the_request_is_checked_before_it_is_sent() {
    let c = create(&["--file", "a.csv:Table"]).expect("parses");
    let r = Request::from_args(&c).expect("valid");
    let e = r.export("alice@acme.example");
    assert_eq!(e.metadata.name.as_deref(), Some("q1"));
    assert_eq!(e.metadata.namespace.as_deref(), Some("cr-census"));
    assert_eq!(e.spec.requester, "alice@acme.example");
    assert_eq!(e.spec.files, c.files);

    let twice = create(&[
        "--file",
        "a.csv:Table",
        "--file",
        "/work/outbox/a.csv:Report",
    ])
    .expect("parses");
    let err = Request::from_args(&twice).expect_err("named twice");
    assert_eq!(exit_code(&err), 2, "a bad request is a usage error");
    assert!(
        format!("{err:#}").contains("a.csv is named twice"),
        "{err:#}"
    );
    let blank = Request {
        context: "  ".into(),
        ..r.clone()
    };
    assert!(format!("{:#}", blank.check().expect_err("blank")).contains("--context"));
    let many = Request {
        files: vec![c.files[0].clone(); 33],
        ..r.clone()
    };
    assert!(format!("{:#}", many.check().expect_err("33")).contains("1 to 32 files"));
    for name in ["Q1", "-q1", "q1-", "q_1", ""] {
        assert!(check_name(name).is_err(), "{name:?}");
    }
    assert!(check_name("q1.tables-2026").is_ok());
}

#[test]
fn export_list_needs_a_scenario_or_all_namespaces() {
    let Ok(Command::Export(e)) = parse(&["cleanroom", "export", "list", "-A", "-o", "yaml"]) else {
        panic!("expected export list");
    };
    let ExportCommand::List(l) = e.command else {
        panic!("expected list");
    };
    assert!(l.scope.all_namespaces && l.scope.scenario.is_none());
    assert_eq!(l.output.output, Output::Yaml);
    for args in [
        &["cleanroom", "export", "list"][..],
        &["cleanroom", "export", "list", "-A", "--scenario", "x"][..],
        &["cleanroom", "export", "show", "q1"][..],
        &["cleanroom", "export", "withdraw", "q1"][..],
    ] {
        assert_eq!(parse(args).expect_err("usage").exit_code(), 2, "{args:?}");
    }
    let said = withdrawn_message("q1", "census");
    assert!(said.contains("q1 in cr-census withdrawn") && said.contains("wipes its sealed copy"));
}

fn decision(args: &[&str]) -> (Decision, review::DecisionArgs) {
    let mut all = vec!["cleanroom", "review"];
    all.extend_from_slice(args);
    let Ok(Command::Review(r)) = parse(&all) else {
        panic!("expected review: {args:?}");
    };
    r.command.split()
}

#[test]
fn review_verbs_parse_and_reject_or_return_need_a_comment() {
    let (d, a) = decision(&[
        "approve",
        "q1",
        "--scenario",
        "census",
        "--file",
        "a.csv=fine",
        "--file",
        "/work/outbox/b.csv=round to 5",
    ]);
    assert_eq!(d, Decision::Approve);
    assert_eq!(
        (
            a.export.as_deref(),
            a.import.as_deref(),
            a.scenario.as_str()
        ),
        (Some("q1"), None, "census")
    );
    assert_eq!(a.files[1].name, "b.csv");
    assert_eq!(a.files[1].comment, "round to 5");
    assert!(review::check(d, &a).is_ok(), "approve needs no comment");
    for verb in ["reject", "return"] {
        let (d, a) = decision(&[verb, "q1", "--scenario", "census", "--comment", " "]);
        let e = review::check(d, &a).expect_err("blank comment");
        assert_eq!(exit_code(&e), 2);
        assert!(format!("{e:#}").contains(&format!("to {verb} an export")));
    }
    let (d, a) = decision(&["return", "q1", "--scenario", "census", "--comment", "why"]);
    assert_eq!(d, Decision::Return);
    assert!(review::check(d, &a).is_ok());
    assert!(parse_note("no-equals-sign").is_err());
    assert!(parse(&["cleanroom", "review", "approve", "q1"]).is_err());
    assert!(parse(&["cleanroom", "review", "recall", "q1", "--scenario", "s"]).is_err());
}

#[test]
fn a_review_is_named_after_its_export_and_reviewer_and_made_in_the_callers_name() {
    assert_eq!(slug("Carol@Bureau.example"), "carol-bureau-example");
    assert_eq!(
        slug("system:serviceaccount:x:y"),
        "system-serviceaccount-x-y"
    );
    assert_eq!(slug("@@"), "reviewer");
    assert_eq!(
        name_prefix("q1", "carol@bureau.example"),
        "q1-carol-bureau-example-"
    );
    let long = name_prefix(&"e".repeat(70), "carol");
    assert!(
        long.len() <= 58 && long.ends_with('-') && !long.ends_with("--"),
        "{long}"
    );
    let (d, a) = decision(&[
        "reject",
        "q1",
        "--scenario",
        "census",
        "--comment",
        "small cells",
    ]);
    let r = review::review(d, &a, "carol@bureau.example");
    assert_eq!(r.metadata.name, None);
    assert_eq!(
        r.metadata.generate_name.as_deref(),
        Some("q1-carol-bureau-example-")
    );
    assert_eq!(r.metadata.namespace.as_deref(), Some("cr-census"));
    assert_eq!(r.spec.reviewer, "carol@bureau.example");
    assert_eq!(r.spec.decision, Decision::Reject);
    assert_eq!(r.spec.comment, "small cells");
}

const EXPORT_YAML: &str = r#"
apiVersion: cleanroom.io/v1alpha1
kind: Export
metadata: {name: q1, namespace: cr-census, creationTimestamp: "2026-03-01T08:00:00Z"}
spec:
  requester: alice@acme.example
  files:
    - {path: by-district.csv, kind: Table, columns: {keys: [district], counts: [n]}}
    - {path: model.bin, kind: Model}
  context: households by district
  controls: no cell under 10
status:
  phase: Released
  message: approved by 2 reviewers
  scenario: census
  sealed:
    volume: pv-1
    manifestSha256: 1111111111111111111111111111111111111111111111111111111111111111
    sealedAt: "2026-03-01T08:01:00Z"
    files:
      - {name: by-district.csv, size: 2048, sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}
      - {name: model.bin, size: 10, sha256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb}
  scan:
    verdict: review
    policyVersion: "1"
    files:
      - {name: by-district.csv, verdict: pass}
      - {name: model.bin, verdict: review, checks: [model-needs-review]}
  approvalsRequired: 2
  approvals: 2
  reviews:
    - {name: q1-carol-x1, reviewer: carol@bureau.example, decision: Approve}
    - {name: q1-dan-x2, reviewer: dan@bureau.example, decision: Approve}
  released: {claim: cleanroom-release/release-acme, path: cr-census.q1, releasedAt: "2026-03-01T09:00:00Z"}
  wipe:
    volume: sealed
    claim: seal-u1
    bytes: 2058
    files: 2
    digest: cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc
    completedAt: "2026-03-01T09:01:00Z"
"#;

fn export_fixture() -> Export {
    serde_yaml::from_str(EXPORT_YAML).expect("fixture")
}

#[test]
fn show_prints_phase_files_hashes_verdicts_reviews_release_and_wipe() {
    let v = ExportView::from(&export_fixture());
    assert_eq!(v.scenario, "census");
    assert_eq!(v.approvals_text(), "2/2");
    let text = v.render(Output::Table).expect("table");
    for want in [
        "export/q1 in cr-census",
        "alice@acme.example",
        "Released",
        "approved by 2 reviewers",
        "approvals     2/2",
        "sha256 1111111111111111111111111111111111111111111111111111111111111111",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "model-needs-review",
        "Approve   carol@bureau.example (q1-carol-x1)",
        "cr-census.q1 on claim cleanroom-release/release-acme",
        "2058 bytes, 2 files",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    let row = text
        .lines()
        .find(|l| l.contains("by-district.csv"))
        .expect("row");
    assert!(
        row.contains("Table") && row.contains("2048") && row.contains("pass"),
        "{row}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&v.render(Output::Json).expect("json")).expect("parses");
    assert_eq!(
        j["sealed"]["manifestSha256"].as_str().map(str::len),
        Some(64)
    );
    assert_eq!(
        j["scan"]["files"][1]["checks"],
        json!(["model-needs-review"])
    );
    assert_eq!(j["released"]["path"], "cr-census.q1");
    assert_eq!(j["approvalsRequired"], 2);
}

#[test]
fn a_new_export_shows_dashes_and_the_list_has_one_line_each() {
    let mut e = export_fixture();
    e.status = None;
    let v = ExportView::from(&e);
    assert_eq!(v.scenario, "census", "from the namespace");
    assert_eq!(v.approvals_text(), "0/-");
    let text = v.render(Output::Table).expect("table");
    assert!(text.contains("reviews:      -"), "{text}");
    assert!(
        !text.contains("released:") && !text.contains("wiped:"),
        "{text}"
    );
    let both = [ExportView::from(&export_fixture()), v];
    let table = list_table(&both, Output::Table).expect("table");
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|h| h.starts_with("SCENARIO"))
    );
    let listed: serde_json::Value =
        serde_json::from_str(&list_table(&both, Output::Json).expect("json")).expect("parses");
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
}

fn rec(seq: u64, action: Action, actor: &str, uid: &str, after: serde_json::Value) -> Record {
    record(seq, "Export", uid, action, actor, after)
}

/// A ledger record about the airlock request `uid` of kind `kind` (named
/// `cr-census/<uid>`, of authorization acme), on day `seq` of March 2026.
pub(super) fn record(
    seq: u64,
    kind: &str,
    uid: &str,
    action: Action,
    actor: &str,
    after: serde_json::Value,
) -> Record {
    Record::new(
        Draft {
            actor: actor.into(),
            kind: kind.into(),
            name: format!("cr-census/{uid}"),
            uid: uid.into(),
            generation: Some(1),
            authorization: Some("acme".into()),
            action,
            reason: (action == Action::Failed).then(|| "seal did not finish".into()),
            before: None,
            after: Some(after),
            key: format!("k{seq}"),
        },
        seq,
        format!("2026-03-0{seq}T00:00:00Z").parse().expect("time"),
        GENESIS,
    )
}

fn exports(
    ledger: &[Record],
    since: Timestamp,
) -> std::collections::BTreeMap<String, Vec<AirlockLine>> {
    lines(ledger, since, Airlock::Export)
}

fn table_line(e: &AirlockLine) -> String {
    report_airlock::table_line(e, Airlock::Export)
}

#[test]
fn the_report_tells_each_export_from_its_ledger_records() {
    let m = "1111111111111111111111111111111111111111111111111111111111111111";
    let ledger = [
        rec(
            1,
            Action::Submitted,
            "alice",
            "q1",
            json!({"phase": "Submitted"}),
        ),
        rec(
            2,
            Action::Sealed,
            "cleanroom-operator",
            "q1",
            json!({"phase": "Sealed", "manifestSha256": m}),
        ),
        rec(
            3,
            Action::Checked,
            "cleanroom-operator",
            "q1",
            json!({"phase": "InReview", "scan": {"verdict": "review"}}),
        ),
        rec(
            4,
            Action::Reviewed,
            "carol",
            "q1",
            json!({"review": "r1", "decision": "Approve"}),
        ),
        rec(
            5,
            Action::Reviewed,
            "dan",
            "q1",
            json!({"review": "r2", "decision": "Reject"}),
        ),
        rec(
            6,
            Action::Wiped,
            "cleanroom-operator",
            "q1",
            json!({"bytes": 10}),
        ),
        rec(
            1,
            Action::Submitted,
            "bob",
            "old",
            json!({"phase": "Submitted"}),
        ),
        rec(
            2,
            Action::Failed,
            "cleanroom-operator",
            "f1",
            json!({"phase": "Failed"}),
        ),
    ];
    let since: Timestamp = "2026-03-02T00:00:00Z".parse().expect("time");
    let by = exports(&ledger, since);
    let lines = &by["acme"];
    assert_eq!(
        lines.len(),
        2,
        "the one with no record since is left out: {lines:?}"
    );
    let q1 = &lines[0];
    assert_eq!(q1.name, "cr-census/q1");
    assert_eq!(
        q1.requester.as_deref(),
        Some("alice"),
        "told from a record before the period"
    );
    assert_eq!(q1.manifest_sha256.as_deref(), Some(m));
    assert_eq!(q1.verdict.as_deref(), Some("review"));
    assert_eq!(q1.phase, "Rejected");
    assert!(q1.wiped);
    let decisions: Vec<(&str, &str)> = q1
        .reviews
        .iter()
        .map(|r| (r.reviewer.as_str(), r.decision.as_str()))
        .collect();
    assert_eq!(decisions, [("carol", "Approve"), ("dan", "Reject")]);
    assert_eq!(
        (lines[1].phase.as_str(), lines[1].failure.as_deref()),
        ("Failed", Some("seal did not finish"))
    );
    let line = table_line(q1);
    assert!(
        line.contains(
            "cr-census/q1 by alice: Rejected, verdict review, reviews carol Approve, dan Reject"
        ),
        "{line}"
    );

    let released = [
        rec(1, Action::Submitted, "alice", "q2", json!({})),
        rec(
            2,
            Action::Released,
            "cleanroom-operator",
            "q2",
            json!({"phase": "Released", "path": "cr-census.q2"}),
        ),
        rec(
            3,
            Action::Withdrawn,
            "unknown",
            "q2",
            json!({"phase": "Released"}),
        ),
    ];
    let q2 = &exports(&released, since)["acme"][0];
    assert_eq!(q2.phase, "Released", "a released product stays released");
    assert_eq!(q2.released_path.as_deref(), Some("cr-census.q2"));
}

#[test]
fn without_an_answer_from_the_api_server_the_caller_is_not_guessed() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let err = runtime.block_on(async {
        // Nothing listens on port 1.
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("uri"));
        let client = kube::Client::try_from(config).expect("client");
        super::common::caller(&client).await.expect_err("no server")
    });
    let text = format!("{err:#}");
    assert!(text.starts_with("cannot tell who you are"), "{text}");
}

#[test]
fn export_recall_needs_a_comment_and_makes_a_recall_review() {
    let args = [
        "cleanroom",
        "export",
        "recall",
        "q1",
        "--scenario",
        "census",
    ];
    assert!(parse(&args).is_err(), "a recall without --comment parsed");
    let mut with = args.to_vec();
    with.extend_from_slice(&["--comment", " "]);
    let Ok(Command::Export(e)) = parse(&with) else {
        panic!("expected export recall");
    };
    let ExportCommand::Recall(r) = e.command else {
        panic!("expected recall");
    };
    let a = review::DecisionArgs {
        export: Some(r.name),
        import: None,
        scenario: r.scenario,
        comment: r.comment,
        files: Vec::new(),
        output: r.output,
    };
    let e = review::check(Decision::Recall, &a).expect_err("blank comment");
    assert!(format!("{e:#}").contains("to recall an export"), "{e:#}");
    let made = review::review(Decision::Recall, &a, "carol@bureau.example");
    assert_eq!(made.spec.decision, Decision::Recall);
    assert_eq!(made.spec.reviewer, "carol@bureau.example");
    assert_eq!(made.metadata.namespace.as_deref(), Some("cr-census"));
}

#[test]
fn the_report_shows_a_recall_and_who_made_it() {
    let since = Timestamp::from_second(0).unwrap();
    let records = [
        rec(1, Action::Submitted, "alice", "q3", json!({})),
        rec(
            2,
            Action::Released,
            "cleanroom-operator",
            "q3",
            json!({"phase": "Released", "path": "cr-census.q3", "manifestSha256": "m3"}),
        ),
        rec(
            3,
            Action::Recalled,
            "dave",
            "q3",
            json!({"phase": "Recalled", "manifestSha256": "m3"}),
        ),
        rec(4, Action::Withdrawn, "unknown", "q3", json!({})),
    ];
    let q3 = &exports(&records, since)["acme"][0];
    assert_eq!(
        q3.phase, "Recalled",
        "a withdrawal after a recall hides nothing"
    );
    assert_eq!(q3.manifest_sha256.as_deref(), Some("m3"));
    assert!(
        table_line(q3).contains("reviews dave Recall"),
        "{}",
        table_line(q3)
    );
}
