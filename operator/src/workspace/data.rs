//! Data preparation: for each dataset a scenario requests, an
//! `agent desensitize` Job in the vault reads the raw claim (read-only) and
//! writes the sampled, masked file into a fresh claim; that volume is then
//! handed over to the workspace as claim `data-<dataset>`, mounted read-only
//! at `/data/<dataset>`.
//!
//! Everything that touches raw data, and the scenario's pseudonym key, stays
//! in the vault namespace. What the workspace namespace receives is one
//! claim per dataset, bound to a volume that only ever held prepared data.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Secret,
    SecretVolumeSource, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::{Value, json};

use super::compute::agent_job;
use super::{Identity, bounded_name, labels};
use crate::api::dataset::{DataFormat, VAULT_NAMESPACE};
use crate::api::{DataRequest, Dataset, PreparedData, Time};

/// Prefix of the workspace claim holding one prepared dataset.
pub const DATA_CLAIM_PREFIX: &str = "data-";
/// Where prepared datasets are mounted in the workspace: `/data/<dataset>`.
pub const DATA_ROOT: &str = "/data";
/// [`labels::COMPONENT`] of the vault objects of a preparation.
pub const PREPARATION: &str = "preparation";
/// Label naming the dataset a preparation object is for.
pub const DATASET_LABEL: &str = "cleanroom.io/dataset";
/// Key of the pseudonym key in its Secret.
pub const KEY: &str = "key";
/// Bytes of a fresh pseudonym key (HMAC-SHA256).
pub const KEY_BYTES: usize = 32;
/// Annotation on a volume being handed over: its reclaim policy before it
/// was set to `Retain` for the move, restored once the workspace claim binds.
pub const RECLAIM_ANNOTATION: &str = "cleanroom.io/reclaim-policy";

const RAW_PATH: &str = "/raw";
const OUTPUT_PATH: &str = "/prepared";
const PLAN_PATH: &str = "/plan";
const KEY_PATH: &str = "/key";
const PLAN_FILE: &str = "plan.json";

/// The workspace claim of a dataset: `data-<dataset>`.
pub fn data_claim_name(dataset: &str) -> String {
    format!("{DATA_CLAIM_PREFIX}{dataset}")
}

/// Where a dataset is mounted in the workspace.
pub fn mount_path(dataset: &str) -> String {
    format!("{DATA_ROOT}/{dataset}")
}

/// Name of the vault Secret holding the scenario's pseudonym key. Vault
/// names come from the scenario's uid, never its name: names are reused
/// (a scenario deleted and made again) and `<scenario>-<dataset>` is
/// ambiguous (`a-b` + `c` and `a` + `b-c`), a uid is neither.
pub fn key_name(id: &Identity) -> String {
    format!("key-{}", id.uid)
}

/// Name shared by the plan ConfigMap, the output claim and the Job of one
/// dataset's preparation (at most 63 characters, as a Job name must be).
/// The uid has a fixed length, so the dataset part cannot shift into it.
pub fn preparation_name(id: &Identity, dataset: &str) -> String {
    bounded_name(&format!("prep-{}-{dataset}", id.uid))
}

/// The file name the workspace sees: the raw file's own name.
pub fn file_name(dataset: &Dataset) -> String {
    dataset
        .spec
        .source
        .path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("data")
        .to_string()
}

fn vault_meta(id: &Identity, name: &str, dataset: Option<&str>) -> ObjectMeta {
    let mut l = id.labels();
    l.insert(labels::COMPONENT.into(), PREPARATION.into());
    if let Some(d) = dataset {
        l.insert(DATASET_LABEL.into(), d.into());
    }
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(VAULT_NAMESPACE.into()),
        labels: Some(l),
        owner_references: Some(vec![id.owner()]),
        ..ObjectMeta::default()
    }
}

/// Label selector of every vault object of this scenario's preparations.
pub fn vault_selector(id: &Identity) -> String {
    format!("{},{}={PREPARATION}", id.selector(), labels::COMPONENT)
}

/// The scenario's pseudonym key: created once (never applied again, never
/// rotated while the scenario lives), immutable, and only in the vault.
pub fn key_secret(id: &Identity, key: &[u8]) -> Secret {
    Secret {
        metadata: vault_meta(id, &key_name(id), None),
        immutable: Some(true),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(KEY.into(), ByteString(key.to_vec()))])),
        ..Secret::default()
    }
}

