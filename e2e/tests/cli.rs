//! The `cleanroom` command's verbs against a real API server and the shared
//! operator: what they change, what they refuse, and their exit codes.
//! Needs the local control plane, the operator (`make e2e`) and the binary
//! (`cargo build -p cleanroom`).

mod common;

use std::path::PathBuf;
use std::process::Output;

use anyhow::{Context, Result, ensure};
use cleanroom::api::{AuthorizationPhase, ScenarioPhase};
use cleanroom_e2e::harness::{cluster_dir, unique_name};
use common::{T, has_condition, phase, rfc3339, scenario_spec, seconds_from_now, with_fixture};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/cleanroom")
}

/// Runs `cleanroom ARGS` with the cluster's admin kubeconfig.
fn cleanroom(args: &[&str]) -> Result<Output> {
    let bin = binary();
    ensure!(
        bin.exists(),
        "no {}: build it first with `cargo build -p cleanroom`",
        bin.display()
    );
    let out = std::process::Command::new(&bin)
        .args(args)
        .env("KUBECONFIG", cluster_dir().join("kubeconfig"))
        .output()
        .with_context(|| format!("running cleanroom {args:?}"))?;
    Ok(out)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a verb that must succeed and returns its stdout.
fn ok(args: &[&str]) -> Result<String> {
    let out = cleanroom(args)?;
    ensure!(
        out.status.success(),
        "cleanroom {args:?} exited {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    Ok(text(&out.stdout))
}

fn json(stdout: &str) -> Result<Value> {
    serde_json::from_str(stdout).with_context(|| format!("not JSON: {stdout}"))
}

#[tokio::test]
async fn suspend_then_resume_seals_and_reopens_the_workspace_and_status_shows_it() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let name = s.metadata.name.clone().context("name")?;

        let out = json(&ok(&[
            "suspend",
            &name,
            "--reason",
            "audit finding 7",
            "-o",
            "json",
        ])?)?;
        ensure!(out["state"] == "Suspended", "{out}");
        ensure!(out["reason"] == "audit finding 7", "{out}");
        fx.wait_scenario(&name, "phase Suspended", T, |s| {
            phase(s) == Some(ScenarioPhase::Suspended)
        })
        .await?;
        let status = json(&ok(&["status", &name, "-o", "json"])?)?;
        ensure!(status["phase"] == "Suspended", "{status}");
        ensure!(
            status["namespace"] == format!("cr-{name}").as_str(),
            "{status}"
        );

        let out = json(&ok(&["resume", &name, "-o", "json"])?)?;
        ensure!(
            out["state"] == "Active" && out.get("reason").is_none(),
            "{out}"
        );
        fx.wait_scenario(&name, "Ready=True again", T, |s| {
            has_condition(s, "Ready", true)
        })
        .await?;
        let table = ok(&["status", &name])?;
        ensure!(table.contains(&format!("scenario/{name}")), "{table}");
        ensure!(
            table
                .lines()
                .any(|l| l.trim_start().starts_with("phase") && l.contains("Ready")),
            "{table}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn resume_after_revoke_exits_4_because_revoked_is_final() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let name = unique_name("e2e-cli");
        fx.create_scenario(&name, scenario_spec(&authz)).await?;

        let out = json(&ok(&[
            "revoke",
            &name,
            "--reason",
            "purpose fulfilled",
            "-o",
            "json",
        ])?)?;
        ensure!(out["state"] == "Revoked", "{out}");
        let refused = cleanroom(&["resume", &name])?;
        ensure!(
            refused.status.code() == Some(4),
            "resume after revoke exited {:?}",
            refused.status.code()
        );
        let stderr = text(&refused.stderr);
        ensure!(stderr.contains("revoked is final"), "{stderr}");
        let s = fx.scenarios().get(&name).await?;
        ensure!(
            s.spec.state == cleanroom::api::State::Revoked,
            "the refused resume changed the state"
        );
        // The authorization too: suspend it through the CLI, then revoke.
        ok(&["suspend", &authz, "--authorization", "--reason", "review"])?;
        fx.wait_for_authorization(&authz, "phase Suspended", |a| {
            a.status.as_ref().and_then(|s| s.phase) == Some(AuthorizationPhase::Suspended)
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn status_of_a_missing_object_exits_3_and_names_it() -> Result<()> {
    let name = unique_name("e2e-missing");
    for args in [
        vec!["status", name.as_str()],
        vec!["status", name.as_str(), "--authorization"],
        vec!["resume", name.as_str()],
    ] {
        let out = cleanroom(&args)?;
        ensure!(
            out.status.code() == Some(3),
            "{args:?} exited {:?}",
            out.status.code()
        );
        let stderr = text(&out.stderr);
        ensure!(
            stderr.contains(&name) && stderr.contains("not found"),
            "{stderr}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn renew_raises_valid_until_and_the_expiry_follows() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let before = fx.authorizations().get(&authz).await?;
        let until = seconds_from_now(400 * 24 * 3600)?;
        let out = json(&ok(&[
            "renew",
            &authz,
            "--until",
            &rfc3339(until),
            "-o",
            "json",
        ])?)?;
        ensure!(out["expiresAt"] == rfc3339(until).as_str(), "{out}");
        let a = fx
            .wait_for_authorization(&authz, "status.expiresAt at the new validUntil", |a| {
                a.status
                    .as_ref()
                    .and_then(|s| s.expires_at.as_ref())
                    .is_some_and(|t| t.0 == until)
            })
            .await?;
        ensure!(a.spec.valid_until.0 > before.spec.valid_until.0);

        // Lowering is refused, and changes nothing.
        let lower = cleanroom(&["renew", &authz, "--until", &rfc3339(Timestamp::now())])?;
        ensure!(lower.status.code() == Some(1), "{:?}", lower.status.code());
        ensure!(
            text(&lower.stderr).contains("only raises"),
            "{}",
            text(&lower.stderr)
        );
        let after = fx.authorizations().get(&authz).await?;
        ensure!(
            after.spec.valid_until.0 == until,
            "a refused renewal changed validUntil"
        );
        Ok(())
    })
    .await
}

#[test]
fn render_of_the_examples_prints_the_whole_workspace_offline() -> Result<()> {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    let dir = examples.to_string_lossy().into_owned();
    let out = std::process::Command::new(binary())
        .args(["render", "-f", &dir])
        // Offline: no kubeconfig at all.
        .env("KUBECONFIG", "/nonexistent")
        .output()?;
    ensure!(out.status.success(), "render failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&stdout) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        kinds.push(v["kind"].as_str().unwrap_or_default().to_string());
        if v["kind"] == "NetworkPolicy" {
            let types = &v["spec"]["policyTypes"];
            ensure!(
                *types == serde_json::json!(["Ingress", "Egress"]),
                "deny-all is not for both directions: {v}"
            );
            ensure!(
                v["spec"]["ingress"].is_null() && v["spec"]["egress"].is_null(),
                "{v}"
            );
        }
    }
    for kind in [
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "ServiceAccount",
        "RoleBinding",
        "PersistentVolumeClaim",
        "Deployment",
        "Job",
    ] {
        ensure!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    // No pod can exist before the deny policy: each namespace's first two are the namespace, then deny-all.
    ensure!(
        kinds[0] == "Namespace" && kinds[1] == "NetworkPolicy",
        "{kinds:?}"
    );
    Ok(())
}
