//! Console sessions as rows of `user_sessions`, each tied to a `users` row
//! for the Kubernetes user name (made on first sign-in; it has no
//! password and cannot log in any other way). The row stores a hash of
//! the session token and the identity TokenReview gave, which every
//! SubjectAccessReview of the session uses.

use super::cookie::stored_token;
use super::identity::Identity;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;

/// The `users` row id of a Kubernetes user name: the mirror's, so a
/// creator, a member and a signed-in user are one row.
pub use crate::mirror::users::user_id;

/// An open session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub identity: Identity,
    pub expires_at: DateTime<Utc>,
}

/// Where the request came from, kept with the session.
#[derive(Clone, Debug, Default)]
pub struct Client {
    pub ip_address: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
}

/// Opens a session for `identity`, valid for `lifetime`.
pub async fn create(
    pool: &PgPool,
    session_token: &str,
    identity: &Identity,
    client: &Client,
    lifetime: Duration,
) -> Result<Session, sqlx::Error> {
    let user = user_id(&identity.username);
    let expires_at = Utc::now()
        + chrono::Duration::from_std(lifetime).unwrap_or_else(|_| chrono::Duration::hours(8));
    let mut transaction = pool.begin().await?;
    crate::mirror::users::ensure_users(&mut transaction, &[&identity.username])
        .await
        .map_err(|error| error.source)?;
    sqlx::query("UPDATE users SET last_login_at = CURRENT_TIMESTAMP WHERE id = $1")
        .bind(user)
        .execute(&mut *transaction)
        .await?;
    sqlx::query(
        "INSERT INTO user_sessions (user_id, token, ip_address, user_agent, expires_at, kubernetes_identity)
         VALUES ($1, $2, $3::inet, $4, $5, $6)",
    )
    .bind(user)
    .bind(stored_token(session_token))
    .bind(client.ip_address.map(|address| address.to_string()))
    .bind(client.user_agent.as_deref().map(|agent| truncate(agent, 1024)))
    .bind(expires_at)
    .bind(sqlx::types::Json(identity))
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(Session {
        identity: identity.clone(),
        expires_at,
    })
}

/// The active, unexpired session of `session_token`.
pub async fn find(pool: &PgPool, session_token: &str) -> Result<Option<Session>, sqlx::Error> {
    let row: Option<(sqlx::types::Json<Identity>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT kubernetes_identity, expires_at FROM user_sessions
         WHERE token = $1 AND is_active AND expires_at > CURRENT_TIMESTAMP",
    )
    .bind(stored_token(session_token))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(identity, expires_at)| Session {
        identity: identity.0,
        expires_at,
    }))
}

/// Ends the session of `session_token`; true when one was open.
pub async fn end(pool: &PgPool, session_token: &str) -> Result<bool, sqlx::Error> {
    let ended = sqlx::query(
        "UPDATE user_sessions SET is_active = FALSE, updated_at = CURRENT_TIMESTAMP
         WHERE token = $1 AND is_active",
    )
    .bind(stored_token(session_token))
    .execute(pool)
    .await?;
    Ok(ended.rows_affected() > 0)
}

fn truncate(text: &str, limit: usize) -> String {
    text.chars().take(limit).collect()
}
