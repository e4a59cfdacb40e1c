//! The CEL rules of the generated CRDs, evaluated client-side (kube's `cel`
//! feature, tests only) on the worked examples and on variations of them.
//! This checks what each rule means; whether a real API server accepts the
//! CRDs (cost budget, structural schema) is checked by the end-to-end suite.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::{Value, json};

use super::{Authorization, Dataset, Scenario};
use crate::fixtures;
use crate::rules::credit_code;

fn schema(crd: &CustomResourceDefinition) -> Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("CRD has a schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// Messages of the rules that fail, on create (`old` None) or update.
fn failures(crd: &CustomResourceDefinition, object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(crd), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("fixture parses")
}

fn dataset() -> Value {
    yaml(fixtures::DATASET_YAML)
}

fn authorization() -> Value {
    yaml(fixtures::AUTHORIZATION_YAML)
}

fn scenario() -> Value {
    yaml(fixtures::SCENARIO_YAML)
}

/// Exactly one rule fails and its message contains `needle`.
#[track_caller]
fn rejected(crd: &CustomResourceDefinition, object: &Value, old: Option<&Value>, needle: &str) {
    let failed = failures(crd, object, old);
    assert_eq!(
        failed.len(),
        1,
        "expected one failure containing {needle:?}, got {failed:#?}"
    );
    assert!(
        failed[0].contains(needle),
        "{:?} does not mention {needle:?}",
        failed[0]
    );
}

#[track_caller]
fn accepted(crd: &CustomResourceDefinition, object: &Value, old: Option<&Value>) {
    assert_eq!(failures(crd, object, old), Vec::<String>::new());
}

#[test]
fn the_worked_examples_pass_every_rule() {
    accepted(&Dataset::crd(), &dataset(), None);
    accepted(&Authorization::crd(), &authorization(), None);
    accepted(&Scenario::crd(), &scenario(), None);
    accepted(&Scenario::crd(), &scenario(), Some(&scenario()));
}

// Authorization.

#[test]
fn authorization_ending_before_it_starts_is_refused() {
    let mut a = authorization();
    a["spec"]["validUntil"] = json!("2024-12-31T00:00:00+08:00");
    rejected(
        &Authorization::crd(),
        &a,
        None,
        "validUntil must be after validFrom",
    );
}

#[test]
fn authorization_longer_than_three_years_is_refused() {
    let mut a = authorization();
    a["spec"]["validFrom"] = json!("2025-01-01T00:00:00Z");
    a["spec"]["validUntil"] = json!("2028-01-02T00:00:00Z"); // 1096 days
    accepted(&Authorization::crd(), &a, None);
    a["spec"]["validUntil"] = json!("2028-01-02T00:00:01Z");
    rejected(&Authorization::crd(), &a, None, "at most 3 years");
}

#[test]
fn authorization_suspended_or_revoked_needs_a_reason() {
    for state in ["Suspended", "Revoked"] {
        let mut a = authorization();
        a["spec"]["state"] = json!(state);
        rejected(
            &Authorization::crd(),
            &a,
            None,
            "requires a non-empty reason",
        );
        a["spec"]["reason"] = json!("   ");
        rejected(
            &Authorization::crd(),
            &a,
            None,
            "requires a non-empty reason",
        );
        a["spec"]["reason"] = json!("data leak reported on 2025-07-01");
        accepted(&Authorization::crd(), &a, None);
    }
}

#[test]
fn revoked_authorization_cannot_be_reactivated() {
    let mut revoked = authorization();
    revoked["spec"]["state"] = json!("Revoked");
    revoked["spec"]["reason"] = json!("agreement terminated");
    let mut active = revoked.clone();
    active["spec"]["state"] = json!("Active");
    rejected(
        &Authorization::crd(),
        &active,
        Some(&revoked),
        "Revoked is final",
    );
    let mut suspended = revoked.clone();
    suspended["spec"]["state"] = json!("Suspended");
    rejected(
        &Authorization::crd(),
        &suspended,
        Some(&revoked),
        "Revoked is final",
    );
    accepted(&Authorization::crd(), &revoked, Some(&revoked));
    // Suspension can be lifted.
    let mut was_suspended = revoked.clone();
    was_suspended["spec"]["state"] = json!("Suspended");
    accepted(
        &Authorization::crd(),
        &authorization(),
        Some(&was_suspended),
    );
}

#[test]
fn authorization_name_is_at_most_60_characters() {
    let mut a = authorization();
    a["metadata"]["name"] = json!("a".repeat(60));
    accepted(&Authorization::crd(), &a, None);
    a["metadata"]["name"] = json!("a".repeat(61));
    rejected(&Authorization::crd(), &a, None, "at most 60 characters");
    a["metadata"]["name"] = json!("acme.2025");
    rejected(&Authorization::crd(), &a, None, "no dots");
}

#[test]
fn authorization_quota_needs_positive_quantities() {
    for bad in ["lots", "0", "-1", "1.5.2", "8GB"] {
        let mut a = authorization();
        a["spec"]["quota"]["memory"] = json!(bad);
        rejected(
            &Authorization::crd(),
            &a,
            None,
            "positive Kubernetes quantity",
        );
    }
    for good in ["500m", "1", "1.5Gi", "1e3", "64Gi"] {
        let mut a = authorization();
        a["spec"]["quota"]["cpu"] = json!(good);
        accepted(&Authorization::crd(), &a, None);
    }
    // Whole numbers may be written as integers, as in a container's resources.
    let mut a = authorization();
    a["spec"]["quota"]["cpu"] = json!(2);
    accepted(&Authorization::crd(), &a, None);
    a["spec"]["quota"]["cpu"] = json!(0);
    rejected(
        &Authorization::crd(),
        &a,
        None,
        "positive Kubernetes quantity",
    );
}

#[test]
fn approved_images_are_pinned_by_digest_without_a_tag() {
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let with = |image: &str| {
        let mut a = authorization();
        a["spec"]["approvedImages"] = json!([{"image": image, "review": "AR-2026-001"}]);
        a
    };
    for image in [
        format!("acme/notebook@{digest}"),
        format!("notebook@{digest}"),
        format!("registry.example.com:5000/acme/ml/notebook@{digest}"),
    ] {
        accepted(&Authorization::crd(), &with(&image), None);
    }
    for image in [
        "acme/notebook:1.4".to_string(),
        format!("acme/notebook:1.4@{digest}"),
        format!(
            "acme/notebook@{}",
            digest.to_uppercase().replace("SHA256", "sha256")
        ),
        format!("acme/notebook@{}", &digest[..digest.len() - 1]),
        format!("acme/notebook@sha512:{}", &digest[7..]),
        format!("acme/notebook@{digest},evil/x@{digest}"),
    ] {
        rejected(
            &Authorization::crd(),
            &with(&image),
            None,
            "pinned by digest",
        );
    }
}

#[test]
fn mistyped_credit_code_is_refused_by_the_api_server() {
    let mut a = authorization();
    a["spec"]["operator"]["creditCode"] = json!("91350100M000100Y44");
    rejected(&Authorization::crd(), &a, None, "check character");
}

#[test]
fn credit_code_cel_rule_agrees_with_the_rust_check() {
    let crd = Authorization::crd();
    let valid = [
        "91350100M000100Y43",
        "91110000600037341L",
        "91110108551385082Q",
        "914403001922038216",
        "91310000MA1FL0QX8M",
    ];
    for code in valid {
        // Every value of the check character: exactly the right one passes.
        let first17 = &code[..17];
        for check in credit_code::ALPHABET.chars() {
            let candidate = format!("{first17}{check}");
            let mut a = authorization();
            a["spec"]["operator"]["creditCode"] = json!(candidate);
            let cel_ok = failures(&crd, &a, None).is_empty();
            let rust_ok = credit_code::validate(&candidate).is_ok();
            assert_eq!(cel_ok, rust_ok, "{candidate}");
        }
    }
}

// Scenario.

#[test]
fn scenario_cannot_move_to_another_authorization() {
    let old = scenario();
    let mut moved = old.clone();
    moved["spec"]["authorization"] = json!("another-authorization");
    rejected(
        &Scenario::crd(),
        &moved,
        Some(&old),
        "authorization is immutable",
    );
    accepted(&Scenario::crd(), &moved, None);
}

#[test]
fn scenario_purpose_cannot_be_blank() {
    let mut s = scenario();
    s["spec"]["purpose"] = json!("   ");
    rejected(&Scenario::crd(), &s, None, "purpose must say");
}

#[test]
fn scenario_suspension_needs_a_reason_and_revocation_is_final() {
    let mut s = scenario();
    s["spec"]["state"] = json!("Suspended");
    rejected(&Scenario::crd(), &s, None, "requires a non-empty reason");
    s["spec"]["reason"] = json!("rectification ordered");
    accepted(&Scenario::crd(), &s, None);
    let mut revoked = s.clone();
    revoked["spec"]["state"] = json!("Revoked");
    let mut reactivated = revoked.clone();
    reactivated["spec"]["state"] = json!("Active");
    rejected(
        &Scenario::crd(),
        &reactivated,
        Some(&revoked),
        "Revoked is final",
    );
}

#[test]
fn scenario_name_must_fit_the_namespace() {
    let mut s = scenario();
    s["metadata"]["name"] = json!("x".repeat(61));
    rejected(&Scenario::crd(), &s, None, "cr-<name>");
}

#[test]
fn sampling_takes_exactly_one_of_fraction_or_rows() {
    let crd = Scenario::crd();
    let with_sampling = |sampling: Value| {
        let mut s = scenario();
        s["spec"]["data"][0]["sampling"] = sampling;
        s
    };
    accepted(&crd, &with_sampling(json!({"rows": 1000, "seed": 7})), None);
    accepted(&crd, &with_sampling(json!({"fraction": 1.0})), None);
    rejected(
        &crd,
        &with_sampling(json!({"fraction": 0.5, "rows": 10})),
        None,
        "exactly one of fraction",
    );
    rejected(
        &crd,
        &with_sampling(json!({"seed": 1})),
        None,
        "exactly one of fraction",
    );
    rejected(
        &crd,
        &with_sampling(json!({"fraction": 0.0})),
        None,
        "greater than 0",
    );
    rejected(
        &crd,
        &with_sampling(json!({"fraction": 1.5})),
        None,
        "at most 1",
    );
}

#[test]
fn scenario_rule_must_name_a_requested_column() {
    let mut s = scenario();
    s["spec"]["data"][0]["rules"] = json!([{"column": "income", "rule": {"kind": "drop"}}]);
    rejected(&Scenario::crd(), &s, None, "must also be listed in columns");
}

#[test]
fn scenario_workspace_quantities_must_be_positive() {
    let mut s = scenario();
    s["spec"]["workspace"]["scratch"] = json!("0");
    rejected(&Scenario::crd(), &s, None, "positive Kubernetes quantity");
}

// Dataset and masking rules.

#[test]
fn dataset_column_names_are_unique() {
    let mut d = dataset();
    let first = d["spec"]["columns"][0].clone();
    d["spec"]["columns"]
        .as_array_mut()
        .expect("columns")
        .push(first);
    rejected(&Dataset::crd(), &d, None, "column names must be unique");
}

#[test]
fn dataset_personal_column_cannot_default_to_keep() {
    let mut d = dataset();
    d["spec"]["columns"][1]["rule"] = json!({"kind": "keep"});
    rejected(&Dataset::crd(), &d, None, "never delivered in clear");
    // A quasi-identifier may.
    let mut d = dataset();
    d["spec"]["columns"][3]["rule"] = json!({"kind": "keep"});
    accepted(&Dataset::crd(), &d, None);
}

#[test]
fn dataset_source_path_stays_inside_the_claim() {
    for bad in ["/etc/passwd", "../other", "a/../../b", "a/.."] {
        let mut d = dataset();
        d["spec"]["source"]["path"] = json!(bad);
        rejected(
            &Dataset::crd(),
            &d,
            None,
            "relative to the root of the claim",
        );
    }
    let mut d = dataset();
    d["spec"]["source"]["path"] = json!("population/2024..v2.csv");
    accepted(&Dataset::crd(), &d, None);
}

#[test]
fn masking_rule_parameters_belong_to_their_kind() {
    let cases = [
        (
            json!({"kind": "hash", "with": "x"}),
            "with is only used by kind redact",
        ),
        (
            json!({"kind": "redact", "keepFirst": 1}),
            "keepFirst and keepLast are only used by kind mask",
        ),
        (json!({"kind": "generalize"}), "exactly one of bucket"),
        (
            json!({"kind": "generalize", "bucket": 10, "prefix": 2}),
            "exactly one of bucket",
        ),
        (
            json!({"kind": "mask", "prefix": 2}),
            "only used by kind generalize",
        ),
        (json!({"kind": "noise"}), "kind noise needs bound"),
        (
            json!({"kind": "hash", "bound": 1.0}),
            "kind noise needs bound",
        ),
        (
            json!({"kind": "noise", "bound": -1.0}),
            "bound must be greater than 0",
        ),
    ];
    for (rule, needle) in cases {
        let mut d = dataset();
        // column 0 is a string ResidentId; only the rule's own checks may fail.
        d["spec"]["columns"][0]["rule"] = rule.clone();
        let failed = failures(&Dataset::crd(), &d, None);
        assert!(
            failed.iter().any(|f| f.contains(needle)),
            "{rule}: {failed:#?}"
        );
    }
}

#[test]
fn masking_rule_type_fit_in_cel_agrees_with_rust() {
    use super::{ColumnType, MaskingRule};
    let rules = [
        json!({"kind": "keep"}),
        json!({"kind": "mask", "keepFirst": 1}),
        json!({"kind": "generalize", "bucket": 10}),
        json!({"kind": "generalize", "truncate": "year"}),
        json!({"kind": "generalize", "prefix": 3}),
        json!({"kind": "noise", "bound": 2.5}),
        json!({"kind": "hash"}),
        json!({"kind": "redact"}),
        json!({"kind": "drop"}),
    ];
    let types = [
        ("string", ColumnType::String),
        ("integer", ColumnType::Integer),
        ("decimal", ColumnType::Decimal),
        ("date", ColumnType::Date),
        ("datetime", ColumnType::Datetime),
        ("boolean", ColumnType::Boolean),
    ];
    for rule in &rules {
        let parsed: MaskingRule = serde_json::from_value(rule.clone()).expect("rule parses");
        for (type_name, column_type) in types {
            let mut d = dataset();
            d["spec"]["columns"] = json!([{
                "name": "c", "type": type_name, "sensitivity": "None", "rule": rule,
            }]);
            let cel_ok = failures(&Dataset::crd(), &d, None).is_empty();
            assert_eq!(
                cel_ok,
                parsed.applies_to(column_type),
                "{rule} on {type_name}"
            );
        }
    }
}

#[test]
fn scenario_data_is_fixed_once_approved() {
    let old = scenario();
    assert!(old["spec"]["data"].is_array(), "the fixture requests data");
    let mut more_columns = old.clone();
    more_columns["spec"]["data"][0]["columns"]
        .as_array_mut()
        .expect("columns")
        .push(json!("income"));
    rejected(&Scenario::crd(), &more_columns, Some(&old), "data is fixed");
    let mut without = old.clone();
    without["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("data");
    rejected(&Scenario::crd(), &without, Some(&old), "data is fixed");
    rejected(&Scenario::crd(), &old, Some(&without), "data is fixed");
    // Everything else may still change: a suspension, say.
    let mut suspended = old.clone();
    suspended["spec"]["state"] = json!("Suspended");
    suspended["spec"]["reason"] = json!("inspection");
    accepted(&Scenario::crd(), &suspended, Some(&old));
}

fn review(subject: Value, decision: &str) -> Value {
    let mut spec = json!({"reviewer": "carol", "decision": decision, "comment": "why"});
    for (k, v) in subject.as_object().expect("subject is an object") {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "cleanroom.io/v1alpha1", "kind": "Review",
        "metadata": {"name": "r", "namespace": "cr-x"}, "spec": spec})
}

#[test]
fn a_review_names_one_export_or_one_import() {
    let crd = super::Review::crd();
    accepted(&crd, &review(json!({"export": "e"}), "Approve"), None);
    accepted(&crd, &review(json!({"import": "i"}), "Reject"), None);
    let both = review(json!({"export": "e", "import": "i"}), "Approve");
    rejected(&crd, &both, None, "one export or one import");
    rejected(
        &crd,
        &review(json!({}), "Approve"),
        None,
        "one export or one import",
    );
    let recall = review(json!({"import": "i"}), "Recall");
    rejected(&crd, &recall, None, "an import is not recalled");
    accepted(&crd, &review(json!({"export": "e"}), "Recall"), None);
}

fn import() -> Value {
    json!({"apiVersion": "cleanroom.io/v1alpha1", "kind": "Import",
        "metadata": {"name": "weather", "namespace": "cr-x"},
        "spec": {
            "requester": "alice", "supplier": "Met Office",
            "legalBasis": {"kind": "Contract", "reference": "C-2026-17"},
            "stagingClaim": "weather-2026",
            "files": [{"path": "daily.csv", "schema": [
                {"name": "day", "type": "date"}, {"name": "rain_mm", "type": "decimal"}]}],
            "purpose": "rainfall beside the care visits"}})
}

#[test]
fn an_import_is_fixed_once_submitted_and_names_each_file_once() {
    let crd = super::Import::crd();
    let old = import();
    accepted(&crd, &old, None);
    let mut changed = old.clone();
    changed["spec"]["supplier"] = json!("someone else");
    rejected(&crd, &changed, Some(&old), "cannot change once submitted");
    let mut twice = import();
    let file = twice["spec"]["files"][0].clone();
    twice["spec"]["files"] = json!([file.clone(), file]);
    rejected(&crd, &twice, None, "each file may be named once");
}
