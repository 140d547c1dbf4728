//! Who did what, end to end: workflows and runs created by named users
//! through the stand-in's admission (the real operator's mutating webhook
//! stamps the creator), RoleBindings to Sluice roles and to the built-in
//! roles that aggregate them, and a bearer-token webhook trigger, mirrored
//! by the real operator into `users`, `created_by`, `audit_logs.user_id`,
//! `workspace_members`, `user_roles`, `user_role_assignments` and
//! `api_keys`.

use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use sluice_crds::{Workflow, WorkflowRun};
use sluice_e2e::operator::eventually;
use sluice_operator::mirror::users::user_id;
use sluice_operator::mirror_map::bearer_fingerprint;
use sqlx::PgPool;

use crate::admission::{client_as, install_webhooks};
use crate::operator_support::{Bed, quick_workflow};

const TOKEN: &str = "membership-e2e-bearer-token-7f3a";

fn binding(name: &str, role: &str, subjects: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn user(name: &str) -> serde_json::Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

/// (username, role) of the workspace's members, sorted.
async fn members(pool: &PgPool, namespace: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT u.name::text, m.role::text FROM workspace_members m
         JOIN users u ON u.id = m.user_id
         JOIN workspaces w ON w.id = m.workspace_id
         WHERE w.name = $1 ORDER BY u.name, m.role",
    )
    .bind(namespace)
    .fetch_all(pool)
    .await
    .expect("failed to read workspace_members")
}

/// (username, role name) of every assignment, sorted.
async fn assignments(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT u.name::text, r.name::text FROM user_role_assignments a
         JOIN users u ON u.id = a.user_id JOIN user_roles r ON r.id = a.role_id
         ORDER BY u.name, r.name",
    )
    .fetch_all(pool)
    .await
    .expect("failed to read user_role_assignments")
}

