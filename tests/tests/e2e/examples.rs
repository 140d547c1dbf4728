//! Every file in `examples/` on the test bed, run by the real operator.
//!
//! The manifests are applied as written except for what must point at
//! this machine: the namespace (the test's), HTTP connections' `baseUrl`
//! and the Slack webhook (a local axum server standing in for the CRM,
//! inventory, reports and Slack APIs), and the PostgreSQL connection (a
//! fresh database with a `signups` table on the test server). Each
//! workflow then runs once and must succeed; the Schedule must be
//! accepted. A new file in `examples/` fails this test until it is covered
//! here.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use sluice_crds::{ConditionStatus, RunPhase};
use sluice_e2e::binaries::workspace_root;
use sluice_e2e::operator::{TestDatabase, eventually};
use sqlx::postgres::PgConnectOptions;

use crate::operator_support::Bed;

/// Requests the stand-in services received: (method and path, authorization, body).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

#[derive(Clone, Default)]
struct Services {
    seen: Seen,
    stock_calls: Arc<Mutex<u32>>,
}

impl Services {
    fn record(&self, what: String, headers: &HeaderMap, body: Value) {
        let authorization = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.seen.lock().unwrap().push((what, authorization, body));
    }

    fn seen(&self, prefix: &str) -> Vec<(String, String, Value)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(what, _, _)| what.starts_with(prefix))
            .cloned()
            .collect()
    }
}

async fn serve_services(services: Services) -> String {
    let router = axum::Router::new()
        .route("/api/health", get(|| async { "ok" }))
        .route(
            "/api/accounts/{id}",
            get(
                |State(s): State<Services>, UrlPath(id): UrlPath<String>, headers: HeaderMap| async move {
                    s.record(format!("GET /api/accounts/{id}"), &headers, Value::Null);
                    let balance = if id == "acme" { 120 } else { 0 };
                    Json(json!({"id": id, "balance": balance}))
                },
            ),
        )
        .route(
            "/api/stock",
            get(|State(s): State<Services>, headers: HeaderMap| async move {
                s.record("GET /api/stock".into(), &headers, Value::Null);
                let mut calls = s.stock_calls.lock().unwrap();
                *calls += 1;
                if *calls == 1 {
                    // Flaky on purpose: the workflow retries.
                    return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "busy"})));
                }
                (
                    StatusCode::OK,
                    Json(json!({"items": [{"sku": "bolt", "quantity": 2}, {"sku": "nut", "quantity": 40}]})),
                )
            }),
        )
        .route(
            "/api/people",
            get(|State(s): State<Services>, headers: HeaderMap| async move {
                s.record("GET /api/people".into(), &headers, Value::Null);
                Json(json!({"name": "Ada Lovelace", "revenue": 25000, "tags": ["vip", "math"]}))
            }),
        )
        .route(
            "/{*path}",
            post(
                |State(s): State<Services>,
                 UrlPath(path): UrlPath<String>,
                 headers: HeaderMap,
                 Json(body): Json<Value>| async move {
                    s.record(format!("POST /{path}"), &headers, body);
                    Json(json!({"ok": true}))
                },
            ),
        )
        .with_state(services);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("failed to bind the stand-in services");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}")
}

/// A database for the `reports-db` connection, with a few signups.
async fn reports_database() -> TestDatabase {
    let database = TestDatabase::create()
        .await
        .expect("failed to create the reports database");
    for statement in [
        "CREATE TABLE signups (plan text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
        "INSERT INTO signups (plan) VALUES ('free'), ('free'), ('pro')",
        "INSERT INTO signups (plan, created_at) VALUES ('pro', now() - interval '30 days')",
    ] {
        sqlx::query(statement)
            .execute(database.pool())
            .await
            .expect("failed to prepare the reports database");
    }
    database
}

