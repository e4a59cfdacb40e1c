//! The workspace's scratch volume and its compute: a Deployment (Service mode)
//! or a Job (Batch mode) whose pods satisfy Pod Security `restricted`, mount no
//! token and reach no network.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::{Identity, WORKSPACE_UID, access, data, labels};
use crate::api::ScenarioSpec;
use crate::api::scenario::WorkspaceMode;

/// Name of the scratch claim, the Deployment or Job, and its container.
pub const WORKSPACE: &str = "workspace";
/// Name of the scratch claim.
pub const SCRATCH: &str = "scratch";
/// Where scratch is mounted.
pub const SCRATCH_PATH: &str = "/work";

/// The scratch claim mounted at `/work`.
pub fn scratch_claim(
    id: &Identity,
    spec: &ScenarioSpec,
    storage_class: Option<&str>,
) -> PersistentVolumeClaim {
    rwo_claim(
        id.meta(SCRATCH),
        spec.workspace.scratch.0.clone(),
        storage_class,
    )
}

/// A claim for one pod at a time, of `size`, named and labelled by `meta`.
pub fn rwo_claim(
    meta: ObjectMeta,
    size: Quantity,
    storage_class: Option<&str>,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage_class.map(str::to_string),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Pod-level security: non-root with a fixed uid, RuntimeDefault seccomp, and
/// volumes group-owned so the wipe (same uid) can overwrite what was written.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(WORKSPACE_UID),
        run_as_group: Some(WORKSPACE_UID),
        fs_group: Some(WORKSPACE_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// Container-level security: Pod Security `restricted` and a read-only root.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// A Job running the `agent` binary (a wipe, a data preparation): one pod
/// labelled as an agent, the restricted security context, no token, no
/// service links, never restarted (a failure is reported and the controller
/// decides), its result in the termination message. `meta` names and labels
/// the Job; `container` says what runs with which mounts.
pub fn agent_job(
    meta: ObjectMeta,
    container: Container,
    volumes: Vec<Volume>,
    deadline_seconds: i64,
) -> Job {
    let mut labels_of_pod = meta.labels.clone().unwrap_or_default();
    // Agent pods are the ones a node really runs (see the e2e node).
    labels_of_pod.insert(labels::COMPONENT.into(), labels::AGENT.into());
    Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels_of_pod),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security_context()),
                    containers: vec![Container {
                        termination_message_policy: Some("FallbackToLogsOnError".into()),
                        security_context: Some(container_security_context()),
                        ..container
                    }],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

fn pod_labels(id: &Identity) -> BTreeMap<String, String> {
    let mut l = id.labels();
    l.insert(labels::COMPONENT.into(), labels::WORKSPACE.into());
    l
}

/// The workspace pod: the scenario's image and command, requests equal to
/// limits, scratch at `/work`, an in-memory `/tmp` (the root is read-only), no
/// token, no service links.
pub fn pod_template(id: &Identity, spec: &ScenarioSpec, restart_policy: &str) -> PodTemplateSpec {
    let ws = &spec.workspace;
    let size = BTreeMap::from([
        ("cpu".to_string(), ws.resources.cpu.0.clone()),
        ("memory".to_string(), ws.resources.memory.0.clone()),
    ]);
    let env: Vec<EnvVar> = ws
        .env
        .iter()
        .map(|e| EnvVar {
            name: e.name.clone(),
            value: Some(e.value.clone()),
            value_from: None,
        })
        .collect();
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let mut mounts = vec![
        VolumeMount {
            name: SCRATCH.into(),
            mount_path: SCRATCH_PATH.into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    // Each prepared dataset, read-only at /data/<dataset> (the claim is
    // read-only too, so no mount option can make it writable).
    let mut data_volumes = Vec::new();
    for (i, request) in spec.data.iter().enumerate() {
        let volume = format!("data-{i}");
        mounts.push(VolumeMount {
            name: volume.clone(),
            mount_path: data::mount_path(&request.dataset),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        data_volumes.push(Volume {
            name: volume,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: data::data_claim_name(&request.dataset),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels(id)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(access::SERVICE_ACCOUNT.into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            restart_policy: Some(restart_policy.into()),
            security_context: Some(pod_security_context()),
            containers: vec![Container {
                name: WORKSPACE.into(),
                image: Some(ws.image.clone()),
                command: non_empty(&ws.command),
                args: non_empty(&ws.args),
                env: (!env.is_empty()).then_some(env),
                resources: Some(ResourceRequirements {
                    requests: Some(size.clone()),
                    limits: Some(size),
                    ..ResourceRequirements::default()
                }),
                security_context: Some(container_security_context()),
                volume_mounts: Some(mounts),
                ..Container::default()
            }],
            volumes: Some(
                [
                    Volume {
                        name: SCRATCH.into(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: SCRATCH.into(),
                            read_only: Some(false),
                        }),
                        ..Volume::default()
                    },
                    Volume {
                        name: "tmp".into(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            medium: Some("Memory".into()),
                            mode: None,
                            size_limit: Some(Quantity("256Mi".into())),
                        }),
                        ..Volume::default()
                    },
                ]
                .into_iter()
                .chain(data_volumes)
                .collect(),
            ),
            ..PodSpec::default()
        }),
    }
}

/// The workspace's compute, one of two shapes (built once per reconcile, so
/// the size difference between the variants does not matter).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum Compute {
    /// Service mode: a Deployment, scaled to zero while sealed.
    Deployment(Deployment),
    /// Batch mode: a Job, suspended while sealed.
    Job(Job),
}

/// The compute for the scenario; `running: false` stops it (suspension)
/// without deleting it, so resuming brings back the same workload.
pub fn compute(id: &Identity, spec: &ScenarioSpec, running: bool) -> Compute {
    let selector = LabelSelector {
        match_labels: Some(pod_labels(id)),
        match_expressions: None,
    };
    match spec.workspace.mode {
        WorkspaceMode::Service => Compute::Deployment(Deployment {
            metadata: id.meta(WORKSPACE),
            spec: DeploymentSpec {
                replicas: Some(if running { 1 } else { 0 }),
                selector,
                // Never two pods on one ReadWriteOnce scratch volume.
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                }),
                template: pod_template(id, spec, "Always"),
                ..DeploymentSpec::default()
            },
            ..Deployment::default()
        }),
        WorkspaceMode::Batch => Compute::Job(Job {
            metadata: id.meta(WORKSPACE),
            spec: Some(JobSpec {
                suspend: Some(!running),
                backoff_limit: Some(0),
                template: pod_template(id, spec, "Never"),
                ..JobSpec::default()
            }),
            ..Job::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::workspace::testing::identity;

    fn spec(mode: &str) -> ScenarioSpec {
        serde_json::from_value(json!({
            "authorization": "acme-2026",
            "purpose": "population statistics",
            "workspace": {
                "image": "python:3.12",
                "command": ["python", "-m", "http.server"],
                "env": [{"name": "MODE", "value": "study"}],
                "resources": {"cpu": "2", "memory": "4Gi"},
                "scratch": "10Gi",
                "mode": mode
            }
        }))
        .unwrap()
    }

    #[test]
    fn workspace_pods_are_restricted_tokenless_and_read_only() {
        let t =
            serde_json::to_value(pod_template(&identity(), &spec("Service"), "Always")).unwrap();
        let pod = &t["spec"];
        assert_eq!(pod["automountServiceAccountToken"], json!(false));
        assert_eq!(pod["serviceAccountName"], json!("workspace"));
        assert_eq!(
            pod["securityContext"],
            json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                   "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
        );
        let c = &pod["containers"][0];
        assert_eq!(
            c["securityContext"],
            json!({"allowPrivilegeEscalation": false, "privileged": false,
                   "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                   "capabilities": {"drop": ["ALL"]}})
        );
        assert_eq!(c["resources"]["requests"], c["resources"]["limits"]);
        assert_eq!(
            c["volumeMounts"][0],
            json!({"name": "scratch", "mountPath": "/work"})
        );
        assert_eq!(c["env"], json!([{"name": "MODE", "value": "study"}]));
        assert_eq!(
            t["metadata"]["labels"]["cleanroom.io/component"],
            json!("workspace")
        );
    }

    #[test]
    fn service_mode_is_a_deployment_scaled_to_zero_when_sealed() {
        let Compute::Deployment(running) = compute(&identity(), &spec("Service"), true) else {
            panic!("Service mode must build a Deployment");
        };
        assert_eq!(running.spec.replicas, Some(1));
        let Compute::Deployment(sealed) = compute(&identity(), &spec("Service"), false) else {
            panic!("Service mode must build a Deployment");
        };
        assert_eq!(sealed.spec.replicas, Some(0));
    }

    #[test]
    fn batch_mode_is_a_job_suspended_when_sealed() {
        let Compute::Job(sealed) = compute(&identity(), &spec("Batch"), false) else {
            panic!("Batch mode must build a Job");
        };
        let js = sealed.spec.unwrap();
        assert_eq!(js.suspend, Some(true));
        assert_eq!(
            js.template.spec.unwrap().restart_policy.as_deref(),
            Some("Never")
        );
    }

    #[test]
    fn prepared_datasets_are_mounted_read_only_under_data() {
        let mut s = spec("Service");
        s.data = serde_json::from_value(json!([
            {"dataset": "population-register", "columns": ["district"]},
            {"dataset": "income", "columns": ["income"]}
        ]))
        .unwrap();
        let t = serde_json::to_value(pod_template(&identity(), &s, "Always")).unwrap();
        let mounts = &t["spec"]["containers"][0]["volumeMounts"];
        assert_eq!(
            mounts[2],
            json!({"name": "data-0", "mountPath": "/data/population-register", "readOnly": true})
        );
        assert_eq!(mounts[3]["mountPath"], json!("/data/income"));
        let volumes = &t["spec"]["volumes"];
        assert_eq!(
            volumes[3],
            json!({"name": "data-1", "persistentVolumeClaim":
                   {"claimName": "data-income", "readOnly": true}})
        );
        // Only scratch is writable.
        let writable: Vec<_> = mounts
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["readOnly"] != json!(true))
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect();
        assert_eq!(writable, ["/work", "/tmp"]);
    }

    #[test]
    fn scratch_claim_asks_for_the_scratch_size() {
        let c = scratch_claim(&identity(), &spec("Service"), Some("fast"));
        let s = c.spec.unwrap();
        assert_eq!(s.resources.unwrap().requests.unwrap()["storage"].0, "10Gi");
        assert_eq!(s.storage_class_name.as_deref(), Some("fast"));
    }
}
