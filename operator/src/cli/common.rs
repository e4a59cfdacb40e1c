//! What the cluster verbs share: output formats, exit codes, the object they
//! act on and how it is summarised.

use std::fmt::Write as _;

use clap::{Args, ValueEnum};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use crate::api::{Authorization, Condition, Scenario, State, Time, WipeAttestation};

/// Exit code: bad arguments (what clap gives for a malformed command line).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the object does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit code: the transition is not allowed (for example, out of Revoked).
pub const EXIT_FORBIDDEN: u8 = 4;
/// Exit code: the audit chain is broken (tampering, deletion, reordering, a missing segment).
pub const EXIT_TAMPERED: u8 = 5;

/// An error with its own exit code (1 for any other error, 2 for usage).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The process exit code.
    pub code: u8,
    /// What to print.
    pub message: String,
}

impl Exit {
    /// Bad arguments, found after parsing (exit 2, as clap's own).
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        Exit {
            code: EXIT_USAGE,
            message: message.into(),
        }
        .into()
    }

    pub fn not_found(message: impl Into<String>) -> anyhow::Error {
        Exit {
            code: EXIT_NOT_FOUND,
            message: message.into(),
        }
        .into()
    }

    pub fn forbidden(message: impl Into<String>) -> anyhow::Error {
        Exit {
            code: EXIT_FORBIDDEN,
            message: message.into(),
        }
        .into()
    }
}

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable text.
    #[default]
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Which object a verb acts on.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Name of the Scenario (or, with --authorization, of the Authorization).
    pub name: String,
    /// Act on the Authorization NAME (and so on all its scenarios) instead of a Scenario.
    #[arg(long)]
    pub authorization: bool,
}

impl Target {
    pub fn kind(&self) -> &'static str {
        if self.authorization {
            "authorization"
        } else {
            "scenario"
        }
    }
}

/// `-o/--output`.
#[derive(Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputArg {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// A current-thread runtime and a client from KUBECONFIG (or in-cluster config).
pub fn block_on<T>(body: impl AsyncFnOnce(Client) -> anyhow::Result<T>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let client = Client::try_default().await.map_err(|e| {
                anyhow::anyhow!("no cluster to talk to (set KUBECONFIG or run in a pod): {e}")
            })?;
            body(client).await
        })
}

/// A kube error as a CLI error: 404 exits 3; the API server's own message
/// (for example a CEL rule) is passed through as it is.
pub fn api_error(e: kube::Error, kind: &str, name: &str) -> anyhow::Error {
    match e {
        kube::Error::Api(s) if s.code == 404 => {
            Exit::not_found(format!("{kind} {name:?} not found"))
        }
        kube::Error::Api(s) => anyhow::anyhow!(
            "the API server refused the change to {kind} {name:?} ({}): {}",
            s.code,
            s.message
        ),
        other => anyhow::anyhow!("{kind} {name:?}: {other}"),
    }
}

/// A refused create in a scenario's workspace: a missing namespace is a
/// scenario without a workspace (exit 3); anything else is the API
/// server's message as it is (an admission policy's names who and why).
pub fn create_error(e: kube::Error, kind: &str, name: &str, scenario: &str) -> anyhow::Error {
    match e {
        kube::Error::Api(s) if s.code == 404 => Exit::not_found(format!(
            "scenario {scenario:?} has no workspace (namespace {} not found)",
            workspace_namespace(scenario)
        )),
        e => api_error(e, kind, name),
    }
}

/// What `status` (and every verb, after its change) shows of an object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub kind: &'static str,
    pub name: String,
    /// The desired state (spec.state) and its reason.
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The observed phase (status.phase), if the operator wrote one yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenarios: Option<i32>,
    pub conditions: Vec<Condition>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wipes: Vec<WipeAttestation>,
}

