//! The import verbs: argument parsing, the checks made before sending, the
//! Import built from the arguments, and what show and list print.

use clap::Parser;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::airlock_view::{ImportView, list_table};
use super::common::Output;
use super::import::{ImportCommand, withdrawn_message};
use super::import_spec::{ImportRequest, parse_file, parse_legal_basis, parse_type};
use super::report;
use super::report_airlock::{Airlock, lines, table_line};
use super::review;
use super::tests_airlock::record;
use super::*;
use crate::api::Import;
use crate::api::airlock::Decision;
use crate::api::dataset::ColumnType;
use crate::api::import::LegalBasisKind;
use crate::audit::{Action, Record};

fn parse(args: &[&str]) -> Result<Command, clap::Error> {
    Cli::try_parse_from(args).map(|c| c.command)
}

const BASE: [&str; 13] = [
    "cleanroom",
    "import",
    "create",
    "care-homes",
    "--scenario",
    "census",
    "--supplier",
    "Civil Affairs Bureau",
    "--legal-basis",
    "contract:NCAB-2026-014",
    "--staging-claim",
    "care-homes-q1",
    "--purpose",
];

fn create(extra: &[&str]) -> Result<super::import::CreateArgs, clap::Error> {
    let mut args = BASE.to_vec();
    args.push("bed capacity by district");
    args.extend_from_slice(extra);
    match parse(&args)? {
        Command::Import(i) => match i.command {
            ImportCommand::Create(c) => Ok(c),
            other => panic!("expected create, got {other:?}"),
        },
        other => panic!("expected import, got {other:?}"),
    }
}

#[test]
fn import_create_parses_files_with_declared_schemas_and_the_legal_basis() {
    let c = create(&[
        "--file",
        "2026/care-homes.csv:home_id=string, district=String,beds=integer,opened=date",
        "--file",
        "methodology.pdf",
        "-o",
        "yaml",
    ])
    .expect("parses");
    assert_eq!(c.supplier, "Civil Affairs Bureau");
    assert_eq!(c.legal_basis.kind, LegalBasisKind::Contract);
    assert_eq!(c.legal_basis.reference, "NCAB-2026-014");
    assert_eq!(c.staging_claim, "care-homes-q1");
    assert_eq!(c.files.len(), 2);
    assert_eq!(c.files[0].path, "2026/care-homes.csv");
    let schema: Vec<(&str, ColumnType)> = c.files[0]
        .schema
        .iter()
        .map(|d| (d.name.as_str(), d.type_))
        .collect();
    assert_eq!(
        schema,
        [
            ("home_id", ColumnType::String),
            ("district", ColumnType::String),
            ("beds", ColumnType::Integer),
            ("opened", ColumnType::Date),
        ]
    );
    assert_eq!(c.files[1].path, "methodology.pdf");
    assert!(
        c.files[1].schema.is_empty(),
        "a document declares no columns"
    );
    assert_eq!(c.output.output, Output::Yaml);

    let consent = parse_legal_basis("Consent: survey-2025/form-7").expect("consent");
    assert_eq!(consent.kind, LegalBasisKind::Consent);
    assert_eq!(consent.reference, "survey-2025/form-7");
    for t in ["decimal", "DATETIME", "Boolean"] {
        assert!(parse_type(t).is_ok(), "{t}");
    }
}

#[test]
fn bad_import_arguments_are_usage_errors_that_say_what_is_wrong() {
    for (flag, bad, said) in [
        ("--file", "/staging/a.csv", "relative to the staging claim"),
        ("--file", "../a.csv", "no '..'"),
        ("--file", "a/.hidden.csv", "no hidden parts"),
        ("--file", "a.csv:", "an empty schema"),
        ("--file", "a.csv:id", "a column is NAME=TYPE"),
        ("--file", "a.csv:id=uuid", "unknown column type \"uuid\""),
        (
            "--file",
            "a.csv:id=string,id=integer",
            "\"id\" is declared twice",
        ),
        ("--file", "a.csv:=string", "1 to 253 characters"),
        ("--file", "a.csv:a=string,", "a column is NAME=TYPE"),
        ("--legal-basis", "license:X", "contract:REFERENCE"),
        ("--legal-basis", "contract", "contract:REFERENCE"),
        ("--legal-basis", "consent: ", "the reference is 1 to 253"),
        ("--staging-claim", "Care_Homes", "not a claim's name"),
        ("--staging-claim", "care-homes-", "not a claim's name"),
    ] {
        // A flag of BASE is given its bad value in place of the good one.
        let mut args = BASE.to_vec();
        args.push("p");
        match args.iter().position(|a| *a == flag) {
            Some(i) => args[i + 1] = bad,
            None => args.extend_from_slice(&[flag, bad]),
        }
        if flag != "--file" {
            args.extend_from_slice(&["--file", "a.csv"]);
        }
        let e = parse(&args).expect_err(bad);
        assert_eq!(e.exit_code(), 2, "{bad}");
        assert!(e.to_string().contains(said), "{bad}: {e}");
    }
    let none = create(&[]).expect_err("at least one --file");
    assert_eq!(none.exit_code(), 2);
    let no_basis: Vec<&str> = BASE
        .iter()
        .copied()
        .filter(|a| !a.starts_with("--legal-basis") && !a.starts_with("contract:"))
        .chain(["p", "--file", "a.csv"])
        .collect();
    assert_eq!(parse(&no_basis).expect_err("no basis").exit_code(), 2);
    assert!(parse_file("a.csv:n=integer").is_ok());
}

