//! Who and what may act inside a workspace: a service account without a
//! token, and the members' role (exec, logs, read pods and jobs; no secrets, no
//! network policies, no RBAC).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::Identity;
use crate::api::Members;

/// Service account of the workspace pods.
pub const SERVICE_ACCOUNT: &str = "workspace";
/// Role granted to members.
pub const MEMBER_ROLE: &str = "workspace-member";
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
/// logs, follow its jobs and events. Nothing that could open a path out
/// (secrets, network policies, services, RBAC) and nothing that changes the
/// workspace's shape.
pub fn member_role(id: &Identity) -> Role {
    Role {
        metadata: id.meta(MEMBER_ROLE),
        rules: Some(vec![
            rule(&[""], &["pods", "pods/log"], &["get", "list", "watch"]),
            rule(&[""], &["pods/exec"], &["create", "get"]),
            rule(&[""], &["events"], &["get", "list", "watch"]),
            rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
            rule(&["batch"], &["jobs"], &["get", "list", "watch"]),
        ]),
    }
}

/// Binds the members to [`member_role`]; `None` when nobody is named, so the
/// binding is removed rather than left empty.
pub fn member_binding(id: &Identity, members: &Members) -> Option<RoleBinding> {
    if members.is_empty() {
        return None;
    }
    let subject = |kind: &str, name: &str| Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
        namespace: None,
    };
    let subjects = members
        .users
        .iter()
        .map(|u| subject("User", u))
        .chain(members.groups.iter().map(|g| subject("Group", g)))
        .collect();
    Some(RoleBinding {
        metadata: id.meta(MEMBER_BINDING),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: MEMBER_ROLE.into(),
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
    fn member_role_grants_no_secrets_network_policies_or_rbac() {
        let role = member_role(&identity());
        let rules = role.rules.unwrap_or_default();
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
        let b = member_binding(&identity(), &members).unwrap();
        let subjects = b.subjects.unwrap_or_default();
        let names: Vec<(&str, &str)> = subjects
            .iter()
            .map(|s| (s.kind.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("User", "alice@acme.cn"), ("Group", "acme-analysts")]
        );
        assert_eq!(b.role_ref.name, MEMBER_ROLE);
    }

    #[test]
    fn no_members_means_no_binding() {
        assert!(member_binding(&identity(), &Members::default()).is_none());
    }
}
