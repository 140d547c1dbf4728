//! The web console of the real operator: sign in with a Kubernetes bearer
//! token (TokenReview on the API server stand-in), see only the namespaces
//! the token may read (SubjectAccessReview), CSRF on non-GET requests,
//! sessions as rows of `user_sessions`, and signing out; the runs list
//! and a run's detail, refused without rights; actions sent as the user
//! (impersonation); and the pages in a real browser (`browser`).

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use sluice_crds::RunPhase;
use sluice_e2e::operator::eventually;

use crate::operator_support::{Bed, quick_workflow, waiting_workflow};

mod browser;

pub(super) const READER_TOKEN: &str = "reader-token-0123456789";
pub(super) const STRANGER_TOKEN: &str = "stranger-token-0123456789";

/// A signed-in browser: the session cookie and the CSRF token.
pub(super) struct Signed {
    pub(super) cookie: String,
    pub(super) csrf: String,
    pub(super) body: Value,
}

pub(super) async fn sign_in(http: &reqwest::Client, console: &str, token: &str) -> Signed {
    let response = http
        .post(format!("{console}/api/session"))
        .json(&json!({"token": token}))
        .send()
        .await
        .expect("failed to reach the console");
    assert_eq!(response.status(), StatusCode::CREATED, "sign-in refused");
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .expect("sign-in sets a cookie")
        .to_owned();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(
            set_cookie.contains(attribute),
            "{set_cookie} lacks {attribute}"
        );
    }
    let cookie = set_cookie
        .split(';')
        .next()
        .expect("a cookie pair")
        .to_owned();
    let body: Value = response.json().await.expect("a JSON session");
    let csrf = body["csrfToken"].as_str().expect("a CSRF token").to_owned();
    Signed { cookie, csrf, body }
}

