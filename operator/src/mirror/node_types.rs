//! Custom node types (NodeType, ClusterNodeType) → rows: `custom_nodes`
//! (every type, keyed by its uid; a ClusterNodeType has no workspace), the
//! type's `node_definitions` row (name, version; not built in), one
//! `node_templates` row per preset (id from uid and preset; presets gone
//! from the type are removed), `installed_nodes` (a NodeType in its
//! workspace; a ClusterNodeType in every active workspace without a
//! NodeType of that name) and, for a ClusterNodeType, `node_marketplace`.
//! No retries or commits here.

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::records::{NodeDefinitionRecord, NodeTypeRecord};
use super::sanitize::{self, Limits, Notes};
use super::workflows::ensure_workspace;
use super::{WriteError, catalog, failed, ids};

/// `node_templates.node_type` of a type's presets: `<namespace>/<name>`,
/// or `cluster/<name>` for a ClusterNodeType.
fn template_owner(record: &NodeTypeRecord) -> String {
    match &record.workspace {
        Some((_, namespace)) => format!("{namespace}/{}", record.name),
        None => format!("cluster/{}", record.name),
    }
}

/// Writes every row of one custom node type.
pub async fn upsert_node_type(
    conn: &mut PgConnection,
    record: &NodeTypeRecord,
    limits: &Limits,
) -> Result<(), WriteError> {
    let spec = &record.spec;
    let mut notes = Notes::default();
    if let Some((workspace_uid, namespace)) = &record.workspace {
        ensure_workspace(conn, *workspace_uid, namespace).await?;
    }
    let kind = if record.workspace.is_some() {
        "NodeType"
    } else {
        "ClusterNodeType"
    };
    let name = sanitize::varchar(&record.name, 255);
    let version = sanitize::varchar(&spec.version, 20);
    let description = spec
        .description
        .as_deref()
        .map(|text| sanitize::text(text, limits.text_cap_bytes, "description", &mut notes));
    let category = spec
        .category
        .as_deref()
        .map(|text| sanitize::varchar(text, 100));
    let params_schema = sanitize::json_opt(
        spec.params_schema.as_ref(),
        limits,
        "settings_schema",
        &mut notes,
    );
    let output_schema = sanitize::json_opt(
        spec.output_schema.as_ref(),
        limits,
        "output_schema",
        &mut notes,
    );
    sqlx::query(
        "INSERT INTO custom_nodes (id, workspace_id, name, description, type, category, settings_schema,
                                   output_schema, code, language, is_active, created_by, version, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, 'container', TRUE, $10, $11,
                 COALESCE($12, CURRENT_TIMESTAMP))
         ON CONFLICT (id) DO UPDATE SET
             workspace_id = EXCLUDED.workspace_id, name = EXCLUDED.name, description = EXCLUDED.description,
             type = EXCLUDED.type, category = EXCLUDED.category, settings_schema = EXCLUDED.settings_schema,
             output_schema = EXCLUDED.output_schema, code = EXCLUDED.code, language = EXCLUDED.language,
             is_active = TRUE, version = EXCLUDED.version",
    )
    .bind(record.uid)
    .bind(record.workspace.as_ref().map(|(uid, _)| *uid))
    .bind(&name)
    .bind(&description)
    .bind(kind)
    .bind(&category)
    .bind(&params_schema)
    .bind(&output_schema)
    .bind(sanitize::varchar(&spec.image, 1024))
    .bind(ids::SYSTEM_USER_ID)
    .bind(&version)
    .bind(record.created_at)
    .execute(&mut *conn)
    .await
    .map_err(failed("custom node"))?;

    catalog::upsert_node_definition(
        conn,
        &NodeDefinitionRecord {
            name: record.name.clone(),
            version: spec.version.clone(),
            description: spec.description.clone(),
            kind: "action".to_owned(),
            category: spec.category.clone(),
            icon: None,
            settings_schema: spec.params_schema.clone(),
            input_schema: None,
            output_schema: spec.output_schema.clone(),
            builtin: false,
            active: true,
        },
        limits,
    )
    .await?;

    let owner = template_owner(record);
    let template_ids: Vec<Uuid> = spec
        .presets
        .iter()
        .map(|preset| ids::node_template_id(record.uid, &preset.name))
        .collect();
    sqlx::query("DELETE FROM node_templates WHERE node_type = $1 AND NOT (id = ANY($2))")
        .bind(&owner)
        .bind(&template_ids)
        .execute(&mut *conn)
        .await
        .map_err(failed("node templates"))?;
    for (preset, id) in spec.presets.iter().zip(&template_ids) {
        let data = sanitize::json_text(&preset.params, limits, "template_data", &mut notes);
        sqlx::query(
            "INSERT INTO node_templates (id, name, description, node_type, template_data, is_public, created_by)
             VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
             ON CONFLICT (id) DO UPDATE SET
                 name = EXCLUDED.name, description = EXCLUDED.description, node_type = EXCLUDED.node_type,
                 template_data = EXCLUDED.template_data, is_public = EXCLUDED.is_public",
        )
        .bind(id)
        .bind(sanitize::varchar(&preset.name, 255))
        .bind(preset.description.as_deref())
        .bind(&owner)
        .bind(data)
        .bind(record.workspace.is_none())
        .bind(ids::SYSTEM_USER_ID)
        .execute(&mut *conn)
        .await
        .map_err(failed("node template"))?;
    }

    match &record.workspace {
        Some((workspace_uid, _)) => {
            // The namespace's own type wins over a ClusterNodeType's installation.
            sqlx::query(
                "INSERT INTO installed_nodes (workspace_id, marketplace_node_id, name, version, config, is_active, installed_by)
                 VALUES ($1, NULL, $2, $3, $4::jsonb, TRUE, $5)
                 ON CONFLICT (workspace_id, name) DO UPDATE SET
                     marketplace_node_id = NULL, version = EXCLUDED.version, config = EXCLUDED.config,
                     is_active = TRUE, updated_at = CURRENT_TIMESTAMP",
            )
            .bind(workspace_uid)
            .bind(&name)
            .bind(&version)
            .bind(json!({"kind": "NodeType", "uid": record.uid, "image": spec.image}).to_string())
            .bind(ids::SYSTEM_USER_ID)
            .execute(&mut *conn)
            .await
            .map_err(failed("installed node"))?;
        }
        None => {
            let manifest = sanitize::json_text(
                &serde_json::to_value(spec).unwrap_or_default(),
                limits,
                "manifest",
                &mut notes,
            );
            sqlx::query(
                "INSERT INTO node_marketplace (id, name, description, publisher, version, node_type, category,
                                               settings_schema, download_url, manifest, is_verified, is_active)
                 VALUES ($1, $2, $3, 'cluster', $4, $2, $5, $6::jsonb, $7, $8::jsonb, FALSE, TRUE)
                 ON CONFLICT (id) DO UPDATE SET
                     name = EXCLUDED.name, description = EXCLUDED.description, version = EXCLUDED.version,
                     node_type = EXCLUDED.node_type, category = EXCLUDED.category,
                     settings_schema = EXCLUDED.settings_schema, download_url = EXCLUDED.download_url,
                     manifest = EXCLUDED.manifest, is_active = TRUE, updated_at = CURRENT_TIMESTAMP",
            )
            .bind(record.uid)
            .bind(&name)
            .bind(&description)
            .bind(&version)
            .bind(&category)
            .bind(&params_schema)
            .bind(sanitize::varchar(&spec.image, 1024))
            .bind(manifest)
            .execute(&mut *conn)
            .await
            .map_err(failed("marketplace node"))?;
            sqlx::query(
                "INSERT INTO installed_nodes (workspace_id, marketplace_node_id, name, version, config, is_active, installed_by)
                 SELECT id, $1, $2, $3, $4::jsonb, TRUE, $5 FROM workspaces WHERE is_active
                 ON CONFLICT (workspace_id, name) DO UPDATE SET
                     version = EXCLUDED.version, config = EXCLUDED.config, is_active = TRUE,
                     updated_at = CURRENT_TIMESTAMP
                 WHERE installed_nodes.marketplace_node_id = EXCLUDED.marketplace_node_id",
            )
            .bind(record.uid)
            .bind(&name)
            .bind(&version)
            .bind(json!({"kind": "ClusterNodeType", "uid": record.uid, "image": spec.image}).to_string())
            .bind(ids::SYSTEM_USER_ID)
            .execute(&mut *conn)
            .await
            .map_err(failed("installed node"))?;
        }
    }
    Ok(())
}

