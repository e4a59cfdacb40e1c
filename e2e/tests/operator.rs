//! The operator against a real API server: what it refuses, what it builds,
//! how it seals, and how it tears down (on time, wiped, and with proof).
//! Needs the local control plane and the operator (`make e2e`).

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cleanroom::api::{AuthorizationPhase, Scenario, ScenarioPhase, WipeAttestation};
use cleanroom_e2e::harness::{unique_name, wait_for, wait_gone};
use common::{
    ALICE, FINALIZER, Fixture, Hold, T, authorization_spec, condition, dataset_spec,
    ensure_condition, ensure_labelled, from_json, has_condition, hold_claim_deletion, namespace_of,
    phase, refusal, rfc3339, scenario_spec, scratch_volume, seconds_from_now, volumes_of,
    with_fixture, workspace_owned_dir, write_as_workspace,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec, ResourceQuota,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// A name of exactly `len` characters that starts unique.
fn name_of_length(len: usize) -> String {
    let mut name = unique_name("long");
    while name.len() < len {
        name.push('x');
    }
    name
}

fn ensure_mentions(error: &str, text: &str) -> Result<()> {
    ensure!(
        error.contains(text),
        "the refusal does not say {text:?}:\n{error}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_objects_are_refused_by_the_api_server_with_the_rule_that_failed() -> Result<()> {
    with_fixture(|fx| async move {
        let authorizations = fx.authorizations();
        let scenarios = fx.scenarios();

        // Authorization: an empty or backwards validity period.
        let name = unique_name("e2e-bad");
        let mut spec = authorization_spec(&[])?;
        spec["validUntil"] = json!(rfc3339(seconds_from_now(-2 * 86400)?));
        let err = refusal(
            fx.create_authorization(&name, spec).await,
            "validUntil before validFrom",
        )?;
        ensure_mentions(&err, "validUntil must be after validFrom")?;
        ensure!(
            authorizations.get_opt(&name).await?.is_none(),
            "{name} exists"
        );

        // Authorization: longer than 3 years (1096 days).
        let name = unique_name("e2e-bad");
        let mut spec = authorization_spec(&[])?;
        spec["validUntil"] = json!(rfc3339(seconds_from_now(1096 * 86400 + 3600)?));
        let err = refusal(
            fx.create_authorization(&name, spec).await,
            "a 3-year-plus span",
        )?;
        ensure_mentions(&err, "an authorization lasts at most 3 years (1096 days)")?;
        ensure!(
            authorizations.get_opt(&name).await?.is_none(),
            "{name} exists"
        );

        // Authorization: Suspended without a reason, or with a blank one.
        let reason_rule = "state Suspended or Revoked requires a non-empty reason";
        for reason in [None, Some("   ")] {
            let name = unique_name("e2e-bad");
            let mut spec = authorization_spec(&[])?;
            spec["state"] = json!("Suspended");
            if let Some(r) = reason {
                spec["reason"] = json!(r);
            }
            let err = refusal(
                fx.create_authorization(&name, spec).await,
                "Suspended without reason",
            )?;
            ensure_mentions(&err, reason_rule)?;
            ensure!(
                authorizations.get_opt(&name).await?.is_none(),
                "{name} exists"
            );
        }

        // Authorization: a credit code whose check character is wrong.
        let name = unique_name("e2e-bad");
        let mut spec = authorization_spec(&[])?;
        spec["operator"]["creditCode"] = json!("91350100M000100Y44");
        let err = refusal(
            fx.create_authorization(&name, spec).await,
            "bad check character",
        )?;
        ensure_mentions(
            &err,
            "creditCode check character (the 18th) does not match GB 32100-2015",
        )?;
        ensure!(
            authorizations.get_opt(&name).await?.is_none(),
            "{name} exists"
        );

        // Authorization: a name too long for the namespace cr-<name>.
        let name = name_of_length(61);
        let err = refusal(
            fx.create_authorization(&name, authorization_spec(&[])?)
                .await,
            "a 61-character name",
        )?;
        ensure_mentions(
            &err,
            "metadata.name must be a DNS label of at most 60 characters",
        )?;
        ensure!(
            authorizations.get_opt(&name).await?.is_none(),
            "{name} exists"
        );

        // Authorization: Revoked is final.
        let name = unique_name("e2e-revoked");
        let mut spec = authorization_spec(&[])?;
        spec["state"] = json!("Revoked");
        spec["reason"] = json!("agreement terminated");
        fx.create_authorization(&name, spec).await?;
        let err = refusal(
            fx.patch_authorization(&name, json!({"state": "Active"}))
                .await,
            "Revoked back to Active",
        )?;
        ensure_mentions(&err, "state Revoked is final and cannot be changed back")?;
        let kept = authorizations.get(&name).await?;
        ensure!(
            kept.spec.state.as_str() == "Revoked",
            "{name} is {} after a refused change",
            kept.spec.state.as_str()
        );

        // Scenarios below name an authorization that does not exist: they
        // stay Pending and never get a workspace.
        let absent = unique_name("e2e-absent");

        // Scenario: 61 characters are refused, 60 accepted.
        let name = name_of_length(61);
        let err = refusal(
            fx.create_scenario(&name, scenario_spec(&absent)).await,
            "a 61-character scenario name",
        )?;
        ensure_mentions(
            &err,
            "metadata.name must be a DNS label of at most 60 characters",
        )?;
        ensure!(scenarios.get_opt(&name).await?.is_none(), "{name} exists");
        let sixty = name_of_length(60);
        fx.create_scenario(&sixty, scenario_spec(&absent)).await?;
        let pending = fx
            .wait_scenario(&sixty, "phase Pending", T, |s| {
                phase(s) == Some(ScenarioPhase::Pending)
            })
            .await?;
        ensure_condition(&pending, "Ready", false, Some("AuthorizationNotFound"))?;
        ensure!(
            Api::<Namespace>::all(fx.client.clone())
                .get_opt(&namespace_of(&sixty))
                .await?
                .is_none(),
            "a scenario without authorization got a namespace"
        );

        // Scenario: its authorization cannot change.
        let err = refusal(
            fx.patch_scenario(&sixty, json!({"authorization": unique_name("e2e-other")}))
                .await,
            "changing the authorization",
        )?;
        ensure_mentions(&err, "authorization is immutable")?;
        ensure!(
            scenarios.get(&sixty).await?.spec.authorization == absent,
            "the authorization changed after all"
        );

        // Scenario: quantities must be positive quantities.
        for cpu in ["lots", "0"] {
            let name = unique_name("e2e-bad");
            let mut spec = scenario_spec(&absent);
            spec["workspace"]["resources"]["cpu"] = json!(cpu);
            let err = refusal(fx.create_scenario(&name, spec).await, &format!("cpu {cpu}"))?;
            ensure_mentions(&err, "must be a positive Kubernetes quantity")?;
            ensure_mentions(&err, "spec.workspace.resources.cpu")?;
            ensure!(scenarios.get_opt(&name).await?.is_none(), "{name} exists");
        }

        // Scenario: the purpose must say something.
        let name = unique_name("e2e-bad");
        let mut spec = scenario_spec(&absent);
        spec["purpose"] = json!("  \t ");
        let err = refusal(fx.create_scenario(&name, spec).await, "a blank purpose")?;
        ensure_mentions(
            &err,
            "purpose must say what the scenario is for; it cannot be blank",
        )?;
        ensure!(scenarios.get_opt(&name).await?.is_none(), "{name} exists");
        let name = unique_name("e2e-bad");
        let mut spec = scenario_spec(&absent);
        spec["purpose"] = json!("");
        let err = refusal(fx.create_scenario(&name, spec).await, "an empty purpose")?;
        ensure_mentions(&err, "spec.purpose")?;
        ensure!(scenarios.get_opt(&name).await?.is_none(), "{name} exists");

        // Scenario: Suspended needs a reason too.
        let name = unique_name("e2e-bad");
        let mut spec = scenario_spec(&absent);
        spec["state"] = json!("Suspended");
        let err = refusal(
            fx.create_scenario(&name, spec).await,
            "a suspended scenario without reason",
        )?;
        ensure_mentions(&err, reason_rule)?;
        ensure!(scenarios.get_opt(&name).await?.is_none(), "{name} exists");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_scenario_asking_for_more_than_its_authorization_is_rejected_without_a_workspace()
-> Result<()> {
    with_fixture(|fx| async move {
        let dataset = unique_name("e2e-ds");
        fx.create_dataset(&dataset, dataset_spec()).await?;
        let authz = unique_name("e2e-authz");
        fx.create_authorization(&authz, authorization_spec(&[&dataset])?)
            .await?;

        let not_granted = unique_name("e2e-other-ds");
        let cases = [
            (
                json!({"data": [{"dataset": not_granted, "columns": ["district"]}]}),
                "DatasetNotAuthorized",
                vec!["spec.data[0].dataset", not_granted.as_str()],
            ),
            (
                json!({"members": {"users": [ALICE, "mallory@evil.example"]}}),
                "MemberNotAuthorized",
                vec!["spec.members.users[1]", "mallory@evil.example"],
            ),
            (
                json!({"data": [{"dataset": dataset, "columns": ["district", "shoe_size"]}]}),
                "ColumnNotFound",
                vec!["spec.data[0].columns[1]", "shoe_size"],
            ),
        ];
        let mut names = Vec::new();
        for (extra, _, _) in &cases {
            let name = unique_name("e2e-rej");
            let mut spec = scenario_spec(&authz);
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            fx.create_scenario(&name, spec).await?;
            names.push(name);
        }
        for (name, (_, reason, mentions)) in names.iter().zip(&cases) {
            let s = fx
                .wait_scenario(name, "phase Rejected", T, |s| {
                    phase(s) == Some(ScenarioPhase::Rejected)
                })
                .await?;
            ensure_condition(&s, "Ready", false, Some(reason))?;
            let message = condition(&s, "Ready")
                .map(|c| c.message.clone())
                .unwrap_or_default();
            for m in mentions {
                ensure!(
                    message.contains(m),
                    "{name}: Ready message {message:?} does not name {m:?}"
                );
            }
            ensure!(
                s.status
                    .as_ref()
                    .and_then(|st| st.namespace.as_ref())
                    .is_none(),
                "{name}: a rejected scenario records a namespace"
            );
        }
        // Give a wrongly provisioning operator time to show itself.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let namespaces: Api<Namespace> = Api::all(fx.client.clone());
        for name in &names {
            ensure!(
                namespaces.get_opt(&namespace_of(name)).await?.is_none(),
                "{name} was rejected but its namespace exists"
            );
            ensure!(
                phase(&fx.scenarios().get(name).await?) == Some(ScenarioPhase::Rejected),
                "{name} left Rejected"
            );
        }
        Ok(())
    })
    .await
}

/// Checks the workspace pod template: restricted, tokenless, only the scratch
/// claim and an in-memory /tmp as volumes.
fn ensure_locked_down(what: &str, pod: &PodSpec) -> Result<()> {
    let psc = pod
        .security_context
        .as_ref()
        .context("no pod securityContext")?;
    ensure!(
        psc.run_as_non_root == Some(true),
        "{what}: runAsNonRoot is not true"
    );
    ensure!(
        psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()) == Some("RuntimeDefault"),
        "{what}: seccomp is not RuntimeDefault"
    );
    ensure!(
        pod.automount_service_account_token == Some(false),
        "{what}: service account token is mounted"
    );
    ensure!(
        pod.host_network != Some(true) && pod.host_pid != Some(true),
        "{what}: host namespaces"
    );
    ensure!(
        pod.containers.len() == 1,
        "{what}: {} containers",
        pod.containers.len()
    );
    let c = &pod.containers[0];
    let sc = c
        .security_context
        .as_ref()
        .context("no container securityContext")?;
    ensure!(
        sc.read_only_root_filesystem == Some(true),
        "{what}: root filesystem is writable"
    );
    ensure!(
        sc.allow_privilege_escalation == Some(false),
        "{what}: privilege escalation allowed"
    );
    ensure!(sc.privileged != Some(true), "{what}: privileged");
    let caps = sc.capabilities.as_ref().context("no capabilities")?;
    ensure!(
        caps.drop
            .as_ref()
            .is_some_and(|d| d.iter().any(|c| c == "ALL")),
        "{what}: capabilities ALL not dropped"
    );
    ensure!(
        caps.add.as_ref().is_none_or(|a| a.is_empty()),
        "{what}: capabilities added"
    );
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    ensure!(
        mounts
            .iter()
            .any(|m| m.name == "scratch" && m.mount_path == "/work"),
        "{what}: scratch is not mounted at /work: {mounts:?}"
    );
    for v in pod.volumes.iter().flatten() {
        let scratch = v
            .persistent_volume_claim
            .as_ref()
            .is_some_and(|p| p.claim_name == "scratch");
        ensure!(
            scratch || v.empty_dir.is_some(),
            "{what}: unexpected volume {v:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_admitted_scenario_gets_an_isolated_restricted_workspace() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let name = s.name_any();
        let ns = namespace_of(&name);
        let client = fx.client.clone();

        // Status: where, until when, for which generation, and how.
        let status = s.status.clone().context("no status")?;
        ensure!(
            status.namespace.as_deref() == Some(ns.as_str()),
            "status.namespace {:?}",
            status.namespace
        );
        let valid_until = fx.authorizations().get(&authz).await?.spec.valid_until;
        ensure!(
            status.expires_at.as_ref() == Some(&valid_until),
            "expiresAt {:?}, the authorization ends {valid_until:?}",
            status.expires_at
        );
        ensure!(
            status.observed_generation.is_some()
                && status.observed_generation == s.metadata.generation,
            "observedGeneration {:?} but generation {:?}",
            status.observed_generation,
            s.metadata.generation
        );
        ensure!(
            phase(&s) == Some(ScenarioPhase::Ready),
            "phase {:?}",
            phase(&s)
        );
        for t in ["Provisioned", "Isolated", "Ready"] {
            ensure_condition(&s, t, true, None)?;
        }
        for t in ["Suspended", "Expired"] {
            ensure_condition(&s, t, false, None)?;
        }
        ensure!(
            s.finalizers().iter().any(|f| f == FINALIZER),
            "no teardown finalizer"
        );
        ensure!(status.wipes.is_empty(), "wipes before any teardown");

        // The namespace enforces Pod Security restricted.
        let namespace = Api::<Namespace>::all(client.clone()).get(&ns).await?;
        ensure_labelled("namespace", &namespace.metadata, &name, &authz)?;
        let labels = namespace.labels();
        ensure!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str)
                == Some("restricted"),
            "namespace does not enforce restricted: {labels:?}"
        );

        // One network policy, denying everything both ways.
        let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await?;
        ensure!(
            policies.items.len() == 1,
            "{} network policies",
            policies.items.len()
        );
        let np = &policies.items[0];
        ensure!(
            np.name_any() == "deny-all",
            "the policy is {}",
            np.name_any()
        );
        ensure_labelled("NetworkPolicy", &np.metadata, &name, &authz)?;
        let np_spec = np.spec.as_ref().context("policy without spec")?;
        ensure!(
            np_spec.policy_types.as_deref()
                == Some(&["Ingress".to_string(), "Egress".to_string()][..]),
            "policyTypes {:?}",
            np_spec.policy_types
        );
        let selector = np_spec.pod_selector.clone().unwrap_or_default();
        ensure!(
            selector.match_labels.unwrap_or_default().is_empty()
                && selector.match_expressions.unwrap_or_default().is_empty(),
            "the policy does not select every pod"
        );
        ensure!(
            np_spec.ingress.as_ref().is_none_or(|r| r.is_empty())
                && np_spec.egress.as_ref().is_none_or(|r| r.is_empty()),
            "the policy allows something: {np_spec:?}"
        );

        // Quota and limits of the scenario's size (500m, 256Mi, 64Mi of
        // scratch), with room for one export being sealed: its agent pod
        // (100m, 128Mi) and a claim as large as the scratch volume.
        let rq = Api::<ResourceQuota>::namespaced(client.clone(), &ns)
            .get("workspace")
            .await?;
        ensure_labelled("ResourceQuota", &rq.metadata, &name, &authz)?;
        let hard = rq.spec.and_then(|s| s.hard).unwrap_or_default();
        let (memory, storage) = (((256 + 128) << 20).to_string(), (128u64 << 20).to_string());
        for (key, want) in [
            ("limits.cpu", "600m"),
            ("limits.memory", memory.as_str()),
            ("requests.storage", storage.as_str()),
            ("persistentvolumeclaims", "2"),
        ] {
            ensure!(
                hard.get(key).map(|q| q.0.as_str()) == Some(want),
                "quota {key} is {:?}, expected {want}",
                hard.get(key)
            );
        }
        let lr = Api::<LimitRange>::namespaced(client.clone(), &ns)
            .get("workspace")
            .await?;
        ensure_labelled("LimitRange", &lr.metadata, &name, &authz)?;

        // Access: a tokenless service account, a role without secrets, the members bound.
        let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .get("workspace")
            .await?;
        ensure_labelled("ServiceAccount", &sa.metadata, &name, &authz)?;
        ensure!(
            sa.automount_service_account_token == Some(false),
            "the service account automounts its token"
        );
        // No Role of its own: members are bound to the chart's ClusterRole
        // (what it grants is checked in chart.rs and rbac.rs).
        let roles = Api::<Role>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await?;
        ensure!(
            roles.items.is_empty(),
            "roles in the workspace: {:?}",
            roles.items.iter().map(|r| r.name_any()).collect::<Vec<_>>()
        );
        let bindings = Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await?;
        ensure!(
            bindings.items.len() == 1,
            "{} role bindings",
            bindings.items.len()
        );
        let rb = &bindings.items[0];
        ensure!(
            rb.name_any() == "workspace-members",
            "the binding is {}",
            rb.name_any()
        );
        ensure_labelled("RoleBinding", &rb.metadata, &name, &authz)?;
        ensure!(
            rb.role_ref.kind == "ClusterRole" && rb.role_ref.name == "cleanroom-member",
            "binding refers to {:?}",
            rb.role_ref
        );
        let subjects: Vec<(String, String)> = rb
            .subjects
            .iter()
            .flatten()
            .map(|s| (s.kind.clone(), s.name.clone()))
            .collect();
        ensure!(
            subjects == vec![("User".to_string(), ALICE.to_string())],
            "binding subjects {subjects:?}"
        );

        // Scratch, bound.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        let pvc = wait_for(
            &claims,
            "scratch",
            "claim Bound",
            T,
            |c: Option<&PersistentVolumeClaim>| {
                c.and_then(|c| c.status.as_ref()?.phase.as_deref()) == Some("Bound")
            },
        )
        .await?;
        ensure_labelled("PersistentVolumeClaim", &pvc.metadata, &name, &authz)?;
        let all_claims = claims.list(&ListParams::default()).await?;
        ensure!(
            all_claims.items.len() == 1,
            "{} claims in {ns}",
            all_claims.items.len()
        );

        // Compute: a Deployment (Service mode), no Job.
        let d = Api::<Deployment>::namespaced(client.clone(), &ns)
            .get("workspace")
            .await?;
        ensure_labelled("Deployment", &d.metadata, &name, &authz)?;
        let d_spec = &d.spec;
        ensure!(d_spec.replicas == Some(1), "replicas {:?}", d_spec.replicas);
        let template = d_spec
            .template
            .spec
            .as_ref()
            .context("template without spec")?;
        ensure_locked_down("Deployment template", template)?;
        ensure!(
            Api::<Job>::namespaced(client.clone(), &ns)
                .get_opt("workspace")
                .await?
                .is_none(),
            "a Service-mode workspace has a Job"
        );

        // The pod the API server admitted mounts no token either.
        let pods = Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().labels("cleanroom.io/component=workspace"))
            .await?;
        ensure!(pods.items.len() == 1, "{} workspace pods", pods.items.len());
        let pod_spec = pods.items[0].spec.as_ref().context("pod without spec")?;
        ensure_locked_down("workspace pod", pod_spec)?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_batch_scenario_runs_its_workspace_as_a_job() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx
            .ready_scenario(&authz, |spec| spec["workspace"]["mode"] = json!("Batch"))
            .await?;
        let name = s.name_any();
        let ns = namespace_of(&name);
        let job = Api::<Job>::namespaced(fx.client.clone(), &ns)
            .get("workspace")
            .await?;
        ensure_labelled("Job", &job.metadata, &name, &authz)?;
        let spec = job.spec.as_ref().context("job without spec")?;
        ensure!(
            spec.suspend != Some(true),
            "the Job of a Ready scenario is suspended"
        );
        let template = spec
            .template
            .spec
            .as_ref()
            .context("template without spec")?;
        ensure!(
            template.restart_policy.as_deref() == Some("Never"),
            "restartPolicy {:?}",
            template.restart_policy
        );
        ensure_locked_down("Job template", template)?;
        ensure!(
            Api::<Deployment>::namespaced(fx.client.clone(), &ns)
                .get_opt("workspace")
                .await?
                .is_none(),
            "a Batch-mode workspace has a Deployment"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_pod_breaking_pod_security_restricted_is_refused_in_a_workspace() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let ns = namespace_of(&s.name_any());
        let pods: Api<Pod> = Api::namespaced(fx.client.clone(), &ns);
        // A pod that satisfies the restricted profile, then broken one rule at a time.
        let compliant = json!({
            "securityContext": {
                "runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "containers": [{
                "name": "c",
                "image": "busybox",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}
                }
            }]
        });
        let mut root = compliant.clone();
        root["containers"][0]["securityContext"]["runAsUser"] = json!(0);
        let mut escalates = compliant.clone();
        escalates["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
        let mut host_path = compliant.clone();
        host_path["containers"][0]["volumeMounts"] =
            json!([{"name": "host", "mountPath": "/host"}]);
        host_path["volumes"] = json!([{"name": "host", "hostPath": {"path": "/"}}]);
        let cases = [
            ("root", "runAsUser=0", root),
            ("escalates", "allowPrivilegeEscalation != false", escalates),
            ("hostpath", "restricted volume types", host_path),
        ];
        for (pod_name, rule, spec) in cases {
            let pod: Pod = from_json(json!({"metadata": {"name": pod_name}, "spec": spec}))?;
            let err = match pods.create(&PostParams::default(), &pod).await {
                Ok(_) => bail!("pod {pod_name} was admitted into {ns}"),
                Err(e) => e.to_string(),
            };
            ensure!(
                err.contains("violates PodSecurity \"restricted:") && err.contains(rule),
                "pod {pod_name} was not refused for {rule:?} by Pod Security: {err}"
            );
            ensure!(
                pods.get_opt(pod_name).await?.is_none(),
                "pod {pod_name} exists"
            );
        }
        Ok(())
    })
    .await
}

