//! What the operator's end-to-end tests share:
//! valid Authorization and Scenario specs to start from, a [`Fixture`] that
//! remembers what a test created, dumps it when the test fails and deletes it
//! either way ([`with_fixture`]), and small readers of a scenario's status.
//!
//! Needs the local control plane (`make cluster-up`) and the operator beside
//! it (`e2e/scripts/operator.sh start`, or `make e2e`).
//!
//! Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod airlock;
pub mod import;

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use cleanroom::api::{Authorization, Condition, Dataset, Scenario, ScenarioPhase};
use cleanroom_e2e::harness::{
    E2E_LABEL, client, dump_namespace, log_tails, meta, run_kubectl, unique_name, wait_for,
};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// A unified social credit code whose check character is right (GB 32100-2015).
pub const CREDIT_CODE: &str = "91350100M000100Y43";
/// Uid and gid of every workspace and agent process.
pub const WORKSPACE_UID: u32 = 65532;
/// The one person every test authorization names.
pub const ALICE: &str = "alice@acme.example";
/// Generous bound for anything that is not about a deadline.
pub const T: Duration = Duration::from_secs(90);
/// The finalizer that holds a Scenario until its workspace is wiped and gone.
pub const FINALIZER: &str = "cleanroom.io/teardown";
/// The namespace of raw data and the Jobs that read it.
pub const VAULT: &str = "cleanroom-vault";

