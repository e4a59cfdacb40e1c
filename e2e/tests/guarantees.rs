//! What a hostile or careless cluster user would try against the guarantees
//! the operator makes, on the real control plane:
//!
//! 1. ending is final: once a scenario tears down, no change to it or to its
//!    authorization brings compute or access back;
//! 2. a namespace that was not made for a scenario is never adopted;
//! 3. no foreign object lives in a workspace: refused by admission, and
//!    removed (with a record) when something behind admission makes one;
//! 4. each scenario gets exactly its own data, however the names run together;
//! 5. status is the operator's alone, and a forged status never spares a wipe;
//! 6. security actions never wait on bookkeeping (an unwritable ledger);
//! 7. admission is sticky: a rejected scenario, fixed, does not take the
//!    place of one admitted after it.
//!
//! Some tests stop the shared operator or make the ledger unwritable for a
//! while; they take [`SHARED`] exclusively, the others share it.
//!
//! Needs the local control plane and the operator (`make e2e`).

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cleanroom::api::{Scenario, ScenarioPhase};
use cleanroom_e2e::harness::{meta, unique_name, wait_gone};
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};

/// Tests that stop the shared operator or make its ledger unwritable hold
/// this exclusively; every other test holds it shared, so that none of them
/// sees an operator that is (deliberately) not working.
static SHARED: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A control-plane controller: exempt from the workspace policies, as the
/// control plane's own work must be.
const CONTROLLER_USER: &str = "system:serviceaccount:kube-system:generic-garbage-collector";
/// Someone with cluster-admin rights who is not the operator.
const MALLORY: &str = "mallory@evil.example";

/// What the workspace-object policy's refusals say.
const OPERATORS_ALONE: &str = "are the operator's alone";

/// How long a security action may take while the ledger cannot be written.
const SECURITY_ACTION: Duration = Duration::from_secs(15);

/// A control-plane controller (behind admission for the workspace policies).
async fn as_controller() -> Result<Client> {
    client_as(
        CONTROLLER_USER,
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:masters",
        ],
    )
    .await
}

/// The Kubernetes error code of a failed call, if it came from the API server.
fn api_code(e: &anyhow::Error) -> Option<u16> {
    e.chain()
        .find_map(|c| match c.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        })
}

/// True if the API server refused the request (validation or admission).
fn refused(e: &anyhow::Error) -> bool {
    matches!(api_code(e), Some(400 | 403 | 422))
}

const LEDGER_HOLD: &str = "the audit ledger is held unwritable by the test";

