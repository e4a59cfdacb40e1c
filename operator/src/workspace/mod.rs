//! Pure builders of a scenario's workspace: spec in, Kubernetes objects out.
//!
//! Everything the operator creates for a scenario is built here, so it can be
//! unit-tested, reviewed offline (`cleanroom render`) and applied by the
//! controller with server-side apply. Every object carries the labels in
//! [`labels`] so that it can be found (and pruned) by selector.
//!
//! - [`isolation`]: the namespace and its guards (network policy, quota, limits).
//! - [`access`]: the service account and the members' role bindings.
//! - [`compute`]: the scratch claim and the workspace Deployment or Job.
//! - [`data`]: the vault preparation of each dataset and its hand-over.
//! - [`wipe`]: the `agent wipe` Job run over each volume at teardown.
//! - [`airlock`]: an export's sealed copy, its agent Jobs, the tally of reviews.

pub mod access;
pub mod airlock;
pub mod compute;
pub mod data;
pub mod import;
pub mod isolation;
pub mod wipe;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::api::Scenario;

/// Label keys and values on every child object.
pub mod labels {
    /// The scenario a child belongs to.
    pub const SCENARIO: &str = "cleanroom.io/scenario";
    /// That scenario's uid: what makes a child *its* child. A name can be
    /// taken by anyone and reused after a deletion; a uid cannot.
    pub const SCENARIO_UID: &str = "cleanroom.io/scenario-uid";
    /// The authorization the scenario runs under.
    pub const AUTHORIZATION: &str = "cleanroom.io/authorization";
    /// What the child is for (`workspace`, `agent`).
    pub const COMPONENT: &str = "cleanroom.io/component";
    /// Standard: who manages the object.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY`].
    pub const MANAGER: &str = "cleanroom";
    /// [`COMPONENT`] of the workspace's own pods.
    pub const WORKSPACE: &str = "workspace";
    /// [`COMPONENT`] of data-plane pods running the `agent` binary.
    pub const AGENT: &str = "agent";
}

/// Field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "cleanroom";

/// User and group every workspace and agent process runs as: not root, and the
/// same for both so that the wipe can overwrite what the workspace wrote.
pub const WORKSPACE_UID: i64 = 65532;

/// `name` if it fits a DNS label (63 characters), else its first 52
/// characters, a dash and 10 hex digits of its SHA-256: still readable, still
/// distinct, and the same every time.
pub fn bounded_name(name: &str) -> String {
    const MAX: usize = 63;
    if name.len() <= MAX {
        return name.to_string();
    }
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let head = name[..52].trim_end_matches('-');
    format!("{head}-{}", &digest[..10])
}

/// What a scenario's children need to know about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// Scenario name.
    pub scenario: String,
    /// Scenario uid (for owner references).
    pub uid: String,
    /// Authorization name.
    pub authorization: String,
    /// The workspace namespace, `cr-<scenario>`.
    pub namespace: String,
}

impl Identity {
    /// The identity of a scenario read from the cluster; `None` if it has no
    /// name or uid yet (it was not created by the API server).
    pub fn of(scenario: &Scenario) -> Option<Identity> {
        Some(Identity {
            scenario: scenario.metadata.name.clone()?,
            uid: scenario.metadata.uid.clone()?,
            authorization: scenario.spec.authorization.clone(),
            namespace: scenario.namespace_name()?,
        })
    }

    /// Labels that tie a child to its scenario.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::SCENARIO.to_string(), self.scenario.clone()),
            (labels::SCENARIO_UID.to_string(), self.uid.clone()),
            (
                labels::AUTHORIZATION.to_string(),
                self.authorization.clone(),
            ),
            (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        ])
    }

    /// Label selector that finds every child of this scenario (by uid: a
    /// former scenario of the same name has children of its own).
    pub fn selector(&self) -> String {
        format!(
            "{}={},{}={}",
            labels::MANAGED_BY,
            labels::MANAGER,
            labels::SCENARIO_UID,
            self.uid
        )
    }

    /// Whether an object found by name is this scenario's: it carries our
    /// manager label and this scenario's uid, as a label or (for objects
    /// made before the label existed) as its controlling owner reference.
    /// Anything else (someone's object that happens to have the name, a
    /// former scenario's) is never written to, wiped or deleted as ours.
    pub fn owns(&self, meta: &ObjectMeta) -> bool {
        let labels = meta.labels.as_ref();
        let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        let owned = meta
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.uid == self.uid);
        get(labels::MANAGED_BY) == Some(labels::MANAGER)
            && match get(labels::SCENARIO_UID) {
                Some(uid) => uid == self.uid,
                None => owned,
            }
    }

    /// Owner reference to the scenario. Not a blocking one: teardown is driven
    /// by the finalizer, the reference is for garbage collection of leftovers
    /// and for the controller's watches.
    pub fn owner(&self) -> OwnerReference {
        OwnerReference {
            api_version: Scenario::api_version(&()).into_owned(),
            kind: Scenario::kind(&()).into_owned(),
            name: self.scenario.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }

    /// Metadata of a child named `name` in the workspace namespace.
    pub fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner()]),
            ..ObjectMeta::default()
        }
    }
}

