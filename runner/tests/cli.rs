//! The real `sluice-runner` binary: every subcommand, exit codes, SIGTERM,
//! and every example workflow run against local servers (axum on loopback,
//! PostgreSQL from `DATABASE_URL`).

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sluice-runner")
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

async fn runner(args: &[&str]) -> Output {
    tokio::process::Command::new(binary())
        .args(args)
        .output()
        .await
        .expect("sluice-runner starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// Requests a test server received: method, path (with query), JSON body.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

fn record(seen: &Seen, method: &str, path: String, body: &str) {
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((method.to_owned(), path, body));
}

/// A Connection manifest (and its Secret) for a local run.
fn connection(name: &str, type_: &str, config: Value, secrets: Value) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: Connection\nmetadata: {{name: {name}}}\nspec: {}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-secret}}\nstringData: {secrets}\n---\n",
        json!({"type": type_, "config": config, "secretRef": {"name": format!("{name}-secret")}}),
    )
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn hello_runs_and_prints_its_output() {
    let file = example("hello.yaml");
    let output = runner(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        r#"{"name": "Grace"}"#,
    ])
    .await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        result,
        json!({"greeting": "Hello, Grace!", "letters": 5, "celebration": "What a long name: Grace"})
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("✔ greet Succeeded"), "{stderr}");
    assert!(stderr.contains("run succeeded"), "{stderr}");

    let short = runner(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        r#"{"name": "Ada"}"#,
    ])
    .await;
    assert!(text(&short.stderr).contains("○ celebrate Skipped: its if condition was false"));
}

#[tokio::test]
async fn json_output_is_one_numbered_event_per_line() {
    let file = example("hello.yaml");
    let output = runner(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        r#"{"name": "Ada"}"#,
        "--output",
        "json",
    ])
    .await;
    assert_eq!(code(&output), 0);
    let events: Vec<Value> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let sequence: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequence, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events.last().unwrap()["event"], "runFinished");
    assert_eq!(events.last().unwrap()["output"]["greeting"], "Hello, Ada!");
}

#[tokio::test]
async fn input_is_checked_against_the_schema() {
    let file = example("hello.yaml");
    let output = runner(&["run", file.to_str().unwrap(), "--input", r#"{"nme": "x"}"#]).await;
    assert_eq!(code(&output), 2);
    assert!(text(&output.stderr).contains("missing required field \"name\""));
    let output = runner(&["run", file.to_str().unwrap(), "--input", "{not json"]).await;
    assert_eq!(code(&output), 2);
    assert!(text(&output.stderr).contains("it is not JSON"));
}

#[tokio::test]
async fn a_failing_run_exits_1_naming_the_node_and_its_error() {
    let file = example("disk-check.yaml");
    let healthy = runner(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        r#"{"maxPercent": 100}"#,
    ])
    .await;
    assert_eq!(code(&healthy), 0, "{}", text(&healthy.stderr));
    let usage: Value = serde_json::from_slice(&healthy.stdout).unwrap();
    let used = usage["usedPercent"].as_u64().unwrap();
    assert!(
        used >= 2,
        "the test needs a filesystem at least 2% full, / is {used}%"
    );
    let full = runner(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        r#"{"maxPercent": 1}"#,
    ])
    .await;
    assert_eq!(code(&full), 1);
    let stderr = text(&full.stderr);
    assert!(
        stderr.contains(&format!(
            "error: node \"too-full\" failed: / is {used}% full, above the limit of 1%"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn validate_lists_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "broken.yaml",
        r#"apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: {name: broken}
spec:
  nodes:
    - name: a
      needs: [c]
      transform: {jq: '.nodes.c.output | '}
    - name: b
      needs: [a, ghost]
      wait: {}
    - name: c
      needs: [b]
      if: .nodes.zzz.output
      fail: {message: "x"}
"#,
    );
    let output = runner(&["validate", file.to_str().unwrap()]).await;
    assert_eq!(code(&output), 1);
    let stdout = text(&output.stdout);
    for expected in [
        "spec.nodes[0].transform.jq: node \"a\": expression",
        "spec.nodes[1].needs[1]: node \"b\" needs \"ghost\"",
        "spec.nodes[1].wait: node \"b\": a wait node needs exactly one of duration and until",
        "needs form a cycle: a → c → b → a",
        "spec.nodes[2].if: node \"c\" reads .nodes.zzz, but there is no node named \"zzz\"",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
    assert!(
        text(&output.stderr).contains("5 errors"),
        "{}",
        text(&output.stderr)
    );

    let unknown = write(
        dir.path(),
        "unknown.yaml",
        "apiVersion: sluice.dev/v1alpha1\nkind: Workflow\nmetadata: {name: u}\nspec:\n  nodes:\n    - name: a\n      slack: {text: hi}\n",
    );
    let output = runner(&["validate", unknown.to_str().unwrap()]).await;
    assert_eq!(code(&output), 1);
    assert!(
        text(&output.stdout).contains(
            "spec.nodes[0].slack: node \"a\" has an unknown node type or field \"slack\""
        ),
        "{}",
        text(&output.stdout)
    );
}

#[tokio::test]
async fn every_example_workflow_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut validated = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // Sub-folders (examples/argocd) hold GitOps layouts, not workflows.
        if path.extension().is_none_or(|extension| extension != "yaml") {
            continue;
        }
        let contents = std::fs::read_to_string(&path).unwrap();
        if !contents.contains("kind: Workflow\n") {
            continue;
        }
        let output = runner(&["validate", path.to_str().unwrap()]).await;
        assert_eq!(
            code(&output),
            0,
            "{}: {}",
            path.display(),
            text(&output.stdout)
        );
        validated += 1;
    }
    assert!(validated >= 6, "only {validated} example workflows");
}

#[tokio::test]
async fn nodes_prints_the_catalog() {
    let output = runner(&["nodes"]).await;
    assert_eq!(code(&output), 0);
    let catalog: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = catalog
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "http",
            "transform",
            "wait",
            "postgres",
            "shell",
            "kubernetes",
            "workflow",
            "notify",
            "fail",
            "custom"
        ]
    );
    for node in &catalog {
        assert!(!node["description"].as_str().unwrap().is_empty());
        assert!(!node["category"].as_str().unwrap().is_empty());
        assert_eq!(node["parameters"]["type"], "object", "{}", node["name"]);
    }
    let http = &catalog[0]["parameters"];
    assert_eq!(http["required"], json!(["url"]));
}