/// The repository root (the e2e crate's parent).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `e2e/scripts/operator.sh <verb>` (start, stop, kill, restart).
pub fn operator(verb: &str) -> Result<()> {
    let script = repo_root().join("e2e/scripts/operator.sh");
    let out = std::process::Command::new(&script)
        .arg(verb)
        .output()
        .with_context(|| format!("running {} {verb}", script.display()))?;
    ensure!(
        out.status.success(),
        "operator.sh {verb} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// RFC 3339 at whole seconds, as the API types write times.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The whole second `seconds` from now (negative: in the past).
pub fn seconds_from_now(seconds: i64) -> Result<Timestamp> {
    Ok(Timestamp::from_second(
        Timestamp::now().as_second() + seconds,
    )?)
}

const DAY: i64 = 24 * 3600;

/// A valid Authorization spec: in force since yesterday for a year, quota to
/// spare, `datasets` as its ceiling and [`ALICE`] as its only person.
pub fn authorization_spec(datasets: &[&str]) -> Result<Value> {
    Ok(json!({
        "operator": {"name": "Acme Data Operations Co., Ltd.", "creditCode": CREDIT_CODE},
        "agreementId": "FZ-SJJ-E2E-001",
        "validFrom": rfc3339(seconds_from_now(-DAY)?),
        "validUntil": rfc3339(seconds_from_now(365 * DAY)?),
        "datasets": datasets,
        "members": {"users": [ALICE]},
        "quota": {"cpu": "16", "memory": "64Gi", "storage": "100Gi", "scenarios": 10},
    }))
}

/// A valid Scenario spec under `authorization`: a small long-running
/// workspace on no dataset, entered by [`ALICE`].
pub fn scenario_spec(authorization: &str) -> Value {
    json!({
        "authorization": authorization,
        "purpose": "end-to-end test of a workspace's life",
        "workspace": {
            "image": "registry.example.com/acme/notebook:1.4",
            "command": ["sleep", "infinity"],
            "resources": {"cpu": "500m", "memory": "256Mi"},
            "scratch": "64Mi",
            "mode": "Service"
        },
        "members": {"users": [ALICE]}
    })
}

/// A Dataset spec with two columns, `district` and `income`.
pub fn dataset_spec() -> Value {
    json!({
        "provider": "Municipal Statistics Bureau",
        "classification": "General",
        "format": "CSV",
        "source": {"claimName": "raw-e2e", "path": "e2e/2026.csv"},
        "columns": [
            {
                "name": "district",
                "type": "string",
                "sensitivity": "QuasiIdentifier",
                "rule": {"kind": "keep"}
            },
            {
                "name": "income",
                "type": "decimal",
                "sensitivity": "None",
                "rule": {"kind": "noise", "bound": 100.0}
            }
        ]
    })
}

/// The synthetic population register (see `e2e/fixtures/README.md`).
pub const POPULATION_CSV: &str = include_str!("../../fixtures/population-2024.csv");
/// Where a raw claim holds it, as the Dataset says.
pub const POPULATION_FILE: &str = "population/2024.csv";

/// The population register's columns, as the worked example declares them.
pub fn population_dataset(claim: &str) -> Value {
    json!({
        "provider": "Municipal Public Security Bureau",
        "classification": "Important",
        "format": "CSV",
        "source": {"claimName": claim, "path": POPULATION_FILE},
        "columns": [
            {"name": "resident_id", "type": "string", "sensitivity": "ResidentId", "rule": {"kind": "hash"}},
            {"name": "name", "type": "string", "sensitivity": "Name", "rule": {"kind": "redact"}},
            {"name": "mobile", "type": "string", "sensitivity": "Mobile", "rule": {"kind": "mask", "keepFirst": 3, "keepLast": 4}},
            {"name": "birth_date", "type": "date", "sensitivity": "QuasiIdentifier", "rule": {"kind": "generalize", "truncate": "month"}},
            {"name": "district", "type": "string", "sensitivity": "QuasiIdentifier", "rule": {"kind": "keep"}},
            {"name": "income", "type": "decimal", "sensitivity": "None", "rule": {"kind": "noise", "bound": 100.0}}
        ]
    })
}

/// A scenario on the dataset: identity hashed, mobile masked, district in
/// clear; no name, no birth date (minimum necessary).
pub fn data_scenario(authorization: &str, dataset: &str) -> Value {
    let mut spec = scenario_spec(authorization);
    spec["data"] = json!([{
        "dataset": dataset,
        "columns": ["resident_id", "mobile", "district"],
    }]);
    spec
}

/// The workspace namespace of a scenario.
pub fn namespace_of(scenario: &str) -> String {
    format!("cr-{scenario}")
}

/// The scenario's phase, if it has one.
pub fn phase(s: &Scenario) -> Option<ScenarioPhase> {
    s.status.as_ref()?.phase
}

/// The scenario's condition of type `type_`.
pub fn condition<'a>(s: &'a Scenario, type_: &str) -> Option<&'a Condition> {
    s.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// True if the condition `type_` has status `holds`.
pub fn has_condition(s: &Scenario, type_: &str, holds: bool) -> bool {
    let want = if holds { "True" } else { "False" };
    condition(s, type_).is_some_and(|c| c.status == want)
}

/// Fails unless the condition `type_` has status `holds` (and `reason`, if given).
pub fn ensure_condition(
    s: &Scenario,
    type_: &str,
    holds: bool,
    reason: Option<&str>,
) -> Result<()> {
    let c =
        condition(s, type_).with_context(|| format!("{}: no {type_} condition", s.name_any()))?;
    let want = if holds { "True" } else { "False" };
    ensure!(
        c.status == want,
        "{}: condition {type_} is {} ({}: {}), expected {want}",
        s.name_any(),
        c.status,
        c.reason,
        c.message
    );
    if let Some(reason) = reason {
        ensure!(
            c.reason == reason,
            "{}: condition {type_} has reason {} ({}), expected {reason}",
            s.name_any(),
            c.reason,
            c.message
        );
    }
    Ok(())
}

/// Fails unless `meta` carries the labels that tie a child to its scenario.
pub fn ensure_labelled(
    what: &str,
    meta: &ObjectMeta,
    scenario: &str,
    authorization: &str,
) -> Result<()> {
    let labels = meta.labels.clone().unwrap_or_default();
    for (key, want) in [
        ("cleanroom.io/scenario", scenario),
        ("cleanroom.io/authorization", authorization),
        ("app.kubernetes.io/managed-by", "cleanroom"),
    ] {
        ensure!(
            labels.get(key).map(String::as_str) == Some(want),
            "{what} lacks label {key}={want}: {labels:?}"
        );
    }
    Ok(())
}

/// Names of the PersistentVolumes whose claim was in namespace `ns`.
pub async fn volumes_of(client: &Client, ns: &str) -> Result<Vec<String>> {
    let volumes = Api::<PersistentVolume>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(volumes
        .items
        .into_iter()
        .filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .and_then(|r| r.namespace.as_deref())
                == Some(ns)
        })
        .map(|pv| pv.name_any())
        .collect())
}

