//! Nothing foreign in a workspace (design invariant 10). Admission refuses
//! anyone but the operator who would create a NetworkPolicy, Role,
//! RoleBinding, ResourceQuota, LimitRange, ServiceAccount or claim in a
//! `cr-*` namespace; this is the layer behind it, for what got past (an
//! exempt identity, a policy not installed, an object older than it):
//! network policies are additive, so one extra allow policy defeats
//! deny-all, and an extra binding outlives ours.
//!
//! Those seven kinds are watched cluster-wide, metadata only, into caches;
//! a change in a `cr-*` namespace that is not the operator's own wakes that
//! scenario, whose pass removes whatever it did not make ([`find`] is the
//! pure decision) and records each removal (`isolation-breach`) after it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    LimitRange, PersistentVolumeClaim, ResourceQuota, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tracing::warn;

use super::kube_ops::delete;
use super::{Context, Error};
use crate::api::Scenario;
use crate::audit::{Action, Draft};
use crate::workspace::{Identity, labels};

/// Prefix of every workspace namespace.
const WORKSPACE_PREFIX: &str = "cr-";

/// A kind that only the operator may have in a workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarded {
    NetworkPolicy,
    Role,
    RoleBinding,
    ResourceQuota,
    LimitRange,
    ServiceAccount,
    PersistentVolumeClaim,
}

impl Guarded {
    /// The Kubernetes kind, as messages and records name it.
    pub fn kind(self) -> &'static str {
        match self {
            Guarded::NetworkPolicy => "NetworkPolicy",
            Guarded::Role => "Role",
            Guarded::RoleBinding => "RoleBinding",
            Guarded::ResourceQuota => "ResourceQuota",
            Guarded::LimitRange => "LimitRange",
            Guarded::ServiceAccount => "ServiceAccount",
            Guarded::PersistentVolumeClaim => "PersistentVolumeClaim",
        }
    }
}

/// An object in a workspace that the operator did not make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Foreign {
    pub kind: Guarded,
    pub name: String,
    pub uid: String,
    /// The field manager that made it (who, as far as the object says).
    pub made_by: String,
}

impl Foreign {
    /// `Kind/name`, as conditions and records name it.
    pub fn display(&self) -> String {
        format!("{}/{}", self.kind.kind(), self.name)
    }
}

/// The control plane's own object in every namespace: the service account
/// controller makes `default` (it has no token we mount: workspace pods use
/// the operator's token-less account).
fn made_by_the_control_plane(kind: Guarded, meta: &ObjectMeta) -> bool {
    kind == Guarded::ServiceAccount && meta.name.as_deref() == Some("default")
}

/// The objects in the scenario's namespace that are not the scenario's own.
pub fn find<'a>(
    id: &Identity,
    objects: impl IntoIterator<Item = (Guarded, &'a ObjectMeta)>,
) -> Vec<Foreign> {
    let mut out: Vec<Foreign> = objects
        .into_iter()
        .filter(|(_, m)| m.namespace.as_deref() == Some(id.namespace.as_str()))
        .filter(|(k, m)| !id.owns(m) && !made_by_the_control_plane(*k, m))
        // Already going: nothing to remove (its deletion wakes us again).
        .filter(|(_, m)| m.deletion_timestamp.is_none())
        .map(|(kind, m)| Foreign {
            kind,
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            made_by: m
                .managed_fields
                .iter()
                .flatten()
                .find_map(|f| f.manager.clone())
                .unwrap_or_else(|| "unknown".into()),
        })
        .collect();
    out.sort_by(|a, b| (a.kind.kind(), &a.name).cmp(&(b.kind.kind(), &b.name)));
    out
}

/// The scenario a change in a workspace namespace concerns. The operator's
/// own writes (labelled for the scenario of that namespace) wake nothing
/// here, so applying a workspace does not wake it again and again; an
/// object forged to look like ours is still found by uid at the scenario's
/// next pass ([`find`]).
fn scenario_of(meta: &ObjectMeta) -> Option<ObjectRef<Scenario>> {
    let name = meta.namespace.as_deref()?.strip_prefix(WORKSPACE_PREFIX)?;
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k));
    let looks_ours = label(labels::MANAGED_BY).is_some_and(|m| m == labels::MANAGER)
        && label(labels::SCENARIO).is_some_and(|s| s == name)
        && label(labels::SCENARIO_UID).is_some();
    (!looks_ours).then(|| ObjectRef::new(name))
}

pub type Wakes = Pin<Box<dyn Stream<Item = ObjectRef<Scenario>> + Send>>;

