//! Argument parsing, renewal rules and render output.

use clap::CommandFactory;
use k8s_openapi::jiff::Timestamp;

use super::common::{EXIT_FORBIDDEN, EXIT_NOT_FOUND, Exit, Output, Target};
use super::render::{Documents, PLACEHOLDER_UID, to_yaml};
use super::*;
use crate::api::{Authorization, State, Time};
use crate::fixtures::{AUTHORIZATION_YAML, DATASET_YAML, SCENARIO_YAML};
use crate::workspace::{self, Identity};

fn parse(args: &[&str]) -> Result<Command, clap::Error> {
    Cli::try_parse_from(args).map(|c| c.command)
}

fn at(s: &str) -> Timestamp {
    s.parse().expect("time")
}

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn crd_subcommand_parses_out_dir() {
    let Ok(Command::Crd(args)) = parse(&["cleanroom", "crd", "--out-dir", "crds"]) else {
        panic!("expected the crd subcommand");
    };
    assert_eq!(args.out_dir.as_deref(), Some(std::path::Path::new("crds")));
}

#[test]
fn suspend_needs_a_reason_and_targets_a_scenario_by_default() {
    let Ok(Command::Suspend(a)) = parse(&["cleanroom", "suspend", "census", "--reason", "audit"])
    else {
        panic!("expected suspend");
    };
    assert_eq!(
        a.target,
        Target {
            name: "census".into(),
            authorization: false
        }
    );
    assert_eq!(a.reason, "audit");
    assert_eq!(a.output.output, Output::Table);
    let missing = parse(&["cleanroom", "suspend", "census"]).expect_err("reason is required");
    assert_eq!(missing.exit_code(), 2);
}

#[test]
fn authorization_flag_and_output_formats_parse() {
    let Ok(Command::Revoke(a)) = parse(&[
        "cleanroom",
        "revoke",
        "acme",
        "--authorization",
        "--reason",
        "ended",
        "-o",
        "yaml",
    ]) else {
        panic!("expected revoke");
    };
    assert!(a.target.authorization);
    assert_eq!(a.target.kind(), "authorization");
    assert_eq!(a.output.output, Output::Yaml);
    let Ok(Command::Status(s)) = parse(&["cleanroom", "status", "x", "--output", "json"]) else {
        panic!("expected status");
    };
    assert_eq!(s.output.output, Output::Json);
    assert!(parse(&["cleanroom", "status", "x", "-o", "xml"]).is_err());
    assert!(matches!(
        parse(&["cleanroom", "resume", "x"]),
        Ok(Command::Resume(_))
    ));
}

#[test]
fn renew_parses_an_rfc3339_instant_and_refuses_anything_else() {
    let Ok(Command::Renew(r)) = parse(&[
        "cleanroom",
        "renew",
        "acme",
        "--until",
        "2027-06-30T00:00:00+08:00",
    ]) else {
        panic!("expected renew");
    };
    assert_eq!(r.authorization, "acme");
    assert_eq!(r.until, at("2027-06-29T16:00:00Z"));
    let bad = parse(&["cleanroom", "renew", "acme", "--until", "next year"]).expect_err("bad time");
    assert_eq!(bad.exit_code(), 2);
}

#[test]
fn run_takes_metrics_and_leader_election_flags() {
    let Ok(Command::Run(r)) = parse(&[
        "cleanroom",
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--leader-elect",
        "--identity",
        "a",
        "--lease-namespace",
        "ops",
    ]) else {
        panic!("expected run");
    };
    assert_eq!(r.metrics_addr.port(), 0);
    assert!(r.leader_elect);
    assert_eq!(r.identity.as_deref(), Some("a"));
    assert_eq!(r.lease_namespace, "ops");
    assert_eq!(r.lease_name, "cleanroom-operator");
}

#[test]
fn errors_map_to_their_exit_codes() {
    assert_eq!(exit_code(&Exit::not_found("x")), EXIT_NOT_FOUND);
    assert_eq!(exit_code(&Exit::forbidden("x")), EXIT_FORBIDDEN);
    // Context added on top keeps the code.
    assert_eq!(
        exit_code(&Exit::forbidden("x").context("renewing")),
        EXIT_FORBIDDEN
    );
    assert_eq!(exit_code(&anyhow::anyhow!("boom")), 1);
}

