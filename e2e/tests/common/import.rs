//! The import test helpers: claims staged by staff in the import
//! namespace, imports and their reviews made as a given user, and what the
//! workspace Deployment mounts.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cleanroom::api::airlock::ExportPhase;
use cleanroom::api::import::{IMPORT_FOR_LABEL, IMPORT_NAMESPACE};
use cleanroom::api::{Import, Review};
use cleanroom_e2e::harness::{unique_name, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::*;

pub const DAILY: &str = "day,rain_mm\n2026-11-01,3.5\n2026-11-02,0\n2026-11-03,12.25\n";
pub const NOTES: &str = "# Rainfall\n\nDaily totals per station, millimetres.\n";

/// A claim in the import namespace, staged by staff for `scenario` (label
/// left off when `None`), holding `files`. Returns its name.
pub async fn stage(
    client: &Client,
    scenario: Option<&str>,
    files: &[(&str, &str)],
) -> Result<String> {
    let name = unique_name("staged");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), IMPORT_NAMESPACE);
    let labels = scenario.map_or(json!({}), |s| json!({ IMPORT_FOR_LABEL: s }));
    let claim: PersistentVolumeClaim = from_json(json!({
        "metadata": {"name": name, "namespace": IMPORT_NAMESPACE, "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}
    }))?;
    claims.create(&PostParams::default(), &claim).await?;
    let bound = wait_for(
        &claims,
        &name,
        "claim Bound",
        T,
        |c: Option<&PersistentVolumeClaim>| {
            c.and_then(|c| c.status.as_ref()?.phase.as_deref()) == Some("Bound")
        },
    )
    .await?;
    let volume = bound
        .spec
        .and_then(|s| s.volume_name)
        .context("no volume")?;
    let root = host_dir(
        &Api::<PersistentVolume>::all(client.clone())
            .get(&volume)
            .await?,
    )?;
    for (path, content) in files {
        write_raw(&root, path, content.as_bytes())?;
    }
    Ok(name)
}

pub async fn unstage(client: &Client, name: &str) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), IMPORT_NAMESPACE);
    let _ = claims.delete(name, &DeleteParams::default()).await;
}

pub fn import(requester: &str, claim: &str, files: Value) -> Result<Import> {
    from_json(json!({
        "apiVersion": "cleanroom.io/v1alpha1", "kind": "Import",
        "metadata": {"name": unique_name("weather")},
        "spec": {"requester": requester, "supplier": "Provincial Meteorological Bureau",
            "legalBasis": {"kind": "Contract", "reference": "PMB-2026-041"},
            "stagingClaim": claim, "files": files,
            "purpose": "rainfall beside the care visits, per day"}
    }))
}

pub fn weather_files() -> Value {
    json!([{"path": "daily.csv", "schema": [{"name": "day", "type": "date"}, {"name": "rain_mm", "type": "decimal"}]},
           {"path": "notes.md"}])
}

pub async fn submit_import(as_user: &Client, ns: &str, i: &Import) -> Result<String> {
    let made = Api::<Import>::namespaced(as_user.clone(), ns)
        .create(&PostParams::default(), i)
        .await?;
    made.metadata.name.context("import without a name")
}

pub async fn wait_import(
    client: &Client,
    ns: &str,
    name: &str,
    phases: &[ExportPhase],
) -> Result<Import> {
    let what = format!("import in {phases:?}");
    wait_for(
        &Api::<Import>::namespaced(client.clone(), ns),
        name,
        &what,
        T,
        |i: Option<&Import>| {
            i.and_then(|i| i.status.as_ref()?.phase)
                .is_some_and(|p| phases.contains(&p))
        },
    )
    .await
}

/// A review of the import `import` as `user`.
pub async fn review_import(user: &str, ns: &str, import: &str, decision: &str) -> Result<Review> {
    let client = client_as(user, &["system:authenticated"]).await?;
    let review: Review = from_json(json!({
        "apiVersion": "cleanroom.io/v1alpha1", "kind": "Review",
        "metadata": {"name": unique_name("review")},
        "spec": {"import": import, "reviewer": user, "decision": decision, "comment": "supplier and schema checked"}
    }))?;
    Ok(Api::<Review>::namespaced(client, ns)
        .create(&PostParams::default(), &review)
        .await?)
}

/// The workspace Deployment's volume and mount for `claim`, if any.
pub fn mounted(d: &Deployment, claim: &str) -> Option<(Value, Value)> {
    let pod = serde_json::to_value(d.spec.template.spec.as_ref()?).ok()?;
    let volume = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["persistentVolumeClaim"]["claimName"] == claim)?
        .clone();
    let mounts = pod["containers"][0]["volumeMounts"].as_array()?;
    let mount = mounts.iter().find(|m| m["name"] == volume["name"])?.clone();
    Some((volume, mount))
}

pub async fn claim_dir(client: &Client, ns: &str, claim: &str) -> Result<PathBuf> {
    let c = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get(claim)
        .await?;
    let volume = c
        .spec
        .and_then(|s| s.volume_name)
        .context("claim unbound")?;
    host_dir(
        &Api::<PersistentVolume>::all(client.clone())
            .get(&volume)
            .await?,
    )
}
