//! The Helm chart, the plain install rendered from it, and its admission
//! policies against the real API server. helm comes from its Go module
//! (`e2e/scripts/build-helm.sh`); the cluster from `make cluster-up`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cleanroom::workspace::access::{member_rules, noninteractive_member_rules, reviewer_rules};
use cleanroom_e2e::harness::{E2E_LABEL, run_kubectl, unique_name, with_namespace};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the repository")
        .to_path_buf()
}

fn chart_dir() -> PathBuf {
    repo_dir().join("charts/cleanroom")
}

/// Runs a command, returning stdout if it succeeded and a readable error if not.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    Ok(stdout)
}

/// helm, built from e2e/helm (a warm cache answers at once).
fn helm() -> Result<Command> {
    let script = repo_dir().join("e2e/scripts/build-helm.sh");
    let dir = run(&mut Command::new(script))?;
    let mut cmd = Command::new(Path::new(dir.trim()).join("helm"));
    cmd.current_dir(repo_dir());
    Ok(cmd)
}

/// `helm template cleanroom charts/cleanroom --namespace cleanroom-system` plus `args`.
fn template(args: &[&str]) -> Result<String> {
    run(helm()?
        .args(["template", "cleanroom", "charts/cleanroom"])
        .args(["--namespace", "cleanroom-system"])
        .args(args))
}

/// The rendered objects, comments and empty documents left out.
fn objects(yaml: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc).context("rendered YAML")?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Writes `text` to a temporary file for `kubectl -f`.
fn temp_file(name: &str, text: &str) -> Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("{}.yaml", unique_name(name)));
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn chart_passes_strict_lint() -> Result<()> {
    let out = run(helm()?.args(["lint", "--strict", "charts/cleanroom"]))?;
    ensure!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
    ensure!(!out.contains("[WARNING]"), "lint warns:\n{out}");
    Ok(())
}

#[test]
fn chart_crds_are_byte_identical_to_the_generated_ones() -> Result<()> {
    let list = |dir: PathBuf| -> Result<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{dir:?}"))? {
            names.insert(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    };
    let generated = list(repo_dir().join("crds"))?;
    let in_chart = list(chart_dir().join("crds"))?;
    ensure!(
        generated == in_chart,
        "charts/cleanroom/crds/ holds {in_chart:?}, crds/ holds {generated:?}: \
         copy crds/*.yaml into the chart"
    );
    ensure!(!generated.is_empty(), "no CRDs in crds/");
    for name in &generated {
        let a = std::fs::read(repo_dir().join("crds").join(name))?;
        let b = std::fs::read(chart_dir().join("crds").join(name))?;
        ensure!(
            a == b,
            "charts/cleanroom/crds/{name} differs from crds/{name}: copy it again"
        );
    }
    Ok(())
}

#[test]
fn install_manifest_is_what_the_chart_renders_now() -> Result<()> {
    let script = repo_dir().join("e2e/scripts/render-install.sh");
    let fresh = run(Command::new(script).arg("--stdout"))?;
    let committed = std::fs::read_to_string(repo_dir().join("manifests/install.yaml"))?;
    ensure!(
        fresh == committed,
        "manifests/install.yaml is stale: run e2e/scripts/render-install.sh"
    );
    ensure!(fresh.contains("kind: CustomResourceDefinition"));
    ensure!(fresh.contains("kind: ValidatingAdmissionPolicy"));
    Ok(())
}

#[test]
fn two_replicas_without_leader_election_are_refused() -> Result<()> {
    let err = template(&["--set", "leaderElection.enabled=false"])
        .err()
        .context("two replicas without leader election rendered")?;
    ensure!(format!("{err:#}").contains("needs leaderElection.enabled"));
    let one = template(&[
        "--set",
        "leaderElection.enabled=false",
        "--set",
        "operator.replicas=1",
    ])?;
    ensure!(!one.contains("--leader-elect"), "the flag stays off");
    let default = template(&[])?;
    ensure!(default.contains("- --leader-elect"), "on by default");
    Ok(())
}

/// Whether `rules` grant `verb` on `group`/`resource` to any name (no
/// wildcards expected).
fn grants(rules: &[Value], group: &str, resource: &str, verb: &str) -> bool {
    let has = |r: &Value, key: &str, want: &str| {
        r[key]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(want)))
    };
    rules.iter().any(|r| {
        r.get("resourceNames").is_none()
            && has(r, "apiGroups", group)
            && has(r, "resources", resource)
            && has(r, "verbs", verb)
    })
}

