//! A small OAuth2 authorization server and protected API on `127.0.0.1`
//! (real HTTP, random port), for tests of OAuth2 Connections: the
//! operator's token keeper (its lib tests use it as a dev-dependency), the
//! runner's 401 path and the end-to-end tests.
//!
//! - `POST /token` (RFC 6749 §3.2): `client_credentials`, `refresh_token`
//!   (with rotation when [`AuthServerOptions::rotate_refresh_tokens`], the
//!   old refresh token then revoked) and `authorization_code` with PKCE
//!   (`S256` only). Clients authenticate with HTTP Basic or in the body.
//! - `GET /authorize`: the user's consent, given at once — redirects to
//!   `redirect_uri` with `code` and the caller's `state`.
//! - `GET /resource`: answers 200 only to `Authorization: Bearer <token>`
//!   with a token this server issued that has not expired; 401 otherwise.
//!
//! Access tokens live [`AuthServer::set_access_lifetime`] (short lifetimes
//! are the point); the tests read what was issued and revoke refresh
//! tokens through the handle. Error answers follow RFC 6749 §5.2, and the
//! `error_description` of a refused refresh token quotes the token, as
//! some providers do, so callers are tested for stripping it.
//!
//! Nothing here is for production: codes, tokens and clients live in
//! memory, and consent is automatic.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How the server starts.
#[derive(Clone, Debug)]
pub struct AuthServerOptions {
    /// Client id → client secret.
    pub clients: BTreeMap<String, String>,
    /// How long an access token is accepted.
    pub access_lifetime: Duration,
    /// Whether a `refresh_token` grant answers a new refresh token and
    /// revokes the one used.
    pub rotate_refresh_tokens: bool,
}

impl Default for AuthServerOptions {
    fn default() -> Self {
        Self {
            clients: BTreeMap::from([("sluice-client".to_owned(), random("client-secret"))]),
            access_lifetime: Duration::from_secs(3600),
            rotate_refresh_tokens: true,
        }
    }
}

/// What one issued access token allows.
#[derive(Clone, Debug)]
struct AccessGrant {
    expires: Instant,
}

/// A pending authorization code.
#[derive(Clone, Debug)]
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    scope: String,
}

#[derive(Debug, Default)]
struct ServerState {
    clients: BTreeMap<String, String>,
    access_lifetime: Duration,
    rotate: bool,
    access: HashMap<String, AccessGrant>,
    /// Refresh token → (client id, revoked).
    refresh: HashMap<String, (String, bool)>,
    codes: HashMap<String, PendingCode>,
    /// Every access token issued, oldest first.
    issued_access: Vec<String>,
    /// Every refresh token issued (or seeded), oldest first.
    issued_refresh: Vec<String>,
    /// Token requests answered, by grant type (successful or not).
    requests: BTreeMap<String, u32>,
    /// Answers of `/resource`: (status, bearer token presented).
    resource_calls: Vec<(u16, String)>,
}

/// A running server; dropping the handle leaves it serving until the
/// test's runtime ends.
#[derive(Clone)]
pub struct AuthServer {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    state: Arc<Mutex<ServerState>>,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// A random token-like string with a readable prefix.
pub fn random(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

impl AuthServer {
    /// Starts a server on a random port of 127.0.0.1.
    pub async fn start(options: AuthServerOptions) -> std::io::Result<AuthServer> {
        let state = Arc::new(Mutex::new(ServerState {
            clients: options.clients,
            access_lifetime: options.access_lifetime,
            rotate: options.rotate_refresh_tokens,
            ..ServerState::default()
        }));
        let router = Router::new()
            .route("/token", post(token))
            .route("/authorize", get(authorize))
            .route("/resource", get(resource))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(AuthServer {
            base_url: format!("http://{address}"),
            state,
        })
    }

    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url)
    }

    /// The authorization endpoint's URL.
    pub fn authorization_url(&self) -> String {
        format!("{}/authorize", self.base_url)
    }

    /// The protected resource's URL.
    pub fn resource_url(&self) -> String {
        format!("{}/resource", self.base_url)
    }

    /// The first client: (id, secret).
    pub fn client(&self) -> (String, String) {
        let state = self.lock();
        let (id, secret) = state
            .clients
            .iter()
            .next()
            .expect("the server has a client");
        (id.clone(), secret.clone())
    }

