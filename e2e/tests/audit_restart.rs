//! The audit ledger across operator crashes, and its metrics. In its own
//! test binary because it stops and restarts the shared operator (cargo runs
//! test binaries one after another); the operator is started again however
//! a test ends. Needs the local control plane and the binaries (`make e2e`).

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use cleanroom::api::ScenarioPhase;
use cleanroom::audit::Action;
use cleanroom_e2e::harness::cluster_dir;
use common::{
    AUDIT_NAMESPACE, T, ledger_records, operator, phase, records_of, repo_root, with_fixture,
};
use kube::ResourceExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The tests of this file restart the operator: one at a time.
static OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the plain shared operator again when dropped.
struct OperatorComesBack;

impl Drop for OperatorComesBack {
    fn drop(&mut self) {
        let _ = operator("stop");
        if let Err(e) = operator("start") {
            eprintln!("could not start the operator again: {e:#}");
        }
    }
}

/// `operator.sh restart` with extra environment.
fn restart_with(env: &[(&str, &str)]) -> Result<()> {
    let out = Command::new(repo_root().join("e2e/scripts/operator.sh"))
        .arg("restart")
        .envs(env.iter().copied())
        .output()?;
    ensure!(
        out.status.success(),
        "operator.sh restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn operator_pid() -> Option<i32> {
    std::fs::read_to_string(cluster_dir().join("run/operator.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the process still exists (a zombie too: `operator.sh start`
/// would take it for a running operator until it is reaped).
fn alive(pid: i32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_crash_between_the_audit_write_and_the_status_write_loses_and_duplicates_nothing()
-> Result<()> {
    let _one = OPERATOR.lock().await;
    let _comes_back = OperatorComesBack;
    operator("start")?;
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let name = s.name_any();
        let uid = s.metadata.uid.clone().context("uid")?;

        // This operator exits right after it appends a `suspended` record.
        restart_with(&[("CLEANROOM_AUDIT_EXIT_AFTER", "suspended")])?;
        let pid = operator_pid().context("no operator pid")?;
        fx.patch_scenario(
            &name,
            json!({"state": "Suspended", "reason": "crash drill"}),
        )
        .await?;
        let started = Instant::now();
        while alive(pid) {
            ensure!(
                started.elapsed() < T,
                "the operator did not stop after the audit write"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // It stopped between the two writes: the record is there, the status is not.
        let suspended = |records: &[cleanroom::audit::Record]| {
            records
                .iter()
                .filter(|r| r.action == Action::Suspended)
                .count()
        };
        ensure!(
            suspended(&records_of(&fx.client, &uid).await?) == 1,
            "the record was written"
        );
        let now = fx.scenarios().get(&name).await?;
        ensure!(
            phase(&now) != Some(ScenarioPhase::Suspended),
            "the status was written before the crash: the drill proves nothing"
        );

        // The next run writes the status and not the record again.
        operator("start")?;
        fx.wait_scenario(&name, "phase Suspended", T, |s| {
            phase(s) == Some(ScenarioPhase::Suspended)
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let records = records_of(&fx.client, &uid).await?;
        ensure!(suspended(&records) == 1, "suspended twice: {records:#?}");

        // A plain kill -9 while a change waits: recorded once after the restart.
        operator("kill")?;
        fx.patch_scenario(&name, json!({"state": "Active", "reason": null}))
            .await?;
        operator("start")?;
        fx.wait_scenario(&name, "Ready again", T, |s| {
            phase(s) == Some(ScenarioPhase::Ready)
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let actions: Vec<Action> = records_of(&fx.client, &uid)
            .await?
            .iter()
            .map(|r| r.action)
            .collect();
        ensure!(
            actions
                == [
                    Action::Created,
                    Action::MemberGranted,
                    Action::Provisioned,
                    Action::DataPrepared,
                    Action::Suspended,
                    Action::Resumed
                ],
            "{actions:?}"
        );
        let (code, out) = {
            let o = common::run_cleanroom(&["audit", "verify"])?;
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        };
        ensure!(code == Some(0), "verify after the crashes: {out}");
        Ok(())
    })
    .await
}

async fn scrape(port: u16) -> Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{series} ")))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn metrics_count_the_records_written_and_report_the_verification() -> Result<()> {
    let _one = OPERATOR.lock().await;
    let _comes_back = OperatorComesBack;
    let client = cleanroom_e2e::harness::client().await?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    operator("stop")?;
    let before = ledger_records(&client, AUDIT_NAMESPACE)
        .await?
        .last()
        .map_or(0, |r| r.seq);
    let started = k8s_openapi::jiff::Timestamp::now();
    restart_with(&[("CLEANROOM_METRICS_ADDR", &format!("127.0.0.1:{port}"))])?;
    let text = scrape(port).await?;
    ensure!(
        value(&text, "cleanroom_audit_chain_intact") == Some(1.0),
        "{text}"
    );
    let verified = value(&text, "cleanroom_audit_last_verify_timestamp_seconds").unwrap_or(0.0);
    ensure!(
        verified >= started.as_second() as f64 - 1.0,
        "verified at start-up: {verified}"
    );
    ensure!(
        value(&text, "cleanroom_audit_records_total").is_some(),
        "{text}"
    );

    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        fx.ready_scenario(&authz, |_| {}).await?;
        // Authorization: created, member-granted; scenario: created,
        // member-granted, provisioned, data-prepared (no dataset: at once).
        let mine = 6.0;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = scrape(port).await?;
            let written = value(&text, "cleanroom_audit_records_total").unwrap_or(-1.0);
            let after = ledger_records(&fx.client, AUDIT_NAMESPACE)
                .await?
                .last()
                .map_or(0, |r| r.seq);
            let appended = (after - before) as f64;
            if written == appended && written >= mine {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "cleanroom_audit_records_total {written}, but {appended} records were appended since the start (at least {mine} ours)"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    })
    .await
}