/// The error text of a call that should have failed; an error if it succeeded.
pub fn refusal<K>(result: Result<K>, what: &str) -> Result<String> {
    match result {
        Ok(_) => bail!("{what}: the API server accepted it"),
        Err(e) => Ok(format!("{e:#}")),
    }
}

#[derive(Default)]
struct Created {
    authorizations: Vec<String>,
    scenarios: Vec<String>,
    datasets: Vec<String>,
    raw_claims: Vec<String>,
}

/// What one test works with: a client, and the record of what it created so
/// that [`with_fixture`] can dump and delete it.
#[derive(Clone)]
pub struct Fixture {
    pub client: Client,
    created: Arc<Mutex<Created>>,
}

impl Fixture {
    fn created(&self) -> MutexGuard<'_, Created> {
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn scenarios(&self) -> Api<Scenario> {
        Api::all(self.client.clone())
    }

    pub fn authorizations(&self) -> Api<Authorization> {
        Api::all(self.client.clone())
    }

    pub fn datasets(&self) -> Api<Dataset> {
        Api::all(self.client.clone())
    }

    /// Creates an Authorization named `name` (recorded for cleanup first, so
    /// even a surprise success is deleted).
    pub async fn create_authorization(&self, name: &str, spec: Value) -> Result<Authorization> {
        self.created().authorizations.push(name.to_string());
        let mut a = Authorization::new(name, serde_json::from_value(spec)?);
        a.metadata = meta(name);
        self.authorizations()
            .create(&PostParams::default(), &a)
            .await
            .with_context(|| format!("creating Authorization {name}"))
    }

    /// Creates a Scenario named `name` (recorded for cleanup first).
    pub async fn create_scenario(&self, name: &str, spec: Value) -> Result<Scenario> {
        self.created().scenarios.push(name.to_string());
        let mut s = Scenario::new(name, serde_json::from_value(spec)?);
        s.metadata = meta(name);
        self.scenarios()
            .create(&PostParams::default(), &s)
            .await
            .with_context(|| format!("creating Scenario {name}"))
    }

    /// Creates a Dataset named `name` (recorded for cleanup first).
    pub async fn create_dataset(&self, name: &str, spec: Value) -> Result<Dataset> {
        self.created().datasets.push(name.to_string());
        let mut d = Dataset::new(name, serde_json::from_value(spec)?);
        d.metadata = meta(name);
        self.datasets()
            .create(&PostParams::default(), &d)
            .await
            .with_context(|| format!("creating Dataset {name}"))
    }

