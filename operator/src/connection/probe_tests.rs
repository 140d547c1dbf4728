//! Probes against real servers on loopback: an axum API with every HTTP
//! auth scheme (OAuth2 token endpoint included), the local PostgreSQL and
//! SMTP greeting servers — and each failure: missing key, wrong password,
//! unreachable host, a server echoing credentials.

use super::*;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64_free::basic;
use sluice_crds::connection::VerifySpec;
use tokio::io::AsyncWriteExt;

/// Basic credentials without a base64 dependency: the header the server expects.
mod base64_free {
    pub fn basic(user: &str, password: &str) -> String {
        const TABLE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let input = format!("{user}:{password}").into_bytes();
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        format!("Basic {out}")
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn api() -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = Router::new()
        .route(
            "/bearer",
            get(|headers: HeaderMap| async move {
                if header(&headers, "authorization") == "Bearer tok-1" {
                    (StatusCode::OK, "ok".to_owned())
                } else {
                    // Echo the credentials back, as careless servers do.
                    (
                        StatusCode::UNAUTHORIZED,
                        format!("bad token: {}", header(&headers, "authorization")),
                    )
                }
            }),
        )
        .route(
            "/basic",
            get(|headers: HeaderMap| async move {
                if header(&headers, "authorization") == basic("ann", "pw-1") {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        )
        .route(
            "/apikey",
            get(|headers: HeaderMap| async move {
                if header(&headers, "x-api-key") == "key-1" {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                }
            }),
        )
        .route(
            "/token",
            post(|headers: HeaderMap| async move {
                if header(&headers, "authorization") == basic("client-1", "client-secret-1") {
                    (
                        StatusCode::OK,
                        r#"{"access_token":"issued-1","expires_in":3600}"#,
                    )
                } else {
                    (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#)
                }
            }),
        )
        .route(
            "/oauth",
            get(|headers: HeaderMap| async move {
                if header(&headers, "authorization") == "Bearer issued-1" {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn http(base: &str, auth: &str, path: &str, extra: &[(&str, &str)]) -> ConnectionSpec {
    let mut config = BTreeMap::from([
        ("baseUrl".to_owned(), base.to_owned()),
        ("auth".to_owned(), auth.to_owned()),
    ]);
    for (key, value) in extra {
        config.insert((*key).to_owned(), (*value).to_owned());
    }
    ConnectionSpec {
        type_: ConnectionType::Http,
        config,
        secret_ref: None,
        verify: Some(VerifySpec {
            url: Some(path.to_owned()),
            interval: None,
        }),
        oauth2: None,
    }
}

fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.as_bytes().to_vec()))
        .collect()
}

fn assert_reason(outcome: &ProbeOutcome, reason: &str) {
    assert_eq!(outcome.reason, reason, "{outcome:?}");
    assert_eq!(outcome.ok, reason == super::reason::VERIFIED, "{outcome:?}");
}

#[tokio::test]
async fn http_probes_pass_with_each_auth_scheme() {
    let base = api().await;
    let cases = [
        (
            http(&base, "bearer", "/bearer", &[]),
            secret(&[("token", "tok-1")]),
        ),
        (
            http(&base, "basic", "/basic", &[]),
            secret(&[("username", "ann"), ("password", "pw-1")]),
        ),
        (
            http(&base, "apiKey", "/apikey", &[]),
            secret(&[("apiKey", "key-1")]),
        ),
        (
            http(
                &base,
                "oauth2",
                "/oauth",
                &[("tokenUrl", &format!("{base}/token"))],
            ),
            secret(&[
                ("clientId", "client-1"),
                ("clientSecret", "client-secret-1"),
            ]),
        ),
        (http(&base, "none", "/missing", &[]), secret(&[])),
    ];
    for (index, (spec, data)) in cases.iter().enumerate() {
        let outcome = probe("api", spec, data).await;
        if index == 4 {
            assert_reason(&outcome, reason::UNEXPECTED_RESPONSE);
            assert!(outcome.message.contains("answered 404"), "{outcome:?}");
        } else {
            assert_reason(&outcome, reason::VERIFIED);
        }
    }
}

#[tokio::test]
async fn http_probe_failures_have_reasons_and_never_echo_secrets() {
    let base = api().await;
    let wrong = probe(
        "api",
        &http(&base, "basic", "/basic", &[]),
        &secret(&[("username", "ann"), ("password", "wrong-password-9")]),
    )
    .await;
    assert_reason(&wrong, reason::AUTHENTICATION_FAILED);

    let echoed = probe(
        "api",
        &http(&base, "bearer", "/bearer", &[]),
        &secret(&[("token", "canary-token-7")]),
    )
    .await;
    assert_reason(&echoed, reason::AUTHENTICATION_FAILED);
    assert!(!echoed.message.contains("canary-token-7"), "{echoed:?}");

    let oauth = probe(
        "api",
        &http(
            &base,
            "oauth2",
            "/oauth",
            &[("tokenUrl", &format!("{base}/token"))],
        ),
        &secret(&[("clientId", "client-1"), ("clientSecret", "not-it-3")]),
    )
    .await;
    assert_reason(&oauth, reason::AUTHENTICATION_FAILED);
    assert!(!oauth.message.contains("not-it-3"), "{oauth:?}");

    let missing_key = probe("api", &http(&base, "bearer", "/bearer", &[]), &secret(&[])).await;
    assert_reason(&missing_key, reason::INVALID_CONFIG);
    assert!(
        missing_key.message.contains("no secret key \"token\""),
        "{missing_key:?}"
    );

    let unreachable = probe(
        "api",
        &http("http://127.0.0.1:1", "bearer", "/bearer", &[]),
        &secret(&[("token", "tok-1")]),
    )
    .await;
    assert_reason(&unreachable, reason::UNREACHABLE);
}

#[tokio::test]
async fn the_secret_folder_is_private_and_removed() {
    let data = secret(&[("token", "tok-1")]);
    let folder = SecretFolder::create("api", &data).unwrap();
    let root = folder.path().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = std::fs::metadata(root.join("api/token")).unwrap();
        assert_eq!(file.permissions().mode() & 0o777, 0o600);
        let dir = std::fs::metadata(&root).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    }
    drop(folder);
    assert!(!root.exists());
}

const POSTGRES: &str = "127.0.0.1";

fn postgres(user: &str, port: &str) -> ConnectionSpec {
    ConnectionSpec {
        type_: ConnectionType::Postgres,
        config: BTreeMap::from([
            ("host".to_owned(), POSTGRES.to_owned()),
            ("port".to_owned(), port.to_owned()),
            ("database".to_owned(), "postgres".to_owned()),
            ("user".to_owned(), user.to_owned()),
            ("sslMode".to_owned(), "disable".to_owned()),
            ("connectTimeout".to_owned(), "3s".to_owned()),
        ]),
        secret_ref: None,
        verify: Some(VerifySpec::default()),
        oauth2: None,
    }
}

#[tokio::test]
async fn postgres_probe_runs_select_1_and_reports_an_unreachable_server() {
    // A role with a password, as a real deployment has. The local server
    // trusts loopback, so a wrong password cannot be told apart here.
    let admin = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    let _ = sqlx::query(
        "DO $$ BEGIN CREATE ROLE sluice_probe LOGIN PASSWORD 'probe-pw'; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    )
    .execute(&admin)
    .await;
    let outcome = probe(
        "db",
        &postgres("sluice_probe", "5432"),
        &secret(&[("password", "probe-pw")]),
    )
    .await;
    assert_reason(&outcome, reason::VERIFIED);

    let unreachable = probe(
        "db",
        &postgres("sluice_probe", "1"),
        &secret(&[("password", "probe-pw")]),
    )
    .await;
    assert_reason(&unreachable, reason::UNREACHABLE);
    assert!(!unreachable.message.contains("probe-pw"));

    let missing_key = probe("db", &postgres("sluice_probe", "5432"), &secret(&[])).await;
    assert_reason(&missing_key, reason::INVALID_CONFIG);
}

async fn smtp_server(greeting: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(greeting.as_bytes()).await;
        }
    });
    port
}

fn smtp(port: u16) -> ConnectionSpec {
    ConnectionSpec {
        type_: ConnectionType::Smtp,
        config: BTreeMap::from([
            ("host".to_owned(), "127.0.0.1".to_owned()),
            ("port".to_owned(), port.to_string()),
        ]),
        secret_ref: None,
        verify: Some(VerifySpec::default()),
        oauth2: None,
    }
}

#[tokio::test]
async fn smtp_probe_reads_the_greeting() {
    let good = smtp_server("220 mail.test ESMTP ready\r\n").await;
    assert_reason(
        &probe("mail", &smtp(good), &secret(&[])).await,
        reason::VERIFIED,
    );
    let busy = smtp_server("554 no service\r\n").await;
    let outcome = probe("mail", &smtp(busy), &secret(&[])).await;
    assert_reason(&outcome, reason::UNEXPECTED_RESPONSE);
    assert!(outcome.message.contains("554 no service"));
    assert_reason(
        &probe("mail", &smtp(1), &secret(&[])).await,
        reason::UNREACHABLE,
    );
}
