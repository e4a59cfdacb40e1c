//! Least privilege, exercised against the real API server: what a
//! workspace member may and may not do, what the operator's own identity may
//! not do (no exec; writes confined by policy to workspaces and the vault),
//! and what nobody but the operator may do in a workspace, not even a
//! cluster admin (the chart's admission policies).
//!
//! Needs the cluster and the operator as `make e2e` runs them
//! (`e2e/scripts/operator.sh start`): the chart's service account, RBAC and
//! admission policies installed, and the operator running with the service
//! account's token (`e2e/.cluster/operator.kubeconfig`).

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cleanroom::api::{Authorization, Scenario};
use cleanroom_e2e::harness::{E2E_LABEL, client, cluster_dir, meta, run_kubectl, unique_name};
use common::{ALICE, T, VAULT, authorization_spec, has_condition, namespace_of, with_fixture};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Event, LimitRange, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, ResourceQuota,
    Secret, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The operator's identity: the chart's service account in its release namespace.
const OPERATOR: &str = "system:serviceaccount:cleanroom-system:cleanroom";
/// The member ClusterRole the chart defines and the operator binds.
const MEMBER_ROLE: &str = "cleanroom-member";
/// A second member, of another workspace only.
const BOB: &str = "bob@acme.example";
/// Someone with no business anywhere.
const MALLORY: &str = "mallory@elsewhere.example";
/// How long a just-installed policy or binding may take to be in force.
const SETTLE: Duration = Duration::from_secs(10);
/// The chart's admission policies, as their refusals name them.
const OBJECTS: &str = "cleanroom-workspace-objects";
const NAMESPACES: &str = "cleanroom-workspace-namespaces";
const STATUS: &str = "cleanroom-status";
const CONFINEMENT: &str = "cleanroom-operator-confinement";
/// The label that makes an object the operator's.
const MANAGED: &str = "app.kubernetes.io/managed-by=cleanroom";

/// A client that impersonates `user` (with `groups`, if any) through the
/// admin's credentials: RBAC and admission see `user`.
async fn as_user(user: &str, groups: &[&str]) -> Result<Client> {
    let mut config = cleanroom_e2e::harness::config().await?;
    config.auth_info.impersonate = Some(user.to_string());
    if !groups.is_empty() {
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    }
    Ok(Client::try_from(config)?)
}

fn from_json<K: DeserializeOwned>(v: Value) -> Result<K> {
    Ok(serde_json::from_value(v)?)
}

fn dry_post() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

fn dry_delete() -> DeleteParams {
    DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    }
}

fn dry_patch() -> PatchParams {
    PatchParams {
        dry_run: true,
        ..PatchParams::default()
    }
}

