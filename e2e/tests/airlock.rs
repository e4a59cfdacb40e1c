//! The airlock end to end, with the agent really running: an analyst's
//! table leaves a workspace only sealed, checked and approved by two
//! reviewers the API server vouches for, byte for byte what was sealed;
//! small cells never leave; what will never be released is wiped with an
//! attestation; a non-interactive workspace gives its members no exec.
//!
//! Needs the local control plane and the operator (`make e2e`).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cleanroom::api::airlock::ExportPhase;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use sha2::Digest;

mod common;
use cleanroom_e2e::harness::{unique_name, wait_gone};
use common::airlock::*;
use common::*;

#[tokio::test]
async fn a_clean_table_approved_by_two_reviewers_is_released_as_sealed() -> Result<()> {
    with_fixture(|f| async move {
        let authz = reviewed_authorization(&f, 2).await?;
        let scenario = f.ready_scenario(&authz, |_| {}).await?;
        let name = scenario.metadata.name.clone().context("name")?;
        let ns = namespace_of(&name);
        let outbox_file = put_in_outbox(&f.client, &name, "by-district.csv", CLEAN_TABLE).await?;
        let alice = client_as(ALICE, &["system:authenticated"]).await?;

        // The requester is the caller: alice cannot ask in dave's name.
        let forged = refusal(
            submit(&alice, &ns, &table_export(DAVE, "by-district.csv")?).await,
            "alice asking as dave",
        )?;
        ensure!(
            forged.contains("requester is whoever creates it"),
            "{forged}"
        );
        let export = submit(&alice, &ns, &table_export(ALICE, "by-district.csv")?).await?;
        let e = wait_export(&f.client, &ns, &export, "InReview", |e| {
            in_phase(
                e,
                &[
                    ExportPhase::InReview,
                    ExportPhase::Failed,
                    ExportPhase::Blocked,
                ],
            )
        })
        .await?;
        let status = e.status.clone().context("status")?;
        ensure!(
            status.phase == Some(ExportPhase::InReview),
            "not in review: {status:?}"
        );
        let sealed = status.sealed.clone().context("no sealed copy")?;
        let sha = hex::encode(sha2::Sha256::digest(CLEAN_TABLE.as_bytes()));
        ensure!(
            sealed.files[0].sha256 == sha,
            "sealed hash {} is not the file's {sha}",
            sealed.files[0].sha256
        );
        ensure!(
            status.scan.as_ref().is_some_and(|s| s.verdict != "fail"),
            "{:?}",
            status.scan
        );

        // Changing the file after sealing changes nothing in what is released.
        std::fs::write(&outbox_file, SMALL_CELLS)?;

        // Neither the requester, nor a member, nor someone in another's name,
        // nor someone not listed may review.
        let own = refusal(
            review(ALICE, &ns, &export, ALICE, "Approve").await,
            "the requester approving",
        )?;
        ensure!(own.contains("requester of export"), "{own}");
        let member = refusal(
            review(ERIN, &ns, &export, ERIN, "Approve").await,
            "a member approving",
        )?;
        ensure!(
            member.contains("is a member of the authorization"),
            "{member}"
        );
        let forged = refusal(
            review(CAROL, &ns, &export, DAVE, "Approve").await,
            "carol approving as dave",
        )?;
        ensure!(forged.contains("spec.reviewer must be"), "{forged}");
        let stranger = refusal(
            review(
                "mallory@example",
                &ns,
                &export,
                "mallory@example",
                "Approve",
            )
            .await,
            "mallory",
        )?;
        ensure!(
            stranger.contains("forbidden") || stranger.contains("not a reviewer"),
            "{stranger}"
        );

        review(CAROL, &ns, &export, CAROL, "Approve").await?;
        let e = wait_export(&f.client, &ns, &export, "one approval", |e| {
            e.status.as_ref().and_then(|s| s.approvals) == Some(1)
        })
        .await?;
        ensure!(
            in_phase(&e, &[ExportPhase::InReview]),
            "one approval of two released it: {:?}",
            e.status
        );
        review(DAVE, &ns, &export, DAVE, "Approve").await?;
        let e = wait_export(&f.client, &ns, &export, "Released and wiped", |e| {
            in_phase(e, &[ExportPhase::Failed])
                || e.status
                    .as_ref()
                    .is_some_and(|s| s.phase == Some(ExportPhase::Released) && s.wipe.is_some())
        })
        .await?;
        let status = e.status.clone().context("status")?;
        ensure!(status.phase == Some(ExportPhase::Released), "{status:?}");

        let dir = release_dir(&f.client, &authz)
            .await?
            .join(format!("{ns}.{export}"));
        let released = std::fs::read_to_string(dir.join("by-district.csv"))?;
        ensure!(
            released == CLEAN_TABLE,
            "the released file is not what was sealed: {released:?}"
        );
        ensure!(
            dir.join("manifest.json").exists(),
            "no manifest beside the release"
        );

        let uid = e.metadata.uid.clone().context("uid")?;
        let records = records_of(&f.client, &uid).await?;
        let seen = actions(&records);
        for want in [
            format!("submitted:{ALICE}"),
            "sealed:cleanroom-operator".into(),
            "checked:cleanroom-operator".into(),
            format!("reviewed:{CAROL}"),
            format!("reviewed:{DAVE}"),
            "released:cleanroom-operator".into(),
            "wiped:cleanroom-operator".into(),
        ] {
            ensure!(seen.contains(&want), "the ledger lacks {want}: {seen:?}");
        }
        let sealed_record = records
            .iter()
            .find(|r| r.action.as_str() == "sealed")
            .context("sealed")?;
        ensure!(
            sealed_record
                .after
                .as_ref()
                .is_some_and(|a| a.to_string().contains(&sha)),
            "the sealed record has no hash"
        );
        ensure!(
            seen.iter().filter(|a| a.starts_with("released:")).count() == 1,
            "released twice: {seen:?}"
        );
        delete_release_claim(&f.client, &authz).await
    })
    .await
}