    /// Changes how long access tokens issued from now on live.
    pub fn set_access_lifetime(&self, lifetime: Duration) {
        self.lock().access_lifetime = lifetime;
    }

    /// Issues a refresh token for `client_id`, as a user would obtain one
    /// out of band and place it in a Secret.
    pub fn seed_refresh_token(&self, client_id: &str) -> String {
        let token = random("rt");
        let mut state = self.lock();
        state
            .refresh
            .insert(token.clone(), (client_id.to_owned(), false));
        state.issued_refresh.push(token.clone());
        token
    }

    /// Revokes a refresh token.
    pub fn revoke_refresh_token(&self, token: &str) {
        if let Some(entry) = self.lock().refresh.get_mut(token) {
            entry.1 = true;
        }
    }

    /// Revokes every refresh token issued so far.
    pub fn revoke_all_refresh_tokens(&self) {
        for entry in self.lock().refresh.values_mut() {
            entry.1 = true;
        }
    }

    /// Revokes every access token issued so far (the resource then answers
    /// 401 to them before they expire).
    pub fn revoke_access_tokens(&self) {
        for grant in self.lock().access.values_mut() {
            grant.expires = Instant::now();
        }
    }

    /// Every access token issued, oldest first.
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.lock().issued_access.clone()
    }

    /// Every refresh token issued or seeded, oldest first.
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.lock().issued_refresh.clone()
    }

    /// Whether `token` is a refresh token still accepted.
    pub fn refresh_token_valid(&self, token: &str) -> bool {
        self.lock()
            .refresh
            .get(token)
            .is_some_and(|(_, revoked)| !revoked)
    }

    /// How many token requests of `grant_type` were answered.
    pub fn requests(&self, grant_type: &str) -> u32 {
        self.lock()
            .requests
            .get(grant_type)
            .copied()
            .unwrap_or_default()
    }

    /// `/resource` answers so far: (status, bearer token presented).
    pub fn resource_calls(&self) -> Vec<(u16, String)> {
        self.lock().resource_calls.clone()
    }

    /// Whether `token` is an access token this server accepts now.
    pub fn access_token_valid(&self, token: &str) -> bool {
        self.lock()
            .access
            .get(token)
            .is_some_and(|grant| grant.expires > Instant::now())
    }
}

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, error: &str, description: String) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// The client's (id, secret) from HTTP Basic or the form.
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
    {
        let decoded = STANDARD.decode(basic).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        return Some((form_decode(id), form_decode(secret)));
    }
    Some((
        form.get("client_id")?.clone(),
        form.get("client_secret").cloned().unwrap_or_default(),
    ))
}

/// Undoes the form encoding RFC 6749 §2.3.1 asks for before Basic.
fn form_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

async fn token(
    State(state): State<Arc<Mutex<ServerState>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    *state.requests.entry(grant_type.clone()).or_default() += 1;
    let Some((client_id, client_secret)) = client_credentials(&headers, &form) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "no client credentials".to_owned(),
        );
    };
    if state.clients.get(&client_id) != Some(&client_secret) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!("client {client_id} is unknown or its secret is wrong"),
        );
    }
    let (scope, new_refresh) = match grant_type.as_str() {
        "client_credentials" => (form.get("scope").cloned().unwrap_or_default(), false),
        "refresh_token" => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            match state.refresh.get(&presented).cloned() {
                Some((owner, false)) if owner == client_id => {}
                _ => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        format!("refresh token {presented} is invalid, expired or revoked"),
                    );
                }
            }
            let rotate = state.rotate;
            if rotate && let Some(entry) = state.refresh.get_mut(&presented) {
                entry.1 = true;
            }
            (form.get("scope").cloned().unwrap_or_default(), rotate)
        }
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(pending) = state.codes.remove(&code) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the authorization code is invalid or was used".to_owned(),
                );
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if pending.client_id != client_id
                || Some(&pending.redirect_uri) != form.get("redirect_uri")
                || challenge != pending.challenge
            {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the code was issued to another client, redirect_uri or code_challenge"
                        .to_owned(),
                );
            }
            (pending.scope, true)
        }
        other => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant type {other:?} is not supported"),
            );
        }
    };
    let access_token = random("at");
    let lifetime = state.access_lifetime;
    state.access.insert(
        access_token.clone(),
        AccessGrant {
            expires: Instant::now() + lifetime,
        },
    );
    state.issued_access.push(access_token.clone());
    let mut answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs().max(1),
    });
    if !scope.is_empty() {
        answer["scope"] = json!(scope);
    }
    if new_refresh {
        let refresh_token = random("rt");
        state
            .refresh
            .insert(refresh_token.clone(), (client_id, false));
        state.issued_refresh.push(refresh_token.clone());
        answer["refresh_token"] = json!(refresh_token);
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response()
}

