//! `http` node tests against axum servers on 127.0.0.1.

use super::HttpNode;
use super::testing::{
    Pairs, RecordedLogs, TestConnections, attempt, closed_port_url, connections, context, serve,
};
use crate::node::{Node, NodeContext, NodeError};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use sluice_crds::ConnectionType;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

async fn run(context: &NodeContext, params: Value) -> Result<Value, NodeError> {
    HttpNode.execute(params, &attempt(), context).await
}

fn no_connections() -> TestConnections {
    connections(&[])
}

/// Echoes method, query, selected headers and body as JSON.
async fn echo(
    method: axum::http::Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    axum::Json(json!({
        "method": method.as_str(),
        "query": query,
        "contentType": header("content-type"),
        "trace": header("x-trace"),
        "authorization": header("authorization"),
        "apiKey": header("x-api-key"),
        "body": body,
    }))
}

#[tokio::test]
async fn sends_method_query_headers_and_json_or_text_bodies() {
    let base = serve(Router::new().route("/echo", any(echo))).await;
    let connections = no_connections();
    let context = context(&connections, Arc::default());

    let output = run(
        &context,
        json!({"method": "POST", "url": format!("{base}/echo?a=1"), "query": {"q": "x y"},
               "headers": {"X-Trace": "t-1"}, "body": {"name": "Ada", "tags": [1, 2]}}),
    )
    .await
    .unwrap();
    assert_eq!(output["status"], 200);
    assert_eq!(output["headers"]["content-type"], "application/json");
    let body = &output["body"];
    assert_eq!(body["method"], "POST");
    assert_eq!(body["query"], "a=1&q=x+y");
    assert_eq!(body["trace"], "t-1");
    assert_eq!(body["contentType"], "application/json");
    let sent: Value = serde_json::from_str(body["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"name": "Ada", "tags": [1, 2]}));

    let output = run(
        &context,
        json!({"method": "PUT", "url": format!("{base}/echo"), "body": "plain words"}),
    )
    .await
    .unwrap();
    assert_eq!(output["body"]["contentType"], "text/plain; charset=utf-8");
    assert_eq!(output["body"]["body"], "plain words");
}

#[tokio::test]
async fn response_format_auto_json_and_text() {
    let router = Router::new()
        .route("/json", get(|| async { axum::Json(json!({"n": 1})) }))
        .route(
            "/number-as-text",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "123") }),
        )
        .route(
            "/untyped",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    "[1,2]",
                )
            }),
        )
        .route(
            "/html",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<p>hi</p>") }),
        )
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }));
    let base = serve(router).await;
    let connections = no_connections();
    let context = context(&connections, Arc::default());
    let body = |path: &str, format: &str| {
        let context = &context;
        let params = json!({"url": format!("{base}{path}"), "responseFormat": format});
        async move {
            run(context, params)
                .await
                .map(|output| output["body"].clone())
        }
    };
    assert_eq!(body("/json", "Auto").await.unwrap(), json!({"n": 1}));
    assert_eq!(body("/json", "Text").await.unwrap(), json!("{\"n\":1}"));
    assert_eq!(body("/number-as-text", "Auto").await.unwrap(), json!("123"));
    assert_eq!(body("/number-as-text", "Json").await.unwrap(), json!(123));
    assert_eq!(body("/untyped", "Auto").await.unwrap(), json!([1, 2]));
    assert_eq!(body("/html", "Auto").await.unwrap(), json!("<p>hi</p>"));
    assert_eq!(body("/empty", "Auto").await.unwrap(), Value::Null);
    let error = body("/html", "Json").await.unwrap_err();
    assert!(
        !error.retryable && error.message.contains("not JSON"),
        "{error:?}"
    );
}

#[tokio::test]
async fn statuses_4xx_are_permanent_5xx_and_429_retryable() {
    let router = Router::new().route(
        "/status/{code}",
        get(
            |axum::extract::Path(code): axum::extract::Path<u16>| async move {
                (
                    StatusCode::from_u16(code).unwrap(),
                    format!("status {code} body"),
                )
            },
        ),
    );
    let base = serve(router).await;
    let connections = no_connections();
    let context = context(&connections, Arc::default());
    let call = |code: u16, success: Vec<u16>| {
        run(
            &context,
            json!({"url": format!("{base}/status/{code}"), "successStatus": success}),
        )
    };

    let error = call(404, vec![]).await.unwrap_err();
    assert!(!error.retryable);
    assert!(
        error.message.contains("404 Not Found") && error.message.contains("status 404 body"),
        "{}",
        error.message
    );
    assert!(!call(400, vec![]).await.unwrap_err().retryable);
    for code in [500, 502, 503, 429, 408] {
        assert!(call(code, vec![]).await.unwrap_err().retryable, "{code}");
    }
    assert_eq!(call(404, vec![404]).await.unwrap()["status"], 404);
    assert!(!call(200, vec![201]).await.unwrap_err().retryable);

    let error = run(
        &context,
        json!({"url": format!("{}/x", closed_port_url().await)}),
    )
    .await
    .unwrap_err();
    assert!(error.retryable, "{error:?}");
}