fn authorization(from: &str, until: &str, state: State) -> Authorization {
    let mut a: Authorization = serde_yaml::from_str(AUTHORIZATION_YAML).expect("fixture");
    a.spec.valid_from = Time(at(from));
    a.spec.valid_until = Time(at(until));
    a.spec.state = state;
    a
}

#[test]
fn renewal_only_raises_validity_of_an_active_unexpired_authorization_within_3_years() {
    let now = at("2026-06-01T00:00:00Z");
    let a = authorization(
        "2026-01-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
        State::Active,
    );
    assert!(renew::check(&a.spec, at("2028-01-01T00:00:00Z"), now).is_ok());
    // 1096 days after validFrom is the latest.
    assert!(renew::check(&a.spec, at("2029-01-01T00:00:00Z"), now).is_ok());
    let too_long = renew::check(&a.spec, at("2029-01-01T00:00:01Z"), now).expect_err("> 3y");
    assert!(format!("{too_long:#}").contains("3 years"), "{too_long:#}");
    assert_eq!(exit_code(&too_long), 1);
    let lower = renew::check(&a.spec, at("2026-12-01T00:00:00Z"), now).expect_err("lower");
    assert!(format!("{lower:#}").contains("only raises"), "{lower:#}");

    let expired = renew::check(
        &a.spec,
        at("2028-01-01T00:00:00Z"),
        at("2027-01-01T00:00:00Z"),
    )
    .expect_err("expired");
    assert_eq!(exit_code(&expired), EXIT_FORBIDDEN);
    let revoked = authorization(
        "2026-01-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
        State::Revoked,
    );
    let e = renew::check(&revoked.spec, at("2028-01-01T00:00:00Z"), now).expect_err("revoked");
    assert_eq!(exit_code(&e), EXIT_FORBIDDEN);
    assert!(format!("{e:#}").contains("revoked is final"));
}

fn documents(texts: &[&str]) -> Documents {
    let mut d = Documents::default();
    for (i, t) in texts.iter().enumerate() {
        d.add(t, &format!("doc{i}")).expect("parses");
    }
    d
}

