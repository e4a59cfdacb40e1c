//! The airlock end to end, with the agent really running: an analyst's
//! table leaves a workspace only sealed, checked and approved by two
//! reviewers the API server vouches for, byte for byte what was sealed;
//! small cells never leave; what will never be released is wiped with an
//! attestation; a non-interactive workspace gives its members no exec.
//!
//! Needs the local control plane and the operator (`make e2e`).

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use cleanroom::api::airlock::{Export, ExportPhase, Review};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use sha2::Digest;

mod common;
use cleanroom_e2e::harness::{unique_name, wait_for};
use common::*;

const CAROL: &str = "carol@bureau.example";
const DAVE: &str = "dave@bureau.example";
const RELEASE: &str = "cleanroom-release";

/// A table whose every cell counts at least 12 people.
const CLEAN_TABLE: &str = "district,n\n鼓楼区,120\n台江区,85\n仓山区,97\n晋安区,64\n";
/// The same table with a cell of 3.
const SMALL_CELLS: &str = "district,n\n鼓楼区,120\n台江区,3\n仓山区,97\n晋安区,64\n";

/// A member of the authorization who is not the requester.
const ERIN: &str = "erin@acme.example";

/// An authorization with ALICE and ERIN as members and two approvals, whose
/// careless reviewer list also names both members: the API server must
/// still refuse their reviews.
async fn reviewed_authorization(f: &Fixture) -> Result<String> {
    let name = unique_name("e2e-airlock");
    let mut spec = authorization_spec(&[])?;
    spec["members"] = json!({"users": [ALICE, ERIN]});
    spec["review"] = json!({"approvals": 2, "reviewers": {"users": [CAROL, DAVE, ALICE, ERIN]}});
    f.create_authorization(&name, spec).await?;
    Ok(name)
}

/// Writes `content` into the scenario's outbox as the workspace would.
async fn put_in_outbox(
    client: &Client,
    scenario: &str,
    file: &str,
    content: &str,
) -> Result<PathBuf> {
    let root = workspace_owned_dir(&scratch_volume(client, scenario).await?)?;
    write_as_workspace(&root, &format!("outbox/{file}"), content.as_bytes())
}

fn table_export(requester: &str, file: &str) -> Result<Export> {
    from_json(json!({
        "apiVersion": "cleanroom.io/v1alpha1", "kind": "Export",
        "metadata": {"name": unique_name("table")},
        "spec": {
            "requester": requester,
            "files": [{"path": file, "kind": "Table", "columns": {"keys": ["district"], "counts": ["n"]}}],
            "context": "households per district, 2024",
            "controls": "counts of at least 10; no district below 50 households",
        }
    }))
}

async fn submit(as_user: &Client, ns: &str, export: &Export) -> Result<String> {
    let made = Api::<Export>::namespaced(as_user.clone(), ns)
        .create(&PostParams::default(), export)
        .await?;
    made.metadata.name.context("export without a name")
}

async fn wait_export(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    holds: impl Fn(&Export) -> bool,
) -> Result<Export> {
    wait_for(
        &Api::<Export>::namespaced(client.clone(), ns),
        name,
        what,
        T,
        |e: Option<&Export>| e.is_some_and(&holds),
    )
    .await
}

fn in_phase(e: &Export, phases: &[ExportPhase]) -> bool {
    e.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| phases.contains(&p))
}

/// Makes a review of `export` as `user` (naming `reviewer`).
async fn review(
    user: &str,
    ns: &str,
    export: &str,
    reviewer: &str,
    decision: &str,
) -> Result<Review> {
    let client = client_as(user, &["system:authenticated"]).await?;
    let review: Review = from_json(json!({
        "apiVersion": "cleanroom.io/v1alpha1", "kind": "Review",
        "metadata": {"name": unique_name("review")},
        "spec": {"export": export, "reviewer": reviewer, "decision": decision, "comment": "checked the cells"}
    }))?;
    Ok(Api::<Review>::namespaced(client, ns)
        .create(&PostParams::default(), &review)
        .await?)
}

/// The host directory of the authorization's release claim.
async fn release_dir(client: &Client, authorization: &str) -> Result<PathBuf> {
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), RELEASE)
        .get(&format!("release-{authorization}"))
        .await?;
    let volume = claim
        .spec
        .and_then(|s| s.volume_name)
        .context("release claim unbound")?;
    host_dir(
        &Api::<PersistentVolume>::all(client.clone())
            .get(&volume)
            .await?,
    )
}

async fn delete_release_claim(client: &Client, authorization: &str) -> Result<()> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), RELEASE);
    let _ = claims
        .delete(
            &format!("release-{authorization}"),
            &DeleteParams::default(),
        )
        .await;
    Ok(())
}

fn actions(records: &[cleanroom::audit::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{}:{}", r.action.as_str(), r.actor))
        .collect()
}

#[tokio::test]
async fn a_clean_table_approved_by_two_reviewers_is_released_as_sealed() -> Result<()> {
    with_fixture(|f| async move {
        let authz = reviewed_authorization(&f).await?;
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
        let authz = reviewed_authorization(&f).await?;
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
            let left = Api::<PersistentVolumeClaim>::namespaced(f.client.clone(), claim_ns)
                .get_opt(&format!("seal-{uid}"))
                .await?;
            ensure!(left.is_none(), "the sealed claim is still in {claim_ns}");
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