fn phase_name(p: impl Serialize) -> Option<String> {
    match serde_json::to_value(p).ok()? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

impl From<&Scenario> for Summary {
    fn from(s: &Scenario) -> Self {
        let status = s.status.clone().unwrap_or_default();
        Summary {
            kind: "scenario",
            name: s.name_any(),
            state: s.spec.state,
            reason: s.spec.reason.clone(),
            phase: status.phase.and_then(phase_name),
            expires_at: status.expires_at,
            authorization: Some(s.spec.authorization.clone()),
            namespace: status.namespace,
            scenarios: None,
            conditions: status.conditions,
            wipes: status.wipes,
        }
    }
}

impl From<&Authorization> for Summary {
    fn from(a: &Authorization) -> Self {
        let status = a.status.clone().unwrap_or_default();
        Summary {
            kind: "authorization",
            name: a.name_any(),
            state: a.spec.state,
            reason: a.spec.reason.clone(),
            phase: status.phase.and_then(phase_name),
            expires_at: Some(a.spec.valid_until.clone()),
            authorization: None,
            namespace: None,
            scenarios: status.scenarios,
            conditions: status.conditions,
            wipes: Vec::new(),
        }
    }
}

impl Summary {
    /// The summary in `output` format.
    pub fn render(&self, output: Output) -> anyhow::Result<String> {
        Ok(match output {
            Output::Json => serde_json::to_string_pretty(self)? + "\n",
            Output::Yaml => serde_yaml::to_string(self)?,
            Output::Table => self.table(),
        })
    }

    fn table(&self) -> String {
        let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        let mut out = String::new();
        let _ = writeln!(out, "{}/{}", self.kind, self.name);
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<14}{v}");
        };
        row(
            "state",
            match &self.reason {
                Some(r) => format!("{} ({r})", self.state.as_str()),
                None => self.state.as_str().to_string(),
            },
        );
        row("phase", dash(&self.phase));
        row(
            "expires",
            dash(&self.expires_at.as_ref().map(|t| t.0.to_string())),
        );
        if self.kind == "scenario" {
            row("authorization", dash(&self.authorization));
            row("namespace", dash(&self.namespace));
        } else {
            row("scenarios", dash(&self.scenarios.map(|n| n.to_string())));
        }
        if !self.conditions.is_empty() {
            let _ = writeln!(out, "  conditions:");
            let _ = writeln!(
                out,
                "    {:<14}{:<7}{:<22}MESSAGE",
                "TYPE", "STATUS", "REASON"
            );
            for c in &self.conditions {
                let _ = writeln!(
                    out,
                    "    {:<14}{:<7}{:<22}{}",
                    c.type_, c.status, c.reason, c.message
                );
            }
        }
        if !self.wipes.is_empty() {
            let _ = writeln!(out, "  wipes:");
            for w in &self.wipes {
                let _ = writeln!(
                    out,
                    "    {} ({}): {} bytes, {} files, sha256 {} at {}",
                    w.claim, w.volume, w.bytes, w.files, w.digest, w.completed_at.0
                );
            }
        }
        out
    }
}

/// Reads the target and summarises it.
pub async fn get_summary(client: &Client, target: &Target) -> anyhow::Result<Summary> {
    let name = &target.name;
    let kind = target.kind();
    Ok(if target.authorization {
        let a = Api::<Authorization>::all(client.clone())
            .get(name)
            .await
            .map_err(|e| api_error(e, kind, name))?;
        Summary::from(&a)
    } else {
        let s = Api::<Scenario>::all(client.clone())
            .get(name)
            .await
            .map_err(|e| api_error(e, kind, name))?;
        Summary::from(&s)
    })
}

/// Merge-patches the target's spec with `spec` and summarises the result.
/// When the patch changes the spec, it also stamps who asked for it (see
/// [`stamped_patch`]), so that the audit ledger can name the person.
pub async fn patch_spec(client: &Client, target: &Target, spec: Value) -> anyhow::Result<Summary> {
    let name = &target.name;
    let kind = target.kind();
    let user = whoami(client).await;
    Ok(if target.authorization {
        let api = Api::<Authorization>::all(client.clone());
        Summary::from(&stamped_patch(&api, name, kind, &spec, user.as_deref()).await?)
    } else {
        let api = Api::<Scenario>::all(client.clone());
        Summary::from(&stamped_patch(&api, name, kind, &spec, user.as_deref()).await?)
    })
}

/// The caller's user name as the API server sees it (a SelfSubjectReview);
/// `None` if the server does not say.
pub async fn whoami(client: &Client) -> Option<String> {
    caller(client).await.ok()
}

