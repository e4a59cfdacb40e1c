//! The few ways the operator writes to the cluster: server-side apply with one
//! field manager, deletes that tolerate absence, status patches that skip
//! no-ops, and the finalizer.

use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Error, FINALIZER};
use crate::api::{Scenario, ScenarioStatus};
use crate::workspace::FIELD_MANAGER;

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

/// Writes the scenario's status unless it is unchanged.
pub async fn patch_status(
    api: &Api<Scenario>,
    scenario: &Scenario,
    status: &ScenarioStatus,
) -> Result<(), Error> {
    if scenario.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": Scenario::api_version(&()),
        "kind": Scenario::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&scenario.name_any(), &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// Adds the teardown finalizer if missing. The list is replaced with a test
/// on the resourceVersion, so a concurrent change to it is never lost.
pub async fn ensure_finalizer(api: &Api<Scenario>, scenario: &Scenario) -> Result<(), Error> {
    if scenario.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = scenario.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    set_finalizers(api, scenario, finalizers).await
}

/// Removes the teardown finalizer, letting a deleted Scenario go.
pub async fn remove_finalizer(api: &Api<Scenario>, scenario: &Scenario) -> Result<(), Error> {
    if !scenario.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let finalizers = scenario
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(api, scenario, finalizers).await
}

async fn set_finalizers(
    api: &Api<Scenario>,
    scenario: &Scenario,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let patch = json!({
        "metadata": {
            "resourceVersion": scenario.resource_version(),
            "finalizers": finalizers,
        }
    });
    match api
        .patch(
            &scenario.name_any(),
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