/// The metadata caches of the seven guarded kinds.
#[derive(Clone)]
pub struct Guards {
    network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    roles: Store<PartialObjectMeta<Role>>,
    role_bindings: Store<PartialObjectMeta<RoleBinding>>,
    quotas: Store<PartialObjectMeta<ResourceQuota>>,
    limit_ranges: Store<PartialObjectMeta<LimitRange>>,
    service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    claims: Store<PartialObjectMeta<PersistentVolumeClaim>>,
}

/// Watches one kind into a cache; yields the scenarios to wake.
fn watch<K>(client: &Client) -> (Store<PartialObjectMeta<K>>, Wakes)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    K: serde::de::DeserializeOwned,
{
    let (reader, writer) = reflector::store();
    // An Api of PartialObjectMeta asks for metadata only.
    let api = Api::<PartialObjectMeta<K>>::all(client.clone());
    let wakes = watcher(api, watcher::Config::default())
        .default_backoff()
        // Only the managers' names are read (who made a foreign object);
        // the field sets are most of the metadata, for every object of the
        // kind in the cluster.
        .modify(|m: &mut PartialObjectMeta<K>| {
            for f in m.metadata.managed_fields.iter_mut().flatten() {
                f.fields_v1 = None;
            }
        })
        .reflect(writer)
        .touched_objects()
        .filter_map(|m| async move {
            match m {
                Ok(m) => scenario_of(&m.metadata),
                Err(e) => {
                    warn!(error = %e, kind = K::kind(&()).as_ref(), "watching a guarded kind");
                    None
                }
            }
        });
    (reader, Box::pin(wakes))
}

impl Guards {
    /// Starts the seven watches; the stream must be polled (it drives the
    /// caches) and wakes the scenario of each foreign change.
    pub fn watch(client: &Client) -> (Guards, Wakes) {
        let (network_policies, a) = watch::<NetworkPolicy>(client);
        let (roles, b) = watch::<Role>(client);
        let (role_bindings, c) = watch::<RoleBinding>(client);
        let (quotas, d) = watch::<ResourceQuota>(client);
        let (limit_ranges, e) = watch::<LimitRange>(client);
        let (service_accounts, f) = watch::<ServiceAccount>(client);
        let (claims, g) = watch::<PersistentVolumeClaim>(client);
        let guards = Guards {
            network_policies,
            roles,
            role_bindings,
            quotas,
            limit_ranges,
            service_accounts,
            claims,
        };
        (
            guards,
            Box::pin(futures::stream::select_all([a, b, c, d, e, f, g])),
        )
    }

    /// The objects not the scenario's in its namespace, as the caches see them.
    pub fn foreign(&self, id: &Identity) -> Vec<Foreign> {
        let ns = id.namespace.as_str();
        let mut all: Vec<(Guarded, ObjectMeta)> = Vec::new();
        fn add<K: Resource<DynamicType = ()> + Clone>(
            out: &mut Vec<(Guarded, ObjectMeta)>,
            kind: Guarded,
            store: &Store<PartialObjectMeta<K>>,
            ns: &str,
        ) {
            out.extend(
                store
                    .state()
                    .iter()
                    .filter(|m| m.metadata.namespace.as_deref() == Some(ns))
                    .map(|m| (kind, m.metadata.clone())),
            );
        }
        add(&mut all, Guarded::NetworkPolicy, &self.network_policies, ns);
        add(&mut all, Guarded::Role, &self.roles, ns);
        add(&mut all, Guarded::RoleBinding, &self.role_bindings, ns);
        add(&mut all, Guarded::ResourceQuota, &self.quotas, ns);
        add(&mut all, Guarded::LimitRange, &self.limit_ranges, ns);
        add(
            &mut all,
            Guarded::ServiceAccount,
            &self.service_accounts,
            ns,
        );
        add(&mut all, Guarded::PersistentVolumeClaim, &self.claims, ns);
        find(id, all.iter().map(|(k, m)| (*k, m)))
    }
}

/// Deletes one foreign object (absence is success).
async fn remove_one(client: &Client, ns: &str, f: &Foreign) -> Result<(), Error> {
    let c = client.clone();
    match f.kind {
        Guarded::NetworkPolicy => delete(&Api::<NetworkPolicy>::namespaced(c, ns), &f.name).await,
        Guarded::Role => delete(&Api::<Role>::namespaced(c, ns), &f.name).await,
        Guarded::RoleBinding => delete(&Api::<RoleBinding>::namespaced(c, ns), &f.name).await,
        Guarded::ResourceQuota => delete(&Api::<ResourceQuota>::namespaced(c, ns), &f.name).await,
        Guarded::LimitRange => delete(&Api::<LimitRange>::namespaced(c, ns), &f.name).await,
        Guarded::ServiceAccount => delete(&Api::<ServiceAccount>::namespaced(c, ns), &f.name).await,
        Guarded::PersistentVolumeClaim => {
            delete(&Api::<PersistentVolumeClaim>::namespaced(c, ns), &f.name).await
        }
    }
    .map(|_| ())
}

