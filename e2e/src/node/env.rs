//! The container environment and `$(VAR)` expansion, as a kubelet computes them.
//!
//! Fetching the referenced Secrets and ConfigMaps is the runner's job; everything here
//! works on data already fetched so that it can be tested exactly.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod};

/// Decoded key/value data of a Secret or ConfigMap.
pub type ObjectData = BTreeMap<String, Vec<u8>>;

/// Fetched objects by name; `None` means the object does not exist.
#[derive(Clone, Debug, Default)]
pub struct EnvSources {
    pub secrets: BTreeMap<String, Option<ObjectData>>,
    pub config_maps: BTreeMap<String, Option<ObjectData>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvError {
    /// A referenced object or key is missing; a kubelet keeps retrying.
    Missing(String),
    /// The spec asks for something this node cannot provide; the pod fails.
    Unsupported(String),
}

/// IP the runner reports for pods and hosts: containers share the host network.
pub const POD_IP: &str = "127.0.0.1";

/// Names of the Secrets and ConfigMaps the container's environment refers to.
pub fn referenced_sources(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    for from in container.env_from.iter().flatten() {
        if let Some(s) = &from.secret_ref {
            secrets.insert(s.name.clone());
        }
        if let Some(c) = &from.config_map_ref {
            config_maps.insert(c.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(src) = &var.value_from else { continue };
        if let Some(s) = &src.secret_key_ref {
            secrets.insert(s.name.clone());
        }
        if let Some(c) = &src.config_map_key_ref {
            config_maps.insert(c.name.clone());
        }
    }
    (secrets, config_maps)
}

/// Value of a downward-API field path, for env `fieldRef` and `downwardAPI` volumes.
pub fn field_ref_value(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        rest.strip_suffix("']").map(str::to_string)
    };
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.hostIP" | "status.podIPs" | "status.hostIPs" => {
            Some(POD_IP.to_string())
        }
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                Some(
                    meta.labels
                        .as_ref()
                        .and_then(|l| l.get(&key).cloned())
                        .unwrap_or_default(),
                )
            } else if let Some(key) = subscript("metadata.annotations") {
                Some(
                    meta.annotations
                        .as_ref()
                        .and_then(|a| a.get(&key).cloned())
                        .unwrap_or_default(),
                )
            } else {
                return Err(format!(
                    "field path {path:?} is not supported by the e2e node"
                ));
            }
        }
    };
    Ok(value.unwrap_or_default())
}

/// Kubernetes' `$(VAR)` expansion: defined references are replaced, undefined ones kept
/// verbatim, `$$` escapes a dollar.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(&rest[pos..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// An ordered environment where a later definition replaces an earlier one in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env(Vec<(String, String)>);

impl Env {
    pub fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.0
    }
}

/// What a container image and the kubelet would provide before the pod's own env:
/// a PATH (there is no image config), HOSTNAME, HOME, and the API server address.
pub fn default_env(pod_name: &str, uid: u32, api_server: Option<&(String, u16)>) -> Env {
    let mut env = Env::default();
    env.set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    );
    env.set("HOSTNAME", pod_name.to_string());
    env.set("HOME", if uid == 0 { "/root" } else { "/" }.to_string());
    if let Some((host, port)) = api_server {
        env.set("KUBERNETES_SERVICE_HOST", host.clone());
        env.set("KUBERNETES_SERVICE_PORT", port.to_string());
        env.set("KUBERNETES_SERVICE_PORT_HTTPS", port.to_string());
    }
    env
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn lookup_object<'a>(
    objects: &'a BTreeMap<String, Option<ObjectData>>,
    kind: &str,
    name: &str,
    optional: bool,
) -> Result<Option<&'a ObjectData>, EnvError> {
    match objects.get(name) {
        Some(Some(data)) => Ok(Some(data)),
        _ if optional => Ok(None),
        _ => Err(EnvError::Missing(format!("{kind} {name:?} not found"))),
    }
}

/// The container's final environment: `defaults`, then `envFrom` in order, then `env`
/// in order with `$(VAR)` expansion against what was defined before.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    sources: &EnvSources,
    defaults: Env,
) -> Result<Env, EnvError> {
    let mut env = defaults;
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(s) = &from.secret_ref {
            lookup_object(
                &sources.secrets,
                "secret",
                &s.name,
                s.optional == Some(true),
            )?
        } else if let Some(c) = &from.config_map_ref {
            lookup_object(
                &sources.config_maps,
                "configmap",
                &c.name,
                c.optional == Some(true),
            )?
        } else {
            None
        };
        for (key, value) in data.into_iter().flatten() {
            let name = format!("{prefix}{key}");
            // A kubelet skips keys that are not valid variable names (with an event).
            if is_env_name(&name) {
                env.set(&name, String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(src)) => {
                if let Some(sel) = &src.secret_key_ref {
                    let optional = sel.optional == Some(true);
                    match lookup_object(&sources.secrets, "secret", &sel.name, optional)?
                        .and_then(|d| d.get(&sel.key))
                    {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::Missing(format!(
                                "key {:?} not found in secret {:?}",
                                sel.key, sel.name
                            )));
                        }
                    }
                } else if let Some(sel) = &src.config_map_key_ref {
                    let optional = sel.optional == Some(true);
                    match lookup_object(&sources.config_maps, "configmap", &sel.name, optional)?
                        .and_then(|d| d.get(&sel.key))
                    {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::Missing(format!(
                                "key {:?} not found in configmap {:?}",
                                sel.key, sel.name
                            )));
                        }
                    }
                } else if let Some(field) = &src.field_ref {
                    field_ref_value(pod, &field.field_path).map_err(EnvError::Unsupported)?
                } else {
                    return Err(EnvError::Unsupported(format!(
                        "env {:?}: only value, secretKeyRef, configMapKeyRef and fieldRef are supported",
                        var.name
                    )));
                }
            }
            (Some(v), None) => {
                let lookup = |n: &str| env.get(n).map(str::to_string);
                expand(v, &lookup)
            }
            (None, None) => String::new(),
        };
        env.set(&var.name, value);
    }
    Ok(env)
}

