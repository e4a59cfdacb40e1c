//! Moving a volume from one claim to another, possibly in another namespace,
//! without ever leaving it unbound: the way prepared data reaches a
//! workspace and an export's sealed copy reaches the vault and the release
//! namespace.
//!
//! One step per call, each repeatable: the volume is set to `Retain` (so no
//! claim's deletion can reclaim it mid-way; its former policy is remembered
//! in an annotation), the target claim is created naming the volume, and
//! the volume's `claimRef` is moved to it. Once the target is bound the
//! policy is restored. The caller deletes the emptied source claim.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::Error;
use super::kube_ops::apply;
use crate::workspace::Identity;
use crate::workspace::data::RECLAIM_ANNOTATION;

/// Where a move stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// The target claim is bound to the volume.
    Done,
    /// A step was taken; the target's binding will wake the caller.
    Moving,
    /// The target name is taken by an object that is not the scenario's.
    Refused(String),
}

/// Moves `pv` to the claim `target` (which names the volume and carries
/// the labels the volume should get).
pub async fn move_volume(
    client: &kube::Client,
    id: &Identity,
    pv: &PersistentVolume,
    target: PersistentVolumeClaim,
) -> Result<Moved, Error> {
    let namespace = target.namespace().unwrap_or_default();
    let name = target.name_any();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let existing = claims.get_opt(&name).await?;
    if existing.as_ref().is_some_and(|c| !id.owns(&c.metadata)) {
        return Ok(Moved::Refused(format!(
            "claim {namespace}/{name} exists and is not this scenario's; it is left alone"
        )));
    }
    let bound = existing
        .as_ref()
        .is_some_and(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"));
    if bound {
        restore_reclaim_policy(&volumes, pv).await?;
        return Ok(Moved::Done);
    }
    let pv = keep_while_moving(&volumes, pv, target.labels()).await?;
    let claim = match existing {
        Some(c) => c,
        None => apply(&claims, &target).await?,
    };
    let points_here = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| {
            r.namespace.as_deref() == Some(namespace.as_str())
                && r.name.as_deref() == Some(name.as_str())
                && r.uid == claim.metadata.uid
        });
    if !points_here {
        let patch = json!({"spec": {"claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": namespace,
            "name": name,
            "uid": claim.metadata.uid,
            "resourceVersion": null,
            "fieldPath": null,
        }}});
        volumes
            .patch(
                &pv.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(Moved::Moving)
}

/// Sets the volume to `Retain` (remembering its policy) and gives it `labels`.
async fn keep_while_moving(
    volumes: &Api<PersistentVolume>,
    pv: &PersistentVolume,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<PersistentVolume, Error> {
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.clone())
        .unwrap_or_else(|| "Delete".into());
    let remembered = pv.annotations().get(RECLAIM_ANNOTATION).cloned();
    let mut patch = json!({"metadata": {"labels": labels}});
    if policy != "Retain" || remembered.is_none() {
        patch["metadata"]["annotations"] =
            json!({RECLAIM_ANNOTATION: remembered.unwrap_or(policy)});
        patch["spec"] = json!({"persistentVolumeReclaimPolicy": "Retain"});
    }
    Ok(volumes
        .patch(
            &pv.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?)
}

/// Puts back the reclaim policy the volume had before the move.
async fn restore_reclaim_policy(
    volumes: &Api<PersistentVolume>,
    pv: &PersistentVolume,
) -> Result<(), Error> {
    let Some(policy) = pv.annotations().get(RECLAIM_ANNOTATION) else {
        return Ok(());
    };
    let patch = json!({
        "metadata": {"annotations": {RECLAIM_ANNOTATION: null}},
        "spec": {"persistentVolumeReclaimPolicy": policy},
    });
    volumes
        .patch(
            &pv.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}