#[tokio::test]
async fn follows_redirects_unless_told_not_to() {
    let router = Router::new()
        .route(
            "/old",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/new")]) }),
        )
        .route("/new", get(|| async { "moved here" }))
        .route(
            "/loop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]) }),
        );
    let base = serve(router).await;
    let connections = no_connections();
    let context = context(&connections, Arc::default());

    let output = run(&context, json!({"url": format!("{base}/old")}))
        .await
        .unwrap();
    assert_eq!(
        (output["status"].clone(), output["body"].clone()),
        (json!(200), json!("moved here"))
    );

    let output = run(
        &context,
        json!({"url": format!("{base}/old"), "followRedirects": false}),
    )
    .await
    .unwrap();
    assert_eq!(output["status"], 302);
    assert_eq!(output["headers"]["location"], "/new");

    let error = run(&context, json!({"url": format!("{base}/loop")}))
        .await
        .unwrap_err();
    assert!(
        !error.retryable && error.message.contains("redirect"),
        "{error:?}"
    );
}

/// Accepts only the given Authorization header value.
fn guarded(expected: String) -> Router {
    Router::new().route(
        "/api/whoami",
        get(move |headers: HeaderMap, RawQuery(query): RawQuery| {
            let expected = expected.clone();
            async move {
                let authorization = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let api_key = headers
                    .get("x-api-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let query = query.unwrap_or_default();
                if authorization == expected || api_key == expected || query == expected {
                    (StatusCode::OK, "welcome".to_owned())
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        format!("rejected {authorization} {api_key} {query}"),
                    )
                }
            }
        }),
    )
}

#[tokio::test]
async fn bearer_basic_and_api_key_auth_with_base_url() {
    let cases: [(Pairs<'_>, Pairs<'_>, &str); 4] = [
        (
            &[("auth", "bearer")],
            &[("token", "tok-S3CRET")],
            "Bearer tok-S3CRET",
        ),
        (
            &[("auth", "basic")],
            &[("username", "ada"), ("password", "pa55-S3CRET")],
            "Basic YWRhOnBhNTUtUzNDUkVU",
        ),
        (
            &[("auth", "apiKey")],
            &[("apiKey", "key-S3CRET")],
            "key-S3CRET",
        ),
        (
            &[("auth", "apiKey"), ("apiKeyQuery", "api_key")],
            &[("apiKey", "key-S3CRET")],
            "api_key=key-S3CRET",
        ),
    ];
    for (config, secrets, expected) in cases {
        let base = serve(guarded(expected.to_owned())).await;
        let base_url = format!("{base}/api/");
        let mut config = config.to_vec();
        config.push(("baseUrl", &base_url));
        let connections = connections(&[("svc", ConnectionType::Http, &config, secrets)]);
        let context = context(&connections, Arc::default());
        let output = run(&context, json!({"url": "/whoami", "connection": "svc"})).await;
        assert_eq!(output.unwrap()["body"], "welcome", "{expected}");

        let absolute = run(
            &context,
            json!({"url": format!("{base}/api/whoami"), "connection": "svc"}),
        )
        .await;
        assert!(absolute.is_ok(), "same origin as baseUrl is allowed");
        let elsewhere = run(
            &context,
            json!({"url": "http://elsewhere.invalid/x", "connection": "svc"}),
        )
        .await;
        assert!(
            elsewhere
                .unwrap_err()
                .message
                .contains("outside the connection's baseUrl")
        );
    }
}

