//! Pod volumes on the e2e node: resolving each volume to a host directory, projecting
//! Secret/ConfigMap/downward-API data into files, and turning a container's
//! `volumeMounts` into sandbox mounts.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, ServiceAccount, Volume,
};
use kube::Client;
use kube::api::{Api, PostParams};

use super::Layout;
use super::env::{Env, ObjectData, expand, field_ref_value};
use super::sandbox::ContainerMount;

/// Kubernetes' default mode for projected files (0644).
pub const DEFAULT_FILE_MODE: i32 = 0o644;

/// A volume as a host directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedVolume {
    pub host_path: PathBuf,
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeError {
    /// Not ready yet (claim unbound, object missing): retry later.
    NotReady(String),
    /// This node cannot provide it: the pod fails.
    Unsupported(String),
}

/// A file to write into a projected volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectedFile {
    pub path: PathBuf,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The volume source's field name (`hostPath`, `nfs`, ...), for messages.
pub fn volume_kind(volume: &Volume) -> String {
    match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(map)) => map
            .keys()
            .find(|k| *k != "name")
            .cloned()
            .unwrap_or_else(|| "unknown".to_string()),
        _ => "unknown".to_string(),
    }
}

/// A relative path without `..`, as Kubernetes requires for item paths and subPaths.
pub fn validate_rel_path(p: &str) -> Result<PathBuf, String> {
    let path = Path::new(p);
    if p.is_empty() || path.is_absolute() {
        return Err(format!("path {p:?} must be relative and non-empty"));
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("path {p:?} must not contain '..'"));
    }
    Ok(path.components().collect())
}

fn mode_of(mode: Option<i32>, default: i32) -> u32 {
    (mode.unwrap_or(default) & 0o777) as u32
}

/// Files for a Secret/ConfigMap volume or projection: every key, or only `items`.
/// `data` is `None` when the object does not exist.
pub fn project_keys(
    what: &str,
    data: Option<&ObjectData>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Vec<ProjectedFile>, VolumeError> {
    let default_mode = default_mode.unwrap_or(DEFAULT_FILE_MODE);
    let Some(data) = data else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(VolumeError::NotReady(format!("{what} not found")))
        };
    };
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(data
            .iter()
            .filter_map(|(k, v)| {
                Some(ProjectedFile {
                    path: validate_rel_path(k).ok()?,
                    data: v.clone(),
                    mode: mode_of(None, default_mode),
                })
            })
            .collect());
    };
    let mut out = Vec::new();
    for item in items {
        match data.get(&item.key) {
            Some(v) => out.push(ProjectedFile {
                path: validate_rel_path(&item.path).map_err(VolumeError::Unsupported)?,
                data: v.clone(),
                mode: mode_of(item.mode, default_mode),
            }),
            None if optional => {}
            None => {
                return Err(VolumeError::NotReady(format!(
                    "key {:?} not found in {what}",
                    item.key
                )));
            }
        }
    }
    Ok(out)
}

/// Files for a downward-API volume or projection.
pub fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<Vec<ProjectedFile>, VolumeError> {
    items
        .iter()
        .map(|item| {
            let field = item.field_ref.as_ref().ok_or_else(|| {
                VolumeError::Unsupported(format!(
                    "downwardAPI item {:?}: only fieldRef is supported by the e2e node",
                    item.path
                ))
            })?;
            Ok(ProjectedFile {
                path: validate_rel_path(&item.path).map_err(VolumeError::Unsupported)?,
                data: field_ref_value(pod, &field.field_path)
                    .map_err(VolumeError::Unsupported)?
                    .into_bytes(),
                mode: mode_of(item.mode, default_mode.unwrap_or(DEFAULT_FILE_MODE)),
            })
        })
        .collect()
}

/// A container mount and, for a `subPath`, the volume root it must stay inside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedMount {
    pub mount: ContainerMount,
    pub sub_path_of: Option<PathBuf>,
}

