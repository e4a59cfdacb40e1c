//! `make bench`: many scenarios at once on the local control plane.
//!
//! Creates one authorization and N scenarios together, measures each
//! scenario's time from create to Ready, the operator's peak memory, then
//! brings the authorization's validUntil forward so that they all expire at
//! the same instant, and measures each one's time from validUntil to Closed
//! (teardown, including the real wipe of its volume).
//! Prints the figures; asserts nothing (the e2e tests do).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use cleanroom_e2e::harness::{client, cluster_dir};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Scenario throughput and teardown latency of the operator")]
struct Args {
    /// Scenarios created at once.
    #[arg(long, default_value_t = 300)]
    scenarios: usize,
    /// Once all are Ready, they expire together this many seconds later.
    #[arg(long, default_value_t = 10)]
    expire_in: i64,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("cleanroom.io", "v1alpha1", kind))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(name: &str, mut secs: Vec<f64>) {
    secs.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50={:.2}s p90={:.2}s p99={:.2}s max={:.2}s",
        secs.len(),
        percentile(&secs, 50.0),
        percentile(&secs, 90.0),
        percentile(&secs, 99.0),
        secs.last().copied().unwrap_or(f64::NAN)
    );
}

/// The operator's peak resident memory (VmHWM) in KiB, from its pid file.
fn operator_peak_rss_kib() -> Option<u64> {
    let pid = std::fs::read_to_string(cluster_dir().join("run/operator.pid")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The operator's count of API requests so far, scraped from its /metrics
/// (its address is the last one it logged; the shared instance picks a free port).
fn operator_api_requests() -> Option<f64> {
    use std::io::{Read, Write};
    let log = std::fs::read_to_string(cluster_dir().join("logs/operator.log")).ok()?;
    let addr = log
        .lines()
        .rev()
        .find(|l| l.contains("serving /healthz"))?
        .rsplit("addr=")
        .next()?
        .trim()
        .to_string();
    let mut stream = std::net::TcpStream::connect(&addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with("cleanroom_api_requests_total "))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits until `done(phase, object)` holds for every named scenario, recording
/// when each first did.
async fn watch_until(
    client: &Client,
    names: &[String],
    timeout: Duration,
    done: impl Fn(&DynamicObject) -> bool,
) -> Result<HashMap<String, Instant>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource("Scenario"));
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let wanted: std::collections::HashSet<&String> = names.iter().collect();
    let stream = watcher(api, watcher::Config::default().labels("bench=cleanroom"))
        .applied_objects()
        .boxed();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = stream;
    while seen.len() < names.len() {
        let next = tokio::time::timeout_at(deadline, stream.try_next()).await;
        let Ok(item) = next else {
            bail!(
                "only {} of {} scenarios got there within {timeout:?}",
                seen.len(),
                names.len()
            );
        };
        let Some(obj) = item? else {
            bail!("watch ended")
        };
        let name = obj.metadata.name.clone().unwrap_or_default();
        if wanted.contains(&name) && !seen.contains_key(&name) && done(&obj) {
            seen.insert(name, Instant::now());
        }
    }
    Ok(seen)
}

fn condition_true(obj: &DynamicObject, type_: &str) -> bool {
    obj.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == type_ && c["status"] == "True")
        })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = client().await?;
    let authorizations: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("Authorization"));
    let scenarios: Api<DynamicObject> = Api::all_with(client.clone(), &resource("Scenario"));
    let run = format!("{:x}", Timestamp::now().as_second() % 0xfffff);
    let authz_name = format!("bench-{run}");
    let n = args.scenarios;

    let now = Timestamp::now();
    // Far enough for any provisioning; brought forward once all are Ready.
    let valid_until = now + SignedDuration::from_hours(24);
    let authz: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "cleanroom.io/v1alpha1", "kind": "Authorization",
        "metadata": {"name": authz_name, "labels": {"bench": "cleanroom"}},
        "spec": {
            "operator": {"name": "Bench Co.", "creditCode": "91350100M000100Y43"},
            "agreementId": "BENCH",
            "validFrom": (now - SignedDuration::from_secs(3600)).to_string(),
            "validUntil": valid_until.to_string(),
            "members": {"users": ["analyst@bench.example"]},
            "quota": {"cpu": "1000", "memory": "4000Gi", "storage": "100Ti", "scenarios": 1000}
        }
    }))?;
    authorizations
        .create(&PostParams::default(), &authz)
        .await
        .context("creating the authorization")?;

    let names: Vec<String> = (0..n).map(|i| format!("bench-{run}-{i:04}")).collect();
    let requests_before = operator_api_requests();
    println!("creating {n} scenarios under {authz_name}");
    let started = Instant::now();
    let created: Vec<(String, Instant)> = stream::iter(names.clone())
        .map(|name| {
            let scenarios = scenarios.clone();
            let authz_name = authz_name.clone();
            async move {
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "cleanroom.io/v1alpha1", "kind": "Scenario",
                    "metadata": {"name": name, "labels": {"bench": "cleanroom"}},
                    "spec": {
                        "authorization": authz_name,
                        "purpose": "benchmark",
                        "workspace": {"image": "bench", "resources": {"cpu": "100m", "memory": "64Mi"}, "scratch": "1Mi"},
                        "members": {"users": ["analyst@bench.example"]}
                    }
                }))?;
                let at = Instant::now();
                scenarios.create(&PostParams::default(), &obj).await?;
                Ok::<_, anyhow::Error>((name, at))
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    let created: HashMap<String, Instant> = created.into_iter().collect();
    println!(
        "created {n} scenarios in {:.2}s",
        started.elapsed().as_secs_f64()
    );

    let timeout = Duration::from_secs(args.timeout);
    // Two figures: Provisioned is the operator's own work (every object
    // applied in order); Ready adds the cluster's (claim binding, scheduling,
    // the pod starting), which on the local control plane is bound by
    // kube-controller-manager's single volume-binding worker.
    let (provisioned, ready) = futures::try_join!(
        watch_until(&client, &names, timeout, |o| condition_true(
            o,
            "Provisioned"
        )),
        watch_until(&client, &names, timeout, |o| condition_true(o, "Ready")),
    )?;
    let per: Vec<f64> = names
        .iter()
        .filter_map(|n| {
            Some(
                provisioned
                    .get(n)?
                    .duration_since(*created.get(n)?)
                    .as_secs_f64(),
            )
        })
        .collect();
    summary("create -> Provisioned per scenario (operator)", per);
    let all_ready = started.elapsed();
    let per: Vec<f64> = names
        .iter()
        .filter_map(|n| Some(ready.get(n)?.duration_since(*created.get(n)?).as_secs_f64()))
        .collect();
    println!(
        "all {n} Ready {:.2}s after the first create",
        all_ready.as_secs_f64()
    );
    summary("create -> Ready per scenario", per);
    if let Some(kib) = operator_peak_rss_kib() {
        println!(
            "operator peak RSS after provisioning: {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    let requests_ready = operator_api_requests();
    if let (Some(a), Some(b)) = (requests_before, requests_ready) {
        println!(
            "operator API requests per scenario, create to Ready: {:.1}",
            (b - a) / n as f64
        );
    }

    let expiry = Timestamp::now() + SignedDuration::from_secs(args.expire_in);
    let patch = json!({"spec": {"validUntil": expiry.to_string()}});
    authorizations
        .patch(
            &authz_name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .context("bringing validUntil forward")?;
    println!(
        "all {n} expire together at {expiry} (in {}s)",
        args.expire_in
    );
    let expiry_instant = Instant::now() + expiry.duration_since(Timestamp::now()).unsigned_abs();
    let closed = watch_until(&client, &names, timeout, |o| {
        o.data["status"]["phase"] == "Closed"
    })
    .await?;
    let per: Vec<f64> = names
        .iter()
        .filter_map(|n| {
            Some(
                closed
                    .get(n)?
                    .saturating_duration_since(expiry_instant)
                    .as_secs_f64(),
            )
        })
        .collect();
    summary(
        "validUntil -> Closed (wiped, namespace gone) per scenario",
        per,
    );
    if let Some(kib) = operator_peak_rss_kib() {
        println!("operator peak RSS overall: {:.1} MiB", kib as f64 / 1024.0);
    }
    if let (Some(a), Some(b)) = (requests_ready, operator_api_requests()) {
        println!(
            "operator API requests per scenario, teardown: {:.1}",
            (b - a) / n as f64
        );
    }
    let wiped = scenarios
        .list(&ListParams::default().labels("bench=cleanroom"))
        .await?
        .items
        .iter()
        .filter(|s| names.contains(&s.metadata.name.clone().unwrap_or_default()))
        .filter(|s| {
            s.data["status"]["wipes"]
                .as_array()
                .is_some_and(|w| !w.is_empty())
        })
        .count();
    println!("scenarios with a wipe attestation: {wiped} of {n}");

    // Closed scenarios are records; the bench removes its own.
    for name in &names {
        let _ = scenarios.delete(name, &DeleteParams::default()).await;
    }
    let _ = authorizations
        .delete(&authz_name, &DeleteParams::default())
        .await;
    Ok(())
}
