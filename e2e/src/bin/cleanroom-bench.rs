//! `make bench`: many scenarios at once on the local control plane.
//!
//! First the floor: a plain client writes the objects of N workspaces (the
//! operator's own builders) with no operator, and its time is what the API
//! server and etcd need for those writes here ([`cleanroom_e2e::floor`]).
//! Then creates one authorization and N scenarios together, measures each
//! scenario's time from create to Provisioned (as a ratio to the floor) and
//! to Ready, the operator's API requests, peak memory and CPU, then brings
//! the authorization's validUntil forward so that they all expire at the
//! same instant, and measures each one's time from validUntil to Closed
//! (teardown, including the real wipe of its volume). etcd's own metrics
//! say how much was written. Prints the figures; asserts nothing (the e2e
//! tests do).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use cleanroom_e2e::harness::{client, cluster_dir};
use cleanroom_e2e::{etcd, floor};
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
    /// Bringing validUntil forward wakes every scenario (its expiry is in
    /// its status); the default leaves that wave time to pass, so that the
    /// figure is the expiry's own, as when validUntil was set long before.
    #[arg(long, default_value_t = 30)]
    expire_in: i64,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Workspaces the floor writes at a time (0: all at once, as the
    /// operator's controller works on every scenario at once).
    #[arg(long, default_value_t = 0)]
    floor_concurrency: usize,
    /// Skip the floor.
    #[arg(long)]
    no_floor: bool,
}

/// Objects a workspace needs that the operator writes for it (namespace,
/// policy, quota, limits, account, binding, claim, Deployment).
const OBJECTS: f64 = 8.0;

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

fn summary(name: &str, mut secs: Vec<f64>) -> f64 {
    secs.sort_by(f64::total_cmp);
    println!(
        "{name}: n={} p50={:.2}s p90={:.2}s p99={:.2}s max={:.2}s",
        secs.len(),
        percentile(&secs, 50.0),
        percentile(&secs, 90.0),
        percentile(&secs, 99.0),
        secs.last().copied().unwrap_or(f64::NAN)
    );
    percentile(&secs, 99.0)
}

