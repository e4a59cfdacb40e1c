//! Helpers for end-to-end tests against the local control plane (`make cluster-up`).
//!
//! A test gets a client with [`client`], makes names with [`unique_name`], runs its
//! body inside a temporary namespace with [`with_namespace`] (which dumps what it
//! finds there when the body fails, and deletes the namespace either way), and
//! waits with [`wait_for`], which fails with the last state it saw instead of hanging.

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Config, Resource};
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Label on everything the tests create, so a crashed run can be cleaned by selector.
pub const E2E_LABEL: &str = "cleanroom.io/e2e";

/// The state directory of the local control plane (`e2e/.cluster`).
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("CLEANROOM_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cluster"))
}

/// The local control plane's client configuration: `KUBECONFIG` if set, else the
/// cluster's own file.
pub async fn config() -> Result<Config> {
    let hint = "no cluster to talk to: start it with `make cluster-up`";
    if std::env::var_os("KUBECONFIG").is_some() {
        return Config::infer().await.context(hint);
    }
    let kubeconfig = Kubeconfig::read_from(cluster_dir().join("kubeconfig")).context(hint)?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context(hint)
}

/// A client for the local control plane (see [`config`]).
pub async fn client() -> Result<Client> {
    Ok(Client::try_from(config().await?)?)
}

/// `prefix-xxxxxx`, a DNS-1123 name unique enough for parallel tests.
pub fn unique_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}-{suffix}")
}

/// Metadata for a test object: name plus the e2e label.
pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some([(E2E_LABEL.to_string(), "true".to_string())].into()),
        ..ObjectMeta::default()
    }
}

/// Waits until `condition` holds for the object `name`, or fails after `timeout`
/// with what the object looked like last.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Condition<K>,
) -> Result<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(Some(object))) => Ok(object),
        Ok(Ok(None)) => bail!("{name}: waited for {what}, but the object is gone"),
        Ok(Err(e)) => Err(anyhow!(e).context(format!("{name}: watching for {what}"))),
        Err(_) => {
            let last = match api.get_opt(name).await {
                Ok(Some(o)) => serde_yaml::to_string(&o).unwrap_or_default(),
                Ok(None) => "(absent)".to_string(),
                Err(e) => format!("(could not read it: {e})"),
            };
            bail!("{name}: no {what} within {timeout:?}; last seen:\n{last}")
        }
    }
}

/// Waits until the object `name` no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match api.get_opt(name).await? {
            None => return Ok(()),
            Some(o) if tokio::time::Instant::now() >= deadline => bail!(
                "{name}: still present after {timeout:?}:\n{}",
                serde_yaml::to_string(&o).unwrap_or_default()
            ),
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Creates a namespace labelled for the tests (plus `labels`), runs `body` in it,
/// dumps the namespace's pods, claims and events if `body` fails, and deletes the
/// namespace either way.
pub async fn with_namespace<F, Fut, T>(prefix: &str, labels: &[(&str, &str)], body: F) -> Result<T>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let client = client().await?;
    let name = unique_name(prefix);
    let mut ns_meta = meta(&name);
    if let Some(l) = ns_meta.labels.as_mut() {
        l.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ns_meta,
                ..Namespace::default()
            },
        )
        .await
        .with_context(|| format!("creating namespace {name}"))?;

    let result = body(client.clone(), name.clone()).await;
    if result.is_err() {
        eprintln!("{}", dump_namespace(&client, &name).await);
        eprintln!("{}", log_tails(&["e2e-node", "operator"], 40));
    }
    let _ = namespaces.delete(&name, &DeleteParams::default()).await;
    result
}

/// Pods, claims and events of a namespace, as text for a failing test's output.
pub async fn dump_namespace(client: &Client, ns: &str) -> String {
    let mut out = format!("===== dump of namespace {ns} =====\n");
    let lp = ListParams::default();
    match Api::<Pod>::namespaced(client.clone(), ns).list(&lp).await {
        Ok(pods) => {
            for p in pods {
                let status = serde_yaml::to_string(&p.status).unwrap_or_default();
                out += &format!("--- pod {}\n{status}", p.metadata.name.unwrap_or_default());
            }
        }
        Err(e) => out += &format!("(pods: {e})\n"),
    }
    match Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
    {
        Ok(claims) => {
            for c in claims {
                let phase = c.status.and_then(|s| s.phase).unwrap_or_default();
                out += &format!("--- pvc {}: {phase}\n", c.metadata.name.unwrap_or_default());
            }
        }
        Err(e) => out += &format!("(pvcs: {e})\n"),
    }
    match Api::<Event>::namespaced(client.clone(), ns).list(&lp).await {
        Ok(events) => {
            for e in events {
                out += &format!(
                    "event {} {}/{}: {} {}\n",
                    e.type_.unwrap_or_default(),
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                );
            }
        }
        Err(e) => out += &format!("(events: {e})\n"),
    }
    out
}

/// The last `lines` lines of each named component log under `e2e/.cluster/logs/`.
pub fn log_tails(components: &[&str], lines: usize) -> String {
    let mut out = String::new();
    for c in components {
        let path = cluster_dir().join("logs").join(format!("{c}.log"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            out += &format!("===== last {lines} lines of {c}.log =====\n");
            for l in tail.into_iter().rev() {
                out += l;
                out.push('\n');
            }
        }
    }
    out
}

/// The kubectl built with the control plane (same version as the API server).
pub fn kubectl() -> Result<std::process::Command> {
    let bin_dir = std::fs::read_to_string(cluster_dir().join("bin-dir"))
        .context("no e2e/.cluster/bin-dir: start the cluster with `make cluster-up`")?;
    let mut cmd = std::process::Command::new(PathBuf::from(bin_dir.trim()).join("kubectl"));
    cmd.arg("--kubeconfig")
        .arg(cluster_dir().join("kubeconfig"));
    Ok(cmd)
}

/// Runs kubectl with `args` and returns (success, stdout, stderr).
pub fn run_kubectl(args: &[&str]) -> Result<(bool, String, String)> {
    let out = kubectl()?.args(args).output().context("running kubectl")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_dns_labels_and_differ() {
        let a = unique_name("t");
        let b = unique_name("t");
        assert_ne!(a, b);
        assert_eq!(a.len(), "t-".len() + 6);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn meta_carries_the_e2e_label() {
        let m = meta("x");
        assert_eq!(m.name.as_deref(), Some("x"));
        assert_eq!(
            m.labels.and_then(|l| l.get(E2E_LABEL).cloned()).as_deref(),
            Some("true")
        );
    }
}
