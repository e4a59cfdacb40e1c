//! Leader election with two operator processes on one Lease: exactly one
//! holds it and reconciles; when it is killed, the other takes over within
//! the lease duration and reconciles from then on.
//!
//! Stops the shared operator for its duration (cargo runs test binaries one
//! after another) and always starts it again, even when the test fails.
//!
//! Both candidates run as the shared operator does, under exactly the chart's
//! RBAC (the service account's kubeconfig that `e2e/scripts/operator.sh`
//! writes), on the chart's own Lease: `cleanroom-operator` in
//! `cleanroom-system`, the only one its leader-election Role lets it take.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cleanroom_e2e::harness::{cluster_dir, unique_name};
use common::{has_condition, operator, scenario_spec, with_fixture};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::DeleteParams;
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The lease duration the operator uses, and a margin for the takeover.
const LEASE: Duration = Duration::from_secs(15);
const MARGIN: Duration = Duration::from_secs(6);

struct Candidate {
    identity: &'static str,
    port: u16,
    log: PathBuf,
    child: Child,
}

/// Kills both candidates and starts the shared operator again, whatever happened.
struct Guard {
    candidates: Vec<Candidate>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.candidates {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
        if let Err(e) = operator("start") {
            eprintln!("could not restart the shared operator: {e:#}");
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start(identity: &'static str, lease: &str, namespace: &str) -> Result<Candidate> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/cleanroom");
    ensure!(
        bin.exists(),
        "no {}: cargo build -p cleanroom",
        bin.display()
    );
    let port = free_port()?;
    let log = cluster_dir()
        .join("logs")
        .join(format!("leader-{identity}.log"));
    let out = File::create(&log)?;
    let child = Command::new(bin)
        .args([
            "run",
            "--leader-elect",
            "--identity",
            identity,
            "--lease-name",
            lease,
            "--lease-namespace",
            namespace,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .env("KUBECONFIG", cluster_dir().join("operator.kubeconfig"))
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .context("starting an operator")?;
    Ok(Candidate {
        identity,
        port,
        log,
        child,
    })
}

/// `cleanroom_leader` as scraped from a candidate's /metrics.
async fn leader_metric(port: u16) -> Result<f64> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).await?;
    reply
        .lines()
        .find_map(|l| l.strip_prefix("cleanroom_leader "))
        .context("no cleanroom_leader in /metrics")?
        .trim()
        .parse()
        .context("cleanroom_leader is not a number")
}

async fn holder(leases: &Api<Lease>, name: &str) -> Result<Option<String>> {
    Ok(leases
        .get_opt(name)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Waits until the lease is held by one of `candidates`; returns who.
async fn wait_holder(
    leases: &Api<Lease>,
    name: &str,
    candidates: &[&str],
    timeout: Duration,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let h = holder(leases, name).await?;
        if let Some(h) = h.filter(|h| candidates.contains(&h.as_str())) {
            return Ok(h);
        }
        if Instant::now() >= deadline {
            bail!("lease {name} not held by any of {candidates:?} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn log_mentions(c: &Candidate, text: &str) -> bool {
    std::fs::read_to_string(&c.log).is_ok_and(|l| l.contains(text))
}

#[tokio::test]
async fn one_replica_reconciles_and_the_standby_takes_over_when_it_dies() -> Result<()> {
    let client = Client::try_from(cleanroom_e2e::harness::config().await?)?;
    // The chart's Lease (its Role names it); the shared operator does not
    // elect, so only the two candidates use it.
    let ns = "cleanroom-system";
    let lease = "cleanroom-operator";
    let result = async {
        operator("stop")?;
        // A holder left by an earlier run must not count as one of ours.
        let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
        let _ = leases.delete(lease, &DeleteParams::default()).await;
        let mut guard = Guard {
            candidates: Vec::new(),
        };
        guard.candidates.push(start("a", lease, ns)?);
        guard.candidates.push(start("b", lease, ns)?);
        let first = wait_holder(&leases, lease, &["a", "b"], Duration::from_secs(30)).await?;
        let (holder_i, standby_i) = if first == "a" { (0, 1) } else { (1, 0) };

        // Give the metrics server a moment, then: 1 on the holder, 0 on the standby.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let c = &guard.candidates;
        ensure!(
            leader_metric(c[holder_i].port).await? == 1.0,
            "holder's cleanroom_leader"
        );
        ensure!(
            leader_metric(c[standby_i].port).await? == 0.0,
            "standby's cleanroom_leader"
        );

        with_fixture(|fx| {
            let guard = &mut guard;
            let leases = leases.clone();
            async move {
                let authz = fx.authorization().await?;
                let s1 = unique_name("e2e-lead");
                fx.create_scenario(&s1, scenario_spec(&authz)).await?;
                fx.wait_scenario(&s1, "Ready=True", common::T, |s| {
                    has_condition(s, "Ready", true)
                })
                .await?;
                let c = &guard.candidates;
                ensure!(
                    log_mentions(&c[holder_i], &s1),
                    "the holder never reconciled {s1}"
                );
                ensure!(
                    !log_mentions(&c[standby_i], &s1),
                    "the standby {} reconciled {s1}",
                    c[standby_i].identity
                );

                // Kill -9 the holder: no release, the lease must expire.
                guard.candidates[holder_i].child.kill()?;
                let killed = Instant::now();
                let standby = guard.candidates[standby_i].identity;
                let next = wait_holder(&leases, lease, &[standby], LEASE + MARGIN).await?;
                let took = killed.elapsed();
                eprintln!("{next} took the lease {took:?} after the holder was killed");
                ensure!(took <= LEASE + MARGIN, "takeover took {took:?}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                ensure!(leader_metric(guard.candidates[standby_i].port).await? == 1.0);

                let s2 = unique_name("e2e-lead");
                fx.create_scenario(&s2, scenario_spec(&authz)).await?;
                fx.wait_scenario(&s2, "Ready=True under the new leader", common::T, |s| {
                    has_condition(s, "Ready", true)
                })
                .await?;
                ensure!(
                    log_mentions(&guard.candidates[standby_i], &s2),
                    "the new leader never reconciled {s2}"
                );
                Ok(())
            }
        })
        .await
    }
    .await;
    let _ = Api::<Lease>::namespaced(client, ns)
        .delete(lease, &DeleteParams::default())
        .await;
    result
}
