//! People in the mirror: one `users` row per Kubernetes username, and
//! `api_keys` rows for webhook triggers that take a bearer token.
//!
//! A Kubernetes user has no password and no e-mail address Sluice knows:
//! the row's id is a UUIDv5 of the username ([`user_id`], the same id the
//! console signs the user in as), its `name` is the username, its `email`
//! the placeholder `<id>@kubernetes.sluice.invalid` (the `.invalid` domain
//! marks a Kubernetes identity; the seed makes `email` unique and required)
//! and its `password_hash` `!`, which no password matches. Rows are made
//! the first time a username is seen and never changed by the mirror after.
//!
//! An `api_keys` row stands for a bearer-token webhook trigger: `key_hash`
//! is a fingerprint of the token (`sha256:` and the first 16 hex digits of
//! its SHA-256), never the token. No commits or retries here.

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::records::WorkflowRecord;
use super::sanitize;
use super::{WriteError, failed, ids};

/// UUIDv5 namespace of Kubernetes users' ids (never change it: the console
/// and the mirror would disagree about who is who).
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x5111ce00_0000_4000_8000_0000c0501e00);

/// The `users` row id of a Kubernetes username.
pub fn user_id(username: &str) -> Uuid {
    Uuid::new_v5(&USER_NAMESPACE, username.as_bytes())
}

/// The placeholder e-mail address of a Kubernetes user's row.
pub fn user_email(username: &str) -> String {
    format!("{}@kubernetes.sluice.invalid", user_id(username))
}

/// The `users` row of `username`, or the operator's own row for `None`
/// (objects made before creators were recorded).
pub fn user_or_system(username: Option<&str>) -> Uuid {
    username.map_or(ids::SYSTEM_USER_ID, user_id)
}

/// Makes the `users` rows of `usernames` where missing; returns their ids
/// in the same order. Existing rows are left alone.
pub async fn ensure_users(
    conn: &mut PgConnection,
    usernames: &[&str],
) -> Result<Vec<Uuid>, WriteError> {
    let user_ids: Vec<Uuid> = usernames.iter().map(|name| user_id(name)).collect();
    if usernames.is_empty() {
        return Ok(user_ids);
    }
    let emails: Vec<String> = usernames.iter().map(|name| user_email(name)).collect();
    let names: Vec<String> = usernames
        .iter()
        .map(|name| sanitize::varchar(name, 255))
        .collect();
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, is_active, is_verified)
         SELECT person.id, person.email, person.name, '!', TRUE, TRUE
         FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS person(id, email, name)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&user_ids)
    .bind(&emails)
    .bind(&names)
    .execute(conn)
    .await
    .map_err(failed("users"))?;
    Ok(user_ids)
}

/// The `users` row of `username` (made when missing), or the operator's
/// own for `None`.
pub async fn ensure_user_or_system(
    conn: &mut PgConnection,
    username: Option<&str>,
) -> Result<Uuid, WriteError> {
    match username {
        Some(username) => Ok(ensure_users(conn, &[username]).await?[0]),
        None => Ok(ids::SYSTEM_USER_ID),
    }
}

/// The scope tag that ties an `api_keys` row to its workflow.
fn workflow_scope(workflow_uid: Uuid) -> String {
    format!("workflow:{workflow_uid}")
}

