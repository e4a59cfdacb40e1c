//! Dynamic hostPath provisioner (`cleanroom.io/e2e-hostpath`), external-provisioner style:
//! it creates a directory and a PersistentVolume pre-bound to each claim handed to it,
//! and deletes both once such a volume is `Released` with reclaim policy `Delete`.
//! Binding itself is left to the real kube-controller-manager.
//!
//! The loop is level-triggered: watch events (and a periodic tick, for retries) make it
//! look at every claim and volume in its caches; all actions are idempotent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::{COMPONENT, Layout, PROVISIONER_NAME, is_strictly_under};

pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_STORAGE_PROVISIONER_BETA: &str = "volume.beta.kubernetes.io/storage-provisioner";
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const BLOCK_UNSUPPORTED: &str = "block volumes are not supported by the e2e provisioner";

const RESYNC: Duration = Duration::from_secs(5);
/// Volumes provisioned at once.
const PARALLEL_PROVISIONS: usize = 16;

/// What to do with a claim.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimAction {
    /// Not ours, already bound, or being deleted.
    Ignore,
    Provision,
    /// Ours but asks for a raw block device.
    RejectBlock,
}

pub fn claim_action(pvc: &PersistentVolumeClaim) -> ClaimAction {
    let ours = pvc.annotations().iter().any(|(k, v)| {
        (k == ANN_STORAGE_PROVISIONER || k == ANN_STORAGE_PROVISIONER_BETA) && v == PROVISIONER_NAME
    });
    let Some(spec) = pvc.spec.as_ref() else {
        return ClaimAction::Ignore;
    };
    let unbound = spec.volume_name.as_deref().unwrap_or_default().is_empty();
    if !ours || !unbound || pvc.metadata.deletion_timestamp.is_some() {
        return ClaimAction::Ignore;
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return ClaimAction::RejectBlock;
    }
    ClaimAction::Provision
}

/// The deterministic volume name for a claim, so that a retry finds its earlier attempt.
pub fn pv_name(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.metadata
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(|u| format!("pvc-{u}"))
}

/// The PersistentVolume for a claim, pre-bound to it and backed by `dir`.
pub fn build_pv(
    pvc: &PersistentVolumeClaim,
    reclaim_policy: &str,
    dir: &Path,
) -> Result<PersistentVolume, String> {
    let name = pv_name(pvc).ok_or("claim has no uid")?;
    let spec = pvc.spec.as_ref().ok_or("claim has no spec")?;
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .ok_or("claim does not request storage")?;
    let path = dir
        .to_str()
        .ok_or_else(|| format!("volume path {} is not UTF-8", dir.display()))?;
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([(
                ANN_PROVISIONED_BY.to_string(),
                PROVISIONER_NAME.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), storage.clone())])),
            access_modes: spec.access_modes.clone(),
            host_path: Some(HostPathVolumeSource {
                path: path.to_string(),
                type_: Some("DirectoryOrCreate".to_string()),
            }),
            storage_class_name: spec.storage_class_name.clone(),
            persistent_volume_reclaim_policy: Some(reclaim_policy.to_string()),
            volume_mode: Some("Filesystem".to_string()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("PersistentVolumeClaim".to_string()),
                namespace: pvc.metadata.namespace.clone(),
                name: pvc.metadata.name.clone(),
                uid: pvc.metadata.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

/// The reclaim policy a StorageClass asks for (`Delete` when unset).
pub fn reclaim_policy(class: Option<&StorageClass>) -> String {
    class
        .and_then(|c| c.reclaim_policy.clone())
        .unwrap_or_else(|| "Delete".to_string())
}

/// For a volume this provisioner made that is `Released` with policy `Delete`: the
/// directory to remove. Anything not strictly under `volumes_dir` is refused (`Err`), so
/// that a hand-edited volume can never make us delete something else.
pub fn reclaim_dir(pv: &PersistentVolume, volumes_dir: &Path) -> Option<Result<PathBuf, String>> {
    let ours =
        pv.annotations().get(ANN_PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER_NAME);
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let spec = pv.spec.as_ref()?;
    let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
    if !ours || !released || !delete || pv.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let Some(host_path) = spec.host_path.as_ref() else {
        return Some(Err("volume has no hostPath".to_string()));
    };
    let path = PathBuf::from(&host_path.path);
    let lexically_clean = path.is_absolute()
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        });
    if lexically_clean && is_strictly_under(volumes_dir, &path) {
        Some(Ok(path))
    } else {
        Some(Err(format!(
            "refusing to remove {}: not under {}",
            path.display(),
            volumes_dir.display()
        )))
    }
}

