//! The console's HTTP routes. Every route but sign-in needs a session
//! cookie; every non-GET request also needs the session's CSRF token in
//! `X-CSRF-Token`. Reads are checked with SubjectAccessReview per
//! namespace and verb.
//!
//! - `POST /api/session` `{"token": "<Kubernetes bearer token>"}`: signs in
//! - `GET /api/session`: who is signed in, and the CSRF token
//! - `DELETE /api/session`: signs out
//! - `GET /api/namespaces`: the namespaces whose runs the user may list
//! - `GET /api/runs`, `GET /api/runs/{namespace}/{name}`: run history
//!   (see [`super::reads`])
//! - workflows, schedules and actions as the user: see [`super::actions`]
//! - `GET /api/connections?namespace=`: see [`super::connections`]
//! - `POST /api/connections/{namespace}/{name}/connect` and
//!   `GET /oauth2/callback`: OAuth2 Connect (see [`super::oauth2`]; the
//!   callback needs no session, its `state` is checked instead)
//! - `GET /api/audit?cursor=`: see [`super::audit`]
//! - `GET /api/events`: live updates of a run (see [`super::live`])
//! - `GET /`, `GET /assets/{name}`: the pages (see [`super::assets`])

use super::cookie::{
    CSRF_HEADER, build_expired_cookie, build_session_cookie, csrf_matches, csrf_token,
    new_session_token, session_from_cookie_header,
};
use super::identity::{Access, IdentityError, KubeAuthority};
use super::session::{self, Session};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What every console request shares.
pub struct ConsoleState {
    pub pool: PgPool,
    pub authority: KubeAuthority,
    pub session_lifetime: Duration,
    /// The OAuth2 redirect URI (`--oauth2-redirect-url`), when set.
    pub oauth2_redirect_url: Option<String>,
}

/// The console's routes (serve them with `ConnectInfo<SocketAddr>`).
pub fn router(state: Arc<ConsoleState>) -> Router {
    Router::new()
        .route("/", get(super::assets::index))
        .route("/assets/{name}", get(super::assets::asset))
        .route("/api/session", post(sign_in).get(who_am_i).delete(sign_out))
        .route("/api/namespaces", get(namespaces))
        .route("/api/runs", get(super::reads::list_runs))
        .route("/api/runs/{namespace}/{name}", get(super::reads::show_run))
        .route(
            "/api/runs/{namespace}/{name}/cancel",
            post(super::actions::cancel_run),
        )
        .route(
            "/api/runs/{namespace}/{name}/resume",
            post(super::actions::resume_run),
        )
        .route("/api/workflows", get(super::actions::list_workflows))
        .route(
            "/api/workflows/{namespace}/{name}",
            get(super::actions::show_workflow),
        )
        .route(
            "/api/workflows/{namespace}/{name}/runs",
            post(super::actions::run_now),
        )
        .route("/api/events", get(super::live::events))
        .route("/api/audit", get(super::audit::list))
        .route(
            "/api/workflows/{namespace}/{name}/revisions",
            get(super::revisions::revisions),
        )
        .route(
            "/api/connections",
            get(super::connections::list_connections),
        )
        .route(
            "/api/connections/{namespace}/{name}/connect",
            post(super::oauth2::connect),
        )
        .route(
            crate::connection::authorize::CALLBACK_PATH,
            get(super::oauth2::callback),
        )
        .route("/api/schedules", get(super::actions::list_schedules))
        .route(
            "/api/schedules/{namespace}/{name}/suspend",
            post(super::actions::suspend_schedule),
        )
        .with_state(state)
}

/// Serves the console on `address` until `stopping` turns true.
pub async fn serve(
    address: SocketAddr,
    state: Arc<ConsoleState>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("failed to listen on {address} for the console"))?;
    tracing::info!(%address, "console listening");
    let mut stopping = stopping;
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    })
    .await
    .context("console server failed")
}

/// A refused or failed console request.
#[derive(Debug)]
pub struct ConsoleError(pub StatusCode, pub String);

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

impl From<sqlx::Error> for ConsoleError {
    fn from(error: sqlx::Error) -> Self {
        tracing::warn!(%error, "console failed to reach the database");
        ConsoleError(
            StatusCode::SERVICE_UNAVAILABLE,
            "failed to reach the history database: try again".to_owned(),
        )
    }
}

