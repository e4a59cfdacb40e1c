//! Imports end to end, with the agent really running: third-party data
//! staged by staff enters a workspace only sealed, checked against its
//! declared schema, approved by reviewers the API server vouches for, and
//! mounted read-only at `/imports/<name>`, byte for byte what was sealed.
//! A claim staged for another scenario is never read; a file with a
//! resident ID or not of its declared shape never enters; withdrawing an
//! import unmounts it and wipes it with an attestation.
//!
//! Needs the local control plane and the operator (`make e2e`).

use anyhow::{Context, Result, ensure};
use cleanroom::api::Import;
use cleanroom::api::airlock::ExportPhase;
use cleanroom::api::import::IMPORT_NAMESPACE;
use cleanroom_e2e::harness::{wait_for, wait_gone};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use sha2::Digest;

mod common;
use common::airlock::*;
use common::import::*;
use common::*;

#[tokio::test]
async fn an_approved_import_is_mounted_read_only_as_sealed_and_withdrawn_wiped() -> Result<()> {
    with_fixture(|f| async move {
        let authz = reviewed_authorization(&f, 2).await?;
        let scenario = f.ready_scenario(&authz, |_| {}).await?;
        let name = scenario.metadata.name.clone().context("name")?;
        let ns = namespace_of(&name);
        let staged = stage(
            &f.client,
            Some(&name),
            &[("daily.csv", DAILY), ("notes.md", NOTES)],
        )
        .await?;
        let alice = client_as(ALICE, &["system:authenticated"]).await?;

        // The requester is the caller.
        let forged = refusal(
            submit_import(&alice, &ns, &import(DAVE, &staged, weather_files())?).await,
            "alice as dave",
        )?;
        ensure!(
            forged.contains("requester is whoever creates it"),
            "{forged}"
        );
        let imp = submit_import(&alice, &ns, &import(ALICE, &staged, weather_files())?).await?;
        let i = wait_import(
            &f.client,
            &ns,
            &imp,
            &[
                ExportPhase::InReview,
                ExportPhase::Failed,
                ExportPhase::Blocked,
            ],
        )
        .await?;
        let status = i.status.clone().context("status")?;
        ensure!(
            status.phase == Some(ExportPhase::InReview),
            "not in review: {status:?}"
        );
        let sealed = status.sealed.clone().context("no sealed copy")?;
        let sha = hex::encode(sha2::Sha256::digest(DAILY.as_bytes()));
        ensure!(
            sealed.files[0].sha256 == sha,
            "sealed {} is not the file's {sha}",
            sealed.files[0].sha256
        );
        ensure!(status.approvals_required == Some(2), "{status:?}");

        // Not even a cluster admin can mark it handed over: its status is
        // the operator's record alone.
        let forge = Api::<Import>::namespaced(f.client.clone(), &ns)
            .patch_status(
                &imp,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Released"}})),
            )
            .await
            .map_err(anyhow::Error::from);
        let forged = refusal(forge, "the admin forging Released")?;
        ensure!(forged.contains("the operator's record alone"), "{forged}");

        // Staff changing the staged file after sealing changes nothing.
        let staged_dir = claim_dir(&f.client, IMPORT_NAMESPACE, &staged).await?;
        std::fs::write(
            staged_dir.join("daily.csv"),
            "day,rain_mm\n2026-11-01,999\n",
        )?;

        // Neither the requester nor a member may review; an import is never recalled.
        let own = refusal(
            review_import(ALICE, &ns, &imp, "Approve").await,
            "requester approving",
        )?;
        ensure!(own.contains("may not review"), "{own}");
        let member = refusal(
            review_import(ERIN, &ns, &imp, "Approve").await,
            "member approving",
        )?;
        ensure!(
            member.contains("is a member of the authorization"),
            "{member}"
        );
        let recall = refusal(
            review_import(CAROL, &ns, &imp, "Recall").await,
            "recalling an import",
        )?;
        ensure!(recall.contains("an import is not recalled"), "{recall}");
        review_import(CAROL, &ns, &imp, "Approve").await?;
        review_import(DAVE, &ns, &imp, "Approve").await?;
        let i = wait_import(
            &f.client,
            &ns,
            &imp,
            &[ExportPhase::Released, ExportPhase::Failed],
        )
        .await?;
        let status = i.status.clone().context("status")?;
        ensure!(status.phase == Some(ExportPhase::Released), "{status:?}");
        let released = status.released.clone().context("no hand-over recorded")?;
        ensure!(released.path == format!("/imports/{imp}"), "{released:?}");

        // Mounted read-only at /imports/<name>, from the claim the sealed volume moved to.
        let claim = format!("import-{imp}");
        let deployments: Api<Deployment> = Api::namespaced(f.client.clone(), &ns);
        let d = wait_for(
            &deployments,
            "workspace",
            "import mounted",
            T,
            |d: Option<&Deployment>| d.is_some_and(|d| mounted(d, &claim).is_some()),
        )
        .await?;
        let (volume, mount) = mounted(&d, &claim).context("not mounted")?;
        ensure!(
            volume["persistentVolumeClaim"]["readOnly"] == json!(true),
            "{volume}"
        );
        ensure!(
            mount["readOnly"] == json!(true)
                && mount["mountPath"] == json!(format!("/imports/{imp}")),
            "{mount}"
        );
        let handed = claim_dir(&f.client, &ns, &claim).await?;
        let content = std::fs::read_to_string(handed.join("files/daily.csv"))?;
        ensure!(
            content == DAILY,
            "the workspace reads {content:?}, not what was sealed"
        );

        // Every step is in the ledger, with the real actors.
        let uid = i.metadata.uid.clone().context("uid")?;
        let seen = actions(&records_of(&f.client, &uid).await?);
        let op = cleanroom::audit::record::OPERATOR_ACTOR;
        let wanted = [
            format!("submitted:{ALICE}"),
            format!("sealed:{op}"),
            format!("checked:{op}"),
            format!("reviewed:{CAROL}"),
            format!("reviewed:{DAVE}"),
            format!("released:{op}"),
        ];
        for want in wanted {
            ensure!(seen.contains(&want), "no {want} in {seen:?}");
        }

        // Withdrawn by its requester: unmounted, the claim wiped and gone.
        Api::<Import>::namespaced(alice.clone(), &ns)
            .delete(&imp, &DeleteParams::default())
            .await?;
        wait_for(
            &deployments,
            "workspace",
            "import unmounted",
            T,
            |d: Option<&Deployment>| d.is_some_and(|d| mounted(d, &claim).is_none()),
        )
        .await?;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(f.client.clone(), &ns);
        wait_gone(&claims, &claim, T).await?;
        // The import goes once its wipe is recorded.
        wait_gone(&Api::<Import>::namespaced(f.client.clone(), &ns), &imp, T).await?;
        let seen = actions(&records_of(&f.client, &uid).await?);
        ensure!(
            seen.iter().any(|s| s.starts_with("wiped:")),
            "no wipe recorded: {seen:?}"
        );
        unstage(&f.client, &staged).await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn foreign_staging_identifiers_and_a_wrong_schema_never_enter() -> Result<()> {
    with_fixture(|f| async move {
        let authz = reviewed_authorization(&f, 1).await?;
        let scenario = f.ready_scenario(&authz, |_| {}).await?;
        let name = scenario.metadata.name.clone().context("name")?;
        let ns = namespace_of(&name);
        let alice = client_as(ALICE, &["system:authenticated"]).await?;

        // Staged for another scenario, or for none: never read.
        let elsewhere = stage(&f.client, Some("someone-else"), &[("daily.csv", DAILY)]).await?;
        let unlabelled = stage(&f.client, None, &[("daily.csv", DAILY)]).await?;
        let one = json!([{"path": "daily.csv", "schema": [{"name": "day", "type": "date"}, {"name": "rain_mm", "type": "decimal"}]}]);
        for claim in [&elsewhere, &unlabelled] {
            let imp = submit_import(&alice, &ns, &import(ALICE, claim, one.clone())?).await?;
            let i = wait_import(&f.client, &ns, &imp, &[ExportPhase::Failed, ExportPhase::InReview, ExportPhase::Blocked]).await?;
            let status = i.status.context("status")?;
            ensure!(status.phase == Some(ExportPhase::Failed), "{status:?}");
            let why = status.message.unwrap_or_default();
            ensure!(why.contains(&format!("is not staged for scenario {name}")), "{why}");
            ensure!(status.sealed.is_none(), "a foreign claim was sealed");
        }

        // Raw identifiers, and values not of the declared type: Blocked, the sealed copy wiped.
        let leak: String = POPULATION_CSV.lines().take(3).map(|l| format!("{l}\n")).collect();
        let header: Vec<Value> = leak.lines().next().context("header")?.split(',').map(|c| json!({"name": c, "type": "string"})).collect();
        let bad = stage(&f.client, Some(&name), &[("people.csv", &leak), ("daily.csv", "day,rain_mm\n2026-11-31,lots\n")]).await?;
        let cases = [
            (json!([{"path": "people.csv", "schema": header}]), "identifier"),
            (one.clone(), "schema-type"),
        ];
        for (files, check) in cases {
            let imp = submit_import(&alice, &ns, &import(ALICE, &bad, files)?).await?;
            let i = wait_import(&f.client, &ns, &imp, &[ExportPhase::Blocked, ExportPhase::Failed, ExportPhase::InReview]).await?;
            let status = i.status.clone().context("status")?;
            ensure!(status.phase == Some(ExportPhase::Blocked), "{check}: {status:?}");
            let fired: Vec<String> = status.scan.iter().flat_map(|s| s.files.iter().flat_map(|f| f.checks.clone())).collect();
            ensure!(fired.iter().any(|c| c.contains(check)), "{check} not in {fired:?}");
            ensure!(!serde_json::to_string(&status)?.contains("lots"), "a value is in the status");
            let api = Api::<Import>::namespaced(f.client.clone(), &ns);
            wait_for(&api, &imp, "sealed copy wiped", T, |i: Option<&Import>| {
                i.and_then(|i| i.status.as_ref()?.wipe.as_ref()).is_some()
            })
            .await?;
            // Nothing to review: no review of a blocked import is admitted
            // (the reviewers were never even bound in this workspace).
            let late = refusal(review_import(CAROL, &ns, &imp, "Approve").await, "approving a blocked import")?;
            ensure!(late.contains("not open for review") || late.contains("forbidden"), "{late}");
        }
        for claim in [elsewhere, unlabelled, bad] {
            unstage(&f.client, &claim).await;
        }
        Ok(())
    })
    .await
}

/// The agreement ends while an import waits for its reviewers: the
/// workspace closes, and the sealed copy in the import namespace is wiped
/// with an attestation in the ledger; nothing of it is left there.
#[tokio::test]
async fn revoking_the_scenario_mid_review_wipes_the_sealed_import() -> Result<()> {
    use cleanroom::api::ScenarioPhase;
    with_fixture(|f| async move {
        let authz = reviewed_authorization(&f, 2).await?;
        let scenario = f.ready_scenario(&authz, |_| {}).await?;
        let name = scenario.metadata.name.clone().context("name")?;
        let ns = namespace_of(&name);
        let staged = stage(&f.client, Some(&name), &[("daily.csv", DAILY)]).await?;
        let alice = client_as(ALICE, &["system:authenticated"]).await?;
        let one = json!([{"path": "daily.csv", "schema": [{"name": "day", "type": "date"}, {"name": "rain_mm", "type": "decimal"}]}]);
        let imp = submit_import(&alice, &ns, &import(ALICE, &staged, one)?).await?;
        let i = wait_import(&f.client, &ns, &imp, &[ExportPhase::InReview, ExportPhase::Failed]).await?;
        ensure!(i.status.as_ref().and_then(|s| s.phase) == Some(ExportPhase::InReview), "{:?}", i.status);
        let uid = i.metadata.uid.clone().context("uid")?;
        let seal = format!("seal-{uid}");
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(f.client.clone(), IMPORT_NAMESPACE);
        ensure!(claims.get_opt(&seal).await?.is_some(), "no sealed copy in {IMPORT_NAMESPACE}");

        f.patch_scenario(&name, json!({"state": "Revoked", "reason": "agreement ended"})).await?;
        f.wait_scenario(&name, "phase Closed", T, |s| phase(s) == Some(ScenarioPhase::Closed)).await?;
        wait_gone(&claims, &seal, T).await?;
        let seen = actions(&records_of(&f.client, &uid).await?);
        ensure!(seen.iter().any(|s| s.starts_with("wiped:")), "no wipe of the sealed import: {seen:?}");
        ensure!(seen.iter().any(|s| s.starts_with("withdrawn:")), "not withdrawn: {seen:?}");
        unstage(&f.client, &staged).await;
        Ok(())
    })
    .await
}