#[tokio::test]
async fn small_cells_never_leave_and_what_is_not_released_is_wiped_with_an_attestation()
-> Result<()> {
    with_fixture(|f| async move {
        let authz = reviewed_authorization(&f, 2).await?;
        let scenario = f.ready_scenario(&authz, |_| {}).await?;
        let name = scenario.metadata.name.clone().context("name")?;
        let ns = namespace_of(&name);
        put_in_outbox(&f.client, &name, "small.csv", SMALL_CELLS).await?;
        let alice = client_as(ALICE, &["system:authenticated"]).await?;
        let export = submit(&alice, &ns, &table_export(ALICE, "small.csv")?).await?;
        let e = wait_export(&f.client, &ns, &export, "checked", |e| {
            in_phase(e, &[ExportPhase::Blocked, ExportPhase::Failed])
                || (in_phase(e, &[ExportPhase::InReview]))
        })
        .await?;
        let status = e.status.clone().context("status")?;
        let scan = status.scan.clone().context("no verdict")?;
        ensure!(scan.verdict != "pass", "a cell of 3 passed: {scan:?}");
        ensure!(
            scan.files[0].checks.iter().any(|c| c == "threshold"),
            "threshold did not fire: {scan:?}"
        );
        if status.phase == Some(ExportPhase::InReview) {
            // Sent to a human: a reviewer rejects it.
            review(CAROL, &ns, &export, CAROL, "Reject").await?;
        }
        let e = wait_export(&f.client, &ns, &export, "wiped", |e| {
            e.status.as_ref().is_some_and(|s| s.wipe.is_some())
        })
        .await?;
        let status = e.status.clone().context("status")?;
        ensure!(
            matches!(
                status.phase,
                Some(ExportPhase::Blocked | ExportPhase::Rejected)
            ),
            "{status:?}"
        );
        ensure!(status.released.is_none(), "released: {status:?}");
        let wipe = status.wipe.context("no attestation")?;
        ensure!(
            wipe.bytes >= SMALL_CELLS.len() as i64,
            "the attestation covers {} bytes",
            wipe.bytes
        );
        // Nothing of it is left anywhere.
        let uid = e.metadata.uid.clone().context("uid")?;
        for claim_ns in [ns.as_str(), VAULT, RELEASE] {
            let claims = Api::<PersistentVolumeClaim>::namespaced(f.client.clone(), claim_ns);
            let name = format!("seal-{uid}");
            let left = claims.get_opt(&name).await?;
            // Deleted before the attestation was written; the claim itself
            // goes once the wipe's pod has let go of it.
            ensure!(
                left.is_none_or(|c| c.metadata.deletion_timestamp.is_some()),
                "the sealed claim is still in {claim_ns}, not being deleted"
            );
            wait_gone(&claims, &name, Duration::from_secs(60))
                .await
                .with_context(|| format!("the sealed claim in {claim_ns}"))?;
        }
        // A blocked or rejected export is never released, whatever comes later.
        let late = review(DAVE, &ns, &export, DAVE, "Approve").await;
        ensure!(late.is_err(), "a review was admitted after the decision");
        let seen = actions(&records_of(&f.client, &uid).await?);
        ensure!(seen.iter().any(|a| a.starts_with("wiped:")), "{seen:?}");
        ensure!(!seen.iter().any(|a| a.starts_with("released:")), "{seen:?}");
        Ok(())
    })
    .await
}

