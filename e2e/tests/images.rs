//! Only reviewed algorithms run in a workspace (requirements R3 and R13,
//! docs/requirements.md): an Authorization lists the images it approved,
//! pinned by digest; a Scenario with another image is Rejected, and in an
//! approved workspace the API server refuses any pod with another image, an
//! unpinned tag, a tag beside the digest or the approved digest under another
//! repository, even from a cluster admin (policy
//! `cleanroom-workspace-images`). Ephemeral containers (`kubectl debug`) are
//! refused in every workspace. And reviewed output only (R4): under
//! `review.requireReviewedOutput` an interactive workspace on `Core` data is
//! Rejected.
//!
//! Needs the local control plane and the operator beside it with the chart's
//! policies (`e2e/scripts/operator.sh restart`, or `make e2e`).

mod common;

use anyhow::{Context, Result, ensure};
use cleanroom::api::{Scenario, ScenarioPhase};
use cleanroom_e2e::harness::unique_name;
use common::{
    T, authorization_spec, client_as, condition, data_scenario, ensure_condition, namespace_of,
    phase, population_dataset, refusal, scenario_spec, with_fixture,
};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:3b4f7c0e5a1d9e8f6b2c4a7d0e9f1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a";
const POLICY: &str = "cleanroom-workspace-images";

fn approved() -> String {
    format!("registry.example.com/acme/notebook@{DIGEST}")
}

/// An authorization that approved exactly [`approved`].
fn approving_spec() -> Result<Value> {
    let mut spec = authorization_spec(&[])?;
    spec["approvedImages"] = json!([{"image": approved(), "review": "AR-2026-014"}]);
    Ok(spec)
}

/// A cluster admin: RBAC lets everything through, so what refuses is admission.
async fn admin() -> Result<Client> {
    client_as("admin@bureau.example", &["system:masters"]).await
}

/// A pod that passes Pod Security `restricted` and every other workspace
/// policy, with `image` in its container and `init` in an init container.
fn pod(name: &str, image: &str, init: Option<&str>) -> Result<Pod> {
    let container = |name: &str, image: &str| {
        json!({
            "name": name,
            "image": image,
            "command": ["sleep", "infinity"],
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            },
        })
    };
    let mut spec = json!({
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": false,
        "containers": [container("main", image)],
    });
    if let Some(init) = init {
        spec["initContainers"] = json!([container("init", init)]);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .context("test pod does not deserialize")
}

/// The refusal of `result`, which must come from the images policy.
fn refused_by_the_policy<K>(result: Result<K>, what: &str) -> Result<String> {
    let message = refusal(result, what)?;
    ensure!(
        message.contains(POLICY),
        "{what}: refused, but not by {POLICY}: {message}"
    );
    Ok(message)
}