/// The Deployment's desired replicas, if it exists.
async fn replicas(client: &Client, ns: &str) -> Result<Option<i32>> {
    Ok(Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt("workspace")
        .await?
        .and_then(|d| d.spec.replicas))
}

/// Waits until the scenario is sealed the way `reason` says: phase Suspended,
/// compute at zero with no pod left, access removed, scratch kept.
async fn ensure_sealed(fx: &Fixture, name: &str, reason: &str) -> Result<Duration> {
    let started = Instant::now();
    let s = fx
        .wait_scenario(name, "phase Suspended", Duration::from_secs(10), |s| {
            phase(s) == Some(ScenarioPhase::Suspended)
        })
        .await?;
    let sealed_after = started.elapsed();
    ensure_condition(&s, "Suspended", true, Some(reason))?;
    ensure_condition(&s, "Ready", false, Some(reason))?;
    let ns = namespace_of(name);
    ensure!(
        replicas(&fx.client, &ns).await? == Some(0),
        "the Deployment is not scaled to zero"
    );
    ensure!(
        Api::<RoleBinding>::namespaced(fx.client.clone(), &ns)
            .get_opt("workspace-members")
            .await?
            .is_none(),
        "the members' binding survived the seal"
    );
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), &ns);
    let workspace_pods = ListParams::default().labels("cleanroom.io/component=workspace");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pods.list(&workspace_pods).await?.items.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "workspace pods still exist 30 s after the seal"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pvc = Api::<PersistentVolumeClaim>::namespaced(fx.client.clone(), &ns)
        .get_opt("scratch")
        .await?
        .context("the seal deleted the scratch claim")?;
    ensure!(
        pvc.metadata.deletion_timestamp.is_none(),
        "the scratch claim is being deleted"
    );
    Ok(sealed_after)
}

