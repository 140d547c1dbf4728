//! The object mirror end to end: the audit trail of creates, spec changes
//! and deletes (with old and new state and who wrote them), deletions
//! reaching their tables, and the node catalog — through the real operator
//! into a real database.

use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use sluice_crds::Schedule;
use sluice_e2e::cluster::FIELD_MANAGER;
use sluice_e2e::operator::eventually;

use crate::operator_support::{Bed, quick_workflow};

type Entry = (String, Option<Value>, Option<Value>, Value);

async fn trail(bed: &Bed, resource_type: &str, uid: &str) -> Vec<Entry> {
    sqlx::query_as(
        "SELECT action, old_values, new_values, metadata FROM audit_logs
         WHERE resource_type = $1 AND resource_id = $2 ORDER BY created_at",
    )
    .bind(resource_type)
    .bind(uid)
    .fetch_all(bed.database.pool())
    .await
    .expect("failed to read audit_logs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_changes_and_deletes_are_audited_and_deletions_reach_their_tables() {
    let bed = Bed::start("audit").await;
    let pool = bed.database.pool();
    bed.apply_workflow("audited", quick_workflow()).await;
    bed.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "audited-nightly"},
        "spec": {"workflowRef": {"name": "audited"}, "cron": "0 3 * * *", "suspend": true},
    }))
    .await;
    let workflow = bed.workflows().get("audited").await.expect("the workflow");
    let workflow_uid = workflow.metadata.uid.clone().expect("a uid");
    let schedules: Api<Schedule> = Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    let schedule_uid = schedules
        .get("audited-nightly")
        .await
        .expect("the schedule")
        .metadata
        .uid
        .expect("a uid");
    eventually("the schedule's row", || {
        let uid = schedule_uid.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT is_active FROM workflow_schedules WHERE id = $1::uuid",
            )
            .bind(uid)
            .fetch_optional(pool)
            .await
            .ok()?
        }
    })
    .await;

    // A spec change; the operator's status writes in between make no entries.
    let mut changed = quick_workflow();
    changed["description"] = json!("now with a description");
    bed.apply_workflow("audited", changed).await;
    eventually("the workflow's update entry", || async {
        (trail(&bed, "workflow", &workflow_uid).await.len() == 2).then_some(())
    })
    .await;

    bed.workflows()
        .delete("audited", &DeleteParams::default())
        .await
        .expect("failed to delete the workflow");
    schedules
        .delete("audited-nightly", &DeleteParams::default())
        .await
        .expect("failed to delete the schedule");

    let workflow_trail = eventually("the workflow's delete entry", || async {
        let entries = trail(&bed, "workflow", &workflow_uid).await;
        (entries.len() == 3).then_some(entries)
    })
    .await;
    let actions: Vec<&str> = workflow_trail.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        actions,
        ["workflow_created", "workflow_updated", "workflow_deleted"]
    );
    let (_, created_old, created_new, created_meta) = &workflow_trail[0];
    assert_eq!(created_old, &None);
    let created_new = created_new.as_ref().expect("the created state");
    assert_eq!(created_new["spec"]["nodes"][0]["name"], "greet");
    assert_eq!(created_new["metadata"]["name"], "audited");
    assert_eq!(created_meta["manager"], FIELD_MANAGER);
    let (_, updated_old, updated_new, _) = &workflow_trail[1];
    assert_eq!(
        updated_old.as_ref(),
        Some(created_new),
        "an update's old state is the previous entry's new state"
    );
    assert_eq!(
        updated_new.as_ref().expect("the new state")["spec"]["description"],
        "now with a description"
    );
    let (_, deleted_old, deleted_new, _) = &workflow_trail[2];
    assert_eq!(deleted_old, updated_new);
    assert_eq!(deleted_new, &None);

    let status: String = eventually("the workflow archived", || {
        let uid = workflow_uid.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT status::text FROM workflows WHERE id = $1::uuid",
            )
            .bind(uid)
            .fetch_optional(pool)
            .await
            .ok()?
            .filter(|status| status == "archived")
        }
    })
    .await;
    assert_eq!(status, "archived");
    eventually("the schedule's row removed", || {
        let uid = schedule_uid.clone();
        async move {
            let rows: i64 =
                sqlx::query_scalar("SELECT count(*) FROM workflow_schedules WHERE id = $1::uuid")
                    .bind(uid)
                    .fetch_one(pool)
                    .await
                    .ok()?;
            (rows == 0).then_some(())
        }
    })
    .await;
    let schedule_actions: Vec<String> = trail(&bed, "schedule", &schedule_uid)
        .await
        .into_iter()
        .map(|entry| entry.0)
        .collect();
    assert_eq!(schedule_actions, ["schedule_created", "schedule_deleted"]);

    let catalog: Vec<String> =
        sqlx::query_scalar("SELECT name FROM node_definitions ORDER BY name")
            .fetch_all(pool)
            .await
            .expect("failed to read node_definitions");
    assert_eq!(
        catalog,
        [
            "custom",
            "fail",
            "http",
            "kubernetes",
            "notify",
            "postgres",
            "shell",
            "transform",
            "wait",
            "workflow"
        ]
    );
    bed.finish().await;
}