/// The rendered ClusterRole `name`'s rules.
fn cluster_role_rules(name: &str) -> Result<Vec<Value>> {
    let rendered = objects(&template(&["--show-only", "templates/rbac.yaml"])?)?;
    let role = rendered
        .iter()
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == name)
        .with_context(|| format!("no ClusterRole {name}"))?;
    Ok(role["rules"].as_array().context("no rules")?.clone())
}

#[test]
fn operator_cluster_role_is_least_privilege_and_binds_only_the_roles_it_grants() -> Result<()> {
    let rules = cluster_role_rules("cleanroom-operator")?;
    for r in &rules {
        for key in ["apiGroups", "resources", "verbs"] {
            let values = r[key]
                .as_array()
                .with_context(|| format!("rule without {key}"))?;
            ensure!(!values.iter().any(|v| v == "*"), "wildcard in {key}: {r}");
        }
        let verbs = r["verbs"].as_array().context("verbs")?;
        for forbidden in ["escalate", "impersonate", "deletecollection"] {
            ensure!(
                !verbs.iter().any(|v| v == forbidden),
                "{forbidden} granted: {r}"
            );
        }
        // `bind` only on the ClusterRoles it grants (members, non-interactive
        // members, reviewers), by name.
        if verbs.iter().any(|v| v == "bind") {
            ensure!(
                r["verbs"] == json!(["bind"])
                    && r["apiGroups"] == json!(["rbac.authorization.k8s.io"])
                    && r["resources"] == json!(["clusterroles"])
                    && r["resourceNames"]
                        == json!([
                            "cleanroom-member",
                            "cleanroom-member-noninteractive",
                            "cleanroom-reviewer"
                        ]),
                "bind reaches further than the roles the operator grants: {r}"
            );
        }
        let resources = r["resources"].as_array().context("resources")?;
        for never in [
            "secrets",
            "pods/exec",
            "pods/log",
            "pods/attach",
            "configmaps",
        ] {
            ensure!(
                !resources.iter().any(|v| v == never),
                "the operator holds {never} cluster-wide: {r}"
            );
        }
    }
    ensure!(
        rules.iter().any(|r| r["verbs"] == json!(["bind"])),
        "the operator cannot bind the member ClusterRole"
    );
    // It makes no Roles any more: it only finds and deletes foreign ones.
    for verb in ["create", "patch", "update", "escalate"] {
        ensure!(
            !grants(&rules, "rbac.authorization.k8s.io", "roles", verb),
            "{verb} roles"
        );
    }
    ensure!(
        !grants(&rules, "", "events", "list"),
        "core events are the members'"
    );
    ensure!(!grants(&rules, "", "pods", "create"));
    ensure!(!grants(&rules, "", "persistentvolumes", "create"));
    // What the controllers do, spot-checked, and the seven kinds whose
    // foreign objects it finds and deletes in workspaces.
    for (group, resource, verb) in [
        ("cleanroom.io", "scenarios/status", "patch"),
        ("cleanroom.io", "authorizations/status", "patch"),
        ("", "namespaces", "delete"),
        ("", "persistentvolumeclaims", "create"),
        ("", "persistentvolumes", "delete"),
        ("", "persistentvolumes", "patch"),
        ("networking.k8s.io", "networkpolicies", "patch"),
        ("batch", "jobs", "watch"),
        ("apps", "deployments", "patch"),
        ("", "pods", "list"),
        ("events.k8s.io", "events", "create"),
    ] {
        ensure!(
            grants(&rules, group, resource, verb),
            "{verb} {group}/{resource}"
        );
    }
    for (group, resource) in [
        ("networking.k8s.io", "networkpolicies"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("", "serviceaccounts"),
        ("", "persistentvolumeclaims"),
    ] {
        for verb in ["get", "list", "watch", "delete"] {
            ensure!(
                grants(&rules, group, resource, verb),
                "{verb} {group}/{resource}: foreign objects in workspaces"
            );
        }
    }
    Ok(())
}

#[test]
fn member_cluster_role_grants_what_members_do_and_the_operator_is_told_its_name() -> Result<()> {
    // Exactly what the operator's code says members and reviewers get (one
    // list, two places).
    for (role, want) in [
        ("cleanroom-member", member_rules()),
        (
            "cleanroom-member-noninteractive",
            noninteractive_member_rules(),
        ),
        ("cleanroom-reviewer", reviewer_rules()),
    ] {
        let rules = cluster_role_rules(role)?;
        let want = serde_json::to_value(want)?;
        ensure!(
            Value::Array(rules.clone()) == want,
            "the chart's ClusterRole {role} differs from workspace::access:\n\
             chart: {}\ncode: {}",
            serde_json::to_string_pretty(&rules)?,
            serde_json::to_string_pretty(&want)?
        );
    }
    let deployment = objects(&template(&["--show-only", "templates/deployment.yaml"])?)?;
    let text = serde_json::to_string(&deployment)?;
    ensure!(
        text.contains(r#"{"name":"CLEANROOM_MEMBER_CLUSTER_ROLE","value":"cleanroom-member"}"#),
        "the operator is not told to bind the chart's member ClusterRole"
    );
    Ok(())
}

#[test]
fn the_audit_ledger_role_grants_exactly_what_the_ledger_does_in_its_namespace() -> Result<()> {
    let rendered = objects(&template(&["--show-only", "templates/rbac.yaml"])?)?;
    let role = rendered
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "cleanroom-audit")
        .context("no audit Role")?;
    ensure!(
        role["metadata"]["namespace"] == "cleanroom-system",
        "{role}"
    );
    let rules = role["rules"].as_array().context("no rules")?;
    let want = serde_json::json!([
        {"apiGroups": [""], "resources": ["configmaps"],
         "verbs": ["list", "create", "update", "delete"]},
        {"apiGroups": [""], "resources": ["configmaps"],
         "resourceNames": ["cleanroom-audit-pubkey"], "verbs": ["get"]},
        // The signing key: read by name only, made once, never replaced.
        {"apiGroups": [""], "resources": ["secrets"],
         "resourceNames": ["cleanroom-audit-signing"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]);
    ensure!(
        serde_json::Value::Array(rules.clone()) == want,
        "the audit Role's rules: {rules:?}"
    );
    let deployment = objects(&template(&["--show-only", "templates/deployment.yaml"])?)?;
    let text = serde_json::to_string(&deployment)?;
    ensure!(
        text.contains(r#"{"name":"CLEANROOM_AUDIT_NAMESPACE","value":"cleanroom-system"}"#),
        "the operator writes its ledger where the Role applies"
    );
    Ok(())
}

/// Creates `name` if absent; returns whether this call created it.
fn ensure_namespace(name: &str) -> Result<bool> {
    let (exists, _, _) = run_kubectl(&["get", "namespace", name])?;
    if exists {
        return Ok(false);
    }
    let (ok, _, err) = run_kubectl(&["create", "namespace", name])?;
    // Someone else may have created it meanwhile: then it is theirs.
    ensure!(
        ok || err.contains("AlreadyExists"),
        "creating {name}: {err}"
    );
    Ok(ok)
}

#[test]
fn whole_chart_passes_server_side_dry_run() -> Result<()> {
    let rendered = template(&["--include-crds"])?;
    let kinds: BTreeSet<String> = objects(&rendered)?
        .iter()
        .filter_map(|o| o["kind"].as_str().map(str::to_string))
        .collect();
    for kind in [
        "CustomResourceDefinition",
        "Namespace",
        "ClusterRole",
        "Deployment",
        "NetworkPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        ensure!(kinds.contains(kind), "the chart renders no {kind}");
    }
    let file = temp_file("chart", &rendered)?;
    // A dry run of a namespaced object needs its namespace to exist.
    let mut created = Vec::new();
    for ns in ["cleanroom-system", "cleanroom-vault"] {
        if ensure_namespace(ns)? {
            created.push(ns);
        }
    }
    let path = file.to_string_lossy().into_owned();
    let result = run_kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        "cleanroom-chart-test",
        "--dry-run=server",
        "-f",
        &path,
    ]);
    for ns in created {
        let _ = run_kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
    let _ = std::fs::remove_file(&file);
    let (ok, out, err) = result?;
    ensure!(ok, "server dry run refused the chart:\n{out}\n{err}");
    for applied in [
        "deployment.apps/cleanroom serverside-applied (server dry run)",
        "validatingadmissionpolicy.admissionregistration.k8s.io/cleanroom-workspace-objects serverside-applied (server dry run)",
        "clusterrole.rbac.authorization.k8s.io/cleanroom-member serverside-applied (server dry run)",
        "customresourcedefinition.apiextensions.k8s.io/scenarios.cleanroom.io serverside-applied (server dry run)",
    ] {
        ensure!(out.contains(applied), "no `{applied}` in:\n{out}");
    }
    Ok(())
}

/// Tries to create `pod` until the API server refuses it (policies take a
/// moment to become effective), deleting any that got in; returns the refusal.
async fn refused_pod(pods: &Api<Pod>, pod: Value, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pod: Pod = serde_json::from_value(pod)?;
    loop {
        match pods.create(&PostParams::default(), &pod).await {
            Err(kube::Error::Api(status)) => return Ok(status.message),
            Err(e) => return Err(e.into()),
            Ok(_) => {
                pods.delete(&name, &DeleteParams::default().grace_period(0))
                    .await?;
                if Instant::now() >= deadline {
                    bail!("pod {name} was admitted for {timeout:?}");
                }
                // Deleted with grace 0; wait until the name is free again.
                while pods.get_opt(&name).await?.is_some() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn pod_with(name: &str, volume: Value) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "containers": [{
                "name": "main",
                "image": "registry.example.com/notebook:1",
                "volumeMounts": [{"name": "v", "mountPath": "/v"}]
            }],
            "volumes": [volume]
        }
    })
}

async fn policies_refuse_what_the_operator_did_not_make(
    client: Client,
    ns: String,
    operator: &str,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let host = pod_with("host", json!({"name": "v", "hostPath": {"path": "/etc"}}));
    let refusal = refused_pod(&pods, host, Duration::from_secs(15)).await?;
    ensure!(
        refusal.contains("may not mount a hostPath volume"),
        "hostPath pod refused for another reason: {refusal}"
    );
    // Effective now: the rest must be refused at the first try.
    let other = pod_with(
        "other",
        json!({"name": "v", "persistentVolumeClaim": {"claimName": "other"}}),
    );
    let refusal = refused_pod(&pods, other, Duration::ZERO).await?;
    ensure!(
        refusal.contains("may only mount the operator's claims") && refusal.contains("other"),
        "foreign-claim pod refused for another reason: {refusal}"
    );

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "scratch"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Mi"}}
        }
    }))?;
    match claims.create(&PostParams::default(), &claim).await {
        Err(kube::Error::Api(status)) => ensure!(
            status.message.contains("are the operator's alone"),
            "claim refused for another reason: {}",
            status.message
        ),
        Err(e) => return Err(e.into()),
        Ok(_) => bail!("the admin (not the operator) created a claim in {ns}"),
    }

    // Allowed: an emptyDir, and the operator's own claim name.
    let empty = pod_with("empty", json!({"name": "v", "emptyDir": {}}));
    pods.create(&PostParams::default(), &serde_json::from_value(empty)?)
        .await
        .context("a pod with only an emptyDir was refused")?;
    let scratch = pod_with(
        "scratch",
        json!({"name": "v", "persistentVolumeClaim": {"claimName": "scratch"}}),
    );
    pods.create(&PostParams::default(), &serde_json::from_value(scratch)?)
        .await
        .context("a pod mounting `scratch` was refused")?;

    // The operator's identity may make the claim (impersonated, with the
    // admin's group so that RBAC lets it through to admission).
    let file = temp_file(
        "claim",
        &serde_json::to_string(&json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "scratch", "namespace": ns},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Mi"}}
            }
        }))?,
    )?;
    let path = file.to_string_lossy().into_owned();
    let as_user = format!("--as={operator}");
    let created = run_kubectl(&["create", &as_user, "--as-group=system:masters", "-f", &path]);
    let _ = std::fs::remove_file(&file);
    let (ok, _, err) = created?;
    ensure!(
        ok,
        "the operator's identity could not create a claim: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn admission_policies_refuse_host_paths_and_foreign_claims_in_workspaces() -> Result<()> {
    let id = unique_name("chart");
    let operator = "system:serviceaccount:cleanroom-system:cleanroom";
    // A copy of the chart's policies with unique names. The workspace ones
    // apply only to this test's namespace (its extra label), so parallel
    // runs never meet; the status and confinement copies are cluster-wide
    // but name the same operator as the installed ones, so they refuse
    // nothing those do not.
    let policies = template(&[
        "--show-only",
        "templates/admission-policies.yaml",
        "--set",
        &format!("admissionPolicies.nameSuffix=-{id}"),
        "--set",
        &format!("admissionPolicies.extraNamespaceLabels.cleanroom\\.io/chart-test={id}"),
        "--set",
        &format!("admissionPolicies.operatorUsername={operator}"),
    ])?;
    let count = objects(&policies)?.len();
    ensure!(
        count == 10,
        "expected 5 policies and 5 bindings, got {count}"
    );
    let file = temp_file("policies", &policies)?;
    let path = file.to_string_lossy().into_owned();
    let (ok, _, err) = run_kubectl(&["apply", "-f", &path])?;
    ensure!(ok, "applying the policies: {err}");

    let result = with_namespace(
        "cr-chart",
        &[
            ("app.kubernetes.io/managed-by", "cleanroom"),
            ("cleanroom.io/chart-test", &id),
            (E2E_LABEL, "true"),
        ],
        |client, ns| policies_refuse_what_the_operator_did_not_make(client, ns, operator),
    )
    .await;

    let (removed, _, err) = run_kubectl(&["delete", "--ignore-not-found", "-f", &path])?;
    let _ = std::fs::remove_file(&file);
    result?;
    ensure!(removed, "removing the policies: {err}");
    Ok(())
}
