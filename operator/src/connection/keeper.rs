//! The OAuth2 token keeper's shell: reads the operator-managed token
//! Secret of a Connection, asks [`super::token_plan`] what to do, talks to
//! the token endpoint ([`super::token`]) and writes the Secret back.
//!
//! The managed Secret (`names::oauth2_token_secret_name`) is owned by the
//! Connection (deleted with it), labelled as the operator's (so the
//! Connection controller's Secret watch ignores it) and holds
//! `accessToken` (the only key mounted in runner pods), `refreshToken`
//! (rotated ones replace it), and, while a console Connect is under way,
//! the PKCE verifier and a hash of the state. Times, scopes and the
//! source fingerprint are annotations. Writes replace the object at the
//! resourceVersion read, so two writers (the controller on the leader, the
//! run API on any replica) never both store a token: the loser reads the
//! winner's. In one process a lock per Connection keeps renewals single.
//!
//! Token values live in this module's locals and the Secret only; errors
//! and outcomes carry provider texts stripped of every value sent.

use super::token::{Grant, TokenAnswer, TokenError, TokenRequest};
use super::token_plan::{
    KeptToken, REFUSED_RETRY, TRANSIENT_RETRY, TokenOutcome, TokenRequestKind, TokenStep,
    UNKNOWN_LIFETIME_RECHECK, jitter_seed, plan_token, reason, renew_at, token_source, wait_until,
};
use crate::context::FIELD_MANAGER;
use crate::names;
use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use sluice_crds::Connection;
use sluice_crds::oauth2::{
    ACCESS_TOKEN_KEY, CLIENT_ID_KEY, CLIENT_SECRET_KEY, OAuth2Spec, OAuth2Status, REFRESH_TOKEN_KEY,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Annotation: when the access token was obtained (RFC 3339).
pub const OBTAINED_AT_ANNOTATION: &str = "sluice.dev/oauth2-obtained-at";
/// Annotation: when it expires (RFC 3339; absent when the provider did not say).
pub const EXPIRES_AT_ANNOTATION: &str = "sluice.dev/oauth2-expires-at";
/// Annotation: fingerprint of the credentials it came from.
pub const SOURCE_ANNOTATION: &str = "sluice.dev/oauth2-source";
/// Annotation: scopes granted, space separated.
pub const SCOPES_ANNOTATION: &str = "sluice.dev/oauth2-scopes";
/// Annotation on a Connection: when a runner's token was refused and could
/// not be renewed (wakes the controller, which then reports why).
pub const REFUSED_AT_ANNOTATION: &str = "sluice.dev/oauth2-refused-at";
/// Label naming the Connection a managed Secret belongs to.
pub const CONNECTION_LABEL: &str = "sluice.dev/connection";
/// Key of the hex SHA-256 of a pending Connect's `state`.
pub const PENDING_STATE_KEY: &str = "pendingStateSha256";
/// Key of a pending Connect's PKCE verifier.
pub const PENDING_VERIFIER_KEY: &str = "pendingVerifier";
/// Key of a pending Connect's redirect URI.
pub const PENDING_REDIRECT_KEY: &str = "pendingRedirectUri";
/// Key of when a pending Connect expires (RFC 3339).
pub const PENDING_EXPIRES_KEY: &str = "pendingExpiresAt";

/// How long a token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A failure of the keeper's own I/O (not the provider's answer).
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// Reading or writing the managed Secret failed.
    #[error("failed to read or write the OAuth2 token Secret: {0}")]
    Kube(#[from] kube::Error),
    /// The token endpoint failed or refused.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The Connection cannot be served as asked.
    #[error("{0}")]
    Unavailable(String),
}

/// The lock serialising renewals of one Connection in this process.
fn renewal_lock(namespace: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Arc::clone(locks.entry(format!("{namespace}/{name}")).or_default())
}

/// A client for token endpoints.
fn http_client() -> Result<reqwest::Client, KeeperError> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|error| {
            KeeperError::Unavailable(format!("failed to build an HTTP client: {error}"))
        })
}