/// The manifests of one example file, pointed at this machine.
fn localise(
    mut document: Value,
    services: &str,
    reports: &PgConnectOptions,
    reports_url: &str,
) -> Value {
    let reports_db = reports.get_database().unwrap_or_default();
    if let Some(metadata) = document["metadata"].as_object_mut() {
        metadata.remove("namespace");
    }
    let kind = document["kind"].as_str().unwrap_or_default().to_string();
    let name = document["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match (kind.as_str(), name.as_str()) {
        ("Connection", _) if document["spec"]["config"]["baseUrl"].is_string() => {
            document["spec"]["config"]["baseUrl"] = json!(services);
        }
        ("Connection", "reports-db") => {
            let config = &mut document["spec"]["config"];
            config["host"] = json!(reports.get_host());
            config["port"] = json!(reports.get_port().to_string());
            config["database"] = json!(reports_db);
            config["user"] = json!(reports.get_username());
            config["sslMode"] = json!("disable");
        }
        ("Secret", "sales-slack-webhook") => {
            document["stringData"]["webhookUrl"] = json!(format!("{services}/slack/webhook"));
        }
        ("Secret", "reports-db-password") => {
            if let Some(password) = password_of(reports_url) {
                document["stringData"]["password"] = json!(password);
            }
        }
        _ => {}
    }
    document
}

/// The password in a `postgres://user:password@host/...` URL.
fn password_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let credentials = rest.split_once('@')?.0;
    credentials.split_once(':').map(|(_, password)| password)
}

/// Whether a run's output is what the example should produce.
type OutputCheck = fn(&Value) -> bool;

/// The input each example workflow runs with, and a check of its output.
fn run_plan() -> BTreeMap<&'static str, (Value, OutputCheck)> {
    BTreeMap::from([
        (
            "hello",
            (
                json!({"name": "Ada"}),
                (|output: &Value| output["greeting"] == "Hello, Ada!" && output["letters"] == 3)
                    as fn(&Value) -> bool,
            ),
        ),
        (
            "disk-check",
            // 100 %: the run must not depend on how full this machine's disk is.
            (json!({"maxPercent": 100}), |output: &Value| {
                output["usedPercent"].is_number()
            }),
        ),
        (
            "inventory-check",
            (json!({}), |output: &Value| {
                output["lowStock"] == json!(["bolt"])
            }),
        ),
        (
            "account-reminders",
            (json!({"accounts": ["acme", "globex"]}), |output: &Value| {
                output["checked"] == 2 && output["reminded"] == json!(["acme"])
            }),
        ),
        (
            "greet-team",
            // A custom node type: examples/custom-node/greeter.py as a sidecar.
            (
                json!({"names": ["Ada", "Grace"], "lead": "Linus"}),
                |output: &Value| {
                    output["greetings"] == json!(["Hello, Ada!", "Hello, Grace!"])
                        && output["lead"] == "Good day, Linus."
                },
            ),
        ),
        (
            "signup-report",
            (json!({"days": 7}), |output: &Value| {
                output["total"] == 3 && output["byPlan"] == json!({"free": 2, "pro": 1})
            }),
        ),
    ])
}