/// The caller's user name as the API server sees it, or why it is not
/// known: for the verbs that must name the caller (the airlock's requester
/// and reviewer), where a guess would only be refused.
pub async fn caller(client: &Client) -> anyhow::Result<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(
            &kube::api::PostParams::default(),
            &SelfSubjectReview::default(),
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot tell who you are: the API server did not answer a SelfSubjectReview \
                 (authentication.k8s.io/v1, Kubernetes 1.28 or later): {e}"
            )
        })?;
    review
        .status
        .and_then(|s| s.user_info?.username)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell who you are: the API server's SelfSubjectReview names no user"
            )
        })
}

/// The workspace namespace of a scenario.
pub fn workspace_namespace(scenario: &str) -> String {
    format!("{}{scenario}", crate::api::scenario::NAMESPACE_PREFIX)
}

/// RFC 7386 merge of `patch` into `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Merge-patches `spec` into the object's spec. If that changes the spec and
/// the caller's `user` is known, the same patch (guarded by the
/// resourceVersion read, so the generation it creates is known) stamps the
/// annotations `cleanroom.io/changed-by` and `cleanroom.io/changed-by-generation`.
async fn stamped_patch<K>(
    api: &Api<K>,
    name: &str,
    kind: &str,
    spec: &Value,
    user: Option<&str>,
) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + Serialize + serde::de::DeserializeOwned,
{
    use crate::audit::transitions::{CHANGED_BY, CHANGED_BY_GENERATION};
    use kube::api::{Patch, PatchParams};
    let params = PatchParams::default();
    for _ in 0..3 {
        let current = api.get(name).await.map_err(|e| api_error(e, kind, name))?;
        let before = serde_json::to_value(&current)?
            .get("spec")
            .cloned()
            .unwrap_or(Value::Null);
        let mut after = before.clone();
        merge(&mut after, spec);
        let mut patch = serde_json::json!({ "spec": spec });
        let mut stamped = None;
        if let Some(user) = user
            && after != before
        {
            let meta = current.meta();
            let next = meta.generation.unwrap_or(0) + 1;
            stamped = Some(next);
            patch["metadata"] = serde_json::json!({
                "resourceVersion": meta.resource_version,
                "annotations": {CHANGED_BY: user, CHANGED_BY_GENERATION: next.to_string()},
            });
        }
        match api.patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(o) if stamped.is_some() && o.meta().generation != stamped => {
                // The server saw no change of spec after all: a stamp for a
                // generation to come would name the wrong person then.
                let unstamp = serde_json::json!({"metadata": {"annotations": {
                    CHANGED_BY: null, CHANGED_BY_GENERATION: null}}});
                return api
                    .patch(name, &params, &Patch::Merge(&unstamp))
                    .await
                    .map_err(|e| api_error(e, kind, name));
            }
            Ok(o) => return Ok(o),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(api_error(e, kind, name)),
        }
    }
    anyhow::bail!("{kind} {name:?} kept changing while it was being patched; try again")
}

/// Prints to stdout.
pub fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// Moves the target to `state` with `reason` (or clears the reason) and
/// prints the result: the one mechanism behind suspend, resume and revoke.
/// Leaving Revoked is refused here with exit 4 and a plain message, before
/// the API server's own rule would refuse it.
pub fn set_state(
    target: &Target,
    state: State,
    reason: Option<&str>,
    output: Output,
) -> anyhow::Result<()> {
    if let Some(r) = reason
        && r.trim().is_empty()
    {
        anyhow::bail!("--reason must say why (it cannot be blank)");
    }
    block_on(async |client| {
        if state != State::Revoked {
            let current = get_summary(&client, target).await?;
            if current.state == State::Revoked {
                return Err(Exit::forbidden(format!(
                    "{} {:?} is Revoked: revoked is final and cannot become {}; create a new {} instead",
                    target.kind(),
                    target.name,
                    state.as_str(),
                    target.kind()
                )));
            }
        }
        let spec = serde_json::json!({"state": state, "reason": reason});
        let summary = patch_spec(&client, target, spec).await?;
        print(&summary.render(output)?)
    })
}