/// What the managed Secret says, without its values.
pub fn observe_kept(secret: Option<&Secret>) -> KeptToken {
    let Some(secret) = secret else {
        return KeptToken::default();
    };
    let data = secret.data.as_ref();
    let has = |key: &str| {
        data.and_then(|data| data.get(key))
            .is_some_and(|value| !value.0.is_empty())
    };
    let annotations = secret.metadata.annotations.as_ref();
    let annotation = |key: &str| annotations.and_then(|map| map.get(key)).cloned();
    let time = |key: &str| {
        annotation(key)
            .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
            .map(|time| time.with_timezone(&Utc))
    };
    KeptToken {
        has_access_token: has(ACCESS_TOKEN_KEY),
        has_refresh_token: has(REFRESH_TOKEN_KEY),
        obtained_at: time(OBTAINED_AT_ANNOTATION),
        expires_at: time(EXPIRES_AT_ANNOTATION),
        source: annotation(SOURCE_ANNOTATION),
        scopes: annotation(SCOPES_ANNOTATION)
            .map(|text| text.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
    }
}

/// `status.oauth2` for what is kept.
fn status_of(
    connection: &Connection,
    kept: &KeptToken,
    spec: &OAuth2Spec,
    seed: u64,
) -> OAuth2Status {
    OAuth2Status {
        token_secret: kept
            .has_access_token
            .then(|| names::oauth2_token_secret_name(&connection.name_any())),
        expires_at: kept.expires_at,
        last_refresh_time: kept.obtained_at,
        next_refresh_time: match (kept.obtained_at, kept.expires_at) {
            (Some(obtained), Some(expires)) => Some(renew_at(
                obtained,
                expires,
                spec.refresh_before.as_ref(),
                seed,
            )),
            _ => None,
        },
        scopes: if kept.scopes.is_empty() {
            spec.scopes.clone()
        } else {
            kept.scopes.clone()
        },
    }
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> String {
    data.get(key)
        .map(|value| {
            String::from_utf8_lossy(value)
                .trim_end_matches('\n')
                .to_owned()
        })
        .unwrap_or_default()
}

/// The owner reference making the Connection own its token Secret.
fn owner_reference(connection: &Connection) -> OwnerReference {
    OwnerReference {
        api_version: Connection::api_version(&()).into_owned(),
        kind: Connection::kind(&()).into_owned(),
        name: connection.name_any(),
        uid: connection.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(false),
    }
}

/// The managed Secret of `connection`, if it exists.
pub async fn read_kept(
    client: &kube::Client,
    namespace: &str,
    connection: &str,
) -> Result<Option<Secret>, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    secrets
        .get_opt(&names::oauth2_token_secret_name(connection))
        .await
}

/// Writes `data` and `annotations` over the managed Secret `current` (None:
/// creates it): other keys and annotations are kept. Fails with 409 when
/// someone wrote it since it was read.
pub async fn write_kept(
    client: &kube::Client,
    namespace: &str,
    connection: &Connection,
    current: Option<&Secret>,
    data: BTreeMap<String, Option<String>>,
    annotations: BTreeMap<String, String>,
) -> Result<Secret, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secret = current.cloned().unwrap_or_else(|| Secret {
        metadata: ObjectMeta {
            name: Some(names::oauth2_token_secret_name(&connection.name_any())),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    });
    let labels = secret.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        FIELD_MANAGER.to_owned(),
    );
    labels.insert(
        CONNECTION_LABEL.to_owned(),
        names::fit_label(&connection.name_any()),
    );
    secret.metadata.owner_references = Some(vec![owner_reference(connection)]);
    secret
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .extend(annotations);
    let stored = secret.data.get_or_insert_with(BTreeMap::new);
    for (key, value) in data {
        match value {
            Some(value) => {
                stored.insert(key, ByteString(value.into_bytes()));
            }
            None => {
                stored.remove(&key);
            }
        }
    }
    secret.string_data = None;
    match current {
        Some(_) => {
            secrets
                .replace(&secret.name_any(), &PostParams::default(), &secret)
                .await
        }
        None => secrets.create(&PostParams::default(), &secret).await,
    }
}