/// Waits until the scenario runs again: Ready, one replica, members bound.
async fn ensure_resumed(fx: &Fixture, name: &str) -> Result<Duration> {
    let started = Instant::now();
    let s = fx
        .wait_scenario(name, "Ready=True again", T, |s| {
            has_condition(s, "Ready", true)
        })
        .await?;
    let resumed_after = started.elapsed();
    ensure!(
        phase(&s) == Some(ScenarioPhase::Ready),
        "phase {:?}",
        phase(&s)
    );
    ensure_condition(&s, "Suspended", false, None)?;
    let ns = namespace_of(name);
    ensure!(
        replicas(&fx.client, &ns).await? == Some(1),
        "the Deployment is not back at one replica"
    );
    let rb = Api::<RoleBinding>::namespaced(fx.client.clone(), &ns)
        .get_opt("workspace-members")
        .await?
        .context("the members' binding did not come back")?;
    ensure!(
        rb.subjects.iter().flatten().any(|s| s.name == ALICE),
        "the binding does not name {ALICE}"
    );
    Ok(resumed_after)
}

#[tokio::test]
async fn a_suspended_scenario_is_sealed_and_resumes_when_active_again() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        fx.patch_scenario(
            &name,
            json!({"state": "Suspended", "reason": "audit finding 12"}),
        )
        .await?;
        let sealed = ensure_sealed(&fx, &name, "SuspendedByRequest").await?;
        fx.patch_scenario(&name, json!({"state": "Active", "reason": null}))
            .await?;
        let resumed = ensure_resumed(&fx, &name).await?;
        eprintln!("scenario suspension: sealed after {sealed:?}, resumed after {resumed:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn suspending_the_authorization_seals_its_scenarios() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        fx.patch_authorization(
            &authz,
            json!({"state": "Suspended", "reason": "operator under review"}),
        )
        .await?;
        let sealed = ensure_sealed(&fx, &name, "AuthorizationSuspended").await?;
        fx.patch_authorization(&authz, json!({"state": "Active", "reason": null}))
            .await?;
        let resumed = ensure_resumed(&fx, &name).await?;
        eprintln!("authorization suspension: sealed after {sealed:?}, resumed after {resumed:?}");
        Ok(())
    })
    .await
}