#[test]
fn the_import_is_built_from_the_arguments_in_the_callers_name() {
    let c = create(&["--file", "a.csv:id=string,n=integer", "--file", "b.pdf"]).expect("parses");
    let r = ImportRequest::from_args(&c).expect("valid");
    let i = r.import("alice@acme.example");
    assert_eq!(i.metadata.name.as_deref(), Some("care-homes"));
    assert_eq!(i.metadata.namespace.as_deref(), Some("cr-census"));
    assert_eq!(i.spec.requester, "alice@acme.example");
    assert_eq!(i.spec.supplier, "Civil Affairs Bureau");
    assert_eq!(i.spec.legal_basis, c.legal_basis);
    assert_eq!(i.spec.staging_claim, "care-homes-q1");
    assert_eq!(i.spec.files, c.files);
    assert_eq!(i.spec.purpose, "bed capacity by district");
    let json = serde_json::to_value(&i).expect("json");
    assert_eq!(json["spec"]["legalBasis"]["kind"], "Contract");
    assert_eq!(json["spec"]["files"][0]["schema"][1]["type"], "integer");
    assert!(json["spec"]["files"][1].get("schema").is_none(), "{json}");

    let twice = create(&["--file", "a.csv", "--file", "a.csv:x=string"]).expect("parses");
    let e = ImportRequest::from_args(&twice).expect_err("named twice");
    assert_eq!(exit_code(&e), 2);
    assert!(format!("{e:#}").contains("a.csv is named twice"), "{e:#}");
    for (bad, said) in [
        (
            ImportRequest {
                purpose: " ".into(),
                ..r.clone()
            },
            "--purpose must say something",
        ),
        (
            ImportRequest {
                supplier: String::new(),
                ..r.clone()
            },
            "--supplier must say something",
        ),
        (
            ImportRequest {
                supplier: "s".repeat(254),
                ..r.clone()
            },
            "--supplier is 254 characters; at most 253",
        ),
        (
            ImportRequest {
                files: vec![r.files[0].clone(); 33],
                ..r.clone()
            },
            "an import names 1 to 32 files, not 33",
        ),
        (
            ImportRequest {
                name: "Care_Homes".into(),
                ..r.clone()
            },
            "not a valid name",
        ),
    ] {
        let e = bad.check().expect_err(said);
        assert_eq!(exit_code(&e), 2, "{said}");
        assert!(format!("{e:#}").contains(said), "{said}: {e:#}");
    }
}

#[test]
fn import_list_show_and_withdraw_parse_like_the_export_verbs() {
    let Ok(Command::Import(i)) = parse(&["cleanroom", "import", "list", "-A", "-o", "json"]) else {
        panic!("expected import list");
    };
    let ImportCommand::List(l) = i.command else {
        panic!("expected list");
    };
    assert!(l.scope.all_namespaces && l.scope.scenario.is_none());
    assert_eq!(l.output.output, Output::Json);
    let Ok(Command::Import(i)) = parse(&["cleanroom", "import", "show", "x", "--scenario", "s"])
    else {
        panic!("expected import show");
    };
    let ImportCommand::Show(s) = i.command else {
        panic!("expected show");
    };
    assert_eq!((s.name.as_str(), s.scenario.as_str()), ("x", "s"));
    for args in [
        &["cleanroom", "import", "list"][..],
        &["cleanroom", "import", "list", "-A", "--scenario", "x"][..],
        &["cleanroom", "import", "show", "x"][..],
        &["cleanroom", "import", "withdraw", "x"][..],
        &["cleanroom", "import", "recall", "x", "--scenario", "s"][..],
    ] {
        assert_eq!(parse(args).expect_err("usage").exit_code(), 2, "{args:?}");
    }
    let said = withdrawn_message("care-homes", "census");
    assert!(
        said.contains("care-homes in cr-census withdrawn")
            && said.contains("/imports/care-homes")
            && said.contains("records the wipe"),
        "{said}"
    );
}