/// Sends `request` until the API server refuses it (a binding or policy may
/// take a moment to be in force), for at most [`SETTLE`]; returns the
/// refusal's message. Requests sent here are dry runs or harmless reads.
async fn refused<T, F, Fut>(what: &str, mut request: F) -> Result<String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        match request().await {
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(s.message),
            Err(e) => bail!("{what}: failed for another reason than a refusal: {e}"),
            Ok(_) if Instant::now() >= deadline => bail!("{what}: the API server accepted it"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Sends `request` until the API server accepts it (RBAC caches may lag a
/// new binding), for at most [`SETTLE`].
async fn allowed<T, F, Fut>(what: &str, mut request: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        match request().await {
            Ok(t) => return Ok(t),
            Err(e) if Instant::now() >= deadline => bail!("{what}: refused: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Fails unless `message` contains every one of `parts`.
fn ensure_names(message: &str, parts: &[&str]) -> Result<()> {
    for part in parts {
        ensure!(
            message.contains(part),
            "the refusal does not name `{part}`: {message}"
        );
    }
    Ok(())
}

/// `kubectl auth can-i VERB RESOURCE -n NS --as USER` (plus `extra`; no
/// namespace when `ns` is empty): yes or no.
fn can_i(user: &str, verb: &str, resource: &str, ns: &str, extra: &[&str]) -> Result<bool> {
    let as_user = format!("--as={user}");
    let mut args = vec!["auth", "can-i", verb, resource, &as_user];
    if !ns.is_empty() {
        args.extend(["-n", ns]);
    }
    args.extend_from_slice(extra);
    let (_, out, err) = run_kubectl(&args)?;
    match out.trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => bail!("can-i {verb} {resource} as {user}: {other} {err}"),
    }
}

/// [`can_i`], retried for [`SETTLE`] until it answers `want`; returns the last answer.
async fn can_i_settled(
    user: &str,
    verb: &str,
    resource: &str,
    ns: &str,
    extra: &[&str],
    want: bool,
) -> Result<bool> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let answer = can_i(user, verb, resource, ns, extra)?;
        if answer == want || Instant::now() >= deadline {
            return Ok(answer);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A workspace pod of the scenario once one exists (KWOK runs it).
async fn workspace_pod(client: &Client, ns: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels("cleanroom.io/component=workspace");
    let deadline = Instant::now() + T;
    loop {
        if let Some(p) = pods.list(&lp).await?.items.first() {
            return Ok(p.name_any());
        }
        ensure!(Instant::now() < deadline, "no workspace pod in {ns}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_operator_runs_with_the_charts_service_account_token() -> Result<()> {
    let path = cluster_dir().join("operator.kubeconfig");
    let kubeconfig = Kubeconfig::read_from(&path)
        .with_context(|| format!("{}: start the operator with operator.sh", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let review = Api::<SelfSubjectReview>::all(Client::try_from(config)?)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let user = review
        .status
        .and_then(|s| s.user_info)
        .context("no user in the review")?;
    ensure!(
        user.username.as_deref() == Some(OPERATOR),
        "the operator's kubeconfig authenticates as {:?}",
        user.username
    );
    let groups = user.groups.unwrap_or_default();
    ensure!(
        !groups.iter().any(|g| g == "system:masters"),
        "the operator's identity is in system:masters: {groups:?}"
    );
    // And the running operator uses it (not the admin's kubeconfig).
    let pid = std::fs::read_to_string(cluster_dir().join("run/operator.pid"))
        .context("no operator running (make e2e starts it)")?;
    let environ = std::fs::read(format!("/proc/{}/environ", pid.trim()))
        .context("reading the operator's environment")?;
    let want = format!("KUBECONFIG={}", path.display());
    ensure!(
        environ.split(|b| *b == 0).any(|v| v == want.as_bytes()),
        "the shared operator does not run with {want}"
    );
    Ok(())
}

#[tokio::test]
async fn members_may_look_and_exec_in_their_workspace_and_nothing_else() -> Result<()> {
    with_fixture(|fx| async move {
        // Alice enters one workspace, Bob another, under one authorization.
        let authz = unique_name("e2e-authz");
        let mut spec = authorization_spec(&[])?;
        spec["members"] = json!({"users": [ALICE, BOB]});
        fx.create_authorization(&authz, spec).await?;
        let mine = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let theirs = fx
            .ready_scenario(&authz, |s| s["members"] = json!({"users": [BOB]}))
            .await?
            .name_any();
        let (ns, other) = (namespace_of(&mine), namespace_of(&theirs));

        // The members' binding refers to the chart's member ClusterRole, and
        // the operator made no Role of its own.
        let binding = Api::<RoleBinding>::namespaced(fx.client.clone(), &ns)
            .get("workspace-members")
            .await?;
        ensure!(
            binding.role_ref.kind == "ClusterRole" && binding.role_ref.name == MEMBER_ROLE,
            "the members are bound to {} {}, not to ClusterRole {MEMBER_ROLE}",
            binding.role_ref.kind,
            binding.role_ref.name
        );
        let roles = Api::<Role>::namespaced(fx.client.clone(), &ns)
            .list(&ListParams::default())
            .await?;
        ensure!(
            roles.items.is_empty(),
            "Roles in {ns}: {:?}",
            roles.iter().map(|r| r.name_any()).collect::<Vec<_>>()
        );
        Api::<ClusterRole>::all(fx.client.clone())
            .get(MEMBER_ROLE)
            .await
            .context("the chart's member ClusterRole is not installed")?;

        let alice = as_user(ALICE, &[]).await?;
        let pod = workspace_pod(&fx.client, &ns).await?;
        let (lp, post, del, pp) = (ListParams::default(), dry_post(), dry_delete(), dry_patch());
        let pods: Api<Pod> = Api::namespaced(alice.clone(), &ns);
        let deployments: Api<Deployment> = Api::namespaced(alice.clone(), &ns);
        let jobs: Api<Job> = Api::namespaced(alice.clone(), &ns);
        let events: Api<Event> = Api::namespaced(alice.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(alice.clone(), &ns);
        let policies: Api<NetworkPolicy> = Api::namespaced(alice.clone(), &ns);
        let roles: Api<Role> = Api::namespaced(alice.clone(), &ns);
        let bindings: Api<RoleBinding> = Api::namespaced(alice.clone(), &ns);
        let namespaces: Api<Namespace> = Api::all(alice.clone());
        let scenarios: Api<Scenario> = Api::all(alice.clone());

        // Allowed: look at the workspace's pods, logs, compute and events; exec.
        let listed = allowed("alice lists pods", || pods.list(&lp)).await?;
        ensure!(!listed.items.is_empty(), "alice sees no pod in {ns}");
        allowed("alice gets the workspace pod", || pods.get(&pod)).await?;
        allowed("alice lists deployments", || deployments.list(&lp)).await?;
        allowed("alice lists jobs", || jobs.list(&lp)).await?;
        allowed("alice lists events", || events.list(&lp)).await?;
        for (verb, sub, what) in [("get", "log", "read pod logs"), ("create", "exec", "exec into pods")] {
            let sub = format!("--subresource={sub}");
            ensure!(
                can_i_settled(ALICE, verb, "pods", &ns, &[&sub], true).await?,
                "alice may not {what} in {ns}"
            );
        }

        // Refused: make pods, read secrets, open the network, grant access,
        // change the workspace, look anywhere else.
        let new_pod: Pod = from_json(json!({
            "metadata": {"name": "mine"},
            "spec": {"containers": [{"name": "c", "image": "registry.example.com/x:1"}]}
        }))?;
        let m = refused("alice creates a pod", || pods.create(&post, &new_pod)).await?;
        ensure_names(&m, &[ALICE, "create", "\"pods\"", &ns])?;
        let m = refused("alice lists secrets", || secrets.list(&lp)).await?;
        ensure_names(&m, &[ALICE, "list", "\"secrets\"", &ns])?;
        let m = refused("alice reads a secret", || secrets.get("any")).await?;
        ensure_names(&m, &[ALICE, "get", "\"secrets\"", &ns])?;
        let netpol: NetworkPolicy = from_json(json!({
            "metadata": {"name": "allow-all"},
            "spec": {"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}
        }))?;
        let m = refused("alice creates a NetworkPolicy", || policies.create(&post, &netpol)).await?;
        ensure_names(&m, &[ALICE, "create", "\"networkpolicies\"", &ns])?;
        let role: Role = from_json(json!({
            "metadata": {"name": "more"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
        }))?;
        let m = refused("alice creates a Role", || roles.create(&post, &role)).await?;
        ensure_names(&m, &[ALICE, "create", "\"roles\"", &ns])?;
        let rb: RoleBinding = from_json(json!({
            "metadata": {"name": "friend"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": MEMBER_ROLE},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": MALLORY}]
        }))?;
        let m = refused("alice binds a friend", || bindings.create(&post, &rb)).await?;
        ensure_names(&m, &[ALICE, "create", "\"rolebindings\"", &ns])?;
        let m = refused("alice deletes the workspace pod", || pods.delete(&pod, &del)).await?;
        ensure_names(&m, &[ALICE, "delete", "\"pods\"", &ns])?;
        let scale = Patch::Merge(json!({"spec": {"replicas": 5}}));
        let m = refused("alice scales the workspace", || {
            deployments.patch("workspace", &pp, &scale)
        })
        .await?;
        ensure_names(&m, &[ALICE, "patch", "\"deployments\"", &ns])?;
        for elsewhere in ["default", other.as_str()] {
            let pods_there: Api<Pod> = Api::namespaced(alice.clone(), elsewhere);
            let m = refused("alice lists pods elsewhere", || pods_there.list(&lp)).await?;
            ensure_names(&m, &[ALICE, "list", "\"pods\"", elsewhere])?;
            ensure!(
                !can_i(ALICE, "create", "pods", elsewhere, &["--subresource=exec"])?,
                "alice may exec into pods in {elsewhere}"
            );
        }
        let m = refused("alice lists namespaces", || namespaces.list(&lp)).await?;
        ensure_names(&m, &[ALICE, "list", "\"namespaces\""])?;
        let closed = Patch::Merge(json!({"status": {"phase": "Closed"}}));
        let m = refused("alice writes her scenario's status", || {
            scenarios.patch_status(&mine, &pp, &closed)
        })
        .await?;
        ensure_names(&m, &[ALICE, "patch", "\"scenarios/status\""])?;

        // Bob, in the other workspace, is not in this one.
        ensure!(
            can_i_settled(BOB, "create", "pods", &other, &["--subresource=exec"], true).await?,
            "bob may not exec into his own workspace {other}"
        );
        ensure!(
            !can_i(BOB, "get", "pods", &ns, &[])?,
            "bob may read pods in alice's workspace {ns}"
        );
        Ok(())
    })
    .await
}

/// One `can-i` question: verb, resource, namespace ("" for cluster-scoped),
/// extra flags, the answer wanted, and why.
type Check<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], bool, &'a str);

/// What the operator's RBAC lets it do (`kubectl auth can-i`): no exec, no
/// logs, no pods, no secrets outside the vault, no Roles, and `bind` on the
/// member ClusterRole alone; what it needs, it has.
fn operator_rbac(ns: &str) -> Result<()> {
    let member = format!("clusterroles/{MEMBER_ROLE}");
    let exec = ["--subresource=exec"];
    let log = ["--subresource=log"];
    let status = ["--subresource=status"];
    let checks: [Check; 17] = [
        (
            "create",
            "pods",
            ns,
            &exec,
            false,
            "exec into workspace pods",
        ),
        ("get", "pods", ns, &exec, false, "exec into workspace pods"),
        ("get", "pods", ns, &log, false, "read workspace logs"),
        ("create", "pods", ns, &[], false, "create pods"),
        (
            "list",
            "events",
            ns,
            &[],
            false,
            "read the workspace's core Events",
        ),
        ("get", "secrets", ns, &[], false, "read workspace secrets"),
        (
            "get",
            "secrets",
            "default",
            &[],
            false,
            "read secrets outside the vault",
        ),
        ("create", "roles", ns, &[], false, "create Roles"),
        ("escalate", "clusterroles", ns, &[], false, "escalate"),
        (
            "bind",
            "clusterroles/cluster-admin",
            ns,
            &[],
            false,
            "bind cluster-admin",
        ),
        (
            "bind",
            &member,
            ns,
            &[],
            true,
            "bind the member ClusterRole",
        ),
        ("create", "rolebindings", ns, &[], true, "bind the members"),
        (
            "delete",
            "networkpolicies",
            ns,
            &[],
            true,
            "delete foreign NetworkPolicies",
        ),
        (
            "watch",
            "serviceaccounts",
            ns,
            &[],
            true,
            "watch ServiceAccounts",
        ),
        (
            "patch",
            "scenarios.cleanroom.io",
            "",
            &status,
            true,
            "write scenario status",
        ),
        ("delete", "namespaces", "", &[], true, "delete namespaces"),
        // Its cache of its own workspace namespaces.
        ("watch", "namespaces", "", &[], true, "watch namespaces"),
    ];
    for (verb, resource, where_, extra, want, why) in checks {
        let got = can_i(OPERATOR, verb, resource, where_, extra)?;
        ensure!(
            got == want,
            "the operator {} {why} ({verb} {resource} {extra:?} in {where_:?})",
            if got { "may" } else { "may not" }
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_operators_identity_holds_no_exec_and_writes_only_where_it_must() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let scenario = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let ns = namespace_of(&scenario);
        operator_rbac(&ns)?;
        let op = as_user(OPERATOR, &[]).await?;
        let (post, del) = (dry_post(), dry_delete());

        // Compute and claims: in workspaces (and the vault) only.
        let job: Job = from_json(json!({
            "metadata": {"name": "escape"},
            "spec": {"suspend": true, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "registry.example.com/x:1"}]
            }}}
        }))?;
        let jobs_default: Api<Job> = Api::namespaced(op.clone(), "default");
        let m = refused("the operator creates a Job in default", || {
            jobs_default.create(&post, &job)
        })
        .await?;
        ensure_names(&m, &["jobs/escape", "default", CONFINEMENT])?;
        let jobs_workspace: Api<Job> = Api::namespaced(op.clone(), &ns);
        allowed("the operator creates a Job in its workspace", || {
            jobs_workspace.create(&post, &job)
        })
        .await?;
        let deployment: Deployment = from_json(json!({
            "metadata": {"name": "escape"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "escape"}},
                "template": {
                    "metadata": {"labels": {"app": "escape"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.example.com/x:1"}]}
                }
            }
        }))?;
        let deployments: Api<Deployment> = Api::namespaced(op.clone(), "kube-system");
        let m = refused("the operator creates a Deployment in kube-system", || {
            deployments.create(&post, &deployment)
        })
        .await?;
        ensure_names(&m, &["deployments/escape", "kube-system", CONFINEMENT])?;
        let claim: PersistentVolumeClaim = from_json(json!({
            "metadata": {"name": "escape"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}
        }))?;
        let claims_default: Api<PersistentVolumeClaim> = Api::namespaced(op.clone(), "default");
        let m = refused("the operator creates a claim in default", || {
            claims_default.create(&post, &claim)
        })
        .await?;
        ensure_names(&m, &["persistentvolumeclaims/escape", "default", CONFINEMENT])?;

        // Namespaces: only `cr-*` ones, and deleted only when they are its own.
        let op_namespaces: Api<Namespace> = Api::all(op.clone());
        let outside = unique_name("e2e-rbac");
        let outside_ns = Namespace {
            metadata: meta(&outside),
            ..Namespace::default()
        };
        let m = refused("the operator creates a namespace outside cr-*", || {
            op_namespaces.create(&post, &outside_ns)
        })
        .await?;
        ensure_names(&m, &[&format!("namespaces/{outside}"), CONFINEMENT])?;
        let namespaces: Api<Namespace> = Api::all(fx.client.clone());
        let unlabelled = unique_name("cr-rbac");
        namespaces
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: meta(&unlabelled),
                    ..Namespace::default()
                },
            )
            .await?;
        let checked = async {
            let m = refused("the operator deletes a namespace not its own", || {
                op_namespaces.delete(&unlabelled, &del)
            })
            .await?;
            ensure_names(
                &m,
                &[&format!("namespaces/{unlabelled}"), MANAGED, CONFINEMENT],
            )?;
            allowed("the operator deletes its workspace's namespace", || {
                op_namespaces.delete(&ns, &del)
            })
            .await?;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        let _ = namespaces
            .delete(&unlabelled, &DeleteParams::default())
            .await;
        checked?;

        // The vault: raw data is not the operator's to delete.
        vault_is_not_the_operators(&fx.client, &op).await?;

        // Volumes: deleted only once it labelled them its own.
        let volumes: Api<PersistentVolume> = Api::all(fx.client.clone());
        let pv_name = unique_name("e2e-rbac");
        let pv: PersistentVolume = from_json(json!({
            "metadata": {"name": pv_name, "labels": {E2E_LABEL: "true"}},
            "spec": {
                "capacity": {"storage": "1Mi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "e2e-rbac-unbindable",
                "hostPath": {"path": "/nonexistent"}
            }
        }))?;
        volumes.create(&PostParams::default(), &pv).await?;
        let op_volumes: Api<PersistentVolume> = Api::all(op.clone());
        let checked = refused("the operator deletes a volume not its own", || {
            op_volumes.delete(&pv_name, &del)
        })
        .await;
        let _ = volumes.delete(&pv_name, &DeleteParams::default()).await;
        ensure_names(
            &checked?,
            &[&format!("persistentvolumes/{pv_name}"), MANAGED, CONFINEMENT],
        )?;
        Ok(())
    })
    .await
}

/// A raw claim and a Job in the vault that are not the operator's: it may
/// not delete them; a claim labelled as its own it may.
async fn vault_is_not_the_operators(admin: &Client, op: &Client) -> Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), VAULT);
    let jobs: Api<Job> = Api::namespaced(admin.clone(), VAULT);
    let (raw, ours, job) = (
        unique_name("raw-rbac"),
        unique_name("prep-rbac"),
        unique_name("raw-rbac"),
    );
    let claim = |name: &str, labels: Value| -> Result<PersistentVolumeClaim> {
        from_json(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}
        }))
    };
    let result = async {
        let raw_claim = claim(&raw, json!({E2E_LABEL: "true"}))?;
        claims.create(&PostParams::default(), &raw_claim).await?;
        let our_claim = claim(
            &ours,
            json!({E2E_LABEL: "true", "app.kubernetes.io/managed-by": "cleanroom"}),
        )?;
        claims.create(&PostParams::default(), &our_claim).await?;
        let suspended: Job = from_json(json!({
            "metadata": {"name": job, "labels": {E2E_LABEL: "true"}},
            "spec": {"suspend": true, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": "registry.example.com/x:1"}]
            }}}
        }))?;
        jobs.create(&PostParams::default(), &suspended).await?;

        let del = dry_delete();
        let op_claims: Api<PersistentVolumeClaim> = Api::namespaced(op.clone(), VAULT);
        let op_jobs: Api<Job> = Api::namespaced(op.clone(), VAULT);
        let m = refused("the operator deletes a raw claim in the vault", || {
            op_claims.delete(&raw, &del)
        })
        .await?;
        ensure_names(
            &m,
            &[
                &format!("persistentvolumeclaims/{raw}"),
                VAULT,
                MANAGED,
                CONFINEMENT,
            ],
        )?;
        let m = refused(
            "the operator deletes a Job in the vault not its own",
            || op_jobs.delete(&job, &del),
        )
        .await?;
        ensure_names(&m, &[&format!("jobs/{job}"), VAULT, MANAGED, CONFINEMENT])?;
        allowed("the operator deletes its own claim in the vault", || {
            op_claims.delete(&ours, &del)
        })
        .await?;
        Ok(())
    }
    .await;
    let _ = jobs.delete(&job, &DeleteParams::background()).await;
    for name in [&raw, &ours] {
        let _ = claims.delete(name, &DeleteParams::default()).await;
    }
    result
}

