//! Rows of objects deleted while no operator watched.
//!
//! A resync lists everything in the operator's scope and ends with an
//! [`InventoryRecord`]; [`sweep_gone`] then treats every row in scope
//! whose object the list lacks as a delete the watch never saw, with the
//! same effect ([`super::apply::apply_deleted`]): a Workflow is archived,
//! a namespace's workspace made inactive, a Schedule's or Connection's row
//! removed, a gone run's open queue entry cancelled.
//!
//! Why this cannot sweep a live object: kube UIDs are never reused, so an
//! object a consistent list lacks is gone for good; and the writer applies
//! a resync's events (the inventory last) without writing anything else
//! in between, so a row of an object created after the list cannot exist
//! yet when the sweep runs. Only rows the operator owns are touched: the
//! workspaces it created ([`ids::SYSTEM_USER_ID`]) named after a namespace
//! in scope, and what hangs off them.

use sqlx::PgConnection;
use uuid::Uuid;

use super::apply::apply_deleted;
use super::records::{DeletedRecord, InventoryRecord, ResourceKind, Scope};
use super::{WriteError, failed, ids};

/// Rows in scope that the inventory lacks, by kind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Gone {
    pub workspaces: Vec<Uuid>,
    pub workflows: Vec<Uuid>,
    pub runs: Vec<Uuid>,
    pub schedules: Vec<Uuid>,
    pub connections: Vec<Uuid>,
}

impl Gone {
    fn deletions(&self) -> Vec<DeletedRecord> {
        // Children first: a schedule or run before its workflow, a
        // workflow before its workspace (the order a namespace's
        // deletion would have shown them in).
        [
            (ResourceKind::WorkflowRun, &self.runs),
            (ResourceKind::Schedule, &self.schedules),
            (ResourceKind::Connection, &self.connections),
            (ResourceKind::Workflow, &self.workflows),
            (ResourceKind::Workspace, &self.workspaces),
        ]
        .into_iter()
        .flat_map(|(kind, uids)| {
            uids.iter()
                .map(move |uid| DeletedRecord { kind, uid: *uid })
        })
        .collect()
    }

    fn is_empty(&self) -> bool {
        self.deletions().is_empty()
    }
}

/// The operator's workspaces in `scope`, as a subquery over `$1` (the
/// operator's user) and `$2` (the namespaces, or NULL for every one).
const IN_SCOPE: &str =
    "SELECT id FROM workspaces WHERE owner_id = $1 AND ($2::text[] IS NULL OR name = ANY($2))";

