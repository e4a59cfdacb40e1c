//! Killing the operator mid-teardown and mid-hand-over: the next run finishes the job without
//! leaking or duplicating anything. In its own test binary because it kills
//! the operator that the tests in `operator.rs` rely on (cargo runs test
//! binaries one after another). Needs the local control plane and the
//! operator (`make e2e`).

mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use cleanroom::api::ScenarioPhase;
use cleanroom_e2e::harness::unique_name;
use common::{
    Fixture, POPULATION_CSV, T, VAULT, data_scenario, ensure_condition, has_condition, host_dir,
    namespace_of, operator, phase, scratch_volume, volumes_of, with_fixture, workspace_owned_dir,
    write_as_workspace,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

/// One drill at a time: both kill and restart the one shared operator, and
/// two doing it at once could leave two operators running.
static OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the operator again when dropped, so that a failing (or panicking)
/// test does not leave the cluster without one.
struct OperatorComesBack;

impl Drop for OperatorComesBack {
    fn drop(&mut self) {
        if let Err(e) = operator("start") {
            eprintln!("could not start the operator again: {e:#}");
        }
    }
}

/// SIGKILL, a second of absence, start.
fn crash_and_restart() -> Result<()> {
    operator("kill")?;
    std::thread::sleep(Duration::from_secs(1));
    operator("start")
}

#[tokio::test]
async fn killing_the_operator_mid_teardown_leaks_and_duplicates_nothing() -> Result<()> {
    let _one = OPERATOR.lock().await;
    let _comes_back = OperatorComesBack;
    operator("start")?;
    with_fixture(|fx| async move {
        let result = crash_drill(&fx).await;
        if result.is_err() {
            // Before the fixture's cleanup, which needs the operator to let
            // the Scenario go.
            let _ = operator("start");
        }
        result
    })
    .await
}

/// Revokes a Ready scenario and crashes the operator twice during its
/// teardown; then checks that the teardown finished exactly once.
async fn crash_drill(fx: &Fixture) -> Result<()> {
    let authz = fx.authorization().await?;
    let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
    let ns = namespace_of(&name);
    let pv = scratch_volume(&fx.client, &name).await?;
    let volume = pv.name_any();
    // Something to wipe: a wipe run again over the already wiped volume
    // would report no file, so the one attestation must report this one.
    let content = vec![b'z'; 3000];
    write_as_workspace(&workspace_owned_dir(&pv)?, "model.bin", &content)?;

    fx.patch_scenario(&name, json!({"state": "Revoked", "reason": "crash drill"}))
        .await?;

    // First crash: as soon as the wipe Job exists.
    let jobs: Api<Job> = Api::namespaced(fx.client.clone(), &ns);
    let started = Instant::now();
    while jobs.get_opt("wipe-scratch").await?.is_none() {
        ensure!(started.elapsed() < T, "no wipe Job within {T:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wiping_after = started.elapsed();
    crash_and_restart()?;

    // Second crash: as soon as the attestation is recorded, while the
    // claim and the namespace are (being) deleted, unless already Closed.
    let started_again = Instant::now();
    let attested = fx
        .wait_scenario(&name, "an attestation", T, |s| {
            s.status.as_ref().is_some_and(|st| !st.wipes.is_empty())
        })
        .await?;
    let second_crash = phase(&attested) != Some(ScenarioPhase::Closed);
    if second_crash {
        crash_and_restart()?;
    }
    eprintln!(
        "restart: killed {wiping_after:?} after revoking (wipe Job seen); attestation seen \
         {:?} after the restart; second kill: {second_crash}",
        started_again.elapsed()
    );

    let s = fx
        .wait_scenario(&name, "phase Closed", T, |s| {
            phase(s) == Some(ScenarioPhase::Closed)
        })
        .await?;
    ensure_condition(&s, "Revoked", true, Some("RevokedByRequest"))?;
    ensure_condition(&s, "Wiped", true, Some("WipeVerified"))?;
    let wipes = s.status.map(|st| st.wipes).unwrap_or_default();
    let claims_wiped: Vec<String> = wipes.iter().map(|w| w.claim.clone()).collect();
    ensure!(
        claims_wiped == ["scratch"],
        "expected exactly one attestation, for scratch; got {claims_wiped:?}"
    );
    ensure!(
        wipes[0].files == 1 && wipes[0].bytes == content.len() as i64,
        "the attestation reports {} files and {} bytes, not the 1 file of {} bytes written",
        wipes[0].files,
        wipes[0].bytes,
        content.len()
    );
    ensure!(
        Api::<Namespace>::all(fx.client.clone())
            .get_opt(&ns)
            .await?
            .is_none(),
        "{ns} survived"
    );
    let left = volumes_of(&fx.client, &ns).await?;
    ensure!(left.is_empty(), "volumes of {ns} remain: {left:?}");
    ensure!(
        Api::<PersistentVolume>::all(fx.client.clone())
            .get_opt(&volume)
            .await?
            .is_none(),
        "volume {volume} remains"
    );
    Ok(())
}

#[tokio::test]
async fn killing_the_operator_mid_hand_over_loses_no_data_and_leaks_nothing() -> Result<()> {
    let _one = OPERATOR.lock().await;
    let _comes_back = OperatorComesBack;
    operator("start")?;
    with_fixture(|fx| async move {
        let result = hand_over_drill(&fx).await;
        if result.is_err() {
            let _ = operator("start");
        }
        result
    })
    .await
}

/// Crashes the operator as soon as a preparation's report is saved (the
/// hand-over starts), then again when the volume's claimRef has moved; the
/// scenario must still come up with its one prepared volume, restored
/// reclaim policy, and an empty vault; its teardown then wipes it.
async fn hand_over_drill(fx: &Fixture) -> Result<()> {
    let (_, _, dataset, authz) = fx.population(POPULATION_CSV.as_bytes()).await?;
    let name = unique_name("e2e");
    fx.create_scenario(&name, data_scenario(&authz, &dataset))
        .await?;

    let recorded = fx
        .wait_scenario(&name, "a preparation record", T, |s| {
            s.status.as_ref().is_some_and(|st| !st.data.is_empty())
        })
        .await?;
    crash_and_restart()?;
    let volume = recorded
        .status
        .map(|s| s.data[0].volume.clone())
        .unwrap_or_default();
    let volumes: Api<PersistentVolume> = Api::all(fx.client.clone());
    let ns = namespace_of(&name);
    let claim = format!("data-{dataset}");
    // Second crash once the claimRef points into the workspace, if the
    // restarted operator gets there before this test looks.
    let started = Instant::now();
    while started.elapsed() < T {
        let moved = volumes
            .get_opt(&volume)
            .await?
            .and_then(|pv| pv.spec?.claim_ref)
            .is_some_and(|r| {
                r.namespace.as_deref() == Some(ns.as_str()) && r.name.as_deref() == Some(&claim)
            });
        if moved {
            crash_and_restart()?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let s = fx
        .wait_scenario(&name, "Ready=True", T, |s| has_condition(s, "Ready", true))
        .await?;
    let records = s
        .status
        .as_ref()
        .map(|st| st.data.clone())
        .unwrap_or_default();
    ensure!(
        records.len() == 1 && records[0].volume == volume,
        "records after the crashes: {records:?}"
    );
    let pv = volumes.get(&volume).await?;
    let spec = pv.spec.clone().unwrap_or_default();
    let bound_to = spec
        .claim_ref
        .as_ref()
        .map(|r| (r.namespace.clone(), r.name.clone()));
    ensure!(
        bound_to == Some((Some(ns.clone()), Some(claim.clone()))),
        "the prepared volume is bound to {bound_to:?}"
    );
    ensure!(
        spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete"),
        "reclaim policy {:?} after the hand-over",
        spec.persistent_volume_reclaim_policy
    );
    let labelled = volumes
        .list(&ListParams::default().labels(&format!("cleanroom.io/scenario={name}")))
        .await?
        .items;
    ensure!(
        labelled.len() == 1,
        "{} volumes carry the scenario's label",
        labelled.len()
    );
    let in_vault = volumes_of(&fx.client, VAULT)
        .await?
        .into_iter()
        .filter(|v| labelled.iter().any(|l| &l.name_any() == v))
        .count();
    ensure!(
        in_vault == 0,
        "a prepared volume is still bound in the vault"
    );
    let text = std::fs::read_to_string(host_dir(&pv)?.join("2024.csv"))?;
    ensure!(
        text.lines().next() == Some("resident_id,mobile,district"),
        "the handed-over file is not the prepared one"
    );
    Ok(())
}

#[tokio::test]
async fn killing_the_operator_between_seal_and_release_loses_and_duplicates_nothing() -> Result<()>
{
    let _one = OPERATOR.lock().await;
    let _comes_back = OperatorComesBack;
    operator("start")?;
    with_fixture(|fx| async move {
        let result = release_drill(&fx).await;
        if result.is_err() {
            let _ = operator("start");
        }
        result
    })
    .await
}

/// Approves an export while the operator is down, then kills it as soon as
/// the release starts and again once it is recorded: one copy, one record.
async fn release_drill(fx: &Fixture) -> Result<()> {
    use cleanroom::api::airlock::ExportPhase;
    use common::airlock::*;
    let authz = reviewed_authorization(fx, 1).await?;
    let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
    let ns = namespace_of(&name);
    put_in_outbox(&fx.client, &name, "by-district.csv", CLEAN_TABLE).await?;
    let alice = common::client_as(common::ALICE, &["system:authenticated"]).await?;
    let export = submit(
        &alice,
        &ns,
        &table_export(common::ALICE, "by-district.csv")?,
    )
    .await?;
    wait_export(&fx.client, &ns, &export, "InReview", |e| {
        in_phase(e, &[ExportPhase::InReview])
    })
    .await?;

    operator("kill")?;
    review(CAROL, &ns, &export, CAROL, "Approve").await?;
    operator("start")?;
    // As soon as the operator has acted on the approval.
    wait_export(&fx.client, &ns, &export, "Approved", |e| {
        in_phase(e, &[ExportPhase::Approved, ExportPhase::Released])
    })
    .await?;
    crash_and_restart()?;
    let released = wait_export(&fx.client, &ns, &export, "Released", |e| {
        in_phase(e, &[ExportPhase::Released, ExportPhase::Failed])
    })
    .await?;
    ensure!(
        in_phase(&released, &[ExportPhase::Released]),
        "{:?}",
        released.status
    );
    crash_and_restart()?;
    let done = wait_export(&fx.client, &ns, &export, "wiped", |e| {
        e.status.as_ref().is_some_and(|s| s.wipe.is_some())
    })
    .await?;

    let root = release_dir(&fx.client, &authz).await?;
    let mut entries: Vec<String> = std::fs::read_dir(&root)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    entries.sort();
    ensure!(
        entries == [format!("{ns}.{export}")],
        "the release claim holds {entries:?}"
    );
    let copied = std::fs::read_to_string(root.join(&entries[0]).join("by-district.csv"))?;
    ensure!(
        copied == CLEAN_TABLE,
        "the released file differs: {copied:?}"
    );
    let uid = done.metadata.uid.clone().unwrap_or_default();
    let seen = actions(&common::records_of(&fx.client, &uid).await?);
    let count = |a: &str| seen.iter().filter(|s| s.starts_with(a)).count();
    ensure!(
        count("released:") == 1 && count("wiped:") == 1 && count("sealed:") == 1,
        "{seen:?}"
    );
    delete_release_claim(&fx.client, &authz).await
}