impl From<IdentityError> for ConsoleError {
    fn from(error: IdentityError) -> Self {
        tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "console failed to reach the API server");
        ConsoleError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{error}: try again"),
        )
    }
}

fn unauthorised() -> ConsoleError {
    ConsoleError(
        StatusCode::UNAUTHORIZED,
        "not signed in: POST /api/session with a Kubernetes bearer token".to_owned(),
    )
}

/// A request of a signed-in user (CSRF already checked for non-GET).
pub struct SignedIn {
    pub session: Session,
    session_token: String,
}

impl FromRequestParts<Arc<ConsoleState>> for SignedIn {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ConsoleState>,
    ) -> Result<Self, Self::Rejection> {
        let session_token = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(session_from_cookie_header)
            .map(str::to_owned)
            .ok_or_else(unauthorised)?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let presented = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            if !csrf_matches(&session_token, presented) {
                return Err(ConsoleError(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token header: send the csrfToken of GET /api/session"
                        .to_owned(),
                ));
            }
        }
        let session = session::find(&state.pool, &session_token)
            .await?
            .ok_or_else(unauthorised)?;
        Ok(SignedIn {
            session,
            session_token,
        })
    }
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// The signed-in user, as the console's pages see it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    username: String,
    groups: Vec<String>,
    csrf_token: String,
    expires_at: chrono::DateTime<chrono::Utc>,
}

fn session_view(session: &Session, session_token: &str) -> SessionView {
    SessionView {
        username: session.identity.username.clone(),
        groups: session.identity.groups.clone(),
        csrf_token: csrf_token(session_token),
        expires_at: session.expires_at,
    }
}

async fn sign_in(
    State(state): State<Arc<ConsoleState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(request): Json<SignIn>,
) -> Result<Response, ConsoleError> {
    let token = request.token.trim();
    if token.is_empty() {
        return Err(ConsoleError(
            StatusCode::BAD_REQUEST,
            "the token is empty: paste a Kubernetes bearer token".to_owned(),
        ));
    }
    let identity = state.authority.review_token(token).await?.ok_or_else(|| {
        ConsoleError(
            StatusCode::UNAUTHORIZED,
            "the Kubernetes API server did not accept this token".to_owned(),
        )
    })?;
    let client = session::Client {
        ip_address: Some(peer.ip()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    };
    let session_token = new_session_token();
    let session = session::create(
        &state.pool,
        &session_token,
        &identity,
        &client,
        state.session_lifetime,
    )
    .await?;
    tracing::info!(user = %identity.username, "console sign-in");
    Ok((
        StatusCode::CREATED,
        [(
            header::SET_COOKIE,
            build_session_cookie(&session_token, state.session_lifetime),
        )],
        Json(session_view(&session, &session_token)),
    )
        .into_response())
}

async fn who_am_i(signed_in: SignedIn) -> Json<SessionView> {
    Json(session_view(&signed_in.session, &signed_in.session_token))
}

async fn sign_out(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
) -> Result<Response, ConsoleError> {
    session::end(&state.pool, &signed_in.session_token).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, build_expired_cookie())],
    )
        .into_response())
}

/// Namespaces with mirrored history whose runs the user may list.
pub async fn readable_namespaces(
    state: &ConsoleState,
    signed_in: &SignedIn,
) -> Result<Vec<String>, ConsoleError> {
    let known: Vec<String> =
        sqlx::query_scalar("SELECT name FROM workspaces WHERE is_active ORDER BY name")
            .fetch_all(&state.pool)
            .await?;
    // One review per namespace, a few at a time.
    let identity = &signed_in.session.identity;
    let answers: Vec<Result<(String, bool), IdentityError>> =
        futures::stream::iter(known.into_iter().map(|namespace| async move {
            let access = Access {
                namespace: &namespace,
                verb: "list",
                resource: "workflowruns",
            };
            let allowed = state.authority.allowed(identity, &access).await?;
            Ok((namespace, allowed))
        }))
        .buffered(8)
        .collect()
        .await;
    let mut readable = Vec::new();
    for answer in answers {
        let (namespace, allowed) = answer?;
        if allowed {
            readable.push(namespace);
        }
    }
    Ok(readable)
}

async fn namespaces(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
) -> Result<Json<serde_json::Value>, ConsoleError> {
    let namespaces = readable_namespaces(&state, &signed_in).await?;
    Ok(Json(serde_json::json!({ "namespaces": namespaces })))
}