const COVERED: [&str; 10] = [
    "account-reminders.yaml",
    "crm-connection.yaml",
    "disk-check.yaml",
    "greeter-node.yaml",
    "hello.yaml",
    "inventory-retry.yaml",
    "nightly-triage-schedule.yaml",
    "signup-report.yaml",
    "triage-signup-run.yaml",
    "triage-signup.yaml",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_runs_to_completion() {
    let folder = workspace_root().join("examples");
    let mut files: Vec<String> = std::fs::read_dir(&folder)
        .expect("failed to read examples/")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    files.sort();
    assert_eq!(
        files, COVERED,
        "examples/ changed: cover the new example in tests/tests/e2e/examples.rs"
    );

    let bed = Bed::start("examples").await;
    let services = Services::default();
    let base_url = serve_services(services.clone()).await;
    let reports = reports_database().await;
    let reports_options: PgConnectOptions = reports.url().parse().expect("a database URL");

    // Connections and Secrets first, so workflows are Ready at once; the
    // run example last.
    let mut documents = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(folder.join(file)).expect("an example");
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text).expect("valid YAML");
        for document in parsed.into_iter().filter(|document| !document.is_null()) {
            documents.push((
                file.clone(),
                localise(document, &base_url, &reports_options, reports.url()),
            ));
        }
    }
    let rank = |document: &Value| match document["kind"].as_str() {
        Some("Secret") => 0,
        Some("Connection") => 1,
        Some("Workflow") => 2,
        Some("WorkflowRun") => 4,
        _ => 3,
    };
    documents.sort_by_key(|(_, document)| rank(document));
    let mut run_examples = Vec::new();
    for (file, document) in documents {
        if document["kind"] == "WorkflowRun" {
            run_examples.push(document);
            continue;
        }
        bed.cluster
            .apply_value(document, Path::new(&file))
            .await
            .unwrap_or_else(|error| panic!("failed to apply {file}: {error:?}"));
    }

    let workflows = bed.workflows();
    let names: Vec<String> = workflows
        .list(&Default::default())
        .await
        .expect("workflows")
        .items
        .iter()
        .map(|workflow| workflow.metadata.name.clone().unwrap_or_default())
        .collect();
    for name in &names {
        eventually(&format!("workflow {name} to be Ready"), || {
            let workflows = workflows.clone();
            async move {
                let workflow = workflows.get(name).await.ok()?;
                workflow
                    .status?
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
                    .then_some(())
            }
        })
        .await;
    }

    let plan = run_plan();
    for (workflow, (input, _)) in &plan {
        bed.create_run(
            &format!("{workflow}-example"),
            workflow,
            json!({"input": input}),
        )
        .await;
    }
    // The run example as written (generateName), with its own input.
    let runs_api: Api<DynamicObject> = Api::namespaced_with(
        bed.cluster.client(),
        bed.cluster.namespace(),
        &kube::discovery::ApiResource::from_gvk(&GroupVersionKind::gvk(
            "sluice.dev",
            "v1alpha1",
            "WorkflowRun",
        )),
    );
    let mut triage_runs = Vec::new();
    for document in run_examples {
        let object: DynamicObject = serde_json::from_value(document).expect("a WorkflowRun");
        let created = runs_api
            .create(&PostParams::default(), &object)
            .await
            .expect("failed to create the example run");
        triage_runs.push(created.metadata.name.expect("a generated name"));
    }
    assert_eq!(triage_runs.len(), 1, "one run example");

    let mut inventory_uid = String::new();
    for (workflow, (_, check)) in &plan {
        let run = bed
            .wait_terminal(&format!("{workflow}-example"), RunPhase::Succeeded)
            .await;
        if *workflow == "inventory-check" {
            inventory_uid = run.metadata.uid.clone().expect("a uid");
        }
        let output = run.status.and_then(|s| s.output).unwrap_or_default();
        assert!(check(&output), "{workflow}: unexpected output {output}");
    }
    // The runner's log lines (the retry warning, the HTTP answers) are in
    // PostgreSQL with their run.
    let pool = bed.database.pool();
    let logs: Vec<(String, String)> = eventually("the inventory run's log lines", || {
        let uid = inventory_uid.clone();
        async move {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT level, message FROM execution_logs WHERE execution_id = $1::uuid",
            )
            .bind(&uid)
            .fetch_all(pool)
            .await
            .ok()?;
            let retried = rows
                .iter()
                .any(|(level, message)| level == "warn" && message.contains("retrying"));
            let answered = rows.iter().any(|(_, message)| message.contains("200"));
            (retried && answered).then_some(rows)
        }
    })
    .await;
    assert!(!logs.is_empty());
    let triage = bed
        .wait_terminal(&triage_runs[0], RunPhase::Succeeded)
        .await;
    let output = triage.status.and_then(|s| s.output).unwrap_or_default();
    assert_eq!(output, json!({"vip": true, "tagged": 2}));

    // The secrets reached the services through the mounted files.
    let people = services.seen("GET /api/people");
    assert_eq!(people[0].1, "Bearer replace-me-with-the-crm-token");
    let slack = services.seen("POST /slack/webhook");
    assert_eq!(slack.len(), 1, "one VIP alert");
    assert!(
        slack[0].2["text"]
            .as_str()
            .is_some_and(|text| text.contains("Ada Lovelace")),
        "{slack:?}"
    );
    assert_eq!(services.seen("POST /api/tags").len(), 2);
    assert_eq!(services.seen("POST /api/reminders").len(), 1);
    let report = services.seen("POST /api/reports/signups");
    assert_eq!(report[0].2["total"], 3);
    assert!(
        services.seen("GET /api/stock").len() >= 2,
        "the inventory example retried"
    );

    // The Schedule example is accepted as written.
    let schedules: Api<DynamicObject> = Api::namespaced_with(
        bed.cluster.client(),
        bed.cluster.namespace(),
        &kube::discovery::ApiResource::from_gvk(&GroupVersionKind::gvk(
            "sluice.dev",
            "v1alpha1",
            "Schedule",
        )),
    );
    let schedule = schedules
        .get("nightly-triage-check")
        .await
        .expect("the schedule example is stored");
    assert_eq!(schedule.data["spec"]["cron"], "30 2 * * *");

    bed.finish().await;
    reports
        .finish()
        .await
        .expect("failed to drop the reports database");
}