/// The container's `volumeMounts` as sandbox mounts (`subPath`/`subPathExpr` applied,
/// read-only if either the mount or the volume says so).
pub fn container_mounts(
    container: &Container,
    volumes: &BTreeMap<String, ResolvedVolume>,
    env: &Env,
) -> Result<Vec<PlannedMount>, String> {
    let lookup = |n: &str| env.get(n).map(str::to_string);
    let mut out = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let vol = volumes
            .get(&vm.name)
            .ok_or_else(|| format!("volumeMount {:?} refers to no volume of the pod", vm.name))?;
        let sub = match (&vm.sub_path, &vm.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(expand(e, &lookup)),
            _ => None,
        };
        let (src, sub_path_of) = match sub {
            Some(s) => (
                vol.host_path
                    .join(validate_rel_path(&s).map_err(|e| format!("subPath: {e}"))?),
                Some(vol.host_path.clone()),
            ),
            None => (vol.host_path.clone(), None),
        };
        out.push(PlannedMount {
            mount: ContainerMount {
                src,
                dst: PathBuf::from(&vm.mount_path),
                read_only: vm.read_only == Some(true) || vol.read_only,
            },
            sub_path_of,
        });
    }
    Ok(out)
}

/// Creates a missing subPath as a directory (as a kubelet does) and checks that it does
/// not lead out of its volume through a symlink.
pub fn prepare_sub_path(planned: &PlannedMount) -> Result<(), String> {
    let Some(base) = &planned.sub_path_of else {
        return Ok(());
    };
    let src = &planned.mount.src;
    if std::fs::symlink_metadata(src).is_err() {
        std::fs::create_dir_all(src)
            .map_err(|e| format!("creating subPath {}: {e}", src.display()))?;
    }
    let real = src
        .canonicalize()
        .map_err(|e| format!("subPath {}: {e}", src.display()))?;
    let real_base = base
        .canonicalize()
        .map_err(|e| format!("volume {}: {e}", base.display()))?;
    if real.starts_with(&real_base) {
        Ok(())
    } else {
        Err(format!(
            "subPath {} leads outside its volume",
            src.display()
        ))
    }
}

/// Replaces `dir` with exactly `files`.
pub fn write_files(dir: &Path, files: &[ProjectedFile]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for f in files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &f.data)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
    }
    Ok(())
}

