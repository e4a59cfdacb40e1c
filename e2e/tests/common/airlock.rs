//! The airlock's test helpers: reviewers, tables, exports and reviews made
//! as a given user, and where released files land.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cleanroom::api::airlock::{Export, ExportPhase, Review};
use cleanroom_e2e::harness::{unique_name, wait_for};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::*;

pub const CAROL: &str = "carol@bureau.example";
pub const DAVE: &str = "dave@bureau.example";
pub const RELEASE: &str = "cleanroom-release";

/// A table whose every cell counts at least 12 people.
pub const CLEAN_TABLE: &str = "district,n\n鼓楼区,120\n台江区,85\n仓山区,97\n晋安区,64\n";
/// The same table with a cell of 3.
pub const SMALL_CELLS: &str = "district,n\n鼓楼区,120\n台江区,3\n仓山区,97\n晋安区,64\n";

/// A member of the authorization who is not the requester.
pub const ERIN: &str = "erin@acme.example";

/// An authorization with ALICE and ERIN as members and `approvals`, whose
/// careless reviewer list also names both members: the API server must
/// still refuse their reviews.
pub async fn reviewed_authorization(f: &Fixture, approvals: i32) -> Result<String> {
    let name = unique_name("e2e-airlock");
    let mut spec = authorization_spec(&[])?;
    spec["members"] = json!({"users": [ALICE, ERIN]});
    spec["review"] =
        json!({"approvals": approvals, "reviewers": {"users": [CAROL, DAVE, ALICE, ERIN]}});
    f.create_authorization(&name, spec).await?;
    Ok(name)
}

/// Writes `content` into the scenario's outbox as the workspace would.
pub async fn put_in_outbox(
    client: &Client,
    scenario: &str,
    file: &str,
    content: &str,
) -> Result<PathBuf> {
    let root = workspace_owned_dir(&scratch_volume(client, scenario).await?)?;
    write_as_workspace(&root, &format!("outbox/{file}"), content.as_bytes())
}

pub fn table_export(requester: &str, file: &str) -> Result<Export> {
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

pub async fn submit(as_user: &Client, ns: &str, export: &Export) -> Result<String> {
    let made = Api::<Export>::namespaced(as_user.clone(), ns)
        .create(&PostParams::default(), export)
        .await?;
    made.metadata.name.context("export without a name")
}

pub async fn wait_export(
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

pub fn in_phase(e: &Export, phases: &[ExportPhase]) -> bool {
    e.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| phases.contains(&p))
}

/// Makes a review of `export` as `user` (naming `reviewer`).
pub async fn review(
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
pub async fn release_dir(client: &Client, authorization: &str) -> Result<PathBuf> {
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

pub async fn delete_release_claim(client: &Client, authorization: &str) -> Result<()> {
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), RELEASE);
    let _ = claims
        .delete(
            &format!("release-{authorization}"),
            &DeleteParams::default(),
        )
        .await;
    Ok(())
}

pub fn actions(records: &[cleanroom::audit::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{}:{}", r.action.as_str(), r.actor))
        .collect()
}