/// The data and annotations to store for a token `answer` obtained at `now`.
fn token_writes(
    answer: &TokenAnswer,
    source: &str,
    requested_scopes: &[String],
    now: DateTime<Utc>,
) -> (BTreeMap<String, Option<String>>, BTreeMap<String, String>) {
    let mut data = BTreeMap::from([(
        ACCESS_TOKEN_KEY.to_owned(),
        Some(answer.access_token.clone()),
    )]);
    if let Some(refresh) = &answer.refresh_token {
        data.insert(REFRESH_TOKEN_KEY.to_owned(), Some(refresh.clone()));
    }
    let scopes = answer
        .scopes
        .clone()
        .unwrap_or_else(|| requested_scopes.to_vec())
        .join(" ");
    let mut annotations = BTreeMap::from([
        (OBTAINED_AT_ANNOTATION.to_owned(), now.to_rfc3339()),
        (SOURCE_ANNOTATION.to_owned(), source.to_owned()),
        (SCOPES_ANNOTATION.to_owned(), scopes),
    ]);
    annotations.insert(
        EXPIRES_AT_ANNOTATION.to_owned(),
        answer
            .expires_at
            .map(|at| at.to_rfc3339())
            .unwrap_or_default(),
    );
    (data, annotations)
}

/// The values a token request of `kind` sends, read from the user's
/// Secret and the kept one.
struct RequestValues {
    client_id: String,
    client_secret: String,
    refresh_token: String,
}

impl RequestValues {
    fn read(
        user: &BTreeMap<String, Vec<u8>>,
        kept: Option<&Secret>,
        kind: TokenRequestKind,
    ) -> RequestValues {
        RequestValues {
            client_id: text(user, CLIENT_ID_KEY),
            client_secret: text(user, CLIENT_SECRET_KEY),
            refresh_token: match kind {
                TokenRequestKind::ClientCredentials => String::new(),
                TokenRequestKind::UserRefreshToken => text(user, REFRESH_TOKEN_KEY),
                TokenRequestKind::KeptRefreshToken => kept
                    .and_then(|secret| secret.data.as_ref()?.get(REFRESH_TOKEN_KEY))
                    .map(|value| String::from_utf8_lossy(&value.0).into_owned())
                    .unwrap_or_default(),
            },
        }
    }

    fn request<'a>(
        &'a self,
        spec: &'a OAuth2Spec,
        kind: TokenRequestKind,
    ) -> Result<TokenRequest<'a>, KeeperError> {
        let token_url = spec.effective_token_url().ok_or_else(|| {
            KeeperError::Unavailable(
                "spec.oauth2 has no token endpoint: set provider or tokenUrl".to_owned(),
            )
        })?;
        Ok(TokenRequest {
            token_url,
            client_id: &self.client_id,
            client_secret: &self.client_secret,
            client_auth: spec.effective_client_auth(),
            scopes: &spec.scopes,
            grant: match kind {
                TokenRequestKind::ClientCredentials => Grant::ClientCredentials,
                _ => Grant::RefreshToken(&self.refresh_token),
            },
        })
    }
}