/// A dry-run create of `object`, one of the seven kinds only the operator
/// may write in a workspace, in `ns`.
async fn create_dry(client: &Client, ns: &str, kind: &str, object: &Value) -> kube::Result<()> {
    async fn post<K>(client: &Client, ns: &str, object: &Value) -> kube::Result<()>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + DeserializeOwned,
        K::DynamicType: Default,
    {
        let k: K = serde_json::from_value(object.clone()).map_err(kube::Error::SerdeError)?;
        Api::<K>::namespaced(client.clone(), ns)
            .create(&dry_post(), &k)
            .await
            .map(|_| ())
    }
    match kind {
        "networkpolicies" => post::<NetworkPolicy>(client, ns, object).await,
        "roles" => post::<Role>(client, ns, object).await,
        "rolebindings" => post::<RoleBinding>(client, ns, object).await,
        "resourcequotas" => post::<ResourceQuota>(client, ns, object).await,
        "limitranges" => post::<LimitRange>(client, ns, object).await,
        "serviceaccounts" => post::<ServiceAccount>(client, ns, object).await,
        "persistentvolumeclaims" => post::<PersistentVolumeClaim>(client, ns, object).await,
        other => unreachable!("not one of the seven kinds: {other}"),
    }
}

#[tokio::test]
async fn nobody_but_the_operator_changes_a_workspace_not_even_a_cluster_admin() -> Result<()> {
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let ns = namespace_of(&name);
        // The test's own client: a cluster admin (system:masters).
        let admin = client().await?;
        let (post, del, pp) = (dry_post(), dry_delete(), dry_patch());

        // No foreign object of any of the seven kinds.
        let objects = [
            ("networkpolicies", json!({"metadata": {"name": "allow-all"},
                "spec": {"podSelector": {}, "egress": [{}], "ingress": [{}],
                         "policyTypes": ["Ingress", "Egress"]}})),
            ("rolebindings", json!({"metadata": {"name": "mallory"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": MEMBER_ROLE},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": MALLORY}]})),
            ("roles", json!({"metadata": {"name": "reader"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})),
            ("resourcequotas", json!({"metadata": {"name": "bigger"}, "spec": {"hard": {"cpu": "64"}}})),
            ("limitranges", json!({"metadata": {"name": "looser"},
                "spec": {"limits": [{"type": "Container", "max": {"cpu": "64"}}]}})),
            ("serviceaccounts", json!({"metadata": {"name": "intruder"}})),
            ("persistentvolumeclaims", json!({"metadata": {"name": "smuggled"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Mi"}}}})),
        ];
        for (kind, object) in &objects {
            let object_name = object["metadata"]["name"].as_str().unwrap_or_default();
            let m = refused(&format!("the admin creates {kind}/{object_name}"), || {
                create_dry(&admin, &ns, kind, object)
            })
            .await?;
            ensure_names(
                &m,
                &["create", &format!("{kind}/{object_name}"), &ns, "are the operator's alone", OBJECTS],
            )?;
        }
        let policies: Api<NetworkPolicy> = Api::namespaced(admin.clone(), &ns);
        let deny_all = policies
            .list(&ListParams::default())
            .await?
            .items
            .first()
            .map(|p| p.name_any())
            .context("no NetworkPolicy in the workspace")?;
        let m = refused("the admin deletes the deny-all policy", || {
            policies.delete(&deny_all, &del)
        })
        .await?;
        ensure_names(&m, &["delete", &format!("networkpolicies/{deny_all}"), &ns, OBJECTS])?;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
        let m = refused("the admin deletes the scratch claim", || {
            claims.delete("scratch", &del)
        })
        .await?;
        ensure_names(&m, &["delete", "persistentvolumeclaims/scratch", &ns, OBJECTS])?;

        // The namespace's labels and annotations, through any subresource.
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        let unlabel = Patch::Merge(json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}}));
        let m = refused("the admin removes the managed-by label", || {
            namespaces.patch(&ns, &pp, &unlabel)
        })
        .await?;
        ensure_names(&m, &[&format!("namespaces/{ns}"), "labels", NAMESPACES])?;
        let relax = Patch::Merge(json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}));
        let m = refused("the admin relaxes Pod Security", || {
            namespaces.patch(&ns, &pp, &relax)
        })
        .await?;
        ensure_names(&m, &[&format!("namespaces/{ns}"), "labels", NAMESPACES])?;
        let annotate = Patch::Merge(json!({"metadata": {"annotations": {"e2e.example/note": "x"}}}));
        let m = refused("the admin annotates the namespace", || {
            namespaces.patch(&ns, &pp, &annotate)
        })
        .await?;
        ensure_names(&m, &[&format!("namespaces/{ns}"), "annotations", NAMESPACES])?;
        let m = refused("the admin unlabels it through namespaces/status", || {
            namespaces.patch_status(&ns, &pp, &unlabel)
        })
        .await?;
        ensure_names(&m, &[&format!("namespaces/{ns}"), "labels", NAMESPACES])?;
        let current = namespaces.get(&ns).await?;
        let m = refused("the admin finalizes the namespace", || {
            namespaces.replace_subresource("finalize", &ns, &post, &current)
        })
        .await?;
        ensure_names(&m, &[&format!("namespaces/{ns}"), "finalize", NAMESPACES])?;
        // Deleting it is not refused (a dry run): teardown by hand stays possible.
        namespaces
            .delete(&ns, &del)
            .await
            .context("a dry-run delete of the workspace namespace was refused")?;

        // Status is the operator's word alone.
        let scenarios: Api<Scenario> = Api::all(admin.clone());
        let closed = Patch::Merge(json!({"status": {"phase": "Closed"}}));
        let m = refused("the admin writes a scenario's status", || {
            scenarios.patch_status(&name, &pp, &closed)
        })
        .await?;
        ensure_names(&m, &[&format!("scenarios/{name}"), STATUS])?;
        let authorizations: Api<Authorization> = Api::all(admin.clone());
        let zero = Patch::Merge(json!({"status": {"observedGeneration": 0}}));
        let m = refused("the admin writes an authorization's status", || {
            authorizations.patch_status(&authz, &pp, &zero)
        })
        .await?;
        ensure_names(&m, &[&format!("authorizations/{authz}"), STATUS])?;

        // Through all of that the workspace stayed as it was.
        fx.wait_scenario(&name, "still Ready", T, |s| has_condition(s, "Ready", true))
            .await?;
        Ok(())
    })
    .await
}
