//! Plans and subscriptions: `billing_plans` (one row per Plan, keyed by its
//! UID; a deleted Plan's row stays, inactive) and `subscriptions` (one row
//! per stretch of time a workspace is on one plan).
//!
//! A subscription change is idempotent: when the workspace's active
//! subscription is already to the plan named, nothing happens; otherwise
//! the active one ends at the change (`status = 'cancelled'`,
//! `current_period_end` and `cancelled_at` set) and a new one starts
//! (`status = 'active'`, `current_period_start`, no end). Replaying a change
//! therefore leaves the rows as they are, and a change older than the last
//! one written (an event queued before a resync wrote a newer state) is
//! ignored, so rows never go back in time. `plan_id` is the Plan's name, as
//! the namespace label names it (a label may name a Plan not created yet);
//! `billing_plans.name` joins it. Subscriptions belong to the operator's
//! own user row: a namespace has no owner in Kubernetes.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::records::{PlanRecord, SubscriptionRecord};
use super::{WriteError, failed, ids, sanitize, workflows};

/// Upserts a Plan's row (or marks it inactive when the Plan is deleted).
pub async fn upsert_plan(conn: &mut PgConnection, plan: &PlanRecord) -> Result<(), WriteError> {
    sqlx::query(
        "INSERT INTO billing_plans (id, name, description, limits, is_active, is_public, created_at)
         VALUES ($1, $2, $3, $4, $5, FALSE, COALESCE($6, CURRENT_TIMESTAMP))
         ON CONFLICT (id) DO UPDATE SET
             name = EXCLUDED.name,
             description = COALESCE(EXCLUDED.description, billing_plans.description),
             limits = CASE WHEN $5 THEN EXCLUDED.limits ELSE billing_plans.limits END,
             is_active = billing_plans.is_active AND EXCLUDED.is_active",
    )
    .bind(plan.uid.to_string())
    .bind(sanitize::varchar(&plan.name, 100))
    .bind(plan.description.as_deref())
    .bind(&plan.limits)
    .bind(!plan.deleted)
    .bind(plan.created_at)
    .execute(conn)
    .await
    .map_err(failed("billing plan"))?;
    Ok(())
}