/// Starts the example node server (examples/custom-node/greeter.py) on a
/// free loopback port; it is killed when the returned child is dropped.
async fn start_greeter() -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(example("custom-node/greeter.py"))
        .env("SLUICE_NODE_PORT", port.to_string())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs examples/custom-node/greeter.py");
    (child, format!("http://127.0.0.1:{port}"))
}

#[tokio::test]
async fn the_custom_node_example_runs_against_its_python_server() {
    let (_server, url) = start_greeter().await;
    let file = example("greeter-node.yaml");
    let file = file.to_str().unwrap();
    let node_server = format!("greeter={url}");
    let output = runner(&[
        "run",
        file,
        "--input",
        r#"{"names": ["Ada", "Grace"], "lead": "Linus"}"#,
        "--node-server",
        &node_server,
        "--connections",
        file,
    ])
    .await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        result,
        json!({"greetings": ["Hello, Ada!", "Hello, Grace!"], "lead": "Good day, Linus."})
    );

    // Params are checked against the NodeType before the run.
    let output = runner(&[
        "run",
        file,
        "--input",
        r#"{"names": [""], "lead": "Linus"}"#,
        "--node-server",
        &node_server,
        "--connections",
        file,
    ])
    .await;
    assert_eq!(code(&output), 1, "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("params.name: is 0 characters long"),
        "{stdout}"
    );

    // Without a node server the run is refused, saying how to pass one.
    let output = runner(&["run", file, "--input", r#"{"names": [], "lead": "Linus"}"#]).await;
    assert_eq!(code(&output), 2);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("spec.nodes[0].custom.type: node \"greet-each\": no node server for custom type \"greeter\": start one and pass --node-server greeter=http://127.0.0.1:PORT"),
        "{stderr}"
    );
}

#[tokio::test]
async fn nodes_lists_the_custom_types_of_the_given_files() {
    let file = example("greeter-node.yaml");
    let output = runner(&["nodes", "--connections", file.to_str().unwrap()]).await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let catalog: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let greeter = catalog.last().unwrap();
    assert_eq!(greeter["name"], "greeter");
    assert_eq!(greeter["kind"], "NodeType");
    assert_eq!(greeter["version"], "0.1.0");
    assert_eq!(greeter["category"], "messaging");
    assert_eq!(greeter["parameters"]["required"], json!(["name"]));
    assert_eq!(greeter["presets"][0]["name"], "formal");
    assert_eq!(catalog.len(), 11, "ten built-in blocks and the custom type");
}

