//! Authentication of HTTP requests through an `http` Connection, shared by
//! the `http` node and `notify` webhooks: bearer, basic, API key (header or
//! query), OAuth2 client credentials with a process-wide token cache
//! (`config.auth: oauth2`), and OAuth2 kept by the operator
//! (`spec.oauth2`): the access token is the mounted file `accessToken`, and
//! a 401 asks the run API for a fresh one once, then retries once.
//!
//! Credentials only ever go into the outgoing request; they are added to
//! the caller's [`Redactor`] so no error or output can echo them, and no
//! type here prints them in `Debug`.

use super::{transport_error, url_for_display};
use crate::connections::{Redactor, ResolvedConnection, percent_encode};
use crate::node::{NodeContext, NodeError, RunApiAccess};
use reqwest::header::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use sluice_crds::oauth2::ACCESS_TOKEN_KEY;
use sluice_crds::run_api::{RUN_API_PREFIX, TokenRefreshAnswer, TokenRefreshRequest};
use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How a request is authenticated.
pub(crate) enum Auth {
    /// No credentials.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
    /// An API key in a header or a query parameter.
    ApiKey { key: String, place: ApiKeyPlace },
    /// OAuth2 client credentials: a bearer token from `token_url`.
    OAuth2(OAuth2),
    /// OAuth2 kept by the operator: the mounted access token of `connection`.
    Managed { connection: String, token: String },
}

/// Where an API key goes.
pub(crate) enum ApiKeyPlace {
    Header(HeaderName),
    Query(String),
}

/// An OAuth2 client-credentials grant.
pub(crate) struct OAuth2 {
    token_url: reqwest::Url,
    scopes: String,
    client_id: String,
    client_secret: String,
    credentials_in_body: bool,
    cache_key: TokenKey,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self {
            Auth::None => "none",
            Auth::Bearer(_) => "bearer",
            Auth::Basic { .. } => "basic",
            Auth::ApiKey { .. } => "apiKey",
            Auth::OAuth2(_) => "oauth2",
            Auth::Managed { .. } => "oauth2 (kept by the operator)",
        };
        f.debug_tuple("Auth").field(&scheme).finish()
    }
}

