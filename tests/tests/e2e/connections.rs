//! Connections and webhooks through the real operator and runner.
//!
//! - The canary: a run calls a local server with an `http` Connection whose
//!   bearer token is a unique random string; the server echoes the
//!   Authorization header back (in a 200 and in a retried 500). The token
//!   must then appear nowhere the platform writes: object statuses, Events,
//!   the operator's log, the runner's output, `/metrics`, PostgreSQL. The
//!   same run calls an API behind the local OAuth2 authorization server
//!   through an OAuth2 Connection (RefreshToken grant, rotation, the access
//!   token revoked so the node's 401 renews it through the run API), and
//!   the refresh token is then revoked so the provider's refusal, which
//!   quotes it, reaches the Connection's conditions: the client secret and
//!   every access and refresh token issued must appear nowhere either.
//! - Webhook triggers: HMAC (GitHub format) accepted, refused (401), too
//!   large (413), rate limited (429), and answered synchronously; Slack's
//!   format (a stale timestamp refused) and a bearer token; the endpoint's
//!   last use mirrored.
//! - A Connection's `Ready` and `Verified` conditions follow its Secret and
//!   its probe, and a Workflow naming it follows its `Ready`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use sluice_crds::workflow_run::TriggerType;
use sluice_crds::{ConditionStatus, Connection, RunPhase};
use sluice_e2e::oauth2_server::{AuthServer, AuthServerOptions};
use sluice_e2e::operator::{Operator, OperatorOptions, TestDatabase, cluster, eventually};
use sluice_operator::webhook::auth::sign_hex;

use crate::operator_support::Bed;

/// Authorization headers the local server received, by path.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn authorization(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A local HTTP API: `/echo` answers 200 with the Authorization header it
/// got, `/fail` answers 500 with it, `/health` answers 200 only to
/// `Bearer <expected>` (when `expected` is set).
async fn serve_echo(seen: Seen, expected: Option<String>) -> String {
    let router = axum::Router::new()
        .route(
            "/echo",
            get(|State((seen, _)): State<(Seen, Option<String>)>, headers: HeaderMap| async move {
                let auth = authorization(&headers);
                seen.lock().unwrap().push(("/echo".into(), auth.clone()));
                Json(json!({"youSent": auth, "headers": {"authorization": auth}}))
            }),
        )
        .route(
            "/fail",
            get(|State((seen, _)): State<(Seen, Option<String>)>, headers: HeaderMap| async move {
                let auth = authorization(&headers);
                seen.lock().unwrap().push(("/fail".into(), auth.clone()));
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal error while handling Authorization: {auth}"),
                )
            }),
        )
        .route(
            "/health",
            get(
                |State((seen, expected)): State<(Seen, Option<String>)>, headers: HeaderMap| async move {
                    let auth = authorization(&headers);
                    seen.lock().unwrap().push(("/health".into(), auth.clone()));
                    match expected {
                        Some(token) if auth != format!("Bearer {token}") => {
                            (StatusCode::UNAUTHORIZED, "who are you")
                        }
                        _ => (StatusCode::OK, "ok"),
                    }
                },
            ),
        )
        .with_state((seen, expected));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("failed to bind the local API");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}")
}

fn secret(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": data,
    })
}

fn http_connection(name: &str, base_url: &str, secret: &str, verify: Option<&str>) -> Value {
    let mut spec = json!({
        "type": "http",
        "config": {"baseUrl": base_url, "auth": "bearer"},
        "secretRef": {"name": secret},
    });
    if let Some(url) = verify {
        spec["verify"] = json!({"url": url, "interval": "10m"});
    }
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Connection",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// Every `container.log` the kubelet emulator wrote under `folder`.
fn container_logs(folder: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return found;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            found.extend(container_logs(&path));
        } else if path.file_name().is_some_and(|name| name == "container.log") {
            found.push(path);
        }
    }
    found
}

