//! `make bench-airlock`: how long an export takes through the airlock on the
//! local control plane, with the agent really running.
//!
//! One authorization (one reviewer, one approval) and one scenario; then:
//! a single large table (`--mb`, default 100 MB) and ten small files at
//! once, each from `Submitted` to checked (`InReview`, or `Blocked` when a
//! check fails: a 100 MB table is over the default size limit), and a
//! release of `--release-mb` of files from the approval to `Released`.
//! Prints the figures; asserts nothing (the e2e tests do).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use cleanroom::api::airlock::{Export, ExportPhase};
use cleanroom_e2e::harness::{client, config, unique_name};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const REVIEWER: &str = "reviewer@bureau.example";
const ANALYST: &str = "analyst@operator.example";
const WORKSPACE_UID: u32 = 65532;

#[derive(Parser, Debug)]
#[command(about = "Airlock latency and release throughput")]
struct Args {
    /// Size of the single large table, in MB.
    #[arg(long, default_value_t = 100)]
    mb: usize,
    /// Total size of the files released in the release measurement, in MB.
    #[arg(long, default_value_t = 105)]
    release_mb: usize,
    /// Give up on a step after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let admin = client().await?;
    let authz = unique_name("bench-airlock");
    let scenario = unique_name("bench-airlock");
    create(&admin, "Authorization", &authz, authorization()?).await?;
    create(&admin, "Scenario", &scenario, scenario_spec(&authz)).await?;
    let result = run(&admin, &args, &scenario).await;
    let _ = delete(&admin, "Scenario", &scenario).await;
    let _ = delete(&admin, "Authorization", &authz).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), "cleanroom-release");
    let _ = claims
        .delete(&format!("release-{authz}"), &DeleteParams::default())
        .await;
    result
}