async fn get(http: &reqwest::Client, url: &str, cookie: &str) -> (StatusCode, Value) {
    let response = http
        .get(url)
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("failed to reach the console");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn console_signs_in_with_a_kubernetes_token_and_shows_only_readable_namespaces() {
    let bed = Bed::start("console-sign-in").await;
    let namespace = bed.cluster.namespace().to_owned();
    let identities = bed
        .cluster
        .stand_in()
        .expect("this test sets up tokens and rights on the API server stand-in; unset SLUICE_E2E_KUBECONFIG")
        .identities();
    identities.add_token(READER_TOKEN, "reader", &["team-readers"]);
    identities.add_token(STRANGER_TOKEN, "stranger", &[]);
    identities.allow(
        "team-readers",
        &namespace,
        "sluice.dev",
        &["workflowruns"],
        &["get", "list"],
    );

    // The mirror makes the test namespace's workspace; another namespace
    // has history too, which the reader may not see.
    bed.apply_workflow("quick", quick_workflow()).await;
    let pool = bed.database.pool().clone();
    eventually("the namespace's workspace in PostgreSQL", || {
        let pool = pool.clone();
        let namespace = namespace.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM workspaces WHERE name = $1")
                .bind(namespace)
                .fetch_one(&pool)
                .await
                .ok()
                .filter(|count| *count > 0)
        }
    })
    .await;
    sqlx::query(
        "INSERT INTO workspaces (name, owner_id) VALUES ('someone-elses', '5111ce00-0000-4000-8000-000000000001')",
    )
    .execute(&pool)
    .await
    .expect("failed to add another namespace's workspace");

    let console = bed.operator.console_url();
    let http = reqwest::Client::new();

    // A token the API server does not accept opens no session.
    let refused = http
        .post(format!("{console}/api/session"))
        .json(&json!({"token": "not-a-token"}))
        .send()
        .await
        .expect("failed to reach the console");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = get(&http, &format!("{console}/api/namespaces"), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "reads need a session");

    let reader = sign_in(&http, &console, READER_TOKEN).await;
    assert_eq!(reader.body["username"], "reader");
    let (status, namespaces) =
        get(&http, &format!("{console}/api/namespaces"), &reader.cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(namespaces["namespaces"], json!([namespace]));

    // The session is a row of user_sessions, stored without its token.
    let session_token = reader
        .cookie
        .trim_start_matches("sluice_session=")
        .to_owned();
    let (stored, active, future): (String, bool, bool) = sqlx::query_as(
        "SELECT s.token, s.is_active, s.expires_at > now() FROM user_sessions s
         JOIN users u ON u.id = s.user_id WHERE u.name = 'reader'",
    )
    .fetch_one(&pool)
    .await
    .expect("the reader's session row");
    assert!(active && future, "the session is open and expires later");
    assert_ne!(stored, session_token, "the raw session token is not stored");

    // A user without rights signs in but sees nothing.
    let stranger = sign_in(&http, &console, STRANGER_TOKEN).await;
    let (status, namespaces) = get(
        &http,
        &format!("{console}/api/namespaces"),
        &stranger.cookie,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(namespaces["namespaces"], json!([]));

    // Signing out needs the CSRF token, and ends the session.
    let without_csrf = http
        .delete(format!("{console}/api/session"))
        .header(COOKIE, &reader.cookie)
        .send()
        .await
        .expect("failed to reach the console");
    assert_eq!(without_csrf.status(), StatusCode::FORBIDDEN);
    let wrong_csrf = http
        .delete(format!("{console}/api/session"))
        .header(COOKIE, &reader.cookie)
        .header("X-CSRF-Token", &stranger.csrf)
        .send()
        .await
        .expect("failed to reach the console");
    assert_eq!(wrong_csrf.status(), StatusCode::FORBIDDEN);
    let signed_out = http
        .delete(format!("{console}/api/session"))
        .header(COOKIE, &reader.cookie)
        .header("X-CSRF-Token", &reader.csrf)
        .send()
        .await
        .expect("failed to reach the console");
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let (status, _) = get(&http, &format!("{console}/api/session"), &reader.cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session has ended");
    let (status, _) = get(&http, &format!("{console}/api/session"), &stranger.cookie).await;
    assert_eq!(status, StatusCode::OK, "other sessions stay open");

    bed.finish().await;
}

/// Greets, then a shell step that logs and fails: a run of it fails at
/// `check` with `greet` succeeded.
pub(super) fn failing_workflow() -> Value {
    json!({
        "input": {"schema": {
            "type": "object",
            "properties": {"name": {"type": "string", "description": "who to greet"}},
        }},
        "nodes": [
            {"name": "greet", "transform": {"jq": "{message: \"hello \\(.input.name // \"world\")\"}"}},
            {"name": "check", "needs": ["greet"], "shell": {
                "script": "echo checking the greeting >&2; exit 3",
            }, "retry": {"limit": 1, "backoff": {"initial": "1s"}}},
        ],
    })
}

/// Tokens of the stand-in: a reader of the test's namespace, and a
/// stranger with no rights at all.
pub(super) fn set_up_users(bed: &Bed) {
    let namespace = bed.cluster.namespace();
    let identities = bed
        .cluster
        .stand_in()
        .expect("this test sets up tokens and rights on the API server stand-in; unset SLUICE_E2E_KUBECONFIG")
        .identities();
    identities.add_token(READER_TOKEN, "reader", &["team-readers"]);
    identities.add_token(STRANGER_TOKEN, "stranger", &[]);
    identities.allow(
        "team-readers",
        namespace,
        "sluice.dev",
        &["workflowruns"],
        &["get", "list"],
    );
}

/// Waits until the mirror has the run `name` with `status`.
pub(super) async fn wait_mirrored(bed: &Bed, name: &str, status: &str) {
    let pool = bed.database.pool().clone();
    eventually(&format!("run {name} {status} in PostgreSQL"), || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM workflow_executions e
                 JOIN node_executions n ON n.execution_id = e.id
                 WHERE e.name = $1 AND e.status = $2 AND n.status = 'failed'",
            )
            .bind(name)
            .bind(status)
            .fetch_one(&pool)
            .await
            .ok()
            .filter(|count| *count > 0)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_lists_runs_and_shows_a_failed_run_only_to_readers() {
    let bed = Bed::start("console-runs").await;
    let namespace = bed.cluster.namespace().to_owned();
    set_up_users(&bed);
    bed.apply_workflow("greeting", failing_workflow()).await;
    bed.create_run("greeting-1", "greeting", json!({"input": {"name": "ada"}}))
        .await;
    bed.wait_terminal("greeting-1", RunPhase::Failed).await;
    wait_mirrored(&bed, "greeting-1", "failed").await;

    let console = bed.operator.console_url();
    let http = reqwest::Client::new();
    let reader = sign_in(&http, &console, READER_TOKEN).await;

    let (status, page) = get(
        &http,
        &format!("{console}/api/runs?namespace={namespace}&phase=Failed"),
        &reader.cookie,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["runs"][0]["name"], "greeting-1", "{page}");
    assert_eq!(page["runs"][0]["workflow"], "greeting");
    assert_eq!(page["runs"][0]["phase"], "Failed");
    assert_eq!(page["runs"][0]["trigger"], "Manual");
    let (_, succeeded) = get(
        &http,
        &format!("{console}/api/runs?namespace={namespace}&phase=Succeeded"),
        &reader.cookie,
    )
    .await;
    assert_eq!(succeeded["runs"], json!([]), "the phase filter holds");
    let (_, everywhere) = get(&http, &format!("{console}/api/runs"), &reader.cookie).await;
    assert_eq!(everywhere["runs"][0]["name"], "greeting-1");

    let (status, run) = get(
        &http,
        &format!("{console}/api/runs/{namespace}/greeting-1"),
        &reader.cookie,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["input"], json!({"name": "ada"}));
    assert_eq!(run["failure"]["failedNode"], "check", "{run}");
    let nodes = run["nodes"].as_array().expect("nodes");
    let greet = nodes
        .iter()
        .find(|node| node["nodeId"] == "greet")
        .expect("greet's execution");
    assert_eq!(greet["phase"], "Succeeded");
    assert_eq!(greet["output"], json!({"message": "hello ada"}));
    let check = nodes
        .iter()
        .find(|node| node["nodeId"] == "check")
        .expect("check's execution");
    assert_eq!(check["phase"], "Failed");
    assert!(check["error"].is_string(), "{check}");
    let (_, warnings) = get(
        &http,
        &format!("{console}/api/runs/{namespace}/greeting-1?level=warn"),
        &reader.cookie,
    )
    .await;
    let retried = warnings["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .find(|line| line["nodeId"] == "check")
        .unwrap_or_else(|| panic!("the retry of check is logged: {warnings}"));
    assert_eq!(retried["level"], "warn");
    assert!(
        retried["message"]
            .as_str()
            .unwrap_or_default()
            .contains("retrying"),
        "{retried}"
    );
    let (_, errors_only) = get(
        &http,
        &format!("{console}/api/runs/{namespace}/greeting-1?level=error"),
        &reader.cookie,
    )
    .await;
    assert!(
        errors_only["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .all(|line| line["level"] == "error"),
        "{errors_only}"
    );

    // Without rights: refused at the endpoint, and nothing listed.
    let stranger = sign_in(&http, &console, STRANGER_TOKEN).await;
    let (status, refused) = get(
        &http,
        &format!("{console}/api/runs?namespace={namespace}"),
        &stranger.cookie,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("stranger")
    );
    let (status, _) = get(
        &http,
        &format!("{console}/api/runs/{namespace}/greeting-1"),
        &stranger.cookie,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, nothing) = get(&http, &format!("{console}/api/runs"), &stranger.cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nothing["runs"], json!([]));

    bed.finish().await;
}

pub(super) const EDITOR_TOKEN: &str = "editor-token-0123456789";

async fn post(
    http: &reqwest::Client,
    url: &str,
    signed: &Signed,
    body: Value,
) -> (StatusCode, Value) {
    let response = http
        .post(url)
        .header(COOKIE, &signed.cookie)
        .header("X-CSRF-Token", &signed.csrf)
        .json(&body)
        .send()
        .await
        .expect("failed to reach the console");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_actions_are_sent_as_the_signed_in_user() {
    let bed = Bed::start("console-actions").await;
    let namespace = bed.cluster.namespace().to_owned();
    set_up_users(&bed);
    let identities = bed.cluster.stand_in().expect("the stand-in").identities();
    identities.add_token(EDITOR_TOKEN, "editor", &["team-editors"]);
    identities.allow(
        "team-editors",
        &namespace,
        "sluice.dev",
        &["workflowruns", "workflows", "schedules", "connections"],
        &["get", "list", "watch", "create", "patch"],
    );
    identities.authorize_impersonation();

    bed.apply_workflow("greeting", failing_workflow()).await;
    bed.apply_workflow("pause", waiting_workflow("300s")).await;
    bed.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "greeting-nightly"},
        "spec": {"workflowRef": {"name": "greeting"}, "cron": "0 3 * * *", "suspend": true},
    }))
    .await;
    bed.create_run("greeting-1", "greeting", json!({"input": {"name": "ada"}}))
        .await;
    bed.wait_terminal("greeting-1", RunPhase::Failed).await;
    wait_mirrored(&bed, "greeting-1", "failed").await;

    let console = bed.operator.console_url();
    let http = reqwest::Client::new();
    let editor = sign_in(&http, &console, EDITOR_TOKEN).await;
    let reader = sign_in(&http, &console, READER_TOKEN).await;

    // Connections: type and state, never the Secret's value.
    bed.apply(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "crm-token"},
        "type": "Opaque", "stringData": {"token": "console-secret-canary"},
    }))
    .await;
    bed.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "crm"},
        "spec": {"type": "http", "config": {"baseUrl": "http://127.0.0.1:9", "auth": "bearer"},
                 "secretRef": {"name": "crm-token"}},
    }))
    .await;
    let connections = eventually("the connection is Ready in the console", || async {
        let (status, connections) = get(
            &http,
            &format!("{console}/api/connections?namespace={namespace}"),
            &editor.cookie,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{connections}");
        (connections["connections"][0]["ready"]["status"] == "True").then_some(connections)
    })
    .await;
    let crm = &connections["connections"][0];
    assert_eq!(crm["name"], "crm", "{connections}");
    assert_eq!(crm["type"], "http", "{connections}");
    assert_eq!(crm["secretName"], "crm-token", "{connections}");
    assert!(
        !connections.to_string().contains("console-secret-canary"),
        "{connections}"
    );

    // The workflow, live, with the schema the run-now form is made from.
    let (status, workflow) = get(
        &http,
        &format!("{console}/api/workflows/{namespace}/greeting"),
        &editor.cookie,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{workflow}");
    assert_eq!(
        workflow["inputSchema"]["properties"]["name"]["type"],
        "string"
    );

    // The workflows list carries 7 days of history per workflow: greeting
    // failed once, pause never ran.
    let (status, workflows) = get(
        &http,
        &format!("{console}/api/workflows?namespace={namespace}"),
        &editor.cookie,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{workflows}");
    let stats = |name: &str| {
        workflows["workflows"]
            .as_array()
            .expect("workflows")
            .iter()
            .find(|workflow| workflow["name"] == name)
            .map(|workflow| workflow["stats7d"].clone())
            .unwrap_or_else(|| panic!("no workflow {name} in {workflows}"))
    };
    let greeting = stats("greeting");
    assert_eq!(greeting["runs"], 1, "{workflows}");
    assert_eq!(greeting["failed"], 1, "{workflows}");
    assert_eq!(greeting["successRate"], 0.0, "{workflows}");
    assert!(greeting["p50DurationMs"].is_number(), "{workflows}");
    assert_eq!(
        stats("pause"),
        json!({"runs": 0, "succeeded": 0, "failed": 0, "successRate": null, "p50DurationMs": null})
    );

    // Every POST needs the CSRF token.
    let forged = http
        .post(format!("{console}/api/workflows/{namespace}/greeting/runs"))
        .header(COOKIE, &editor.cookie)
        .json(&json!({"input": {"name": "eve"}}))
        .send()
        .await
        .expect("failed to reach the console");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // The reader may read runs but not create them: the API server refuses
    // the impersonated request, and the console passes the refusal on.
    let (status, refused) = post(
        &http,
        &format!("{console}/api/workflows/{namespace}/greeting/runs"),
        &reader,
        json!({"input": {"name": "eve"}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("reader"),
        "{refused}"
    );
    let (status, _) = post(
        &http,
        &format!("{console}/api/runs/{namespace}/greeting-1/resume"),
        &reader,
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Fix the failing step, then resume the failed run as the editor.
    let mut fixed = failing_workflow();
    fixed["nodes"][1]["shell"]["script"] = json!("echo fixed >&2");
    bed.apply_workflow("greeting", fixed).await;
    let (status, resumed) = post(
        &http,
        &format!("{console}/api/runs/{namespace}/greeting-1/resume"),
        &editor,
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{resumed}");
    let resumed_name = resumed["name"].as_str().expect("a run name").to_owned();
    let run = bed.wait_terminal(&resumed_name, RunPhase::Succeeded).await;
    assert_eq!(run.spec.resume_from.as_deref(), Some("greeting-1"));

    // Run now, with input from the form.
    let (status, started) = post(
        &http,
        &format!("{console}/api/workflows/{namespace}/greeting/runs"),
        &editor,
        json!({"input": {"name": "grace"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let started_name = started["name"].as_str().expect("a run name").to_owned();
    let run = bed.wait_terminal(&started_name, RunPhase::Succeeded).await;
    assert_eq!(run.spec.input, Some(json!({"name": "grace"})));

    // Cancel a run that waits.
    let (status, waiting) = post(
        &http,
        &format!("{console}/api/workflows/{namespace}/pause/runs"),
        &editor,
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{waiting}");
    let waiting_name = waiting["name"].as_str().expect("a run name").to_owned();
    let (status, _) = post(
        &http,
        &format!("{console}/api/runs/{namespace}/{waiting_name}/cancel"),
        &editor,
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    bed.wait_terminal(&waiting_name, RunPhase::Cancelled).await;

    // Resume the schedule, then suspend it again.
    for suspend in [false, true] {
        let (status, answer) = post(
            &http,
            &format!("{console}/api/schedules/{namespace}/greeting-nightly/suspend"),
            &editor,
            json!({"suspend": suspend}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let (_, schedules) = get(
            &http,
            &format!("{console}/api/schedules?namespace={namespace}"),
            &editor.cookie,
        )
        .await;
        assert_eq!(
            schedules["schedules"][0]["spec"]["suspend"],
            json!(suspend),
            "{schedules}"
        );
        let schedule = &schedules["schedules"][0];
        assert_eq!(schedule["suspended"], json!(suspend), "{schedules}");
        assert_eq!(schedule["cronInWords"], "at 03:00 every day", "{schedules}");
        assert_eq!(schedule["timeZone"], "UTC", "{schedules}");
        let next_fires = schedule["nextFires"].as_array().expect("next fires");
        assert_eq!(next_fires.len(), 5, "{schedules}");
        assert!(
            next_fires
                .iter()
                .all(|fire| fire.as_str().unwrap().ends_with("T03:00:00+00:00")),
            "{schedules}"
        );
        assert_eq!(schedule["recentFires"], json!([]), "{schedules}");
    }
    let (status, _) = post(
        &http,
        &format!("{console}/api/schedules/{namespace}/greeting-nightly/suspend"),
        &reader,
        json!({"suspend": false}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the reader may not patch schedules"
    );

    bed.finish().await;
}