/// The agent's plan for one dataset: the requested columns in request order,
/// each with the scenario's rule or else the dataset's default, and the
/// sampling. The spellings are the `Dataset` API's, which the agent reads.
pub fn plan(dataset: &Dataset, request: &DataRequest) -> Value {
    let columns: Vec<Value> = request
        .columns
        .iter()
        .filter_map(|name| {
            let column = dataset.spec.column(name)?;
            let rule = request
                .rules
                .iter()
                .find(|r| &r.column == name)
                .map_or(&column.rule, |r| &r.rule);
            Some(json!({
                "name": column.name,
                "type": column.type_,
                "sensitivity": column.sensitivity,
                "rule": rule,
            }))
        })
        .collect();
    let mut plan = json!({ "columns": columns });
    if let Some(s) = &request.sampling {
        // The agent's seeds are unsigned; a negative seed keeps its bits.
        let seed = s.seed as u64;
        plan["sampling"] = match (s.fraction, s.rows) {
            (Some(fraction), _) => json!({"fraction": fraction, "seed": seed}),
            (None, Some(rows)) => json!({"rows": rows.max(0), "seed": seed}),
            (None, None) => Value::Null,
        };
        if plan["sampling"].is_null() {
            plan.as_object_mut().map(|p| p.remove("sampling"));
        }
    }
    plan
}

/// The plan as a ConfigMap in the vault.
pub fn plan_config_map(id: &Identity, dataset: &Dataset, request: &DataRequest) -> ConfigMap {
    let text = serde_json::to_string_pretty(&plan(dataset, request)).unwrap_or_default();
    ConfigMap {
        metadata: vault_meta(
            id,
            &preparation_name(id, &request.dataset),
            Some(&request.dataset),
        ),
        data: Some(BTreeMap::from([(PLAN_FILE.into(), text)])),
        ..ConfigMap::default()
    }
}

/// The fresh claim the agent writes the prepared file into; as large as the
/// raw claim (the output never holds more rows or columns than the input).
pub fn output_claim(
    id: &Identity,
    dataset: &str,
    size: Quantity,
    storage_class: Option<&str>,
) -> PersistentVolumeClaim {
    let meta = vault_meta(id, &preparation_name(id, dataset), Some(dataset));
    super::compute::rwo_claim(meta, size, storage_class)
}

/// The agent's `--format` (or `--raw FORMAT:...`) spelling of a format.
pub fn format_arg(format: DataFormat) -> &'static str {
    match format {
        DataFormat::Csv => "csv",
        DataFormat::JsonLines => "jsonl",
        DataFormat::Parquet => "parquet",
    }
}