#[tokio::test]
async fn exec_outside_a_job_explains_what_it_needs() {
    let output = tokio::process::Command::new(binary())
        .arg("exec")
        .env_remove("SLUICE_RUN_TOKEN_FILE")
        .output()
        .await
        .unwrap();
    assert_eq!(code(&output), 2);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("SLUICE_RUN_TOKEN_FILE")
            && stderr.contains("inside a Job created by the operator"),
        "{stderr}"
    );
}

#[tokio::test]
async fn version_and_help_explain_the_commands() {
    let version = runner(&["--version"]).await;
    assert_eq!(
        text(&version.stdout).trim(),
        format!("sluice-runner {}", env!("CARGO_PKG_VERSION"))
    );
    let help = text(&runner(&["--help"]).await.stdout);
    for command in ["run", "validate", "nodes", "exec"] {
        assert!(help.contains(command), "{help}");
    }
    let run_help = text(&runner(&["run", "--help"]).await.stdout);
    assert!(run_help.contains("--connections"), "{run_help}");
}

#[tokio::test]
async fn sigterm_cancels_running_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "slow.yaml",
        "apiVersion: sluice.dev/v1alpha1\nkind: Workflow\nmetadata: {name: slow}\nspec:\n  nodes:\n    - name: pause\n      wait: {duration: 1h}\n",
    );
    let mut child = tokio::process::Command::new(binary())
        .args(["run", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    assert_eq!(first, "▶ pause (wait)");
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push(line);
    }
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(rest[0].starts_with("■ pause Cancelled"), "{rest:?}");
}

#[tokio::test]
async fn triage_signup_calls_the_crm_and_alerts_sales() {
    let seen: Seen = Seen::default();
    let router = Router::new()
        .route(
            "/api/people",
            get(|State(seen): State<Seen>, uri: axum::http::Uri| async move {
                record(&seen, "GET", uri.to_string(), "");
                axum::Json(json!({"name": "Ada Lovelace", "revenue": 25000, "tags": ["math", "engines"]}))
            }),
        )
        .route(
            "/api/tags",
            post(|State(seen): State<Seen>, body: String| async move {
                record(&seen, "POST", "/api/tags".into(), &body);
                StatusCode::CREATED
            }),
        )
        .route(
            "/slack",
            post(|State(seen): State<Seen>, body: String| async move {
                record(&seen, "POST", "/slack".into(), &body);
                "ok"
            }),
        )
        .with_state(seen.clone());
    let base = serve(router).await;
    let dir = tempfile::tempdir().unwrap();
    let connections = write(
        dir.path(),
        "connections.yaml",
        &(connection(
            "crm-api",
            "http",
            json!({"baseUrl": base, "auth": "bearer"}),
            json!({"token": "t0k"}),
        ) + &connection(
            "sales-slack",
            "slack",
            json!({}),
            json!({"webhookUrl": format!("{base}/slack")}),
        )),
    );
    let file = example("triage-signup.yaml");
    let output = runner(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        r#"{"email": "ada@example.com"}"#,
        "--connections",
        connections.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result, json!({"vip": true, "tagged": 2}));
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&(
            "GET".into(),
            "/api/people?email=ada%40example.com".into(),
            Value::Null
        )),
        "{seen:?}"
    );
    let tags: Vec<&Value> = seen
        .iter()
        .filter(|s| s.1 == "/api/tags")
        .map(|s| &s.2)
        .collect();
    assert_eq!(tags.len(), 2);
    assert!(tags.contains(&&json!({"email": "ada@example.com", "tag": "engines"})));
    let slack = seen
        .iter()
        .find(|s| s.1 == "/slack")
        .expect("sales alerted");
    assert_eq!(
        slack.2["text"],
        "VIP signup: Ada Lovelace (ada@example.com)"
    );
}