struct Provisioner {
    client: Client,
    layout: Layout,
    recorder: Recorder,
    /// Claims already warned about (block mode), to keep from repeating the Event.
    warned: HashSet<String>,
    /// Last failure per claim uid, so an Event is recorded once per distinct failure.
    failures: HashMap<String, String>,
    /// Volumes this process created that the cache may not show yet: without
    /// it every event would retry every recent claim (and get 409s).
    created: HashSet<String>,
}

pub async fn run(client: Client, layout: Layout) -> anyhow::Result<()> {
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let (volumes, volume_writer) = reflector::store::<PersistentVolume>();
    let claim_events = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(claim_writer)
    .map(|e| e.map(|_| ()));
    let volume_events = watcher(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(volume_writer)
    .map(|e| e.map(|_| ()));
    let mut events = stream::select(claim_events.boxed(), volume_events.boxed());

    let recorder = Recorder::new(client.clone(), Reporter::from(COMPONENT));
    let mut this = Provisioner {
        client,
        layout,
        recorder,
        warned: HashSet::new(),
        failures: HashMap::new(),
        created: HashSet::new(),
    };
    let mut tick = tokio::time::interval(RESYNC);
    info!(provisioner = PROVISIONER_NAME, "volume provisioner started");
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    warn!(error = %e, "volume watch error");
                    continue;
                }
                None => anyhow::bail!("volume watch streams ended"),
            },
            _ = tick.tick() => {}
        }
        // One pass for a burst of events, not one per event: take in whatever
        // has already arrived before looking at the state.
        while let Some(Some(ev)) = futures::FutureExt::now_or_never(events.next()) {
            if let Err(e) = ev {
                warn!(error = %e, "volume watch error");
            }
        }
        // Until both caches hold a full list, a missing volume may just be unseen.
        if !is_ready(&claims) || !is_ready(&volumes) {
            continue;
        }
        this.reconcile(&claims, &volumes).await;
    }
}

fn is_ready<K: Resource + Clone + 'static>(store: &Store<K>) -> bool
where
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    matches!(
        futures::FutureExt::now_or_never(store.wait_until_ready()),
        Some(Ok(()))
    )
}

impl Provisioner {
    async fn reconcile(
        &mut self,
        claims: &Store<PersistentVolumeClaim>,
        volumes: &Store<PersistentVolume>,
    ) {
        let mut wanted = Vec::new();
        for pvc in claims.state() {
            let uid = pvc.metadata.uid.clone().unwrap_or_default();
            match claim_action(&pvc) {
                ClaimAction::Ignore => {
                    self.failures.remove(&uid);
                }
                ClaimAction::RejectBlock => {
                    if self.warned.insert(uid) {
                        warn!(claim = %key(pvc.as_ref()), "{BLOCK_UNSUPPORTED}");
                        self.event(
                            pvc.as_ref(),
                            EventType::Warning,
                            "ProvisioningFailed",
                            BLOCK_UNSUPPORTED,
                        )
                        .await;
                    }
                }
                ClaimAction::Provision => {
                    let Some(name) = pv_name(&pvc) else { continue };
                    let known = volumes.get(&ObjectRef::new(&name)).is_some();
                    if !known && !self.created.contains(&name) {
                        wanted.push((pvc, name));
                    }
                }
            }
        }
        // Once the cache shows a volume (or its claim is gone) it needs no memo.
        self.created
            .retain(|name| volumes.get(&ObjectRef::new(name)).is_none());
        // Claims are independent: provision them concurrently, so a burst of
        // hundreds does not queue behind one API round trip each.
        let this = &*self;
        let results: Vec<_> = stream::iter(wanted)
            .map(|(pvc, name)| async move {
                let result = this.provision(pvc.as_ref(), &name).await;
                (pvc, result)
            })
            .buffer_unordered(PARALLEL_PROVISIONS)
            .collect()
            .await;
        for (pvc, result) in results {
            let uid = pvc.metadata.uid.clone().unwrap_or_default();
            match result {
                Ok(()) => {
                    self.failures.remove(&uid);
                    if let Some(name) = pv_name(&pvc) {
                        self.created.insert(name);
                    }
                }
                Err(e) => {
                    let msg = format!("failed to provision volume: {e:#}");
                    warn!(claim = %key(pvc.as_ref()), "{msg}");
                    if self.failures.get(&uid) != Some(&msg) {
                        self.event(pvc.as_ref(), EventType::Warning, "ProvisioningFailed", &msg)
                            .await;
                        self.failures.insert(uid, msg);
                    }
                }
            }
        }
        for pv in volumes.state() {
            match reclaim_dir(&pv, &self.layout.volumes_dir()) {
                None => {}
                Some(Err(e)) => warn!(volume = %pv.name_any(), "{e}"),
                Some(Ok(dir)) => {
                    if let Err(e) = self.reclaim(&pv, &dir).await {
                        warn!(volume = %pv.name_any(), error = %format!("{e:#}"), "failed to delete volume");
                    }
                }
            }
        }
    }