/// Whether `user` may `verb` `resource`/`subresource` in `ns`, as the API server says.
async fn may(
    user: &str,
    ns: &str,
    verb: &str,
    resource: &str,
    subresource: Option<&str>,
) -> Result<bool> {
    let client = client_as(user, &["system:authenticated"]).await?;
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.into()),
                verb: Some(verb.into()),
                resource: Some(resource.into()),
                subresource: subresource.map(str::to_string),
                group: Some(if resource == "exports" {
                    "cleanroom.io".into()
                } else {
                    String::new()
                }),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client)
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

#[tokio::test]
async fn a_non_interactive_workspace_gives_its_members_no_exec_and_no_logs() -> Result<()> {
    with_fixture(|f| async move {
        let authz = f.authorization().await?;
        let open = f.ready_scenario(&authz, |_| {}).await?;
        let closed = f
            .ready_scenario(&authz, |s: &mut Value| {
                s["workspace"]["interactive"] = json!(false)
            })
            .await?;
        let (open_ns, closed_ns) = (
            namespace_of(&open.metadata.name.clone().context("n")?),
            namespace_of(&closed.metadata.name.clone().context("n")?),
        );
        ensure!(
            may(ALICE, &open_ns, "create", "pods", Some("exec")).await?,
            "an interactive workspace refuses exec"
        );
        ensure!(
            !may(ALICE, &closed_ns, "create", "pods", Some("exec")).await?,
            "a non-interactive workspace allows exec"
        );
        ensure!(
            !may(ALICE, &closed_ns, "get", "pods", Some("log")).await?,
            "a non-interactive workspace shows logs"
        );
        ensure!(
            may(ALICE, &closed_ns, "create", "exports", None).await?,
            "members of a non-interactive workspace cannot export"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn raw_records_copied_into_a_product_are_blocked_with_the_raw_data_mounted_read_only()
-> Result<()> {
    with_fixture(|f| async move {
        let (_, _, dataset, authz) = f.population(POPULATION_CSV.as_bytes()).await?;
        let name = unique_name("e2e");
        f.create_scenario(&name, data_scenario(&authz, &dataset))
            .await?;
        f.wait_scenario(&name, "Ready=True", T, |s| has_condition(s, "Ready", true))
            .await?;
        let ns = namespace_of(&name);
        // Three raw records, as if recovered: identifiers and all.
        let leak: String = POPULATION_CSV
            .lines()
            .take(4)
            .map(|l| format!("{l}\n"))
            .collect();
        put_in_outbox(&f.client, &name, "residents.csv", &leak).await?;
        let alice = client_as(ALICE, &["system:authenticated"]).await?;
        let mut export = table_export(ALICE, "residents.csv")?;
        export.spec.files[0].kind = cleanroom::api::ProductKind::Microdata;
        export.spec.files[0].columns = None;
        let export = submit(&alice, &ns, &export).await?;
        let e = wait_export(&f.client, &ns, &export, "checked", |e| {
            in_phase(
                e,
                &[
                    ExportPhase::Blocked,
                    ExportPhase::Failed,
                    ExportPhase::InReview,
                ],
            )
        })
        .await?;
        let status = e.status.clone().context("status")?;
        ensure!(status.phase == Some(ExportPhase::Blocked), "{status:?}");
        let scan = status.scan.context("no verdict")?;
        ensure!(scan.verdict == "fail", "{scan:?}");
        // Matched against the raw file itself, not only by the shape of
        // identifiers: the scan had the raw dataset mounted and named.
        let checks = &scan.files[0].checks;
        ensure!(checks.iter().any(|c| c == "raw-value"), "{checks:?}");
        let records = records_of(&f.client, &e.metadata.uid.clone().context("uid")?).await?;
        ensure!(
            records.iter().any(|r| r.action.as_str() == "checked"),
            "no checked record"
        );
        Ok(())
    })
    .await
}
