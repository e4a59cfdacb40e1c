//! One audit record: what it says, its canonical JSON line and its hash.
//!
//! A record is stored as one line of compact JSON whose keys are in a fixed
//! order (struct fields in declaration order, maps sorted by key). The hash
//! of a record is the SHA-256 of exactly the bytes stored, so verification
//! never depends on re-serializing: what was written is what is hashed.

use k8s_openapi::jiff::Timestamp;

use crate::api::Time;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev` of the very first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The actor of what the operator did on its own (expiry, provisioning, wipes).
pub const OPERATOR_ACTOR: &str = "cleanroom-operator";

/// What happened to the object.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The object was first seen (with a short summary of its spec).
    Created,
    /// A Dataset's spec changed (a new generation).
    Updated,
    /// A Dataset was deleted.
    Deleted,
    /// The workspace namespace and its guards exist (Provisioned became True).
    Provisioned,
    /// The requested data is prepared and mounted (DataPrepared became True).
    DataPrepared,
    /// Sealed (Suspended became True).
    Suspended,
    /// Unsealed (Suspended became False while not ending).
    Resumed,
    /// The end of validity moved later.
    Renewed,
    /// The validity period ended (Expired became True).
    Expired,
    /// Revoked (Revoked became True).
    Revoked,
    /// One volume was wiped; `after` is its attestation.
    Wiped,
    /// Teardown finished (phase Closed).
    Closed,
    /// Refused by a check the API server cannot make (`reason` says which).
    Rejected,
    /// A person or group was named as a member.
    MemberGranted,
    /// A person or group is no longer a member.
    MemberRemoved,
    /// Older segments were pruned; `after` names the hash of the pruned tail.
    Checkpoint,
    /// An object the operator did not make was found in a workspace and
    /// removed (`reason` names it and who made it).
    IsolationBreach,
    /// An export was asked for (`after`: its files, context and controls).
    Submitted,
    /// An export's files were sealed (`after`: sizes, SHA-256s, manifest hash).
    Sealed,
    /// An export's sealed copy was checked (`after`: the verdicts).
    Checked,
    /// A reviewer's decision was counted.
    Reviewed,
    /// An export was copied to its release claim and verified.
    Released,
    /// An export was deleted before the end of its review.
    Withdrawn,
    /// A released export was taken back by a reviewer (`after`: the manifest
    /// hash and the wipe of the released copy); its content is never
    /// released again.
    Recalled,
    /// An export's step could not finish (`reason` says why).
    Failed,
    /// The operator signed the chain's head (`after`: its sequence number
    /// and hash, the public key and the Ed25519 signature; see
    /// [`super::signing`]).
    SignedHead,
    /// Someone asked the API server to enter a workspace pod (exec, attach,
    /// port-forward, a debug container); `after` names the user, the pod,
    /// the subresource, the response code and the audit ID (see
    /// [`crate::sessions`]).
    SessionOpened,
}

impl Action {
    /// The name used in records and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
            Action::Provisioned => "provisioned",
            Action::DataPrepared => "data-prepared",
            Action::Suspended => "suspended",
            Action::Resumed => "resumed",
            Action::Renewed => "renewed",
            Action::Expired => "expired",
            Action::Revoked => "revoked",
            Action::Wiped => "wiped",
            Action::Closed => "closed",
            Action::Rejected => "rejected",
            Action::MemberGranted => "member-granted",
            Action::MemberRemoved => "member-removed",
            Action::Checkpoint => "checkpoint",
            Action::IsolationBreach => "isolation-breach",
            Action::Submitted => "submitted",
            Action::Sealed => "sealed",
            Action::Checked => "checked",
            Action::Reviewed => "reviewed",
            Action::Released => "released",
            Action::Withdrawn => "withdrawn",
            Action::Recalled => "recalled",
            Action::Failed => "failed",
            Action::SignedHead => "signed-head",
            Action::SessionOpened => "session-opened",
        }
    }

    /// CamelCase, for the reason of a Kubernetes Event.
    pub fn event_reason(self) -> String {
        self.as_str()
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
            })
            .collect()
    }

    /// Every action, for parsing and help.
    pub const ALL: [Action; 27] = [
        Action::Created,
        Action::Updated,
        Action::Deleted,
        Action::Provisioned,
        Action::DataPrepared,
        Action::Suspended,
        Action::Resumed,
        Action::Renewed,
        Action::Expired,
        Action::Revoked,
        Action::Wiped,
        Action::Closed,
        Action::Rejected,
        Action::MemberGranted,
        Action::MemberRemoved,
        Action::Checkpoint,
        Action::IsolationBreach,
        Action::Submitted,
        Action::Sealed,
        Action::Checked,
        Action::Reviewed,
        Action::Released,
        Action::Withdrawn,
        Action::Recalled,
        Action::Failed,
        Action::SignedHead,
        Action::SessionOpened,
    ];
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown action {s:?}; one of {}", names.join(", "))
            })
    }
}

/// A record before it has a place in the chain: what the controllers produce.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    /// Who made the change (see [`super::transitions::requester`]).
    pub actor: String,
    /// `Authorization`, `Scenario` or `Dataset` (or `Ledger` for checkpoints
    /// and signed heads).
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub generation: Option<i64>,
    /// The authorization the object belongs to (itself for an Authorization).
    pub authorization: Option<String>,
    pub action: Action,
    pub reason: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Idempotency key: the same change computed twice (a retry after a
    /// crash or a failed status write) has the same key and is written once.
    pub key: String,
}

/// One record of the ledger, as stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// 1, 2, 3, ... without gaps over the whole ledger.
    pub seq: u64,
    /// When it was appended (RFC 3339, UTC, whole seconds).
    pub time: Time,
    pub actor: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    pub key: String,
    /// SHA-256 (hex) of the previous record's line; [`GENESIS`] for the first.
    pub prev: String,
}

impl Record {
    /// Places a draft in the chain.
    pub fn new(draft: Draft, seq: u64, time: Timestamp, prev: &str) -> Record {
        Record {
            seq,
            time: Time(time),
            actor: draft.actor,
            kind: draft.kind,
            name: draft.name,
            uid: draft.uid,
            generation: draft.generation,
            authorization: draft.authorization,
            action: draft.action,
            reason: draft.reason,
            before: draft.before.map(canonical),
            after: draft.after.map(canonical),
            key: draft.key,
            prev: prev.to_string(),
        }
    }

    /// The line that is stored and hashed.
    pub fn line(&self) -> String {
        // Serializing a struct of strings, numbers and JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a stored line.
    pub fn parse(line: &str) -> Result<Record, serde_json::Error> {
        serde_json::from_str(line)
    }
}

/// SHA-256 (hex) of a stored line.
pub fn hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// The ConfigMap data key of a record: its sequence number, zero-padded so
/// that keys sort in sequence order.
pub fn data_key(seq: u64) -> String {
    format!("{seq:012}")
}

/// `value` with every object's keys sorted (whatever serde_json's map
/// ordering), so that the same content always gives the same line.
pub fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn draft(action: Action, key: &str) -> Draft {
        Draft {
            actor: "alice".into(),
            kind: "Scenario".into(),
            name: "census".into(),
            uid: "u-1".into(),
            generation: Some(2),
            authorization: Some("acme".into()),
            action,
            reason: Some("finding 7".into()),
            before: Some(json!({"phase": "Ready"})),
            after: Some(json!({"phase": "Suspended"})),
            key: key.into(),
        }
    }

    #[test]
    fn a_record_round_trips_through_its_line_and_hashes_its_bytes() {
        let t: Timestamp = "2026-03-01T08:00:00Z".parse().expect("time");
        let r = Record::new(draft(Action::Suspended, "u-1/suspended/x"), 7, t, GENESIS);
        let line = r.line();
        assert!(line.starts_with(r#"{"seq":7,"time":"2026-03-01T08:00:00Z","actor":"alice""#));
        assert!(line.contains(r#""action":"suspended""#), "{line}");
        assert_eq!(Record::parse(&line).expect("parses"), r);
        assert_eq!(hash(&line).len(), 64);
        assert_eq!(hash(&line), hash(&Record::parse(&line).expect("p").line()));
        // One byte more or less is another hash.
        assert_ne!(hash(&line), hash(&line.replace("finding 7", "finding 8")));
        // A known vector: the SHA-256 of nothing.
        assert_eq!(
            hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn canonical_sorts_keys_at_every_depth() {
        let v = canonical(json!({"b": {"z": 1, "a": [{"y": 1, "x": 2}]}, "a": 0}));
        assert_eq!(
            serde_json::to_string(&v).expect("json"),
            r#"{"a":0,"b":{"a":[{"x":2,"y":1}],"z":1}}"#
        );
    }

    #[test]
    fn actions_parse_from_their_names_and_become_event_reasons() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
            assert_eq!(
                serde_json::to_value(a).expect("json"),
                json!(a.as_str()),
                "serde name of {a:?}"
            );
        }
        assert_eq!(Action::DataPrepared.event_reason(), "DataPrepared");
        assert_eq!(Action::MemberGranted.event_reason(), "MemberGranted");
        assert!("exploded".parse::<Action>().is_err());
        assert_eq!(data_key(42), "000000000042");
    }
}
