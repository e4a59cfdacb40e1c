//! Pure builders for an Import's children: the seal claim and Jobs in the
//! import namespace, the claim it is handed over as, and the part of the
//! workspace Deployment that mounts it read-only at `/imports/<name>`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::Identity;
use super::airlock::{scan_job_for, scan_name, seal_job_for, seal_name};
use super::compute::{WORKSPACE, rwo_claim};
use crate::api::import::{IMPORT_FOR_LABEL, IMPORT_NAMESPACE, IMPORTS_MOUNT};
use crate::api::{Import, ProductKind};

/// Label naming the import a child belongs to (its uid: names are reused).
pub const IMPORT_UID_LABEL: &str = "cleanroom.io/import-uid";
/// Label naming the import a child belongs to, to find it from a Job.
pub const IMPORT_LABEL: &str = "cleanroom.io/import";
/// The field manager of the imports' part of the workspace Deployment: the
/// scenario's own apply never removes what this manager owns.
pub const IMPORTS_MANAGER: &str = "cleanroom-imports";
/// Annotation on the workspace namespace while an import is in review:
/// its requester (the Review policy reads it).
pub const IMPORT_REVIEW_ANNOTATION_PREFIX: &str = "import-review.cleanroom.io/";
/// The largest import file the scan accepts: an import is bounded by its
/// staging claim, not by the export limit meant for outputs.
const MAX_IMPORT_FILE_BYTES: u64 = 1 << 40;

/// Labels of an import's children: the scenario's, and the import's.
pub fn import_labels(id: &Identity, import: &Import) -> BTreeMap<String, String> {
    let mut l = id.labels();
    l.insert(
        IMPORT_UID_LABEL.into(),
        import.metadata.uid.clone().unwrap_or_default(),
    );
    l.insert(
        IMPORT_LABEL.into(),
        import.metadata.name.clone().unwrap_or_default(),
    );
    l
}

fn import_meta(id: &Identity, import: &Import, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(IMPORT_NAMESPACE.into()),
        labels: Some(import_labels(id, import)),
        ..ObjectMeta::default()
    }
}

/// The claim the import is handed over as, in the workspace namespace.
pub fn claim_name(import: &str) -> String {
    format!("import-{import}")
}

/// The Deployment's volume for an import: a DNS label whatever the
/// import's name (dots are not allowed there), distinct per name.
pub fn volume_name(import: &str) -> String {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(import.as_bytes()));
    format!("import-{}", &digest[..16])
}

/// Where the workspace reads an import.
pub fn mount_path(import: &str) -> String {
    format!("{IMPORTS_MOUNT}/{import}")
}

/// Why the staging claim cannot be sealed from, or `None`: it must exist,
/// be bound, and be labelled by the staff for this scenario.
pub fn staging_problem(
    claim: Option<&PersistentVolumeClaim>,
    import: &Import,
    scenario: &str,
) -> Option<String> {
    let name = &import.spec.staging_claim;
    let Some(claim) = claim else {
        return Some(format!(
            "staging claim {IMPORT_NAMESPACE}/{name} does not exist"
        ));
    };
    let meant_for = claim
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(IMPORT_FOR_LABEL));
    if meant_for.map(String::as_str) != Some(scenario) {
        return Some(format!(
            "staging claim {IMPORT_NAMESPACE}/{name} is not staged for scenario {scenario} (label {IMPORT_FOR_LABEL})"
        ));
    }
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    (!bound).then(|| format!("staging claim {IMPORT_NAMESPACE}/{name} is not bound"))
}

/// The fresh claim in the import namespace the seal Job copies into.
pub fn seal_claim(
    id: &Identity,
    import: &Import,
    uid: &str,
    size: Quantity,
    storage_class: Option<&str>,
) -> PersistentVolumeClaim {
    rwo_claim(
        import_meta(id, import, &seal_name(uid)),
        size,
        storage_class,
    )
}

/// What the seal Job is asked to copy: each file as `Other`, with its
/// declared schema (an empty one too: a table must declare its columns).
pub fn seal_request(import: &Import) -> String {
    let files: Vec<Value> = import
        .spec
        .files
        .iter()
        .map(|f| json!({"name": f.path, "kind": ProductKind::Other, "schema": f.schema}))
        .collect();
    json!({ "files": files }).to_string()
}

/// The Job, in the import namespace, that copies the named files from the
/// staging claim (read-only) into the seal claim.
pub fn seal_job(id: &Identity, import: &Import, uid: &str, image: &str) -> Job {
    let meta = import_meta(id, import, &seal_name(uid));
    let from = (import.spec.staging_claim.as_str(), "");
    seal_job_for(meta, from, seal_request(import), uid, image)
}

/// The scan's policy: the defaults, with the import file limit.
pub fn scan_policy_map(id: &Identity, import: &Import, uid: &str) -> ConfigMap {
    let policy = json!({ "maxFileBytes": MAX_IMPORT_FILE_BYTES }).to_string();
    ConfigMap {
        metadata: import_meta(id, import, &scan_name(uid)),
        data: Some(BTreeMap::from([("policy.json".to_string(), policy)])),
        ..ConfigMap::default()
    }
}