#[tokio::test]
async fn secrets_echoed_by_the_server_are_redacted_from_errors_outputs_and_logs() {
    let base = serve(
        Router::new()
            .route(
                "/fail",
                get(|headers: HeaderMap, RawQuery(query): RawQuery| async move {
                    let echoed = format!("{headers:?} {query:?}");
                    (
                        StatusCode::UNAUTHORIZED,
                        [("x-echo", echoed.clone())],
                        echoed,
                    )
                }),
            )
            .route(
                "/ok",
                get(|headers: HeaderMap| async move {
                    let authorization = headers
                        .get("authorization")
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned();
                    (
                        [("x-echo", authorization.clone())],
                        axum::Json(json!({"you sent": authorization})),
                    )
                }),
            ),
    )
    .await;
    for (config, secrets, canaries) in [
        (
            vec![("auth", "bearer")],
            vec![("token", "CANARY-bearer-7f3a")],
            vec!["CANARY-bearer-7f3a"],
        ),
        (
            vec![("auth", "basic")],
            vec![("username", "ada"), ("password", "CANARY-pass-91b2")],
            vec!["CANARY-pass-91b2", "YWRhOkNBTkFSWS1wYXNzLTkxYjI="],
        ),
        (
            vec![("auth", "apiKey"), ("apiKeyQuery", "key")],
            vec![("apiKey", "CANARY key+/=")],
            vec!["CANARY key+/=", "CANARY+key%2B%2F%3D"],
        ),
    ] {
        let mut config = config;
        config.push(("baseUrl", &base));
        let connections = connections(&[("svc", ConnectionType::Http, &config, &secrets)]);
        let logs = Arc::new(RecordedLogs::default());
        let context = context(&connections, Arc::clone(&logs));
        let error = run(&context, json!({"url": "/fail", "connection": "svc"}))
            .await
            .unwrap_err();
        assert!(
            error.message.contains("401") && error.message.contains("[REDACTED]"),
            "{}",
            error.message
        );
        let output = if config[0].1 == "apiKey" {
            Value::Null
        } else {
            run(&context, json!({"url": "/ok", "connection": "svc"}))
                .await
                .unwrap()
        };
        let everything = format!("{} {output} {:?}", error.message, logs.0.lock().unwrap());
        for canary in canaries {
            assert!(
                !everything.contains(canary),
                "{canary} leaked: {everything}"
            );
        }
    }
}

#[derive(Default)]
struct TokenServer {
    token_requests: AtomicUsize,
    /// The token the API accepts; bumped to simulate revocation.
    accepted: AtomicUsize,
    expires_in: u64,
    forms: Mutex<Vec<(Option<String>, String)>>,
}

fn oauth_router(state: Arc<TokenServer>) -> Router {
    Router::new()
        .route(
            "/token",
            post(|State(server): State<Arc<TokenServer>>, headers: HeaderMap, form: String| async move {
                let number = server.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
                let authorization = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
                server.forms.lock().unwrap().push((authorization, form));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                axum::Json(json!({"access_token": format!("token-{number}"), "token_type": "Bearer", "expires_in": server.expires_in}))
            }),
        )
        .route(
            "/api/data",
            get(|State(server): State<Arc<TokenServer>>, headers: HeaderMap| async move {
                let expected = format!("Bearer token-{}", server.accepted.load(Ordering::SeqCst));
                if headers.get("authorization").is_some_and(|v| v == expected.as_str()) {
                    (StatusCode::OK, "data")
                } else {
                    (StatusCode::UNAUTHORIZED, "bad token")
                }
            }),
        )
        .with_state(state)
}