/// Makes the workflow's `api_keys` rows exactly its bearer-token webhook
/// triggers whose token was read: owned by the workflow's creator (or the
/// operator), named after the endpoint, keyed by the token's fingerprint.
pub async fn sync_api_keys(
    conn: &mut PgConnection,
    workflow: &WorkflowRecord,
    owner: Uuid,
) -> Result<(), WriteError> {
    let mut key_ids = Vec::new();
    let mut names = Vec::new();
    let mut hashes = Vec::new();
    let mut scopes = Vec::new();
    let mut active = Vec::new();
    for trigger in &workflow.triggers {
        let Some(webhook) = &trigger.webhook else {
            continue;
        };
        let Some(fingerprint) = &webhook.bearer_fingerprint else {
            continue;
        };
        key_ids.push(ids::api_key_id(workflow.uid, &trigger.name));
        names.push(sanitize::varchar(&format!("webhook {}", webhook.path), 255));
        hashes.push(sanitize::varchar(fingerprint, 255));
        scopes.push(
            json!([
                format!("webhook:{}", webhook.path),
                workflow_scope(workflow.uid)
            ])
            .to_string(),
        );
        active.push(trigger.active);
    }
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, name, key_hash, scopes, is_active)
         SELECT key.id, $2, key.name, key.hash, key.scopes::jsonb, key.active
         FROM UNNEST($1::uuid[], $3::text[], $4::text[], $5::text[], $6::bool[])
              AS key(id, name, hash, scopes, active)
         ON CONFLICT (id) DO UPDATE SET
             user_id = EXCLUDED.user_id, name = EXCLUDED.name, key_hash = EXCLUDED.key_hash,
             scopes = EXCLUDED.scopes, is_active = EXCLUDED.is_active,
             updated_at = CURRENT_TIMESTAMP
         WHERE (api_keys.user_id, api_keys.name, api_keys.key_hash, api_keys.scopes, api_keys.is_active)
               IS DISTINCT FROM
               (EXCLUDED.user_id, EXCLUDED.name, EXCLUDED.key_hash, EXCLUDED.scopes, EXCLUDED.is_active)",
    )
    .bind(&key_ids)
    .bind(owner)
    .bind(&names)
    .bind(&hashes)
    .bind(&scopes)
    .bind(&active)
    .execute(&mut *conn)
    .await
    .map_err(failed("api keys"))?;
    sqlx::query(
        "DELETE FROM api_keys WHERE scopes @> jsonb_build_array($1::text) AND NOT (id = ANY($2))",
    )
    .bind(workflow_scope(workflow.uid))
    .bind(&key_ids)
    .execute(conn)
    .await
    .map_err(failed("api keys"))?;
    Ok(())
}