const IMPORT_YAML: &str = r#"
apiVersion: cleanroom.io/v1alpha1
kind: Import
metadata: {name: care-homes, namespace: cr-census, creationTimestamp: "2026-03-01T08:00:00Z"}
spec:
  requester: alice@acme.example
  supplier: Civil Affairs Bureau
  legalBasis: {kind: Contract, reference: NCAB-2026-014}
  stagingClaim: care-homes-q1
  files:
    - path: care-homes.csv
      schema:
        - {name: home_id, type: string}
        - {name: beds, type: integer}
    - {path: methodology.pdf}
  purpose: bed capacity by district
status:
  phase: Released
  message: mounted read-only
  scenario: census
  sealed:
    volume: pv-2
    manifestSha256: 2222222222222222222222222222222222222222222222222222222222222222
    sealedAt: "2026-03-01T08:01:00Z"
    files:
      - {name: care-homes.csv, size: 4096, sha256: dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd}
      - {name: methodology.pdf, size: 99, sha256: eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee}
  scan:
    verdict: pass
    policyVersion: "1"
    files:
      - {name: care-homes.csv, verdict: pass, checks: [schema-matches]}
      - {name: methodology.pdf, verdict: pass}
  approvalsRequired: 1
  approvals: 1
  reviews:
    - {name: care-homes-carol-x1, reviewer: carol@bureau.example, decision: Approve}
  released: {claim: cr-census/import-care-homes, path: /imports/care-homes, releasedAt: "2026-03-01T09:00:00Z"}
"#;

fn import_fixture() -> Import {
    serde_yaml::from_str(IMPORT_YAML).expect("fixture")
}

#[test]
fn import_show_prints_supplier_basis_schemas_hashes_checks_reviews_and_mount() {
    let v = ImportView::from(&import_fixture());
    assert_eq!(v.scenario, "census");
    assert_eq!(v.approvals_text(), "1/1");
    let text = v.render(Output::Table).expect("table");
    for want in [
        "import/care-homes in cr-census",
        "requester     alice@acme.example",
        "supplier      Civil Affairs Bureau",
        "legal basis   Contract NCAB-2026-014",
        "staging claim care-homes-q1",
        "purpose       bed capacity by district",
        "phase         Released",
        "sha256 2222222222222222222222222222222222222222222222222222222222222222",
        "PATH                        SCHEMA",
        "      home_id string, beds integer",
        "schema-matches",
        "Approve   carol@bureau.example (care-homes-carol-x1)",
        "mounted:      /imports/care-homes from claim cr-census/import-care-homes",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    let row = |path: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(path))
            .unwrap_or_else(|| panic!("{path} not in\n{text}"))
            .to_string()
    };
    let csv = row("care-homes.csv");
    assert!(
        csv.contains("2 columns") && csv.contains("4096") && csv.contains("dddd"),
        "{csv}"
    );
    assert!(row("methodology.pdf").contains("document"));
    assert!(!text.contains("wiped:"), "{text}");

    let j: serde_json::Value =
        serde_json::from_str(&v.render(Output::Json).expect("json")).expect("parses");
    assert_eq!(j["supplier"], "Civil Affairs Bureau");
    assert_eq!(j["legalBasis"]["reference"], "NCAB-2026-014");
    assert_eq!(j["stagingClaim"], "care-homes-q1");
    assert_eq!(j["files"][0]["schema"][1]["type"], "integer");
    assert_eq!(j["released"]["path"], "/imports/care-homes");
    assert!(j.get("context").is_none(), "an import has no context: {j}");

    let mut new = import_fixture();
    new.status = None;
    let both = [v, ImportView::from(&new)];
    let table = list_table(&both, Output::Table).expect("table");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].ends_with("FILES SUPPLIER"), "{table}");
    assert!(
        lines[1].contains("Released") && lines[1].ends_with("2     Civil Affairs Bureau"),
        "{table}"
    );
    assert!(lines[2].contains("0/-"), "{table}");
}

fn decision(args: &[&str]) -> Result<(Decision, review::DecisionArgs), clap::Error> {
    let mut all = vec!["cleanroom", "review"];
    all.extend_from_slice(args);
    match parse(&all)? {
        Command::Review(r) => Ok(r.command.split()),
        other => panic!("expected review, got {other:?}"),
    }
}

