//! OAuth2 Connect in the console (the AuthorizationCode grant).
//!
//! - `POST /api/connections/{namespace}/{name}/connect`: a signed-in user
//!   who may `update` Connections in the namespace (SubjectAccessReview)
//!   and can read this one (read as the user) starts a Connect; the answer
//!   is `{"authorizationUrl": …}`, the provider's page with `state` and the
//!   PKCE challenge ([`crate::connection::authorize::begin`]). The page
//!   sends the browser there.
//! - `GET /oauth2/callback?code=&state=`: where the provider sends the
//!   browser back. It needs no session: the `state` is checked against the
//!   pending one kept for the Connection (a wrong, used or expired state is
//!   refused with 400 and nothing is exchanged), then the code is
//!   exchanged with the verifier and the Connection is annotated so its
//!   controller takes the new token at once.
//!
//! Answers carry no token; the callback's page says which Connection was
//! connected, or why not.

use super::actions::{build_path, check_name, send_as};
use super::identity::Access;
use super::server::{ConsoleError, ConsoleState, SignedIn};
use crate::connection::authorize::{AuthorizeError, CALLBACK_PATH, begin, complete};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use kube::api::{Api, Patch, PatchParams};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_crds::Connection;
use std::sync::Arc;

/// Annotation set on a Connection when a Connect finished, to wake its controller.
pub const CONNECTED_AT_ANNOTATION: &str = "sluice.dev/oauth2-connected-at";

/// The redirect URI: the configured one, else built from the request.
pub fn build_redirect_uri(configured: Option<&str>, headers: &HeaderMap) -> Option<String> {
    if let Some(configured) = configured {
        return Some(configured.to_owned());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .filter(|scheme| matches!(*scheme, "http" | "https"))
        .unwrap_or("http");
    Some(format!("{scheme}://{host}{CALLBACK_PATH}"))
}

/// `POST /api/connections/{namespace}/{name}/connect`.
pub async fn connect(
    State(state): State<Arc<ConsoleState>>,
    signed_in: SignedIn,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ConsoleError> {
    check_name("namespace", &namespace)?;
    check_name("connection", &name)?;
    let access = Access {
        namespace: &namespace,
        verb: "update",
        resource: "connections",
    };
    if !state
        .authority
        .allowed(&signed_in.session.identity, &access)
        .await?
    {
        return Err(ConsoleError(
            StatusCode::FORBIDDEN,
            format!(
                "you may not update connections in namespace {namespace}: ask for the sluice-edit role there"
            ),
        ));
    }
    // Read as the user: their RBAC decides whether the Connection exists for them.
    let object = send_as(
        &state,
        &signed_in,
        Method::GET,
        &build_path(&namespace, "connections", Some(&name)),
        None,
    )
    .await?;
    let connection: Connection = serde_json::from_value(object).map_err(|error| {
        ConsoleError(
            StatusCode::BAD_GATEWAY,
            format!("failed to read connection {name}: {error}"),
        )
    })?;
    let redirect_uri = build_redirect_uri(state.oauth2_redirect_url.as_deref(), &headers)
        .ok_or_else(|| {
            ConsoleError(
                StatusCode::BAD_REQUEST,
                "the request has no Host header: set --oauth2-redirect-url".to_owned(),
            )
        })?;
    let client = state.authority.client();
    let user = crate::connection::controller::observe_secret(&connection, client, &namespace)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "console failed to read a connection's Secret");
            ConsoleError(
                StatusCode::SERVICE_UNAVAILABLE,
                "failed to reach the Kubernetes API: try again".to_owned(),
            )
        })?
        .unwrap_or_default();
    let url = begin(
        client,
        &connection,
        &user,
        &redirect_uri,
        chrono::Utc::now(),
    )
    .await
    .map_err(|error| match error {
        AuthorizeError::NotApplicable(message) => ConsoleError(StatusCode::BAD_REQUEST, message),
        other => ConsoleError(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    })?;
    Ok(Json(
        json!({ "authorizationUrl": url, "redirectUri": redirect_uri }),
    ))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head><body><h1>{}</h1><p>{}</p><p><a href=\"/#/connections\">Back to Connections</a></p></body></html>",
            escape(title),
            escape(title),
            escape(text)
        )),
    )
        .into_response()
}

/// `GET /oauth2/callback?code=&state=`.
pub async fn callback(
    State(state): State<Arc<ConsoleState>>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    if let Some(error) = &query.error {
        let error: String = error.chars().take(100).collect();
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("the provider answered {error}: start again with Connect"),
        );
    }
    let (Some(code), Some(oauth_state)) = (&query.code, &query.state) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "the callback needs code and state: start again with Connect in the console",
        );
    };
    let client = state.authority.client();
    match complete(client, oauth_state, code, chrono::Utc::now()).await {
        Ok((namespace, name)) => {
            let connections: Api<Connection> = Api::namespaced(client.clone(), &namespace);
            let patch = json!({"metadata": {"annotations": {CONNECTED_AT_ANNOTATION: chrono::Utc::now().to_rfc3339()}}});
            if let Err(error) = connections
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(%error, "failed to annotate a connected Connection");
            }
            page(
                StatusCode::OK,
                "Connected",
                &format!(
                    "connection {namespace}/{name} is connected; the operator keeps its token fresh"
                ),
            )
        }
        Err(error @ AuthorizeError::BadState(_)) => {
            tracing::warn!(%error, "refused an OAuth2 callback");
            page(StatusCode::BAD_REQUEST, "Not connected", &error.to_string())
        }
        Err(error @ AuthorizeError::Keeper(_)) => {
            page(StatusCode::BAD_GATEWAY, "Not connected", &error.to_string())
        }
        Err(error) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not connected",
            &error.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_redirect_uri_is_the_configured_one_or_the_requests() {
        let mut headers = HeaderMap::new();
        assert_eq!(build_redirect_uri(None, &headers), None);
        headers.insert(
            header::HOST,
            HeaderValue::from_static("console.example:8083"),
        );
        assert_eq!(
            build_redirect_uri(None, &headers).as_deref(),
            Some("http://console.example:8083/oauth2/callback")
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(
            build_redirect_uri(None, &headers).as_deref(),
            Some("https://console.example:8083/oauth2/callback")
        );
        assert_eq!(
            build_redirect_uri(Some("https://sluice.example/oauth2/callback"), &headers).as_deref(),
            Some("https://sluice.example/oauth2/callback")
        );
    }
}
