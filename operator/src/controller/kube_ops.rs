//! The few ways the operator writes to the cluster: server-side apply with one
//! field manager, deletes that tolerate absence, status patches that skip
//! no-ops, and the finalizer.

use std::fmt::Debug;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::{Api, Client, Resource, ResourceExt};

use crate::api::Time;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Context, Error};
use crate::api::{Scenario, ScenarioStatus};
use crate::workspace::{FIELD_MANAGER, Identity};

/// Server-side apply of `object` (which names itself) through `api`.
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(&name, &params, &Patch::Apply(object)).await?)
}

/// Deletes `name` (children go in the background); absence is success.
/// Returns true if the object was there.
pub async fn delete<K>(api: &Api<K>, name: &str) -> Result<bool, Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes `name` only if it is `id`'s (see [`free_or_owned`]): a name
/// alone proves nothing, someone else's object of that name is left alone.
/// Returns true if ours was there.
pub async fn delete_if_owned<K>(api: &Api<K>, name: &str, id: &Identity) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    match free_or_owned(api, name, id).await? {
        Ok(true) => delete(api, name).await,
        Ok(false) | Err(_) => Ok(false),
    }
}

/// Whether the object called `name` is free to be made or is `id`'s own:
/// `Err` names it when someone else's object holds the name.
pub async fn free_or_owned<K>(
    api: &Api<K>,
    name: &str,
    id: &Identity,
) -> Result<Result<bool, String>, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    Ok(match api.get_metadata_opt(name).await? {
        None => Ok(false),
        Some(found) if id.owns(&found.metadata) => Ok(true),
        Some(_) => Err(format!(
            "{} {}{name} exists and is not this scenario's (no {}={}); it is left alone",
            K::kind(&()),
            api.namespace()
                .map(|ns| format!("{ns}/"))
                .unwrap_or_default(),
            crate::workspace::labels::SCENARIO_UID,
            id.uid
        )),
    })
}

/// Writes the scenario's status unless it is unchanged, after appending to
/// the audit ledger the records the change calls for (see [`crate::audit`]):
/// if the status write then fails, its retry finds them and adds none.
pub async fn patch_status(
    ctx: &Context,
    api: &Api<Scenario>,
    scenario: &Scenario,
    status: &ScenarioStatus,
) -> Result<(), Error> {
    // The scenario may come from a cache that has not seen this process's
    // last write yet: the memo knows what the API server holds.
    let fingerprint = super::memo::fingerprint(&[serde_json::to_value(status)?]);
    let cached = match &scenario.status {
        Some(s) => Some(super::memo::fingerprint(&[serde_json::to_value(s)?])),
        None => None,
    };
    let read = scenario.uid().zip(scenario.resource_version());
    let unchanged = match &read {
        Some((uid, rv)) => ctx.memo.status_unchanged(uid, rv, cached, fingerprint),
        None => cached == Some(fingerprint),
    };
    if unchanged {
        return Ok(());
    }
    ctx.audit.record_scenario(scenario, status).await?;
    let patch = json!({
        "apiVersion": Scenario::api_version(&()),
        "kind": Scenario::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&scenario.name_any(), &params, &Patch::Apply(&patch))
        .await?;
    if let Some((uid, rv)) = &read {
        ctx.memo.wrote_status(uid, rv, fingerprint);
    }
    Ok(())
}

/// Adds `finalizer` if missing. The list is replaced with a test on the
/// resourceVersion, so a concurrent change to it is never lost.
pub async fn ensure_finalizer<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    if object.finalizers().iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let mut finalizers = object.finalizers().to_vec();
    finalizers.push(finalizer.to_string());
    set_finalizers(api, object, finalizers).await
}

/// Removes `finalizer`, letting a deleted object go.
pub async fn remove_finalizer<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    if !object.finalizers().iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let finalizers = object
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    set_finalizers(api, object, finalizers).await
}

async fn set_finalizers<K>(api: &Api<K>, object: &K, finalizers: Vec<String>) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let patch = json!({
        "metadata": {
            "resourceVersion": object.resource_version(),
            "finalizers": finalizers,
        }
    });
    match api
        .patch(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Gone already: nothing holds it any more.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Where a Job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Not finished.
    Running,
    /// Its pod succeeded.
    Succeeded,
    /// Its pod failed, or the Job gave up (deadline, backoff).
    Failed,
}

/// Reads a Job's status; every Job the operator runs has one pod at most.
pub fn job_outcome(job: &Job) -> JobOutcome {
    let status = job.status.clone().unwrap_or_default();
    let failed = status.failed.unwrap_or(0) > 0
        || status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Failed" && c.status == "True");
    if status.succeeded.unwrap_or(0) > 0 {
        JobOutcome::Succeeded
    } else if failed {
        JobOutcome::Failed
    } else {
        JobOutcome::Running
    }
}

/// The termination message of the newest finished pod of a Job.
pub async fn termination_message(
    client: &Client,
    ns: &str,
    job: &str,
) -> Result<Option<String>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await?;
    let mut finished: Vec<(Option<Time>, String)> = list
        .items
        .iter()
        .filter_map(|p| {
            let terminated = p
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()?
                .state
                .as_ref()?
                .terminated
                .as_ref()?;
            Some((
                terminated.finished_at.clone(),
                terminated.message.clone().unwrap_or_default(),
            ))
        })
        .collect();
    finished.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(finished
        .pop()
        .map(|(_, m)| m)
        .filter(|m| !m.trim().is_empty()))
}
