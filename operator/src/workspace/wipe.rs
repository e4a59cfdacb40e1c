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

/// Where the volume is mounted in the wipe pod.
pub const VOLUME_PATH: &str = "/volume";

/// Name of the wipe Job for a claim.
pub fn job_name(claim: &str) -> String {
    super::bounded_name(&format!("wipe-{claim}"))
}

/// A Job in `namespace` (the workspace's, or the vault for a preparation
/// volume never handed over) that overwrites every file on `claim` with zeros, reads it back,
/// removes it and reports what it did in its termination message. It runs as
/// the workspace's uid (so it may overwrite what the workspace wrote) under
/// the same restricted security context, and never restarts on its own: a
/// failed wipe is reported, and the controller decides.
pub fn wipe_job(id: &Identity, namespace: &str, claim: &str, agent_image: &str) -> Job {
    let mut meta = id.meta(&job_name(claim));
    meta.namespace = Some(namespace.into());
    if let Some(l) = meta.labels.as_mut() {
        l.insert(labels::COMPONENT.into(), labels::AGENT.into());
    }
    let container = Container {
        name: "wipe".into(),
        image: Some(agent_image.into()),
        command: Some(vec![
            "agent".into(),
            "wipe".into(),
            "--path".into(),
            VOLUME_PATH.into(),
        ]),
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

/// What `agent wipe` writes to its termination message on success.
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
        let job = serde_json::to_value(wipe_job(
            &identity(),
            "cr-census",
            "scratch",
            "cleanroom/agent:1",
        ))
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
