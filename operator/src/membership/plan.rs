//! Which Sluice roles a RoleBinding grants, to whom, and the whole
//! membership picture the mirror writes. Pure: no client, no database.
//!
//! A binding counts when its `roleRef` is a ClusterRole that holds Sluice
//! rights: `sluice-view`, `sluice-edit` or `sluice-admin` directly, or the
//! built-in `view`, `edit` or `admin`, which aggregate them (the chart
//! labels sluice-view into view, edit and admin, sluice-edit into edit and
//! admin, sluice-admin into admin). A Role (namespaced) of the same name
//! is someone else's and does not count.
//!
//! Subjects: a `User` is that username; a `ServiceAccount` is the username
//! it authenticates as, `system:serviceaccount:<namespace>:<name>` (so a
//! GitOps controller that creates workflows is a member under the same row
//! its `created_by` points at). A `Group` is not mirrored: Kubernetes keeps
//! no list of a group's members (the authenticator asserts them per
//! request), so there is no user to write.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use uuid::Uuid;

use crate::mirror::{MemberRecord, MemberRole, MembershipRecord, Scope};

/// The API group of RBAC objects.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The Sluice role a `roleRef` grants, if any.
pub fn role_granted(role_ref: &RoleRef) -> Option<MemberRole> {
    if role_ref.kind != "ClusterRole" || role_ref.api_group != RBAC_GROUP {
        return None;
    }
    match role_ref.name.as_str() {
        "sluice-view" | "view" => Some(MemberRole::View),
        "sluice-edit" | "edit" => Some(MemberRole::Edit),
        "sluice-admin" | "admin" => Some(MemberRole::Admin),
        _ => None,
    }
}

/// The Kubernetes username of a subject of a binding in `namespace`, or
/// `None` for a Group (see the module's comment).
pub fn subject_username(subject: &Subject, namespace: &str) -> Option<String> {
    match subject.kind.as_str() {
        "User" if !subject.name.is_empty() => Some(subject.name.clone()),
        "ServiceAccount" if !subject.name.is_empty() => {
            let account_namespace = subject
                .namespace
                .as_deref()
                .filter(|name| !name.is_empty())
                .unwrap_or(namespace);
            Some(format!(
                "system:serviceaccount:{account_namespace}:{}",
                subject.name
            ))
        }
        _ => None,
    }
}

/// What one binding grants: (username, role) pairs, empty for a binding
/// that grants no Sluice role.
pub fn grants_of(binding: &RoleBinding) -> Vec<(String, MemberRole)> {
    let Some(role) = role_granted(&binding.role_ref) else {
        return Vec::new();
    };
    let namespace = binding.metadata.namespace.as_deref().unwrap_or_default();
    let mut grants: Vec<(String, MemberRole)> = binding
        .subjects
        .iter()
        .flatten()
        .filter_map(|subject| subject_username(subject, namespace))
        .map(|username| (username, role))
        .collect();
    grants.sort();
    grants.dedup();
    grants
}

/// The grants of every binding, keyed by (namespace, binding name).
pub type Grants = BTreeMap<(String, String), Vec<(String, MemberRole)>>;

/// The membership the bindings' `grants` make: per (namespace, user) the
/// highest role, and every (user, role) some binding grants. Namespaces
/// without a workspace id (gone) are left out.
pub fn build_membership(
    grants: &Grants,
    workspace_uids: &BTreeMap<String, Uuid>,
    scope: Scope,
) -> MembershipRecord {
    let mut highest: BTreeMap<(&str, &str), MemberRole> = BTreeMap::new();
    let mut assignments: BTreeSet<(String, MemberRole)> = BTreeSet::new();
    for ((namespace, _), granted) in grants {
        if !workspace_uids.contains_key(namespace) {
            continue;
        }
        for (username, role) in granted {
            let held = highest
                .entry((namespace.as_str(), username.as_str()))
                .or_insert(*role);
            *held = (*held).max(*role);
            assignments.insert((username.clone(), *role));
        }
    }
    MembershipRecord {
        scope,
        members: highest
            .into_iter()
            .map(|((namespace, username), role)| MemberRecord {
                workspace_uid: workspace_uids[namespace],
                namespace: namespace.to_owned(),
                username: username.to_owned(),
                role,
            })
            .collect(),
        assignments: assignments.into_iter().collect(),
    }
}