/// Lists every object of type `K` in the test's namespace as JSON text.
async fn serialized<K>(bed: &Bed) -> Vec<(String, String)>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    api.list(&ListParams::default())
        .await
        .unwrap_or_else(|error| panic!("failed to list {}: {error}", K::kind(&Default::default())))
        .items
        .into_iter()
        .map(|object| {
            let name = format!(
                "{} {}",
                K::kind(&Default::default()),
                object.meta().name.clone().unwrap_or_default()
            );
            (name, serde_json::to_string(&object).expect("serializable"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_secret_appears_nowhere_the_platform_writes() {
    // The operator's own crates log at trace level: a leak in a debug line counts.
    let cluster = cluster("conn-canary")
        .await
        .expect("failed to start the test cluster");
    let database = TestDatabase::create()
        .await
        .expect("failed to create the test database");
    let mut options = OperatorOptions::with_database(&database);
    options.env.push((
        "RUST_LOG".into(),
        "info,sluice_operator=trace,kube_runtime=warn".into(),
    ));
    let operator = Operator::start(&cluster, options)
        .await
        .expect("failed to start the operator");
    let bed = Bed {
        operator,
        database,
        cluster,
    };
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let seen = Seen::default();
    let base_url = serve_echo(seen.clone(), None).await;
    let provider = AuthServer::start(AuthServerOptions::default())
        .await
        .expect("failed to start the authorization server");
    let (client_id, client_secret) = provider.client();
    let first_refresh = provider.seed_refresh_token(&client_id);
    bed.apply(secret(
        "oauth-client",
        json!({"clientId": client_id, "clientSecret": client_secret, "refreshToken": first_refresh}),
    ))
    .await;
    bed.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Connection",
        "metadata": {"name": "oauth-api"},
        "spec": {
            "type": "http",
            "config": {"baseUrl": provider.base_url},
            "secretRef": {"name": "oauth-client"},
            "oauth2": {"tokenUrl": provider.token_url(), "grant": "RefreshToken"},
        },
    }))
    .await;
    eventually("the OAuth2 connection authorized", || {
        let connections: Api<Connection> =
            Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
        async move {
            let connection = connections.get_opt("oauth-api").await.ok()??;
            connection
                .status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Authorized" && c.status == ConditionStatus::True)
                .then_some(())
        }
    })
    .await;
    // Revoked early: the node's first call is refused and renewed through the run API.
    provider.revoke_access_tokens();

    bed.apply(secret("echo-token", json!({"token": canary})))
        .await;
    bed.apply(http_connection("echo-api", &base_url, "echo-token", None))
        .await;
    bed.apply_workflow(
        "canary",
        json!({
            "nodes": [
                {"name": "echo", "http": {"url": "/echo", "connection": "echo-api", "responseFormat": "Json"}},
                {"name": "fail", "http": {"url": "/fail", "connection": "echo-api"},
                 "retry": {"limit": 2, "backoff": {"initial": "100ms", "max": "200ms"}},
                 "continueOnError": true},
                {"name": "after", "needs": ["echo", "fail"], "transform": {"jq": "{echoed: .nodes.echo.output, failed: .nodes.fail.phase}"}},
                {"name": "oauth", "http": {"url": "/resource", "connection": "oauth-api"}, "continueOnError": true},
            ],
            "output": "{echo: .nodes.echo.output, fail: .nodes.fail, after: .nodes.after.output}",
        }),
    )
    .await;
    bed.create_run("canary-1", "canary", json!({})).await;
    let run = bed.wait_terminal("canary-1", RunPhase::Succeeded).await;
    let uid = run.metadata.uid.clone().expect("a uid");
    let oauth_calls = provider.resource_calls();
    assert_eq!(
        oauth_calls
            .iter()
            .map(|(status, _)| *status)
            .collect::<Vec<_>>(),
        [401, 200],
        "the OAuth2 node was refused once and renewed: {oauth_calls:?}"
    );

    // The provider revokes the refresh token; a renewal is refused with a
    // text quoting it, which reaches the Connection's conditions (stripped).
    provider.revoke_all_refresh_tokens();
    provider.revoke_access_tokens();
    bed.create_run("canary-2", "canary", json!({})).await;
    let second = bed.wait_terminal("canary-2", RunPhase::Succeeded).await;
    let second_nodes = second.status.clone().unwrap_or_default().nodes;
    assert!(
        format!("{second_nodes:?}").contains("oauth"),
        "the second run reports its oauth node: {second_nodes:?}"
    );
    eventually("the refused renewal on the Connection's conditions", || {
        let connections: Api<Connection> =
            Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
        async move {
            let connection = connections.get_opt("oauth-api").await.ok()??;
            connection
                .status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Authorized" && c.reason == "RefreshFailed")
                .then_some(())
        }
    })
    .await;

    // Not vacuous: the token really went out, on the 200 and on every try of the 500.
    let bearer = format!("Bearer {canary}");
    let requests = seen.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|(path, auth)| path == "/echo" && *auth == bearer),
        "the echo node sent the connection's token: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .filter(|(path, auth)| path == "/fail" && *auth == bearer)
            .count()
            >= 2,
        "the failing node was retried with the token: {requests:?}"
    );

    // Wait until the mirror has the whole run (its nodes and log lines).
    let pool = bed.database.pool();
    eventually("the run, its nodes and its logs in PostgreSQL", || {
        let uid = uid.clone();
        async move {
            let (status,): (String,) =
                sqlx::query_as("SELECT status::text FROM workflow_executions WHERE id = $1::uuid")
                    .bind(&uid)
                    .fetch_optional(pool)
                    .await
                    .ok()??;
            let (nodes,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM node_executions WHERE execution_id = $1::uuid AND status <> 'running'",
            )
            .bind(&uid)
            .fetch_one(pool)
            .await
            .ok()?;
            let (logs,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM execution_logs WHERE execution_id = $1::uuid")
                    .bind(&uid)
                    .fetch_one(pool)
                    .await
                    .ok()?;
            (status == "completed" && nodes >= 3 && logs > 0).then_some(())
        }
    })
    .await;

    // Every secret value: the bearer canary, the OAuth2 client secret and
    // every access and refresh token the provider issued.
    let mut secrets = vec![canary.clone(), client_secret.clone()];
    secrets.extend(provider.issued_access_tokens());
    secrets.extend(provider.issued_refresh_tokens());
    assert!(
        provider.issued_access_tokens().len() >= 2 && provider.issued_refresh_tokens().len() >= 2,
        "tokens were issued and rotated"
    );
    let mut leaks: Vec<String> = Vec::new();
    let mut check = |place: String, text: &str| {
        for secret in &secrets {
            let Some(at) = text.find(secret.as_str()) else {
                continue;
            };
            let start = text[..at]
                .char_indices()
                .rev()
                .nth(120)
                .map_or(0, |(index, _)| index);
            let end = (at + secret.len() + 80).min(text.len());
            let end = (end..=text.len())
                .find(|index| text.is_char_boundary(*index))
                .unwrap_or(text.len());
            leaks.push(format!("{place}: …{}…", &text[start..end]));
        }
    };

    // Kubernetes objects (status included) and Events of both APIs.
    let mut objects = Vec::new();
    objects.extend(serialized::<sluice_crds::WorkflowRun>(&bed).await);
    objects.extend(serialized::<sluice_crds::Workflow>(&bed).await);
    objects.extend(serialized::<Connection>(&bed).await);
    objects.extend(serialized::<Job>(&bed).await);
    objects.extend(serialized::<Pod>(&bed).await);
    objects.extend(serialized::<Event>(&bed).await);
    objects.extend(serialized::<CoreEvent>(&bed).await);
    assert!(
        objects
            .iter()
            .any(|(name, _)| name == "WorkflowRun canary-1"),
        "the run is among the objects searched"
    );
    for (name, text) in &objects {
        check(name.clone(), text);
    }

    // The operator's log.
    let operator_log = bed.operator.logs();
    assert!(!operator_log.is_empty(), "the operator logged something");
    check(
        format!("operator log {}", bed.operator.log_path().display()),
        &operator_log,
    );

    // The runner's output (stdout and stderr, kept by the kubelet emulator).
    let logs = container_logs(&bed.cluster.workdir().join("kubelet"));
    assert!(!logs.is_empty(), "the runner's output was kept");
    let mut runner_text = String::new();
    for path in logs {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        check(format!("runner output {}", path.display()), &text);
        runner_text.push_str(&text);
    }
    assert!(!runner_text.is_empty(), "the runner wrote something");

    // /metrics.
    let metrics = bed.operator.metrics().await.expect("/metrics");
    check("/metrics".into(), &metrics);

    // Every row of every table of the test database.
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(pool)
            .await
            .expect("the tables");
    assert!(tables.len() > 5, "the schema is there: {tables:?}");
    for (table,) in &tables {
        // Table names come from the catalogue, quoted as identifiers.
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        for secret in &secrets {
            let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {quoted} t WHERE t::text LIKE '%' || $1 || '%'"
            )))
            .bind(secret)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|error| panic!("failed to search {table}: {error}"));
            if count > 0 {
                leaks.push(format!("PostgreSQL table {table}: {count} row(s)"));
            }
        }
    }

    assert!(leaks.is_empty(), "a secret leaked:\n{}", leaks.join("\n"));

    // Controls: the same searches find what is meant to be there, so the
    // absence above is not an artefact of searching the wrong text.
    let mut redacted_rows = 0;
    for (table,) in &tables {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {quoted} t WHERE t::text LIKE '%' || $1 || '%'"
        )))
        .bind("[REDACTED]")
        .fetch_one(pool)
        .await
        .expect("a search");
        redacted_rows += count;
    }
    assert!(redacted_rows > 0, "the redacted echo is in PostgreSQL");
    assert!(
        metrics.contains("sluice_"),
        "the operator's metrics were read"
    );
    assert!(
        objects
            .iter()
            .any(|(name, text)| name.starts_with("Event") && text.contains("canary-1")),
        "Events about the run were searched"
    );
    assert!(
        runner_text.contains("fail"),
        "the runner's output names its nodes"
    );
    // The OAuth2 Connection's refusal and its mirror row were among what was searched.
    assert!(
        objects
            .iter()
            .any(|(name, text)| name == "Connection oauth-api"
                && text.contains("RefreshFailed")
                && text.contains("[REDACTED]")),
        "the refused renewal, its token stripped, is in the Connection's status"
    );
    eventually("the OAuth2 Connection's refusal in oauth_connections", || async move {
        let (rows,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM oauth_connections WHERE provider = 'custom' AND status = 'refresh_failed'",
        )
        .fetch_one(pool)
        .await
        .ok()?;
        (rows == 1).then_some(())
    })
    .await;

    // What the server echoed back was kept, with the token redacted.
    let output = bed
        .runs()
        .get("canary-1")
        .await
        .expect("the run")
        .status
        .and_then(|status| status.output)
        .unwrap_or_default();
    assert!(
        output.to_string().contains("[REDACTED]"),
        "the echoed header is redacted in the output: {output}"
    );
    bed.finish().await;
}