/// Moves a workspace to the plan of `subscription` (or off any plan).
pub async fn sync_subscription(
    conn: &mut PgConnection,
    subscription: &SubscriptionRecord,
) -> Result<(), WriteError> {
    // A change seen before the last one written is stale (an event queued
    // before a resync that already wrote a newer state): never go back.
    let last: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(GREATEST(current_period_start, COALESCE(current_period_end, current_period_start)))
         FROM subscriptions WHERE workspace_id = $1",
    )
    .bind(subscription.workspace_uid)
    .fetch_one(&mut *conn)
    .await
    .map_err(failed("subscriptions"))?;
    if last.is_some_and(|last| subscription.at < last) {
        return Ok(());
    }
    let plan = subscription
        .plan
        .as_deref()
        .map(|plan| sanitize::varchar(plan, 100));
    if let Some(plan) = &plan {
        let current: Option<String> = sqlx::query_scalar(
            "SELECT plan_id FROM subscriptions WHERE workspace_id = $1 AND status = 'active'
             ORDER BY current_period_start DESC LIMIT 1",
        )
        .bind(subscription.workspace_uid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(failed("subscriptions"))?;
        if current.as_deref() == Some(plan.as_str()) {
            return Ok(());
        }
        workflows::ensure_workspace(conn, subscription.workspace_uid, &subscription.namespace)
            .await?;
    }
    sqlx::query(
        "UPDATE subscriptions
         SET status = 'cancelled', current_period_end = $2, cancelled_at = $2
         WHERE workspace_id = $1 AND status = 'active'",
    )
    .bind(subscription.workspace_uid)
    .bind(subscription.at)
    .execute(&mut *conn)
    .await
    .map_err(failed("subscriptions"))?;
    let Some(plan) = plan else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO subscriptions (id, user_id, workspace_id, plan_id, status, current_period_start)
         VALUES ($1, $2, $3, $4, 'active', $5)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(ids::subscription_id(
        subscription.workspace_uid,
        &plan,
        subscription.at.timestamp_micros(),
    ))
    .bind(ids::SYSTEM_USER_ID)
    .bind(subscription.workspace_uid)
    .bind(&plan)
    .bind(subscription.at)
    .execute(conn)
    .await
    .map_err(failed("subscriptions"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::fixtures::{at, uid};
    use serde_json::json;
    use sqlx::PgPool;

    fn plan(deleted: bool) -> PlanRecord {
        PlanRecord {
            uid: uid(40),
            name: "team".into(),
            description: Some("for teams".into()),
            limits: json!({"concurrentRuns": 3, "runsPerDay": 100}),
            created_at: Some(at(8, 0)),
            deleted,
        }
    }

    fn moved(plan: Option<&str>, hour: u32) -> SubscriptionRecord {
        SubscriptionRecord {
            workspace_uid: uid(1),
            namespace: "growth".into(),
            plan: plan.map(str::to_owned),
            at: at(hour, 0),
        }
    }

    async fn subscriptions(pool: &PgPool) -> Vec<(String, String, Option<String>, Option<String>)> {
        sqlx::query_as(
            "SELECT plan_id, status, to_char(current_period_start AT TIME ZONE 'UTC', 'HH24:MI'),
                    to_char(current_period_end AT TIME ZONE 'UTC', 'HH24:MI')
             FROM subscriptions ORDER BY current_period_start",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_plan_is_upserted_by_uid_and_stays_inactive_once_deleted(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        upsert_plan(&mut conn, &plan(false)).await.unwrap();
        upsert_plan(&mut conn, &plan(false)).await.unwrap();
        let row: (String, String, serde_json::Value, bool) =
            sqlx::query_as("SELECT id, name, limits, is_active FROM billing_plans")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            row,
            (
                uid(40).to_string(),
                "team".into(),
                json!({"concurrentRuns": 3, "runsPerDay": 100}),
                true
            )
        );
        upsert_plan(&mut conn, &plan(true)).await.unwrap();
        upsert_plan(&mut conn, &plan(false)).await.unwrap();
        let active: bool = sqlx::query_scalar("SELECT is_active FROM billing_plans")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(!active, "a replayed update never revives a deleted plan");
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn a_label_change_ends_one_subscription_and_starts_the_next(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        sync_subscription(&mut conn, &moved(Some("small"), 8))
            .await
            .unwrap();
        sync_subscription(&mut conn, &moved(Some("small"), 9))
            .await
            .unwrap();
        assert_eq!(
            subscriptions(&pool).await,
            [("small".into(), "active".into(), Some("08:00".into()), None)],
            "the same plan again changes nothing"
        );
        sync_subscription(&mut conn, &moved(Some("large"), 10))
            .await
            .unwrap();
        sync_subscription(&mut conn, &moved(None, 11))
            .await
            .unwrap();
        sync_subscription(&mut conn, &moved(None, 12))
            .await
            .unwrap();
        assert_eq!(
            subscriptions(&pool).await,
            [
                (
                    "small".into(),
                    "cancelled".into(),
                    Some("08:00".into()),
                    Some("10:00".into())
                ),
                (
                    "large".into(),
                    "cancelled".into(),
                    Some("10:00".into()),
                    Some("11:00".into())
                ),
            ]
        );
        // A stale change (seen before the last one) writes nothing.
        sync_subscription(&mut conn, &moved(Some("small"), 9))
            .await
            .unwrap();
        assert_eq!(subscriptions(&pool).await.len(), 2);
        let workspaces: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            workspaces, 1,
            "the workspace row was made for the subscription"
        );
    }
}
