//! The API server's floor for `make bench`: a plain client that writes the
//! objects a workspace needs (the operator's own builders: namespace,
//! network policy, quota, limit range, service account, role binding,
//! claim, Deployment), in the operator's order, for N workspaces at once,
//! with no operator, no status and no audit. What it takes is what the
//! local API server and etcd need for those writes on this machine; the
//! operator's figures are printed as a ratio to it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::Value;

use cleanroom::api::ScenarioSpec;
use cleanroom::workspace::{self, Identity};

/// Label on every namespace the floor makes (value: the run).
pub const LABEL: &str = "cleanroom.io/bench-floor";

/// The resource of an object built as JSON (`apiVersion`, `kind`).
fn resource_of(object: &Value) -> Result<ApiResource> {
    let api_version = object["apiVersion"].as_str().context("apiVersion")?;
    let kind = object["kind"].as_str().context("kind")?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "NetworkPolicy" => "networkpolicies".to_string(),
        k => format!("{}s", k.to_lowercase()),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        &plural,
    ))
}

/// The objects of workspace `i` of `run`, as the operator builds them, in
/// its order; no owner reference (there is no scenario to own them, and
/// the garbage collector would delete them).
pub fn objects(run: &str, i: usize, spec: &ScenarioSpec, member_role: &str) -> Result<Vec<Value>> {
    let id = Identity {
        scenario: format!("floor-{run}-{i:04}"),
        uid: format!("00000000-0000-4000-8000-{i:012}"),
        authorization: "floor".into(),
        namespace: format!("floor-{run}-{i:04}"),
    };
    let mut out = workspace::desired(&id, spec, false, None, member_role)?;
    for o in &mut out {
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("ownerReferences");
        }
        o["metadata"]["labels"][LABEL] = Value::String(run.to_string());
    }
    Ok(out)
}

/// Writes one workspace: the namespace created, the rest applied
/// server-side, one after the other. Returns how long it took.
async fn write_one(client: &Client, objects: Vec<Value>) -> Result<Duration> {
    let started = Instant::now();
    let pp = PatchParams::apply("cleanroom-floor").force();
    for object in objects {
        let resource = resource_of(&object)?;
        let obj: DynamicObject = serde_json::from_value(object)?;
        let name = obj.metadata.name.clone().context("name")?;
        match obj.metadata.namespace.clone() {
            None => {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
                api.create(&PostParams::default(), &obj).await?;
            }
            Some(ns) => {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
                api.patch(&name, &pp, &Patch::Apply(&obj)).await?;
            }
        }
    }
    Ok(started.elapsed())
}

/// Writes `n` workspaces, `concurrency` at a time: each one's time, and the
/// wall time for all.
pub async fn run(
    client: &Client,
    run: &str,
    n: usize,
    concurrency: usize,
    spec: &ScenarioSpec,
    member_role: &str,
) -> Result<(Vec<f64>, Duration)> {
    let all: Vec<Vec<Value>> = (0..n)
        .map(|i| objects(run, i, spec, member_role))
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let each: Vec<Duration> = stream::iter(all)
        .map(|objects| write_one(client, objects))
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok((
        each.iter().map(Duration::as_secs_f64).collect(),
        started.elapsed(),
    ))
}

/// The floor of expiry: deletes the members' binding and the Deployment of
/// each of the `n` workspaces written by [`run`], both at once, all `n` at
/// once, as the operator does when they all expire at one instant. Returns
/// each workspace's time until both deletions were answered, and the wall
/// time for all.
pub async fn stop(client: &Client, run: &str, n: usize) -> Result<(Vec<f64>, Duration)> {
    let started = Instant::now();
    let each: Vec<Duration> = stream::iter(0..n)
        .map(|i| async move {
            let ns = format!("floor-{run}-{i:04}");
            let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
                Api::namespaced(client.clone(), &ns);
            let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
                Api::namespaced(client.clone(), &ns);
            let dp = DeleteParams::default();
            futures::try_join!(
                bindings.delete(workspace::access::MEMBER_BINDING, &dp),
                deployments.delete(workspace::compute::WORKSPACE, &dp),
            )?;
            Ok::<_, anyhow::Error>(started.elapsed())
        })
        .buffer_unordered(n.max(1))
        .try_collect()
        .await?;
    Ok((
        each.iter().map(Duration::as_secs_f64).collect(),
        started.elapsed(),
    ))
}

/// Deletes the floor's namespaces and waits until they are gone, so that
/// the operator's run that follows has the cluster to itself.
pub async fn clean(client: &Client, run: &str, timeout: Duration) -> Result<()> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mine = ListParams::default().labels(&format!("{LABEL}={run}"));
    for ns in namespaces.list(&mine).await?.items {
        let name = ns.metadata.name.unwrap_or_default();
        let _ = namespaces.delete(&name, &DeleteParams::background()).await;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = namespaces.list(&mine).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{left} floor namespaces still there after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_writes_the_operator_s_eight_objects_unowned_and_labelled() -> Result<()> {
        let spec: ScenarioSpec = serde_json::from_value(serde_json::json!({
            "authorization": "floor", "purpose": "benchmark",
            "workspace": {"image": "bench", "resources": {"cpu": "100m", "memory": "64Mi"}, "scratch": "1Mi"},
            "members": {"users": ["analyst@bench.example"]}
        }))?;
        let objects = objects("r1", 7, &spec, "cleanroom-member")?;
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "NetworkPolicy",
                "ResourceQuota",
                "LimitRange",
                "ServiceAccount",
                "RoleBinding",
                "PersistentVolumeClaim",
                "Deployment"
            ]
        );
        for o in &objects {
            assert!(o["metadata"]["ownerReferences"].is_null(), "{o}");
            assert_eq!(o["metadata"]["labels"][LABEL], "r1");
        }
        assert_eq!(
            resource_of(&objects[1])?.plural,
            "networkpolicies",
            "plural of NetworkPolicy"
        );
        assert_eq!(resource_of(&objects[6])?.plural, "persistentvolumeclaims");
        Ok(())
    }
}