/// Waits until the scenario is Rejected and returns its Ready message.
async fn rejected(fx: &common::Fixture, name: &str, reason: &str) -> Result<String> {
    let s: Scenario = fx
        .wait_scenario(name, "phase Rejected", T, |s| {
            phase(s) == Some(ScenarioPhase::Rejected)
        })
        .await?;
    ensure_condition(&s, "Ready", false, Some(reason))?;
    Ok(condition(&s, "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default())
}

#[tokio::test]
async fn scenario_with_an_unapproved_image_is_rejected_naming_it() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = unique_name("e2e-img");
        fx.create_authorization(&authz, approving_spec()?).await?;
        let name = unique_name("e2e-img");
        // The tests' usual image: a tag, not among the approved.
        let spec = scenario_spec(&authz);
        let image = spec["workspace"]["image"]
            .as_str()
            .context("scenario_spec has an image")?
            .to_string();
        fx.create_scenario(&name, spec).await?;
        let message = rejected(&fx, &name, "ImageNotApproved").await?;
        ensure!(
            message.contains(&image) && message.contains(&approved()),
            "the Ready message {message:?} names neither {image:?} nor the approved image"
        );
        let namespaces: Api<Namespace> = Api::all(fx.client.clone());
        ensure!(
            namespaces.get_opt(&namespace_of(&name)).await?.is_none(),
            "a rejected scenario got a workspace"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn only_approved_images_run_in_an_approved_workspace_even_for_an_admin() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = unique_name("e2e-img");
        fx.create_authorization(&authz, approving_spec()?).await?;
        let s = fx
            .ready_scenario(&authz, |spec| spec["workspace"]["image"] = json!(approved()))
            .await?;
        let ns = namespace_of(&s.name_any());
        let namespace = Api::<Namespace>::all(fx.client.clone()).get(&ns).await?;
        ensure!(
            namespace.annotations().get("cleanroom.io/approved-images") == Some(&approved()),
            "{ns} does not carry the approved images: {:?}",
            namespace.annotations()
        );

        let pods: Api<Pod> = Api::namespaced(admin().await?, &ns);
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        // The approved image, exactly: admitted (a dry run, so the
        // workspace's quota is left as it is).
        pods.create(&dry_run, &pod("approved", &approved(), None)?)
            .await
            .context("a pod with the approved image is refused")?;

        let good = approved();
        let evil = format!("registry.example.com/evil/notebook@{DIGEST}");
        let tagged = format!("registry.example.com/acme/notebook:1.4@{DIGEST}");
        let cases = [
            ("a tag without a digest", "registry.example.com/acme/notebook:1.4", None),
            ("the approved digest under another repository", evil.as_str(), None),
            ("a tag beside the approved digest", tagged.as_str(), None),
            ("an unapproved init container", good.as_str(), Some("busybox:1.36")),
        ];
        for (what, image, init) in cases {
            let message = refused_by_the_policy(
                pods.create(&dry_run, &pod("other", image, init)?)
                    .await
                    .map_err(anyhow::Error::from),
                what,
            )?;
            let named = init.unwrap_or(image);
            ensure!(
                message.contains(named),
                "{what}: the refusal does not name {named}: {message}"
            );
        }
        // An admitted pod's image cannot be swapped afterwards either.
        let workspace_pod = pods
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|p| p.labels().get("cleanroom.io/component").map(String::as_str) != Some("agent"))
            .context("no workspace pod")?;
        let swap = json!({"spec": {"containers": [{
            "name": workspace_pod.spec.as_ref().map(|s| s.containers[0].name.clone()).unwrap_or_default(),
            "image": "registry.example.com/acme/notebook:1.4",
        }]}});
        refused_by_the_policy(
            pods.patch(
                &workspace_pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&swap),
            )
            .await
            .map_err(anyhow::Error::from),
            "swapping the workspace pod's image for a tag",
        )?;
        // The teardown after this test wipes the scratch volume with an
        // agent Job in this namespace: the agent image, not in the list, is
        // let through (a refused wipe fails the cleanup, and so the test).
        Ok(())
    })
    .await
}

#[tokio::test]
async fn ephemeral_containers_are_refused_in_a_workspace() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = unique_name("e2e-img");
        fx.create_authorization(&authz, approving_spec()?).await?;
        let s = fx
            .ready_scenario(&authz, |spec| {
                spec["workspace"]["image"] = json!(approved())
            })
            .await?;
        let ns = namespace_of(&s.name_any());
        let pods: Api<Pod> = Api::namespaced(admin().await?, &ns);
        let workspace_pod = pods
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|p| p.labels().get("cleanroom.io/component").map(String::as_str) != Some("agent"))
            .context("no workspace pod")?;
        // What `kubectl debug --profile=restricted` sends, with the
        // approved image even: Pod Security lets it through.
        let debug = json!({"spec": {"ephemeralContainers": [{
            "name": "debugger",
            "image": approved(),
            "command": ["sh"],
            "stdin": true,
            "tty": true,
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            },
        }]}});
        let message = refused_by_the_policy(
            pods.patch_subresource(
                "ephemeralcontainers",
                &workspace_pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&debug),
            )
            .await
            .map_err(anyhow::Error::from),
            "an ephemeral container",
        )?;
        ensure!(
            message.contains("ephemeral"),
            "the refusal does not say why: {message}"
        );
        let after = pods.get(&workspace_pod.name_any()).await?;
        ensure!(
            after
                .spec
                .and_then(|s| s.ephemeral_containers)
                .is_none_or(|e| e.is_empty()),
            "the ephemeral container was added"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn interactive_workspace_on_core_data_is_rejected_when_reviewed_output_is_required()
-> Result<()> {
    with_fixture(|fx| async move {
        let dataset = unique_name("e2e-core");
        let mut spec = population_dataset("raw-e2e");
        spec["classification"] = json!("Core");
        fx.create_dataset(&dataset, spec).await?;
        let authz = unique_name("e2e-img");
        let mut spec = authorization_spec(&[&dataset])?;
        spec["review"] = json!({"requireReviewedOutput": true});
        fx.create_authorization(&authz, spec).await?;
        let name = unique_name("e2e-core");
        let mut spec = data_scenario(&authz, &dataset);
        spec["workspace"]["interactive"] = json!(true);
        fx.create_scenario(&name, spec).await?;
        let message = rejected(&fx, &name, "ReviewedOutputRequired").await?;
        ensure!(
            message.contains(&dataset) && message.contains("interactive"),
            "the Ready message {message:?} does not name the Core dataset and the way out"
        );
        Ok(())
    })
    .await
}