/// One pass of the keeper for `connection` (which has `spec.oauth2`), whose
/// user Secret holds `user`: obtains or renews the token when due and says
/// what the `Authorized` condition and `status.oauth2` are now.
pub async fn keep(
    client: &kube::Client,
    namespace: &str,
    connection: &Connection,
    user: &BTreeMap<String, Vec<u8>>,
    now: DateTime<Utc>,
) -> TokenOutcome {
    let Some(spec) = &connection.spec.oauth2 else {
        return TokenOutcome {
            authorized: false,
            reason: reason::INVALID_CONFIG,
            message: "spec.oauth2 is not set".to_owned(),
            status: OAuth2Status::default(),
            requeue_after: REFUSED_RETRY,
        };
    };
    let name = connection.name_any();
    let seed = jitter_seed(&connection.uid().unwrap_or_default());
    let lock = renewal_lock(namespace, &name);
    let _guard = lock.lock().await;
    let current = match read_kept(client, namespace, &name).await {
        Ok(current) => current,
        Err(error) => {
            return TokenOutcome {
                authorized: false,
                reason: reason::REFRESH_FAILED,
                message: format!("failed to read the token Secret: {error}"),
                status: OAuth2Status::default(),
                requeue_after: TRANSIENT_RETRY,
            };
        }
    };
    let kept = observe_kept(current.as_ref());
    let source = source_of(spec, user);
    match plan_token(spec, &kept, &source, now, seed) {
        TokenStep::Keep(renewal) => TokenOutcome {
            authorized: true,
            reason: reason::TOKEN_ISSUED,
            message: describe_token(&kept, &name),
            status: status_of(connection, &kept, spec, seed),
            requeue_after: renewal
                .map(|at| wait_until(at, now))
                .unwrap_or(UNKNOWN_LIFETIME_RECHECK),
        },
        TokenStep::AwaitAuthorization => TokenOutcome {
            authorized: false,
            reason: reason::AUTHORIZATION_REQUIRED,
            message: format!(
                "connection {name} uses the AuthorizationCode grant and has not been connected (or its client changed): open the Connections page of the console and click Connect"
            ),
            status: OAuth2Status::default(),
            requeue_after: REFUSED_RETRY,
        },
        TokenStep::Obtain(kind) => {
            match obtain(
                client,
                namespace,
                connection,
                spec,
                user,
                current.as_ref(),
                kind,
                &source,
                now,
            )
            .await
            {
                Ok(stored) => {
                    let kept = observe_kept(Some(&stored));
                    let renewal = status_of(connection, &kept, spec, seed).next_refresh_time;
                    TokenOutcome {
                        authorized: true,
                        reason: reason::TOKEN_ISSUED,
                        message: describe_token(&kept, &name),
                        status: status_of(connection, &kept, spec, seed),
                        requeue_after: renewal
                            .map(|at| wait_until(at, now))
                            .unwrap_or(UNKNOWN_LIFETIME_RECHECK),
                    }
                }
                Err(error) => {
                    let requeue_after = match &error {
                        KeeperError::Token(TokenError::Refused(_)) => REFUSED_RETRY,
                        _ => TRANSIENT_RETRY,
                    };
                    let still = match kept.expires_at {
                        Some(expires) if kept.has_access_token && expires > now => {
                            format!(" (the current token expires at {})", expires.to_rfc3339())
                        }
                        _ => String::new(),
                    };
                    TokenOutcome {
                        authorized: false,
                        reason: reason::REFRESH_FAILED,
                        message: format!(
                            "failed to obtain an access token for connection {name}{still}: {error}{}",
                            fix_hint(spec, kind, &error)
                        ),
                        status: status_of(connection, &kept, spec, seed),
                        requeue_after,
                    }
                }
            }
        }
    }
}

fn fix_hint(spec: &OAuth2Spec, kind: TokenRequestKind, error: &KeeperError) -> String {
    if !matches!(error, KeeperError::Token(TokenError::Refused(_))) {
        return String::new();
    }
    match (kind, spec.grant) {
        (TokenRequestKind::ClientCredentials, _) => {
            "; check the Secret's clientId and clientSecret and spec.oauth2.scopes".to_owned()
        }
        (_, sluice_crds::oauth2::OAuth2Grant::AuthorizationCode) => {
            "; the refresh token is no longer accepted: click Connect in the console again".to_owned()
        }
        _ => "; the refresh token is no longer accepted: put a new one in the Secret's refreshToken key".to_owned(),
    }
}

