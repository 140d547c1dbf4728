//! OAuth2 Connections through the real operator and runner, against the
//! local authorization server (`sluice_e2e::oauth2_server`), real HTTP on
//! loopback:
//!
//! - a workflow whose `http` node calls the server's protected resource
//!   keeps succeeding across three token expiries (short lifetimes, the
//!   RefreshToken grant with rotation);
//! - an access token the API revokes early: the node's 401 asks the run
//!   API for a renewal once and the retry succeeds;
//! - a revoked refresh token shows on the Connection's `Authorized`
//!   condition and in a Warning Event, without the token;
//! - Connect in the console: the provider's page, its redirect back to the
//!   operator's callback, a refused `state`, and a connected Connection.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::{Value, json};
use sluice_crds::{ConditionStatus, Connection, RunPhase};
use sluice_e2e::oauth2_server::{AuthServer, AuthServerOptions};
use sluice_e2e::operator::eventually;
use std::time::Duration;

use crate::console::sign_in;
use crate::operator_support::Bed;

fn secret(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": data,
    })
}

/// An OAuth2 Connection `name` to `server`, whose client credentials are
/// in the Secret `<name>-client`.
fn oauth2_connection(name: &str, server: &AuthServer, oauth2: Value) -> Value {
    let mut spec = json!({
        "tokenUrl": server.token_url(),
        "authorizationUrl": server.authorization_url(),
        "scopes": ["read"],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), oauth2.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Connection",
        "metadata": {"name": name},
        "spec": {
            "type": "http",
            "config": {"baseUrl": server.base_url},
            "secretRef": {"name": format!("{name}-client")},
            "oauth2": spec,
        },
    })
}

/// A workflow with one `http` node calling the protected resource.
fn resource_workflow(connection: &str) -> Value {
    json!({
        "nodes": [
            {"name": "call", "http": {"url": "/resource", "connection": connection, "responseFormat": "Json"}},
        ],
        "output": ".nodes.call.output.body",
    })
}

/// The Connection's `Authorized` condition, once `check` holds for it.
async fn wait_authorized(
    bed: &Bed,
    name: &str,
    what: &str,
    check: impl Fn(&sluice_crds::Condition) -> bool,
) -> Connection {
    let connections: Api<Connection> =
        Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    let check = &check;
    eventually(&format!("connection {name}: {what}"), || {
        let connections = connections.clone();
        async move {
            let connection = connections.get_opt(name).await.ok()??;
            let authorized = connection
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|condition| condition.type_ == "Authorized")?
                .clone();
            check(&authorized).then_some(connection)
        }
    })
    .await
}