    /// Creates a claim `name` for raw data in the vault, waits until it is
    /// bound, and writes `files` (relative path, content) on its volume,
    /// readable by all as a data provider would leave them. Returns the
    /// volume's directory on this machine.
    pub async fn create_raw_claim(&self, name: &str, files: &[(&str, &[u8])]) -> Result<PathBuf> {
        self.created().raw_claims.push(name.to_string());
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), VAULT);
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": VAULT},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "64Mi"}}
            }
        }))?;
        claims
            .create(&PostParams::default(), &claim)
            .await
            .with_context(|| format!("creating claim {VAULT}/{name}"))?;
        let bound = wait_for(
            &claims,
            name,
            "claim Bound",
            T,
            |c: Option<&PersistentVolumeClaim>| {
                c.and_then(|c| c.status.as_ref()?.phase.as_deref()) == Some("Bound")
            },
        )
        .await?;
        let pv = Api::<PersistentVolume>::all(self.client.clone())
            .get(
                &bound
                    .spec
                    .and_then(|s| s.volume_name)
                    .context("no volume")?,
            )
            .await?;
        let root = host_dir(&pv)?;
        for (relative, content) in files {
            write_raw(&root, relative, content)?;
        }
        Ok(root)
    }

    /// A raw claim holding `csv` as the population register, its Dataset
    /// ([`population_dataset`]) and an Authorization allowing it, all with
    /// unique names: returns the raw claim, its directory, the dataset and
    /// the authorization.
    pub async fn population(&self, csv: &[u8]) -> Result<(String, PathBuf, String, String)> {
        let raw_claim = unique_name("raw");
        let raw_dir = self
            .create_raw_claim(&raw_claim, &[(POPULATION_FILE, csv)])
            .await?;
        let dataset = unique_name("population");
        self.create_dataset(&dataset, population_dataset(&raw_claim))
            .await?;
        let authz = unique_name("e2e-authz");
        self.create_authorization(&authz, authorization_spec(&[&dataset])?)
            .await?;
        Ok((raw_claim, raw_dir, dataset, authz))
    }

    /// A valid, active Authorization with a unique name; returns the name.
    pub async fn authorization(&self) -> Result<String> {
        let name = unique_name("e2e-authz");
        self.create_authorization(&name, authorization_spec(&[])?)
            .await?;
        Ok(name)
    }

    /// A scenario under `authorization` from [`scenario_spec`] changed by
    /// `tweak`, with a unique name, once it is Ready.
    pub async fn ready_scenario(
        &self,
        authorization: &str,
        tweak: impl FnOnce(&mut Value),
    ) -> Result<Scenario> {
        let name = unique_name("e2e");
        let mut spec = scenario_spec(authorization);
        tweak(&mut spec);
        self.create_scenario(&name, spec).await?;
        self.wait_scenario(&name, "Ready=True", T, |s| has_condition(s, "Ready", true))
            .await
    }

    /// Waits until the scenario `name` satisfies `holds`.
    pub async fn wait_scenario(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        holds: impl Fn(&Scenario) -> bool,
    ) -> Result<Scenario> {
        wait_for(
            &self.scenarios(),
            name,
            what,
            timeout,
            |s: Option<&Scenario>| s.is_some_and(&holds),
        )
        .await
    }

    /// Waits until the authorization `name` satisfies `holds`.
    pub async fn wait_for_authorization(
        &self,
        name: &str,
        what: &str,
        holds: impl Fn(&Authorization) -> bool,
    ) -> Result<Authorization> {
        wait_for(
            &self.authorizations(),
            name,
            what,
            T,
            |a: Option<&Authorization>| a.is_some_and(&holds),
        )
        .await
    }

    /// Merge-patches the scenario's spec.
    pub async fn patch_scenario(&self, name: &str, spec: Value) -> Result<Scenario> {
        self.scenarios()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .with_context(|| format!("patching Scenario {name}"))
    }

    /// Merge-patches the authorization's spec.
    pub async fn patch_authorization(&self, name: &str, spec: Value) -> Result<Authorization> {
        self.authorizations()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .with_context(|| format!("patching Authorization {name}"))
    }

    /// What a failing test should show: each scenario (status included) and
    /// its namespace, each authorization's status, and the logs.
    pub async fn dump(&self) -> String {
        let (scenarios, authorizations) = {
            let c = self.created();
            (c.scenarios.clone(), c.authorizations.clone())
        };
        let mut out = String::new();
        for name in &scenarios {
            out += &format!("===== Scenario {name} =====\n");
            out += &yaml_of(&self.scenarios(), name).await;
            out += &dump_namespace(&self.client, &namespace_of(name)).await;
        }
        for name in &authorizations {
            out += &format!("===== Authorization {name} =====\n");
            out += &yaml_of(&self.authorizations(), name).await;
        }
        out += &dump_namespace(&self.client, VAULT).await;
        out += &log_tails(&["operator", "e2e-node"], 60);
        out
    }

    /// Deletes what the test created: scenarios first (waiting until their
    /// teardown let them go), then datasets and authorizations.
    async fn clean_up(&self) -> Result<()> {
        let (scenarios, datasets, authorizations) = {
            let c = self.created();
            (
                c.scenarios.clone(),
                c.datasets.clone(),
                c.authorizations.clone(),
            )
        };
        let mut problems = Vec::new();
        for name in &scenarios {
            if let Err(e) = delete_and_wait(&self.scenarios(), name).await {
                problems.push(format!("{e:#}"));
            }
        }
        let raw_claims = self.created().raw_claims.clone();
        let vault: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), VAULT);
        for name in &raw_claims {
            if let Err(e) = delete_and_wait(&vault, name).await {
                problems.push(format!("{e:#}"));
            }
        }
        for name in &datasets {
            if let Err(e) = delete_and_wait(&self.datasets(), name).await {
                problems.push(format!("{e:#}"));
            }
        }
        for name in &authorizations {
            if let Err(e) = delete_and_wait(&self.authorizations(), name).await {
                problems.push(format!("{e:#}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("cleaning up: {}", problems.join("; ")))
        }
    }
}

async fn yaml_of<K>(api: &Api<K>, name: &str) -> String
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(mut o)) => {
            o.meta_mut().managed_fields = None;
            serde_yaml::to_string(&o).unwrap_or_default()
        }
        Ok(None) => "(absent)\n".to_string(),
        Err(e) => format!("(could not read it: {e})\n"),
    }
}