/// The status code a webhook request with `body` is answered with.
async fn answered(request: reqwest::RequestBuilder, body: &[u8]) -> u16 {
    request
        .body(body.to_vec())
        .send()
        .await
        .expect("the webhook answered")
        .status()
        .as_u16()
}

/// POSTs `body` to a trigger, signed with `key` (GitHub format).
async fn post_hook(
    client: &reqwest::Client,
    url: &str,
    key: &[u8],
    body: &[u8],
) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", sign_hex(key, body)),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("the webhook answered");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
    let answer = response.json().await.unwrap_or(Value::Null);
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_start_runs_through_the_real_operator() {
    sluice_e2e::cluster::install_crypto_provider();
    let bed = Bed::start("conn-webhooks").await;
    let key = format!("hmac-{}", uuid::Uuid::new_v4().simple());
    let token = format!("bearer-{}", uuid::Uuid::new_v4().simple());
    bed.apply(secret("hook-key", json!({"hmacKey": key, "token": token})))
        .await;
    let auth = json!({"type": "Hmac", "signatureFormat": "GitHub", "secretRef": {"name": "hook-key", "key": "hmacKey"}});
    let slack_auth = json!({"type": "Hmac", "signatureFormat": "Slack", "secretRef": {"name": "hook-key", "key": "hmacKey"}});
    let bearer_auth = json!({"type": "Bearer", "secretRef": {"name": "hook-key", "key": "token"}});
    bed.apply_workflow(
        "signup",
        json!({
            "nodes": [{"name": "greet", "transform": {"jq": "{greeting: \"hello \\(.input.email)\"}"}}],
            "output": ".nodes.greet.output",
            "triggers": [
                {"name": "github", "webhook": {"auth": auth, "maxBodyBytes": 256}},
                {"name": "burst", "webhook": {"auth": auth, "rateLimit": {"perMinute": 1, "burst": 3}}},
                {"name": "sync", "webhook": {"auth": auth, "response": "Sync", "timeout": "55s"}},
                {"name": "slack", "webhook": {"auth": slack_auth}},
                {"name": "bearer", "webhook": {"auth": bearer_auth}},
            ],
        }),
    )
    .await;
    let hooks = format!(
        "{}/hooks/{}/signup",
        bed.operator.webhook_url(),
        bed.cluster.namespace()
    );
    let client = reqwest::Client::new();
    let key = key.as_bytes();

    // A correctly signed request: 202 with the run's name (retried while
    // the operator has not seen the workflow yet: a 404 creates nothing).
    let body = br#"{"email": "ada@example.com"}"#;
    let answer = eventually("the webhook to accept a signed request", || {
        let client = client.clone();
        let url = format!("{hooks}/github");
        async move {
            let (status, answer) = post_hook(&client, &url, key, body).await;
            if status == StatusCode::NOT_FOUND {
                return None;
            }
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            Some(answer)
        }
    })
    .await;
    let name = answer["run"].as_str().expect("the run's name").to_string();
    let run = bed.runs().get(&name).await.expect("the run exists");
    assert_eq!(run.spec.input, Some(json!({"email": "ada@example.com"})));
    let trigger = run.spec.trigger.clone().expect("trigger data");
    assert_eq!(trigger.type_, TriggerType::Webhook);
    assert_eq!(trigger.source.as_deref(), Some("github"));
    assert!(
        !serde_json::to_string(&run).unwrap().contains("sha256="),
        "the signature is not stored in the run"
    );

    // A wrong signature: 401, nothing created.
    let response = client
        .post(format!("{hooks}/github"))
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            format!("sha256={}", sign_hex(b"not-the-key", body)),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("the webhook answered");
    assert_eq!(response.status().as_u16(), 401);
    // No signature at all: 401 too.
    let response = client
        .post(format!("{hooks}/github"))
        .body(body.to_vec())
        .send()
        .await
        .expect("the webhook answered");
    assert_eq!(response.status().as_u16(), 401);

    // Over maxBodyBytes (256): 413, correctly signed or not.
    let large = serde_json::to_vec(&json!({"email": "x".repeat(400)})).unwrap();
    let (status, _) = post_hook(&client, &format!("{hooks}/github"), key, &large).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        bed.run_names().await,
        vec![name.clone()],
        "only the accepted request made a run"
    );

    // A burst of 6 against burst 3 (1 per minute): 3 accepted, 3 refused.
    let mut statuses = Vec::new();
    for index in 0..6 {
        let body =
            serde_json::to_vec(&json!({"email": format!("burst{index}@example.com")})).unwrap();
        let (status, _) = post_hook(&client, &format!("{hooks}/burst"), key, &body).await;
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [202, 202, 202, 429, 429, 429]);
    let burst_runs = bed
        .runs()
        .list(&ListParams::default())
        .await
        .expect("runs")
        .items
        .into_iter()
        .filter(|run| {
            run.spec
                .trigger
                .as_ref()
                .and_then(|trigger| trigger.source.as_deref())
                == Some("burst")
        })
        .count();
    assert_eq!(burst_runs, 3, "exactly the allowed number of runs exist");

    // Sync: the answer is the run's output.
    let body = br#"{"email": "grace@example.com"}"#;
    let (status, answer) = post_hook(&client, &format!("{hooks}/sync"), key, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"greeting": "hello grace@example.com"}));

    // Slack's format signs `v0:<timestamp>:<body>`; a timestamp older than
    // five minutes is a replay: 401.
    let slack = |age: i64| {
        let timestamp = chrono::Utc::now().timestamp() - age;
        let signed = [format!("v0:{timestamp}:").as_bytes(), body].concat();
        client
            .post(format!("{hooks}/slack"))
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header(
                "x-slack-signature",
                format!("v0={}", sign_hex(key, &signed)),
            )
    };
    assert_eq!(answered(slack(0), body).await, 202);
    assert_eq!(answered(slack(600), body).await, 401);

    // A bearer token: the Secret's value is accepted, another one is not.
    let bearer = |credential: String| {
        client
            .post(format!("{hooks}/bearer"))
            .bearer_auth(credential)
    };
    assert_eq!(answered(bearer(token.clone()), body).await, 202);
    assert_eq!(answered(bearer(format!("{token}x")), body).await, 401);

    // The accepted async run finishes too, and its endpoint's last use is
    // mirrored.
    bed.wait_terminal(&name, RunPhase::Succeeded).await;
    let pool = bed.database.pool();
    eventually(
        "webhook_endpoints.last_used_at of the github trigger",
        || async move {
            sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "SELECT last_used_at FROM webhook_endpoints WHERE endpoint_path LIKE '%/signup/github'",
        )
        .fetch_optional(pool)
        .await
        .ok()??
        },
    )
    .await;
    bed.finish().await;
}

