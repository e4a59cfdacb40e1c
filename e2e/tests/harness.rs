//! The local control plane itself: every later end-to-end test relies on what these prove.
//! Needs `make cluster-up` (run by `make test`).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cleanroom_e2e::harness::{
    client, meta, run_kubectl, unique_name, wait_for, wait_gone, with_namespace,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ServiceAccount,
};
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::wait::conditions;
use kube::{Api, Client};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<K> {
    serde_json::from_value(v).context("test object does not deserialize")
}

fn pod_phase(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.phase.as_deref()
}

#[tokio::test]
async fn three_fake_nodes_are_ready_with_allocatable_resources() -> Result<()> {
    let nodes: Api<Node> = Api::all(client().await?);
    let list = nodes
        .list(&kube::api::ListParams::default().labels("type=kwok"))
        .await?;
    ensure!(
        list.items.len() == 3,
        "expected 3 fake nodes, got {}",
        list.items.len()
    );
    for n in &list.items {
        let status = n.status.as_ref().context("node without status")?;
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ensure!(ready, "node {:?} is not Ready", n.metadata.name);
        let alloc = status.allocatable.as_ref().context("no allocatable")?;
        for r in ["cpu", "memory", "pods"] {
            ensure!(
                alloc.contains_key(r),
                "node {:?} has no allocatable {r}",
                n.metadata.name
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_deployments_pods_run() -> Result<()> {
    with_namespace("deploy", &[], |client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let d: Deployment = from_json(json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}
                }
            }
        }))?;
        deployments.create(&PostParams::default(), &d).await?;
        wait_for(
            &deployments,
            "web",
            "2 available replicas",
            T,
            |d: Option<&Deployment>| {
                d.and_then(|d| d.status.as_ref()?.available_replicas) == Some(2)
            },
        )
        .await?;
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let list = pods
            .list(&kube::api::ListParams::default().labels("app=web"))
            .await?;
        ensure!(list.items.len() == 2);
        for p in &list.items {
            ensure!(
                pod_phase(p) == Some("Running"),
                "pod not Running: {:?}",
                p.status
            );
            ensure!(
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| n.starts_with("kwok-node-")),
                "pod not scheduled onto a fake node"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_job_completes() -> Result<()> {
    with_namespace("job", &[], |client, ns| async move {
        let jobs: Api<Job> = Api::namespaced(client, &ns);
        let j: Job = from_json(json!({
            "metadata": {"name": "once"},
            "spec": {
                "backoffLimit": 0,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]
                }}
            }
        }))?;
        jobs.create(&PostParams::default(), &j).await?;
        let done = wait_for(
            &jobs,
            "once",
            "job completion",
            T,
            conditions::is_job_completed(),
        )
        .await?;
        ensure!(
            done.status.and_then(|s| s.succeeded) == Some(1),
            "job did not succeed once"
        );
        Ok(())
    })
    .await
}

/// The volume directory on this host of the PV bound to `claim`.
async fn host_dir_of(client: &Client, ns: &str, claim: &str) -> Result<std::path::PathBuf> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = wait_for(
        &pvcs,
        claim,
        "claim bound",
        T,
        |c: Option<&PersistentVolumeClaim>| {
            c.and_then(|c| c.status.as_ref()?.phase.as_deref()) == Some("Bound")
        },
    )
    .await?;
    let pv_name = pvc
        .spec
        .and_then(|s| s.volume_name)
        .context("bound claim without volume")?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await?;
    let path = pv
        .spec
        .and_then(|s| s.host_path)
        .map(|h| h.path)
        .context("PV is not a hostPath volume")?;
    Ok(path.into())
}

fn claim(name: &str) -> Result<PersistentVolumeClaim> {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "cleanroom-local",
            "resources": {"requests": {"storage": "10Mi"}}
        }
    }))
}

#[tokio::test]
async fn a_claim_binds_to_a_provisioned_volume_that_is_removed_with_it() -> Result<()> {
    with_namespace("pvc", &[], |client, ns| async move {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        pvcs.create(&PostParams::default(), &claim("data")?).await?;
        let dir = host_dir_of(&client, &ns, "data").await?;
        ensure!(dir.is_dir(), "volume directory {dir:?} does not exist");
        let pv_name = pvcs
            .get("data")
            .await?
            .spec
            .and_then(|s| s.volume_name)
            .context("no volume")?;

        pvcs.delete("data", &DeleteParams::default()).await?;
        wait_gone(&Api::<PersistentVolume>::all(client), &pv_name, T).await?;
        ensure!(
            !dir.exists(),
            "volume directory {dir:?} outlived its volume"
        );
        Ok(())
    })
    .await
}

fn agent_pod(name: &str, script: &str) -> Result<Pod> {
    from_json(json!({
        "metadata": {"name": name, "labels": {"cleanroom.io/component": "agent"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "agent",
                "image": "cleanroom/agent:dev",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "work", "mountPath": "/work"}]
            }],
            "volumes": [{"name": "work", "persistentVolumeClaim": {"claimName": "work"}}]
        }
    }))
}