impl Auth {
    /// The scheme `config.auth` of `connection` names, with its secrets;
    /// every secret read is added to `redactor`.
    pub(crate) fn from_connection(
        connection: &ResolvedConnection<'_>,
        redactor: &mut Redactor,
    ) -> Result<Auth, NodeError> {
        let name = connection.name;
        if connection.spec.oauth2.is_some() {
            let token = connection.optional_secret(ACCESS_TOKEN_KEY).filter(|token| !token.is_empty()).ok_or_else(|| {
                NodeError::retryable(format!(
                    "connection {name:?} has no OAuth2 access token yet: see its Authorized condition (kubectl describe connection {name})"
                ))
            })?;
            redactor.add(&token);
            return Ok(Auth::Managed {
                connection: name.to_owned(),
                token,
            });
        }
        let auth = match connection.config("auth").unwrap_or("none") {
            "none" | "" => Auth::None,
            "bearer" => Auth::Bearer(connection.secret("token")?),
            "basic" => Auth::Basic {
                username: connection.secret("username")?,
                password: connection.secret("password")?,
            },
            "apiKey" => {
                let key = connection.secret("apiKey")?;
                let place = match (
                    connection.config("apiKeyQuery"),
                    connection.config("apiKeyHeader"),
                ) {
                    (Some(param), None) => ApiKeyPlace::Query(param.to_owned()),
                    (_, header) => {
                        let header = header.unwrap_or("X-API-Key");
                        ApiKeyPlace::Header(HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                            NodeError::permanent(format!(
                                "connection {name:?} has an invalid config.apiKeyHeader {header:?}: use a header name such as X-API-Key"
                            ))
                        })?)
                    }
                };
                Auth::ApiKey { key, place }
            }
            "oauth2" => {
                let token_url = connection.config("tokenUrl").ok_or_else(|| {
                    NodeError::permanent(format!(
                        "connection {name:?} uses auth oauth2 but has no config.tokenUrl: set it to the token endpoint"
                    ))
                })?;
                let token_url = reqwest::Url::parse(token_url).map_err(|e| {
                    NodeError::permanent(format!(
                        "connection {name:?} has an invalid config.tokenUrl: {e}"
                    ))
                })?;
                let scopes = connection
                    .config("scopes")
                    .unwrap_or_default()
                    .split([',', ' '])
                    .filter(|scope| !scope.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                let client_id = connection.secret("clientId")?;
                let client_secret = connection.secret("clientSecret")?;
                let cache_key =
                    TokenKey::new(name, &token_url, &scopes, &client_id, &client_secret);
                Auth::OAuth2(OAuth2 {
                    token_url,
                    scopes,
                    client_id,
                    client_secret,
                    credentials_in_body: connection.config("clientAuth") == Some("body"),
                    cache_key,
                })
            }
            other => {
                return Err(NodeError::permanent(format!(
                    "connection {name:?} has an unknown config.auth {other:?}: use none, bearer, basic, apiKey or oauth2"
                )));
            }
        };
        match &auth {
            Auth::None | Auth::Managed { .. } => {}
            Auth::Bearer(token) => redactor.add(token),
            Auth::Basic { username, password } => redactor.add_basic(username, password),
            Auth::ApiKey { key, .. } => redactor.add(key),
            Auth::OAuth2(oauth) => {
                redactor.add_basic(
                    &percent_encode(&oauth.client_id),
                    &percent_encode(&oauth.client_secret),
                );
                redactor.add_basic(&oauth.client_id, &oauth.client_secret);
            }
        }
        Ok(auth)
    }

    /// Adds an API key that travels in the query string to `url`.
    pub(crate) fn apply_to_url(&self, url: &mut reqwest::Url) {
        if let Auth::ApiKey {
            key,
            place: ApiKeyPlace::Query(param),
        } = self
        {
            url.query_pairs_mut().append_pair(param, key);
        }
    }

    /// Sends the request `build` makes, authenticated. With OAuth2, a token
    /// the server rejects (401) is refreshed once and the request repeated
    /// (for a token kept by the operator: through the run API, when there
    /// is one).
    pub(crate) async fn send(
        &self,
        context: &NodeContext,
        build: impl Fn() -> reqwest::RequestBuilder,
        redactor: &mut Redactor,
    ) -> Result<reqwest::Response, NodeError> {
        let token_client = &context.http;
        let request = build();
        let request = match self {
            Auth::None => request,
            Auth::Bearer(token) => request.header(reqwest::header::AUTHORIZATION, bearer(token)?),
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
            Auth::ApiKey {
                key,
                place: ApiKeyPlace::Header(header),
            } => request.header(header.clone(), sensitive(key)?),
            Auth::ApiKey { .. } => request,
            Auth::OAuth2(oauth) => {
                let token = oauth.token(token_client, false, redactor).await?;
                let response = send_request(
                    request.header(reqwest::header::AUTHORIZATION, bearer(&token.value)?),
                    redactor,
                )
                .await?;
                if response.status() != reqwest::StatusCode::UNAUTHORIZED || !token.from_cache {
                    return Ok(response);
                }
                let token = oauth.token(token_client, true, redactor).await?;
                build().header(reqwest::header::AUTHORIZATION, bearer(&token.value)?)
            }
            Auth::Managed { connection, token } => {
                let response = send_request(
                    request.header(reqwest::header::AUTHORIZATION, bearer(token)?),
                    redactor,
                )
                .await?;
                if response.status() != reqwest::StatusCode::UNAUTHORIZED {
                    return Ok(response);
                }
                let Some(access) = &context.run_api else {
                    return Ok(response);
                };
                let fresh = refresh_managed(context, access, connection, token).await?;
                redactor.add(&fresh);
                build().header(reqwest::header::AUTHORIZATION, bearer(&fresh)?)
            }
        };
        send_request(request, redactor).await
    }
}

