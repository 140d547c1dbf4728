//! The web console of the real operator: sign in with a Kubernetes bearer
//! token (TokenReview on the API server stand-in), see only the namespaces
//! the token may read (SubjectAccessReview), CSRF on non-GET requests,
//! sessions as rows of `user_sessions`, and signing out.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use sluice_e2e::operator::eventually;

use crate::operator_support::{Bed, quick_workflow};

const READER_TOKEN: &str = "reader-token-0123456789";
const STRANGER_TOKEN: &str = "stranger-token-0123456789";

/// A signed-in browser: the session cookie and the CSRF token.
struct Signed {
    cookie: String,
    csrf: String,
    body: Value,
}

async fn sign_in(http: &reqwest::Client, console: &str, token: &str) -> Signed {
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