#[tokio::test]
async fn an_agent_pod_really_runs_and_reports_exit_code_and_message() -> Result<()> {
    with_namespace("agent", &[], |client, ns| async move {
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &claim("work")?)
            .await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        // The file proves the command ran with the volume at its mountPath; the
        // message and exit code prove status is reported like a kubelet would.
        let script = "echo \"written by $(id -u)\" > /work/proof; echo 'wiped 3 files' > /dev/termination-log; exit 3";
        pods.create(&PostParams::default(), &agent_pod("fails", script)?).await?;
        let failed = wait_for(&pods, "fails", "a finished pod", T, |p: Option<&Pod>| {
            matches!(p.and_then(pod_phase), Some("Failed" | "Succeeded"))
        })
        .await?;
        ensure!(pod_phase(&failed) == Some("Failed"), "exit 3 must fail the pod");
        let terminated = failed
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .context("no terminated container state")?;
        ensure!(terminated.exit_code == 3, "exit code {}", terminated.exit_code);
        ensure!(
            terminated.message.as_deref().map(str::trim) == Some("wiped 3 files"),
            "termination message {:?}",
            terminated.message
        );
        let dir = host_dir_of(&client, &ns, "work").await?;
        let proof = std::fs::read_to_string(dir.join("proof")).context("the command left no file in the volume")?;
        ensure!(proof.starts_with("written by"), "unexpected file content {proof:?}");

        pods.create(&PostParams::default(), &agent_pod("succeeds", "test -f /work/proof")?).await?;
        let ok = wait_for(&pods, "succeeds", "a finished pod", T, |p: Option<&Pod>| {
            matches!(p.and_then(pod_phase), Some("Failed" | "Succeeded"))
        })
        .await?;
        ensure!(pod_phase(&ok) == Some("Succeeded"), "exit 0 must succeed: {:?}", ok.status);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn deleting_a_namespace_completes() -> Result<()> {
    let client = client().await?;
    let name = unique_name("nsdel");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(&name),
                ..Default::default()
            },
        )
        .await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: meta("c"),
            ..Default::default()
        },
    )
    .await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, &name);
    pvcs.create(&PostParams::default(), &claim("data")?).await?;
    namespaces.delete(&name, &DeleteParams::default()).await?;
    wait_gone(&namespaces, &name, Duration::from_secs(90)).await
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_children() -> Result<()> {
    with_namespace("gc", &[], |client, ns| async move {
        let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
        let owner = cms
            .create(
                &PostParams::default(),
                &ConfigMap {
                    metadata: meta("owner"),
                    ..Default::default()
                },
            )
            .await?;
        let uid = owner.metadata.uid.context("created object without uid")?;
        let child: ConfigMap = from_json(json!({
            "metadata": {"name": "child", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ]}
        }))?;
        cms.create(&PostParams::default(), &child).await?;
        let background = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        cms.delete("owner", &background).await?;
        wait_gone(&cms, "child", T).await
    })
    .await
}

#[tokio::test]
async fn kubectl_auth_can_i_answers_from_rbac() -> Result<()> {
    with_namespace("rbac", &[], |client, ns| async move {
        let role: k8s_openapi::api::rbac::v1::Role = from_json(json!({
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
        }))?;
        let binding: k8s_openapi::api::rbac::v1::RoleBinding = from_json(json!({
            "metadata": {"name": "alice-reads-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
        }))?;
        Api::namespaced(client.clone(), &ns).create(&PostParams::default(), &role).await?;
        Api::namespaced(client, &ns).create(&PostParams::default(), &binding).await?;
        let ask = |verb: &str, user: &str| run_kubectl(&["auth", "can-i", verb, "pods", "-n", &ns, "--as", user]);
        // RBAC caches may lag a create by a moment.
        let mut allowed = ask("get", "alice")?;
        for _ in 0..50 {
            if allowed.1.trim() == "yes" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            allowed = ask("get", "alice")?;
        }
        ensure!(allowed.0 && allowed.1.trim() == "yes", "alice may get pods: {allowed:?}");
        let delete = ask("delete", "alice")?;
        ensure!(delete.1.trim() == "no", "alice may not delete pods: {delete:?}");
        let stranger = ask("get", "mallory")?;
        ensure!(stranger.1.trim() == "no", "mallory may not get pods: {stranger:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn pod_security_restricted_refuses_a_root_pod() -> Result<()> {
    let labels = [("pod-security.kubernetes.io/enforce", "restricted")];
    with_namespace("psa", &labels, |client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let root: Pod = from_json(json!({
            "metadata": {"name": "root"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "securityContext": {"runAsUser": 0}}]}
        }))?;
        let err = pods
            .create(&PostParams::default(), &root)
            .await
            .err()
            .context("a root pod was admitted into a restricted namespace")?;
        ensure!(
            err.to_string()
                .contains("violates PodSecurity \"restricted:"),
            "unexpected error: {err}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn service_account_tokens_authenticate() -> Result<()> {
    with_namespace("sa", &[], |client, ns| async move {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        sas.create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta("robot"),
                ..Default::default()
            },
        )
        .await?;
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token = sas
            .create_token_request("robot", &PostParams::default(), &request)
            .await?
            .status
            .context("token request without status")?
            .token
            .context("token request without a token")?;
        let mut config = cleanroom_e2e::harness::config().await?;
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        let as_robot = Client::try_from(config)?;
        let review = Api::<SelfSubjectReview>::all(as_robot)
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await?;
        let user = review
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username);
        ensure!(
            user.as_deref() == Some(&format!("system:serviceaccount:{ns}:robot")),
            "token authenticated as {user:?}"
        );
        Ok(())
    })
    .await
}