/// Deletes `name` if present and waits until it is gone (finalizers done).
async fn delete_and_wait<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug + Send + 'static,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(anyhow!(e).context(format!("deleting {name}"))),
    }
    cleanroom_e2e::harness::wait_gone(api, name, T).await
}

/// Runs `body` with a fresh [`Fixture`]. When it fails, prints the scenarios,
/// their namespaces, the authorizations and the logs; either way deletes what
/// it created. A cleanup that fails (something would not go) fails the test.
pub async fn with_fixture<F, Fut, R>(body: F) -> Result<R>
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = Result<R>>,
{
    let fixture = Fixture {
        client: client().await?,
        created: Arc::default(),
    };
    let result = body(fixture.clone()).await;
    if let Err(e) = &result {
        eprintln!("test failed: {e:#}\n{}", fixture.dump().await);
    }
    let cleaned = fixture.clean_up().await;
    match (result, cleaned) {
        (Ok(r), Ok(())) => Ok(r),
        (Ok(_), Err(e)) => {
            eprintln!("{}", fixture.dump().await);
            Err(e)
        }
        (Err(e), Err(c)) => {
            eprintln!("cleanup after the failure failed too: {c:#}");
            Err(e)
        }
        (Err(e), Ok(())) => Err(e),
    }
}

/// The volume bound to the scenario's scratch claim.
pub async fn scratch_volume(client: &Client, scenario: &str) -> Result<PersistentVolume> {
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &namespace_of(scenario));
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
    let pv = pvc
        .spec
        .and_then(|s| s.volume_name)
        .context("bound claim without a volume")?;
    Ok(Api::<PersistentVolume>::all(client.clone())
        .get(&pv)
        .await?)
}

/// The host directory behind a hostPath volume (the e2e node's volumes live
/// on this machine).
pub fn host_dir(pv: &PersistentVolume) -> Result<PathBuf> {
    Ok(PathBuf::from(
        pv.spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| h.path.clone())
            .context("the volume is not a hostPath volume")?,
    ))
}

/// [`host_dir`], handed to the workspace uid as a workspace would own it.
pub fn workspace_owned_dir(pv: &PersistentVolume) -> Result<PathBuf> {
    let root = host_dir(pv)?;
    chown(&root, Some(WORKSPACE_UID), Some(WORKSPACE_UID))?;
    Ok(root)
}

/// Writes `content` at `relative` under `root`, readable by everyone (raw
/// data is only ever mounted read-only, in the vault).
pub fn write_raw(root: &Path, relative: &str, content: &[u8]) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(relative);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(&path, content)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    Ok(path)
}

/// Writes `content` at `relative` under `root`, owned by the workspace uid.
pub fn write_as_workspace(root: &Path, relative: &str, content: &[u8]) -> Result<PathBuf> {
    let path = root.join(relative);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        chown(dir, Some(WORKSPACE_UID), Some(WORKSPACE_UID))?;
    }
    let mut f = std::fs::File::create(&path)?;
    f.write_all(content)?;
    f.sync_all()?;
    chown(&path, Some(WORKSPACE_UID), Some(WORKSPACE_UID))?;
    Ok(path)
}