/// The ledger record of one removal.
pub fn breach_record(scenario: &Scenario, id: &Identity, f: &Foreign) -> Draft {
    Draft {
        actor: crate::audit::record::OPERATOR_ACTOR.to_string(),
        kind: "Scenario".into(),
        name: id.scenario.clone(),
        uid: id.uid.clone(),
        generation: scenario.metadata.generation,
        authorization: Some(id.authorization.clone()),
        action: Action::IsolationBreach,
        reason: Some(format!(
            "{} in {} was not made by the operator (made by {}) and was removed",
            f.display(),
            id.namespace,
            f.made_by
        )),
        before: None,
        after: None,
        key: format!(
            "{}/{}/{}/{}",
            id.uid,
            Action::IsolationBreach.as_str(),
            f.display(),
            f.uid
        ),
    }
}

/// Removes every foreign object first, then records each removal: the
/// records go to the ledger in the background, retried until written, so
/// an unwritable ledger never keeps a breach open.
pub async fn remove(
    ctx: &Context,
    scenario: &Scenario,
    id: &Identity,
    foreign: &[Foreign],
) -> Result<(), Error> {
    for f in foreign {
        remove_one(&ctx.client, &id.namespace, f).await?;
        warn!(scenario = %id.scenario, object = %f.display(), made_by = %f.made_by, "isolation breach: removed an object the operator did not make");
        ctx.metrics.isolation_breach();
        let draft = breach_record(scenario, id, f);
        let audit = Arc::clone(&ctx.audit);
        tokio::spawn(async move {
            while let Err(e) = audit.append(vec![draft.clone()]).await {
                warn!(error = %e, "recording an isolation breach; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::workspace::testing::identity;

    fn meta(ns: &str, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn what_the_operator_did_not_make_is_foreign_and_named() {
        let id = identity();
        let ours = id.meta("deny-all");
        let allow = meta("cr-census", "allow-all", &[]);
        // Labelled like ours, but for another scenario's uid.
        let forged = meta(
            "cr-census",
            "intruder",
            &[
                (labels::MANAGED_BY, labels::MANAGER),
                (labels::SCENARIO, "census"),
                (labels::SCENARIO_UID, "someone-else"),
            ],
        );
        let elsewhere = meta("cr-other", "allow-all", &[]);
        let default_sa = meta("cr-census", "default", &[]);
        let found = find(
            &id,
            [
                (Guarded::NetworkPolicy, &ours),
                (Guarded::NetworkPolicy, &allow),
                (Guarded::RoleBinding, &forged),
                (Guarded::NetworkPolicy, &elsewhere),
                (Guarded::ServiceAccount, &default_sa),
            ],
        );
        let names: Vec<String> = found.iter().map(Foreign::display).collect();
        assert_eq!(names, ["NetworkPolicy/allow-all", "RoleBinding/intruder"]);
    }

    #[test]
    fn a_default_role_binding_is_not_excused_like_the_default_account() {
        let id = identity();
        let binding = meta("cr-census", "default", &[]);
        assert_eq!(find(&id, [(Guarded::RoleBinding, &binding)]).len(), 1);
    }

    #[test]
    fn only_foreign_changes_in_workspaces_wake_a_scenario() {
        let foreign = meta("cr-census", "allow-all", &[]);
        assert_eq!(scenario_of(&foreign), Some(ObjectRef::new("census")));
        let ours = identity().meta("deny-all");
        assert_eq!(scenario_of(&ours), None, "our own apply wakes nothing here");
        let outside = meta("default", "allow-all", &[]);
        assert_eq!(scenario_of(&outside), None);
    }

    #[test]
    fn a_breach_record_names_the_object_and_is_keyed_by_its_uid() {
        let id = identity();
        let s = Scenario::new(
            "census",
            serde_json::from_value(serde_json::json!({
                "authorization": "acme-2026", "purpose": "p",
                "workspace": {"image": "x", "resources": {"cpu": "1", "memory": "1Gi"}, "scratch": "1Gi"}
            }))
            .unwrap(),
        );
        let f = Foreign {
            kind: Guarded::NetworkPolicy,
            name: "allow-all".into(),
            uid: "u-1".into(),
            made_by: "kubectl-create".into(),
        };
        let d = breach_record(&s, &id, &f);
        assert_eq!(d.action, Action::IsolationBreach);
        assert!(
            d.reason
                .as_deref()
                .unwrap()
                .contains("NetworkPolicy/allow-all")
        );
        assert!(d.reason.as_deref().unwrap().contains("kubectl-create"));
        assert_eq!(
            d.key,
            "0000-1111/isolation-breach/NetworkPolicy/allow-all/u-1"
        );
    }
}