fn describe_token(kept: &KeptToken, name: &str) -> String {
    match kept.expires_at {
        Some(expires) => format!(
            "connection {name} holds an access token valid until {}",
            expires.to_rfc3339()
        ),
        None => format!("connection {name} holds an access token (the provider gave no expiry)"),
    }
}

/// The fingerprint of the credentials in the user's Secret.
pub fn source_of(spec: &OAuth2Spec, user: &BTreeMap<String, Vec<u8>>) -> String {
    token_source(
        spec,
        user.get(CLIENT_ID_KEY)
            .map(Vec::as_slice)
            .unwrap_or_default(),
        user.get(CLIENT_SECRET_KEY)
            .map(Vec::as_slice)
            .unwrap_or_default(),
        user.get(REFRESH_TOKEN_KEY).map(Vec::as_slice),
    )
}

#[allow(clippy::too_many_arguments)]
async fn obtain(
    client: &kube::Client,
    namespace: &str,
    connection: &Connection,
    spec: &OAuth2Spec,
    user: &BTreeMap<String, Vec<u8>>,
    current: Option<&Secret>,
    kind: TokenRequestKind,
    source: &str,
    now: DateTime<Utc>,
) -> Result<Secret, KeeperError> {
    let values = RequestValues::read(user, current, kind);
    let answer = values
        .request(spec, kind)?
        .send(&http_client()?, now)
        .await?;
    let (mut data, annotations) = token_writes(&answer, source, &spec.scopes, now);
    if kind == TokenRequestKind::UserRefreshToken && answer.refresh_token.is_none() {
        // The provider does not rotate: keep using the user's token.
        data.insert(
            REFRESH_TOKEN_KEY.to_owned(),
            Some(text(user, REFRESH_TOKEN_KEY)),
        );
    }
    if kind == TokenRequestKind::ClientCredentials {
        data.insert(REFRESH_TOKEN_KEY.to_owned(), None);
    }
    Ok(write_kept(client, namespace, connection, current, data, annotations).await?)
}

/// The current access token of `connection`, renewed first when it is the
/// one a runner was refused with (`rejected_sha256`, hex SHA-256). Serves
/// the run API's 401 path: many nodes refused at once cause one renewal.
pub async fn current_or_renewed(
    client: &kube::Client,
    namespace: &str,
    connection: &Connection,
    user: &BTreeMap<String, Vec<u8>>,
    rejected_sha256: &str,
    now: DateTime<Utc>,
) -> Result<(String, Option<DateTime<Utc>>), KeeperError> {
    use sha2::{Digest, Sha256};
    let name = connection.name_any();
    let spec =
        connection.spec.oauth2.as_ref().ok_or_else(|| {
            KeeperError::Unavailable(format!("connection {name} has no spec.oauth2"))
        })?;
    let lock = renewal_lock(namespace, &name);
    let _guard = lock.lock().await;
    let current = read_kept(client, namespace, &name).await?;
    let kept = observe_kept(current.as_ref());
    let token = current
        .as_ref()
        .and_then(|secret| secret.data.as_ref()?.get(ACCESS_TOKEN_KEY))
        .map(|value| String::from_utf8_lossy(&value.0).into_owned())
        .unwrap_or_default();
    if !token.is_empty() && hex::encode(Sha256::digest(token.as_bytes())) != rejected_sha256 {
        return Ok((token, kept.expires_at));
    }
    let source = source_of(spec, user);
    let kind = match plan_token(
        spec,
        &KeptToken {
            has_access_token: false,
            ..kept.clone()
        },
        &source,
        now,
        0,
    ) {
        TokenStep::Obtain(kind) => kind,
        _ => {
            return Err(KeeperError::Unavailable(format!(
                "connection {name} is not authorized: see its Authorized condition"
            )));
        }
    };
    match obtain(
        client,
        namespace,
        connection,
        spec,
        user,
        current.as_ref(),
        kind,
        &source,
        now,
    )
    .await
    {
        Ok(stored) => {
            let token = stored
                .data
                .as_ref()
                .and_then(|data| data.get(ACCESS_TOKEN_KEY))
                .map(|value| String::from_utf8_lossy(&value.0).into_owned())
                .unwrap_or_default();
            Ok((token, observe_kept(Some(&stored)).expires_at))
        }
        Err(KeeperError::Kube(kube::Error::Api(status))) if status.code == 409 => {
            // Another replica renewed first: its token is the current one.
            let current = read_kept(client, namespace, &name).await?;
            let token = current
                .as_ref()
                .and_then(|secret| secret.data.as_ref()?.get(ACCESS_TOKEN_KEY))
                .map(|value| String::from_utf8_lossy(&value.0).into_owned())
                .unwrap_or_default();
            Ok((token, observe_kept(current.as_ref()).expires_at))
        }
        Err(error) => {
            // The API refused the current token and no new one could be had:
            // drop the refused token and wake the controller, so the
            // Connection's conditions say why.
            let dropped = BTreeMap::from([(ACCESS_TOKEN_KEY.to_owned(), None)]);
            if let Err(write) = write_kept(
                client,
                namespace,
                connection,
                current.as_ref(),
                dropped,
                BTreeMap::new(),
            )
            .await
            {
                tracing::warn!(error = %write, connection = %name, "failed to drop a refused OAuth2 access token");
            }
            let connections: Api<Connection> = Api::namespaced(client.clone(), namespace);
            let patch = serde_json::json!({"metadata": {"annotations": {REFUSED_AT_ANNOTATION: now.to_rfc3339()}}});
            if let Err(patch_error) = connections
                .patch(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!(error = %patch_error, connection = %name, "failed to wake the Connection controller");
            }
            Err(error)
        }
    }
}