/// A deleted workflow's keys go with its endpoints.
pub async fn delete_api_keys(
    conn: &mut PgConnection,
    workflow_uid: Uuid,
) -> Result<(), WriteError> {
    sqlx::query("DELETE FROM api_keys WHERE scopes @> jsonb_build_array($1::text)")
        .bind(workflow_scope(workflow_uid))
        .execute(conn)
        .await
        .map_err(failed("api keys"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sqlx::PgPool;
    use uuid::Uuid;

    use super::super::fixtures::*;
    use super::super::ids::SYSTEM_USER_ID;
    use super::super::records::*;
    use super::user_id;

    const FINGERPRINT: &str = "sha256:0123456789abcdef";

    fn created_by_alice() -> WorkflowRecord {
        let mut workflow = workflow();
        workflow.created_by = Some("alice@example.com".into());
        let mut bearer = workflow.triggers[0].clone();
        bearer.name = "deploy".into();
        let webhook = bearer.webhook.as_mut().unwrap();
        webhook.path = "/hooks/growth/triage-signup/deploy".into();
        webhook.bearer_fingerprint = Some(FINGERPRINT.into());
        workflow.triggers.push(bearer);
        workflow
    }

    async fn scalar(pool: &PgPool, sql: &'static str) -> Option<Uuid> {
        sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn creators_are_users_and_objects_without_one_stay_the_operators(pool: PgPool) {
        let mut run = execution(1, RunPhase::Running);
        run.created_by = Some("system:sluice:schedule:nightly".into());
        let unstamped = execution(2, RunPhase::Running);
        write(
            &pool,
            &[
                MirrorEvent::Workflow(created_by_alice()),
                MirrorEvent::Execution(run.clone()),
                MirrorEvent::Execution(unstamped.clone()),
            ],
        )
        .await;
        let alice = user_id("alice@example.com");
        assert_eq!(
            scalar(&pool, "SELECT created_by FROM workflows").await,
            Some(alice)
        );
        assert_eq!(
            scalar(&pool, "SELECT created_by FROM workflow_versions").await,
            Some(alice)
        );
        assert_eq!(
            scalar(&pool, "SELECT updated_by FROM workflows").await,
            Some(SYSTEM_USER_ID),
            "who changed it last is not known"
        );
        let runs: Vec<(Uuid, Option<Uuid>)> =
            sqlx::query_as("SELECT id, created_by FROM workflow_executions ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            runs,
            vec![
                (run.uid, Some(user_id("system:sluice:schedule:nightly"))),
                (unstamped.uid, Some(SYSTEM_USER_ID)),
            ]
        );
        let names: Vec<String> = sqlx::query_scalar("SELECT name::text FROM users ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(
            names,
            [
                "alice@example.com",
                "sluice-operator",
                "system:sluice:schedule:nightly"
            ]
        );

        // An older workflow row made by the operator learns its creator.
        let mut plain = workflow();
        plain.uid = uid(11);
        plain.name = "older".into();
        plain.triggers.clear();
        write(&pool, &[MirrorEvent::Workflow(plain.clone())]).await;
        plain.created_by = Some("bob".into());
        plain.revision = 2;
        write(&pool, &[MirrorEvent::Workflow(plain)]).await;
        let created_by: Option<Uuid> =
            sqlx::query_scalar("SELECT created_by FROM workflows WHERE id = $1")
                .bind(uid(11))
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(created_by, Some(user_id("bob")));
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn bearer_triggers_are_api_keys_of_the_creator_with_a_fingerprint_only(pool: PgPool) {
        let workflow = created_by_alice();
        write(&pool, &[MirrorEvent::Workflow(workflow.clone())]).await;
        let keys: Vec<(Uuid, Uuid, String, String, serde_json::Value, bool)> = sqlx::query_as(
            "SELECT id, user_id, name::text, key_hash::text, scopes, is_active FROM api_keys",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            keys,
            vec![(
                super::ids::api_key_id(uid(10), "deploy"),
                user_id("alice@example.com"),
                "webhook /hooks/growth/triage-signup/deploy".to_owned(),
                FINGERPRINT.to_owned(),
                json!([
                    "webhook:/hooks/growth/triage-signup/deploy",
                    format!("workflow:{}", uid(10))
                ]),
                true
            )],
            "the HMAC trigger has no key"
        );
        let before = dump(&pool, "api_keys").await;
        write(&pool, &[MirrorEvent::Workflow(workflow.clone())]).await;
        assert_eq!(
            before,
            dump(&pool, "api_keys").await,
            "a replay changes nothing"
        );

        // The trigger moves to HMAC: its key goes.
        let mut hmac = workflow.clone();
        hmac.revision = 2;
        hmac.triggers[1]
            .webhook
            .as_mut()
            .unwrap()
            .bearer_fingerprint = None;
        write(&pool, &[MirrorEvent::Workflow(hmac)]).await;
        assert!(dump(&pool, "api_keys").await.is_empty());

        // Back to a bearer token, then the workflow is deleted.
        let mut again = workflow;
        again.revision = 3;
        write(&pool, &[MirrorEvent::Workflow(again)]).await;
        assert_eq!(dump(&pool, "api_keys").await.len(), 1);
        write(
            &pool,
            &[MirrorEvent::Deleted(DeletedRecord {
                kind: ResourceKind::Workflow,
                uid: uid(10),
            })],
        )
        .await;
        assert!(dump(&pool, "api_keys").await.is_empty());
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn an_audit_entry_names_its_user(pool: PgPool) {
        let entry = |user: Option<&str>, version: &str| {
            MirrorEvent::Audit(AuditRecord {
                resource_uid: uid(10),
                version: version.into(),
                kind: ResourceKind::Workflow,
                name: "triage-signup".into(),
                namespace: "growth".into(),
                workspace_uid: Some(uid(1)),
                action: if version == "1" {
                    AuditAction::Created
                } else {
                    AuditAction::Updated
                },
                old_values: None,
                new_values: Some(json!({"spec": {}})),
                metadata: None,
                user: user.map(str::to_owned),
                observed_at: at(9, version.parse().unwrap()),
            })
        };
        write(
            &pool,
            &[entry(Some("alice@example.com"), "1"), entry(None, "2")],
        )
        .await;
        let users: Vec<(String, Option<Uuid>)> =
            sqlx::query_as("SELECT action::text, user_id FROM audit_logs ORDER BY created_at")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            users,
            vec![
                (
                    "workflow_created".to_owned(),
                    Some(user_id("alice@example.com"))
                ),
                ("workflow_updated".to_owned(), None),
            ]
        );
    }
}