/// The `cleanroom` binary the tests run (`cargo build -p cleanroom`).
pub fn cleanroom_binary() -> PathBuf {
    repo_root().join("target/debug/cleanroom")
}

/// Runs `cleanroom ARGS` with the cluster's admin kubeconfig.
pub fn run_cleanroom(args: &[&str]) -> Result<std::process::Output> {
    let bin = cleanroom_binary();
    ensure!(
        bin.exists(),
        "no {}: build it first with `cargo build -p cleanroom`",
        bin.display()
    );
    std::process::Command::new(&bin)
        .args(args)
        .env(
            "KUBECONFIG",
            cleanroom_e2e::harness::cluster_dir().join("kubeconfig"),
        )
        .env_remove("CLEANROOM_AUDIT_NAMESPACE")
        .output()
        .with_context(|| format!("running cleanroom {args:?}"))
}

/// Namespace of the shared operator's audit ledger.
pub const AUDIT_NAMESPACE: &str = "cleanroom-system";

/// Every record of the ledger in `ns`, in chain order.
pub async fn ledger_records(client: &Client, ns: &str) -> Result<Vec<cleanroom::audit::Record>> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let segments = cleanroom::audit::store::segments(&api).await?;
    Ok(cleanroom::audit::chain::lines(&segments)
        .into_iter()
        .filter_map(|line| cleanroom::audit::Record::parse(line).ok())
        .collect())
}

/// The records of the object with `uid`, in order.
pub async fn records_of(client: &Client, uid: &str) -> Result<Vec<cleanroom::audit::Record>> {
    Ok(ledger_records(client, AUDIT_NAMESPACE)
        .await?
        .into_iter()
        .filter(|r| r.uid == uid)
        .collect())
}

/// The identity the operator runs under (the chart's service account).
pub const OPERATOR_USER: &str = "system:serviceaccount:cleanroom-system:cleanroom";

/// A typed object from JSON written in a test.
pub fn from_json<K: DeserializeOwned>(v: Value) -> Result<K> {
    serde_json::from_value(v).context("test object does not deserialize")
}

/// A client that acts as `user` in `groups` (impersonation by the admin).
pub async fn client_as(user: &str, groups: &[&str]) -> Result<Client> {
    let mut config = cleanroom_e2e::harness::config().await?;
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    Ok(Client::try_from(config)?)
}

/// The operator's own identity: exempt from every policy that guards its objects.
pub async fn as_operator() -> Result<Client> {
    client_as(
        OPERATOR_USER,
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:cleanroom-system",
            "system:masters",
        ],
    )
    .await
}

// Admission policies the tests add for a while.

/// A ValidatingAdmissionPolicy and its binding of one name, deleted by
/// [`Hold::lift`] or, whatever happens to the test, when dropped.
pub struct Hold {
    name: String,
    client: Client,
}

impl Hold {
    /// Creates the policy (refusing whatever `constraints` and `conditions`
    /// match, with `message`) and its binding.
    pub async fn install(
        client: &Client,
        prefix: &str,
        constraints: Value,
        conditions: Value,
        message: &str,
    ) -> Result<Hold> {
        let name = unique_name(prefix);
        // Constructed first: whatever is created below goes when it is dropped.
        let hold = Hold {
            name: name.clone(),
            client: client.clone(),
        };
        let policy: ValidatingAdmissionPolicy = from_json(json!({
            "metadata": {"name": name, "labels": {E2E_LABEL: "true"}},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": constraints,
                "matchConditions": conditions,
                "validations": [{"expression": "false", "message": message}]
            }
        }))?;
        let binding: ValidatingAdmissionPolicyBinding = from_json(json!({
            "metadata": {"name": name, "labels": {E2E_LABEL: "true"}},
            "spec": {"policyName": name, "validationActions": ["Deny"]}
        }))?;
        Api::<ValidatingAdmissionPolicy>::all(client.clone())
            .create(&PostParams::default(), &policy)
            .await
            .context("creating the hold's policy")?;
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .context("creating the hold's binding")?;
        Ok(hold)
    }

    /// Deletes the binding and the policy.
    pub async fn lift(&self) -> Result<()> {
        let dp = DeleteParams::default();
        for result in [
            Api::<ValidatingAdmissionPolicyBinding>::all(self.client.clone())
                .delete(&self.name, &dp)
                .await
                .map(|_| ()),
            Api::<ValidatingAdmissionPolicy>::all(self.client.clone())
                .delete(&self.name, &dp)
                .await
                .map(|_| ()),
        ] {
            match result {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(anyhow::Error::from(e).context("lifting a hold")),
            }
        }
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let binding = format!("validatingadmissionpolicybinding/{}", self.name);
        let policy = format!("validatingadmissionpolicy/{}", self.name);
        if let Err(e) = run_kubectl(&["delete", &binding, &policy, "--ignore-not-found"]) {
            eprintln!("could not delete the hold {}: {e:#}", self.name);
        }
    }
}

