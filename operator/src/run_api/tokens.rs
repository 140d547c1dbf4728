//! The run API's OAuth2 path: an `http` node whose access token was
//! refused (401) asks for the current one
//! (`POST …/connections/{connection}/token`), and the operator renews it
//! first when the refused token is still the current one
//! ([`crate::connection::keeper::current_or_renewed`]). Only Connections
//! the run's snapshot names, and only OAuth2 ones, are served; the answer
//! goes to the run's own authenticated runner and is never logged.

use super::server::{Refusal, authorised_run, read_snapshot};
use crate::connection::keeper::{KeeperError, current_or_renewed};
use crate::connection::token::TokenError;
use crate::context::Context;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use kube::api::Api;
use sluice_crds::Connection;
use sluice_crds::run_api::{TokenRefreshAnswer, TokenRefreshRequest};
use std::sync::Arc;

/// Answers the current (or renewed) access token of `connection`.
pub(super) async fn refresh(
    State(context): State<Arc<Context>>,
    Path((namespace, name, connection_name)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(request): Json<TokenRefreshRequest>,
) -> Result<Json<TokenRefreshAnswer>, Refusal> {
    authorised_run(&context, &headers, &namespace, &name).await?;
    let snapshot = read_snapshot(&context, &namespace, &name).await?;
    if !snapshot.connections.contains_key(&connection_name) {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("run {namespace}/{name} does not use connection {connection_name}"),
        ));
    }
    let connections: Api<Connection> = Api::namespaced(context.client.clone(), &namespace);
    let connection = connections
        .get_opt(&connection_name)
        .await?
        .ok_or_else(|| {
            Refusal(
                StatusCode::NOT_FOUND,
                format!("connection {namespace}/{connection_name} not found"),
            )
        })?;
    if connection.spec.oauth2.is_none() {
        return Err(Refusal(
            StatusCode::CONFLICT,
            format!(
                "connection {connection_name} has no spec.oauth2: its credentials are not renewed by the operator"
            ),
        ));
    }
    let user =
        crate::connection::controller::observe_secret(&connection, &context.client, &namespace)
            .await?
            .unwrap_or_default();
    let (access_token, expires_at) = current_or_renewed(
        &context.client,
        &namespace,
        &connection,
        &user,
        &request.rejected_token_sha256,
        chrono::Utc::now(),
    )
    .await
    .map_err(|error| {
        let status = match &error {
            KeeperError::Token(TokenError::Refused(_)) | KeeperError::Unavailable(_) => {
                StatusCode::BAD_GATEWAY
            }
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        Refusal(status, error.to_string())
    })?;
    if access_token.is_empty() {
        return Err(Refusal(
            StatusCode::BAD_GATEWAY,
            format!(
                "connection {connection_name} has no access token: see its Authorized condition"
            ),
        ));
    }
    Ok(Json(TokenRefreshAnswer {
        access_token,
        expires_at,
    }))
}
