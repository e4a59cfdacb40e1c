//! Teardown's proof of destruction: an `agent wipe` Job per volume, and the
//! attestation read back from its termination message.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimVolumeSource, Volume, VolumeMount,
};
use serde::Deserialize;

use super::compute::agent_job;
use super::{Identity, labels};
use crate::api::{Time, WipeAttestation};
use crate::rules::quantity::{self, QuantityError};

/// Where the volume is mounted in the wipe pod.
pub const VOLUME_PATH: &str = "/volume";

/// Name of the wipe Job for a claim.
pub fn job_name(claim: &str) -> String {
    super::bounded_name(&format!("wipe-{claim}"))
}

/// Why a claim's capacity cannot bound its wipe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// The capacity is not a Kubernetes quantity.
    #[error("capacity of claim {claim}: {source}")]
    Quantity {
        claim: String,
        #[source]
        source: QuantityError,
    },
    /// Zero or negative: no volume holds that, so no bound can be drawn from it.
    #[error("capacity of claim {claim} is {capacity:?}: not a positive number of bytes")]
    NotPositive { claim: String, capacity: String },
}

/// The `--max-bytes` of the wipe of a volume of `capacity` (a Kubernetes
/// quantity such as `20Gi`), in bytes, rounded up.
///
/// Why the capacity: a volume cannot hold more data than its capacity, and
/// the agent counts only data (holes of sparse files are not written, so
/// they do not count), which is exactly what it will write. More than the
/// capacity therefore means something is wrong (a volume that is not what
/// the claim says, a filesystem that misreports its data): the wipe then
/// fails at once, before writing anything, with a message the teardown
/// shows, rather than running for hours and filling the volume.
pub fn max_bytes(claim: &str, capacity: &str) -> Result<u64, CapacityError> {
    let amount = quantity::parse(capacity).map_err(|source| CapacityError::Quantity {
        claim: claim.into(),
        source,
    })?;
    match u64::try_from(amount.units_ceil()) {
        Ok(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(CapacityError::NotPositive {
            claim: claim.into(),
            capacity: capacity.into(),
        }),
    }
}

/// A Job in `namespace` (the workspace's, or the vault for a preparation
/// volume never handed over) that overwrites the data of every file on `claim`
/// with zeros (holes of sparse files hold none), reads it back, removes it and
/// reports what it did in its termination message. It runs as
/// the workspace's uid (so it may overwrite what the workspace wrote) under
/// the same restricted security context, and never restarts on its own: a
/// failed wipe is reported, and the controller decides.
///
/// It is bounded by the claim's `capacity` (its `status.capacity.storage`,
/// the size of the volume bound to it, or else its storage request): the
/// agent is given `--max-bytes` (see [`max_bytes`]) and refuses, before
/// writing anything, a volume holding more data than that. `None` (capacity
/// unknown) runs it unbounded; a capacity that is not a positive quantity is
/// an error rather than a silently dropped bound.
pub fn wipe_job(
    id: &Identity,
    namespace: &str,
    claim: &str,
    agent_image: &str,
    capacity: Option<&str>,
) -> Result<Job, CapacityError> {
    let bound = capacity.map(|c| max_bytes(claim, c)).transpose()?;
    Ok(job(id, namespace, claim, agent_image, bound))
}

fn job(
    id: &Identity,
    namespace: &str,
    claim: &str,
    agent_image: &str,
    max_bytes: Option<u64>,
) -> Job {
    let mut command = vec![
        "agent".to_string(),
        "wipe".into(),
        "--path".into(),
        VOLUME_PATH.into(),
    ];
    if let Some(bytes) = max_bytes {
        command.extend(["--max-bytes".to_string(), bytes.to_string()]);
    }
    let mut meta = id.meta(&job_name(claim));
    meta.namespace = Some(namespace.into());
    if let Some(l) = meta.labels.as_mut() {
        l.insert(labels::COMPONENT.into(), labels::AGENT.into());
    }
    let container = Container {
        name: "wipe".into(),
        image: Some(agent_image.into()),
        command: Some(command),
        volume_mounts: Some(vec![VolumeMount {
            name: "target".into(),
            mount_path: VOLUME_PATH.into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let volume = Volume {
        name: "target".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: Some(false),
        }),
        ..Volume::default()
    };
    agent_job(meta, container, vec![volume], 3600)
}

/// What `agent wipe` writes to its termination message on success. Other
/// fields (`apparentBytes`, the files' sizes holes included) are ignored:
/// `bytes`, the data overwritten and read back, is what is attested.
#[derive(Deserialize, Debug, PartialEq)]
struct Report {
    files: i64,
    bytes: i64,
    digest: String,
    verified: bool,
}

/// Why a termination message is not an attestation.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// The wipe reported an error (or its message is not a report at all).
    #[error("wipe of {claim} did not report success: {message}")]
    NotAReport { claim: String, message: String },
    /// The report says the read-back did not verify.
    #[error("wipe of {claim} reported unverified bytes")]
    Unverified { claim: String },
    /// The digest is not a SHA-256 hex string.
    #[error("wipe of {claim} reported a malformed digest")]
    BadDigest { claim: String },
}

/// Reads the attestation for `claim` out of a wipe pod's termination message.
pub fn attestation(
    volume: &str,
    claim: &str,
    message: &str,
    completed_at: Time,
) -> Result<WipeAttestation, AttestationError> {
    let report: Report =
        serde_json::from_str(message.trim()).map_err(|_| AttestationError::NotAReport {
            claim: claim.into(),
            message: message.chars().take(512).collect(),
        })?;
    if !report.verified {
        return Err(AttestationError::Unverified {
            claim: claim.into(),
        });
    }
    let hex = report.digest.len() == 64
        && report
            .digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex {
        return Err(AttestationError::BadDigest {
            claim: claim.into(),
        });
    }
    Ok(WipeAttestation {
        volume: volume.into(),
        claim: claim.into(),
        bytes: report.bytes,
        files: report.files,
        digest: report.digest,
        completed_at,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::workspace::testing::identity;

    fn now() -> Time {
        Time(Timestamp::from_second(1_795_392_000).unwrap())
    }

    #[test]
    fn wipe_job_runs_the_agent_over_the_claim_as_an_agent_pod() {
        let job = serde_json::to_value(
            wipe_job(
                &identity(),
                "cr-census",
                "scratch",
                "cleanroom/agent:1",
                None,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(job["metadata"]["name"], json!("wipe-scratch"));
        let pod = &job["spec"]["template"];
        assert_eq!(
            pod["metadata"]["labels"]["cleanroom.io/component"],
            json!("agent")
        );
        assert_eq!(
            pod["metadata"]["labels"]["cleanroom.io/scenario"],
            json!("census")
        );
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["command"], json!(["agent", "wipe", "--path", "/volume"]));
        assert_eq!(c["image"], json!("cleanroom/agent:1"));
        assert_eq!(
            pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            json!("scratch")
        );
        assert_eq!(pod["spec"]["restartPolicy"], json!("Never"));
        assert_eq!(job["spec"]["backoffLimit"], json!(0));
        assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], json!(true));
    }

    fn command(job: &Job) -> Vec<String> {
        job.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers[0].command.clone())
            .expect("a command")
    }

    #[test]
    fn a_bounded_wipe_job_passes_the_capacity_in_bytes() {
        let id = identity();
        let job = wipe_job(&id, "cr-census", "scratch", "a:1", Some("20Gi")).unwrap();
        assert_eq!(
            command(&job),
            [
                "agent",
                "wipe",
                "--path",
                "/volume",
                "--max-bytes",
                "21474836480"
            ]
        );
        let bytes = |capacity| {
            let job = wipe_job(&id, "ns", "c", "a:1", Some(capacity)).unwrap();
            command(&job)[5].clone()
        };
        assert_eq!(bytes("1Ki"), "1024");
        assert_eq!(bytes("500M"), "500000000");
        assert_eq!(bytes("1.5Gi"), "1610612736");
        assert_eq!(bytes("1e3"), "1000");
        // A fraction of a byte rounds up: the bound never cuts below the volume.
        assert_eq!(bytes("1500m"), "2");
        // The rest of the Job is the unbounded one's.
        let mut bounded = serde_json::to_value(&job).unwrap();
        let mut plain =
            serde_json::to_value(wipe_job(&id, "cr-census", "scratch", "a:1", None).unwrap())
                .unwrap();
        bounded["spec"]["template"]["spec"]["containers"][0]["command"] = json!(null);
        plain["spec"]["template"]["spec"]["containers"][0]["command"] = json!(null);
        assert_eq!(bounded, plain);
    }

    #[test]
    fn without_a_capacity_the_wipe_job_is_unbounded() {
        let id = identity();
        let job = wipe_job(&id, "cr-census", "scratch", "a:1", None).unwrap();
        assert_eq!(command(&job), ["agent", "wipe", "--path", "/volume"]);
        assert_eq!(
            job,
            wipe_job(&id, "cr-census", "scratch", "a:1", None).unwrap()
        );
    }

    #[test]
    fn a_capacity_that_bounds_nothing_is_an_error_naming_the_claim() {
        let id = identity();
        for capacity in ["0", "-1Gi", "0Gi"] {
            let err = wipe_job(&id, "ns", "data-pop", "a:1", Some(capacity)).unwrap_err();
            assert_eq!(
                err,
                CapacityError::NotPositive {
                    claim: "data-pop".into(),
                    capacity: capacity.into()
                }
            );
        }
        let err = wipe_job(&id, "ns", "data-pop", "a:1", Some("20 GB")).unwrap_err();
        assert!(matches!(err, CapacityError::Quantity { .. }), "{err:?}");
        assert!(err.to_string().contains("data-pop"), "{err}");
        assert_eq!(max_bytes("c", "7Ei"), Ok(7 << 60));
    }

    #[test]
    fn a_verified_report_becomes_an_attestation() {
        let digest = "ab".repeat(32);
        let msg = format!(r#"{{"files":3,"bytes":4096,"digest":"{digest}","verified":true}}"#);
        let a = attestation("scratch", "scratch", &msg, now()).unwrap();
        assert_eq!(
            (a.files, a.bytes, a.digest.as_str()),
            (3, 4096, digest.as_str())
        );
        assert_eq!(a.completed_at, now());
    }

    #[test]
    fn a_sparse_report_attests_the_data_overwritten() {
        // The agent adds apparentBytes (sizes, holes included); bytes is what
        // was written and read back, and is what the attestation records.
        let digest = "cd".repeat(32);
        let msg = format!(
            r#"{{"files":1,"bytes":8192,"apparentBytes":4294967296,"digest":"{digest}","verified":true}}"#
        );
        let a = attestation("scratch", "scratch", &msg, now()).unwrap();
        assert_eq!((a.files, a.bytes), (1, 8192));
    }

    #[test]
    fn an_error_report_is_not_an_attestation() {
        let err =
            attestation("scratch", "scratch", r#"{"error":"disk on fire"}"#, now()).unwrap_err();
        assert!(matches!(err, AttestationError::NotAReport { .. }));
        assert!(err.to_string().contains("disk on fire"));
    }

    #[test]
    fn an_unverified_or_malformed_report_is_refused() {
        let digest = "ab".repeat(32);
        let unverified = format!(r#"{{"files":1,"bytes":1,"digest":"{digest}","verified":false}}"#);
        assert!(matches!(
            attestation("s", "s", &unverified, now()),
            Err(AttestationError::Unverified { .. })
        ));
        let bad = r#"{"files":1,"bytes":1,"digest":"XYZ","verified":true}"#;
        assert!(matches!(
            attestation("s", "s", bad, now()),
            Err(AttestationError::BadDigest { .. })
        ));
    }
}
