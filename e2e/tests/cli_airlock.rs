//! The airlock's verbs (`cleanroom export ...`, `cleanroom review ...`) run
//! as real users against the API server, its admission policies and the
//! shared operator: who the requester and reviewer are, and what the API
//! server refuses in whose name, as the command line shows it.
//! Needs the local control plane, the operator (`make e2e`) and the binary
//! (`cargo build -p cleanroom`).

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cleanroom::api::Export;
use cleanroom::api::airlock::{ExportPhase, ExportSpec};
use cleanroom_e2e::harness::{cluster_dir, unique_name, wait_for};
use common::{
    ALICE, Fixture, T, authorization_spec, cleanroom_binary, client_as, namespace_of, refusal,
    scratch_volume, with_fixture, workspace_owned_dir, write_as_workspace,
};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

/// A second member of the authorization.
const BOB: &str = "bob@acme.example";
/// The authorization's reviewer, from the bureau.
const CAROL: &str = "carol@bureau.example";
/// A table without small cells, with a row of its scenario's own: the test
/// recalls it, and recalled content is never released again in a cluster.
fn table(scenario: &str) -> Vec<u8> {
    format!("district,n\nGulou,120\nTaijiang,87\nCangshan,64\n{scenario},55\n").into_bytes()
}
const FILE: &str = "by-district.csv";

/// An admin kubeconfig that acts as `user` in `groups` (the `as` and
/// `as-groups` fields): the binary then talks to the API server as that
/// user, as a person's own kubeconfig would.
fn kubeconfig_as_in(user: &str, groups: &[&str]) -> Result<PathBuf> {
    let admin = cluster_dir().join("kubeconfig");
    let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(&admin)?)?;
    config["users"][0]["user"]["as"] = json!(user);
    if !groups.is_empty() {
        config["users"][0]["user"]["as-groups"] = json!(groups);
    }
    let name = format!("{user}-{}", groups.join("-")).replace(['@', ':'], "-");
    let path = cluster_dir().join(format!("kubeconfig-as-{name}"));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}

