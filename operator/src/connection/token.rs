//! Requests to an OAuth2 token endpoint (RFC 6749 §4.1.3, §4.4, §6): the
//! client credentials, refresh token and authorization code (with PKCE)
//! grants, and the answer parsed into a [`TokenAnswer`].
//!
//! This module holds secrets in memory only for the request: no type here
//! prints a token or a client secret in `Debug`, and a refusal's text from
//! the provider reaches callers only through
//! [`super::token_plan::strip_secrets`], with every value sent removed.

use super::token_plan::strip_secrets;
use chrono::{DateTime, Utc};
use sluice_crds::oauth2::ClientAuth;
use std::fmt;

/// Longest provider text quoted in a condition.
const MAX_PROVIDER_TEXT: usize = 300;

/// The grant of one request, with what it needs.
pub enum Grant<'a> {
    /// `client_credentials`.
    ClientCredentials,
    /// `refresh_token` with this token.
    RefreshToken(&'a str),
    /// `authorization_code` with the code, the PKCE verifier and the
    /// redirect URI the code was issued for.
    AuthorizationCode {
        /// The code from the callback.
        code: &'a str,
        /// The PKCE code verifier.
        verifier: &'a str,
        /// The redirect URI sent to the authorization endpoint.
        redirect_uri: &'a str,
    },
}

/// One token request.
pub struct TokenRequest<'a> {
    /// The token endpoint.
    pub token_url: &'a str,
    /// Client id.
    pub client_id: &'a str,
    /// Client secret (may be empty for public clients).
    pub client_secret: &'a str,
    /// How the client authenticates.
    pub client_auth: ClientAuth,
    /// Scopes to ask for (client credentials only; refreshes keep the grant's).
    pub scopes: &'a [String],
    /// The grant.
    pub grant: Grant<'a>,
}

/// A token endpoint's successful answer.
pub struct TokenAnswer {
    /// The access token.
    pub access_token: String,
    /// A new refresh token, when the provider issued one.
    pub refresh_token: Option<String>,
    /// When the access token expires (from `expires_in`).
    pub expires_at: Option<DateTime<Utc>>,
    /// Scopes granted, when the provider said.
    pub scopes: Option<Vec<String>>,
}

impl fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAnswer")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Why a token request failed. Messages hold no secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The endpoint could not be reached or answered 5xx/429: try again soon.
    #[error("{0}")]
    Transient(String),
    /// The provider refused (4xx) or answered nonsense: only a change helps.
    #[error("{0}")]
    Refused(String),
}

impl TokenRequest<'_> {
    fn grant_type(&self) -> &'static str {
        match self.grant {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::AuthorizationCode { .. } => "authorization_code",
        }
    }

    /// Every secret value this request carries, for stripping texts.
    fn secrets(&self) -> Vec<&str> {
        let mut secrets = vec![self.client_secret];
        match &self.grant {
            Grant::ClientCredentials => {}
            Grant::RefreshToken(token) => secrets.push(token),
            Grant::AuthorizationCode { code, verifier, .. } => {
                secrets.push(code);
                secrets.push(verifier);
            }
        }
        secrets
    }

    /// Sends the request with `client` at `now` (for `expires_at`).
    pub async fn send(
        &self,
        client: &reqwest::Client,
        now: DateTime<Utc>,
    ) -> Result<TokenAnswer, TokenError> {
        let secrets = self.secrets();
        let what = format!(
            "the {} token request to {}",
            self.grant_type(),
            display_url(self.token_url)
        );
        let mut form: Vec<(&str, &str)> = vec![("grant_type", self.grant_type())];
        let scope = self.scopes.join(" ");
        match &self.grant {
            Grant::ClientCredentials => {
                if !scope.is_empty() {
                    form.push(("scope", &scope));
                }
            }
            Grant::RefreshToken(token) => form.push(("refresh_token", token)),
            Grant::AuthorizationCode {
                code,
                verifier,
                redirect_uri,
            } => {
                form.push(("code", code));
                form.push(("code_verifier", verifier));
                form.push(("redirect_uri", redirect_uri));
            }
        }
        let mut request = client
            .post(self.token_url)
            .header(reqwest::header::ACCEPT, "application/json");
        match self.client_auth {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: form-encode the credentials before Basic.
                request = request.basic_auth(
                    form_encode(self.client_id),
                    Some(form_encode(self.client_secret)),
                );
            }
            ClientAuth::Body => {
                form.push(("client_id", self.client_id));
                if !self.client_secret.is_empty() {
                    form.push(("client_secret", self.client_secret));
                }
            }
        }
        let body = form
            .iter()
            .map(|(key, value)| format!("{key}={}", form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let response = request
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|error| {
                TokenError::Transient(strip_secrets(
                    &format!("failed to send {what}: {}", error_chain(error)),
                    &secrets,
                    MAX_PROVIDER_TEXT * 2,
                ))
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|error| {
            TokenError::Transient(strip_secrets(
                &format!(
                    "failed to read the answer to {what}: {}",
                    error_chain(error)
                ),
                &secrets,
                MAX_PROVIDER_TEXT * 2,
            ))
        })?;
        let answer: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            let text = match &answer {
                Some(value) => describe_error(value),
                None => String::from_utf8_lossy(&bytes).into_owned(),
            };
            let message = format!(
                "{what} was refused with {status}: {}",
                strip_secrets(&text, &secrets, MAX_PROVIDER_TEXT)
            );
            return Err(
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    TokenError::Transient(message)
                } else {
                    TokenError::Refused(message)
                },
            );
        }
        let Some(answer) = answer else {
            return Err(TokenError::Refused(format!(
                "{what} answered {status} without a JSON body: check the token URL"
            )));
        };
        // Some providers (Slack, GitHub) answer 200 with an error object.
        if answer.get("error").is_some() && answer.get("access_token").is_none() {
            return Err(TokenError::Refused(format!(
                "{what} was refused: {}",
                strip_secrets(&describe_error(&answer), &secrets, MAX_PROVIDER_TEXT)
            )));
        }
        let access_token = answer
            .get("access_token")
            .and_then(serde_json::Value::as_str)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| TokenError::Refused(format!("{what} answered without access_token")))?
            .to_owned();
        let expires_in = match answer.get("expires_in") {
            Some(serde_json::Value::Number(seconds)) => seconds.as_i64(),
            Some(serde_json::Value::String(seconds)) => seconds.parse().ok(),
            _ => None,
        };
        Ok(TokenAnswer {
            access_token,
            refresh_token: answer
                .get("refresh_token")
                .and_then(serde_json::Value::as_str)
                .filter(|token| !token.is_empty())
                .map(str::to_owned),
            expires_at: expires_in.map(|seconds| now + chrono::Duration::seconds(seconds.max(0))),
            scopes: answer
                .get("scope")
                .and_then(serde_json::Value::as_str)
                .map(|scope| {
                    scope
                        .split([' ', ','])
                        .filter(|scope| !scope.is_empty())
                        .map(str::to_owned)
                        .collect()
                }),
        })
    }
}

