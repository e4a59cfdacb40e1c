//! `make bench-audit`: the audit ledger against the local control plane.
//!
//! In a namespace of its own: appends records one per write (what a single
//! status change costs), then in batches, and prints records per second and
//! bytes per record, and how many bytes etcd itself wrote to its log per
//! record (its own metrics, with the compaction running, as in the
//! operator); then fills a ledger of `--verify-records` records and
//! times `cleanroom audit verify` on it (reading every segment through the
//! API and checking every hash). Prints the figures; asserts nothing (the
//! e2e tests do).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use cleanroom::audit::{Action, Draft, Ledger, Limits};
use cleanroom_e2e::etcd;
use cleanroom_e2e::harness::{client, cluster_dir, unique_name};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Audit ledger throughput, record size and verification time")]
struct Args {
    /// Records appended one per write.
    #[arg(long, default_value_t = 1000)]
    single: u64,
    /// Records per write in the batched run.
    #[arg(long, default_value_t = 32)]
    batch: u64,
    /// Records in the ledger that is verified.
    #[arg(long, default_value_t = 100_000)]
    verify_records: u64,
    /// The `cleanroom` binary to time.
    #[arg(long, default_value = "target/release/cleanroom")]
    cleanroom: String,
}

/// A record like the operator's: a suspension with a reason and before/after.
fn draft(i: u64) -> Draft {
    Draft {
        actor: "alice@acme.example".into(),
        kind: "Scenario".into(),
        name: format!("elderly-care-demand-{i}"),
        uid: format!("6f1c2b3a-9d7e-4c21-8a55-{i:012}"),
        generation: Some(3),
        authorization: Some("acme-analytics".into()),
        action: Action::Suspended,
        reason: Some("audit finding 7: export of intermediate tables under review".into()),
        before: Some(json!({"phase": "Ready"})),
        after: Some(json!({"phase": "Suspended"})),
        key: format!("6f1c2b3a-9d7e-4c21-8a55-{i:012}/suspended/2026-03-01T08:00:00Z"),
    }
}

async fn fill(ledger: &Ledger, from: u64, count: u64, batch: u64) -> Result<f64> {
    let started = Instant::now();
    let mut i = from;
    while i < from + count {
        let n = batch.min(from + count - i);
        let written = ledger.append((i..i + n).map(draft).collect()).await?;
        ensure!(written.len() as u64 == n, "wrote {} of {n}", written.len());
        i += n;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// What etcd wrote for `count` records appended one per write, the ledger's
/// compaction running beside it, against what etcd writes while idle.
async fn etcd_per_record(client: &Client, ns: &str, count: u64) -> Result<()> {
    // Whole segments: every record both created in its batch and compacted.
    let per = Limits::default().records as u64;
    let count = count.div_ceil(per) * per;
    let idle_for = Duration::from_secs(3);
    let idle = etcd::written().await?;
    tokio::time::sleep(idle_for).await;
    let idle = idle.delta(&etcd::written().await?);
    let ledger = Arc::new(Ledger::new(client.clone(), ns));
    let compactor = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.compactor().await }
    });
    let before = etcd::written().await?;
    let started = Instant::now();
    fill(&ledger, 0, count, 1).await?;
    while ledger.compact().await?.is_some() {}
    let took = started.elapsed();
    let run = before.delta(&etcd::written().await?);
    compactor.abort();
    let (bytes, records) = segment_bytes(client, ns).await?;
    let record = bytes as f64 / records as f64;
    let noise = idle.wal_bytes * took.as_secs_f64() / idle_for.as_secs_f64();
    let per = (run.wal_bytes - noise) / count as f64;
    println!(
        "etcd, one record per write ({count} records in {:.1} s): {:.0} bytes written to its WAL per record, {:.1}x the record's own {record:.0} bytes \
         ({:.0} bytes/record before subtracting the idle cluster's {:.0} bytes/s); {:.2} puts per record; database file {:+.1} MiB",
        took.as_secs_f64(),
        per,
        per / record,
        run.wal_bytes / count as f64,
        idle.wal_bytes / idle_for.as_secs_f64(),
        run.puts / count as f64,
        run.db_bytes / (1024.0 * 1024.0),
    );
    Ok(())
}

/// Bytes of the records stored (each once) and how many there are.
async fn segment_bytes(client: &Client, ns: &str) -> Result<(usize, u64)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let segments = cleanroom::audit::store::segments(&api).await?;
    let lines = cleanroom::audit::chain::lines(&segments);
    Ok((lines.iter().map(|l| l.len() + 12).sum(), lines.len() as u64))
}

async fn with_namespace(
    client: &Client,
    body: impl AsyncFnOnce(String) -> Result<()>,
) -> Result<()> {
    let ns = unique_name("bench-audit");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.clone()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await?;
    let result = body(ns.clone()).await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    result
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = client().await?;

    with_namespace(&client, async |ns| {
        etcd_per_record(&client, &ns, args.single).await
    })
    .await?;

    with_namespace(&client, async |ns| {
        let ledger = Ledger::new(client.clone(), &ns);
        let single = fill(&ledger, 0, args.single, 1).await?;
        let (bytes, records) = segment_bytes(&client, &ns).await?;
        println!(
            "ledger, one record per write: {single:.0} records/s over {} records; {:.0} bytes per record stored ({} segments of at most {} records / {} KiB)",
            args.single,
            bytes as f64 / records as f64,
            bytes.div_ceil(Limits::default().bytes),
            Limits::default().records,
            Limits::default().bytes / 1024
        );
        let batched = fill(&ledger, args.single, args.single * 4, args.batch).await?;
        println!("ledger, {} records per write: {batched:.0} records/s", args.batch);
        Ok(())
    })
    .await?;

    with_namespace(&client, async |ns| {
        let ledger = Ledger::new(client.clone(), &ns);
        let per = Limits::default().records as u64;
        let rate = fill(&ledger, 0, args.verify_records, per).await?;
        let (bytes, records) = segment_bytes(&client, &ns).await?;
        println!(
            "filled a ledger of {records} records ({:.1} MiB in segments) at {rate:.0} records/s in batches of {per}",
            bytes as f64 / (1024.0 * 1024.0)
        );
        let started = Instant::now();
        let out = std::process::Command::new(&args.cleanroom)
            .args(["audit", "verify", "--namespace", &ns])
            .env("KUBECONFIG", cluster_dir().join("kubeconfig"))
            .output()
            .with_context(|| format!("running {}", args.cleanroom))?;
        let took = started.elapsed();
        ensure!(
            out.status.success(),
            "verify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "cleanroom audit verify of {records} records: {:.2} s (read through the API and check); {}",
            took.as_secs_f64(),
            String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default()
        );
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let started = Instant::now();
        let segments = cleanroom::audit::store::segments(&api).await?;
        let read = started.elapsed();
        let started = Instant::now();
        let summary = cleanroom::audit::verify(cleanroom::audit::store::PREFIX, &segments)
            .map_err(|b| anyhow::anyhow!("{b}"))?;
        println!(
            "  of which: read {:.2} s, hash and check {} records {:.2} s",
            read.as_secs_f64(),
            summary.records,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
    .await
}