/// Command and args with `$(VAR)` expanded against the final environment.
pub fn expand_command(container: &Container, env: &Env) -> Vec<String> {
    let lookup = |n: &str| env.get(n).map(str::to_string);
    container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|s| expand(s, &lookup))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                          "labels": {"app": "x"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn data(pairs: &[(&str, &str)]) -> Option<ObjectData> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn expansion_rules() {
        let lookup = |n: &str| (n == "A").then(|| "1".to_string());
        assert_eq!(expand("x$(A)y", &lookup), "x1y");
        assert_eq!(expand("$(B)", &lookup), "$(B)");
        assert_eq!(expand("$$(A)", &lookup), "$(A)");
        assert_eq!(expand("$A $", &lookup), "$A $");
        assert_eq!(expand("$(A", &lookup), "$(A");
        assert_eq!(expand("", &lookup), "");
    }

    #[test]
    fn field_refs() {
        let p = pod();
        assert_eq!(field_ref_value(&p, "metadata.name").unwrap(), "p");
        assert_eq!(field_ref_value(&p, "metadata.namespace").unwrap(), "ns");
        assert_eq!(field_ref_value(&p, "metadata.uid").unwrap(), "u-1");
        assert_eq!(field_ref_value(&p, "spec.nodeName").unwrap(), "n1");
        assert_eq!(field_ref_value(&p, "metadata.labels['app']").unwrap(), "x");
        assert_eq!(field_ref_value(&p, "metadata.labels['none']").unwrap(), "");
        assert!(field_ref_value(&p, "status.phase").is_err());
    }

    #[test]
    fn env_order_override_and_refs() {
        let c = container(json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
            "env": [
                {"name": "A", "value": "a"},
                {"name": "B", "value": "$(A)-$(PATH_X)"},
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "x"}}},
                {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "O", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                {"name": "HOSTNAME", "value": "mine"},
            ]
        }));
        let sources = EnvSources {
            secrets: [("s".to_string(), data(&[("k", "secret-v")]))].into(),
            config_maps: [("cm".to_string(), data(&[("x", "1"), ("bad key", "2")]))].into(),
        };
        let env = container_env(&pod(), &c, &sources, default_env("p", 0, None)).unwrap();
        let vars = env.into_vec();
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["PATH", "HOSTNAME", "HOME", "CM_x", "A", "B", "S", "C", "N"]
        );
        let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("HOSTNAME"), Some("mine"));
        assert_eq!(get("B"), Some("a-$(PATH_X)"));
        assert_eq!(get("S"), Some("secret-v"));
        assert_eq!(get("C"), Some("1"));
        assert_eq!(get("N"), Some("ns"));
        assert_eq!(get("HOME"), Some("/root"));
    }

    #[test]
    fn missing_and_unsupported() {
        let c = container(json!({"name": "c", "env": [
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nokey"}}}]}));
        let sources = EnvSources {
            secrets: [("s".to_string(), data(&[("k", "v")]))].into(),
            ..Default::default()
        };
        assert!(matches!(
            container_env(&pod(), &c, &sources, Env::default()),
            Err(EnvError::Missing(m)) if m.contains("nokey")
        ));
        let c = container(json!({"name": "c", "env": [
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]}));
        assert!(matches!(
            container_env(&pod(), &c, &sources, Env::default()),
            Err(EnvError::Missing(_))
        ));
        let c = container(json!({"name": "c", "env": [
            {"name": "R", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}));
        assert!(matches!(
            container_env(&pod(), &c, &sources, Env::default()),
            Err(EnvError::Unsupported(_))
        ));
    }

    #[test]
    fn referenced_names() {
        let c = container(json!({"name": "c",
            "envFrom": [{"secretRef": {"name": "s1"}}],
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}]}));
        let (s, cm) = referenced_sources(&c);
        assert_eq!(s.into_iter().collect::<Vec<_>>(), ["s1"]);
        assert_eq!(cm.into_iter().collect::<Vec<_>>(), ["c1"]);
    }

    #[test]
    fn command_expansion_and_defaults() {
        let c =
            container(json!({"name": "c", "command": ["sh", "-c"], "args": ["echo $(X) $(Y)"]}));
        let mut env = Env::default();
        env.set("X", "1".into());
        assert_eq!(expand_command(&c, &env), ["sh", "-c", "echo 1 $(Y)"]);
        let d = default_env("p", 1000, Some(&("127.0.0.1".to_string(), 6443)));
        assert_eq!(d.get("HOME"), Some("/"));
        assert_eq!(d.get("KUBERNETES_SERVICE_HOST"), Some("127.0.0.1"));
        assert_eq!(d.get("KUBERNETES_SERVICE_PORT"), Some("6443"));
    }
}