#[tokio::test]
async fn oauth2_tokens_are_cached_shared_and_refreshed_when_rejected() {
    let server = Arc::new(TokenServer {
        expires_in: 3600,
        accepted: AtomicUsize::new(1),
        ..TokenServer::default()
    });
    let base = serve(oauth_router(Arc::clone(&server))).await;
    let token_url = format!("{base}/token");
    let config = [
        ("auth", "oauth2"),
        ("baseUrl", base.as_str()),
        ("tokenUrl", token_url.as_str()),
        ("scopes", "read, write"),
    ];
    let connections = connections(&[(
        "api",
        ConnectionType::Http,
        &config,
        &[
            ("clientId", "client-1"),
            ("clientSecret", "CANARY-client-secret"),
        ],
    )]);
    let context = context(&connections, Arc::default());
    let params = json!({"url": "/api/data", "connection": "api"});

    let outputs = futures::future::join_all((0..5).map(|_| run(&context, params.clone()))).await;
    for output in outputs {
        assert_eq!(output.unwrap()["body"], "data");
    }
    assert_eq!(run(&context, params.clone()).await.unwrap()["body"], "data");
    assert_eq!(
        server.token_requests.load(Ordering::SeqCst),
        1,
        "one token for all requests"
    );
    let (authorization, form) = server.forms.lock().unwrap()[0].clone();
    assert_eq!(form, "grant_type=client_credentials&scope=read%20write");
    assert_eq!(
        authorization.as_deref(),
        Some("Basic Y2xpZW50LTE6Q0FOQVJZLWNsaWVudC1zZWNyZXQ=")
    );

    // The server revokes token-1: the cached token is refreshed once, in the same attempt.
    server.accepted.store(2, Ordering::SeqCst);
    assert_eq!(run(&context, params.clone()).await.unwrap()["body"], "data");
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn oauth2_tokens_about_to_expire_are_not_reused_and_token_errors_are_explained() {
    let server = Arc::new(TokenServer {
        expires_in: 0,
        ..TokenServer::default()
    });
    let base = serve(oauth_router(Arc::clone(&server))).await;
    let token_url = format!("{base}/token");
    let config = [
        ("auth", "oauth2"),
        ("baseUrl", base.as_str()),
        ("tokenUrl", token_url.as_str()),
        ("clientAuth", "body"),
    ];
    let connections = connections(&[(
        "api",
        ConnectionType::Http,
        &config,
        &[("clientId", "c"), ("clientSecret", "s3")],
    )]);
    let context = context(&connections, Arc::default());
    for expected in [1, 2] {
        server.accepted.store(expected, Ordering::SeqCst);
        run(&context, json!({"url": "/api/data", "connection": "api"}))
            .await
            .unwrap();
        assert_eq!(server.token_requests.load(Ordering::SeqCst), expected);
    }
    assert_eq!(
        server.forms.lock().unwrap()[0],
        (
            None,
            "grant_type=client_credentials&client_id=c&client_secret=s3".to_owned()
        )
    );

    let bad_token_url = format!("{base}/missing");
    let config = [
        ("auth", "oauth2"),
        ("baseUrl", base.as_str()),
        ("tokenUrl", bad_token_url.as_str()),
    ];
    let connections = self::connections(&[(
        "api",
        ConnectionType::Http,
        &config,
        &[("clientId", "c"), ("clientSecret", "s3")],
    )]);
    let context = self::context(&connections, Arc::default());
    let error = run(&context, json!({"url": "/api/data", "connection": "api"}))
        .await
        .unwrap_err();
    assert!(
        !error.retryable
            && error.message.contains("oauth2 token request")
            && error.message.contains("404"),
        "{error:?}"
    );
}

#[tokio::test]
async fn parameter_and_connection_mistakes_are_permanent() {
    let connections = connections(&[
        ("db", ConnectionType::Postgres, &[], &[]),
        ("weird", ConnectionType::Http, &[("auth", "kerberos")], &[]),
        (
            "no-token",
            ConnectionType::Http,
            &[("auth", "bearer"), ("baseUrl", "http://127.0.0.1:9")],
            &[],
        ),
    ]);
    let context = context(&connections, Arc::default());
    for (params, expected) in [
        (json!({"url": "/relative"}), "is relative"),
        (json!({"url": "ftp://example.com/x"}), "only http and https"),
        (
            json!({"url": "http://127.0.0.1:9/", "connection": "db"}),
            "type postgres",
        ),
        (
            json!({"url": "/", "connection": "weird"}),
            "unknown config.auth",
        ),
        (
            json!({"url": "/", "connection": "no-token"}),
            "no secret key \"token\"",
        ),
        (json!({"url": "/", "connection": "missing"}), "not found"),
        (
            json!({"url": "http://127.0.0.1:9/", "headers": {"X-Bad": "a\nb"}}),
            "header",
        ),
        (json!({"nourl": true}), "invalid http parameters"),
    ] {
        let error = run(&context, params).await.unwrap_err();
        assert!(
            !error.retryable && error.message.contains(expected),
            "{expected}: {error:?}"
        );
    }
}

/// What the stand-in run API saw: (path, run credential, rejected hash).
type RefreshCalls = Arc<Mutex<Vec<(String, String, String)>>>;

#[tokio::test]
async fn an_operator_kept_token_refused_with_401_is_renewed_through_the_run_api_once() {
    use crate::connections::ConnectionStore;
    use crate::node::RunApiAccess;
    use sha2::Digest;
    use sluice_crds::oauth2::OAuth2Spec;
    use std::collections::BTreeMap;

    // The API accepts only the fresh token; the run API hands it out.
    let api = serve(Router::new().route(
        "/data",
        get(|headers: HeaderMap| async move {
            match headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
            {
                Some("Bearer fresh-TOKEN-2") => (StatusCode::OK, "data".to_owned()),
                Some(other) => (StatusCode::UNAUTHORIZED, format!("token {other} expired")),
                None => (StatusCode::UNAUTHORIZED, "no token".to_owned()),
            }
        }),
    ))
    .await;
    let calls = RefreshCalls::default();
    let run_api = serve(
        Router::new()
            .route(
                "/api/v1/runs/{namespace}/{name}/connections/{connection}/token",
                post(
                    |State(calls): State<RefreshCalls>,
                     axum::extract::Path((namespace, name, connection)): axum::extract::Path<(
                        String,
                        String,
                        String,
                    )>,
                     headers: HeaderMap,
                     axum::Json(body): axum::Json<Value>| async move {
                        let credential = headers
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        calls.lock().unwrap().push((
                            format!("{namespace}/{name}/{connection}"),
                            credential,
                            body["rejectedTokenSha256"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        ));
                        axum::Json(json!({"accessToken": "fresh-TOKEN-2"}))
                    },
                ),
            )
            .with_state(calls.clone()),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("crm")).unwrap();
    std::fs::write(dir.path().join("crm/accessToken"), "stale-TOKEN-1").unwrap();
    let spec = sluice_crds::ConnectionSpec {
        type_: ConnectionType::Http,
        config: BTreeMap::from([("baseUrl".to_owned(), api.clone())]),
        oauth2: Some(OAuth2Spec::default()),
        ..sluice_crds::ConnectionSpec::default()
    };
    let store = ConnectionStore::from_dir(dir.path(), BTreeMap::from([("crm".to_owned(), spec)]));
    let connections = TestConnections {
        _dir: tempfile::tempdir().unwrap(),
        store: Arc::new(store),
    };
    let logs = Arc::new(RecordedLogs::default());
    let mut context = context(&connections, logs.clone());
    context.run.namespace = "team".into();
    context.run.name = "run-1".into();

    // Without a run API (a local run) the 401 stands, and names the fix.
    let error = run(&context, json!({"url": "/data", "connection": "crm"}))
        .await
        .unwrap_err();
    assert!(error.message.contains("401"), "{}", error.message);
    assert!(
        !error.message.contains("stale-TOKEN-1"),
        "{}",
        error.message
    );
    assert!(calls.lock().unwrap().is_empty());

    context.run_api = Some(RunApiAccess {
        base_url: run_api,
        token: "run-credential".into(),
    });
    let output = run(&context, json!({"url": "/data", "connection": "crm"}))
        .await
        .unwrap();
    assert_eq!(output["body"], "data");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one refresh: {calls:?}");
    let (path, credential, rejected) = &calls[0];
    assert_eq!(path, "team/run-1/crm");
    assert_eq!(credential, "Bearer run-credential");
    let expected: String = sha2::Sha256::digest(b"stale-TOKEN-1")
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(rejected, &expected);
    for line in logs.0.lock().unwrap().iter() {
        assert!(!line.contains("TOKEN"), "a token in a log line: {line}");
    }
}

#[tokio::test]
async fn an_operator_kept_token_is_retried_once_only() {
    use crate::connections::ConnectionStore;
    use crate::node::RunApiAccess;
    use sluice_crds::oauth2::OAuth2Spec;
    use std::collections::BTreeMap;

    let hits = Arc::new(AtomicUsize::new(0));
    let api = serve(
        Router::new()
            .route(
                "/data",
                get(|State(hits): State<Arc<AtomicUsize>>| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    StatusCode::UNAUTHORIZED
                }),
            )
            .with_state(hits.clone()),
    )
    .await;
    let refreshes = Arc::new(AtomicUsize::new(0));
    let run_api = serve(
        Router::new()
            .route(
                "/api/v1/runs/{namespace}/{name}/connections/{connection}/token",
                post(|State(refreshes): State<Arc<AtomicUsize>>| async move {
                    refreshes.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"accessToken": "still-refused"}))
                }),
            )
            .with_state(refreshes.clone()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("crm")).unwrap();
    std::fs::write(dir.path().join("crm/accessToken"), "token-1\n").unwrap();
    let spec = sluice_crds::ConnectionSpec {
        type_: ConnectionType::Http,
        config: BTreeMap::from([("baseUrl".to_owned(), api)]),
        oauth2: Some(OAuth2Spec::default()),
        ..sluice_crds::ConnectionSpec::default()
    };
    let store = ConnectionStore::from_dir(dir.path(), BTreeMap::from([("crm".to_owned(), spec)]));
    let connections = TestConnections {
        _dir: tempfile::tempdir().unwrap(),
        store: Arc::new(store),
    };
    let mut context = context(&connections, Arc::default());
    context.run_api = Some(RunApiAccess {
        base_url: run_api,
        token: "run-credential".into(),
    });
    let error = run(&context, json!({"url": "/data", "connection": "crm"}))
        .await
        .unwrap_err();
    assert!(error.message.contains("401"), "{}", error.message);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "the request and one retry");
    assert_eq!(refreshes.load(Ordering::SeqCst), 1, "one refresh");
}