fn pairs(rows: &[(&str, &str)]) -> Vec<(String, String)> {
    rows.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_and_membership_tables_hold_the_right_rows() {
    // The test bed's operator talks to the API as the kubeconfig's user;
    // that is the username whose trigger runs admission names after the
    // trigger (the chart sets the operator's service account).
    let bed = Bed::start_with_env(
        "membership",
        &[
            ("SLUICE_ADMISSION_CHECK_INTERVAL", "1s"),
            ("SLUICE_ADMISSION_OPERATOR_USERNAME", "kubernetes-admin"),
        ],
    )
    .await;
    install_webhooks(&bed.cluster, &bed.operator).await;
    let pool = bed.database.pool();
    let namespace = bed.cluster.namespace().to_owned();

    // The trigger's Secret first, so the workflow's first mirror reads it.
    bed.apply(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "deploy-hook"},
        "stringData": {"token": TOKEN},
    }))
    .await;
    let mut spec = quick_workflow();
    spec["triggers"] = json!([
        {"name": "deploy", "webhook": {"auth": {"type": "Bearer", "secretRef": {"name": "deploy-hook", "key": "token"}}}},
        {"name": "signed", "webhook": {"auth": {"secretRef": {"name": "deploy-hook", "key": "token"}}}},
    ]);
    let alice = client_as(&bed.cluster, "alice@example.com", &["platform"]).await;
    let workflow: Workflow = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "deploy"}, "spec": spec,
    }))
    .expect("a Workflow");
    let workflow = Api::<Workflow>::namespaced(alice, &namespace)
        .create(&PostParams::default(), &workflow)
        .await
        .expect("alice creates the workflow");
    let workflow_uid = workflow.metadata.uid.clone().expect("a uid");
    let bob = client_as(&bed.cluster, "bob", &[]).await;
    let run: WorkflowRun = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "WorkflowRun",
        "metadata": {"name": "deploy-1"}, "spec": {"workflowRef": {"name": "deploy"}},
    }))
    .expect("a WorkflowRun");
    let run = Api::<WorkflowRun>::namespaced(bob, &namespace)
        .create(&PostParams::default(), &run)
        .await
        .expect("bob starts a run");
    let run_uid = run.metadata.uid.clone().expect("a uid");

    for object in [
        // Built-in roles aggregate the Sluice ones; groups are not mirrored.
        binding(
            "readers",
            "view",
            json!([
                user("carol"),
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "platform"},
                {"kind": "ServiceAccount", "name": "ci", "namespace": namespace},
            ]),
        ),
        binding("editors", "edit", json!([user("dave")])),
        binding("admins", "admin", json!([user("alice@example.com")])),
        // Sluice roles bound directly.
        binding("dave-views", "sluice-view", json!([user("dave")])),
        binding("erin-admin", "sluice-admin", json!([user("erin")])),
        binding("frank-edits", "sluice-edit", json!([user("frank")])),
        // Not a Sluice role.
        binding("cluster-admins", "cluster-admin", json!([user("mallory")])),
    ] {
        bed.apply(object).await;
    }

    let service_account = format!("system:serviceaccount:{namespace}:ci");
    let mut expected_members = vec![
        ("alice@example.com", "admin"),
        ("carol", "viewer"),
        ("dave", "editor"),
        ("erin", "admin"),
        ("frank", "editor"),
        (service_account.as_str(), "viewer"),
    ];
    expected_members.sort();
    let expected_members = pairs(&expected_members);
    eventually("the members of the namespace's workspace", || {
        let (expected, namespace) = (expected_members.clone(), namespace.clone());
        async move { (members(pool, &namespace).await == expected).then_some(()) }
    })
    .await;
    let mut expected_assignments = vec![
        ("alice@example.com", "sluice-admin"),
        ("carol", "sluice-view"),
        ("dave", "sluice-edit"),
        ("dave", "sluice-view"),
        ("erin", "sluice-admin"),
        ("frank", "sluice-edit"),
        (service_account.as_str(), "sluice-view"),
    ];
    expected_assignments.sort();
    assert_eq!(assignments(pool).await, pairs(&expected_assignments));
    let roles: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT name::text, permissions FROM user_roles ORDER BY name")
            .fetch_all(pool)
            .await
            .expect("failed to read user_roles");
    let names: Vec<&str> = roles.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["sluice-admin", "sluice-edit", "sluice-view"]);
    assert!(
        roles[1]
            .1
            .as_array()
            .expect("a list")
            .contains(&json!("workflowruns:create"))
    );

    // Creators: one users row per Kubernetes username, with the console's id.
    let row: (String, String) = eventually("bob's run and its creator", || async {
        sqlx::query_as(
            "SELECT u.name::text, u.email::text FROM workflow_executions e
             JOIN users u ON u.id = e.created_by WHERE e.id = $1::uuid",
        )
        .bind(&run_uid)
        .fetch_optional(pool)
        .await
        .ok()?
    })
    .await;
    assert_eq!(
        row,
        (
            "bob".to_owned(),
            format!("{}@kubernetes.sluice.invalid", user_id("bob"))
        )
    );
    let creators: (Option<uuid::Uuid>, Option<uuid::Uuid>) = sqlx::query_as(
        "SELECT w.created_by, v.created_by FROM workflows w
         JOIN workflow_versions v ON v.workflow_id = w.id WHERE w.id = $1::uuid",
    )
    .bind(&workflow_uid)
    .fetch_one(pool)
    .await
    .expect("the workflow and its version");
    let alice_id = user_id("alice@example.com");
    assert_eq!(creators, (Some(alice_id), Some(alice_id)));
    let users_named: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE name = 'alice@example.com'")
            .fetch_one(pool)
            .await
            .expect("users");
    assert_eq!(users_named, 1, "one row per username");
    let nobody: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE name IN ('mallory', 'platform')")
            .fetch_one(pool)
            .await
            .expect("users");
    assert_eq!(nobody, 0, "no row for an unrelated binding or a group");

    // The audit trail names who created what.
    for (resource_type, uid, creator) in [
        ("workflow", &workflow_uid, "alice@example.com"),
        ("workflow_run", &run_uid, "bob"),
    ] {
        let user: Option<uuid::Uuid> = eventually("the create's audit entry", || async move {
            sqlx::query_scalar(
                "SELECT user_id FROM audit_logs
                 WHERE resource_type = $1 AND resource_id = $2 AND action LIKE '%_created'",
            )
            .bind(resource_type)
            .bind(uid)
            .fetch_optional(pool)
            .await
            .ok()?
        })
        .await;
        assert_eq!(user, Some(user_id(creator)), "{resource_type}");
    }

    // The bearer trigger is an API key of its creator; the HMAC one is not.
    let keys: Vec<(uuid::Uuid, String, String, bool)> =
        eventually("the bearer trigger's api key", || async {
            let keys: Vec<(uuid::Uuid, String, String, bool)> = sqlx::query_as(
                "SELECT user_id, name::text, key_hash::text, is_active FROM api_keys",
            )
            .fetch_all(pool)
            .await
            .ok()?;
            (!keys.is_empty()).then_some(keys)
        })
        .await;
    assert_eq!(
        keys,
        vec![(
            alice_id,
            format!("webhook /hooks/{namespace}/deploy/deploy"),
            bearer_fingerprint(TOKEN.as_bytes()),
            true
        )]
    );
    assert!(keys[0].2.starts_with("sha256:") && keys[0].2.len() == "sha256:".len() + 16);

    // A run the bearer webhook starts is created by that trigger.
    let url = format!(
        "{}/hooks/{namespace}/deploy/deploy",
        bed.operator.webhook_url()
    );
    let (status, answer) = eventually("the webhook to take the request", || {
        let url = url.clone();
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(TOKEN)
                .json(&json!({}))
                .send()
                .await
                .ok()?;
            let status = response.status();
            let answer: serde_json::Value = response.json().await.unwrap_or_default();
            (status != reqwest::StatusCode::NOT_FOUND).then_some((status, answer))
        }
    })
    .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{answer}");
    let hooked = answer["run"].as_str().expect("the run's name").to_owned();
    let hooked_uid = bed
        .runs()
        .get(&hooked)
        .await
        .expect("the hooked run")
        .metadata
        .uid
        .expect("a uid");
    let trigger_user: String = eventually("the hooked run's creator", || async {
        sqlx::query_scalar(
            "SELECT u.name::text FROM workflow_executions e
             JOIN users u ON u.id = e.created_by WHERE e.id = $1::uuid",
        )
        .bind(&hooked_uid)
        .fetch_optional(pool)
        .await
        .ok()?
    })
    .await;
    assert_eq!(trigger_user, "system:sluice:webhook:deploy/deploy");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .expect("the tables");
    for table in tables {
        let sql =
            format!("SELECT count(*) FROM \"{table}\" t WHERE strpos(to_jsonb(t)::text, $1) > 0");
        let holding: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(TOKEN)
            .fetch_one(pool)
            .await
            .expect("a table scan");
        assert_eq!(holding, 0, "{table} holds the token");
    }

    // A deleted binding takes its rows; alice held admin through it only.
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(bed.cluster.client(), &namespace)
        .delete("admins", &DeleteParams::default())
        .await
        .expect("delete the admins binding");
    let without_alice: Vec<(String, String)> = expected_members
        .iter()
        .filter(|(name, _)| name != "alice@example.com")
        .cloned()
        .collect();
    eventually("alice's membership to go", || {
        let (expected, namespace) = (without_alice.clone(), namespace.clone());
        async move { (members(pool, &namespace).await == expected).then_some(()) }
    })
    .await;
    let alice_roles: Vec<(String, String)> = assignments(pool)
        .await
        .into_iter()
        .filter(|(name, _)| name == "alice@example.com")
        .collect();
    assert!(alice_roles.is_empty(), "{alice_roles:?}");
    bed.finish().await;
}