async fn run(admin: &Client, args: &Args, scenario: &str) -> Result<()> {
    let ns = format!("cr-{scenario}");
    let outbox = outbox(admin, &ns, args.timeout).await?;
    let analyst = as_user(ANALYST).await?;

    write_table(&outbox.join("big.csv"), args.mb * 1_000_000)?;
    let (secs, checked) = until_checked(&analyst, &ns, &["big.csv"], args.timeout).await?;
    println!(
        "one {} MB table, Submitted to checked ({checked:?}): {secs:.1} s",
        args.mb
    );

    let names: Vec<String> = (0..10).map(|i| format!("small-{i}.csv")).collect();
    for n in &names {
        write_table(&outbox.join(n), 20_000)?;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (secs, checked) = until_checked(&analyst, &ns, &refs, args.timeout).await?;
    println!("ten files at once, Submitted to checked ({checked:?}): {secs:.1} s");

    // Release: files under the size limit, as many as make release_mb.
    let per_file = 15 * 1_000_000;
    let count = args.release_mb.div_ceil(15).max(1);
    let names: Vec<String> = (0..count).map(|i| format!("release-{i}.csv")).collect();
    for n in &names {
        write_table(&outbox.join(n), per_file.min(args.release_mb * 1_000_000))?;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (name, _) = submit(&analyst, &ns, &refs, "Other").await?;
    let e = wait(&analyst, &ns, &name, args.timeout, |e| {
        phase(e).is_some_and(|p| p == ExportPhase::InReview || p.is_final())
    })
    .await?;
    if phase(&e) != Some(ExportPhase::InReview) {
        bail!("the release files were not sent to review: {:?}", e.status);
    }
    let bytes: i64 = e
        .status
        .as_ref()
        .and_then(|s| s.sealed.as_ref())
        .map_or(0, |s| s.files.iter().map(|f| f.size).sum());
    let approved = Instant::now();
    review(&ns, &name).await?;
    let e = wait(&analyst, &ns, &name, args.timeout, |e| {
        phase(e).is_some_and(ExportPhase::is_final)
    })
    .await?;
    let secs = approved.elapsed().as_secs_f64();
    println!(
        "release of {:.1} MB ({:?}): approval to Released {secs:.1} s, {:.1} MB/s end to end (two volume moves, a copy with hashes checked on arrival)",
        bytes as f64 / 1e6,
        phase(&e),
        bytes as f64 / 1e6 / secs
    );
    Ok(())
}

/// Submits an export of `files` and times it from creation to a checked phase.
async fn until_checked(
    c: &Client,
    ns: &str,
    files: &[&str],
    timeout: u64,
) -> Result<(f64, Option<ExportPhase>)> {
    let (name, started) = submit(c, ns, files, "Table").await?;
    let e = wait(c, ns, &name, timeout, |e| {
        phase(e).is_some_and(|p| p == ExportPhase::InReview || p.is_final())
    })
    .await?;
    Ok((started.elapsed().as_secs_f64(), phase(&e)))
}

fn phase(e: &Export) -> Option<ExportPhase> {
    e.status.as_ref().and_then(|s| s.phase)
}

async fn submit(c: &Client, ns: &str, files: &[&str], kind: &str) -> Result<(String, Instant)> {
    let name = unique_name("bench");
    let files: Vec<Value> = files
        .iter()
        .map(|f| json!({"path": f, "kind": kind, "columns": {"keys": ["district"], "counts": ["n"]}}))
        .collect();
    let export: Export = serde_json::from_value(json!({
        "apiVersion": "cleanroom.io/v1alpha1", "kind": "Export",
        "metadata": {"name": name},
        "spec": {"requester": ANALYST, "files": files, "context": "bench", "controls": "bench"}
    }))?;
    let started = Instant::now();
    Api::<Export>::namespaced(c.clone(), ns)
        .create(&PostParams::default(), &export)
        .await?;
    Ok((name, started))
}

async fn wait(
    c: &Client,
    ns: &str,
    name: &str,
    timeout: u64,
    done: impl Fn(&Export) -> bool,
) -> Result<Export> {
    let api: Api<Export> = Api::namespaced(c.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let e = api.get(name).await?;
        if done(&e) {
            return Ok(e);
        }
        if Instant::now() > deadline {
            bail!(
                "export {name}: no result within {timeout} s: {:?}",
                e.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn review(ns: &str, export: &str) -> Result<()> {
    let c = as_user(REVIEWER).await?;
    let review: cleanroom::api::Review = serde_json::from_value(json!({
        "apiVersion": "cleanroom.io/v1alpha1", "kind": "Review",
        "metadata": {"name": unique_name("bench")},
        "spec": {"export": export, "reviewer": REVIEWER, "decision": "Approve", "comment": ""}
    }))?;
    Api::<cleanroom::api::Review>::namespaced(c, ns)
        .create(&PostParams::default(), &review)
        .await?;
    Ok(())
}

/// A table of districts and counts of at least 10, `bytes` long, written as
/// the workspace would.
fn write_table(path: &PathBuf, bytes: usize) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut written = out.write(b"district,n\n")?;
    let mut i = 0u64;
    while written < bytes {
        let line = format!("district-{i},{}\n", 10 + i % 990);
        out.write_all(line.as_bytes())?;
        written += line.len();
        i += 1;
    }
    out.flush()?;
    drop(out);
    std::os::unix::fs::chown(path, Some(WORKSPACE_UID), Some(WORKSPACE_UID))?;
    Ok(())
}

/// The scratch volume's `outbox` directory, once the scenario is Ready.
async fn outbox(admin: &Client, ns: &str, timeout: u64) -> Result<PathBuf> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let volume = loop {
        let bound = claims
            .get_opt("scratch")
            .await?
            .and_then(|c| c.spec?.volume_name);
        match bound {
            Some(v) => break v,
            None if Instant::now() > deadline => bail!("no scratch volume in {ns}"),
            None => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let pv = Api::<PersistentVolume>::all(admin.clone())
        .get(&volume)
        .await?;
    let root = PathBuf::from(
        pv.spec
            .and_then(|s| s.host_path)
            .context("not a hostPath volume")?
            .path,
    );
    let dir = root.join("outbox");
    std::fs::create_dir_all(&dir)?;
    std::os::unix::fs::chown(&root, Some(WORKSPACE_UID), Some(WORKSPACE_UID))?;
    std::os::unix::fs::chown(&dir, Some(WORKSPACE_UID), Some(WORKSPACE_UID))?;
    // The workspace must be Ready before anything is exported.
    let scenarios: Api<cleanroom::api::Scenario> = Api::all(admin.clone());
    let name = ns.trim_start_matches("cr-");
    while scenarios.get(name).await?.status.and_then(|s| s.phase)
        != Some(cleanroom::api::ScenarioPhase::Ready)
    {
        if Instant::now() > deadline {
            bail!("scenario {name} not Ready");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(dir)
}

async fn as_user(user: &str) -> Result<Client> {
    let mut c = config().await?;
    c.auth_info.impersonate = Some(user.into());
    c.auth_info.impersonate_groups = Some(vec!["system:authenticated".into()]);
    Ok(Client::try_from(c)?)
}

fn authorization() -> Result<Value> {
    let now = Timestamp::now();
    let day = k8s_openapi::jiff::SignedDuration::from_hours(24);
    Ok(json!({
        "operator": {"name": "Bench Data Operations Co., Ltd.", "creditCode": "91350100M000100Y43"},
        "agreementId": "BENCH-AIRLOCK",
        "validFrom": (now - day).to_string(),
        "validUntil": (now + day * 30).to_string(),
        "members": {"users": [ANALYST]},
        "quota": {"cpu": "8", "memory": "16Gi", "storage": "20Gi", "scenarios": 2},
        "review": {"approvals": 1, "reviewers": {"users": [REVIEWER]}},
    }))
}

fn scenario_spec(authz: &str) -> Value {
    json!({
        "authorization": authz,
        "purpose": "airlock figures",
        "workspace": {
            "image": "registry.example.com/acme/notebook:1.4",
            "command": ["sleep", "infinity"],
            "resources": {"cpu": "500m", "memory": "256Mi"},
            "scratch": "2Gi",
        },
        "members": {"users": [ANALYST]}
    })
}

fn api(c: &Client, kind: &str) -> Api<kube::api::DynamicObject> {
    let gvk = kube::core::GroupVersionKind::gvk("cleanroom.io", "v1alpha1", kind);
    Api::all_with(c.clone(), &kube::core::ApiResource::from_gvk(&gvk))
}

async fn create(c: &Client, kind: &str, name: &str, spec: Value) -> Result<()> {
    let object: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "cleanroom.io/v1alpha1", "kind": kind,
        "metadata": {"name": name}, "spec": spec
    }))?;
    api(c, kind).create(&PostParams::default(), &object).await?;
    Ok(())
}

async fn delete(c: &Client, kind: &str, name: &str) -> Result<()> {
    api(c, kind).delete(name, &DeleteParams::default()).await?;
    Ok(())
}