/// Every object the operator applies for a running (or, with `sealed`,
/// suspended) scenario, in the order it applies them, as JSON with
/// `apiVersion` and `kind`. The controller applies the same builders one by
/// one (`controller::scenario`); `cleanroom render` prints this list.
pub fn desired(
    id: &Identity,
    spec: &crate::api::ScenarioSpec,
    sealed: bool,
    storage_class: Option<&str>,
    member_role: &str,
) -> Result<Vec<serde_json::Value>, serde_json::Error> {
    use serde_json::to_value;
    let mut out = vec![
        to_value(isolation::namespace(id))?,
        to_value(isolation::deny_all(id))?,
        to_value(isolation::resource_quota(id, spec, &[]))?,
        to_value(isolation::limit_range(id, spec))?,
        to_value(access::service_account(id))?,
    ];
    // Sealed: the members' binding is removed, not applied.
    if let Some(binding) = access::member_binding(
        id,
        &spec.members,
        &access::member_role_for(member_role, spec.workspace.interactive),
    )
    .filter(|_| !sealed)
    {
        out.push(to_value(binding)?);
    }
    out.push(to_value(compute::scratch_claim(id, spec, storage_class))?);
    out.push(match compute::compute(id, spec, !sealed) {
        compute::Compute::Deployment(d) => to_value(d)?,
        compute::Compute::Job(j) => to_value(j)?,
    });
    Ok(out)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Identity;

    pub fn identity() -> Identity {
        Identity {
            scenario: "census".into(),
            uid: "0000-1111".into(),
            authorization: "acme-2026".into(),
            namespace: "cr-census".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_labelled_and_owned_by_their_scenario() {
        let id = testing::identity();
        let meta = id.meta("x");
        assert_eq!(meta.namespace.as_deref(), Some("cr-census"));
        let l = meta.labels.unwrap_or_default();
        assert_eq!(l.get(labels::SCENARIO).map(String::as_str), Some("census"));
        assert_eq!(
            l.get(labels::SCENARIO_UID).map(String::as_str),
            Some("0000-1111")
        );
        assert_eq!(
            l.get(labels::AUTHORIZATION).map(String::as_str),
            Some("acme-2026")
        );
        assert_eq!(
            l.get(labels::MANAGED_BY).map(String::as_str),
            Some("cleanroom")
        );
        let owner = &meta.owner_references.unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Scenario", "census", "0000-1111")
        );
        assert_eq!(owner.api_version, "cleanroom.io/v1alpha1");
    }

    #[test]
    fn selector_finds_children_by_manager_and_scenario_uid() {
        assert_eq!(
            testing::identity().selector(),
            "app.kubernetes.io/managed-by=cleanroom,cleanroom.io/scenario-uid=0000-1111"
        );
    }

    #[test]
    fn only_objects_marked_with_the_scenario_uid_are_its_own() {
        let id = testing::identity();
        assert!(id.owns(&id.meta("x")), "what we build is ours");
        let mut same_name_other_uid = id.meta("x");
        let l = same_name_other_uid.labels.as_mut().unwrap();
        l.insert(labels::SCENARIO_UID.into(), "9999".into());
        assert!(!id.owns(&same_name_other_uid), "a former scenario's child");
        let mut unmanaged = id.meta("x");
        unmanaged
            .labels
            .as_mut()
            .unwrap()
            .remove(labels::MANAGED_BY);
        assert!(!id.owns(&unmanaged), "not made by the operator");
        assert!(!id.owns(&ObjectMeta::default()), "no labels at all");
        // Made before the uid label: its controlling owner says whose it is.
        let mut older = id.meta("x");
        older.labels.as_mut().unwrap().remove(labels::SCENARIO_UID);
        assert!(id.owns(&older), "ours, from before the uid label");
        older.owner_references.as_mut().unwrap()[0].uid = "9999".into();
        assert!(
            !id.owns(&older),
            "another scenario's, from before the label"
        );
        // A uid label that disagrees wins over an owner reference that agrees.
        let mut mixed = same_name_other_uid.clone();
        mixed.owner_references = id.meta("x").owner_references;
        assert!(!id.owns(&mixed));
    }
}