/// Finds the rows in scope whose objects `inventory` lacks.
pub async fn find_gone(
    conn: &mut PgConnection,
    inventory: &InventoryRecord,
) -> Result<Gone, WriteError> {
    let namespaces = match &inventory.scope {
        Scope::Cluster => None,
        Scope::Namespaces(names) => Some(names.clone()),
    };
    let select = |sql: String, present: &[Uuid]| {
        sqlx::query_scalar::<_, Uuid>(sqlx::AssertSqlSafe(sql))
            .bind(ids::SYSTEM_USER_ID)
            .bind(namespaces.clone())
            .bind(present.to_vec())
    };
    let workspaces = select(
        format!("{IN_SCOPE} AND is_active AND NOT (id = ANY($3))"),
        &inventory.namespaces,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(failed("gone workspaces"))?;
    let workflows = select(
        format!(
            "SELECT id FROM workflows WHERE workspace_id IN ({IN_SCOPE})
             AND status <> 'archived' AND NOT (id = ANY($3))"
        ),
        &inventory.workflows,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(failed("gone workflows"))?;
    let runs = select(
        format!(
            "SELECT q.execution_id FROM execution_queue q
             JOIN workflows w ON w.id = q.workflow_id
             WHERE w.workspace_id IN ({IN_SCOPE}) AND q.status IN ('pending', 'processing')
             AND NOT (q.execution_id = ANY($3))"
        ),
        &inventory.runs,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(failed("gone runs"))?;
    let schedules = select(
        format!(
            "SELECT s.id FROM workflow_schedules s JOIN workflows w ON w.id = s.workflow_id
             WHERE w.workspace_id IN ({IN_SCOPE}) AND NOT (s.id = ANY($3))"
        ),
        &inventory.schedules,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(failed("gone schedules"))?;
    let connections = select(
        format!(
            "SELECT id FROM connections WHERE workspace_id IN ({IN_SCOPE}) AND NOT (id = ANY($3))"
        ),
        &inventory.connections,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(failed("gone connections"))?;
    Ok(Gone {
        workspaces,
        workflows,
        runs,
        schedules,
        connections,
    })
}

/// Applies the deletes nobody watched: every row in scope that
/// `inventory` lacks is treated as its object's delete.
pub async fn sweep_gone(
    conn: &mut PgConnection,
    inventory: &InventoryRecord,
) -> Result<(), WriteError> {
    let gone = find_gone(conn, inventory).await?;
    if gone.is_empty() {
        return Ok(());
    }
    for deleted in gone.deletions() {
        apply_deleted(conn, deleted).await?;
    }
    tracing::info!(
        workspaces = gone.workspaces.len(),
        workflows = gone.workflows.len(),
        runs = gone.runs.len(),
        schedules = gone.schedules.len(),
        connections = gone.connections.len(),
        "mirror marked what was deleted while no operator watched"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::fixtures::*;
    use crate::mirror::records::*;
    use sqlx::PgPool;

    /// The fixture workspace with a workflow, a schedule, a connection, a
    /// queued and a finished run.
    async fn seed(pool: &PgPool) {
        let mut events = vec![
            MirrorEvent::Workspace(workspace()),
            MirrorEvent::Workflow(workflow()),
            MirrorEvent::Schedule(ScheduleRecord {
                uid: uid(20),
                workflow_uid: uid(10),
                name: "nightly".into(),
                cron: "30 2 * * *".into(),
                time_zone: "UTC".into(),
                active: true,
                next_run_at: None,
                last_run_at: None,
                created_at: Some(at(8, 0)),
            }),
            MirrorEvent::Connection(ConnectionRecord {
                uid: uid(30),
                workspace_uid: uid(1),
                namespace: "growth".into(),
                name: "crm-api".into(),
                connection_type: "http".into(),
                config: serde_json::json!({}),
                secret_name: None,
                secret_fingerprint: None,
                ready: true,
                verification: Verification::Unverified,
                last_verified_at: None,
                created_at: Some(at(8, 0)),
                oauth2: None,
            }),
        ];
        events.push(MirrorEvent::Execution(execution(1, RunPhase::Queued)));
        events.push(MirrorEvent::Execution(execution(2, RunPhase::Succeeded)));
        write(pool, &events).await;
    }

    fn everything(scope: Scope) -> InventoryRecord {
        InventoryRecord {
            scope,
            namespaces: vec![uid(1)],
            workflows: vec![uid(10)],
            runs: vec![uid(1001), uid(1002)],
            schedules: vec![uid(20)],
            connections: vec![uid(30)],
        }
    }

    async fn state(pool: &PgPool) -> (bool, String, i64, i64, String, i64) {
        let (active,): (bool,) = sqlx::query_as("SELECT is_active FROM workspaces")
            .fetch_one(pool)
            .await
            .unwrap();
        let (status,): (String,) = sqlx::query_as("SELECT status FROM workflows")
            .fetch_one(pool)
            .await
            .unwrap();
        let count = |table: &str| {
            let sql = format!("SELECT count(*) FROM {table}");
            async move {
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }
        };
        let (queue,): (String,) =
            sqlx::query_as("SELECT status FROM execution_queue WHERE execution_id = $1")
                .bind(uid(1001))
                .fetch_one(pool)
                .await
                .unwrap();
        (
            active,
            status,
            count("workflow_schedules").await,
            count("connections").await,
            queue,
            count("webhook_endpoints").await,
        )
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn nothing_listed_is_touched(pool: PgPool) {
        seed(&pool).await;
        write(&pool, &[MirrorEvent::Inventory(everything(Scope::Cluster))]).await;
        assert_eq!(
            state(&pool).await,
            (true, "active".into(), 1, 1, "pending".into(), 1)
        );
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn what_the_list_lacks_is_deleted_as_a_watched_delete_would(pool: PgPool) {
        seed(&pool).await;
        write(
            &pool,
            &[MirrorEvent::Inventory(InventoryRecord {
                scope: Scope::Cluster,
                ..InventoryRecord::default()
            })],
        )
        .await;
        assert_eq!(
            state(&pool).await,
            (false, "archived".into(), 0, 0, "cancelled".into(), 0)
        );
        let (executions,): (i64,) = sqlx::query_as("SELECT count(*) FROM workflow_executions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(executions, 2, "history stays");
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_namespaced_operator_sweeps_only_its_namespace(pool: PgPool) {
        seed(&pool).await;
        let other = InventoryRecord {
            scope: Scope::Namespaces(vec!["billing".into(), "payments".into()]),
            ..InventoryRecord::default()
        };
        write(&pool, &[MirrorEvent::Inventory(other)]).await;
        assert_eq!(
            state(&pool).await,
            (true, "active".into(), 1, 1, "pending".into(), 1),
            "growth is out of scope"
        );
        let mut own = everything(Scope::Namespaces(vec!["growth".into(), "payments".into()]));
        own.workflows.clear();
        own.runs.clear();
        let gone = {
            let mut conn = pool.acquire().await.unwrap();
            find_gone(&mut conn, &own).await.unwrap()
        };
        assert_eq!(
            gone,
            Gone {
                workflows: vec![uid(10)],
                runs: vec![uid(1001)],
                ..Gone::default()
            },
            "a finished run has no open queue entry to close"
        );
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn rows_of_other_owners_are_left_alone(pool: PgPool) {
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash) VALUES ($1, 'ada@example.com', 'Ada', 'x')",
        )
        .bind(uid(500))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO workspaces (id, name, owner_id) VALUES ($1, 'ada', $2)")
            .bind(uid(501))
            .bind(uid(500))
            .execute(&pool)
            .await
            .unwrap();
        write(&pool, &[MirrorEvent::Inventory(InventoryRecord::default())]).await;
        let (active,): (bool,) = sqlx::query_as("SELECT is_active FROM workspaces WHERE id = $1")
            .bind(uid(501))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(active, "not a workspace the operator made");
    }
}