/// Runs `cleanroom ARGS` as `user` in `groups`.
fn cleanroom_as(user: &str, groups: &[&str], args: &[&str]) -> Result<Output> {
    std::process::Command::new(cleanroom_binary())
        .args(args)
        .env("KUBECONFIG", kubeconfig_as_in(user, groups)?)
        .output()
        .with_context(|| format!("running cleanroom {args:?} as {user}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a verb that must succeed as `user` and returns its stdout.
fn ok_as(user: &str, args: &[&str]) -> Result<String> {
    let out = cleanroom_as(user, &[], args)?;
    ensure!(
        out.status.success(),
        "cleanroom {args:?} as {user} exited {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    Ok(text(&out.stdout))
}

/// Runs a verb that must fail as `user` with `code`; returns its stderr.
fn refused_as(user: &str, args: &[&str], code: i32) -> Result<String> {
    refused_in(user, &[], args, code)
}

/// [`refused_as`], in `groups` too.
fn refused_in(user: &str, groups: &[&str], args: &[&str], code: i32) -> Result<String> {
    let out = cleanroom_as(user, groups, args)?;
    let stderr = text(&out.stderr);
    ensure!(
        out.status.code() == Some(code),
        "cleanroom {args:?} as {user} exited {:?}, not {code}: {stderr}{}",
        out.status.code(),
        text(&out.stdout)
    );
    Ok(stderr)
}

fn json_of(stdout: &str) -> Result<Value> {
    serde_json::from_str(stdout).with_context(|| format!("not JSON: {stdout}"))
}

/// An authorization with ALICE and BOB as members and CAROL as reviewer
/// (ALICE too, by mistake: the API server still refuses her own exports'
/// reviews), and a Ready scenario both members enter, with a table in its
/// outbox. Returns the authorization and the scenario.
async fn workspace_with_a_table(fx: &Fixture) -> Result<(String, String)> {
    let authz = unique_name("e2e-authz");
    let mut spec = authorization_spec(&[])?;
    spec["members"] = json!({"users": [ALICE, BOB]});
    spec["review"] = json!({"reviewers": {"users": [CAROL, ALICE]}, "approvals": 1});
    fx.create_authorization(&authz, spec).await?;
    let s = fx
        .ready_scenario(&authz, |s| s["members"] = json!({"users": [ALICE, BOB]}))
        .await?;
    let name = s.metadata.name.context("name")?;
    let root = workspace_owned_dir(&scratch_volume(&fx.client, &name).await?)?;
    write_as_workspace(&root, &format!("outbox/{FILE}"), &table(&name))?;
    Ok((authz, name))
}

fn exports(fx: &Fixture, scenario: &str) -> Api<Export> {
    Api::namespaced(fx.client.clone(), &namespace_of(scenario))
}

/// `export create` as ALICE; checks the requester the CLI and the cluster show.
fn create_as_alice(scenario: &str, export: &str) -> Result<Value> {
    let file = format!("/work/outbox/{FILE}:Table:keys=district;counts=n");
    let out = json_of(&ok_as(
        ALICE,
        &[
            "export",
            "create",
            export,
            "--scenario",
            scenario,
            "--file",
            &file,
            "--context",
            "households by district",
            "--controls",
            "no cell under 10",
            "-o",
            "json",
        ],
    )?)?;
    ensure!(out["requester"] == ALICE, "{out}");
    ensure!(out["files"][0]["path"] == FILE, "{out}");
    ensure!(
        out["files"][0]["columns"]["keys"] == json!(["district"]),
        "{out}"
    );
    Ok(out)
}

#[tokio::test]
async fn export_verbs_record_the_caller_and_show_what_the_api_server_refuses() -> Result<()> {
    with_fixture(|fx| async move {
        let (authz, scenario) = workspace_with_a_table(&fx).await?;
        let export = unique_name("tables");
        create_as_alice(&scenario, &export)?;
        let stored = exports(&fx, &scenario).get(&export).await?;
        ensure!(stored.spec.requester == ALICE, "{:?}", stored.spec);

        no_workspace_exits_3()?;
        crafted_requester_is_refused(&scenario).await?;
        withdraw_by_another_member_is_refused(&fx, &scenario, &export).await?;
        list_and_show_parse(&scenario, &export)?;
        review_verbs(&fx, &scenario, &export).await?;

        // Released, it stays: its requester cannot withdraw it, a reviewer
        // recalls it, and then it may go.
        let withdraw = ["export", "withdraw", &export, "--scenario", &scenario];
        let kept = refused_as(ALICE, &withdraw, 1)?;
        ensure!(
            kept.contains(&format!("export {export} is released")),
            "{kept}"
        );
        let comment = "superseded by a corrected table";
        let recall = [
            "export",
            "recall",
            &export,
            "--scenario",
            &scenario,
            "--comment",
            comment,
        ];
        let made = ok_as(CAROL, &recall)?;
        ensure!(made.contains("Recall") && made.contains(CAROL), "{made}");
        wait_for(
            &exports(&fx, &scenario),
            &export,
            "Recalled",
            T,
            |e: Option<&Export>| {
                e.and_then(|e| e.status.as_ref()?.phase) == Some(ExportPhase::Recalled)
            },
        )
        .await?;

        let said = ok_as(
            ALICE,
            &["export", "withdraw", &export, "--scenario", &scenario],
        )?;
        ensure!(
            said.contains("withdrawn") && said.contains("wipes"),
            "{said}"
        );
        cleanroom_e2e::harness::wait_gone(&exports(&fx, &scenario), &export, T).await?;
        let gone = refused_as(
            ALICE,
            &["export", "show", &export, "--scenario", &scenario],
            3,
        )?;
        ensure!(gone.contains("not found"), "{gone}");
        the_report_lists_the_export(&authz, &scenario, &export)
    })
    .await
}

/// An export for a scenario without a workspace names the missing
/// namespace and exits 3 (as the admin, whom no RBAC rule stops first).
fn no_workspace_exits_3() -> Result<()> {
    let missing = unique_name("no-such");
    let args = [
        "export",
        "create",
        "x",
        "--scenario",
        &missing,
        "--file",
        "a.csv:Table",
        "--context",
        "c",
        "--controls",
        "k",
    ];
    let out = common::run_cleanroom(&args)?;
    let stderr = text(&out.stderr);
    ensure!(
        out.status.code() == Some(3),
        "{:?}: {stderr}",
        out.status.code()
    );
    let want = format!("scenario {missing:?} has no workspace (namespace cr-{missing} not found)");
    ensure!(stderr.contains(&want), "{stderr}");
    Ok(())
}

/// A request in someone else's name, made without the CLI (which always
/// names the caller), is refused by the API server with the policy's words.
async fn crafted_requester_is_refused(scenario: &str) -> Result<()> {
    let spec: ExportSpec = serde_json::from_value(json!({
        "requester": BOB,
        "files": [{"path": FILE, "kind": "Table"}],
        "context": "in another's name",
        "controls": "none",
    }))?;
    let crafted = Export::new(&unique_name("forged"), spec);
    let as_alice: Api<Export> =
        Api::namespaced(client_as(ALICE, &[]).await?, &namespace_of(scenario));
    let why = refusal(
        as_alice
            .create(&PostParams::default(), &crafted)
            .await
            .map_err(anyhow::Error::from),
        "an export in BOB's name made by ALICE",
    )?;
    let want = format!("spec.requester must be {ALICE}, not {BOB}");
    ensure!(why.contains(&want), "{why}");
    Ok(())
}

/// BOB may delete exports (RBAC) but not ALICE's: the policy's message is
/// what the CLI prints, and the export is still there.
async fn withdraw_by_another_member_is_refused(
    fx: &Fixture,
    scenario: &str,
    export: &str,
) -> Result<()> {
    let why = refused_as(
        BOB,
        &["export", "withdraw", export, "--scenario", scenario],
        1,
    )?;
    let want = format!("only its requester ({ALICE}) may withdraw export {export}, not {BOB}");
    ensure!(why.contains(&want), "{why}");
    let still = exports(fx, scenario).get(export).await?;
    ensure!(
        still.metadata.deletion_timestamp.is_none(),
        "BOB's withdrawal went through"
    );
    Ok(())
}

fn list_and_show_parse(scenario: &str, export: &str) -> Result<()> {
    let listed = json_of(&ok_as(
        ALICE,
        &["export", "list", "--scenario", scenario, "-o", "json"],
    )?)?;
    let names: Vec<&str> = listed
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    ensure!(names == [export], "{listed}");
    let admin = common::run_cleanroom(&["export", "list", "-A", "-o", "json"])?;
    ensure!(admin.status.success(), "{}", text(&admin.stderr));
    let all = json_of(&text(&admin.stdout))?;
    ensure!(
        all.as_array().is_some_and(|a| a
            .iter()
            .any(|e| e["name"] == export && e["scenario"] == scenario)),
        "{all}"
    );
    let shown = json_of(&ok_as(
        ALICE,
        &[
            "export",
            "show",
            export,
            "--scenario",
            scenario,
            "-o",
            "json",
        ],
    )?)?;
    ensure!(
        shown["name"] == export && shown["requester"] == ALICE,
        "{shown}"
    );
    ensure!(
        shown["namespace"] == namespace_of(scenario).as_str(),
        "{shown}"
    );
    let table = ok_as(ALICE, &["export", "show", export, "--scenario", scenario])?;
    ensure!(
        table.contains(FILE) && table.contains("requester"),
        "{table}"
    );
    Ok(())
}

/// A reject without a comment never leaves the CLI. Once the export is open
/// for review (by the operator, or, while its seal is stuck, by the test in
/// the operator's name), the requester's own approval is refused with the
/// policy's words even with a cluster admin's rights, and so is a member's.
async fn review_verbs(fx: &Fixture, scenario: &str, export: &str) -> Result<()> {
    let no_comment = refused_as(
        CAROL,
        &["review", "reject", export, "--scenario", scenario],
        2,
    )?;
    ensure!(
        no_comment.contains("--comment must say why"),
        "{no_comment}"
    );
    let plain = refused_as(
        ALICE,
        &["review", "approve", export, "--scenario", scenario],
        1,
    )?;
    ensure!(
        plain.contains("cannot create resource \"reviews\""),
        "{plain}"
    );

    in_review(fx, scenario, export).await?;
    let args = ["review", "approve", export, "--scenario", scenario];
    let own = refused_in(ALICE, &[MASTERS], &args, 1)?;
    let want = format!("the requester of export {export} may not review or recall it");
    ensure!(own.contains(&want), "{own}");
    let member = refused_in(BOB, &[MASTERS], &args, 1)?;
    let want =
        format!("{BOB} is a member of the authorization and may not review or recall its exports");
    ensure!(member.contains(&want), "{member}");
    approved_by_the_reviewer(fx, scenario, export).await
}

/// Cluster admins: allowed by RBAC, so only the admission policy stands.
const MASTERS: &str = "system:masters";

/// The reviewer's approval, made in her name, is counted.
async fn approved_by_the_reviewer(fx: &Fixture, scenario: &str, export: &str) -> Result<()> {
    let e = exports(fx, scenario).get(export).await?;
    let shown = json_of(&ok_as(
        ALICE,
        &[
            "export",
            "show",
            export,
            "--scenario",
            scenario,
            "-o",
            "json",
        ],
    )?)?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(table(scenario)));
    ensure!(
        shown["sealed"]["files"][0]["sha256"] == sha.as_str(),
        "{shown} {e:?}"
    );
    ensure!(
        shown["sealed"]["files"][0]["size"] == table(scenario).len(),
        "{shown}"
    );
    ensure!(shown["scan"]["files"][0]["name"] == FILE, "{shown}");
    let made = json_of(&ok_as(
        CAROL,
        &[
            "review",
            "approve",
            export,
            "--scenario",
            scenario,
            "--comment",
            "cells >= 10",
            "--file",
            &format!("{FILE}=checked by hand"),
            "-o",
            "json",
        ],
    )?)?;
    ensure!(
        made["reviewer"] == CAROL && made["decision"] == "Approve",
        "{made}"
    );
    let prefix = format!("{export}-carol-bureau-example-");
    ensure!(
        made["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(&prefix)),
        "{made}"
    );
    after_approval(fx, scenario, export).await
}

async fn in_review(fx: &Fixture, scenario: &str, export: &str) -> Result<Export> {
    wait_for(
        &exports(fx, scenario),
        export,
        "phase InReview",
        Duration::from_secs(30),
        |e: Option<&Export>| {
            e.and_then(|e| e.status.as_ref()?.phase) == Some(ExportPhase::InReview)
        },
    )
    .await
}

/// The approval is counted; if the release completes here too, `show`
/// names the released copy.
async fn after_approval(fx: &Fixture, scenario: &str, export: &str) -> Result<()> {
    let counted = wait_for(
        &exports(fx, scenario),
        export,
        "one approval counted",
        T,
        |e: Option<&Export>| {
            e.and_then(|e| e.status.as_ref())
                .is_some_and(|s| s.reviews.iter().any(|r| r.reviewer == CAROL))
        },
    )
    .await?;
    ensure!(counted.status.is_some(), "no status");
    wait_for(
        &exports(fx, scenario),
        export,
        "phase Released",
        Duration::from_secs(60),
        |e: Option<&Export>| {
            e.and_then(|e| e.status.as_ref()?.phase) == Some(ExportPhase::Released)
        },
    )
    .await?;
    let shown = json_of(&ok_as(
        ALICE,
        &[
            "export",
            "show",
            export,
            "--scenario",
            scenario,
            "-o",
            "json",
        ],
    )?)?;
    ensure!(shown["reviews"][0]["reviewer"] == CAROL, "{shown}");
    ensure!(
        shown["approvals"] == 1 && shown["approvalsRequired"] == 1,
        "{shown}"
    );
    ensure!(shown["released"]["path"].as_str().is_some(), "{shown}");
    Ok(())
}

/// `cleanroom report` names the export under its authorization, with its
/// requester, reviewer and final phase, from the ledger.
fn the_report_lists_the_export(authz: &str, scenario: &str, export: &str) -> Result<()> {
    let since = common::rfc3339(common::seconds_from_now(-3600)?);
    let out = common::run_cleanroom(&["report", "--since", &since, "-o", "json"])?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let report = json_of(&text(&out.stdout))?;
    let ours = report["authorizations"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == authz))
        .with_context(|| format!("{authz} not in {report}"))?;
    let name = format!("{}/{export}", namespace_of(scenario));
    let line = ours["exports"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == name.as_str()))
        .with_context(|| format!("{name} not in {ours}"))?;
    ensure!(line["requester"] == ALICE, "{line}");
    ensure!(line["phase"] == "Recalled", "{line}");
    ensure!(
        line["reviews"].as_array().is_some_and(|r| r
            .iter()
            .any(|r| r["decision"] == "Recall" && r["reviewer"] == CAROL)),
        "{line}"
    );
    Ok(())
}

/// `import create`, `review approve --import`, `import show` and the
/// report, as the people who use them: the requester is the caller, the
/// reviewer's approval mounts it, and the report names supplier and basis.
#[tokio::test]
async fn import_verbs_take_staged_data_through_review_into_the_workspace() -> Result<()> {
    use cleanroom::api::Import;
    use common::import::{DAILY, stage, unstage, wait_import};
    with_fixture(|fx| async move {
        let (authz, scenario) = workspace_with_a_table(&fx).await?;
        let staged = stage(&fx.client, Some(&scenario), &[("daily.csv", DAILY)]).await?;
        let imp = unique_name("rain");
        let created = json_of(&ok_as(
            ALICE,
            &[
                "import",
                "create",
                &imp,
                "--scenario",
                &scenario,
                "--supplier",
                "Provincial Meteorological Bureau",
                "--legal-basis",
                "contract:PMB-2026-041",
                "--staging-claim",
                &staged,
                "--file",
                "daily.csv:day=date,rain_mm=decimal",
                "--purpose",
                "rainfall beside the care visits",
                "-o",
                "json",
            ],
        )?)?;
        ensure!(created["requester"] == ALICE, "{created}");
        let ns = namespace_of(&scenario);
        wait_import(&fx.client, &ns, &imp, &[ExportPhase::InReview]).await?;
        // A member (not a reviewer: no role to review) cannot approve; the listed reviewer can.
        let refused = refused_as(
            BOB,
            &[
                "review",
                "approve",
                "--import",
                &imp,
                "--scenario",
                &scenario,
            ],
            1,
        )?;
        ensure!(refused.contains("forbidden"), "{refused}");
        ok_as(
            CAROL,
            &[
                "review",
                "approve",
                "--import",
                &imp,
                "--scenario",
                &scenario,
                "--comment",
                "contract checked",
            ],
        )?;
        let i: Import = wait_import(
            &fx.client,
            &ns,
            &imp,
            &[ExportPhase::Released, ExportPhase::Failed],
        )
        .await?;
        ensure!(
            i.status.as_ref().and_then(|s| s.phase) == Some(ExportPhase::Released),
            "{:?}",
            i.status
        );
        let shown = json_of(&ok_as(
            ALICE,
            &[
                "import",
                "show",
                &imp,
                "--scenario",
                &scenario,
                "-o",
                "json",
            ],
        )?)?;
        ensure!(
            shown.to_string().contains(&format!("/imports/{imp}")),
            "{shown}"
        );

        let since = common::rfc3339(common::seconds_from_now(-3600)?);
        let out = common::run_cleanroom(&["report", "--since", &since, "-o", "json"])?;
        ensure!(out.status.success(), "{}", text(&out.stderr));
        let report = json_of(&text(&out.stdout))?;
        let line = report["authorizations"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["name"] == authz.as_str()))
            .and_then(|a| {
                a["imports"]
                    .as_array()?
                    .iter()
                    .find(|i| i["name"] == format!("{ns}/{imp}"))
                    .cloned()
            })
            .with_context(|| format!("{imp} not in {report}"))?;
        ensure!(
            line.to_string()
                .contains("Provincial Meteorological Bureau")
                && line.to_string().contains("PMB-2026-041"),
            "{line}"
        );
        ensure!(
            line["requester"] == ALICE && line["phase"] == "Released",
            "{line}"
        );
        unstage(&fx.client, &staged).await;
        Ok(())
    })
    .await
}
