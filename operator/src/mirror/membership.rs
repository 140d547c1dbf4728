//! Membership: RoleBindings that grant Sluice roles → `workspace_members`,
//! `user_roles` and `user_role_assignments`.
//!
//! A [`MembershipRecord`] is the whole picture for the operator's scope (the
//! operator builds it from its RoleBinding watch, [`crate::membership`]),
//! so a sync is "write what is there, remove what the operator wrote before
//! and is no longer there". Rows the operator writes are marked with its
//! own user: `workspace_members.invited_by` and
//! `user_role_assignments.assigned_by`; rows anyone else wrote are never
//! touched. `user_roles` holds one system row per Sluice role with the
//! permissions of its ClusterRole in the chart. `user_role_assignments` has
//! no workspace (the seed keys it by user and role), so it says which roles
//! a user holds somewhere; `workspace_members` says where, and which.
//! Because of that, a namespace-scoped operator's picture covers its own
//! namespaces' members but every assignment the operator wrote: two such
//! operators sharing one database would remove each other's assignments.
//! No commits or retries here.

use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::records::{MemberRole, MembershipRecord, Scope};
use super::{WriteError, failed, ids, users, workflows};

/// What a role allows on the `sluice.dev` resources, as the chart's
/// ClusterRoles (charts/sluice/templates/rbac-aggregated.yaml) grant it:
/// `<resource>:<verb>`.
pub fn permissions(role: MemberRole) -> Value {
    const OBJECTS: [&str; 4] = ["workflows", "workflowruns", "schedules", "connections"];
    let read = ["get", "list", "watch"];
    let mut granted: Vec<String> = Vec::new();
    match role {
        MemberRole::View => {
            for object in OBJECTS {
                granted.extend(read.iter().map(|verb| format!("{object}:{verb}")));
                granted.push(format!("{object}/status:get"));
            }
        }
        MemberRole::Edit => {
            for object in OBJECTS {
                granted.extend(
                    read.iter()
                        .chain(&["create", "update", "patch", "delete", "deletecollection"])
                        .map(|verb| format!("{object}:{verb}")),
                );
            }
        }
        MemberRole::Admin => granted.push("*:*".to_owned()),
    }
    json!(granted)
}

/// What a role is for, in `user_roles.description`.
fn description(role: MemberRole) -> &'static str {
    match role {
        MemberRole::View => {
            "Read Sluice workflows, runs, schedules and connections (ClusterRole sluice-view, in the built-in view)"
        }
        MemberRole::Edit => {
            "Write Sluice workflows, runs, schedules and connections (ClusterRole sluice-edit, in the built-in edit)"
        }
        MemberRole::Admin => {
            "Everything on Sluice objects, status included (ClusterRole sluice-admin, in the built-in admin)"
        }
    }
}

/// Writes the three Sluice roles (ids derived from their names; a row of
/// the same name made by someone else is adopted and its permissions set).
pub async fn upsert_roles(conn: &mut PgConnection) -> Result<(), WriteError> {
    for role in MemberRole::ALL {
        sqlx::query(
            "INSERT INTO user_roles (id, name, description, permissions, is_system)
             VALUES ($1, $2, $3, $4, TRUE)
             ON CONFLICT (name) DO UPDATE SET
                 description = EXCLUDED.description, permissions = EXCLUDED.permissions,
                 is_system = TRUE, updated_at = CURRENT_TIMESTAMP
             WHERE (user_roles.description, user_roles.permissions, user_roles.is_system)
                   IS DISTINCT FROM (EXCLUDED.description, EXCLUDED.permissions, TRUE)",
        )
        .bind(ids::user_role_id(role.role_name()))
        .bind(role.role_name())
        .bind(description(role))
        .bind(permissions(role))
        .execute(&mut *conn)
        .await
        .map_err(failed("user roles"))?;
    }
    Ok(())
}