#[test]
fn render_prints_exactly_what_the_builders_build() {
    let all = format!("{DATASET_YAML}\n---\n{AUTHORIZATION_YAML}\n---\n{SCENARIO_YAML}");
    let docs = documents(&[&all]);
    assert_eq!(
        (
            docs.datasets.len(),
            docs.authorizations.len(),
            docs.scenarios.len()
        ),
        (1, 1, 1)
    );
    let rendered = docs
        .render(Some("fast"), "cleanroom/agent:test")
        .expect("renders");
    assert!(rendered.rejections.is_empty(), "{:?}", rendered.rejections);

    let s = &docs.scenarios[0];
    let id = Identity {
        scenario: s.metadata.name.clone().expect("name"),
        uid: PLACEHOLDER_UID.into(),
        authorization: s.spec.authorization.clone(),
        namespace: s.namespace_name().expect("namespace"),
    };
    let mut expected = workspace::desired(
        &id,
        &s.spec,
        false,
        Some("fast"),
        workspace::access::DEFAULT_MEMBER_CLUSTER_ROLE,
    )
    .expect("builds");
    // The dataset's plan and preparation Job come before the compute.
    let compute = expected.pop().expect("compute");
    let (d, request) = (&docs.datasets[0], &s.spec.data[0]);
    expected.push(serde_json::to_value(workspace::data::plan_config_map(&id, d, request)).unwrap());
    expected.push(
        serde_json::to_value(workspace::data::preparation_job(
            &id,
            d,
            "cleanroom/agent:test",
        ))
        .unwrap(),
    );
    expected.push(compute);
    assert_eq!(rendered.objects, expected);
    let vault: Vec<&str> = rendered
        .objects
        .iter()
        .filter(|o| o["metadata"]["namespace"] == "cleanroom-vault")
        .map(|o| o["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(vault, ["ConfigMap", "Job"]);

    let kinds: Vec<&str> = rendered
        .objects
        .iter()
        .filter_map(|o| o.get("kind").and_then(|k| k.as_str()))
        .collect();
    assert_eq!(kinds.first(), Some(&"Namespace"));
    assert_eq!(kinds.get(1), Some(&"NetworkPolicy"));
    assert!(kinds.contains(&"ResourceQuota") && kinds.contains(&"PersistentVolumeClaim"));
    let yaml = to_yaml(&rendered.objects).expect("yaml");
    assert_eq!(yaml.matches("---\n").count(), rendered.objects.len());
    assert!(yaml.contains(PLACEHOLDER_UID));
}

#[test]
fn a_suspended_scenario_renders_sealed_without_the_members_binding() {
    let suspended = format!("{SCENARIO_YAML}\n  state: Suspended\n  reason: audit\n");
    let docs = documents(&[&suspended]);
    assert_eq!(
        docs.scenarios[0].spec.state,
        State::Suspended,
        "fixture edit"
    );
    let rendered = docs.render(None, "cleanroom/agent:test").expect("renders");
    let kinds: Vec<&str> = rendered
        .objects
        .iter()
        .filter_map(|o| o.get("kind").and_then(|k| k.as_str()))
        .collect();
    assert!(!kinds.contains(&"RoleBinding"), "{kinds:?}");
    let compute = rendered.objects.last().expect("compute");
    let stopped = compute.pointer("/spec/replicas") == Some(&serde_json::json!(0))
        || compute.pointer("/spec/suspend") == Some(&serde_json::json!(true));
    assert!(stopped, "{compute}");
}

#[test]
fn a_scenario_outside_its_authorization_is_rejected_by_render() {
    let mut a = authorization(
        "2026-01-01T00:00:00Z",
        "2099-01-01T00:00:00Z",
        State::Active,
    );
    a.spec.members.users.clear();
    a.spec.members.groups.clear();
    let a_yaml = serde_yaml::to_string(&a).expect("yaml");
    let docs = documents(&[&a_yaml, SCENARIO_YAML]);
    let rendered = docs.render(None, "cleanroom/agent:test").expect("renders");
    assert_eq!(rendered.rejections.len(), 1, "{:?}", rendered.rejections);
    assert!(rendered.objects.is_empty());
}

#[test]
fn render_skips_other_kinds_and_names_the_bad_document() {
    let docs = documents(&["kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n---\n"]);
    assert!(docs.scenarios.is_empty());
    let mut d = Documents::default();
    let err = d
        .add("kind: Scenario\nmetadata: {name: x}\nspec: 3\n", "bad.yaml")
        .expect_err("bad spec");
    assert!(
        format!("{err:#}").contains("bad.yaml: document 1"),
        "{err:#}"
    );
}

#[test]
fn audit_verbs_parse_filters_and_the_ledger_namespace() {
    use super::audit::AuditCommand;
    let Ok(Command::Audit(a)) = parse(&[
        "cleanroom",
        "audit",
        "show",
        "--name",
        "census",
        "--action",
        "suspended",
        "--action",
        "wiped",
        "--since",
        "2026-01-01",
        "-o",
        "json",
    ]) else {
        panic!("expected audit show");
    };
    let AuditCommand::Show(show) = a.command else {
        panic!("expected show");
    };
    assert_eq!(show.name.as_deref(), Some("census"));
    assert_eq!(
        show.action,
        [crate::audit::Action::Suspended, crate::audit::Action::Wiped]
    );
    assert_eq!(show.since, Some(at("2026-01-01T00:00:00Z")));
    assert_eq!(show.ledger.namespace, "cleanroom-system");
    assert_eq!(show.output.output, Output::Json);
    assert!(parse(&["cleanroom", "audit", "show", "--action", "exploded"]).is_err());
    let Ok(Command::Audit(a)) = parse(&["cleanroom", "audit", "verify", "--namespace", "x"]) else {
        panic!("expected audit verify");
    };
    assert!(matches!(a.command, AuditCommand::Verify(v) if v.ledger.namespace == "x"));
    let Ok(Command::Report(r)) = parse(&[
        "cleanroom",
        "report",
        "--since",
        "2026-04-01T00:00:00+08:00",
    ]) else {
        panic!("expected report");
    };
    assert_eq!(r.since, at("2026-03-31T16:00:00Z"));
    assert_eq!(
        parse(&["cleanroom", "report"])
            .expect_err("since is required")
            .exit_code(),
        2
    );
}

#[test]
fn a_merge_patch_is_applied_as_the_api_server_would() {
    let mut spec = serde_json::json!({"state": "Suspended", "reason": "x", "quota": {"cpu": "2"}});
    super::common::merge(
        &mut spec,
        &serde_json::json!({"state": "Active", "reason": null, "quota": {"memory": "1Gi"}}),
    );
    assert_eq!(
        spec,
        serde_json::json!({"state": "Active", "quota": {"cpu": "2", "memory": "1Gi"}})
    );
}