/// The namespaces `grants` name, each once.
pub fn namespaces_of(grants: &Grants) -> BTreeSet<String> {
    grants
        .iter()
        .filter(|(_, granted)| !granted.is_empty())
        .map(|((namespace, _), _)| namespace.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn binding(name: &str, role_kind: &str, role: &str, subjects: &[(&str, &str)]) -> RoleBinding {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("growth".to_owned()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: RBAC_GROUP.to_owned(),
                kind: role_kind.to_owned(),
                name: role.to_owned(),
            },
            subjects: Some(
                subjects
                    .iter()
                    .map(|(kind, name)| Subject {
                        kind: (*kind).to_owned(),
                        name: (*name).to_owned(),
                        api_group: None,
                        namespace: None,
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn sluice_roles_and_the_built_in_roles_that_aggregate_them_count() {
        let granted = |kind: &str, name: &str| {
            role_granted(&RoleRef {
                api_group: RBAC_GROUP.to_owned(),
                kind: kind.to_owned(),
                name: name.to_owned(),
            })
        };
        assert_eq!(
            granted("ClusterRole", "sluice-view"),
            Some(MemberRole::View)
        );
        assert_eq!(granted("ClusterRole", "view"), Some(MemberRole::View));
        assert_eq!(
            granted("ClusterRole", "sluice-edit"),
            Some(MemberRole::Edit)
        );
        assert_eq!(granted("ClusterRole", "edit"), Some(MemberRole::Edit));
        assert_eq!(
            granted("ClusterRole", "sluice-admin"),
            Some(MemberRole::Admin)
        );
        assert_eq!(granted("ClusterRole", "admin"), Some(MemberRole::Admin));
        assert_eq!(granted("ClusterRole", "cluster-admin"), None);
        assert_eq!(granted("Role", "sluice-admin"), None, "a namespaced Role");
    }

    #[test]
    fn users_and_service_accounts_are_members_and_groups_are_not() {
        let mut account = binding(
            "ci",
            "ClusterRole",
            "edit",
            &[("ServiceAccount", "deployer")],
        );
        assert_eq!(
            grants_of(&account),
            vec![(
                "system:serviceaccount:growth:deployer".to_owned(),
                MemberRole::Edit
            )]
        );
        account.subjects.as_mut().unwrap()[0].namespace = Some("ci".to_owned());
        assert_eq!(
            grants_of(&account)[0].0,
            "system:serviceaccount:ci:deployer"
        );
        let mixed = binding(
            "team",
            "ClusterRole",
            "sluice-view",
            &[("User", "ada"), ("Group", "platform"), ("User", "ada")],
        );
        assert_eq!(
            grants_of(&mixed),
            vec![("ada".to_owned(), MemberRole::View)]
        );
        let unrelated = binding("ops", "ClusterRole", "cluster-admin", &[("User", "ada")]);
        assert!(grants_of(&unrelated).is_empty());
    }

    #[test]
    fn a_member_holds_their_highest_role_and_every_granted_role_is_assigned() {
        let workspace = Uuid::from_u128(7);
        let mut grants = Grants::new();
        for (name, role, subjects) in [
            ("readers", "view", &[("User", "ada"), ("User", "bob")][..]),
            ("editors", "sluice-edit", &[("User", "ada")][..]),
        ] {
            let binding = binding(name, "ClusterRole", role, subjects);
            grants.insert(("growth".to_owned(), name.to_owned()), grants_of(&binding));
        }
        grants.insert(
            ("gone".to_owned(), "admins".to_owned()),
            vec![("carol".to_owned(), MemberRole::Admin)],
        );
        let uids = BTreeMap::from([("growth".to_owned(), workspace)]);
        let record = build_membership(&grants, &uids, Scope::Cluster);
        let member = |username: &str, role| MemberRecord {
            workspace_uid: workspace,
            namespace: "growth".to_owned(),
            username: username.to_owned(),
            role,
        };
        assert_eq!(
            record.members,
            vec![
                member("ada", MemberRole::Edit),
                member("bob", MemberRole::View)
            ]
        );
        assert_eq!(
            record.assignments,
            vec![
                ("ada".to_owned(), MemberRole::View),
                ("ada".to_owned(), MemberRole::Edit),
                ("bob".to_owned(), MemberRole::View),
            ]
        );
        assert_eq!(
            namespaces_of(&grants),
            BTreeSet::from(["gone".to_owned(), "growth".to_owned()])
        );
    }
}