/// The condition `type_` of Connection `name` once `check` holds for it.
async fn wait_condition(
    bed: &Bed,
    name: &str,
    type_: &str,
    what: &str,
    check: impl Fn(&sluice_crds::Condition) -> bool,
) -> sluice_crds::Condition {
    let api: Api<Connection> = Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    let check = &check;
    eventually(&format!("connection {name}: {what}"), || {
        let api = api.clone();
        async move {
            let connection = api.get_opt(name).await.ok()??;
            connection
                .status?
                .conditions
                .into_iter()
                .find(|condition| condition.type_ == type_ && check(condition))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_conditions_follow_the_secret_and_the_probe() {
    let bed = Bed::start("conn-conditions").await;
    let token = format!("token-{}", uuid::Uuid::new_v4().simple());
    let seen = Seen::default();
    let base_url = serve_echo(seen.clone(), Some(token.clone())).await;

    // The Secret lacks `token`: Ready=False, naming the key.
    bed.apply(secret("api-credentials", json!({"other": "value"})))
        .await;
    bed.apply(http_connection(
        "api",
        &base_url,
        "api-credentials",
        Some("/health"),
    ))
    .await;
    let ready = wait_condition(&bed, "api", "Ready", "Ready=False", |condition| {
        condition.status == ConditionStatus::False
    })
    .await;
    assert_eq!(ready.reason, "SecretKeyMissing", "{ready:?}");
    assert!(ready.message.contains("token"), "{ready:?}");
    let verified = wait_condition(&bed, "api", "Verified", "Verified present", |_| true).await;
    assert_ne!(verified.status, ConditionStatus::True, "{verified:?}");
    // A Workflow naming it is not Ready while the Connection is not.
    bed.apply_workflow(
        "uses-api",
        json!({"nodes": [{"name": "call", "http": {"url": "/health", "connection": "api"}}]}),
    )
    .await;
    let workflow_ready =
        |status: ConditionStatus| {
            let workflows = bed.workflows();
            async move {
                let what = format!("workflow uses-api Ready={status:?}");
                eventually(&what, || {
                    let workflows = workflows.clone();
                    async move {
                        let workflow = workflows.get_opt("uses-api").await.ok()??;
                        workflow.status?.conditions.into_iter().find(|condition| {
                            condition.type_ == "Ready" && condition.status == status
                        })
                    }
                })
                .await
            }
        };
    let not_ready = workflow_ready(ConditionStatus::False).await;
    assert_eq!(not_ready.reason, "ConnectionNotReady", "{not_ready:?}");

    // Adding the key: Ready=True at once (the controller watches Secrets),
    // then the probe with the token verifies it, and the Workflow becomes
    // Ready (the Workflow controller watches the Connections it names;
    // nothing polls).
    bed.apply(secret(
        "api-credentials",
        json!({"other": "value", "token": token}),
    ))
    .await;
    let ready = wait_condition(&bed, "api", "Ready", "Ready=True", |condition| {
        condition.status == ConditionStatus::True
    })
    .await;
    assert_eq!(ready.reason, "Ready", "{ready:?}");
    let verified = wait_condition(&bed, "api", "Verified", "Verified=True", |condition| {
        condition.status == ConditionStatus::True
    })
    .await;
    assert_eq!(verified.reason, "Verified", "{verified:?}");
    workflow_ready(ConditionStatus::True).await;
    let bearer = format!("Bearer {token}");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(path, auth)| path == "/health" && *auth == bearer),
        "the probe called verify.url with the token"
    );
    // The token is not in the Connection's status or Events.
    let connection = serde_json::to_string(
        &Api::<Connection>::namespaced(bed.cluster.client(), bed.cluster.namespace())
            .get("api")
            .await
            .expect("the connection"),
    )
    .unwrap();
    assert!(!connection.contains(&token));
    for event in bed.events_about("api").await {
        assert!(!serde_json::to_string(&event).unwrap().contains(&token));
    }
    bed.finish().await;
}