/// `error: error_description` of an RFC 6749 §5.2 answer.
fn describe_error(answer: &serde_json::Value) -> String {
    let field = |name: &str| {
        answer
            .get(name)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match (field("error"), field("error_description")) {
        (error, description) if description.is_empty() => error,
        (error, description) => format!("{error}: {description}"),
    }
}

/// The token URL without its query and credentials.
fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "an invalid URL".to_owned(),
    }
}

fn error_chain(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_e2e::oauth2_server::{AuthServer, AuthServerOptions};

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    fn request<'a>(
        server_url: &'a str,
        id: &'a str,
        secret: &'a str,
        auth: ClientAuth,
        grant: Grant<'a>,
    ) -> TokenRequest<'a> {
        TokenRequest {
            token_url: server_url,
            client_id: id,
            client_secret: secret,
            client_auth: auth,
            scopes: &[],
            grant,
        }
    }

    #[tokio::test]
    async fn client_credentials_in_basic_and_body_both_work() {
        let server = AuthServer::start(AuthServerOptions::default())
            .await
            .unwrap();
        let (id, secret) = server.client();
        let url = server.token_url();
        let now = Utc::now();
        for auth in [ClientAuth::Basic, ClientAuth::Body] {
            let answer = request(&url, &id, &secret, auth, Grant::ClientCredentials)
                .send(&client(), now)
                .await
                .unwrap();
            assert!(server.access_token_valid(&answer.access_token));
            assert_eq!(
                answer.expires_at,
                Some(now + chrono::Duration::seconds(3600))
            );
            assert!(answer.refresh_token.is_none());
        }
        assert_eq!(server.requests("client_credentials"), 2);
    }

    #[tokio::test]
    async fn a_refused_refresh_token_is_not_quoted_back() {
        let server = AuthServer::start(AuthServerOptions::default())
            .await
            .unwrap();
        let (id, secret) = server.client();
        let token = server.seed_refresh_token(&id);
        server.revoke_refresh_token(&token);
        let url = server.token_url();
        let error = request(
            &url,
            &id,
            &secret,
            ClientAuth::Basic,
            Grant::RefreshToken(&token),
        )
        .send(&client(), Utc::now())
        .await
        .unwrap_err();
        let TokenError::Refused(message) = &error else {
            panic!("a refusal: {error:?}");
        };
        assert!(message.contains("invalid_grant"), "{message}");
        assert!(
            message.contains("[REDACTED]"),
            "the token was quoted: {message}"
        );
        assert!(!message.contains(&token), "{message}");
        let wrong = request(
            &url,
            &id,
            "wrong-secret",
            ClientAuth::Basic,
            Grant::ClientCredentials,
        )
        .send(&client(), Utc::now())
        .await
        .unwrap_err();
        assert!(
            matches!(&wrong, TokenError::Refused(m) if m.contains("invalid_client")),
            "{wrong:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        drop(listener);
        let error = request(
            &url,
            "id",
            "secret-xyz",
            ClientAuth::Basic,
            Grant::ClientCredentials,
        )
        .send(&client(), Utc::now())
        .await
        .unwrap_err();
        assert!(
            matches!(&error, TokenError::Transient(m) if !m.contains("secret-xyz")),
            "{error:?}"
        );
    }

    #[test]
    fn form_encoding_escapes_everything_but_unreserved() {
        assert_eq!(form_encode("a b+c/d~e"), "a%20b%2Bc%2Fd~e");
    }
}
