//! Connections and the node catalog.
//!
//! A Connection row never holds secret material: `config` is masked again
//! here (whatever the operator sent), and `encrypted_config` holds only the
//! Secret's name and a fingerprint of its data —
//! `secretRef:<name>;sha256:<hex>` — so a reader sees that credentials exist
//! and when they changed, not what they are. No retries or commits here.

use sqlx::PgConnection;
use uuid::Uuid;

use super::records::{ConnectionRecord, NodeDefinitionRecord};
use super::sanitize::{self, Limits, Notes};
use super::workflows::ensure_workspace;
use super::{WriteError, failed, ids};

/// What `connections.encrypted_config` stores for a Connection.
pub fn secret_reference(connection: &ConnectionRecord) -> String {
    let name = connection
        .secret_name
        .as_deref()
        .map(|name| sanitize::varchar(name, 253));
    // Only a real SHA-256 hex digest passes, so a mistaken caller cannot
    // smuggle a secret value in as a "fingerprint".
    let fingerprint = connection
        .secret_fingerprint
        .as_deref()
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    match (name, fingerprint) {
        (Some(name), Some(fingerprint)) => format!("secretRef:{name};sha256:{fingerprint}"),
        (Some(name), None) => format!("secretRef:{name}"),
        (None, _) => "none".to_owned(),
    }
}

/// Creates or updates a Connection's row (config masked).
pub async fn upsert_connection(
    conn: &mut PgConnection,
    connection: &ConnectionRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    ensure_workspace(conn, connection.workspace_uid, &connection.namespace).await?;
    let mut notes = Notes::default();
    let config = sanitize::json_text(
        &sanitize::mask_secrets(&connection.config),
        limits,
        "config",
        &mut notes,
    );
    sqlx::query(
        "INSERT INTO connections (id, workspace_id, name, type, config, encrypted_config, verification_status,
                                 last_verified_at, is_active, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, COALESCE($11, CURRENT_TIMESTAMP))
         ON CONFLICT (id) DO UPDATE SET
             workspace_id = EXCLUDED.workspace_id, name = EXCLUDED.name, type = EXCLUDED.type,
             config = EXCLUDED.config, encrypted_config = EXCLUDED.encrypted_config,
             verification_status = EXCLUDED.verification_status,
             last_verified_at = GREATEST(connections.last_verified_at, EXCLUDED.last_verified_at),
             is_active = EXCLUDED.is_active",
    )
    .bind(connection.uid)
    .bind(connection.workspace_uid)
    .bind(sanitize::varchar(&connection.name, 255))
    .bind(sanitize::varchar(&connection.connection_type, 100))
    .bind(config)
    .bind(secret_reference(connection))
    .bind(connection.verification.as_str())
    .bind(connection.last_verified_at)
    .bind(connection.ready)
    .bind(ids::SYSTEM_USER_ID)
    .bind(connection.created_at)
    .execute(&mut *conn)
    .await
    .map_err(failed("connection"))?;
    upsert_oauth_connection(conn, connection).await
}

/// The `oauth_connections` row of `connection`, keyed by its uid (id and
/// connection_id): written when it has `spec.oauth2`, removed when not.
/// The token columns are never written (a constraint keeps them empty).
async fn upsert_oauth_connection(
    conn: &mut PgConnection,
    connection: &ConnectionRecord,
) -> Result<(), WriteError> {
    let Some(oauth2) = &connection.oauth2 else {
        sqlx::query("DELETE FROM oauth_connections WHERE connection_id = $1")
            .bind(connection.uid)
            .execute(conn)
            .await
            .map_err(failed("oauth connection"))?;
        return Ok(());
    };
    let scopes: Vec<String> = oauth2
        .scopes
        .iter()
        .take(64)
        .map(|scope| sanitize::varchar(scope, 512))
        .collect();
    sqlx::query(
        "INSERT INTO oauth_connections (id, connection_id, provider, grant_type, status, token_expires_at,
                                        scopes, last_refreshed_at)
         VALUES ($1, $1, $2, $3, $4, $5, $6::jsonb, $7)
         ON CONFLICT (connection_id) DO UPDATE SET
             provider = EXCLUDED.provider, grant_type = EXCLUDED.grant_type, status = EXCLUDED.status,
             token_expires_at = EXCLUDED.token_expires_at, scopes = EXCLUDED.scopes,
             last_refreshed_at = EXCLUDED.last_refreshed_at, updated_at = CURRENT_TIMESTAMP",
    )
    .bind(connection.uid)
    .bind(sanitize::varchar(&oauth2.provider, 50))
    .bind(sanitize::varchar(&oauth2.grant, 30))
    .bind(sanitize::varchar(&oauth2.status, 30))
    .bind(oauth2.expires_at)
    .bind(serde_json::Value::from(scopes).to_string())
    .bind(oauth2.last_refreshed_at)
    .execute(conn)
    .await
    .map_err(failed("oauth connection"))?;
    Ok(())
}