/// Waits until the Workflow `name` is Ready (a run of a workflow that still
/// says its Connection is not Ready fails at once).
async fn wait_workflow_ready(bed: &Bed, name: &str) {
    let workflows = bed.workflows();
    eventually(&format!("workflow {name} Ready"), || {
        let workflows = workflows.clone();
        async move {
            let workflow = workflows.get_opt(name).await.ok()??;
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

fn is_true(condition: &sluice_crds::Condition) -> bool {
    condition.status == ConditionStatus::True
}

async fn start_server(lifetime: Duration) -> AuthServer {
    AuthServer::start(AuthServerOptions {
        access_lifetime: lifetime,
        ..AuthServerOptions::default()
    })
    .await
    .expect("failed to start the authorization server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_keeps_calling_an_oauth2_api_across_three_token_expiries() {
    let bed = Bed::start("oauth2-expiries").await;
    let server = start_server(Duration::from_secs(4)).await;
    let (client_id, client_secret) = server.client();
    let first_refresh = server.seed_refresh_token(&client_id);
    bed.apply(secret(
        "crm-client",
        json!({"clientId": client_id, "clientSecret": client_secret, "refreshToken": first_refresh}),
    ))
    .await;
    bed.apply(oauth2_connection(
        "crm",
        &server,
        json!({"grant": "RefreshToken", "refreshBefore": "2s"}),
    ))
    .await;
    bed.apply_workflow("calls", resource_workflow("crm")).await;
    wait_authorized(&bed, "crm", "Authorized", is_true).await;
    wait_workflow_ready(&bed, "calls").await;

    let mut used = Vec::new();
    for round in 0..4 {
        let run = format!("call-{round}");
        bed.create_run(&run, "calls", json!({})).await;
        let finished = bed.wait_terminal(&run, RunPhase::Succeeded).await;
        let output = finished.status.and_then(|s| s.output).unwrap_or_default();
        assert_eq!(output["ok"], true, "run {run} reached the API: {output}");
        let token = server
            .resource_calls()
            .iter()
            .rev()
            .find(|(status, _)| *status == 200)
            .map(|(_, token)| token.clone())
            .expect("the API answered 200");
        used.push(token.clone());
        if round < 3 {
            // Wait until the token this run used has expired at the provider.
            eventually("the token to expire", || {
                let server = server.clone();
                let token = token.clone();
                async move { (!server.access_token_valid(&token)).then_some(()) }
            })
            .await;
        }
    }
    let distinct: std::collections::BTreeSet<&String> = used.iter().collect();
    assert_eq!(
        distinct.len(),
        4,
        "each run used a token issued after the last one expired: {used:?}"
    );
    assert!(
        server.requests("refresh_token") >= 4,
        "the operator renewed with the (rotated) refresh token"
    );
    assert!(
        !server.refresh_token_valid(&first_refresh),
        "the first refresh token was rotated away"
    );
    // The rotated refresh token is the one kept, and the runner never got it.
    let secrets: Api<Secret> = Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    let kept = secrets
        .get("crm-oauth2-token")
        .await
        .expect("the token Secret");
    let kept_refresh = kept
        .data
        .as_ref()
        .and_then(|data| data.get("refreshToken"))
        .map(|value| String::from_utf8_lossy(&value.0).into_owned())
        .expect("a kept refresh token");
    assert!(server.refresh_token_valid(&kept_refresh));
    let owner = &kept.metadata.owner_references.as_ref().expect("an owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Connection", "crm")
    );
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refused_with_401_gets_a_renewed_token_through_the_run_api() {
    let bed = Bed::start("oauth2-401").await;
    let server = start_server(Duration::from_secs(3600)).await;
    let (client_id, client_secret) = server.client();
    bed.apply(secret(
        "crm-client",
        json!({"clientId": client_id, "clientSecret": client_secret}),
    ))
    .await;
    bed.apply(oauth2_connection("crm", &server, json!({})))
        .await;
    bed.apply_workflow("calls", resource_workflow("crm")).await;
    wait_authorized(&bed, "crm", "Authorized", is_true).await;
    wait_workflow_ready(&bed, "calls").await;
    let first = server.issued_access_tokens();
    assert_eq!(first.len(), 1);

    // The provider revokes the token long before it expires.
    server.revoke_access_tokens();
    bed.create_run("call-1", "calls", json!({})).await;
    bed.wait_terminal("call-1", RunPhase::Succeeded).await;
    let calls = server.resource_calls();
    assert_eq!(
        calls.iter().map(|(status, _)| *status).collect::<Vec<_>>(),
        [401, 200],
        "refused once, then retried once"
    );
    assert_eq!(calls[0].1, first[0]);
    let issued = server.issued_access_tokens();
    assert_eq!(issued.len(), 2, "one renewal");
    assert_eq!(calls[1].1, issued[1]);
    assert_eq!(server.requests("client_credentials"), 2);
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_shows_on_the_connections_conditions() {
    let bed = Bed::start("oauth2-revoked").await;
    let server = start_server(Duration::from_secs(3)).await;
    let (client_id, client_secret) = server.client();
    let refresh = server.seed_refresh_token(&client_id);
    bed.apply(secret(
        "crm-client",
        json!({"clientId": client_id, "clientSecret": client_secret, "refreshToken": refresh}),
    ))
    .await;
    bed.apply(oauth2_connection(
        "crm",
        &server,
        json!({"grant": "RefreshToken"}),
    ))
    .await;
    wait_authorized(&bed, "crm", "Authorized", is_true).await;
    server.revoke_all_refresh_tokens();
    let connection = wait_authorized(&bed, "crm", "RefreshFailed", |condition| {
        condition.status == ConditionStatus::False && condition.reason == "RefreshFailed"
    })
    .await;
    let text = serde_json::to_string(&connection).expect("a Connection");
    let authorized = connection
        .status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == "Authorized"))
        .expect("the condition");
    assert!(
        authorized.message.contains("invalid_grant") && authorized.message.contains("refreshToken"),
        "the provider's answer and the fix: {}",
        authorized.message
    );
    for token in server.issued_refresh_tokens() {
        assert!(
            !text.contains(&token),
            "a refresh token in the Connection: {text}"
        );
    }
    assert!(!text.contains(&client_secret));
    let events = bed.events_about("crm").await;
    assert!(
        events
            .iter()
            .any(|event| event.reason.as_deref() == Some("RefreshFailed")
                && event.type_.as_deref() == Some("Warning")),
        "a Warning Event: {events:?}"
    );
    bed.finish().await;
}

const EDITOR_TOKEN: &str = "editor-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_goes_to_the_provider_and_the_callback_refuses_a_bad_state() {
    let bed = Bed::start("oauth2-connect").await;
    let namespace = bed.cluster.namespace().to_owned();
    let identities = bed
        .cluster
        .stand_in()
        .expect("this test sets up tokens on the API server stand-in; unset SLUICE_E2E_KUBECONFIG")
        .identities();
    identities.add_token(EDITOR_TOKEN, "editor", &["team-editors"]);
    identities.allow(
        "team-editors",
        &namespace,
        "sluice.dev",
        &["connections"],
        &["get", "list", "update"],
    );
    let server = start_server(Duration::from_secs(3600)).await;
    let (client_id, client_secret) = server.client();
    bed.apply(secret(
        "crm-client",
        json!({"clientId": client_id, "clientSecret": client_secret}),
    ))
    .await;
    bed.apply(oauth2_connection(
        "crm",
        &server,
        json!({"grant": "AuthorizationCode"}),
    ))
    .await;
    wait_authorized(&bed, "crm", "AuthorizationRequired", |condition| {
        condition.reason == "AuthorizationRequired"
    })
    .await;

    // The console keeps sessions in the database: wait for the mirror's schema.
    let pool = bed.database.pool().clone();
    eventually("the Connection's row in PostgreSQL", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM oauth_connections WHERE status = 'authorization_required'",
            )
            .fetch_one(&pool)
            .await
            .ok()
            .filter(|count| *count > 0)
        }
    })
    .await;

    let console = bed.operator.console_url();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let editor = sign_in(&http, &console, EDITOR_TOKEN).await;
    let answer: Value = http
        .post(format!("{console}/api/connections/{namespace}/crm/connect"))
        .header(COOKIE, &editor.cookie)
        .header("x-csrf-token", &editor.csrf)
        .send()
        .await
        .expect("the console answered")
        .json()
        .await
        .expect("a JSON answer");
    let authorization_url = answer["authorizationUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("an authorization URL: {answer}"))
        .to_owned();
    assert!(authorization_url.starts_with(&server.authorization_url()));
    assert!(authorization_url.contains("code_challenge_method=S256"));

    // The user consents; the provider sends the browser back with code and state.
    let consent = http
        .get(&authorization_url)
        .send()
        .await
        .expect("the provider answered");
    assert_eq!(consent.status(), StatusCode::SEE_OTHER);
    let callback = consent.headers()[LOCATION]
        .to_str()
        .expect("a location")
        .to_owned();
    assert!(
        callback.starts_with(&format!("{console}/oauth2/callback?")),
        "{callback}"
    );
    let parsed = reqwest::Url::parse(&callback).expect("a URL");
    let query: std::collections::BTreeMap<String, String> =
        parsed.query_pairs().into_owned().collect();

    // A forged state (another random part) and a missing one are refused; nothing is exchanged.
    let (named, _) = query["state"].rsplit_once('.').expect("a state");
    let forged = format!("{named}.{}", uuid::Uuid::new_v4().simple());
    for bad in [forged.as_str(), "not-a-state"] {
        let mut url = parsed.clone();
        url.query_pairs_mut()
            .clear()
            .append_pair("code", &query["code"])
            .append_pair("state", bad);
        let refused = http.get(url).send().await.expect("the callback answered");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "state {bad}");
        let page = refused.text().await.unwrap_or_default();
        assert!(
            page.contains("Connect"),
            "the page says how to start again: {page}"
        );
    }
    assert_eq!(server.requests("authorization_code"), 0);

    // The real state is accepted: the code is exchanged and the Connection connected.
    let accepted = http
        .get(&callback)
        .send()
        .await
        .expect("the callback answered");
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(server.requests("authorization_code"), 1);
    wait_authorized(&bed, "crm", "Authorized", is_true).await;
    // The state is single-use.
    let replayed = http
        .get(&callback)
        .send()
        .await
        .expect("the callback answered");
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(server.requests("authorization_code"), 1);
    bed.finish().await;
}
