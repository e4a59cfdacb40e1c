//! The audit ledger against a real API server: a scenario's whole life is
//! recorded in order, once, with Events; `cleanroom audit verify` passes on
//! the shared ledger and fails, naming the place, on a ledger whose
//! ConfigMaps were edited, cut, swapped or lost; pruning keeps it verifiable.
//!
//! The tamper and pruning tests work on ledgers of their own, in namespaces
//! of their own (written through the same library the operator uses), so
//! that they can run in parallel with each other and never disturb the
//! shared operator's ledger in `cleanroom-system`. Needs the local control
//! plane, the operator (`make e2e`) and the binary.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cleanroom::api::ScenarioPhase;
use cleanroom::audit::record::hash;
use cleanroom::audit::{Action, Draft, Form, Ledger, Limits, Segment, store};
use cleanroom::controller::prune_as_of;
use cleanroom_e2e::harness::{wait_gone, with_namespace};
use common::{AUDIT_NAMESPACE, T, ledger_records, phase, records_of, run_cleanroom, with_fixture};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cleanroom audit verify` on `ns`: (exit code, stdout).
fn verify_cli(ns: &str) -> Result<(i32, String)> {
    let out = run_cleanroom(&["audit", "verify", "--namespace", ns])?;
    Ok((
        out.status.code().unwrap_or(-1),
        text(&out.stdout) + &text(&out.stderr),
    ))
}

/// The user the admin kubeconfig authenticates as.
async fn admin_user(client: &Client) -> Result<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .context("no user name in the SelfSubjectReview")
}

#[tokio::test]
async fn a_scenario_life_is_recorded_once_in_order_with_events_and_the_chain_verifies() -> Result<()>
{
    with_fixture(|fx| async move {
        let admin = admin_user(&fx.client).await?;
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let name = s.name_any();
        let uid = s.metadata.uid.clone().context("uid")?;

        let ok = |args: &[&str]| -> Result<()> {
            let out = run_cleanroom(args)?;
            ensure!(
                out.status.success(),
                "cleanroom {args:?}: {}",
                text(&out.stderr)
            );
            Ok(())
        };
        // Twice, within a second or within minutes: each suspension and
        // resumption is a record of its own, with an Event of its own.
        for finding in ["audit finding 7", "audit finding 8"] {
            ok(&["suspend", &name, "--reason", finding])?;
            fx.wait_scenario(&name, "phase Suspended", T, |s| {
                phase(s) == Some(ScenarioPhase::Suspended)
            })
            .await?;
            ok(&["resume", &name])?;
            fx.wait_scenario(&name, "Ready again", T, |s| {
                phase(s) == Some(ScenarioPhase::Ready)
            })
            .await?;
        }
        ok(&["revoke", &name, "--reason", "purpose fulfilled"])?;
        fx.wait_scenario(&name, "phase Closed", T, |s| {
            phase(s) == Some(ScenarioPhase::Closed)
        })
        .await?;

        let records = records_of(&fx.client, &uid).await?;
        let actions: Vec<Action> = records.iter().map(|r| r.action).collect();
        ensure!(
            actions
                == [
                    Action::Created,
                    Action::MemberGranted,
                    Action::Provisioned,
                    Action::DataPrepared,
                    Action::Suspended,
                    Action::Resumed,
                    Action::Suspended,
                    Action::Resumed,
                    Action::Revoked,
                    Action::Wiped,
                    Action::Closed,
                ],
            "records of {name}: {actions:?}"
        );
        ensure!(
            records.windows(2).all(|w| w[0].seq < w[1].seq),
            "in sequence order"
        );
        let by = |a: Action| records.iter().find(|r| r.action == a).context("record");
        // The person who asked, from the verbs' stamp; the operator for its own work.
        for a in [Action::Suspended, Action::Resumed, Action::Revoked] {
            ensure!(
                by(a)?.actor == admin,
                "{a:?} by {}, not {admin}",
                by(a)?.actor
            );
        }
        for a in [
            Action::Provisioned,
            Action::DataPrepared,
            Action::Wiped,
            Action::Closed,
        ] {
            ensure!(
                by(a)?.actor == "cleanroom-operator",
                "{a:?} by {}",
                by(a)?.actor
            );
        }
        ensure!(by(Action::Suspended)?.reason.as_deref() == Some("audit finding 7"));
        ensure!(by(Action::MemberGranted)?.after == Some(json!({"user": common::ALICE})));
        let wiped = by(Action::Wiped)?.after.clone().context("attestation")?;
        ensure!(
            wiped["claim"] == "scratch" && wiped["digest"].as_str().is_some_and(|d| d.len() == 64)
        );
        ensure!(
            records
                .iter()
                .all(|r| r.authorization.as_deref() == Some(authz.as_str())),
            "every record names the authorization"
        );

        // The authorization's own records.
        let a = fx.authorizations().get(&authz).await?;
        let a_records = records_of(&fx.client, &a.metadata.uid.context("uid")?).await?;
        ensure!(
            a_records.iter().map(|r| r.action).collect::<Vec<_>>()
                == [Action::Created, Action::MemberGranted],
            "{a_records:?}"
        );

        // A second copy as Events on the scenario (cluster-scoped: in
        // `default`): one per record, its note naming the record's number,
        // the second suspension's as well as the first's.
        let events: Api<Event> = Api::namespaced(fx.client.clone(), "default");
        let mut reasons = HashSet::new();
        let mut unannounced = Vec::new();
        for _ in 0..50 {
            let mine: Vec<Event> = events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(&uid))
                .collect();
            reasons = mine.iter().filter_map(|e| e.reason.clone()).collect();
            let notes: Vec<&str> = mine.iter().filter_map(|e| e.note.as_deref()).collect();
            unannounced = records
                .iter()
                .map(|r| r.seq)
                .filter(|seq| {
                    let head = format!("audit #{seq} ");
                    !notes.iter().any(|n| n.starts_with(&head))
                })
                .collect();
            if unannounced.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(
            unannounced.is_empty(),
            "records of {name} with no Event of their own: {unannounced:?}"
        );
        for want in [
            "Created",
            "Provisioned",
            "DataPrepared",
            "Suspended",
            "Resumed",
            "Revoked",
            "Wiped",
            "Closed",
        ] {
            ensure!(
                reasons.contains(want),
                "no {want} Event on {name}: {reasons:?}"
            );
        }

        // audit show filters by object and action.
        let out = run_cleanroom(&[
            "audit", "show", "--name", &name, "--action", "wiped", "-o", "json",
        ])?;
        ensure!(out.status.success(), "{}", text(&out.stderr));
        let shown: Vec<Value> = serde_json::from_slice(&out.stdout)?;
        ensure!(
            shown.len() == 1 && shown[0]["action"] == "wiped",
            "{shown:?}"
        );

        // The report counts this life.
        let out = run_cleanroom(&["report", "--since", "2000-01-01", "-o", "json"])?;
        ensure!(out.status.success(), "{}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout)?;
        let mine = report["authorizations"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == authz.as_str()))
            .context("authorization in the report")?;
        ensure!(
            mine["suspensions"] == 2 && mine["revocations"] == 1 && mine["wipes"] == 1,
            "{mine}"
        );
        ensure!(report["auditChainIntact"] == true, "{report}");

        let (code, out) = verify_cli(AUDIT_NAMESPACE)?;
        ensure!(
            code == 0 && out.starts_with("intact:"),
            "verify: {code} {out}"
        );
        Ok(())
    })
    .await
}

/// A record for a ledger of the tests' own.
fn draft(i: u64) -> Draft {
    Draft {
        actor: "e2e".into(),
        kind: "Scenario".into(),
        name: format!("s{i}"),
        uid: format!("u{i}"),
        generation: Some(1),
        authorization: None,
        action: Action::Provisioned,
        reason: None,
        before: None,
        after: Some(json!({"phase": "Ready"})),
        key: format!("u{i}/provisioned"),
    }
}

/// A ledger in `ns` whose segments hold 4 records (tests compact by hand).
fn ledger_of_fours(client: &Client, ns: &str) -> Ledger {
    Ledger::new(client.clone(), ns).with_limits(Limits {
        records: 4,
        bytes: 512 * 1024,
    })
}

/// The names of the ledger's ConfigMaps in `ns`, sorted.
async fn pieces(client: &Client, ns: &str) -> Result<Vec<String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = store::list(&api)
        .await?
        .iter()
        .map(|cm| cm.name_any())
        .collect();
    names.sort();
    Ok(names)
}

/// A ledger of 10 records, one batch per append, compacted into segments
/// of 4 (records 1-4 and 5-8) with batches 9 and 10 left: verified by the CLI.
async fn small_ledger(client: &Client, ns: &str) -> Result<Ledger> {
    let ledger = ledger_of_fours(client, ns);
    for i in 1..=10 {
        ledger.append(vec![draft(i)]).await?;
    }
    // The same record again (a retry) is not written twice.
    ensure!(ledger.append(vec![draft(3)]).await?.is_empty());
    while ledger.compact().await?.is_some() {}
    ensure!(
        pieces(client, ns).await?
            == [
                "cleanroom-audit-b-000000000009",
                "cleanroom-audit-b-000000000010",
                "cleanroom-audit-s-000000000001",
                "cleanroom-audit-s-000000000005",
            ],
        "compacted: {:?}",
        pieces(client, ns).await?
    );
    let (code, out) = verify_cli(ns)?;
    ensure!(code == 0, "the fresh ledger verifies: {out}");
    ensure!(
        out.contains("10 records in 2 segments and 2 batches"),
        "{out}"
    );
    Ok(ledger)
}

/// Replaces piece `name` of the ledger in `ns` as a cluster admin would:
/// an immutable ConfigMap cannot be updated, so delete and create.
async fn rewrite(
    client: &Client,
    ns: &str,
    name: &str,
    change: impl FnOnce(&mut std::collections::BTreeMap<String, String>),
) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut cm = api.get(name).await?;
    change(cm.data.get_or_insert_with(Default::default));
    api.delete(name, &DeleteParams::default()).await?;
    cm.metadata.resource_version = None;
    cm.metadata.uid = None;
    cm.metadata.creation_timestamp = None;
    cm.metadata.managed_fields = None;
    api.create(&PostParams::default(), &cm).await?;
    Ok(())
}

/// Runs `tamper` on a fresh ledger and expects `audit verify` to exit 5
/// naming `segment` and `record`.
async fn tampered_ledger_fails_at(
    tamper: impl AsyncFnOnce(&Client, &str) -> Result<()>,
    segment: &str,
    record: Option<&str>,
    problem: &str,
) -> Result<()> {
    with_namespace("e2e-audit", &[], |client, ns| async move {
        small_ledger(&client, &ns).await?;
        tamper(&client, &ns).await?;
        let (code, out) = verify_cli(&ns)?;
        ensure!(code == 5, "verify exited {code}, not 5: {out}");
        ensure!(
            out.contains(&format!("segment {segment}")),
            "names {segment}: {out}"
        );
        if let Some(r) = record {
            ensure!(
                out.contains(&format!("record {r}")),
                "names record {r}: {out}"
            );
        }
        ensure!(out.contains(problem), "says {problem:?}: {out}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn editing_one_record_fails_verification_and_names_it() -> Result<()> {
    tampered_ledger_fails_at(
        async |client, ns| {
            rewrite(client, ns, "cleanroom-audit-s-000000000005", |data| {
                let line = data.get_mut("000000000006").expect("record 6");
                *line = line.replace("\"s6\"", "\"s7\"");
            })
            .await
        },
        "cleanroom-audit-s-000000000005",
        Some("000000000006"),
        "edited",
    )
    .await
}

#[tokio::test]
async fn editing_the_record_of_a_batch_fails_verification_and_names_it() -> Result<()> {
    tampered_ledger_fails_at(
        async |client, ns| {
            rewrite(client, ns, "cleanroom-audit-b-000000000009", |data| {
                let line = data.get_mut("000000000009").expect("record 9");
                *line = line.replace("\"s9\"", "\"s1\"");
            })
            .await
        },
        "cleanroom-audit-b-000000000009",
        Some("000000000009"),
        "edited",
    )
    .await
}

#[tokio::test]
async fn deleting_one_record_fails_verification_and_names_it() -> Result<()> {
    tampered_ledger_fails_at(
        async |client, ns| {
            rewrite(client, ns, "cleanroom-audit-s-000000000005", |data| {
                data.remove("000000000006");
            })
            .await
        },
        "cleanroom-audit-s-000000000005",
        Some("000000000006"),
        "missing",
    )
    .await
}

#[tokio::test]
async fn swapping_two_records_fails_verification_and_names_them() -> Result<()> {
    tampered_ledger_fails_at(
        async |client, ns| {
            rewrite(client, ns, "cleanroom-audit-s-000000000001", |data| {
                let a = data.remove("000000000002").expect("2");
                let b = data.remove("000000000003").expect("3");
                data.insert("000000000002".into(), b);
                data.insert("000000000003".into(), a);
            })
            .await
        },
        "cleanroom-audit-s-000000000001",
        Some("000000000002"),
        "swapped",
    )
    .await
}

#[tokio::test]
async fn a_missing_segment_fails_verification_and_is_named() -> Result<()> {
    tampered_ledger_fails_at(
        async |client, ns| {
            Api::<ConfigMap>::namespaced(client.clone(), ns)
                .delete("cleanroom-audit-s-000000000005", &DeleteParams::default())
                .await?;
            Ok(())
        },
        "cleanroom-audit-s-000000000005",
        Some("000000000005"),
        "records 5 to 8 are missing",
    )
    .await
}

#[tokio::test]
async fn a_missing_batch_fails_verification_and_is_named() -> Result<()> {
    tampered_ledger_fails_at(
        async |client, ns| {
            Api::<ConfigMap>::namespaced(client.clone(), ns)
                .delete("cleanroom-audit-b-000000000009", &DeleteParams::default())
                .await?;
            Ok(())
        },
        "cleanroom-audit-s-000000000009 or cleanroom-audit-b-000000000009",
        Some("000000000009"),
        "records 9 to 9 are missing",
    )
    .await
}

#[tokio::test]
async fn pruning_past_retention_leaves_a_checkpoint_and_a_verifiable_chain() -> Result<()> {
    with_namespace("e2e-audit", &[], |client, ns| async move {
        let ledger = small_ledger(&client, &ns).await?;
        let now = Timestamp::now();
        let days = |n: i64| SignedDuration::from_hours(24 * n);
        // The floor: 179 days on, nothing may go, whatever is configured.
        let early = prune_as_of(&client, &ledger, now.checked_add(days(179))?).await?;
        ensure!(
            early.as_ref().is_ok_and(|p| p.segments.is_empty()),
            "pruned before 180 days: {early:?}"
        );
        // Far beyond any retention (at most 36500 days): the two sealed
        // segments go, the newest stays.
        let late = now.checked_add(days(36_600))?;
        let pruned = prune_as_of(&client, &ledger, late)
            .await?
            .map_err(|b| anyhow::anyhow!("refused: {b}"))?;
        ensure!(
            pruned.segments
                == [
                    "cleanroom-audit-s-000000000001",
                    "cleanroom-audit-s-000000000005"
                ],
            "{pruned:?}"
        );
        ensure!(pruned.checkpoint == Some(11), "{pruned:?}");
        let (code, out) = verify_cli(&ns)?;
        ensure!(code == 0, "the pruned chain verifies: {out}");
        ensure!(
            out.contains("sequence 9..11") && out.contains("1 checkpoint"),
            "{out}"
        );
        let records = ledger_records(&client, &ns).await?;
        let checkpoint = records.last().context("records")?;
        ensure!(checkpoint.action == Action::Checkpoint);
        ensure!(
            checkpoint
                .after
                .as_ref()
                .and_then(|a| a.get("prunedThroughSeq"))
                == Some(&json!(8)),
            "{checkpoint:?}"
        );
        // Pruning again changes nothing: batches are never pruned.
        let again = prune_as_of(&client, &ledger, late).await?;
        ensure!(again.is_ok_and(|p| p.segments.is_empty()));
        // Appending goes on after the pruning, from the same head.
        ledger.append(vec![draft(12)]).await?;
        ledger.append(vec![draft(13)]).await?;
        let (code, out) = verify_cli(&ns)?;
        ensure!(code == 0 && out.contains("sequence 9..13"), "{out}");
        // Deleting a batch by hand is not covered by any checkpoint and is caught.
        Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .delete("cleanroom-audit-b-000000000009", &DeleteParams::default())
            .await?;
        let (code, out) = verify_cli(&ns)?;
        ensure!(
            code == 5 && out.contains("records 1 to 9 are missing"),
            "{code} {out}"
        );
        Ok(())
    })
    .await
}

/// The copy of batches 1-4 a compaction creates before it deletes them.
async fn segment_of_first_four(client: &Client, ns: &str) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let batches: Vec<_> = store::segments(&api)
        .await?
        .into_iter()
        .filter(|s| s.first <= 4)
        .collect();
    ensure!(batches.len() == 4, "batches 1-4: {batches:?}");
    let segment = cleanroom::audit::compact::merged(&batches);
    api.create(&PostParams::default(), &store::to_configmap(ns, &segment))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_compaction_interrupted_after_the_segment_is_finished_after_a_restart() -> Result<()> {
    with_namespace("e2e-audit", &[], |client, ns| async move {
        let ledger = ledger_of_fours(&client, &ns);
        for i in 1..=6 {
            ledger.append(vec![draft(i)]).await?;
        }
        // Killed right after creating the segment: its batches are still there.
        segment_of_first_four(&client, &ns).await?;
        drop(ledger);
        let (code, out) = verify_cli(&ns)?;
        ensure!(
            code == 0,
            "segment and its batches side by side verify: {out}"
        );
        ensure!(
            out.contains("6 records in 1 segments and 6 batches"),
            "{out}"
        );
        let once: Vec<u64> = ledger_records(&client, &ns)
            .await?
            .iter()
            .map(|r| r.seq)
            .collect();
        ensure!(
            once == [1, 2, 3, 4, 5, 6],
            "each record read once: {once:?}"
        );

        // The operator restarted there: it loads the ledger, sees the
        // compaction unfinished and finishes it in the background.
        let restarted = std::sync::Arc::new(ledger_of_fours(&client, &ns));
        ensure!(restarted.load().await?.is_ok(), "the chain loads intact");
        let compactor = tokio::spawn({
            let l = restarted.clone();
            async move { l.compactor().await }
        });
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        for i in 1..=4 {
            let batch = format!("cleanroom-audit-b-{i:012}");
            let gone = wait_gone(&api, &batch, T).await;
            if gone.is_err() {
                compactor.abort();
            }
            gone?;
        }
        compactor.abort();
        let left = pieces(&client, &ns).await?;
        ensure!(
            left == [
                "cleanroom-audit-b-000000000005",
                "cleanroom-audit-b-000000000006",
                "cleanroom-audit-s-000000000001",
            ],
            "{left:?}"
        );
        // It goes on from the same head, and no record was written twice.
        ensure!(restarted.append(vec![draft(3)]).await?.is_empty());
        let written = restarted.append(vec![draft(7)]).await?;
        ensure!(written.first().map(|r| r.seq) == Some(7), "{written:?}");
        let (code, out) = verify_cli(&ns)?;
        ensure!(
            code == 0 && out.contains("7 records in 1 segments and 3 batches"),
            "{out}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_batch_that_disagrees_with_its_segment_fails_verification() -> Result<()> {
    tampered_ledger_fails_at(
        async |client, ns| {
            // Batch 2, compacted away, made again with record 2 edited (and
            // its links recomputed): two copies of record 2 that differ.
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            let segment = api.get("cleanroom-audit-s-000000000001").await?;
            let data = segment.data.context("segment data")?;
            let line = |k: &str| data.get(k).cloned().context("record");
            let edited = line("000000000002")?.replace("\"s2\"", "\"s9\"");
            let forged = Segment {
                name: String::new(),
                form: Form::Batch,
                first: 2,
                prev: hash(&line("000000000001")?),
                head: Some(hash(&edited)),
                sealed: true,
                entries: vec![("000000000002".into(), edited)],
            };
            api.create(&PostParams::default(), &store::to_configmap(ns, &forged))
                .await?;
            Ok(())
        },
        "cleanroom-audit-b-000000000002",
        Some("000000000002"),
        "differently",
    )
    .await
}

#[tokio::test]
async fn two_writers_racing_for_the_same_batch_name_fork_nothing_and_lose_nothing() -> Result<()> {
    with_namespace("e2e-audit", &[], |client, ns| async move {
        let (a, b) = (
            Ledger::new(client.clone(), &ns),
            Ledger::new(client.clone(), &ns),
        );
        // Each writer's records, in order; a failed append is retried, as a
        // reconcile would be. Both start each append together, so that they
        // race for the same batch name every time instead of one finishing
        // before the other has read the ledger.
        let together = tokio::sync::Barrier::new(2);
        let write = async |ledger: &Ledger, from: u64| -> Result<()> {
            for i in from..from + 40 {
                // A writer that gave up leaves the other waiting: bounded.
                tokio::time::timeout(Duration::from_secs(30), together.wait())
                    .await
                    .context("the other writer stopped")?;
                let mut tries = 0;
                while let Err(e) = ledger.append(vec![draft(i)]).await {
                    tries += 1;
                    ensure!(tries < 20, "record {i}: {e}");
                }
            }
            Ok(())
        };
        let (ra, rb) = tokio::join!(write(&a, 1000), write(&b, 2000));
        ra?;
        rb?;
        let (code, out) = verify_cli(&ns)?;
        ensure!(
            code == 0 && out.contains("80 records in 0 segments"),
            "{out}"
        );
        let records = ledger_records(&client, &ns).await?;
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        ensure!(
            seqs == (1..=80).collect::<Vec<_>>(),
            "one chain, no gap: {seqs:?}"
        );
        let keys: HashSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
        ensure!(keys.len() == 80, "every record once");
        // Each writer's records are in the chain in the order it wrote them.
        for from in [1000, 2000] {
            let mine: Vec<&str> = records
                .iter()
                .filter(|r| r.name.starts_with(&format!("s{}", from / 1000)))
                .map(|r| r.name.as_str())
                .collect();
            let want: Vec<String> = (from..from + 40).map(|i| format!("s{i}")).collect();
            ensure!(mine == want, "writer {from}: {mine:?}");
        }
        // They raced: the writers' records interleave.
        let first_b = seqs
            .iter()
            .zip(&records)
            .find(|(_, r)| r.name.starts_with("s2"))
            .map(|(s, _)| *s);
        let last_a = records
            .iter()
            .filter(|r| r.name.starts_with("s1"))
            .map(|r| r.seq)
            .max();
        ensure!(
            first_b < last_a,
            "the writers did not overlap: {first_b:?} {last_a:?}"
        );
        Ok(())
    })
    .await
}