/// After a teardown: Closed, wiped, the namespace and its volumes gone, the
/// Scenario kept as the record. Returns the closed scenario.
async fn ensure_closed(fx: &Fixture, name: &str, volumes: &[String]) -> Result<Scenario> {
    let s = fx
        .wait_scenario(name, "phase Closed", T, |s| {
            phase(s) == Some(ScenarioPhase::Closed)
        })
        .await?;
    ensure_condition(&s, "Wiped", true, Some("WipeVerified"))?;
    ensure_condition(&s, "Ready", false, Some("Closed"))?;
    let wipes = s
        .status
        .as_ref()
        .map(|st| st.wipes.clone())
        .unwrap_or_default();
    let claims: Vec<&str> = wipes.iter().map(|w| w.claim.as_str()).collect();
    ensure!(
        claims == ["scratch"],
        "{name}: attestations for {claims:?}, expected one for scratch"
    );
    let ns = namespace_of(name);
    ensure!(
        Api::<Namespace>::all(fx.client.clone())
            .get_opt(&ns)
            .await?
            .is_none(),
        "{name} is Closed but {ns} exists"
    );
    let left = volumes_of(&fx.client, &ns).await?;
    ensure!(
        left.is_empty(),
        "{name} is Closed but volumes of {ns} remain: {left:?}"
    );
    let pvs: Api<PersistentVolume> = Api::all(fx.client.clone());
    for pv in volumes {
        ensure!(
            pvs.get_opt(pv).await?.is_none(),
            "volume {pv} of {name} remains"
        );
    }
    Ok(s)
}