async fn authorize(
    State(state): State<Arc<Mutex<ServerState>>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut state = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let client_id = query.get("client_id").cloned().unwrap_or_default();
    let Some(redirect_uri) = query.get("redirect_uri").cloned() else {
        return (StatusCode::BAD_REQUEST, "redirect_uri is required").into_response();
    };
    if !state.clients.contains_key(&client_id)
        || query.get("response_type").map(String::as_str) != Some("code")
        || query.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (
            StatusCode::BAD_REQUEST,
            "unknown client, or not response_type=code with code_challenge_method=S256",
        )
            .into_response();
    }
    let Some(challenge) = query.get("code_challenge").cloned() else {
        return (StatusCode::BAD_REQUEST, "code_challenge is required").into_response();
    };
    let code = random("code");
    state.codes.insert(
        code.clone(),
        PendingCode {
            client_id,
            redirect_uri: redirect_uri.clone(),
            challenge,
            scope: query.get("scope").cloned().unwrap_or_default(),
        },
    );
    let mut target = match url::Url::parse(&redirect_uri) {
        Ok(target) => target,
        Err(_) => return (StatusCode::BAD_REQUEST, "invalid redirect_uri").into_response(),
    };
    target.query_pairs_mut().append_pair("code", &code);
    if let Some(caller_state) = query.get("state") {
        target.query_pairs_mut().append_pair("state", caller_state);
    }
    Redirect::to(target.as_str()).into_response()
}

async fn resource(State(state): State<Arc<Mutex<ServerState>>>, headers: HeaderMap) -> Response {
    let mut state = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let valid = state
        .access
        .get(&token)
        .is_some_and(|grant| grant.expires > Instant::now());
    let status = if valid {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    state.resource_calls.push((status.as_u16(), token));
    if valid {
        Json(json!({"ok": true})).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
            "the access token is missing, unknown or expired",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_body(form: &[(&str, &str)]) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish()
    }

    async fn post_token(server: &AuthServer, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let (id, secret) = server.client();
        let response = reqwest::Client::new()
            .post(server.token_url())
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .expect("the token endpoint answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_and_the_old_one_is_refused() {
        crate::cluster::install_crypto_provider();
        let server = AuthServer::start(AuthServerOptions::default())
            .await
            .unwrap();
        let (id, _) = server.client();
        let first = server.seed_refresh_token(&id);
        let (status, answer) = post_token(
            &server,
            &[("grant_type", "refresh_token"), ("refresh_token", &first)],
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let second = answer["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(second, first);
        assert!(!server.refresh_token_valid(&first));
        let (status, answer) = post_token(
            &server,
            &[("grant_type", "refresh_token"), ("refresh_token", &first)],
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(answer["error"], "invalid_grant");
        let access = server.issued_access_tokens();
        assert_eq!(access.len(), 1);
        let client = reqwest::Client::new();
        let ok = client
            .get(server.resource_url())
            .bearer_auth(&access[0])
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let refused = client
            .get(server.resource_url())
            .bearer_auth("at-made-up")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    }

    #[tokio::test]
    async fn a_wrong_client_secret_is_refused() {
        crate::cluster::install_crypto_provider();
        let server = AuthServer::start(AuthServerOptions::default())
            .await
            .unwrap();
        let (id, _) = server.client();
        let response = reqwest::Client::new()
            .post(server.token_url())
            .basic_auth(id, Some("wrong"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("grant_type", "client_credentials")]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert!(server.issued_access_tokens().is_empty());
    }
}