/// Asks the operator's run API for a fresh access token of `connection`,
/// saying which one was refused.
async fn refresh_managed(
    context: &NodeContext,
    access: &RunApiAccess,
    connection: &str,
    rejected: &str,
) -> Result<String, NodeError> {
    let url = format!(
        "{}{RUN_API_PREFIX}/{}/{}/connections/{connection}/token",
        access.base_url, context.run.namespace, context.run.name
    );
    let digest = Sha256::digest(rejected.as_bytes());
    let request = TokenRefreshRequest {
        rejected_token_sha256: digest.iter().map(|byte| format!("{byte:02x}")).collect(),
    };
    let failed = |detail: String| {
        NodeError::retryable(format!(
            "the access token of connection {connection:?} was refused (401) and failed to renew it through the operator's run API: {detail}"
        ))
    };
    let response = context
        .http
        .post(&url)
        .bearer_auth(&access.token)
        .json(&request)
        .send()
        .await
        .map_err(|error| failed(error.without_url().to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let reason = body
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        return Err(failed(format!("{status} {reason}")));
    }
    let answer: TokenRefreshAnswer = response
        .json()
        .await
        .map_err(|error| failed(error.without_url().to_string()))?;
    Ok(answer.access_token)
}

async fn send_request(
    request: reqwest::RequestBuilder,
    redactor: &Redactor,
) -> Result<reqwest::Response, NodeError> {
    request
        .send()
        .await
        .map_err(|error| transport_error("failed to send the request", error, redactor))
}

fn sensitive(value: &str) -> Result<HeaderValue, NodeError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        NodeError::permanent(
            "a credential of the connection contains characters not allowed in an HTTP header: check the Secret",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn bearer(token: &str) -> Result<HeaderValue, NodeError> {
    sensitive(&format!("Bearer {token}"))
}

/// Identifies a cached token: the connection and everything that would
/// make the token server answer differently.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    connection: String,
    token_url: String,
    scopes: String,
    credentials_hash: u64,
}

impl TokenKey {
    fn new(
        connection: &str,
        token_url: &reqwest::Url,
        scopes: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Self {
        let mut hasher = DefaultHasher::new();
        (client_id, client_secret).hash(&mut hasher);
        Self {
            connection: connection.to_owned(),
            token_url: token_url.to_string(),
            scopes: scopes.to_owned(),
            credentials_hash: hasher.finish(),
        }
    }
}

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// One slot per key; its async mutex makes concurrent nodes wait for one
/// token request instead of each sending their own.
type TokenSlot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

fn token_slot(key: &TokenKey) -> TokenSlot {
    static SLOTS: OnceLock<Mutex<HashMap<TokenKey, TokenSlot>>> = OnceLock::new();
    let slots = SLOTS.get_or_init(Default::default);
    let mut slots = slots
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Arc::clone(slots.entry(key.clone()).or_default())
}

/// How long a token without `expires_in` is reused.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// How long before its expiry a token is refreshed (at most half its lifetime).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

struct Token {
    value: String,
    from_cache: bool,
}

impl OAuth2 {
    async fn token(
        &self,
        client: &reqwest::Client,
        refresh: bool,
        redactor: &mut Redactor,
    ) -> Result<Token, NodeError> {
        let slot = token_slot(&self.cache_key);
        let mut cached = slot.lock().await;
        if let Some(token) = cached
            .as_ref()
            .filter(|token| !refresh && Instant::now() < token.refresh_at)
        {
            redactor.add(&token.value);
            return Ok(Token {
                value: token.value.clone(),
                from_cache: true,
            });
        }
        let (value, lifetime) = self.request_token(client, redactor).await?;
        redactor.add(&value);
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *cached = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        Ok(Token {
            value,
            from_cache: false,
        })
    }

    async fn request_token(
        &self,
        client: &reqwest::Client,
        redactor: &Redactor,
    ) -> Result<(String, Duration), NodeError> {
        let mut form = vec![("grant_type", "client_credentials")];
        if !self.scopes.is_empty() {
            form.push(("scope", &self.scopes));
        }
        let mut request = client
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if self.credentials_in_body {
            form.push(("client_id", &self.client_id));
            form.push(("client_secret", &self.client_secret));
        } else {
            // RFC 6749 §2.3.1: form-encode the credentials before Basic.
            request = request.basic_auth(
                percent_encode(&self.client_id),
                Some(percent_encode(&self.client_secret)),
            );
        }
        let body = form
            .iter()
            .map(|(key, value)| format!("{key}={}", percent_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let what = format!(
            "oauth2 token request to {}",
            url_for_display(&self.token_url)
        );
        let response = request.body(body).send().await.map_err(|error| {
            transport_error(&format!("failed to send the {what}"), error, redactor)
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|error| {
            transport_error(
                &format!("failed to read the {what} answer"),
                error,
                redactor,
            )
        })?;
        if !status.is_success() {
            let mut error = super::status_error(&what, status, &bytes, redactor);
            if matches!(status.as_u16(), 400 | 401 | 403) {
                error.message.push_str(
                    ": check the Secret's clientId and clientSecret keys and config.scopes",
                );
            }
            return Err(error);
        }
        let answer: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| NodeError::permanent(format!("the {what} did not answer JSON")))?;
        let token = answer
            .get("access_token")
            .and_then(serde_json::Value::as_str)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                NodeError::permanent(format!("the {what} answered without access_token"))
            })?;
        let lifetime = match answer.get("expires_in") {
            Some(serde_json::Value::Number(seconds)) => seconds.as_u64(),
            Some(serde_json::Value::String(seconds)) => seconds.parse().ok(),
            _ => None,
        }
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Ok((token.to_owned(), lifetime))
    }
}