    async fn provision(&self, pvc: &PersistentVolumeClaim, name: &str) -> anyhow::Result<()> {
        let class_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_default();
        let class = if class_name.is_empty() {
            None
        } else {
            Api::<StorageClass>::all(self.client.clone())
                .get_opt(&class_name)
                .await?
        };
        let policy = reclaim_policy(class.as_ref());
        let dir = self.layout.volume_dir(name);
        let pv = build_pv(pvc, &policy, &dir).map_err(anyhow::Error::msg)?;
        create_world_writable_dir(&dir)?;
        match Api::<PersistentVolume>::all(self.client.clone())
            .create(&PostParams::default(), &pv)
            .await
        {
            Ok(_) => {
                info!(claim = %key(pvc), volume = name, path = %dir.display(), "provisioned volume");
                self.event(
                    pvc,
                    EventType::Normal,
                    "ProvisioningSucceeded",
                    &format!("Successfully provisioned volume {name}"),
                )
                .await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!(volume = name, "volume already exists");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn reclaim(&self, pv: &PersistentVolume, dir: &Path) -> anyhow::Result<()> {
        let name = pv.name_any();
        let mut removed = false;
        // Resolve symlinks before deleting anything: the real location must be ours too.
        match dir.canonicalize() {
            Ok(real) => {
                let base = self.layout.volumes_dir().canonicalize()?;
                anyhow::ensure!(
                    is_strictly_under(&base, &real),
                    "refusing to remove {}: resolves outside {}",
                    dir.display(),
                    base.display()
                );
                std::fs::remove_dir_all(&real)?;
                removed = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        match Api::<PersistentVolume>::all(self.client.clone())
            .delete(&name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        // The cache may show the volume once more after it went: report the real work once.
        if removed {
            info!(volume = %name, path = %dir.display(), "deleted released volume");
        } else {
            debug!(volume = %name, "released volume already cleaned up");
        }
        Ok(())
    }

    async fn event(&self, pvc: &PersistentVolumeClaim, type_: EventType, reason: &str, note: &str) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.to_string()),
            action: "Provisioning".to_string(),
            secondary: None,
        };
        match self.recorder.publish(&ev, &pvc.object_ref(&())).await {
            Ok(()) => {}
            // A namespace being deleted refuses new events; nothing is lost.
            Err(kube::Error::Api(s)) if s.code == 403 => {
                debug!(claim = %key(pvc), reason = %s.reason, "event not recorded");
            }
            Err(e) => warn!(claim = %key(pvc), error = %e, "failed to record event"),
        }
    }
}

/// Volume directories are 0777 so that containers running as any user can write to them.
pub fn create_world_writable_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

fn key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut base = json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "1234",
                "annotations": {ANN_STORAGE_PROVISIONER: PROVISIONER_NAME}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "cleanroom-local",
                "resources": {"requests": {"storage": "1Gi"}}}
        });
        merge(&mut base, extra);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    // null removes a key, as in a JSON merge patch
                    if v.is_null() {
                        a.remove(&k);
                    } else {
                        merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn claim_actions() {
        assert_eq!(claim_action(&pvc(json!({}))), ClaimAction::Provision);
        let beta = pvc(json!({"metadata": {"annotations": {
            ANN_STORAGE_PROVISIONER: null, ANN_STORAGE_PROVISIONER_BETA: PROVISIONER_NAME}}}));
        assert_eq!(claim_action(&beta), ClaimAction::Provision);
        let other = pvc(json!({"metadata": {"annotations": {ANN_STORAGE_PROVISIONER: "x.io/y"}}}));
        assert_eq!(claim_action(&other), ClaimAction::Ignore);
        let bound = pvc(json!({"spec": {"volumeName": "pv1"}}));
        assert_eq!(claim_action(&bound), ClaimAction::Ignore);
        let deleting = pvc(json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}));
        assert_eq!(claim_action(&deleting), ClaimAction::Ignore);
        let block = pvc(json!({"spec": {"volumeMode": "Block"}}));
        assert_eq!(claim_action(&block), ClaimAction::RejectBlock);
    }

    #[test]
    fn pv_from_claim() {
        let pv = build_pv(&pvc(json!({})), "Retain", Path::new("/r/volumes/pvc-1234")).unwrap();
        assert_eq!(
            serde_json::to_value(&pv).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": "pvc-1234",
                    "annotations": {"pv.kubernetes.io/provisioned-by": "cleanroom.io/e2e-hostpath"}},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": {"storage": "1Gi"},
                    "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "namespace": "ns", "name": "data", "uid": "1234"},
                    "hostPath": {"path": "/r/volumes/pvc-1234", "type": "DirectoryOrCreate"},
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "cleanroom-local",
                    "volumeMode": "Filesystem"
                }
            })
        );
    }

    #[test]
    fn pv_needs_request_and_uid() {
        let no_req = pvc(json!({"spec": {"resources": {"requests": null}}}));
        assert!(
            build_pv(&no_req, "Delete", Path::new("/x"))
                .unwrap_err()
                .contains("storage")
        );
        let no_uid = pvc(json!({"metadata": {"uid": null}}));
        assert!(build_pv(&no_uid, "Delete", Path::new("/x")).is_err());
    }

    #[test]
    fn reclaim_policy_defaults_to_delete() {
        assert_eq!(reclaim_policy(None), "Delete");
        let sc: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "c"}, "provisioner": PROVISIONER_NAME, "reclaimPolicy": "Retain"}))
        .unwrap();
        assert_eq!(reclaim_policy(Some(&sc)), "Retain");
    }

    fn pv(path: &str, phase: &str, policy: &str, by: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-1", "annotations": {ANN_PROVISIONED_BY: by}},
            "spec": {"hostPath": {"path": path}, "persistentVolumeReclaimPolicy": policy},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn reclaim_only_ours_released_delete_under_root() {
        let base = Path::new("/r/volumes");
        assert_eq!(
            reclaim_dir(
                &pv("/r/volumes/pvc-1", "Released", "Delete", PROVISIONER_NAME),
                base
            ),
            Some(Ok(PathBuf::from("/r/volumes/pvc-1")))
        );
        assert_eq!(
            reclaim_dir(
                &pv("/r/volumes/pvc-1", "Bound", "Delete", PROVISIONER_NAME),
                base
            ),
            None
        );
        assert_eq!(
            reclaim_dir(
                &pv("/r/volumes/pvc-1", "Released", "Retain", PROVISIONER_NAME),
                base
            ),
            None
        );
        assert_eq!(
            reclaim_dir(&pv("/r/volumes/pvc-1", "Released", "Delete", "other"), base),
            None
        );
        for bad in [
            "/etc",
            "/r/volumes",
            "/r/volumes/../x",
            "r/volumes/a",
            "/r/volumes2/a",
        ] {
            assert!(
                matches!(
                    reclaim_dir(&pv(bad, "Released", "Delete", PROVISIONER_NAME), base),
                    Some(Err(_))
                ),
                "{bad}"
            );
        }
    }
}