/// A deleted NodeType or ClusterNodeType: its rows go (the catalog's
/// `node_definitions` row stays, as for every version once published).
pub async fn delete_node_type(conn: &mut PgConnection, uid: Uuid) -> Result<(), WriteError> {
    let row: Option<(Option<Uuid>, String)> =
        sqlx::query_as("SELECT workspace_id, name FROM custom_nodes WHERE id = $1")
            .bind(uid)
            .fetch_optional(&mut *conn)
            .await
            .map_err(failed("custom node"))?;
    let Some((workspace, name)) = row else {
        return Ok(());
    };
    let owner = match workspace {
        Some(workspace) => {
            let namespace: Option<String> =
                sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1")
                    .bind(workspace)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(failed("workspace"))?;
            sqlx::query(
                "DELETE FROM installed_nodes WHERE workspace_id = $1 AND name = $2 AND marketplace_node_id IS NULL",
            )
            .bind(workspace)
            .bind(&name)
            .execute(&mut *conn)
            .await
            .map_err(failed("installed node"))?;
            format!("{}/{name}", namespace.unwrap_or_default())
        }
        None => {
            for statement in [
                "DELETE FROM installed_nodes WHERE marketplace_node_id = $1",
                "DELETE FROM node_marketplace WHERE id = $1",
            ] {
                sqlx::query(statement)
                    .bind(uid)
                    .execute(&mut *conn)
                    .await
                    .map_err(failed("marketplace node"))?;
            }
            format!("cluster/{name}")
        }
    };
    sqlx::query("DELETE FROM node_templates WHERE node_type = $1")
        .bind(owner)
        .execute(&mut *conn)
        .await
        .map_err(failed("node templates"))?;
    sqlx::query("DELETE FROM custom_nodes WHERE id = $1")
        .bind(uid)
        .execute(&mut *conn)
        .await
        .map_err(failed("custom node"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_crds::{NodePreset, NodeTypeSpec};
    use sqlx::PgPool;

    use super::super::fixtures::*;
    use super::super::records::*;

    fn greeter(version: &str, presets: &[&str]) -> NodeTypeSpec {
        NodeTypeSpec {
            version: version.into(),
            description: Some("Greets".into()),
            category: Some("messaging".into()),
            image: "example/greeter:1".into(),
            params_schema: Some(json!({"type": "object", "required": ["name"]})),
            presets: presets
                .iter()
                .map(|name| NodePreset {
                    name: (*name).into(),
                    description: None,
                    params: json!({"greeting": name}),
                })
                .collect(),
            ..NodeTypeSpec::default()
        }
    }

    fn record(
        uid_number: u128,
        workspace: Option<(u128, &str)>,
        spec: NodeTypeSpec,
    ) -> MirrorEvent {
        MirrorEvent::NodeType(NodeTypeRecord {
            uid: uid(uid_number),
            name: "greeter".into(),
            workspace: workspace.map(|(n, namespace)| (uid(n), namespace.to_owned())),
            spec,
            created_at: None,
        })
    }

    async fn installed(pool: &PgPool) -> Vec<(String, String, Option<uuid::Uuid>)> {
        sqlx::query_as(
            "SELECT w.name, i.version, i.marketplace_node_id FROM installed_nodes i
             JOIN workspaces w ON w.id = i.workspace_id ORDER BY w.name",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_cluster_type_is_installed_everywhere_a_namespace_type_does_not_shadow_it(
        pool: PgPool,
    ) {
        let workspaces = [(1, "growth"), (2, "ops")].map(|(n, name)| {
            MirrorEvent::Workspace(WorkspaceRecord {
                uid: uid(n),
                name: name.into(),
                ..workspace()
            })
        });
        write(&pool, &workspaces).await;
        write(
            &pool,
            &[record(
                50,
                Some((1, "growth")),
                greeter("2.0.0", &["formal"]),
            )],
        )
        .await;
        write(
            &pool,
            &[record(60, None, greeter("1.0.0", &["formal", "casual"]))],
        )
        .await;
        // Replayed: nothing changes.
        write(
            &pool,
            &[record(60, None, greeter("1.0.0", &["formal", "casual"]))],
        )
        .await;
        assert_eq!(
            installed(&pool).await,
            [
                ("growth".to_owned(), "2.0.0".to_owned(), None),
                ("ops".to_owned(), "1.0.0".to_owned(), Some(uid(60)))
            ]
        );
        let custom: Vec<(String, Option<uuid::Uuid>, String)> =
            sqlx::query_as("SELECT type, workspace_id, version FROM custom_nodes ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            custom,
            [
                ("ClusterNodeType".to_owned(), None, "1.0.0".to_owned()),
                ("NodeType".to_owned(), Some(uid(1)), "2.0.0".to_owned())
            ]
        );
        let marketplace: Vec<(String, String)> =
            sqlx::query_as("SELECT name, download_url FROM node_marketplace")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            marketplace,
            [("greeter".to_owned(), "example/greeter:1".to_owned())]
        );
        let definitions: Vec<(String, bool)> = sqlx::query_as(
            "SELECT version, is_builtin FROM node_definitions WHERE name = 'greeter' ORDER BY version",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            definitions,
            [("1.0.0".to_owned(), false), ("2.0.0".to_owned(), false)]
        );

        // A preset removed from the type leaves node_templates.
        write(&pool, &[record(60, None, greeter("1.0.0", &["formal"]))]).await;
        let templates: Vec<(String, String, serde_json::Value)> = sqlx::query_as(
            "SELECT node_type, name, template_data FROM node_templates ORDER BY node_type",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            templates,
            [
                (
                    "cluster/greeter".to_owned(),
                    "formal".to_owned(),
                    json!({"greeting": "formal"})
                ),
                (
                    "growth/greeter".to_owned(),
                    "formal".to_owned(),
                    json!({"greeting": "formal"})
                )
            ]
        );

        write(&pool, &[MirrorEvent::NodeTypeDeleted(uid(60))]).await;
        assert_eq!(
            installed(&pool).await,
            [("growth".to_owned(), "2.0.0".to_owned(), None)]
        );
        assert!(dump(&pool, "node_marketplace").await.is_empty());
        write(&pool, &[MirrorEvent::NodeTypeDeleted(uid(50))]).await;
        assert!(installed(&pool).await.is_empty());
        assert!(dump(&pool, "custom_nodes").await.is_empty());
        assert!(dump(&pool, "node_templates").await.is_empty());
    }
}