/// Makes the operator's membership rows in the record's scope exactly the
/// record.
pub async fn sync_membership(
    conn: &mut PgConnection,
    membership: &MembershipRecord,
) -> Result<(), WriteError> {
    upsert_roles(conn).await?;
    let mut usernames: Vec<&str> = membership
        .members
        .iter()
        .map(|member| member.username.as_str())
        .chain(membership.assignments.iter().map(|(name, _)| name.as_str()))
        .collect();
    usernames.sort_unstable();
    usernames.dedup();
    users::ensure_users(conn, &usernames).await?;

    let mut workspace_ids: Vec<Uuid> = Vec::new();
    let mut member_ids: Vec<Uuid> = Vec::new();
    let mut member_roles: Vec<&str> = Vec::new();
    for member in &membership.members {
        workflows::ensure_workspace(conn, member.workspace_uid, &member.namespace).await?;
        workspace_ids.push(member.workspace_uid);
        member_ids.push(users::user_id(&member.username));
        member_roles.push(member.role.member_role());
    }
    sqlx::query(
        "INSERT INTO workspace_members (workspace_id, user_id, role, invited_by, accepted_at)
         SELECT member.workspace, member.person, member.role, $4, CURRENT_TIMESTAMP
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[]) AS member(workspace, person, role)
         ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = EXCLUDED.role
         WHERE workspace_members.invited_by = $4 AND workspace_members.role <> EXCLUDED.role",
    )
    .bind(&workspace_ids)
    .bind(&member_ids)
    .bind(&member_roles)
    .bind(ids::SYSTEM_USER_ID)
    .execute(&mut *conn)
    .await
    .map_err(failed("workspace members"))?;
    let namespaces = match &membership.scope {
        Scope::Cluster => None,
        Scope::Namespaces(names) => Some(names.clone()),
    };
    sqlx::query(
        "DELETE FROM workspace_members member
         WHERE member.invited_by = $3
           AND member.workspace_id IN (
               SELECT id FROM workspaces WHERE $4::text[] IS NULL OR name = ANY($4))
           AND (member.workspace_id, member.user_id) NOT IN (
               SELECT * FROM UNNEST($1::uuid[], $2::uuid[]))",
    )
    .bind(&workspace_ids)
    .bind(&member_ids)
    .bind(ids::SYSTEM_USER_ID)
    .bind(namespaces)
    .execute(&mut *conn)
    .await
    .map_err(failed("workspace members"))?;

    let assigned_users: Vec<Uuid> = membership
        .assignments
        .iter()
        .map(|(name, _)| users::user_id(name))
        .collect();
    let assigned_roles: Vec<&str> = membership
        .assignments
        .iter()
        .map(|(_, role)| role.role_name())
        .collect();
    // Roles by name: the row may predate the mirror under another id.
    sqlx::query(
        "INSERT INTO user_role_assignments (user_id, role_id, assigned_by)
         SELECT assignment.person, role.id, $3
         FROM UNNEST($1::uuid[], $2::text[]) AS assignment(person, role_name)
         JOIN user_roles role ON role.name = assignment.role_name
         ON CONFLICT (user_id, role_id) DO NOTHING",
    )
    .bind(&assigned_users)
    .bind(&assigned_roles)
    .bind(ids::SYSTEM_USER_ID)
    .execute(&mut *conn)
    .await
    .map_err(failed("user role assignments"))?;
    let sluice_roles: Vec<&str> = MemberRole::ALL
        .iter()
        .map(|role| role.role_name())
        .collect();
    sqlx::query(
        "DELETE FROM user_role_assignments assignment USING user_roles role
         WHERE assignment.role_id = role.id AND role.name = ANY($4)
           AND assignment.assigned_by = $3
           AND (assignment.user_id, role.name) NOT IN (
               SELECT * FROM UNNEST($1::uuid[], $2::text[]))",
    )
    .bind(&assigned_users)
    .bind(&assigned_roles)
    .bind(ids::SYSTEM_USER_ID)
    .bind(&sluice_roles)
    .execute(conn)
    .await
    .map_err(failed("user role assignments"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;
    use uuid::Uuid;

    use super::super::fixtures::*;
    use super::super::ids::SYSTEM_USER_ID;
    use super::super::records::*;
    use super::super::users::user_id;

    fn member(workspace: u128, namespace: &str, username: &str, role: MemberRole) -> MemberRecord {
        MemberRecord {
            workspace_uid: uid(workspace),
            namespace: namespace.into(),
            username: username.into(),
            role,
        }
    }

    fn picture(members: Vec<MemberRecord>, assignments: &[(&str, MemberRole)]) -> MirrorEvent {
        MirrorEvent::Membership(MembershipRecord {
            scope: Scope::Cluster,
            members,
            assignments: assignments
                .iter()
                .map(|(name, role)| ((*name).to_owned(), *role))
                .collect(),
        })
    }

    async fn members(pool: &PgPool) -> Vec<(Uuid, Uuid, String)> {
        sqlx::query_as(
            "SELECT workspace_id, user_id, role FROM workspace_members ORDER BY workspace_id, role",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }

    async fn assignments(pool: &PgPool) -> Vec<(Uuid, String)> {
        sqlx::query_as(
            "SELECT a.user_id, r.name::text FROM user_role_assignments a
             JOIN user_roles r ON r.id = a.role_id ORDER BY a.user_id, r.name",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }

    fn sorted<T: Ord>(mut rows: Vec<T>) -> Vec<T> {
        rows.sort();
        rows
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn bindings_become_members_roles_and_assignments_and_leave_with_them(pool: PgPool) {
        let everyone = picture(
            vec![
                member(1, "growth", "ada", MemberRole::Admin),
                member(
                    1,
                    "growth",
                    "system:serviceaccount:ci:deployer",
                    MemberRole::Edit,
                ),
                member(2, "billing", "ada", MemberRole::View),
            ],
            &[
                ("ada", MemberRole::View),
                ("ada", MemberRole::Admin),
                ("system:serviceaccount:ci:deployer", MemberRole::Edit),
            ],
        );
        write(&pool, std::slice::from_ref(&everyone)).await;
        let ada = user_id("ada");
        let deployer = user_id("system:serviceaccount:ci:deployer");
        assert_eq!(
            members(&pool).await,
            sorted(vec![
                (uid(1), ada, "admin".to_owned()),
                (uid(1), deployer, "editor".to_owned()),
                (uid(2), ada, "viewer".to_owned()),
            ])
        );
        assert_eq!(
            assignments(&pool).await,
            sorted(vec![
                (ada, "sluice-admin".to_owned()),
                (ada, "sluice-view".to_owned()),
                (deployer, "sluice-edit".to_owned()),
            ])
        );
        let roles: Vec<(String, serde_json::Value, bool)> = sqlx::query_as(
            "SELECT name::text, permissions, is_system FROM user_roles ORDER BY name",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(roles.len(), 3);
        assert_eq!(roles[0].0, "sluice-admin");
        assert_eq!(roles[0].1, serde_json::json!(["*:*"]));
        assert!(
            roles[2]
                .1
                .as_array()
                .unwrap()
                .contains(&"workflowruns:watch".into())
        );
        assert!(
            !roles[2]
                .1
                .as_array()
                .unwrap()
                .contains(&"workflowruns:create".into())
        );
        assert!(roles.iter().all(|(_, _, system)| *system));
        let users: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT name::text, email::text, password_hash::text FROM users WHERE id = $1",
        )
        .bind(deployer)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            users,
            vec![(
                "system:serviceaccount:ci:deployer".to_owned(),
                format!("{deployer}@kubernetes.sluice.invalid"),
                "!".to_owned()
            )]
        );

        // Replays change nothing.
        let before = (
            dump(&pool, "workspace_members").await,
            dump(&pool, "user_roles").await,
        );
        write(&pool, std::slice::from_ref(&everyone)).await;
        assert_eq!(
            before,
            (
                dump(&pool, "workspace_members").await,
                dump(&pool, "user_roles").await
            )
        );

        // A row someone else made stays; the deployer's binding is deleted.
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash) VALUES ($1, 'bo@example.com', 'bo', 'x')",
        )
        .bind(uid(500))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO workspace_members (workspace_id, user_id, role) VALUES ($1, $2, 'owner')",
        )
        .bind(uid(1))
        .bind(uid(500))
        .execute(&pool)
        .await
        .unwrap();
        write(
            &pool,
            &[picture(
                vec![
                    member(1, "growth", "ada", MemberRole::Admin),
                    member(2, "billing", "ada", MemberRole::View),
                ],
                &[("ada", MemberRole::View), ("ada", MemberRole::Admin)],
            )],
        )
        .await;
        assert_eq!(
            members(&pool).await,
            sorted(vec![
                (uid(1), ada, "admin".to_owned()),
                (uid(1), uid(500), "owner".to_owned()),
                (uid(2), ada, "viewer".to_owned()),
            ])
        );
        assert_eq!(
            assignments(&pool).await,
            sorted(vec![
                (ada, "sluice-admin".to_owned()),
                (ada, "sluice-view".to_owned()),
            ])
        );
        let invited_by: Vec<Option<Uuid>> =
            sqlx::query_scalar("SELECT invited_by FROM workspace_members WHERE user_id = $1")
                .bind(ada)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(invited_by, vec![Some(SYSTEM_USER_ID); 2]);
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_namespaced_operator_removes_members_of_its_own_namespaces_only(pool: PgPool) {
        write(
            &pool,
            &[picture(
                vec![
                    member(1, "growth", "ada", MemberRole::Edit),
                    member(2, "billing", "bob", MemberRole::View),
                ],
                &[("ada", MemberRole::Edit), ("bob", MemberRole::View)],
            )],
        )
        .await;
        write(
            &pool,
            &[MirrorEvent::Membership(MembershipRecord {
                scope: Scope::Namespaces(vec!["growth".into()]),
                members: vec![],
                assignments: vec![("bob".into(), MemberRole::View)],
            })],
        )
        .await;
        assert_eq!(
            members(&pool).await,
            vec![(uid(2), user_id("bob"), "viewer".to_owned())]
        );
    }
}