/// Refuses every creation and change of the audit ledger's segments
/// (ConfigMaps `cleanroom-audit-*` in `cleanroom-system`): no record, hence
/// no status change, can be written. Returns once the API server applies it.
async fn hold_ledger(client: &Client) -> Result<Hold> {
    let hold = Hold::install(
        client,
        "e2e-ledger",
        json!({
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": AUDIT_NAMESPACE}
            },
            "resourceRules": [{
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["configmaps"]
            }]
        }),
        json!([{
            "name": "audit-segments",
            "expression": "object.metadata.name.startsWith('cleanroom-audit')"
        }]),
        LEDGER_HOLD,
    )
    .await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(as_operator().await?, AUDIT_NAMESPACE);
    let probe: ConfigMap = from_json(json!({
        "metadata": {"name": unique_name("cleanroom-audit-probe")}
    }))?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let started = Instant::now();
    loop {
        match config_maps.create(&dry_run, &probe).await {
            Err(kube::Error::Api(s)) if s.message.contains(LEDGER_HOLD) => return Ok(hold),
            other => {
                ensure!(
                    started.elapsed() < T,
                    "the hold on the ledger never took effect (last: {other:?})"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Readers.

/// Every ledger record (as JSON) of the object with `uid`, read straight
/// from the segments, so that actions this build does not know are seen too.
async fn raw_records(client: &Client, uid: &str) -> Result<Vec<Value>> {
    let segments = Api::<ConfigMap>::namespaced(client.clone(), AUDIT_NAMESPACE)
        .list(&ListParams::default())
        .await?;
    let mut records: Vec<(u64, Value)> = segments
        .items
        .into_iter()
        .filter(|cm| cm.name_any().starts_with("cleanroom-audit-"))
        .flat_map(|cm| cm.data.unwrap_or_default().into_values())
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .filter(|r| r["uid"].as_str() == Some(uid))
        .map(|r| (r["seq"].as_u64().unwrap_or_default(), r))
        .collect();
    records.sort_by_key(|(seq, _)| *seq);
    // A record held by a segment and by a batch not yet compacted away, once.
    records.dedup_by_key(|(seq, _)| *seq);
    Ok(records.into_iter().map(|(_, r)| r).collect())
}

/// Waits until the ledger holds a record of `uid` with `action` (and, if
/// given, a reason containing `reason`).
async fn wait_record(
    client: &Client,
    uid: &str,
    action: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> Result<Value> {
    let started = Instant::now();
    loop {
        let records = raw_records(client, uid).await?;
        if let Some(r) = records.iter().find(|r| {
            r["action"].as_str() == Some(action)
                && reason.is_none_or(|want| r["reason"].as_str().is_some_and(|g| g.contains(want)))
        }) {
            return Ok(r.clone());
        }
        if started.elapsed() > timeout {
            let actions: Vec<String> = records
                .iter()
                .map(|r| format!("{} ({})", r["action"], r["reason"]))
                .collect();
            bail!(
                "no {action} record{} for {uid} within {timeout:?}; its records: {actions:?}",
                reason.map(|r| format!(" naming {r}")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The scenario's generation.
fn generation(s: &Scenario) -> i64 {
    s.metadata.generation.unwrap_or_default()
}

/// Its status.observedGeneration.
fn observed(s: &Scenario) -> i64 {
    s.status
        .as_ref()
        .and_then(|st| st.observed_generation)
        .unwrap_or_default()
}

/// Waits until the operator has written the scenario's status for
/// `generation` (or a later one).
async fn wait_observed(fx: &Fixture, name: &str, generation: i64) -> Result<Scenario> {
    fx.wait_scenario(
        name,
        &format!("status.observedGeneration >= {generation}"),
        T,
        |s| observed(s) >= generation,
    )
    .await
}

/// Changes the scenario's spec in a way that matters to nothing but makes a
/// new generation: once its observedGeneration reaches it, the operator has
/// reconciled the scenario after everything the test did before the nudge.
/// `None` if the API server refuses any change to it.
async fn nudge(fx: &Fixture, name: &str) -> Result<Option<i64>> {
    match fx
        .patch_scenario(name, json!({"reason": unique_name("e2e nudge")}))
        .await
    {
        Ok(s) => Ok(Some(generation(&s))),
        Err(e) if refused(&e) => {
            eprintln!("{name}: the nudge was refused: {e:#}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// True if the object exists and is not being deleted.
fn live<K: Resource>(o: &Option<K>) -> bool {
    o.as_ref()
        .is_some_and(|o| o.meta().deletion_timestamp.is_none())
}

/// What of the workspace's compute and access exists in `ns`, not being deleted.
async fn compute_and_access(client: &Client, ns: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    if live(
        &Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt("workspace")
            .await?,
    ) {
        found.push("Deployment/workspace".to_string());
    }
    if live(
        &Api::<Job>::namespaced(client.clone(), ns)
            .get_opt("workspace")
            .await?,
    ) {
        found.push("Job/workspace".to_string());
    }
    if live(
        &Api::<RoleBinding>::namespaced(client.clone(), ns)
            .get_opt("workspace-members")
            .await?,
    ) {
        found.push("RoleBinding/workspace-members".to_string());
    }
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("cleanroom.io/component=workspace"))
        .await?;
    for p in pods.items {
        if p.metadata.deletion_timestamp.is_none() {
            found.push(format!("Pod/{}", p.name_any()));
        }
    }
    Ok(found)
}

/// Fails unless the scenario is still ending (TearingDown or Closed) with no
/// compute and no access in its namespace. When it fails, it removes the
/// compute that came back: a teardown that already recorded its wipe does
/// not stop compute again, and the pod would hold the claim (and the
/// fixture's cleanup) for ever.
async fn ensure_still_ended(fx: &Fixture, name: &str, after: &str) -> Result<()> {
    let result = still_ended(fx, name, after).await;
    if result.is_err() {
        stop_compute(fx, name).await;
    }
    result
}

/// Deletes the workspace's Deployment and Job (best effort): after a failed
/// assertion, so that a teardown that will not stop compute itself can
/// still finish and the fixture clean up.
async fn stop_compute(fx: &Fixture, name: &str) {
    let ns = namespace_of(name);
    let _ = Api::<Deployment>::namespaced(fx.client.clone(), &ns)
        .delete("workspace", &DeleteParams::background())
        .await;
    let _ = Api::<Job>::namespaced(fx.client.clone(), &ns)
        .delete("workspace", &DeleteParams::background())
        .await;
}

async fn still_ended(fx: &Fixture, name: &str, after: &str) -> Result<()> {
    let s = fx.scenarios().get(name).await?;
    let found = compute_and_access(&fx.client, &namespace_of(name)).await?;
    let ready = condition(&s, "Ready")
        .map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
        .unwrap_or_default();
    ensure!(
        matches!(
            phase(&s),
            Some(ScenarioPhase::TearingDown | ScenarioPhase::Closed)
        ),
        "{name}: after {after}, phase {:?} (Ready {ready}); back in its workspace: {found:?}",
        phase(&s)
    );
    ensure!(
        found.is_empty(),
        "{name}: after {after}, still {:?} but these came back: {found:?}",
        phase(&s)
    );
    Ok(())
}

/// Waits until the scenario's teardown is held: TearingDown, its scratch
/// wiped and attested, its compute and access gone (the claim cannot be
/// deleted).
async fn wait_held(fx: &Fixture, name: &str) -> Result<Scenario> {
    let s = fx
        .wait_scenario(name, "TearingDown with scratch attested", T, |s| {
            phase(s) == Some(ScenarioPhase::TearingDown)
                && s.status
                    .as_ref()
                    .is_some_and(|st| st.wipes.iter().any(|w| w.claim == "scratch"))
        })
        .await?;
    let found = compute_and_access(&fx.client, &namespace_of(name)).await?;
    ensure!(
        found.is_empty(),
        "{name}: held in teardown after its wipe, yet {found:?} exist"
    );
    Ok(s)
}

/// Fails unless the scenario says it ended for `reason`: Ready False with
/// it (while tearing down), or Expired or Revoked True with it.
fn ensure_ended_for(s: &Scenario, reason: &str) -> Result<()> {
    let conditions = s
        .status
        .as_ref()
        .map(|st| st.conditions.clone())
        .unwrap_or_default();
    ensure!(
        conditions.iter().any(|c| c.reason == reason
            && match c.type_.as_str() {
                "Ready" => c.status == "False",
                "Expired" | "Revoked" => c.status == "True",
                _ => false,
            }),
        "{}: no condition says it ended for {reason}: {:?}",
        s.name_any(),
        conditions
            .iter()
            .map(|c| format!("{} {} {}", c.type_, c.status, c.reason))
            .collect::<Vec<_>>()
    );
    Ok(())
}

/// Lifts the hold and waits for Closed; the namespace is gone.
async fn lift_and_close(fx: &Fixture, name: &str, hold: &Hold) -> Result<Scenario> {
    hold.lift().await?;
    let s = fx
        .wait_scenario(name, "phase Closed", T, |s| {
            phase(s) == Some(ScenarioPhase::Closed)
        })
        .await?;
    ensure_condition(&s, "Wiped", true, Some("WipeVerified"))?;
    ensure!(
        Api::<Namespace>::all(fx.client.clone())
            .get_opt(&namespace_of(name))
            .await?
            .is_none(),
        "{name} is Closed but its namespace exists"
    );
    Ok(s)
}

/// Runs `body` holding [`SHARED`] shared, in a fixture.
async fn shared<F, Fut>(body: F) -> Result<()>
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let _shared = SHARED.read().await;
    with_fixture(body).await
}

// ---------------------------------------------------------------------------
// 1. Ending is final.

#[tokio::test]
async fn raising_validuntil_after_expiry_brings_nothing_back() -> Result<()> {
    shared(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let hold = hold_claim_deletion(&fx.client, &namespace_of(&name)).await?;
        fx.patch_scenario(&name, json!({"validUntil": rfc3339(seconds_from_now(3)?)}))
            .await?;
        let held = wait_held(&fx, &name).await?;
        ensure_ended_for(&held, "ValidityEnded")?;

        let raise = json!({"validUntil": rfc3339(seconds_from_now(86400)?)});
        match fx.patch_scenario(&name, raise).await {
            Ok(s) => {
                wait_observed(&fx, &name, generation(&s)).await?;
            }
            Err(e) if refused(&e) => eprintln!("raising validUntil was refused: {e:#}"),
            Err(e) => return Err(e),
        }
        ensure_still_ended(&fx, &name, "raising its validUntil").await?;
        let s = lift_and_close(&fx, &name, &hold).await?;
        ensure_ended_for(&s, "ValidityEnded")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn raising_the_authorizations_validuntil_after_it_expired_brings_nothing_back() -> Result<()>
{
    shared(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let hold = hold_claim_deletion(&fx.client, &namespace_of(&name)).await?;
        fx.patch_authorization(&authz, json!({"validUntil": rfc3339(seconds_from_now(3)?)}))
            .await?;
        let held = wait_held(&fx, &name).await?;
        ensure_ended_for(&held, "AuthorizationExpired")?;

        let raise = json!({"validUntil": rfc3339(seconds_from_now(365 * 86400)?)});
        match fx.patch_authorization(&authz, raise).await {
            Ok(a) => {
                let want = a.metadata.generation.unwrap_or_default();
                fx.wait_for_authorization(&authz, "status.observedGeneration", |a| {
                    a.status
                        .as_ref()
                        .and_then(|s| s.observed_generation)
                        .is_some_and(|g| g >= want)
                })
                .await?;
                // The scenario reconciled after the raise: it read the
                // authorization as it is now.
                if let Some(g) = nudge(&fx, &name).await? {
                    wait_observed(&fx, &name, g).await?;
                }
            }
            Err(e) if refused(&e) => {
                eprintln!("raising the authorization's validUntil was refused: {e:#}")
            }
            Err(e) => return Err(e),
        }
        ensure_still_ended(&fx, &name, "raising its authorization's validUntil").await?;
        let s = lift_and_close(&fx, &name, &hold).await?;
        ensure_ended_for(&s, "AuthorizationExpired")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn recreating_a_deleted_authorization_brings_nothing_back() -> Result<()> {
    shared(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let hold = hold_claim_deletion(&fx.client, &namespace_of(&name)).await?;
        fx.authorizations()
            .delete(&authz, &DeleteParams::default())
            .await?;
        wait_gone(&fx.authorizations(), &authz, T).await?;
        // A deletion does not change the authorization's generation: make
        // sure the scenario is looked at now rather than at its next resync.
        nudge(&fx, &name).await?;
        let held = wait_held(&fx, &name).await?;
        ensure_ended_for(&held, "AuthorizationNotFound")?;

        // The same name again, in force for a year.
        let again = fx
            .create_authorization(&authz, authorization_spec(&[])?)
            .await?;
        let want = again.metadata.generation.unwrap_or(1);
        fx.wait_for_authorization(&authz, "status.observedGeneration", |a| {
            a.status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .is_some_and(|g| g >= want)
        })
        .await?;
        if let Some(g) = nudge(&fx, &name).await? {
            wait_observed(&fx, &name, g).await?;
        }
        ensure_still_ended(&fx, &name, "re-creating its authorization").await?;
        let s = lift_and_close(&fx, &name, &hold).await?;
        ensure_ended_for(&s, "AuthorizationNotFound")?;
        Ok(())
    })
    .await
}

/// Starts the operator again when dropped, so that a failing (or panicking)
/// test does not leave the cluster without one.
struct OperatorComesBack;

impl Drop for OperatorComesBack {
    fn drop(&mut self) {
        if let Err(e) = operator("start") {
            eprintln!("could not start the operator again: {e:#}");
        }
    }
}

#[tokio::test]
async fn raising_validuntil_while_the_operator_is_down_brings_nothing_back() -> Result<()> {
    let _alone = SHARED.write().await;
    let _comes_back = OperatorComesBack;
    operator("start")?;
    with_fixture(|fx| async move {
        let result = async {
            let authz = fx.authorization().await?;
            let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
            let hold = hold_claim_deletion(&fx.client, &namespace_of(&name)).await?;
            fx.patch_scenario(&name, json!({"validUntil": rfc3339(seconds_from_now(3)?)}))
                .await?;
            wait_held(&fx, &name).await?;
            operator("kill")?;
            let raised = fx
                .patch_scenario(
                    &name,
                    json!({"validUntil": rfc3339(seconds_from_now(86400)?)}),
                )
                .await;
            operator("start")?;
            match raised {
                Ok(s) => {
                    wait_observed(&fx, &name, generation(&s)).await?;
                }
                Err(e) if refused(&e) => eprintln!("raising validUntil was refused: {e:#}"),
                Err(e) => return Err(e),
            }
            ensure_still_ended(
                &fx,
                &name,
                "raising its validUntil while the operator was down",
            )
            .await?;
            lift_and_close(&fx, &name, &hold).await?;
            Ok(())
        }
        .await;
        if result.is_err() {
            // Before the fixture's cleanup, which needs the operator.
            let _ = operator("start");
        }
        result
    })
    .await
}

// ---------------------------------------------------------------------------
// 2. Namespaces are never adopted.

#[tokio::test]
async fn a_namespace_that_already_exists_is_never_adopted() -> Result<()> {
    let _shared = SHARED.read().await;
    let client = cleanroom_e2e::harness::client().await?;
    let name = unique_name("e2e-squat");
    let ns = namespace_of(&name);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let result = with_fixture(|fx| squatted_namespace(fx, name.clone())).await;
    // Whatever happened, the namespace is the test's to remove.
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    result
}

async fn squatted_namespace(fx: Fixture, name: String) -> Result<()> {
    let client = fx.client.clone();
    let ns = namespace_of(&name);
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(&ns),
                ..Namespace::default()
            },
        )
        .await
        .with_context(|| format!("creating {ns}"))?;
    let intruder: RoleBinding = from_json(json!({
        "metadata": {"name": "intruder"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}]
    }))?;
    let allow_all: NetworkPolicy = from_json(json!({
        "metadata": {"name": "allow-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}
    }))?;
    let notes: ConfigMap = from_json(json!({
        "metadata": {"name": "notes"},
        "data": {"plan.txt": "copy the register out through the open egress"}
    }))?;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    bindings.create(&pp, &intruder).await?;
    policies.create(&pp, &allow_all).await?;
    config_maps.create(&pp, &notes).await?;

    let authz = fx.authorization().await?;
    fx.create_scenario(&name, scenario_spec(&authz)).await?;
    // The operator's decision about it, whatever it is: refused, or a
    // workspace that runs (or ends). Passing phases do not count.
    let s = fx
        .wait_scenario(&name, "a settled phase", T, |s| {
            !matches!(
                phase(s),
                None | Some(
                    ScenarioPhase::Pending
                        | ScenarioPhase::Provisioning
                        | ScenarioPhase::PreparingData
                )
            )
        })
        .await?;
    // Every finding is collected, so that one run shows the whole story:
    // the decision, the namespace after it, and after the scenario goes.
    let mut problems = Vec::new();
    let ready = condition(&s, "Ready").cloned();
    if phase(&s) != Some(ScenarioPhase::Rejected) {
        problems.push(format!(
            "phase {:?} (Ready {:?}) with a namespace it did not make",
            phase(&s),
            ready.as_ref().map(|c| (&c.reason, &c.message))
        ));
    } else if let Err(e) = ensure_condition(&s, "Ready", false, Some("NamespaceNotOwned")) {
        problems.push(format!("{e:#}"));
    } else {
        let message = ready.map(|c| c.message).unwrap_or_default();
        if !message.contains(&ns) {
            problems.push(format!("the Ready message does not name {ns}: {message}"));
        }
    }
    if let Err(e) = ensure_untouched(&client, &ns, "after the decision").await {
        problems.push(format!("{e:#}"));
    }

    fx.scenarios()
        .delete(&name, &DeleteParams::default())
        .await?;
    wait_gone(&fx.scenarios(), &name, T).await?;
    if let Err(e) = ensure_untouched(&client, &ns, "after the scenario was deleted").await {
        problems.push(format!("{e:#}"));
    }
    ensure!(problems.is_empty(), "{name}:\n  {}", problems.join("\n  "));
    Ok(())
}

/// Fails unless `ns` still holds exactly what the test put there and nothing
/// of a workspace.
async fn ensure_untouched(client: &Client, ns: &str, when: &str) -> Result<()> {
    let namespace = Api::<Namespace>::all(client.clone())
        .get_opt(ns)
        .await?
        .with_context(|| format!("{when}: {ns} is gone"))?;
    let mut problems = Vec::new();
    if namespace.metadata.deletion_timestamp.is_some() {
        problems.push(format!("{ns} is being deleted"));
    }
    if let Some(owners) = namespace
        .metadata
        .owner_references
        .as_ref()
        .filter(|o| !o.is_empty())
    {
        let owners: Vec<String> = owners
            .iter()
            .map(|o| format!("{}/{}", o.kind, o.name))
            .collect();
        problems.push(format!("{ns} got owners {owners:?}"));
    }
    if namespace
        .labels()
        .contains_key("app.kubernetes.io/managed-by")
    {
        problems.push(format!("{ns} got the operator's labels"));
    }
    let mut written = Vec::new();
    let np: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    if np.get_opt("deny-all").await?.is_some() {
        written.push("NetworkPolicy/deny-all".to_string());
    }
    if Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt("workspace")
        .await?
        .is_some()
    {
        written.push("Deployment/workspace".to_string());
    }
    for q in Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
    {
        written.push(format!("ResourceQuota/{}", q.name_any()));
    }
    let rb: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    if rb.get_opt("workspace-members").await?.is_some() {
        written.push("RoleBinding/workspace-members".to_string());
    }
    if Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get_opt("workspace")
        .await?
        .is_some()
    {
        written.push("ServiceAccount/workspace".to_string());
    }
    for c in Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
    {
        written.push(format!("PersistentVolumeClaim/{}", c.name_any()));
    }
    if !written.is_empty() {
        problems.push(format!("the operator wrote {written:?} into it"));
    }
    if rb.get_opt("intruder").await?.is_none() {
        problems.push("the intruder binding is gone".to_string());
    }
    if np.get_opt("allow-all").await?.is_none() {
        problems.push("the allow-all policy is gone".to_string());
    }
    let notes = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt("notes")
        .await?;
    match notes
        .and_then(|n| n.data)
        .and_then(|d| d.get("plan.txt").cloned())
    {
        Some(t) if t == "copy the register out through the open egress" => {}
        other => problems.push(format!("the ConfigMap changed or went: {other:?}")),
    }
    ensure!(
        problems.is_empty(),
        "{when}, in {ns}: {}",
        problems.join("; ")
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. No foreign objects in a live workspace.

#[tokio::test]
async fn foreign_objects_are_refused_in_a_workspace_by_admission() -> Result<()> {
    shared(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let ns = namespace_of(&name);
        let mallory = client_as(MALLORY, &["system:masters"]).await?;

        let objects: Vec<(ApiResource, Value)> = vec![
            (
                ApiResource::erase::<NetworkPolicy>(&()),
                json!({"metadata": {"name": "allow-all"},
                       "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}}),
            ),
            (
                ApiResource::erase::<RoleBinding>(&()),
                json!({"metadata": {"name": "intruder"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                       "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": MALLORY}]}),
            ),
            (
                ApiResource::erase::<ServiceAccount>(&()),
                json!({"metadata": {"name": "intruder"}}),
            ),
            (
                ApiResource::erase::<ResourceQuota>(&()),
                json!({"metadata": {"name": "intruder"}, "spec": {"hard": {"pods": "100"}}}),
            ),
            (
                ApiResource::erase::<LimitRange>(&()),
                json!({"metadata": {"name": "intruder"},
                       "spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {"storage": "1Ti"}}]}}),
            ),
            (
                ApiResource::erase::<Role>(&()),
                json!({"metadata": {"name": "intruder"},
                       "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            ),
            (
                ApiResource::erase::<PersistentVolumeClaim>(&()),
                json!({"metadata": {"name": "intruder"},
                       "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}),
            ),
        ];
        let mut problems = Vec::new();
        for (ar, body) in objects {
            let api: Api<DynamicObject> = Api::namespaced_with(mallory.clone(), &ns, &ar);
            let mut object: DynamicObject = from_json(body)?;
            object.types = Some(kube::api::TypeMeta {
                api_version: ar.api_version.clone(),
                kind: ar.kind.clone(),
            });
            let what = format!("{}/{}", ar.kind, object.name_any());
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => {
                    problems.push(format!("{what} was created in {ns}"));
                    // Out of the way of the teardown (a claim would be wiped).
                    let admin: Api<DynamicObject> =
                        Api::namespaced_with(fx.client.clone(), &ns, &ar);
                    let _ = admin.delete(&object.name_any(), &DeleteParams::default()).await;
                }
                Err(e) => {
                    let message = e.to_string();
                    // Claims may still be refused by their own older policy.
                    let policy_named = message.contains("cleanroom-workspace-objects")
                        || (ar.kind == "PersistentVolumeClaim"
                            && message.contains("cleanroom-workspace-claims"));
                    if !(message.contains(OPERATORS_ALONE) && policy_named) {
                        problems.push(format!(
                            "{what}: refused, but not by the workspace-object policy: {message}"
                        ));
                    }
                }
            }
        }

        // The label that puts the namespace under the policies stays.
        let namespaces: Api<Namespace> = Api::all(mallory.clone());
        let unlabel = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}});
        match namespaces
            .patch(&ns, &PatchParams::default(), &Patch::Merge(&unlabel))
            .await
        {
            Ok(_) => {
                problems.push(format!("the label app.kubernetes.io/managed-by of {ns} was removed"));
                let relabel =
                    json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "cleanroom"}}});
                Api::<Namespace>::all(fx.client.clone())
                    .patch(&ns, &PatchParams::default(), &Patch::Merge(&relabel))
                    .await?;
            }
            Err(e) => {
                let message = e.to_string();
                if !message.contains("cleanroom-workspace-namespaces") {
                    problems.push(format!(
                        "removing the namespace's label: refused, but not by the namespace \
                         policy: {message}"
                    ));
                }
            }
        }
        ensure!(
            problems.is_empty(),
            "{} of 8 hostile changes got through:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn foreign_objects_behind_admission_are_removed_and_recorded() -> Result<()> {
    shared(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let name = s.name_any();
        let uid = s.uid().context("no uid")?;
        let ns = namespace_of(&name);
        // The control plane's own `default` ServiceAccount is not foreign.
        ensure_condition(&s, "Isolated", true, None)?;

        let controller = as_controller().await?;
        let allow_all: NetworkPolicy = from_json(json!({
            "metadata": {"name": "allow-all"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}
        }))?;
        let intruder: RoleBinding = from_json(json!({
            "metadata": {"name": "intruder"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": MALLORY}]
        }))?;
        let policies: Api<NetworkPolicy> = Api::namespaced(controller.clone(), &ns);
        let bindings: Api<RoleBinding> = Api::namespaced(controller.clone(), &ns);
        policies
            .create(&PostParams::default(), &allow_all)
            .await
            .context("creating NetworkPolicy allow-all as a control-plane controller")?;
        bindings
            .create(&PostParams::default(), &intruder)
            .await
            .context("creating RoleBinding intruder as a control-plane controller")?;

        // Both go; meanwhile the scenario may be seen not Isolated.
        let started = Instant::now();
        let mut seen_breach = None;
        loop {
            let s = fx.scenarios().get(&name).await?;
            if let Some(c) = condition(&s, "Isolated").filter(|c| c.status == "False") {
                seen_breach.get_or_insert((c.reason.clone(), c.message.clone()));
            }
            let policy_left = live(&policies.get_opt("allow-all").await?);
            let binding_left = live(&bindings.get_opt("intruder").await?);
            if !policy_left && !binding_left {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "30 s after they were made, still in {ns}: {}{}",
                if policy_left { "NetworkPolicy/allow-all " } else { "" },
                if binding_left { "RoleBinding/intruder" } else { "" }
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "foreign objects removed after {:?}; Isolated=False seen: {seen_breach:?}",
            started.elapsed()
        );
        // Each object may be removed by its own pass: the condition names
        // whichever one the pass seen here removed.
        if let Some((reason, message)) = &seen_breach {
            ensure!(
                reason == "ForeignObject"
                    && (message.contains("NetworkPolicy/allow-all")
                        || message.contains("RoleBinding/intruder")),
                "Isolated was False with {reason}: {message}"
            );
        }

        // Recorded: one ledger record per object, and an Event on the Scenario.
        for object in ["NetworkPolicy/allow-all", "RoleBinding/intruder"] {
            wait_record(
                &fx.client,
                &uid,
                "isolation-breach",
                Some(object),
                Duration::from_secs(15),
            )
            .await?;
        }
        let events: Api<Event> = Api::all(fx.client.clone());
        let on_scenario = ListParams::default().fields(&format!("involvedObject.name={name}"));
        let started = Instant::now();
        loop {
            let found = events.list(&on_scenario).await?.items.into_iter().any(|e| {
                e.reason.as_deref() == Some("IsolationBreach")
                    && e.involved_object.uid.as_deref() == Some(uid.as_str())
            });
            if found {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(15),
                "no Event IsolationBreach on Scenario {name}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let s = fx
            .wait_scenario(&name, "Isolated=True again", Duration::from_secs(30), |s| {
                has_condition(s, "Isolated", true)
            })
            .await?;
        ensure!(
            phase(&s) == Some(ScenarioPhase::Ready),
            "phase {:?} after the breach was repaired",
            phase(&s)
        );
        // What the operator and the control plane made is still there.
        ensure!(
            Api::<NetworkPolicy>::namespaced(fx.client.clone(), &ns)
                .get_opt("deny-all")
                .await?
                .is_some(),
            "deny-all is gone"
        );
        ensure!(
            Api::<ServiceAccount>::namespaced(fx.client.clone(), &ns)
                .get_opt("default")
                .await?
                .is_some(),
            "the default ServiceAccount was removed"
        );
        let breaches: Vec<Value> = raw_records(&fx.client, &uid)
            .await?
            .into_iter()
            .filter(|r| r["action"] == "isolation-breach")
            .collect();
        ensure!(
            !breaches.iter().any(|r| r["reason"]
                .as_str()
                .is_some_and(|t| t.contains("ServiceAccount/default"))),
            "the default ServiceAccount was counted as a breach: {breaches:?}"
        );
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 4. Each scenario gets exactly its own data.

/// The header and the first `n` rows of the population register.
fn first_rows(n: usize) -> String {
    POPULATION_CSV
        .lines()
        .take(n + 1)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test]
async fn scenarios_whose_names_run_together_each_get_their_own_data() -> Result<()> {
    shared(|fx| async move {
        // prep-<u>-b-<v> for both (<u>-b, <v>) and (<u>, b-<v>).
        let u = unique_name("e2e");
        let v = unique_name("ds");
        let (first, second) = (format!("{u}-b"), u.clone());
        let (first_ds, second_ds) = (v.clone(), format!("b-{v}"));
        let (first_rows_n, second_rows_n) = (5usize, 3usize);
        let first_csv = first_rows(first_rows_n);
        let second_csv = first_rows(second_rows_n);
        let first_raw = unique_name("raw");
        let second_raw = unique_name("raw");
        fx.create_raw_claim(&first_raw, &[(POPULATION_FILE, first_csv.as_bytes())])
            .await?;
        fx.create_raw_claim(&second_raw, &[(POPULATION_FILE, second_csv.as_bytes())])
            .await?;
        fx.create_dataset(&first_ds, population_dataset(&first_raw))
            .await?;
        fx.create_dataset(&second_ds, population_dataset(&second_raw))
            .await?;
        let authz = unique_name("e2e-authz");
        fx.create_authorization(&authz, authorization_spec(&[&first_ds, &second_ds])?)
            .await?;
        fx.create_scenario(&first, data_scenario(&authz, &first_ds))
            .await?;
        fx.create_scenario(&second, data_scenario(&authz, &second_ds))
            .await?;

        let cases = [
            (&first, &first_ds, first_rows_n, &first_csv),
            (&second, &second_ds, second_rows_n, &second_csv),
        ];
        let mut volumes = Vec::new();
        for (name, dataset, n, csv) in cases {
            let s = fx
                .wait_scenario(name, "Ready=True", T, |s| has_condition(s, "Ready", true))
                .await?;
            let data = s.status.map(|st| st.data).unwrap_or_default();
            ensure!(
                data.len() == 1 && &data[0].dataset == dataset,
                "{name}: status.data {data:?}, expected one record for {dataset}"
            );
            ensure!(
                data[0].rows_in == n as i64 && data[0].rows_out == n as i64,
                "{name}: prepared {} rows in, {} out; its dataset {dataset} has {n}",
                data[0].rows_in,
                data[0].rows_out
            );
            let (pv, text) = prepared_file(&fx.client, name, dataset).await?;
            ensure!(
                data[0].volume == pv.name_any(),
                "{name}: status names volume {}, its claim is bound to {}",
                data[0].volume,
                pv.name_any()
            );
            let raw = rows(csv);
            let out = rows(&text);
            ensure!(
                out.len() == raw.len(),
                "{name}: the mounted file has {} rows, its dataset {n}",
                out.len().saturating_sub(1)
            );
            for (i, (r, o)) in raw[1..].iter().zip(&out[1..]).enumerate() {
                ensure!(
                    o.get(2) == r.get(4),
                    "{name}: row {} has district {:?}, its raw row {:?}",
                    i + 2,
                    o.get(2),
                    r.get(4)
                );
            }
            volumes.push(pv.name_any());
        }
        ensure!(
            volumes[0] != volumes[1],
            "{first} and {second} were given the same volume {}",
            volumes[0]
        );
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 5. Status is the operator's alone, and never the only evidence.

/// Tries a merge patch of `status` on the object through `api`; if it was
/// accepted, puts `restore` back (as the admin) and returns the problem.
async fn forge_status<K>(
    api: &Api<K>,
    admin: &Api<K>,
    name: &str,
    forged: Value,
    restore: Value,
    who: &str,
) -> Result<Option<String>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let pp = PatchParams::default();
    match api.patch_status(name, &pp, &Patch::Merge(&forged)).await {
        Ok(_) => {
            admin
                .patch_status(name, &pp, &Patch::Merge(&restore))
                .await
                .context("putting the status back")?;
            Ok(Some(format!("{who} wrote {forged} on {name}")))
        }
        Err(e) => {
            let message = e.to_string();
            Ok((!message.contains("cleanroom-status")).then(|| {
                format!("{who}: refused, but not by the policy cleanroom-status: {message}")
            }))
        }
    }
}

#[tokio::test]
async fn status_is_refused_to_anyone_but_the_operator() -> Result<()> {
    shared(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let name = s.name_any();
        let authz_phase = fx
            .authorizations()
            .get(&authz)
            .await?
            .status
            .and_then(|st| st.phase)
            .context("authorization without a phase")?;
        let member = client_as(ALICE, &["system:masters"]).await?;
        let mut problems = Vec::new();
        for (who, client) in [("the admin", fx.client.clone()), ("a member", member)] {
            problems.extend(
                forge_status(
                    &Api::<Scenario>::all(client.clone()),
                    &fx.scenarios(),
                    &name,
                    json!({"status": {"phase": "Closed"}}),
                    json!({"status": {"phase": "Ready"}}),
                    who,
                )
                .await?,
            );
            problems.extend(
                forge_status(
                    &Api::<cleanroom::api::Authorization>::all(client),
                    &fx.authorizations(),
                    &authz,
                    json!({"status": {"phase": "Revoked"}}),
                    json!({"status": {"phase": authz_phase}}),
                    who,
                )
                .await?,
            );
        }
        ensure!(
            problems.is_empty(),
            "status written by others than the operator:\n  {}",
            problems.join("\n  ")
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_forged_wipe_attestation_does_not_spare_the_scratch_volume() -> Result<()> {
    shared(|fx| async move {
        let authz = fx.authorization().await?;
        let name = fx.ready_scenario(&authz, |_| {}).await?.name_any();
        let pv = scratch_volume(&fx.client, &name).await?;
        let content = vec![b'r'; 4096];
        write_as_workspace(&workspace_owned_dir(&pv)?, "results.csv", &content)?;

        // Behind admission, as the operator itself: "already wiped, nothing there".
        let forged = json!({"status": {"wipes": [{
            "volume": pv.name_any(),
            "claim": "scratch",
            "bytes": 0,
            "files": 0,
            "digest": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "completedAt": rfc3339(seconds_from_now(0)?)
        }]}});
        Api::<Scenario>::all(as_operator().await?)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&forged))
            .await
            .context("forging status.wipes as the operator's identity")?;

        fx.patch_scenario(
            &name,
            json!({"state": "Revoked", "reason": "forged attestation drill"}),
        )
        .await?;
        let result = real_wipe_before_claim_goes(&fx, &name, content.len() as i64).await;
        if result.is_err() {
            stop_compute(&fx, &name).await;
        }
        result
    })
    .await
}

/// Follows the teardown of `name`: its scratch claim may only go once an
/// attestation of the `bytes` written (one file) is recorded; then Closed.
async fn real_wipe_before_claim_goes(fx: &Fixture, name: &str, bytes: i64) -> Result<()> {
    let real = |s: &Scenario| {
        s.status.as_ref().is_some_and(|st| {
            st.wipes
                .iter()
                .any(|w| w.claim == "scratch" && w.files == 1 && w.bytes == bytes)
        })
    };
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(fx.client.clone(), &namespace_of(name));
    let started = Instant::now();
    loop {
        // The claim first: if it is seen going, the scenario read after it
        // must already hold the real attestation.
        let going = claims
            .get_opt("scratch")
            .await?
            .is_none_or(|c| c.metadata.deletion_timestamp.is_some());
        let s = fx.scenarios().get(name).await?;
        if real(&s) {
            break;
        }
        let wipes = s.status.map(|st| st.wipes).unwrap_or_default();
        ensure!(
            !going,
            "{name}: the scratch claim is deleted without a wipe of the 1 file of {bytes} bytes \
             on it; the record holds {wipes:?}"
        );
        ensure!(
            started.elapsed() < T,
            "{name}: no attestation of the 1 file of {bytes} bytes within {T:?}; the record \
             holds {wipes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = fx
        .wait_scenario(name, "phase Closed", T, |s| {
            phase(s) == Some(ScenarioPhase::Closed)
        })
        .await?;
    ensure!(
        real(&s),
        "{name}: the real attestation is gone from the record"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. Security actions never wait on bookkeeping.

/// Waits up to [`SECURITY_ACTION`] for `done` (checked against the
/// workspace), failing with what is left.
async fn within_security_deadline(
    fx: &Fixture,
    name: &str,
    what: &str,
    started: Instant,
    done: impl Fn(&[String], Option<i32>) -> bool,
) -> Result<Duration> {
    let ns = namespace_of(name);
    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), &ns);
    loop {
        let left = compute_and_access(&fx.client, &ns).await?;
        let replicas = deployments
            .get_opt("workspace")
            .await?
            .filter(|d| d.metadata.deletion_timestamp.is_none())
            .and_then(|d| d.spec.replicas);
        if done(&left, replicas) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > SECURITY_ACTION {
            let s = fx.scenarios().get(name).await?;
            bail!(
                "{name}: {what} not done {SECURITY_ACTION:?} after it was asked for while the \
                 ledger is unwritable: still {left:?}, replicas {replicas:?}, phase {:?}",
                phase(&s)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lifts the hold on the ledger, then waits for what was held back: the
/// scenario reaches `phase` and the ledger has its `action` record.
async fn records_follow(
    fx: &Fixture,
    ledger: Hold,
    name: &str,
    uid: &str,
    phase_after: ScenarioPhase,
    action: &str,
) -> Result<()> {
    ledger.lift().await?;
    fx.wait_scenario(name, &format!("phase {phase_after:?}"), T, |s| {
        phase(s) == Some(phase_after)
    })
    .await?;
    wait_record(&fx.client, uid, action, None, Duration::from_secs(15)).await?;
    Ok(())
}

#[tokio::test]
async fn revocation_stops_compute_while_the_ledger_is_unwritable() -> Result<()> {
    let _alone = SHARED.write().await;
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let (name, uid) = (s.name_any(), s.uid().context("no uid")?);
        let ledger = hold_ledger(&fx.client).await?;
        let started = Instant::now();
        fx.patch_scenario(
            &name,
            json!({"state": "Revoked", "reason": "breach while the ledger is down"}),
        )
        .await?;
        let took =
            within_security_deadline(&fx, &name, "revocation", started, |left, _| left.is_empty())
                .await?;
        eprintln!("revocation with the ledger unwritable: compute and access gone after {took:?}");
        records_follow(&fx, ledger, &name, &uid, ScenarioPhase::Closed, "revoked").await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn suspension_seals_while_the_ledger_is_unwritable() -> Result<()> {
    let _alone = SHARED.write().await;
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let (name, uid) = (s.name_any(), s.uid().context("no uid")?);
        let ledger = hold_ledger(&fx.client).await?;
        let started = Instant::now();
        fx.patch_scenario(
            &name,
            json!({"state": "Suspended", "reason": "incident while the ledger is down"}),
        )
        .await?;
        let took = within_security_deadline(&fx, &name, "the seal", started, |left, replicas| {
            replicas == Some(0) && !left.iter().any(|o| o.starts_with("RoleBinding/"))
        })
        .await?;
        eprintln!("suspension with the ledger unwritable: sealed after {took:?}");
        records_follow(
            &fx,
            ledger,
            &name,
            &uid,
            ScenarioPhase::Suspended,
            "suspended",
        )
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn expiry_stops_compute_while_the_ledger_is_unwritable() -> Result<()> {
    let _alone = SHARED.write().await;
    with_fixture(|fx| async move {
        let authz = fx.authorization().await?;
        let s = fx.ready_scenario(&authz, |_| {}).await?;
        let (name, uid) = (s.name_any(), s.uid().context("no uid")?);
        let ledger = hold_ledger(&fx.client).await?;
        let valid_until = seconds_from_now(3)?;
        fx.patch_scenario(&name, json!({"validUntil": rfc3339(valid_until)}))
            .await?;
        let wait = valid_until
            .duration_since(k8s_openapi::jiff::Timestamp::now())
            .as_millis()
            .max(0);
        let started = Instant::now() + Duration::from_millis(u64::try_from(wait).unwrap_or(0));
        // Compute runs until the deadline.
        while Instant::now() < started {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took =
            within_security_deadline(&fx, &name, "expiry", started, |left, _| left.is_empty())
                .await?;
        eprintln!("expiry with the ledger unwritable: compute and access gone {took:?} after it");
        records_follow(&fx, ledger, &name, &uid, ScenarioPhase::Closed, "expired").await?;
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------
// 7. Admission is sticky.

#[tokio::test]
async fn fixing_a_rejected_scenario_does_not_take_an_admitted_ones_place() -> Result<()> {
    shared(|fx| async move {
        let authz = unique_name("e2e-authz");
        let mut spec = authorization_spec(&[])?;
        spec["quota"]["scenarios"] = json!(1);
        fx.create_authorization(&authz, spec).await?;
        // Named so that A comes first even within one second of B.
        let base = unique_name("e2e");
        let (a, b) = (format!("{base}-a"), format!("{base}-b"));

        let mut bad = scenario_spec(&authz);
        bad["members"]["users"] = json!([ALICE, MALLORY]);
        fx.create_scenario(&a, bad).await?;
        let rejected = fx
            .wait_scenario(&a, "phase Rejected", T, |s| {
                phase(s) == Some(ScenarioPhase::Rejected)
            })
            .await?;
        ensure_condition(&rejected, "Ready", false, Some("MemberNotAuthorized"))?;

        fx.create_scenario(&b, scenario_spec(&authz)).await?;
        fx.wait_scenario(&b, "Ready=True", T, |s| has_condition(s, "Ready", true))
            .await?;

        // A is fixed: it is a valid scenario now, but B holds the only place.
        let fixed = fx
            .patch_scenario(&a, json!({"members": {"users": [ALICE]}}))
            .await?;
        let s = wait_observed(&fx, &a, generation(&fixed)).await?;
        let ready = condition(&s, "Ready").cloned();
        ensure!(
            phase(&s) == Some(ScenarioPhase::Rejected),
            "{a}: phase {:?} (Ready {:?}) after its fix, while {b} holds the only place",
            phase(&s),
            ready.as_ref().map(|c| (&c.reason, &c.message))
        );
        ensure_condition(&s, "Ready", false, Some("ScenarioLimitReached"))?;
        ensure!(
            Api::<Deployment>::namespaced(fx.client.clone(), &namespace_of(&a))
                .get_opt("workspace")
                .await?
                .is_none(),
            "{a} got compute"
        );

        // B, looked at again after A's fix, runs on untouched.
        if let Some(g) = nudge(&fx, &b).await? {
            wait_observed(&fx, &b, g).await?;
        }
        let s = fx.scenarios().get(&b).await?;
        ensure!(
            phase(&s) == Some(ScenarioPhase::Ready) && has_condition(&s, "Ready", true),
            "{b}: phase {:?} after {a} was fixed",
            phase(&s)
        );
        let ns = namespace_of(&b);
        let replicas = Api::<Deployment>::namespaced(fx.client.clone(), &ns)
            .get_opt("workspace")
            .await?
            .and_then(|d| d.spec.replicas);
        ensure!(
            replicas == Some(1),
            "{b}: workspace replicas {replicas:?} after {a} was fixed"
        );
        ensure!(
            Api::<RoleBinding>::namespaced(fx.client.clone(), &ns)
                .get_opt("workspace-members")
                .await?
                .is_some(),
            "{b}: the members' binding is gone after {a} was fixed"
        );
        Ok(())
    })
    .await
}
