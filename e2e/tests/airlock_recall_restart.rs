//! A recall survives a crash: the operator stops right after the `recalled`
//! record and before the status says so; the next run finishes the recall
//! without a second record, and the content stays blocked. A file of its
//! own, since it restarts the shared operator.
//!
//! Needs the local control plane and the operator (`make e2e`).

use anyhow::{Context, Result, ensure};
use cleanroom::api::airlock::ExportPhase;
use cleanroom_e2e::harness::unique_name;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

mod common;
use common::airlock::*;
use common::*;

#[tokio::test]
async fn a_crash_between_the_recall_record_and_its_status_loses_and_duplicates_nothing()
-> Result<()> {
    let _comes_back = OperatorComesBack;
    // This operator exits right after it appends a `recalled` record.
    let pid = operator_exiting_after("recalled")?;
    with_fixture(|f| async move {
        let authz = reviewed_authorization(&f, 1).await?;
        let name = f
            .ready_scenario(&authz, |_| {})
            .await?
            .metadata
            .name
            .context("name")?;
        let ns = namespace_of(&name);
        let table = format!("{CLEAN_TABLE}{},77\n", unique_name("t"));
        put_in_outbox(&f.client, &name, "t.csv", &table).await?;
        let alice = client_as(ALICE, &["system:authenticated"]).await?;
        let export = submit(&alice, &ns, &table_export(ALICE, "t.csv")?).await?;
        wait_export(&f.client, &ns, &export, "InReview", |e| {
            in_phase(e, &[ExportPhase::InReview, ExportPhase::Failed])
        })
        .await?;
        review(CAROL, &ns, &export, CAROL, "Approve").await?;
        wait_export(&f.client, &ns, &export, "Released and wiped", |e| {
            in_phase(e, &[ExportPhase::Failed])
                || e.status
                    .as_ref()
                    .is_some_and(|s| s.phase == Some(ExportPhase::Released) && s.wipe.is_some())
        })
        .await?;
        let dir = release_dir(&f.client, &authz)
            .await?
            .join(format!("{ns}.{export}"));
        ensure!(dir.exists(), "not released");

        review(DAVE, &ns, &export, DAVE, "Recall").await?;
        stopped(pid, "the recalled record").await?;
        // Stopped between the two writes: the record and the wipe, no status.
        let e = wait_export(&f.client, &ns, &export, "read", |_| true).await?;
        ensure!(
            in_phase(&e, &[ExportPhase::Released]),
            "the status was written before the crash: the drill proves nothing"
        );
        let uid = e.metadata.uid.clone().context("uid")?;
        let recalled = |records: &[cleanroom::audit::Record]| {
            records
                .iter()
                .filter(|r| r.action.as_str() == "recalled")
                .count()
        };
        ensure!(recalled(&records_of(&f.client, &uid).await?) == 1);
        ensure!(
            !dir.exists(),
            "the released copy outlived the recall's wipe"
        );

        // The next run writes the status, not the record again.
        operator("start")?;
        let e = wait_export(&f.client, &ns, &export, "Recalled", |e| {
            in_phase(e, &[ExportPhase::Recalled])
        })
        .await?;
        let manifest = e
            .status
            .and_then(|s| s.sealed)
            .context("sealed")?
            .manifest_sha256;
        let records = records_of(&f.client, &uid).await?;
        ensure!(recalled(&records) == 1, "recalled twice: {records:#?}");
        let set = Api::<ConfigMap>::namespaced(f.client.clone(), AUDIT_NAMESPACE)
            .get("cleanroom-recalled")
            .await?;
        ensure!(
            set.data.is_some_and(|d| d.contains_key(&manifest)),
            "the recalled hash is not kept"
        );
        delete_release_claim(&f.client, &authz).await
    })
    .await
}