/// Watches the scenario closely across `deadline` (its effective end) and
/// fails unless teardown is first seen no earlier than the deadline and no
/// later than 2 s after it. Then waits for it to close, expired with `reason`,
/// the Expired condition's transition within those 2 s too.
async fn ensure_expires_on_time(
    fx: &Fixture,
    name: &str,
    deadline: Timestamp,
    reason: &str,
) -> Result<()> {
    let s = fx.scenarios().get(name).await?;
    ensure!(
        Timestamp::now() < deadline,
        "the workspace was not Ready before its deadline"
    );
    let expires_at = s.status.as_ref().and_then(|st| st.expires_at.as_ref());
    ensure!(
        expires_at.map(|t| t.0) == Some(deadline),
        "expiresAt {expires_at:?} is not {deadline}"
    );
    let volume = scratch_volume(&fx.client, name).await?.name_any();

    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), &namespace_of(name));
    let mut last_running: Option<Timestamp> = None;
    let mut teardown_seen: Option<Timestamp> = None;
    let mut deployment_gone: Option<Timestamp> = None;
    let give_up = deadline + SignedDuration::from_secs(30);
    while teardown_seen.is_none() || deployment_gone.is_none() {
        ensure!(
            Timestamp::now() < give_up,
            "no teardown 30 s after the deadline"
        );
        let now = Timestamp::now();
        let s = fx.scenarios().get(name).await?;
        let tearing = matches!(
            phase(&s),
            Some(ScenarioPhase::TearingDown | ScenarioPhase::Closed)
        ) || has_condition(&s, "Expired", true);
        if tearing {
            teardown_seen.get_or_insert(now);
        } else if phase(&s) == Some(ScenarioPhase::Ready) {
            last_running = Some(now);
        }
        let now = Timestamp::now();
        let gone = deployments
            .get_opt("workspace")
            .await?
            .is_none_or(|d| d.metadata.deletion_timestamp.is_some());
        if gone {
            deployment_gone.get_or_insert(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (Some(seen), Some(gone)) = (teardown_seen, deployment_gone) else {
        bail!("the loop ends only when both were seen");
    };
    let seen_after = seen.duration_since(deadline);
    let gone_after = gone.duration_since(deadline);
    let running_until = last_running.map(|t| t.duration_since(deadline));
    eprintln!(
        "expiry ({reason}): deadline {deadline}; relative to it: last seen Ready at \
         {running_until:?}, teardown first seen at {seen_after:?}, Deployment deletion first \
         seen at {gone_after:?}"
    );
    ensure!(
        seen_after >= SignedDuration::ZERO,
        "teardown began {seen_after:?} before the deadline"
    );
    ensure!(
        gone_after >= SignedDuration::ZERO,
        "the Deployment was deleted {gone_after:?} before the deadline"
    );
    ensure!(
        seen_after <= SignedDuration::from_secs(2),
        "teardown was first seen {seen_after:?} after the deadline, not within 2 s"
    );
    ensure!(
        running_until.is_some_and(|r| r >= SignedDuration::from_millis(-1000)),
        "the scenario was not seen Ready in the last second before the deadline ({running_until:?})"
    );

    let s = ensure_closed(fx, name, &[volume]).await?;
    ensure_condition(&s, "Expired", true, Some(reason))?;
    let expired_at = condition(&s, "Expired")
        .map(|c| c.last_transition_time.0)
        .context("no Expired condition")?;
    let recorded_after = expired_at.duration_since(deadline);
    ensure!(
        recorded_after >= SignedDuration::ZERO && recorded_after <= SignedDuration::from_secs(2),
        "the Expired condition moved at {expired_at}, {recorded_after:?} after the deadline"
    );
    ensure!(
        condition(&s, "Revoked").is_none_or(|c| c.status != "True"),
        "an expired scenario counts as revoked"
    );
    Ok(())
}

#[tokio::test]
async fn a_scenario_is_torn_down_when_its_validuntil_passes_to_the_second() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let valid_until = seconds_from_now(10)?;
        let name = fx
            .ready_scenario(&authz, |spec| {
                spec["validUntil"] = json!(rfc3339(valid_until))
            })
            .await?
            .name_any();
        ensure_expires_on_time(&fx, &name, valid_until, "ValidityEnded").await
    })
    .await
}

