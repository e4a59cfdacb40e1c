//! Signed heads against a real API server: the operator makes its signing
//! key under the chart's RBAC, publishes the public key, signs the head
//! (with an Event and a log line as outside copies) and reuses the key after
//! a restart. A copy of its ledger rewritten by the cluster admin (one
//! record's text changed, every hash after it recomputed) still passes the
//! plain hash-chain check, but fails `audit verify --public-key`, which
//! names the record from which on the chain is unproven.
//!
//! In its own test binary because it restarts the shared operator with a
//! short upkeep interval (CLEANROOM_AUDIT_UPKEEP_SECONDS), and starts it
//! again as usual however a test ends. The rewrite works on a copy in a
//! namespace of its own, never on the shared ledger. Needs the local control
//! plane and the binaries (`make e2e`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use cleanroom::audit::keys::{self, PUBLIC, SECRET};
use cleanroom::audit::record::{Record, hash};
use cleanroom::audit::signing::signed_head_of;
use cleanroom::audit::store;
use cleanroom::audit::{Action, Segment};
use cleanroom_e2e::harness::{cluster_dir, unique_name, with_namespace};
use common::{
    AUDIT_NAMESPACE, OPERATOR_USER, T, client_as, dataset_spec, ledger_records, operator,
    repo_root, run_cleanroom, with_fixture,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

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

/// The operator, restarted with an upkeep (verify, prune, sign) every 2 s.
fn signing_operator() -> Result<()> {
    let out = Command::new(repo_root().join("e2e/scripts/operator.sh"))
        .arg("restart")
        .env("CLEANROOM_AUDIT_UPKEEP_SECONDS", "2")
        .output()?;
    ensure!(
        out.status.success(),
        "operator.sh restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A file with the public key, removed when dropped.
struct KeyFile(std::path::PathBuf);

impl KeyFile {
    fn path(&self) -> Result<&str> {
        self.0.to_str().context("a temporary path in UTF-8")
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `cleanroom audit pubkey`, written to a file as an auditor keeps it.
fn public_key_file() -> Result<(String, KeyFile)> {
    let out = run_cleanroom(&["audit", "pubkey"])?;
    ensure!(out.status.success(), "audit pubkey: {}", text(&out));
    let key = String::from_utf8(out.stdout)?.trim().to_string();
    let file = KeyFile(std::env::temp_dir().join(unique_name("audit-pubkey")));
    std::fs::write(&file.0, format!("{key}\n"))?;
    Ok((key, file))
}

/// A new Dataset (one `created` record), and the signed head that covers
/// it, waited for: (the record's seq, the signed head).
async fn signed_change(fx: &common::Fixture) -> Result<(u64, Record)> {
    let name = unique_name("signed");
    let d = fx.create_dataset(&name, dataset_spec()).await?;
    let uid = d.metadata.uid.context("uid")?;
    let deadline = Instant::now() + T;
    loop {
        let records = ledger_records(&fx.client, AUDIT_NAMESPACE).await?;
        let created = records.iter().find(|r| r.uid == uid).map(|r| r.seq);
        let signed = records
            .iter()
            .rev()
            .find(|r| signed_head_of(r).is_some_and(|h| created.is_some_and(|c| h.seq >= c)));
        if let (Some(c), Some(s)) = (created, signed) {
            return Ok((c, s.clone()));
        }
        ensure!(
            Instant::now() < deadline,
            "no signed head over the record of Dataset {name} within {T:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_operator_publishes_its_key_signs_its_head_and_keeps_the_key_across_restarts()
-> Result<()> {
    let _one = OPERATOR.lock().await;
    let _comes_back = OperatorComesBack;
    signing_operator()?;
    with_fixture(|fx| async move {
        let (key, file) = public_key_file()?;
        ensure!(key.len() == 64, "a hex Ed25519 key: {key}");
        let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), AUDIT_NAMESPACE);
        let secret = secrets.get(SECRET).await?;
        ensure!(
            secret.immutable == Some(true),
            "the key's Secret is immutable"
        );
        ensure!(secret.type_.as_deref() == Some(keys::SECRET_TYPE));
        let signer = keys::signer_of(&secret).map_err(anyhow::Error::msg)?;
        ensure!(
            signer.public_hex() == key,
            "the published key is the Secret's"
        );

        let (seq, signed) = signed_change(&fx).await?;
        let head = signed_head_of(&signed).context("a signed head")?;
        ensure!(head.seq >= seq && head.public_key == key, "{signed:?}");
        let out = run_cleanroom(&["audit", "verify", "--public-key", file.path()?])?;
        ensure!(
            out.status.success(),
            "the operator's own chain: {}",
            text(&out)
        );
        ensure!(
            text(&out).contains("signed head(s) verify"),
            "{}",
            text(&out)
        );

        // The outside copies: an Event on the public key's ConfigMap, a log line.
        let events: Api<Event> = Api::namespaced(fx.client.clone(), AUDIT_NAMESPACE);
        let deadline = Instant::now() + T;
        while !events
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("SignedHead")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(PUBLIC)
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains(&head.signature))
            })
        {
            ensure!(
                Instant::now() < deadline,
                "no SignedHead Event for record {}",
                signed.seq
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let log = std::fs::read_to_string(cluster_dir().join("logs/operator.log"))?;
        ensure!(
            log.lines()
                .any(|l| l.contains("audit head signed") && l.contains(&head.signature)),
            "no log line with the signature of record {}",
            signed.seq
        );

        // A restarted operator signs with the same key.
        let uid = secret.uid();
        signing_operator()?;
        let (_, later) = signed_change(&fx).await?;
        ensure!(signed_head_of(&later).is_some_and(|h| h.public_key == key));
        ensure!(
            secrets.get(SECRET).await?.uid() == uid,
            "the Secret was replaced"
        );
        ensure!(public_key_file()?.0 == key, "the published key changed");
        Ok(())
    })
    .await
}

/// What a cluster admin without the key can do: edit record `seq` and
/// recompute every hash after it, segment annotations included.
fn rewrite(segments: &[Segment], seq: u64, from: &str, to: &str) -> Result<Vec<Segment>> {
    let mut running = segments.first().map(|s| s.prev.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for s in segments {
        let mut copy = Segment {
            prev: running.clone(),
            entries: Vec::new(),
            ..s.clone()
        };
        for (key, line) in s.sorted() {
            let mut r = Record::parse(line)?;
            if r.seq == seq {
                ensure!(line.contains(from), "record {seq} has no {from:?}");
                r = Record::parse(&line.replace(from, to))?;
            }
            r.prev = running;
            let line = r.line();
            running = hash(&line);
            copy.entries.push((key.to_string(), line));
        }
        copy.head = Some(running.clone());
        out.push(copy);
    }
    Ok(out)
}

/// Writes `segments` as the ledger of namespace `ns`.
async fn store_in(client: &Client, ns: &str, segments: &[Segment]) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for s in segments {
        api.create(&PostParams::default(), &store::to_configmap(ns, s))
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_chain_rewritten_by_the_cluster_admin_passes_the_hash_check_but_fails_with_the_key()
-> Result<()> {
    let _one = OPERATOR.lock().await;
    let _comes_back = OperatorComesBack;
    signing_operator()?;
    with_fixture(|fx| async move {
        // Two signed heads with a record between them: the one to rewrite.
        let (_, first) = signed_change(&fx).await?;
        let (target, second) = signed_change(&fx).await?;
        let proven_through = signed_head_of(&first).context("first")?.seq;
        ensure!(target > proven_through && second.seq > target);
        let (_, file) = public_key_file()?;
        let api: Api<ConfigMap> = Api::namespaced(fx.client.clone(), AUDIT_NAMESPACE);
        // Each record once (a compaction may be half done).
        let segments = cleanroom::audit::compact::covering(&store::segments(&api).await?);
        let records = ledger_records(&fx.client, AUDIT_NAMESPACE).await?;
        // The last signed head before the rewritten record still proves
        // what it covers; the first record after it is where proof stops.
        let last_proven = records
            .iter()
            .filter_map(|r| signed_head_of(r).filter(|h| h.seq < target).map(|h| h.seq))
            .max()
            .context("a signed head before the target")?;
        let unproven_from = records
            .iter()
            .find(|r| r.seq > last_proven && r.action != Action::SignedHead)
            .context("an unproven record")?
            .seq;

        let forged = rewrite(
            &segments,
            target,
            r#""action":"created""#,
            r#""action":"deleted""#,
        )?;
        with_namespace("audit-forged", &[], |client, ns| async move {
            store_in(&client, &ns, &forged).await?;
            let plain = run_cleanroom(&["audit", "verify", "--namespace", &ns])?;
            ensure!(
                plain.status.success(),
                "the rebuilt chain passes the hash check alone: {}",
                text(&plain)
            );
            let signed = run_cleanroom(&[
                "audit",
                "verify",
                "--namespace",
                &ns,
                "--public-key",
                file.path()?,
            ])?;
            let said = text(&signed);
            eprintln!("audit verify --public-key on the rebuilt chain:\n{said}");
            ensure!(signed.status.code() == Some(5), "exit 5: {said}");
            ensure!(
                said.contains(&format!("records from {unproven_from} on are unproven"))
                    && said.contains("changed after they were signed"),
                "names record {unproven_from} as the first unproven one: {said}"
            );
            Ok(())
        })
        .await
    })
    .await
}

/// Whether `result` was refused by RBAC (403).
fn forbidden<T>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(s)) if s.code == 403)
}

#[tokio::test]
async fn the_operator_reads_its_signing_key_by_name_and_no_other_secret() -> Result<()> {
    // Made by the shared operator at its start (under the chart's RBAC).
    let admin: Api<Secret> =
        Api::namespaced(cleanroom_e2e::harness::client().await?, AUDIT_NAMESPACE);
    let deadline = Instant::now() + T;
    while admin.get_opt(SECRET).await?.is_none() {
        ensure!(Instant::now() < deadline, "no Secret {SECRET}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let operator = client_as(
        OPERATOR_USER,
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:cleanroom-system",
        ],
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(operator, AUDIT_NAMESPACE);
    ensure!(
        secrets.get(SECRET).await.is_ok(),
        "the operator reads its key"
    );
    ensure!(
        forbidden(secrets.get("any-other-secret").await),
        "another Secret by name"
    );
    ensure!(
        forbidden(secrets.list(&ListParams::default()).await),
        "list Secrets"
    );
    ensure!(
        forbidden(secrets.delete(SECRET, &Default::default()).await),
        "delete its key"
    );
    let mut replaced = secrets.get(SECRET).await?;
    replaced.metadata.managed_fields = None;
    ensure!(
        forbidden(
            secrets
                .replace(SECRET, &PostParams::default(), &replaced)
                .await
        ),
        "replace its key"
    );
    Ok(())
}