#[test]
fn review_import_makes_a_review_of_the_import_and_not_of_an_export() {
    let (d, a) = decision(&[
        "approve",
        "--import",
        "care-homes",
        "--scenario",
        "census",
        "--comment",
        "contract checked",
        "--file",
        "care-homes.csv=schema as declared",
    ])
    .expect("parses");
    assert_eq!(d, Decision::Approve);
    assert_eq!(a.subject(), Some(("import", "care-homes")));
    assert!(review::check(d, &a).is_ok());
    let r = review::review(d, &a, "carol@bureau.example");
    assert_eq!(r.spec.import.as_deref(), Some("care-homes"));
    assert_eq!(r.spec.export, None);
    assert_eq!(
        r.spec.subject(),
        Some(crate::api::airlock::Subject::Import("care-homes"))
    );
    assert_eq!(
        r.metadata.generate_name.as_deref(),
        Some("care-homes-carol-bureau-example-")
    );
    assert_eq!(r.metadata.namespace.as_deref(), Some("cr-census"));
    assert_eq!(r.spec.files[0].name, "care-homes.csv");

    let made = review::Made::from(&r);
    let text = made.render(Output::Table).expect("table");
    assert!(
        text.contains("Approve import care-homes by carol"),
        "{text}"
    );
    let j = serde_json::to_value(&made).expect("json");
    assert_eq!(j["import"], "care-homes");
    assert!(j.get("export").is_none(), "{j}");

    // The export stays positional, and one of the two must be named.
    let (_, e) = decision(&["approve", "q1", "--scenario", "census"]).expect("parses");
    assert_eq!(e.subject(), Some(("export", "q1")));
    let r = review::review(Decision::Approve, &e, "carol");
    assert_eq!(
        (r.spec.export.as_deref(), r.spec.import.as_deref()),
        (Some("q1"), None)
    );
    for args in [
        &[
            "approve",
            "q1",
            "--import",
            "care-homes",
            "--scenario",
            "census",
        ][..],
        &["approve", "--scenario", "census"][..],
        &["approve", "--import", "--scenario", "census"][..],
    ] {
        let e = decision(args).expect_err("one of export or import");
        assert_eq!(e.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn an_import_needs_a_comment_to_be_rejected_and_is_never_recalled() {
    let (d, a) =
        decision(&["reject", "--import", "care-homes", "--scenario", "census"]).expect("parses");
    let e = review::check(d, &a).expect_err("no comment");
    assert_eq!(exit_code(&e), 2);
    assert!(
        format!("{e:#}").contains("to reject an import, --comment must say why"),
        "{e:#}"
    );
    let recall = review::DecisionArgs {
        comment: "superseded".into(),
        ..a
    };
    let e = review::check(Decision::Recall, &recall).expect_err("recall of an import");
    assert_eq!(exit_code(&e), 2);
    assert!(
        format!("{e:#}").contains("an import is not recalled"),
        "{e:#}"
    );
    let neither = review::DecisionArgs {
        import: None,
        ..recall
    };
    let e = review::check(Decision::Approve, &neither).expect_err("nothing named");
    assert_eq!(exit_code(&e), 2);
}

const M: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const OPERATOR: &str = "cleanroom-operator";

/// An import handed into the workspace, one withdrawn after it was, and an
/// export beside them.
fn ledger() -> Vec<Record> {
    let imp = |seq, uid, action, actor, after| record(seq, "Import", uid, action, actor, after);
    vec![
        imp(
            1,
            "care-homes",
            Action::Submitted,
            "alice",
            json!({
                "phase": "Submitted",
                "supplier": "Civil Affairs Bureau",
                "legalBasis": {"kind": "Contract", "reference": "NCAB-2026-014"},
                "files": [{"path": "care-homes.csv", "schema": [{"name": "beds", "type": "integer"}]}],
                "purpose": "bed capacity by district",
            }),
        ),
        record(2, "Export", "q1", Action::Submitted, "bob", json!({})),
        imp(
            2,
            "care-homes",
            Action::Sealed,
            OPERATOR,
            json!({"phase": "Sealed", "manifestSha256": M}),
        ),
        imp(
            3,
            "care-homes",
            Action::Checked,
            OPERATOR,
            json!({"phase": "InReview", "scan": {"verdict": "pass"}}),
        ),
        imp(
            4,
            "care-homes",
            Action::Reviewed,
            "carol",
            json!({"review": "r1", "decision": "Approve"}),
        ),
        imp(
            5,
            "care-homes",
            Action::Released,
            OPERATOR,
            json!({
                "phase": "Released",
                "manifestSha256": M,
                "claim": "cr-census/import-care-homes",
                "path": "/imports/care-homes",
            }),
        ),
        imp(
            3,
            "survey",
            Action::Submitted,
            "bob",
            json!({
                "phase": "Submitted",
                "supplier": "Pollster Ltd",
                "legalBasis": {"kind": "Consent", "reference": "form-7"},
                "files": [{"path": "answers.csv"}],
                "purpose": "attitudes to home care",
            }),
        ),
        imp(
            6,
            "survey",
            Action::Released,
            OPERATOR,
            json!({"phase": "Released", "path": "/imports/survey"}),
        ),
        imp(
            7,
            "survey",
            Action::Withdrawn,
            "bob",
            json!({"phase": "Released"}),
        ),
        imp(8, "survey", Action::Wiped, OPERATOR, json!({"bytes": 10})),
    ]
}

#[test]
fn the_report_tells_each_import_from_its_ledger_records() {
    let since: Timestamp = "2026-03-01T00:00:00Z".parse().expect("time");
    let ledger = ledger();
    let by = lines(&ledger, since, Airlock::Import);
    let imports = &by["acme"];
    assert_eq!(imports.len(), 2, "the export is not an import: {imports:?}");
    let homes = &imports[0];
    assert_eq!(homes.name, "cr-census/care-homes");
    assert_eq!(homes.requester.as_deref(), Some("alice"));
    assert_eq!(homes.supplier.as_deref(), Some("Civil Affairs Bureau"));
    let basis = homes.legal_basis.as_ref().expect("legal basis");
    assert_eq!(
        (basis.kind, basis.reference.as_str()),
        (LegalBasisKind::Contract, "NCAB-2026-014")
    );
    assert_eq!(homes.verdict.as_deref(), Some("pass"));
    assert_eq!(homes.manifest_sha256.as_deref(), Some(M));
    assert_eq!(homes.phase, "Released");
    assert_eq!(homes.released_path.as_deref(), Some("/imports/care-homes"));
    assert_eq!(homes.reviews.len(), 1);
    assert_eq!(
        (
            homes.reviews[0].reviewer.as_str(),
            homes.reviews[0].decision.as_str()
        ),
        ("carol", "Approve")
    );
    assert!(!homes.wiped);
    let line = table_line(homes, Airlock::Import);
    assert_eq!(
        line,
        format!(
            "    cr-census/care-homes by alice from Civil Affairs Bureau (Contract NCAB-2026-014): \
             Released, verdict pass, reviews carol Approve, manifest {M}, mounted at /imports/care-homes"
        )
    );

    let survey = &imports[1];
    assert_eq!(
        survey.phase, "Withdrawn",
        "withdrawing a mounted import takes it out of the workspace"
    );
    assert!(survey.wiped);
    assert_eq!(survey.released_path.as_deref(), Some("/imports/survey"));
    let line = table_line(survey, Airlock::Import);
    assert!(
        line.contains("from Pollster Ltd (Consent form-7): Withdrawn")
            && line.ends_with("mounted at /imports/survey, copy wiped"),
        "{line}"
    );

    let exports = lines(&ledger, since, Airlock::Export);
    assert_eq!(exports["acme"].len(), 1);
    assert_eq!(exports["acme"][0].supplier, None);
}

#[test]
fn the_report_lists_imports_beside_exports_per_authorization() {
    let since: Timestamp = "2026-03-01T00:00:00Z".parse().expect("time");
    let now: Timestamp = "2026-04-01T00:00:00Z".parse().expect("time");
    let r = report::build(since, now, &[], &[], &ledger(), true);
    let acme = &r.authorizations[0];
    assert_eq!(
        (acme.name.as_str(), acme.phase.as_str()),
        ("acme", "Deleted")
    );
    assert_eq!((acme.exports.len(), acme.imports.len()), (1, 2));
    assert_eq!(acme.wipes, 1);
    let text = r.table();
    for want in [
        "  exports:      1\n    cr-census/q1 by bob: Submitted",
        "  imports:      2\n    cr-census/care-homes by alice from Civil Affairs Bureau",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    let j = serde_json::to_value(&r).expect("json");
    let homes = &j["authorizations"][0]["imports"][0];
    assert_eq!(homes["legalBasis"]["kind"], "Contract");
    assert_eq!(homes["supplier"], "Civil Affairs Bureau");
    assert_eq!(homes["releasedPath"], "/imports/care-homes");
    assert_eq!(homes["manifestSha256"], M);
    let q1 = &j["authorizations"][0]["exports"][0];
    assert!(
        q1.get("supplier").is_none() && q1.get("legalBasis").is_none(),
        "an export's line is as before: {q1}"
    );
}