/// The Job, in the import namespace, that verifies the sealed copy and
/// checks it (file types, identifiers, the declared schema). No raw data:
/// an import is third-party data, not the scenario's.
pub fn scan_job(id: &Identity, import: &Import, uid: &str, manifest: &str, image: &str) -> Job {
    scan_job_for(
        import_meta(id, import, &scan_name(uid)),
        uid,
        manifest,
        image,
        &[],
    )
}

/// The imports' part of the workspace Deployment, applied by
/// [`IMPORTS_MANAGER`]: each handed-over import's claim, read-only, at
/// `/imports/<name>`. Applying it with fewer names removes the others.
pub fn compute_patch(namespace: &str, imports: &[String]) -> Value {
    let mounts: Vec<Value> = imports
        .iter()
        .map(|i| json!({"name": volume_name(i), "mountPath": mount_path(i), "readOnly": true}))
        .collect();
    let volumes: Vec<Value> = imports
        .iter()
        .map(|i| json!({"name": volume_name(i), "persistentVolumeClaim": {"claimName": claim_name(i), "readOnly": true}}))
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": WORKSPACE, "namespace": namespace},
        "spec": {"template": {"spec": {
            "containers": [{"name": WORKSPACE, "volumeMounts": mounts}],
            "volumes": volumes,
        }}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::testing::identity;

    fn import() -> Import {
        serde_json::from_value(json!({
            "apiVersion": "cleanroom.io/v1alpha1", "kind": "Import",
            "metadata": {"name": "weather.2026", "namespace": "cr-census", "uid": "i-1"},
            "spec": {"requester": "alice", "supplier": "Met", "purpose": "p",
                "legalBasis": {"kind": "Contract", "reference": "C-1"},
                "stagingClaim": "weather",
                "files": [{"path": "daily.csv", "schema": [{"name": "day", "type": "date"}]},
                          {"path": "notes.md"}]}
        }))
        .unwrap()
    }

    fn staging(labels: &[(&str, &str)], phase: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "weather", "namespace": IMPORT_NAMESPACE,
                "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn only_a_bound_claim_staged_for_this_scenario_is_sealed_from() {
        let i = import();
        let ok = staging(&[(IMPORT_FOR_LABEL, "census")], "Bound");
        assert_eq!(staging_problem(Some(&ok), &i, "census"), None);
        let other = staging(&[(IMPORT_FOR_LABEL, "other")], "Bound");
        assert!(
            staging_problem(Some(&other), &i, "census")
                .unwrap()
                .contains("not staged for scenario census")
        );
        let unlabelled = staging(&[], "Bound");
        assert!(staging_problem(Some(&unlabelled), &i, "census").is_some());
        let pending = staging(&[(IMPORT_FOR_LABEL, "census")], "Pending");
        assert!(
            staging_problem(Some(&pending), &i, "census")
                .unwrap()
                .contains("not bound")
        );
        assert!(
            staging_problem(None, &i, "census")
                .unwrap()
                .contains("does not exist")
        );
    }

    #[test]
    fn the_seal_reads_the_staging_claim_read_only_and_asks_for_each_schema() {
        let id = identity();
        let job = seal_job(&id, &import(), "i-1", "agent:1");
        assert_eq!(job.metadata.namespace.as_deref(), Some(IMPORT_NAMESPACE));
        let pod = job.spec.unwrap().template.spec.unwrap();
        let source = &pod.volumes.unwrap()[0];
        let claim = source.persistent_volume_claim.as_ref().unwrap();
        assert_eq!(
            (claim.claim_name.as_str(), claim.read_only),
            ("weather", Some(true))
        );
        let request: Value = serde_json::from_str(&seal_request(&import())).unwrap();
        assert_eq!(
            request["files"][0]["schema"],
            json!([{"name": "day", "type": "date"}])
        );
        assert_eq!(request["files"][1]["schema"], json!([]));
        assert_eq!(request["files"][1]["kind"], json!("Other"));
    }

    #[test]
    fn the_compute_patch_mounts_each_import_read_only_under_imports() {
        let patch = compute_patch("cr-census", &["weather.2026".into()]);
        let spec = &patch["spec"]["template"]["spec"];
        let mount = &spec["containers"][0]["volumeMounts"][0];
        assert_eq!(mount["mountPath"], json!("/imports/weather.2026"));
        assert_eq!(mount["readOnly"], json!(true));
        let volume = &spec["volumes"][0];
        assert_eq!(volume["name"], mount["name"]);
        assert_eq!(
            volume["persistentVolumeClaim"],
            json!({"claimName": "import-weather.2026", "readOnly": true})
        );
        assert!(!volume_name("weather.2026").contains('.'));
        assert_ne!(volume_name("a.b"), volume_name("a-b"));
        let none = compute_patch("cr-census", &[]);
        assert_eq!(none["spec"]["template"]["spec"]["volumes"], json!([]));
    }
}