pub const CLAIM_HOLD: &str = "claim deletion held by the test";

/// Refuses every deletion of a claim in `ns` (the trick of
/// `operator.rs::claim_deletion_refused`): teardown stops at the claim,
/// after its wipe is attested, and stays in TearingDown. Returns once the API
/// server applies it (to the operator's own identity too).
pub async fn hold_claim_deletion(client: &Client, ns: &str) -> Result<Hold> {
    let hold = Hold::install(
        client,
        "e2e-hold",
        json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "resourceRules": [{
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["DELETE"],
                "resources": ["persistentvolumeclaims"]
            }]
        }),
        json!([]),
        CLAIM_HOLD,
    )
    .await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(as_operator().await?, ns);
    let dry_run = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    let started = Instant::now();
    loop {
        match claims.delete("scratch", &dry_run).await {
            Err(kube::Error::Api(s)) if s.message.contains(CLAIM_HOLD) => return Ok(hold),
            other => {
                ensure!(
                    started.elapsed() < T,
                    "the hold on claim deletion never took effect (last: {other:?})"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Rows of a CSV without quotes, header first.
pub fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// The prepared file of `dataset` as the workspace of `scenario` sees it.
pub async fn prepared_file(
    client: &Client,
    scenario: &str,
    dataset: &str,
) -> Result<(PersistentVolume, String)> {
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &namespace_of(scenario));
    let claim = claims.get(&format!("data-{dataset}")).await?;
    let phase = claim.status.as_ref().and_then(|s| s.phase.clone());
    ensure!(phase.as_deref() == Some("Bound"), "data claim is {phase:?}");
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(
            claim
                .spec
                .and_then(|s| s.volume_name)
                .as_deref()
                .context("no volume")?,
        )
        .await?;
    let file = POPULATION_FILE
        .rsplit('/')
        .next()
        .unwrap_or(POPULATION_FILE);
    let text = std::fs::read_to_string(host_dir(&pv)?.join(file))
        .with_context(|| format!("{scenario}: reading the prepared file of {dataset}"))?;
    Ok((pv, text))
}

/// Starts the plain shared operator again when dropped (after a test that
/// ran it with a crash drill).
pub struct OperatorComesBack;

impl Drop for OperatorComesBack {
    fn drop(&mut self) {
        let _ = operator("stop");
        if let Err(e) = operator("start") {
            eprintln!("could not start the operator again: {e:#}");
        }
    }
}

/// The shared operator's process id, while it runs.
pub fn operator_pid() -> Option<i32> {
    std::fs::read_to_string(cleanroom_e2e::harness::cluster_dir().join("run/operator.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Restarts the shared operator as a crash drill: it exits right after it
/// appends a ledger record with action `action`. Returns its process id.
pub fn operator_exiting_after(action: &str) -> Result<i32> {
    let out = std::process::Command::new(repo_root().join("e2e/scripts/operator.sh"))
        .arg("restart")
        .env("CLEANROOM_AUDIT_EXIT_AFTER", action)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    operator_pid().context("no operator pid")
}

/// Waits until the process `pid` (a crash drill's operator) is gone.
pub async fn stopped(pid: i32, what: &str) -> Result<()> {
    let started = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        anyhow::ensure!(
            started.elapsed() < T,
            "the operator did not stop after {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}
