//! What happens to an export once nothing more can happen to it: its review
//! closes and its sealed copy is wiped, with an attestation in status and in
//! the ledger (a released product lives on in the release claim).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::{Workspace, draft, write_status};
use crate::api::airlock::ExportStatus;
use crate::api::dataset::VAULT_NAMESPACE;
use crate::api::{Export, Time, WipeAttestation};
use crate::audit::Action as Audit;
use crate::audit::record::OPERATOR_ACTOR;
use crate::controller::kube_ops::{delete, delete_if_owned};
use crate::controller::teardown::{WipeState, capacity, wipe};
use crate::controller::{Context, Error};
use crate::workspace::airlock::{
    RELEASE_NAMESPACE, RELEASED_ANNOTATION_PREFIX, REVIEW_ANNOTATION_PREFIX, release_job_name,
    scan_name, seal_name,
};
use crate::workspace::wipe::job_name;

/// Where the wipe of a sealed copy stands.
pub(crate) enum Wiped {
    /// Under way (or failed and kept for a human): look again then.
    Pending(Duration),
    /// Nothing left; the attestation if this pass completed a wipe.
    Done(Option<WipeAttestation>),
}

/// A final phase: close the review, wipe the sealed copy once.
pub(super) async fn finish(
    ctx: &Context,
    api: &Api<Export>,
    export: &Export,
    w: &Workspace,
    mut status: ExportStatus,
    now: &Time,
) -> Result<Action, Error> {
    close_review(ctx, export, w, false).await?;
    if status.wipe.is_some() {
        return Ok(Action::await_change());
    }
    match wipe_sealed(ctx, export, w, &status, now).await? {
        Wiped::Pending(again) => Ok(Action::requeue(again)),
        Wiped::Done(None) => Ok(Action::await_change()),
        Wiped::Done(Some(attestation)) => {
            let record = draft(export, w, Audit::Wiped, OPERATOR_ACTOR, json!(attestation));
            status.wipe = Some(attestation);
            write_status(ctx, api, export, &status, vec![record]).await?;
            Ok(Action::await_change())
        }
    }
}

/// Removes the export's `review.cleanroom.io/` annotation (and, once
/// recalled, its `released.cleanroom.io/` one): no Review of it is admitted
/// any more. A released export keeps the latter unless `all`: it may be
/// recalled.
pub(crate) async fn close_review(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
    all: bool,
) -> Result<(), Error> {
    let name = export.name_any();
    let mut keys = vec![format!("{REVIEW_ANNOTATION_PREFIX}{name}")];
    let phase = export.status.as_ref().and_then(|s| s.phase);
    if all || phase != Some(crate::api::airlock::ExportPhase::Released) {
        keys.push(format!("{RELEASED_ANNOTATION_PREFIX}{name}"));
    }
    remove_annotations(ctx, w, keys).await
}

