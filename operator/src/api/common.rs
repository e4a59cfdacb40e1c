//! Types and CEL rules shared by more than one kind.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::core::Rule;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Root rule for kinds whose name becomes part of a namespace name.
pub(crate) fn short_dns_label_name_rule() -> Rule {
    Rule::new("self.metadata.name.size() <= 60 && !self.metadata.name.contains('.')").message(
        "metadata.name must be a DNS label of at most 60 characters (no dots), because the \
         workspace namespace is named cr-<name>; choose a shorter name",
    )
}

/// Root rule for Datasets: their names become volume and mount names.
pub(crate) fn dns_label_name_rule() -> Rule {
    Rule::new("self.metadata.name.size() <= 63 && !self.metadata.name.contains('.')").message(
        "metadata.name must be a DNS label (at most 63 characters, no dots), because it names \
         volumes and the mount path /data/<name>; choose a name without dots",
    )
}

/// Rule on a spec with `state` and `reason`: leaving `Active` must be explained.
pub(crate) fn reason_required_rule() -> Rule {
    Rule::new("self.state == 'Active' || (has(self.reason) && self.reason.trim().size() > 0)")
        .message(
            "state Suspended or Revoked requires a non-empty reason (the finding or decision \
             behind it, recorded in the audit trail): set spec.reason",
        )
        .field_path(".reason")
}

/// Transition rule on `state`: revocation cannot be undone.
pub(crate) fn revoked_is_final_rule() -> Rule {
    Rule::new("oldSelf != 'Revoked' || self == 'Revoked'").message(
        "state Revoked is final and cannot be changed back; to work again, create a new object",
    )
}

/// Schema transform for enums used as `Option<_>` fields: kube hoists the
/// enum's own schema over the field's, which would replace the field's doc
/// comment with the type's; without a type description the field's stays.
pub(crate) fn without_description(schema: &mut Schema) {
    schema.remove("description");
}

/// The desired state of an Authorization or a Scenario, set by the approval
/// system.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum State {
    /// Work may go on (within the validity period).
    #[default]
    Active,
    /// Sealed: compute is stopped and access removed, data is kept; set back to
    /// Active to resume. Needs a reason.
    Suspended,
    /// Terminated for good: everything is torn down and wiped. Needs a reason;
    /// cannot be undone.
    Revoked,
}

impl State {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "Active",
            State::Suspended => "Suspended",
            State::Revoked => "Revoked",
        }
    }
}

/// Real-name people who may enter workspaces, as Kubernetes RBAC subjects.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Members {
    /// User names exactly as the cluster's authenticator reports them
    /// (for example the OIDC `sub` or e-mail claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub users: Vec<String>,
    /// Group names exactly as the cluster's authenticator reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub groups: Vec<String>,
}

impl Members {
    /// True if nobody is named.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// A Kubernetes quantity (such as `500m`, `2`, `8Gi`) that must be greater
/// than zero. Like a container's resources it may be written as a string or,
/// for whole numbers, as an integer (`cpu: 2`); it is kept as a string.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
pub struct PositiveQuantity(pub Quantity);

impl<'de> Deserialize<'de> for PositiveQuantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum IntOrString {
            Int(i64),
            String(String),
        }
        Ok(match IntOrString::deserialize(deserializer)? {
            IntOrString::Int(i) => PositiveQuantity::new(i.to_string()),
            IntOrString::String(s) => PositiveQuantity::new(s),
        })
    }
}

impl PositiveQuantity {
    /// Wrap a quantity string; it is parsed only when used
    /// (see [`crate::rules::quantity`]).
    pub fn new(s: impl Into<String>) -> Self {
        PositiveQuantity(Quantity(s.into()))
    }

    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.0.0
    }
}

impl From<&str> for PositiveQuantity {
    fn from(s: &str) -> Self {
        PositiveQuantity::new(s)
    }
}

impl std::fmt::Display for PositiveQuantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JsonSchema for PositiveQuantity {
    fn schema_name() -> Cow<'static, str> {
        "PositiveQuantity".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "maxLength": 64,
            "x-kubernetes-validations": [{
                "rule": "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))",
                "message": "must be a positive Kubernetes quantity, such as 2, \"500m\" or \"8Gi\"",
            }],
        })
    }
}

/// Proof that one volume was destroyed: what `agent wipe` reported after
/// overwriting every file with zeros and reading it back, recorded before the
/// claim was deleted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WipeAttestation {
    /// Role of the volume in the workspace (for example `scratch` or `data-<dataset>`).
    #[schemars(length(max = 253))]
    pub volume: String,
    /// Name of the PersistentVolumeClaim that was wiped.
    #[schemars(length(max = 253))]
    pub claim: String,
    /// Bytes overwritten with zeros and read back as zeros.
    pub bytes: i64,
    /// Regular files overwritten and removed.
    pub files: i64,
    /// SHA-256 (hex) over the sorted (relative path, size) list of wiped
    /// files: identifies what was wiped without revealing any content.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub digest: String,
    /// When the wipe finished.
    pub completed_at: Time,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_from_strings_and_integers() {
        let from_string: PositiveQuantity = serde_json::from_str(r#""500m""#).expect("string");
        assert_eq!(from_string.as_str(), "500m");
        let from_int: PositiveQuantity = serde_json::from_str("2").expect("integer");
        assert_eq!(from_int.as_str(), "2");
        assert!(
            serde_json::from_str::<PositiveQuantity>("0.5").is_err(),
            "floats are not quantities"
        );
        assert_eq!(
            serde_json::to_string(&from_int).expect("serializes"),
            r#""2""#
        );
    }
}