/// The Job that runs `agent desensitize` over the raw file: the raw claim is
/// mounted read-only, the output claim read-write, the plan and the key as
/// files. Same restricted pod as every agent; it never restarts on its own.
pub fn preparation_job(id: &Identity, dataset: &Dataset, agent_image: &str) -> Job {
    let name = dataset.metadata.name.clone().unwrap_or_default();
    let job_name = preparation_name(id, &name);
    let meta = vault_meta(id, &job_name, Some(&name));
    let file = file_name(dataset);
    let mount = |volume: &str, path: &str, read_only: bool| VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let command = vec![
        "agent".to_string(),
        "desensitize".into(),
        "--input".into(),
        format!("{RAW_PATH}/{}", dataset.spec.source.path),
        "--output".into(),
        format!("{OUTPUT_PATH}/{file}"),
        "--format".into(),
        format_arg(dataset.spec.format).into(),
        "--plan".into(),
        format!("{PLAN_PATH}/{PLAN_FILE}"),
        "--key-file".into(),
        format!("{KEY_PATH}/{KEY}"),
    ];
    let container = Container {
        name: "desensitize".into(),
        image: Some(agent_image.into()),
        command: Some(command),
        volume_mounts: Some(vec![
            mount("raw", RAW_PATH, true),
            mount("prepared", OUTPUT_PATH, false),
            mount("plan", PLAN_PATH, true),
            mount("key", KEY_PATH, true),
        ]),
        ..Container::default()
    };
    let volumes = vec![
        Volume {
            name: "raw".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: dataset.spec.source.claim_name.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        },
        Volume {
            name: "prepared".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: job_name.clone(),
                read_only: Some(false),
            }),
            ..Volume::default()
        },
        Volume {
            name: "plan".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: job_name.clone(),
                items: Some(vec![KeyToPath {
                    key: PLAN_FILE.into(),
                    path: PLAN_FILE.into(),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(0o444),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "key".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(key_name(id)),
                items: Some(vec![KeyToPath {
                    key: KEY.into(),
                    path: KEY.into(),
                    ..KeyToPath::default()
                }]),
                // Readable by the agent's group (fsGroup) only.
                default_mode: Some(0o440),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    agent_job(meta, container, volumes, 6 * 3600)
}

/// The workspace claim that takes over a prepared volume: bound by name to
/// it, same class, modes and size, so that the volume's new `claimRef` binds.
pub fn workspace_claim(
    id: &Identity,
    dataset: &str,
    volume: &PersistentVolume,
) -> PersistentVolumeClaim {
    let mut meta = id.meta(&data_claim_name(dataset));
    if let Some(l) = meta.labels.as_mut() {
        l.insert(DATASET_LABEL.into(), dataset.into());
    }
    claim_for_volume(meta, volume)
}

/// A claim that takes over `volume` when its `claimRef` moves to it: bound
/// by name, same class, modes and size.
pub fn claim_for_volume(meta: ObjectMeta, volume: &PersistentVolume) -> PersistentVolumeClaim {
    let spec = volume.spec.clone().unwrap_or_default();
    PersistentVolumeClaim {
        metadata: meta,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: spec.access_modes.clone(),
            storage_class_name: spec.storage_class_name.clone(),
            volume_name: volume.metadata.name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: spec
                    .capacity
                    .as_ref()
                    .and_then(|c| c.get("storage"))
                    .map(|q| BTreeMap::from([("storage".to_string(), q.clone())])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// What `agent desensitize` writes to its termination message (the fields
/// the operator keeps; the report has more).
#[derive(Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Report {
    ok: bool,
    #[serde(default)]
    rows_in: i64,
    #[serde(default)]
    rows_out: i64,
    #[serde(default)]
    bytes_out: i64,
    #[serde(default)]
    output_sha256: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    malformed: i64,
    #[serde(default)]
    malformed_lines: Vec<MalformedRow>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct MalformedRow {
    line: u64,
    reason: String,
}

/// Reads a preparation's outcome out of its pod's termination message.
/// `Err` carries a message for the `DataPrepared` condition (never a value
/// of the data: the agent's report holds none).
pub fn prepared(
    dataset: &str,
    (volume, capacity): (&str, &str),
    message: &str,
    at: Time,
) -> Result<PreparedData, String> {
    let Ok(report) = serde_json::from_str::<Report>(message.trim()) else {
        let text: String = message.trim().chars().take(300).collect();
        return Err(format!(
            "dataset {dataset}: the agent did not report: {text}"
        ));
    };
    let digest = report.output_sha256.clone().unwrap_or_default();
    let hex = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !report.ok || !hex {
        let mut why = report
            .error
            .clone()
            .unwrap_or_else(|| "the agent reported no output".into());
        if report.malformed > 0 {
            let lines: Vec<String> = report
                .malformed_lines
                .iter()
                .map(|m| format!("line {}: {}", m.line, m.reason))
                .collect();
            why = format!(
                "{why} ({} malformed row(s); {})",
                report.malformed,
                lines.join("; ")
            );
        }
        return Err(format!("dataset {dataset}: {why}"));
    }
    Ok(PreparedData {
        dataset: dataset.into(),
        volume: volume.into(),
        capacity: capacity.into(),
        rows_in: report.rows_in,
        rows_out: report.rows_out,
        bytes: report.bytes_out,
        digest,
        prepared_at: at,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::workspace::testing::identity;

    fn dataset() -> Dataset {
        serde_yaml::from_str(crate::fixtures::DATASET_YAML).expect("dataset fixture")
    }

    fn request(yaml: &str) -> DataRequest {
        serde_yaml::from_str(yaml).expect("request")
    }

    #[test]
    fn plan_lists_requested_columns_in_order_with_the_stronger_rule() {
        let r = request(
            "{dataset: population-register, columns: [mobile, district, resident_id],
              sampling: {fraction: 0.1, seed: 42},
              rules: [{column: mobile, rule: {kind: hash}}]}",
        );
        let p = plan(&dataset(), &r);
        let names: Vec<&str> = p["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["mobile", "district", "resident_id"]);
        assert_eq!(p["columns"][0]["rule"], json!({"kind": "hash"}));
        assert_eq!(p["columns"][0]["sensitivity"], json!("Mobile"));
        assert_eq!(p["columns"][0]["type"], json!("string"));
        // Not overridden: the dataset's default.
        assert_eq!(p["columns"][2]["rule"], json!({"kind": "hash"}));
        assert_eq!(p["columns"][1]["rule"], json!({"kind": "keep"}));
        assert_eq!(p["sampling"], json!({"fraction": 0.1, "seed": 42}));
    }

    #[test]
    fn plan_without_sampling_takes_every_row_and_rows_sampling_is_kept() {
        let all = plan(
            &dataset(),
            &request("{dataset: population-register, columns: [district]}"),
        );
        assert!(all.get("sampling").is_none());
        let rows = plan(
            &dataset(),
            &request(
                "{dataset: population-register, columns: [district], sampling: {rows: 100, seed: -1}}",
            ),
        );
        assert_eq!(rows["sampling"], json!({"rows": 100, "seed": u64::MAX}));
    }

    #[test]
    fn preparation_reads_raw_read_only_and_keeps_key_and_raw_in_the_vault() {
        let id = identity();
        let d = dataset();
        let job = serde_json::to_value(preparation_job(&id, &d, "agent:1")).unwrap();
        assert_eq!(job["metadata"]["namespace"], json!("cleanroom-vault"));
        assert_eq!(
            job["metadata"]["labels"]["cleanroom.io/dataset"],
            json!("population-register")
        );
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], json!(false));
        assert_eq!(pod["securityContext"]["runAsUser"], json!(65532));
        let volumes = pod["volumes"].as_array().unwrap();
        let raw = volumes.iter().find(|v| v["name"] == "raw").unwrap();
        assert_eq!(
            raw["persistentVolumeClaim"],
            json!({"claimName": d.spec.source.claim_name, "readOnly": true})
        );
        let c = &pod["containers"][0];
        let mounts = c["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .all(|m| m["readOnly"] == json!(m["name"] != "prepared"))
        );
        let command: Vec<&str> = c["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(&command[..2], ["agent", "desensitize"]);
        assert!(command.contains(&"--key-file"));
        assert!(command.contains(&format!("/raw/{}", d.spec.source.path).as_str()));
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"]["cleanroom.io/component"],
            json!("agent")
        );
        let key = key_secret(&id, &[7; KEY_BYTES]);
        assert_eq!(key.metadata.namespace.as_deref(), Some("cleanroom-vault"));
        assert_eq!(key.immutable, Some(true));
    }

    #[test]
    fn names_fit_a_job_and_stay_distinct() {
        let mut id = identity();
        id.uid = "0123abcd-0000-1111-2222-333344445555".into();
        let a = preparation_name(&id, &"a".repeat(63));
        let b = preparation_name(&id, &format!("{}b", "a".repeat(62)));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(
            preparation_name(&identity(), "population-register"),
            "prep-0000-1111-population-register"
        );
        assert_eq!(
            data_claim_name("population-register"),
            "data-population-register"
        );
        assert_eq!(
            mount_path("population-register"),
            "/data/population-register"
        );
    }

    #[test]
    fn vault_names_never_collide_between_scenarios() {
        // Scenario `a-b` asking for dataset `c` and scenario `a` asking for
        // dataset `b-c` once shared `prep-a-b-c`: one scenario received the
        // other's data, prepared under the other's key.
        let scenario = |name: &str, uid: &str| Identity {
            scenario: name.into(),
            uid: uid.into(),
            authorization: "acme".into(),
            namespace: format!("cr-{name}"),
        };
        let ab = scenario("a-b", "11111111-1111-1111-1111-111111111111");
        let a = scenario("a", "22222222-2222-2222-2222-222222222222");
        assert_ne!(preparation_name(&ab, "c"), preparation_name(&a, "b-c"));
        assert_ne!(key_name(&ab), key_name(&a));
        // The same name made again is another scenario, with other names.
        let again = scenario("a", "33333333-3333-3333-3333-333333333333");
        assert_ne!(preparation_name(&a, "c"), preparation_name(&again, "c"));
        assert_ne!(key_name(&a), key_name(&again));
    }

    #[test]
    fn reports_become_records_or_reasons() {
        let at = Time(Timestamp::UNIX_EPOCH);
        let ok = format!(
            r#"{{"ok":true,"format":"csv","rowsIn":10,"rowsOut":3,"bytesOut":99,"outputSha256":"{}"}}"#,
            "a".repeat(64)
        );
        let p = prepared("pop", ("pv-1", "1Gi"), &ok, at.clone()).unwrap();
        assert_eq!((p.rows_in, p.rows_out, p.bytes), (10, 3, 99));
        assert_eq!((p.volume.as_str(), p.capacity.as_str()), ("pv-1", "1Gi"));
        let bad = r#"{"ok":false,"malformed":2,"malformedLines":[{"line":3,"reason":"expected 6 fields, found 2"}],"error":"2 malformed rows"}"#;
        let why = prepared("pop", ("pv-1", "1Gi"), bad, at.clone()).unwrap_err();
        assert!(why.contains("line 3: expected 6 fields"), "{why}");
        assert!(why.starts_with("dataset pop:"), "{why}");
        let garbage = prepared("pop", ("pv-1", "1Gi"), "exec format error", at).unwrap_err();
        assert!(
            garbage.contains("did not report: exec format error"),
            "{garbage}"
        );
    }
}