#[tokio::test]
async fn a_scenario_is_torn_down_when_its_authorization_expires() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = unique_name("e2e-authz");
        let valid_until = seconds_from_now(10)?;
        let mut spec = authorization_spec(&[])?;
        spec["validUntil"] = json!(rfc3339(valid_until));
        fx.create_authorization(&authz, spec).await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        ensure_expires_on_time(&fx, &name, valid_until, "AuthorizationExpired").await?;
        fx.wait_for_authorization(&authz, "phase Expired with no live scenario", |a| {
            a.status.as_ref().is_some_and(|s| {
                s.phase == Some(AuthorizationPhase::Expired) && s.scenarios == Some(0)
            })
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_revoked_scenario_is_wiped_and_closed_and_nothing_of_it_remains() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let volume = scratch_volume(&fx.client, &name).await?.name_any();
        fx.patch_scenario(
            &name,
            json!({"state": "Revoked", "reason": "purpose fulfilled"}),
        )
        .await?;
        let s = ensure_closed(&fx, &name, &[volume]).await?;
        ensure_condition(&s, "Revoked", true, Some("RevokedByRequest"))?;
        ensure!(
            condition(&s, "Expired").is_none_or(|c| c.status != "True"),
            "a revoked scenario counts as expired"
        );
        // The object stays as the record, still holding nothing back.
        let kept = fx
            .scenarios()
            .get_opt(&name)
            .await?
            .context("the record is gone")?;
        ensure!(
            kept.metadata.deletion_timestamp.is_none(),
            "the record is being deleted"
        );
        let wipe = &s.status.as_ref().context("no status")?.wipes[0];
        ensure!(
            wipe.digest.len() == 64
                && wipe
                    .digest
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "digest {:?}",
            wipe.digest
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_deleted_scenario_is_torn_down_before_it_disappears() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let name = s.name_any();
        ensure!(
            s.finalizers().iter().any(|f| f == FINALIZER),
            "no finalizer {FINALIZER}"
        );
        let ns = namespace_of(&name);
        let volume = scratch_volume(&fx.client, &name).await?.name_any();
        fx.scenarios().delete(&name, &Default::default()).await?;

        // The object must outlive its namespace.
        let namespaces: Api<Namespace> = Api::all(fx.client.clone());
        let started = Instant::now();
        let mut namespace_gone = None;
        let mut saw_teardown = false;
        loop {
            ensure!(
                started.elapsed() < T,
                "the deleted scenario is still there after {T:?}"
            );
            // Namespace first: if the scenario is gone in the read after it,
            // the namespace was already gone when the scenario went.
            let ns_present = namespaces.get_opt(&ns).await?.is_some();
            match fx.scenarios().get_opt(&name).await? {
                Some(s) => {
                    saw_teardown |= phase(&s) == Some(ScenarioPhase::TearingDown);
                    if !ns_present {
                        namespace_gone.get_or_insert(started.elapsed());
                    }
                }
                None => {
                    ensure!(
                        !ns_present,
                        "the Scenario disappeared while {ns} still exists"
                    );
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "deletion: namespace gone after {namespace_gone:?}, object gone after {:?}",
            started.elapsed()
        );
        ensure!(saw_teardown, "never saw the scenario TearingDown");
        ensure!(namespaces.get_opt(&ns).await?.is_none(), "{ns} exists");
        let left = volumes_of(&fx.client, &ns).await?;
        ensure!(left.is_empty(), "volumes of {ns} remain: {left:?}");
        wait_gone(&Api::<PersistentVolume>::all(fx.client.clone()), &volume, T).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn teardown_overwrites_the_scratch_bytes_and_attests_before_deleting_the_claim() -> Result<()>
{
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let ns = namespace_of(&name);
        let pv = scratch_volume(&fx.client, &name).await?;
        let root = workspace_owned_dir(&pv)?;
        let notes = b"district income notes, not to leave the room\n".repeat(20);
        let table: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
        write_as_workspace(&root, "notes.txt", &notes)?;
        let table_path = write_as_workspace(&root, "results/table.csv", &table)?;
        // Held open across the teardown: its inode outlives the unlink, so
        // what it reads afterwards is what the wipe left in the file.
        let mut held = std::fs::File::open(&table_path)?;

        fx.patch_scenario(
            &name,
            json!({"state": "Revoked", "reason": "study finished"}),
        )
        .await?;
        // Each round reads the claim first, then the scenario: if the claim is
        // seen going, the scenario read that follows must already carry the
        // attestation when (as required) it was written before the delete.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(fx.client.clone(), &ns);
        let started = Instant::now();
        let mut attested_round = None;
        let mut claim_going_round = None;
        let mut round = 0u32;
        while attested_round.is_none() || claim_going_round.is_none() {
            ensure!(
                started.elapsed() < T,
                "no wipe and claim deletion within {T:?}"
            );
            let going = claims
                .get_opt("scratch")
                .await?
                .is_none_or(|c| c.metadata.deletion_timestamp.is_some());
            if going {
                claim_going_round.get_or_insert(round);
            }
            let s = fx.scenarios().get(&name).await?;
            if s.status.as_ref().is_some_and(|st| !st.wipes.is_empty()) {
                attested_round.get_or_insert(round);
            }
            round += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "wipe: attestation first seen in round {attested_round:?}, claim deletion in round \
             {claim_going_round:?} (50 ms apart)"
        );
        ensure!(
            attested_round <= claim_going_round,
            "the claim was seen deleted (round {claim_going_round:?}) before the attestation \
             was recorded (round {attested_round:?})"
        );

        let s = ensure_closed(&fx, &name, &[pv.name_any()]).await?;
        let wipe = s.status.as_ref().context("no status")?.wipes[0].clone();
        let total = (notes.len() + table.len()) as i64;
        ensure!(
            wipe.files == 2 && wipe.bytes == total,
            "attested {} files and {} bytes, wrote 2 files and {total} bytes",
            wipe.files,
            wipe.bytes
        );
        let expected = cleanroom_agent::wipe::digest(&mut [
            (b"notes.txt".to_vec(), notes.len() as u64),
            (b"results/table.csv".to_vec(), table.len() as u64),
        ]);
        ensure!(
            wipe.digest == expected,
            "digest {} is not the digest of what was written ({expected})",
            wipe.digest
        );
        ensure!(
            !root.exists(),
            "the volume directory {} outlived the volume",
            root.display()
        );

        let mut after = Vec::new();
        held.seek(SeekFrom::Start(0))?;
        held.read_to_end(&mut after)?;
        ensure!(
            after.len() == table.len(),
            "the file is {} bytes, was {}",
            after.len(),
            table.len()
        );
        let nonzero = after.iter().filter(|b| **b != 0).count();
        ensure!(
            nonzero == 0,
            "{nonzero} bytes of the file were not overwritten with zeros"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn revoking_the_authorization_tears_down_all_its_scenarios() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let first = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let second = fx
            .ready_scenario(&authz, |spec| spec["workspace"]["mode"] = json!("Batch"))
            .await?
            .name_any();
        let mut volumes = Vec::new();
        for name in [&first, &second] {
            volumes.push(scratch_volume(&fx.client, name).await?.name_any());
        }
        fx.patch_authorization(
            &authz,
            json!({"state": "Revoked", "reason": "agreement terminated"}),
        )
        .await?;
        for (name, volume) in [&first, &second].into_iter().zip(&volumes) {
            let s = ensure_closed(&fx, name, std::slice::from_ref(volume)).await?;
            ensure_condition(&s, "Revoked", true, Some("AuthorizationRevoked"))?;
        }
        let a = fx.authorizations().get(&authz).await?;
        let status = a.status.context("authorization without status")?;
        ensure!(
            status.phase == Some(AuthorizationPhase::Revoked),
            "authorization phase {:?}",
            status.phase
        );
        let names: BTreeSet<String> = fx
            .scenarios()
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|s| s.spec.authorization == authz)
            .map(|s| s.name_any())
            .collect();
        ensure!(
            names == BTreeSet::from([first.clone(), second.clone()]),
            "the records under {authz} are {names:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_failed_call_mid_teardown_loses_no_attestation() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let ns = namespace_of(&name);
        let pv = scratch_volume(&fx.client, &name).await?;
        let content = vec![b'q'; 2048];
        write_as_workspace(&workspace_owned_dir(&pv)?, "draft.txt", &content)?;
        // In force (for the operator's identity too) once this returns.
        let hold = hold_claim_deletion(&fx.client, &ns).await?;
        drill_with_claim_deletion_refused(&fx, &name, &ns, &hold, &content).await
    })
    .await
}

/// Revokes `name` while its claim cannot be deleted; checks that the
/// attestation, once recorded, stays; lifts the `hold` and checks that
/// teardown completes with that one attestation.
async fn drill_with_claim_deletion_refused(
    fx: &Fixture,
    name: &str,
    ns: &str,
    hold: &Hold,
    content: &[u8],
) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(fx.client.clone(), ns);
    fx.patch_scenario(name, json!({"state": "Revoked", "reason": "hold drill"}))
        .await?;
    // While held: the attestation appears, and must stay as it first was.
    let mut first: Option<WipeAttestation> = None;
    let mut held_since: Option<Instant> = None;
    let started = Instant::now();
    loop {
        ensure!(started.elapsed() < T, "no attestation within {T:?}");
        let s = fx.scenarios().get(name).await?;
        let wipes = s.status.map(|st| st.wipes).unwrap_or_default();
        match &first {
            None => {
                if let Some(w) = wipes.first() {
                    first = Some(w.clone());
                    held_since = Some(Instant::now());
                }
            }
            Some(f) => ensure!(
                wipes.as_slice() == std::slice::from_ref(f),
                "the attestation changed while the claim could not be deleted: first {f:?}, \
                 now {wipes:?}"
            ),
        }
        if held_since.is_some_and(|t| t.elapsed() > Duration::from_secs(6)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let claim = claims
        .get_opt("scratch")
        .await?
        .context("the held claim is gone")?;
    ensure!(
        claim.metadata.deletion_timestamp.is_none(),
        "the claim was deleted despite the hold"
    );

    let volume = claim.spec.and_then(|s| s.volume_name).unwrap_or_default();
    hold.lift().await?;
    let s = ensure_closed(fx, name, &[volume]).await?;
    let wipes = s.status.map(|st| st.wipes).unwrap_or_default();
    ensure!(
        wipes.len() == 1 && wipes[0].files == 1 && wipes[0].bytes == content.len() as i64,
        "the attestation does not report the 1 file of {} bytes written: {wipes:?}",
        content.len()
    );
    Ok(())
}
