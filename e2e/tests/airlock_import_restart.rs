//! A hand-over survives a crash: the operator stops right after the
//! import's `released` record (the sealed volume already in the workspace,
//! the status not yet Released); the next run finishes it without a second
//! record, and the workspace mounts exactly what was sealed. A file of its
//! own, since it restarts the shared operator.
//!
//! Needs the local control plane and the operator (`make e2e`).

use anyhow::{Context, Result, ensure};
use cleanroom::api::airlock::ExportPhase;
use cleanroom_e2e::harness::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

mod common;
use common::airlock::*;
use common::import::*;
use common::*;

#[tokio::test]
async fn a_crash_between_the_hand_over_record_and_its_status_loses_and_duplicates_nothing()
-> Result<()> {
    let _comes_back = OperatorComesBack;
    // This operator exits right after it appends a `released` record.
    let pid = operator_exiting_after("released")?;
    with_fixture(|f| async move {
        let authz = reviewed_authorization(&f, 1).await?;
        let name = f
            .ready_scenario(&authz, |_| {})
            .await?
            .metadata
            .name
            .context("name")?;
        let ns = namespace_of(&name);
        let staged = stage(
            &f.client,
            Some(&name),
            &[("daily.csv", DAILY), ("notes.md", NOTES)],
        )
        .await?;
        let alice = client_as(ALICE, &["system:authenticated"]).await?;
        let imp = submit_import(&alice, &ns, &import(ALICE, &staged, weather_files())?).await?;
        wait_import(
            &f.client,
            &ns,
            &imp,
            &[ExportPhase::InReview, ExportPhase::Failed],
        )
        .await?;
        review_import(CAROL, &ns, &imp, "Approve").await?;
        stopped(pid, "the released record").await?;
        // Stopped between the two writes: the record, no status.
        let i = wait_import(
            &f.client,
            &ns,
            &imp,
            &[ExportPhase::Approved, ExportPhase::Released],
        )
        .await?;
        ensure!(
            i.status.as_ref().and_then(|s| s.phase) == Some(ExportPhase::Approved),
            "the status was written before the crash: the drill proves nothing"
        );
        let uid = i.metadata.uid.clone().context("uid")?;
        let released = |records: &[cleanroom::audit::Record]| {
            records
                .iter()
                .filter(|r| r.action.as_str() == "released")
                .count()
        };
        ensure!(released(&records_of(&f.client, &uid).await?) == 1);

        // The next run writes the status and mounts it, not the record again.
        operator("start")?;
        wait_import(&f.client, &ns, &imp, &[ExportPhase::Released]).await?;
        let claim = format!("import-{imp}");
        let deployments: Api<Deployment> = Api::namespaced(f.client.clone(), &ns);
        wait_for(
            &deployments,
            "workspace",
            "import mounted",
            T,
            |d: Option<&Deployment>| d.is_some_and(|d| mounted(d, &claim).is_some()),
        )
        .await?;
        let records = records_of(&f.client, &uid).await?;
        ensure!(
            released(&records) == 1,
            "handed over twice: {:?}",
            actions(&records)
        );
        let content = std::fs::read_to_string(
            claim_dir(&f.client, &ns, &claim)
                .await?
                .join("files/daily.csv"),
        )?;
        ensure!(
            content == DAILY,
            "the workspace reads {content:?}, not what was sealed"
        );
        unstage(&f.client, &staged).await;
        Ok(())
    })
    .await
}