/// Removes those of `keys` the workspace namespace carries.
pub(crate) async fn remove_annotations(
    ctx: &Context,
    w: &Workspace,
    keys: Vec<String>,
) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let present: Vec<String> = namespaces
        .get_metadata_opt(&w.id.namespace)
        .await?
        .map(|n| {
            keys.into_iter()
                .filter(|k| n.annotations().contains_key(k))
                .collect()
        })
        .unwrap_or_default();
    if !present.is_empty() {
        let nulls: serde_json::Map<String, serde_json::Value> = present
            .into_iter()
            .map(|k| (k, serde_json::Value::Null))
            .collect();
        let patch = json!({"metadata": {"annotations": nulls}});
        namespaces
            .patch(
                &w.id.namespace,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(())
}

/// Wipes the sealed copy wherever it is (workspace, vault or release
/// namespace), then removes it and the export's Jobs and policy.
pub(super) async fn wipe_sealed(
    ctx: &Context,
    export: &Export,
    w: &Workspace,
    status: &ExportStatus,
    now: &Time,
) -> Result<Wiped, Error> {
    let uid = export.metadata.uid.clone().unwrap_or_default();
    let name = seal_name(&uid);
    let places =
        [w.id.namespace.as_str(), VAULT_NAMESPACE, RELEASE_NAMESPACE].map(|ns| (ns, name.as_str()));
    let (wiped, wiped_in) = wipe_held(ctx, w, &places, status, now).await?;
    if let Wiped::Done(_) = wiped {
        let wiped_in = wiped_in.unwrap_or(w.id.namespace.as_str());
        remove_children(ctx, w, &uid, wiped_in).await?;
    }
    Ok(wiped)
}

/// Wipes the first of `places` (namespace, claim) that holds its volume
/// and is the scenario's, then deletes the claim (and a retained sealed
/// volume); claims left behind by a move are deleted unwiped. Also says in
/// which namespace a wipe was done.
pub(crate) async fn wipe_held<'a>(
    ctx: &Context,
    w: &Workspace,
    places: &[(&'a str, &str)],
    status: &ExportStatus,
    now: &Time,
) -> Result<(Wiped, Option<&'a str>), Error> {
    for &(ns, name) in places {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
        let Some(claim) = claims
            .get_opt(name)
            .await?
            .filter(|c| w.id.owns(&c.metadata))
        else {
            continue;
        };
        if !holds_its_volume(ctx, &claim).await? {
            // Left behind by a move (the volume is bound elsewhere) or never
            // provisioned: it holds nothing to wipe.
            delete(&claims, name).await?;
            continue;
        }
        let size = capacity(&claim);
        match wipe(&w.id, ctx, ns, name, size.as_deref(), now).await? {
            WipeState::Running => return Ok((Wiped::Pending(Duration::from_secs(10)), None)),
            WipeState::Failed(why) => {
                warn!(claim = name, namespace = ns, %why, "wipe of an airlock copy failed; kept for a human");
                return Ok((Wiped::Pending(Duration::from_secs(300)), None));
            }
            WipeState::Attested(attestation) => {
                delete(&claims, name).await?;
                delete_retained(ctx, status).await?;
                return Ok((Wiped::Done(Some(attestation)), Some(ns)));
            }
        }
    }
    Ok((Wiped::Done(None), None))
}

/// Whether `claim` is the one its volume is bound to: after a move the
/// former claim may still say Bound, but the volume's `claimRef` names the
/// new claim's uid.
async fn holds_its_volume(ctx: &Context, claim: &PersistentVolumeClaim) -> Result<bool, Error> {
    let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
        return Ok(false);
    };
    let pv = Api::<PersistentVolume>::all(ctx.client.clone())
        .get_opt(&volume)
        .await?;
    let bound_uid = pv.and_then(|pv| pv.spec?.claim_ref?.uid);
    Ok(bound_uid.is_some() && bound_uid == claim.metadata.uid)
}

/// A sealed volume kept by `Retain` (a move was under way) is deleted once
/// wiped; with `Delete` its provisioner removes it with the claim.
async fn delete_retained(ctx: &Context, status: &ExportStatus) -> Result<(), Error> {
    let Some(sealed) = &status.sealed else {
        return Ok(());
    };
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let retained = volumes.get_opt(&sealed.volume).await?.is_some_and(|pv| {
        pv.spec
            .and_then(|s| s.persistent_volume_reclaim_policy)
            .as_deref()
            == Some("Retain")
    });
    if retained {
        delete(&volumes, &sealed.volume).await?;
    }
    Ok(())
}

/// The export's Jobs and the scan policy, wherever they are.
async fn remove_children(
    ctx: &Context,
    w: &Workspace,
    uid: &str,
    wiped_in: &str,
) -> Result<(), Error> {
    let client = &ctx.client;
    let jobs = |ns: &str| Api::<Job>::namespaced(client.clone(), ns);
    delete_if_owned(&jobs(&w.id.namespace), &seal_name(uid), &w.id).await?;
    delete_if_owned(&jobs(VAULT_NAMESPACE), &scan_name(uid), &w.id).await?;
    delete_if_owned(&jobs(RELEASE_NAMESPACE), &release_job_name(uid), &w.id).await?;
    delete_if_owned(&jobs(wiped_in), &job_name(&seal_name(uid)), &w.id).await?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), VAULT_NAMESPACE);
    delete_if_owned(&maps, &scan_name(uid), &w.id).await?;
    Ok(())
}