/// Exchanges an authorization `code` (with its PKCE `verifier` and the
/// `redirect_uri` it was issued for) and keeps the tokens; clears a pending
/// Connect.
#[allow(clippy::too_many_arguments)]
pub async fn exchange_code(
    client: &kube::Client,
    namespace: &str,
    connection: &Connection,
    user: &BTreeMap<String, Vec<u8>>,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
    now: DateTime<Utc>,
) -> Result<(), KeeperError> {
    let name = connection.name_any();
    let spec =
        connection.spec.oauth2.as_ref().ok_or_else(|| {
            KeeperError::Unavailable(format!("connection {name} has no spec.oauth2"))
        })?;
    let token_url = spec.effective_token_url().ok_or_else(|| {
        KeeperError::Unavailable(
            "spec.oauth2 has no token endpoint: set provider or tokenUrl".to_owned(),
        )
    })?;
    let client_id = text(user, CLIENT_ID_KEY);
    let client_secret = text(user, CLIENT_SECRET_KEY);
    let request = TokenRequest {
        token_url,
        client_id: &client_id,
        client_secret: &client_secret,
        client_auth: spec.effective_client_auth(),
        scopes: &spec.scopes,
        grant: Grant::AuthorizationCode {
            code,
            verifier,
            redirect_uri,
        },
    };
    let lock = renewal_lock(namespace, &name);
    let _guard = lock.lock().await;
    let answer = request.send(&http_client()?, now).await?;
    let current = read_kept(client, namespace, &name).await?;
    let (mut data, annotations) = token_writes(&answer, &source_of(spec, user), &spec.scopes, now);
    if answer.refresh_token.is_none() {
        data.insert(REFRESH_TOKEN_KEY.to_owned(), None);
    }
    for key in [
        PENDING_STATE_KEY,
        PENDING_VERIFIER_KEY,
        PENDING_REDIRECT_KEY,
        PENDING_EXPIRES_KEY,
    ] {
        data.insert(key.to_owned(), None);
    }
    write_kept(
        client,
        namespace,
        connection,
        current.as_ref(),
        data,
        annotations,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
#[path = "keeper_tests.rs"]
mod tests;
