//! Who and what may act inside a workspace: a service account without a
//! token, and the members' binding to the member ClusterRole (exec, logs,
//! read pods and jobs; no secrets, no network policies, no RBAC).
//!
//! The ClusterRole itself is the chart's (`cleanroom-member`): the operator
//! only binds it, holding `bind` on that one role, so it never needs to hold
//! what members get (`pods/exec` everywhere) in order to grant it.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleBinding, RoleRef, Subject};

use super::Identity;
use crate::api::Members;

/// Service account of the workspace pods.
pub const SERVICE_ACCOUNT: &str = "workspace";
/// The chart's ClusterRole granted to members (`cleanroom run --member-cluster-role`).
pub const DEFAULT_MEMBER_CLUSTER_ROLE: &str = "cleanroom-member";
/// Role binding for the members.
pub const MEMBER_BINDING: &str = "workspace-members";

/// The workspace's service account: no API token is ever mounted.
pub fn service_account(id: &Identity) -> ServiceAccount {
    ServiceAccount {
        metadata: id.meta(SERVICE_ACCOUNT),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// What an analyst may do in a workspace: see and enter its pods, read their
/// logs, follow its jobs and events, ask for exports and imports (the
/// admission policy lets each delete only their own) and read their reviews. Nothing that could
/// open a path out (secrets, network policies, services, RBAC) and nothing
/// that changes the workspace's shape. The chart's member ClusterRole holds
/// exactly these (its test compares them).
pub fn member_rules() -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(&[""], &["pods", "pods/log"], &["get", "list", "watch"]),
        rule(&[""], &["pods/exec"], &["create", "get"]),
    ];
    rules.extend(airlock_rules());
    rules
}

/// A non-interactive workspace's members (`workspace.interactive: false`):
/// no `exec` and no logs, since a session or a log line is a way out too;
/// results leave only through a reviewed Export. The chart's
/// `<member role>-noninteractive` ClusterRole holds exactly these.
pub fn noninteractive_member_rules() -> Vec<PolicyRule> {
    let mut rules = vec![rule(&[""], &["pods"], &["get", "list", "watch"])];
    rules.extend(airlock_rules());
    rules
}

fn airlock_rules() -> Vec<PolicyRule> {
    vec![
        rule(&[""], &["events"], &["get", "list", "watch"]),
        rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
        rule(&["batch"], &["jobs"], &["get", "list", "watch"]),
        rule(
            &["cleanroom.io"],
            &["exports", "imports"],
            &["create", "get", "list", "watch", "delete"],
        ),
        rule(&["cleanroom.io"], &["reviews"], &["get", "list", "watch"]),
    ]
}

/// What a reviewer named on the authorization may do in a workspace: read
/// its exports and imports and make reviews (the admission policy checks who).
pub fn reviewer_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &["cleanroom.io"],
            &["exports", "imports"],
            &["get", "list", "watch"],
        ),
        rule(
            &["cleanroom.io"],
            &["reviews"],
            &["create", "get", "list", "watch"],
        ),
    ]
}

/// The ClusterRole bound to members: `member_role` (the chart's), or its
/// non-interactive twin.
pub fn member_role_for(member_role: &str, interactive: bool) -> String {
    if interactive {
        member_role.to_string()
    } else {
        format!("{member_role}-{NONINTERACTIVE_SUFFIX}")
    }
}

/// Suffix of the non-interactive member ClusterRole's name.
pub const NONINTERACTIVE_SUFFIX: &str = "noninteractive";
/// The chart's ClusterRole bound to an authorization's reviewers.
pub const DEFAULT_REVIEWER_CLUSTER_ROLE: &str = "cleanroom-reviewer";
/// Role binding for the reviewers.
pub const REVIEWER_BINDING: &str = "workspace-reviewers";

/// Binds the authorization's reviewers to `role` in the workspace.
pub fn reviewer_binding(id: &Identity, reviewers: &Members, role: &str) -> Option<RoleBinding> {
    let mut binding = member_binding(id, reviewers, role)?;
    binding.metadata.name = Some(REVIEWER_BINDING.into());
    Some(binding)
}

/// The RBAC subjects of `members`: each user, then each group.
pub fn subjects(members: &Members) -> Vec<Subject> {
    let subject = |kind: &str, name: &str| Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
        namespace: None,
    };
    members
        .users
        .iter()
        .map(|u| subject("User", u))
        .chain(members.groups.iter().map(|g| subject("Group", g)))
        .collect()
}

/// Binds the members to the member ClusterRole `role` in the workspace
/// namespace only; `None` when nobody is named, so the binding is removed
/// rather than left empty.
pub fn member_binding(id: &Identity, members: &Members, role: &str) -> Option<RoleBinding> {
    if members.is_empty() {
        return None;
    }
    let subjects = subjects(members);
    Some(RoleBinding {
        metadata: id.meta(MEMBER_BINDING),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(subjects),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::testing::identity;

    #[test]
    fn service_account_mounts_no_token() {
        assert_eq!(
            service_account(&identity()).automount_service_account_token,
            Some(false)
        );
    }

    #[test]
    fn member_rules_grant_no_secrets_network_policies_or_rbac() {
        let rules = member_rules();
        let resources: Vec<&str> = rules
            .iter()
            .flat_map(|r| r.resources.iter().flatten().map(String::as_str))
            .collect();
        for forbidden in [
            "secrets",
            "networkpolicies",
            "roles",
            "rolebindings",
            "services",
            "configmaps",
        ] {
            assert!(
                !resources.contains(&forbidden),
                "{forbidden} must not be granted"
            );
        }
        assert!(resources.contains(&"pods/exec"));
        assert!(resources.contains(&"pods/log"));
        let groups: Vec<&str> = rules
            .iter()
            .flat_map(|r| r.api_groups.iter().flatten().map(String::as_str))
            .collect();
        assert!(!groups.contains(&"rbac.authorization.k8s.io"));
        assert!(!groups.contains(&"networking.k8s.io"));
        assert!(rules.iter().all(|r| !r.verbs.iter().any(|v| v == "*")));
    }

    #[test]
    fn binding_names_every_user_and_group() {
        let members = Members {
            users: vec!["alice@acme.cn".into()],
            groups: vec!["acme-analysts".into()],
        };
        let b = member_binding(&identity(), &members, "cleanroom-member").unwrap();
        let subjects = b.subjects.unwrap_or_default();
        let names: Vec<(&str, &str)> = subjects
            .iter()
            .map(|s| (s.kind.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("User", "alice@acme.cn"), ("Group", "acme-analysts")]
        );
        assert_eq!(
            (b.role_ref.kind.as_str(), b.role_ref.name.as_str()),
            ("ClusterRole", "cleanroom-member")
        );
    }

    #[test]
    fn no_members_means_no_binding() {
        assert!(member_binding(&identity(), &Members::default(), "r").is_none());
    }
}