#[tokio::test]
async fn account_reminders_fans_out_in_item_order() {
    let seen: Seen = Seen::default();
    let router = Router::new()
        .route(
            "/api/accounts/{id}",
            get(|UrlPath(id): UrlPath<String>| async move {
                let balance = if id.starts_with("late") { 120 } else { 0 };
                axum::Json(json!({"id": id, "balance": balance}))
            }),
        )
        .route(
            "/api/reminders",
            post(|State(seen): State<Seen>, body: String| async move {
                record(&seen, "POST", "/api/reminders".into(), &body);
                StatusCode::ACCEPTED
            }),
        )
        .with_state(seen.clone());
    let base = serve(router).await;
    let dir = tempfile::tempdir().unwrap();
    let connections = write(
        dir.path(),
        "c.yaml",
        &connection("crm-api", "http", json!({"baseUrl": base}), json!({})),
    );
    let file = example("account-reminders.yaml");
    let output = runner(&[
        "run",
        file.to_str().unwrap(),
        "--input",
        r#"{"accounts": ["ok-1", "late-1", "ok-2", "late-2", "ok-3", "late-3"]}"#,
        "--connections",
        connections.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        result,
        json!({"checked": 6, "reminded": ["late-1", "late-2", "late-3"]})
    );
    let mut reminders: Vec<Value> = seen.lock().unwrap().iter().map(|s| s.2.clone()).collect();
    reminders.sort_by_key(|r| r["position"].as_u64());
    assert_eq!(
        reminders,
        vec![
            json!({"account": "late-1", "position": 0}),
            json!({"account": "late-2", "position": 1}),
            json!({"account": "late-3", "position": 2}),
        ]
    );
}

#[tokio::test]
async fn inventory_check_retries_a_flaky_endpoint() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/api/stock",
            get(|State(calls): State<Arc<AtomicUsize>>| async move {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(StatusCode::SERVICE_UNAVAILABLE);
                }
                Ok(axum::Json(json!({"items": [
                    {"sku": "bolt", "quantity": 2},
                    {"sku": "nut", "quantity": 50},
                    {"sku": "gear", "quantity": 4},
                ]})))
            }),
        )
        .with_state(calls.clone());
    let base = serve(router).await;
    let dir = tempfile::tempdir().unwrap();
    let connections = write(
        dir.path(),
        "c.yaml",
        &connection("inventory-api", "http", json!({"baseUrl": base}), json!({})),
    );
    let file = example("inventory-retry.yaml");
    let output = runner(&[
        "run",
        file.to_str().unwrap(),
        "--connections",
        connections.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    assert_eq!(
        serde_json::from_slice::<Value>(&output.stdout).unwrap(),
        json!({"lowStock": ["bolt", "gear"]})
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("(attempt 3)"), "{stderr}");
    assert!(stderr.contains("attempt 1 of 5 failed"), "{stderr}");
}

async fn fresh_database() -> (String, String) {
    use sqlx::Connection as _;
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!(
        "sluice_runner_cli_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .expect("PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let database_url = match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => url.clone(),
    };
    (name, database_url)
}

#[tokio::test]
async fn signup_report_posts_database_numbers() {
    use sqlx::Connection as _;
    let (database, database_url) = fresh_database().await;
    let mut db = sqlx::PgConnection::connect(&database_url).await.unwrap();
    for statement in [
        "CREATE TABLE signups (id serial PRIMARY KEY, plan text NOT NULL, created_at timestamptz NOT NULL)",
        "INSERT INTO signups (plan, created_at) VALUES ('free', now()), ('free', now() - interval '2 days'), ('pro', now()), ('pro', now() - interval '30 days')",
    ] {
        sqlx::query(statement).execute(&mut db).await.unwrap();
    }
    let seen: Seen = Seen::default();
    let router = Router::new()
        .route(
            "/api/reports/signups",
            post(|State(seen): State<Seen>, body: String| async move {
                record(&seen, "POST", "/api/reports/signups".into(), &body);
                axum::Json(json!({"stored": true}))
            }),
        )
        .with_state(seen.clone());
    let base = serve(router).await;
    let dir = tempfile::tempdir().unwrap();
    let connections = write(
        dir.path(),
        "c.yaml",
        &(connection(
            "reports-db",
            "postgres",
            json!({"host": "127.0.0.1", "port": "5432", "database": database, "user": "postgres", "sslMode": "disable"}),
            json!({"password": "unused-with-trust-auth"}),
        ) + &connection(
            "reports-api",
            "http",
            json!({"baseUrl": base, "auth": "bearer"}),
            json!({"token": "t"}),
        )),
    );
    let file = example("signup-report.yaml");
    let output = runner(&[
        "run",
        file.to_str().unwrap(),
        "--connections",
        connections.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let expected = json!({"days": 7, "total": 3, "byPlan": {"free": 2, "pro": 1}});
    assert_eq!(
        serde_json::from_slice::<Value>(&output.stdout).unwrap(),
        expected
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![("POST".into(), "/api/reports/signups".into(), expected)]
    );
}