/// The operator's CPU seconds so far (user and system), from its pid file.
fn operator_cpu_seconds() -> Option<f64> {
    let pid = std::fs::read_to_string(cluster_dir().join("run/operator.pid")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok()?;
    // Fields after the command (which may hold spaces): utime is the 14th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
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

/// The operator's count of API requests so far.
fn operator_api_requests() -> Option<f64> {
    Some(operator_requests()?.values().map(|(count, _)| count).sum())
}

/// One counter of the operator (summed over its labels).
fn operator_metric(name: &str) -> Option<f64> {
    let body = operator_scrape()?;
    let mut found = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if rest.starts_with(' ') || rest.starts_with('{') {
            let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// The operator's requests so far by "verb resource": how many, and the
/// seconds spent waiting for their answers.
type Requests = HashMap<String, (f64, f64)>;

fn operator_requests() -> Option<Requests> {
    let body = operator_scrape()?;
    let mut out = Requests::new();
    for line in body.lines() {
        let (slot, rest) = if let Some(r) = line.strip_prefix("cleanroom_api_requests_total{") {
            (0, r)
        } else if let Some(r) = line.strip_prefix("cleanroom_api_request_seconds_total{") {
            (1, r)
        } else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ")?;
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        let key = format!("{} {}", label("verb")?, label("resource")?);
        let value: f64 = value.parse().ok()?;
        let entry = out.entry(key).or_default();
        if slot == 0 {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    Some(out)
}

/// Prints where a phase's requests went, per scenario: by verb and
/// resource, with the mean wait for an answer, then writes and reads.
fn print_requests(phase: &str, before: &Requests, after: &Requests, n: usize) {
    let mut rows: Vec<(String, f64, f64)> = after
        .iter()
        .map(|(key, (count, secs))| {
            let (c0, s0) = before.get(key).copied().unwrap_or_default();
            (key.clone(), count - c0, secs - s0)
        })
        .filter(|(_, count, _)| *count > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let n = n as f64;
    let is_write = |key: &str| {
        ["create ", "update ", "patch ", "delete "]
            .iter()
            .any(|v| key.starts_with(v))
    };
    let writes: f64 = rows.iter().filter(|r| is_write(&r.0)).map(|r| r.1).sum();
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let waited: f64 = rows.iter().map(|r| r.2).sum();
    println!(
        "operator requests per scenario, {phase}: {:.1} writes, {:.1} reads and watches; {:.2} s waiting for answers per scenario",
        writes / n,
        (total - writes) / n,
        waited / n
    );
    for (key, count, secs) in rows.iter().take(14) {
        println!(
            "    {:>6.2}  {key:<40} mean answer {:>6.1} ms",
            count / n,
            if *count > 0.0 {
                secs / count * 1000.0
            } else {
                0.0
            }
        );
    }
}

/// The operator's /metrics (its address is the last one it logged; the
/// shared instance picks a free port).
fn operator_scrape() -> Option<String> {
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
    Some(body)
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

/// When each workspace (by namespace) lost its compute and its members'
/// binding: the deletions of its Deployment and RoleBinding, as watched.
type Gone = std::sync::Arc<std::sync::Mutex<HashMap<String, (Option<Instant>, Option<Instant>)>>>;

/// Watches the deletions of `K` objects named `name` in namespaces starting
/// with `prefix`, noting each in `gone` (slot 0: compute, 1: access).
fn watch_deletions<K>(
    client: &Client,
    prefix: String,
    name: &'static str,
    slot: usize,
    gone: Gone,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let cfg = watcher::Config::default().labels("app.kubernetes.io/managed-by=cleanroom");
    tokio::spawn(async move {
        let mut events = watcher(api, cfg).boxed();
        while let Some(Ok(event)) = events.next().await {
            let watcher::Event::Delete(obj) = event else {
                continue;
            };
            let meta = obj.meta();
            let ns = meta.namespace.clone().unwrap_or_default();
            if meta.name.as_deref() == Some(name) && ns.starts_with(&prefix) {
                let mut g = gone.lock().unwrap_or_else(|e| e.into_inner());
                let entry = g.entry(ns).or_default();
                let at = if slot == 0 {
                    &mut entry.0
                } else {
                    &mut entry.1
                };
                at.get_or_insert_with(Instant::now);
            }
        }
    })
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
    let spec = json!({
        "authorization": authz_name,
        "purpose": "benchmark",
        "workspace": {"image": "bench", "resources": {"cpu": "100m", "memory": "64Mi"}, "scratch": "1Mi"},
        "members": {"users": ["analyst@bench.example"]}
    });
    let etcd_start = etcd::written().await?;
    let floors = if args.no_floor {
        None
    } else {
        let concurrency = if args.floor_concurrency == 0 {
            n
        } else {
            args.floor_concurrency
        };
        let (each, wall) = floor::run(
            &client,
            &run,
            n,
            concurrency,
            &serde_json::from_value(spec.clone())?,
            cleanroom::workspace::access::DEFAULT_MEMBER_CLUSTER_ROLE,
        )
        .await?;
        println!(
            "floor: a plain client wrote the {OBJECTS} objects of {n} workspaces, {concurrency} at a time, in {:.2}s",
            wall.as_secs_f64()
        );
        let p99 = summary(
            "floor: first to last object per workspace (no operator)",
            each,
        );
        let (each, wall) = floor::stop(&client, &run, n).await?;
        println!(
            "floor of expiry: a plain client deleted the Deployment and members' binding of {n} workspaces at once in {:.2}s",
            wall.as_secs_f64()
        );
        let stop_p99 = summary(
            "floor of expiry: until both deletions were answered, per workspace (no operator)",
            each,
        );
        floor::clean(&client, &run, Duration::from_secs(args.timeout)).await?;
        Some((p99, stop_p99))
    };
    let etcd_before = etcd::written().await?;
    let cpu_before = operator_cpu_seconds();
    let audit_before = operator_metric("cleanroom_audit_records_total");

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
    let by_kind_before = operator_requests();
    println!("creating {n} scenarios under {authz_name}");
    let started = Instant::now();
    let created: Vec<(String, Instant)> = stream::iter(names.clone())
        .map(|name| {
            let scenarios = scenarios.clone();
            let spec = spec.clone();
            async move {
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "cleanroom.io/v1alpha1", "kind": "Scenario",
                    "metadata": {"name": name, "labels": {"bench": "cleanroom"}},
                    "spec": spec
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
    let provisioned_p99 = summary("create -> Provisioned per scenario (operator)", per);
    if let Some((floor, _)) = floors {
        println!(
            "create -> Provisioned p99 is {:.2}x the floor's p99 ({floor:.2}s)",
            provisioned_p99 / floor
        );
    }
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
    let by_kind_ready = operator_requests();
    if let (Some(a), Some(b)) = (&by_kind_before, &by_kind_ready) {
        print_requests("create to Ready", a, b, n);
    }
    let audit_ready = operator_metric("cleanroom_audit_records_total");
    if let (Some(a), Some(b)) = (requests_before, requests_ready) {
        let records = match (audit_before, audit_ready) {
            (Some(a), Some(b)) => (b - a) / n as f64,
            _ => f64::NAN,
        };
        println!(
            "operator API requests per scenario, create to Ready: {:.1} (reads, watches and writes), against {OBJECTS} objects to write and {records:.1} audit records (in batches)",
            (b - a) / n as f64
        );
    }
    if let Some(cpu) = operator_cpu_seconds().zip(cpu_before).map(|(b, a)| b - a) {
        println!("operator CPU, create to Ready: {cpu:.1} s");
    }

    // The security figure: from validUntil until compute and access are gone.
    let gone: Gone = Default::default();
    let prefix = format!("cr-bench-{run}-");
    let watches = [
        watch_deletions::<k8s_openapi::api::apps::v1::Deployment>(
            &client,
            prefix.clone(),
            "workspace",
            0,
            gone.clone(),
        ),
        watch_deletions::<k8s_openapi::api::rbac::v1::RoleBinding>(
            &client,
            prefix.clone(),
            "workspace-members",
            1,
            gone.clone(),
        ),
    ];
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
    let per_closed: Vec<f64> = names
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
    for w in &watches {
        w.abort();
    }
    let per: Vec<f64> = {
        let g = gone.lock().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .filter_map(|n| match g.get(&format!("cr-{n}"))? {
                (Some(compute), Some(access)) => Some(
                    (*compute.max(access))
                        .saturating_duration_since(expiry_instant)
                        .as_secs_f64(),
                ),
                _ => None,
            })
            .collect()
    };
    let gone_p99 = summary(
        "validUntil -> compute and access gone (Deployment and members' binding deleted) per scenario",
        per,
    );
    if let Some((_, stop_floor)) = floors {
        println!(
            "validUntil -> compute and access gone p99 is {:.2}x the floor of expiry's p99 ({stop_floor:.2}s)",
            gone_p99 / stop_floor
        );
    }
    summary(
        "validUntil -> Closed (wiped, namespace gone) per scenario",
        per_closed,
    );
    if let Some(kib) = operator_peak_rss_kib() {
        println!("operator peak RSS overall: {:.1} MiB", kib as f64 / 1024.0);
    }
    if let (Some(a), Some(b)) = (&by_kind_ready, &operator_requests()) {
        print_requests("teardown", a, b, n);
    }
    if let (Some(a), Some(b)) = (requests_ready, operator_api_requests()) {
        println!(
            "operator API requests per scenario, teardown: {:.1}",
            (b - a) / n as f64
        );
    }
    if let Some(cpu) = operator_cpu_seconds().zip(cpu_before).map(|(b, a)| b - a) {
        println!("operator CPU, the whole run: {cpu:.1} s");
    }
    let etcd_after = etcd::written().await?;
    let run_written = etcd_before.delta(&etcd_after);
    let records = match (
        audit_before,
        operator_metric("cleanroom_audit_records_total"),
    ) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "etcd: database {:.1} MiB before the floor, {:.1} MiB before the operator's run, {:.1} MiB after; \
         the operator's run wrote {:.1} MiB to etcd's log ({:.0} KiB per scenario, every object, status, Event and audit record included) for {records:.0} audit records \
         (make bench-audit measures the ledger's own bytes per record)",
        mib(etcd_start.db_bytes),
        mib(etcd_before.db_bytes),
        mib(etcd_after.db_bytes),
        mib(run_written.wal_bytes),
        run_written.wal_bytes / 1024.0 / n as f64,
    );
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