pub fn secret_data(secret: &Secret) -> ObjectData {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

pub fn config_map_data(cm: &ConfigMap) -> ObjectData {
    let mut out: ObjectData = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    out.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    out
}

fn api_error(what: &str, e: kube::Error) -> VolumeError {
    VolumeError::NotReady(format!("reading {what}: {e}"))
}

pub async fn fetch_secret(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<ObjectData>, VolumeError> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map(|s| s.as_ref().map(secret_data))
        .map_err(|e| api_error(&format!("secret {name:?}"), e))
}

pub async fn fetch_config_map(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<ObjectData>, VolumeError> {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map(|c| c.as_ref().map(config_map_data))
        .map_err(|e| api_error(&format!("configmap {name:?}"), e))
}

/// Resolves every volume of the pod to a host directory, creating emptyDirs and
/// (re)writing projected files under the pod's directory.
pub async fn resolve_volumes(
    client: &Client,
    layout: &Layout,
    pod: &Pod,
) -> Result<BTreeMap<String, ResolvedVolume>, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let pod_dir = layout.pod_dir(uid);
    let fs_group = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.fs_group)
        .and_then(|g| u32::try_from(g).ok());
    let io = |what: String| move |e: std::io::Error| VolumeError::NotReady(format!("{what}: {e}"));
    let mut out = BTreeMap::new();
    for vol in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let projected_dir = pod_dir.join("volumes").join(&vol.name);
        let resolved = if let Some(claim) = &vol.persistent_volume_claim {
            let host_path = claim_host_path(client, ns, &claim.claim_name).await?;
            ResolvedVolume {
                host_path,
                read_only: claim.read_only == Some(true),
            }
        } else if vol.empty_dir.is_some() {
            let dir = pod_dir.join("emptydir").join(&vol.name);
            super::provisioner::create_world_writable_dir(&dir)
                .map_err(io(format!("emptyDir {}", vol.name)))?;
            ResolvedVolume {
                host_path: dir,
                read_only: false,
            }
        } else if let Some(src) = &vol.secret {
            let name = src.secret_name.clone().unwrap_or_default();
            let data = fetch_secret(client, ns, &name).await?;
            let files = project_keys(
                &format!("secret {name:?}"),
                data.as_ref(),
                src.items.as_deref(),
                src.default_mode,
                src.optional == Some(true),
            )?;
            write_files(&projected_dir, &files)
                .map_err(io(format!("secret volume {}", vol.name)))?;
            ResolvedVolume {
                host_path: projected_dir,
                read_only: true,
            }
        } else if let Some(src) = &vol.config_map {
            let data = fetch_config_map(client, ns, &src.name).await?;
            let files = project_keys(
                &format!("configmap {:?}", src.name),
                data.as_ref(),
                src.items.as_deref(),
                src.default_mode,
                src.optional == Some(true),
            )?;
            write_files(&projected_dir, &files)
                .map_err(io(format!("configMap volume {}", vol.name)))?;
            ResolvedVolume {
                host_path: projected_dir,
                read_only: true,
            }
        } else if let Some(src) = &vol.downward_api {
            let files = downward_files(
                pod,
                src.items.as_deref().unwrap_or_default(),
                src.default_mode,
            )?;
            write_files(&projected_dir, &files)
                .map_err(io(format!("downwardAPI volume {}", vol.name)))?;
            ResolvedVolume {
                host_path: projected_dir,
                read_only: true,
            }
        } else if let Some(src) = &vol.projected {
            let mut files = Vec::new();
            for source in src.sources.iter().flatten() {
                if let Some(s) = &source.secret {
                    let data = fetch_secret(client, ns, &s.name).await?;
                    files.extend(project_keys(
                        &format!("secret {:?}", s.name),
                        data.as_ref(),
                        s.items.as_deref(),
                        src.default_mode,
                        s.optional == Some(true),
                    )?);
                } else if let Some(c) = &source.config_map {
                    let data = fetch_config_map(client, ns, &c.name).await?;
                    files.extend(project_keys(
                        &format!("configmap {:?}", c.name),
                        data.as_ref(),
                        c.items.as_deref(),
                        src.default_mode,
                        c.optional == Some(true),
                    )?);
                } else if let Some(d) = &source.downward_api {
                    files.extend(downward_files(
                        pod,
                        d.items.as_deref().unwrap_or_default(),
                        src.default_mode,
                    )?);
                } else if let Some(t) = &source.service_account_token {
                    let token = service_account_token(
                        client,
                        pod,
                        t.audience.clone(),
                        t.expiration_seconds,
                    )
                    .await?;
                    files.push(ProjectedFile {
                        path: validate_rel_path(&t.path).map_err(VolumeError::Unsupported)?,
                        data: token.into_bytes(),
                        mode: mode_of(None, src.default_mode.unwrap_or(DEFAULT_FILE_MODE)),
                    });
                } else {
                    return Err(VolumeError::Unsupported(format!(
                        "projected volume {}: only secret, configMap, downwardAPI and serviceAccountToken sources are supported by the e2e node",
                        vol.name
                    )));
                }
            }
            write_files(&projected_dir, &files)
                .map_err(io(format!("projected volume {}", vol.name)))?;
            ResolvedVolume {
                host_path: projected_dir,
                read_only: true,
            }
        } else {
            return Err(VolumeError::Unsupported(format!(
                "volume {:?} is of type {}; the e2e node supports persistentVolumeClaim, emptyDir, secret, configMap, downwardAPI and projected volumes only",
                vol.name,
                volume_kind(vol)
            )));
        };
        if let Some(gid) = fs_group
            && resolved.host_path.starts_with(pod_dir.join("volumes"))
        {
            grant_group(&resolved.host_path, gid)
                .map_err(io(format!("fsGroup on volume {}", vol.name)))?;
        }
        out.insert(vol.name.clone(), resolved);
    }
    Ok(out)
}

/// What a kubelet does for `fsGroup` on projected files: they belong to the
/// pod's group, which may read them (a Secret at mode 0440, say, is then
/// readable by the non-root pod and nobody else).
fn grant_group(dir: &Path, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            grant_group(&path, gid)?;
        } else {
            std::os::unix::fs::lchown(&path, None, Some(gid))?;
            let mode = std::fs::metadata(&path)?.permissions().mode();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o040))?;
        }
    }
    Ok(())
}