/// A deleted Connection: its row goes (the audit log keeps its last state).
pub async fn delete_connection(conn: &mut PgConnection, uid: Uuid) -> Result<(), WriteError> {
    sqlx::query("DELETE FROM connections WHERE id = $1")
        .bind(uid)
        .execute(conn)
        .await
        .map_err(failed("connection"))?;
    Ok(())
}

/// Creates or updates one node type of the catalog, keyed by name+version.
pub async fn upsert_node_definition(
    conn: &mut PgConnection,
    definition: &NodeDefinitionRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    let mut notes = Notes::default();
    let name = sanitize::varchar(&definition.name, 255);
    let version = sanitize::varchar(&definition.version, 20);
    sqlx::query(
        "INSERT INTO node_definitions (id, name, description, type, category, icon, settings_schema,
                                      input_schema, output_schema, is_builtin, is_active, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9::jsonb, $10, $11, $12)
         ON CONFLICT (name, version) DO UPDATE SET
             description = EXCLUDED.description, type = EXCLUDED.type, category = EXCLUDED.category,
             icon = EXCLUDED.icon, settings_schema = EXCLUDED.settings_schema,
             input_schema = EXCLUDED.input_schema, output_schema = EXCLUDED.output_schema,
             is_builtin = EXCLUDED.is_builtin, is_active = EXCLUDED.is_active",
    )
    .bind(ids::node_definition_id(&name, &version))
    .bind(&name)
    .bind(
        definition
            .description
            .as_deref()
            .map(|text| sanitize::text(text, limits.text_cap_bytes, "description", &mut notes)),
    )
    .bind(sanitize::varchar(&definition.kind, 100))
    .bind(definition.category.as_deref().map(|text| sanitize::varchar(text, 100)))
    .bind(definition.icon.as_deref().map(|text| sanitize::varchar(text, 100)))
    .bind(sanitize::json_opt(definition.settings_schema.as_ref(), limits, "settings_schema", &mut notes))
    .bind(sanitize::json_opt(definition.input_schema.as_ref(), limits, "input_schema", &mut notes))
    .bind(sanitize::json_opt(definition.output_schema.as_ref(), limits, "output_schema", &mut notes))
    .bind(definition.builtin)
    .bind(definition.active)
    .bind(&version)
    .execute(conn)
    .await
    .map_err(failed("node definition"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use sqlx::PgPool;

    use super::super::fixtures::*;
    use super::super::records::*;

    fn connection() -> ConnectionRecord {
        ConnectionRecord {
            uid: uid(30),
            workspace_uid: uid(1),
            namespace: "growth".into(),
            name: "crm-db".into(),
            connection_type: "postgres".into(),
            config: json!({"dsn": "postgres://app:hunter2@db/app", "password": "hunter2", "sslmode": "require"}),
            secret_name: Some("crm-db".into()),
            secret_fingerprint: Some("0123456789ABCDEF".repeat(4)),
            ready: true,
            verification: Verification::Failed,
            last_verified_at: Some(at(8, 0)),
            created_at: None,
            oauth2: None,
        }
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn connections_hold_no_secret_material(pool: PgPool) {
        // No workspace event first: the connection creates its workspace.
        write(&pool, &[MirrorEvent::Connection(connection())]).await;
        let (config, reference, verification): (Value, String, String) =
            sqlx::query_as("SELECT config, encrypted_config, verification_status FROM connections")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            config,
            json!({"dsn": "postgres://app:***@db/app", "password": "***", "sslmode": "require"})
        );
        assert_eq!(
            reference,
            format!("secretRef:crm-db;sha256:{}", "0123456789abcdef".repeat(4))
        );
        assert_eq!(verification, "failed");
        let everything: Vec<String> = dump(&pool, "connections").await;
        assert!(!everything.concat().contains("hunter2"));

        let mut smuggled = connection();
        smuggled.secret_fingerprint = Some("hunter2".into());
        write(&pool, &[MirrorEvent::Connection(smuggled)]).await;
        let reference: String = sqlx::query_scalar("SELECT encrypted_config FROM connections")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(reference, "secretRef:crm-db");

        write(
            &pool,
            &[MirrorEvent::Deleted(DeletedRecord {
                kind: ResourceKind::Connection,
                uid: uid(30),
            })],
        )
        .await;
        assert!(dump(&pool, "connections").await.is_empty());
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn oauth2_connections_are_mirrored_by_uid_without_tokens(pool: PgPool) {
        let mut oauth = connection();
        oauth.connection_type = "http".into();
        oauth.oauth2 = Some(OAuth2Record {
            provider: "hubspot".into(),
            grant: "RefreshToken".into(),
            status: "authorized".into(),
            expires_at: Some(at(9, 0)),
            scopes: vec!["crm.objects.read".into()],
            last_refreshed_at: Some(at(8, 0)),
        });
        // Twice: the upsert is idempotent.
        write(&pool, &[MirrorEvent::Connection(oauth.clone())]).await;
        write(&pool, &[MirrorEvent::Connection(oauth.clone())]).await;
        let rows: Vec<(uuid::Uuid, uuid::Uuid, String, String, Value, Option<String>)> = sqlx::query_as(
            "SELECT id, connection_id, provider, status, scopes, access_token FROM oauth_connections",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 1);
        let (id, connection_id, provider, status, scopes, token) = &rows[0];
        assert_eq!((*id, *connection_id), (uid(30), uid(30)));
        assert_eq!(
            (provider.as_str(), status.as_str()),
            ("hubspot", "authorized")
        );
        assert_eq!(scopes, &json!(["crm.objects.read"]));
        assert_eq!(token, &None);

        oauth.oauth2.as_mut().unwrap().status = "refresh_failed".into();
        write(&pool, &[MirrorEvent::Connection(oauth.clone())]).await;
        let status: String = sqlx::query_scalar("SELECT status FROM oauth_connections")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(status, "refresh_failed");

        // The database itself refuses a token.
        let smuggled = sqlx::query("UPDATE oauth_connections SET access_token = 'at-1'")
            .execute(&pool)
            .await;
        assert!(smuggled.is_err(), "a token was stored");

        // spec.oauth2 removed: the row goes.
        oauth.oauth2 = None;
        write(&pool, &[MirrorEvent::Connection(oauth)]).await;
        assert!(dump(&pool, "oauth_connections").await.is_empty());
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn the_provider_presets_rows_agree_with_the_operators(pool: PgPool) {
        use sluice_crds::oauth2::{ClientAuth, OAuth2Provider};
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT provider, display_name, token_url, authorization_url, client_auth
             FROM oauth_providers WHERE is_preset ORDER BY provider",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut expected: Vec<(String, String, String, String, String)> = OAuth2Provider::ALL
            .iter()
            .map(|provider| {
                let preset = provider.preset();
                (
                    preset.name.to_owned(),
                    preset.display_name.to_owned(),
                    preset.token_url.to_owned(),
                    preset.authorization_url.to_owned(),
                    match preset.client_auth {
                        ClientAuth::Basic => "basic".to_owned(),
                        ClientAuth::Body => "body".to_owned(),
                    },
                )
            })
            .collect();
        expected.sort();
        assert_eq!(rows, expected);
        // A team extends the list with its own provider.
        sqlx::query(
            "INSERT INTO oauth_providers (provider, display_name, token_url) VALUES ('acme', 'Acme', 'https://acme.example/token')",
        )
        .execute(&pool)
        .await
        .unwrap();
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn node_definitions_are_keyed_by_name_and_version(pool: PgPool) {
        let definition = |version: &str, description: &str| NodeDefinitionRecord {
            name: "http".into(),
            version: version.into(),
            description: Some(description.into()),
            kind: "action".into(),
            category: Some("http".into()),
            icon: None,
            settings_schema: Some(json!({"type": "object"})),
            input_schema: None,
            output_schema: None,
            builtin: true,
            active: true,
        };
        write(
            &pool,
            &[MirrorEvent::NodeDefinition(definition("1.0.0", "old"))],
        )
        .await;
        write(
            &pool,
            &[MirrorEvent::NodeDefinition(definition("1.0.0", "new"))],
        )
        .await;
        write(
            &pool,
            &[MirrorEvent::NodeDefinition(definition("1.1.0", "newer"))],
        )
        .await;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT version, description FROM node_definitions ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            rows,
            [
                ("1.0.0".into(), "new".into()),
                ("1.1.0".into(), "newer".into())
            ]
        );
    }
}