/// The host directory behind a claim, once it is bound.
async fn claim_host_path(client: &Client, ns: &str, claim: &str) -> Result<PathBuf, VolumeError> {
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(claim)
        .await
        .map_err(|e| api_error(&format!("claim {claim:?}"), e))?
        .ok_or_else(|| {
            VolumeError::NotReady(format!("persistentvolumeclaim {claim:?} not found"))
        })?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| bound && !n.is_empty())
        .ok_or_else(|| {
            VolumeError::NotReady(format!("persistentvolumeclaim {claim:?} is not bound yet"))
        })?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&pv_name)
        .await
        .map_err(|e| api_error(&format!("volume {pv_name:?}"), e))?
        .ok_or_else(|| VolumeError::NotReady(format!("persistentvolume {pv_name:?} not found")))?;
    let spec = pv.spec.as_ref();
    let (path, create) = if let Some(hp) = spec.and_then(|s| s.host_path.as_ref()) {
        (
            PathBuf::from(&hp.path),
            hp.type_.as_deref() == Some("DirectoryOrCreate"),
        )
    } else if let Some(local) = spec.and_then(|s| s.local.as_ref()) {
        (PathBuf::from(&local.path), false)
    } else {
        return Err(VolumeError::Unsupported(format!(
            "persistentvolume {pv_name:?} is neither hostPath nor local"
        )));
    };
    if !path.is_dir() {
        if create {
            super::provisioner::create_world_writable_dir(&path)
                .map_err(|e| VolumeError::NotReady(format!("creating {}: {e}", path.display())))?;
        } else {
            return Err(VolumeError::Unsupported(format!(
                "persistentvolume {pv_name:?}: {} is not a directory",
                path.display()
            )));
        }
    }
    Ok(path)
}

/// A bound service account token, as for the kube-api-access projected volume.
async fn service_account_token(
    client: &Client,
    pod: &Pod,
    audience: Option<String>,
    expiration_seconds: Option<i64>,
) -> Result<String, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience.filter(|a| !a.is_empty()).map(|a| vec![a]),
            expiration_seconds: Some(expiration_seconds.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let resp = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .map_err(|e| api_error(&format!("a token for service account {sa:?}"), e))?;
    resp.status.and_then(|s| s.token).ok_or_else(|| {
        VolumeError::NotReady(format!("no token returned for service account {sa:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(pairs: &[(&str, &str)]) -> ObjectData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn file(path: &str, data: &str, mode: u32) -> ProjectedFile {
        ProjectedFile {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn kind_names() {
        let v: Volume =
            serde_json::from_value(json!({"name": "h", "hostPath": {"path": "/"}})).unwrap();
        assert_eq!(volume_kind(&v), "hostPath");
    }

    #[test]
    fn rel_paths() {
        assert_eq!(validate_rel_path("a/./b").unwrap(), PathBuf::from("a/b"));
        assert!(validate_rel_path("../x").is_err());
        assert!(validate_rel_path("a/../../x").is_err());
        assert!(validate_rel_path("/abs").is_err());
        assert!(validate_rel_path("").is_err());
    }

    #[test]
    fn all_keys_with_default_mode() {
        let d = data(&[("a", "1"), ("b", "2")]);
        assert_eq!(
            project_keys("secret s", Some(&d), None, Some(0o400), false).unwrap(),
            vec![file("a", "1", 0o400), file("b", "2", 0o400)]
        );
        assert_eq!(
            project_keys("secret s", Some(&d), None, None, false).unwrap(),
            vec![file("a", "1", 0o644), file("b", "2", 0o644)]
        );
    }

    #[test]
    fn items_select_and_rename() {
        let d = data(&[("a", "1"), ("b", "2")]);
        let items: Vec<KeyToPath> = serde_json::from_value(json!([
            {"key": "b", "path": "dir/bee", "mode": 0o600}
        ]))
        .unwrap();
        assert_eq!(
            project_keys("cm", Some(&d), Some(&items), None, false).unwrap(),
            vec![file("dir/bee", "2", 0o600)]
        );
        let missing: Vec<KeyToPath> =
            serde_json::from_value(json!([{"key": "z", "path": "z"}])).unwrap();
        assert!(matches!(
            project_keys("cm", Some(&d), Some(&missing), None, false),
            Err(VolumeError::NotReady(m)) if m.contains("\"z\"")
        ));
        assert_eq!(
            project_keys("cm", Some(&d), Some(&missing), None, true).unwrap(),
            vec![]
        );
        let escape: Vec<KeyToPath> =
            serde_json::from_value(json!([{"key": "a", "path": "../a"}])).unwrap();
        assert!(matches!(
            project_keys("cm", Some(&d), Some(&escape), None, false),
            Err(VolumeError::Unsupported(_))
        ));
    }

    #[test]
    fn missing_object() {
        assert!(matches!(
            project_keys("secret s", None, None, None, false),
            Err(VolumeError::NotReady(_))
        ));
        assert_eq!(
            project_keys("secret s", None, None, None, true).unwrap(),
            vec![]
        );
    }

    #[test]
    fn downward() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}}))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]))
        .unwrap();
        assert_eq!(
            downward_files(&pod, &items, None).unwrap(),
            vec![file("namespace", "ns", 0o644)]
        );
        let res: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu"}}]))
        .unwrap();
        assert!(matches!(
            downward_files(&pod, &res, None),
            Err(VolumeError::Unsupported(_))
        ));
    }

    #[test]
    fn mounts_from_volume_mounts() {
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "data", "mountPath": "/work"},
            {"name": "data", "mountPath": "/sub", "subPath": "x/y", "readOnly": true},
            {"name": "data", "mountPath": "/expr", "subPathExpr": "$(POD)"},
            {"name": "cfg", "mountPath": "/etc/cfg"}
        ]}))
        .unwrap();
        let vols = BTreeMap::from([
            (
                "data".to_string(),
                ResolvedVolume {
                    host_path: "/r/volumes/pvc-1".into(),
                    read_only: false,
                },
            ),
            (
                "cfg".to_string(),
                ResolvedVolume {
                    host_path: "/r/pods/u/volumes/cfg".into(),
                    read_only: true,
                },
            ),
        ]);
        let mut env = Env::default();
        env.set("POD", "p1".into());
        let got = container_mounts(&c, &vols, &env).unwrap();
        let pm = |src: &str, dst: &str, ro: bool, base: Option<&str>| PlannedMount {
            mount: ContainerMount {
                src: src.into(),
                dst: dst.into(),
                read_only: ro,
            },
            sub_path_of: base.map(PathBuf::from),
        };
        assert_eq!(
            got,
            vec![
                pm("/r/volumes/pvc-1", "/work", false, None),
                pm(
                    "/r/volumes/pvc-1/x/y",
                    "/sub",
                    true,
                    Some("/r/volumes/pvc-1")
                ),
                pm(
                    "/r/volumes/pvc-1/p1",
                    "/expr",
                    false,
                    Some("/r/volumes/pvc-1")
                ),
                pm("/r/pods/u/volumes/cfg", "/etc/cfg", true, None),
            ]
        );
        let bad: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "data", "mountPath": "/w", "subPath": "../../etc"}]}))
        .unwrap();
        assert!(
            container_mounts(&bad, &vols, &env)
                .unwrap_err()
                .contains("subPath")
        );
        let unknown: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "nope", "mountPath": "/w"}]}))
        .unwrap();
        assert!(container_mounts(&unknown, &vols, &env).is_err());
    }

    #[test]
    fn files_are_written_with_modes_and_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("cleanroom-volumes-test-{}", std::process::id()));
        write_files(&dir, &[file("old", "x", 0o644)]).unwrap();
        write_files(&dir, &[file("a/b", "hello", 0o600)]).unwrap();
        assert!(!dir.join("old").exists());
        assert_eq!(std::fs::read_to_string(dir.join("a/b")).unwrap(), "hello");
        let mode = std::fs::metadata(dir.join("a/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sub_path_created_and_confined() {
        let base =
            std::env::temp_dir().join(format!("cleanroom-subpath-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let ok = PlannedMount {
            mount: ContainerMount {
                src: base.join("new/dir"),
                dst: "/x".into(),
                read_only: false,
            },
            sub_path_of: Some(base.clone()),
        };
        prepare_sub_path(&ok).unwrap();
        assert!(base.join("new/dir").is_dir());
        std::os::unix::fs::symlink("/", base.join("escape")).unwrap();
        let bad = PlannedMount {
            mount: ContainerMount {
                src: base.join("escape"),
                dst: "/x".into(),
                read_only: false,
            },
            sub_path_of: Some(base.clone()),
        };
        assert!(prepare_sub_path(&bad).unwrap_err().contains("outside"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn config_map_data_merges_binary() {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": "AAE="}}))
        .unwrap();
        let d = config_map_data(&cm);
        assert_eq!(d.get("a"), Some(&b"1".to_vec()));
        assert_eq!(d.get("b"), Some(&vec![0u8, 1]));
    }
}
