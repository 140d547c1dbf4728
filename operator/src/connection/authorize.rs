//! The authorization-code flow of an OAuth2 Connection, started by the
//! console's Connect action and finished by the callback the operator
//! serves (`/oauth2/callback`, on the console port).
//!
//! [`begin`] makes a `state` (naming the Connection, plus 128 random bits)
//! and a PKCE verifier, keeps a hash of the state, the verifier and the
//! redirect URI in the Connection's token Secret (so any replica can
//! finish the flow) for [`PENDING_LIFETIME`], and answers the provider's
//! authorization URL. [`complete`] refuses a state that is malformed,
//! unknown, already used or expired, then exchanges the code with the
//! verifier ([`super::keeper::exchange_code`]). The pure parts (state
//! format, PKCE challenge, URL, state check) are functions here, tested
//! without a server.

use super::keeper::{
    KeeperError, PENDING_EXPIRES_KEY, PENDING_REDIRECT_KEY, PENDING_STATE_KEY,
    PENDING_VERIFIER_KEY, exchange_code, read_kept, write_kept,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use kube::api::Api;
use sha2::{Digest, Sha256};
use sluice_crds::Connection;
use sluice_crds::oauth2::{CLIENT_ID_KEY, OAuth2Grant};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// How long a started Connect may take to come back.
pub const PENDING_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);

/// Path of the callback, on the console's port.
pub const CALLBACK_PATH: &str = "/oauth2/callback";

/// Why a Connect cannot start or a callback is refused. Messages name the
/// fix and never hold a secret value.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// The state is malformed, unknown, used or expired.
    #[error("the authorization state is {0}: start again with Connect in the console")]
    BadState(&'static str),
    /// The Connection cannot use the authorization-code grant.
    #[error("{0}")]
    NotApplicable(String),
    /// The provider refused, or the operator could not keep the token.
    #[error("{0}")]
    Keeper(#[from] KeeperError),
    /// The Kubernetes API failed.
    #[error("failed to reach the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A fresh random value of `words` × 128 bits, as hex.
fn random_hex(words: usize) -> String {
    (0..words)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect()
}

/// A state naming `namespace/name`, with 128 random bits.
pub fn build_state(namespace: &str, name: &str) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(format!("{namespace}/{name}")),
        random_hex(1)
    )
}

/// The Connection a state names: (namespace, name).
pub fn parse_state(state: &str) -> Result<(String, String), AuthorizeError> {
    let malformed = AuthorizeError::BadState("malformed");
    let (named, random) = state
        .rsplit_once('.')
        .ok_or(AuthorizeError::BadState("malformed"))?;
    if random.len() < 32 {
        return Err(malformed);
    }
    let decoded = URL_SAFE_NO_PAD
        .decode(named)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(AuthorizeError::BadState("malformed"))?;
    let (namespace, name) = decoded
        .split_once('/')
        .filter(|(namespace, name)| !namespace.is_empty() && !name.is_empty())
        .ok_or(AuthorizeError::BadState("malformed"))?;
    Ok((namespace.to_owned(), name.to_owned()))
}

/// Hex SHA-256 of a state, as kept.
pub fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// Whether `state` is the pending one (`kept_hash`) and not expired.
pub fn check_state(
    state: &str,
    kept_hash: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), AuthorizeError> {
    let kept_hash = kept_hash
        .filter(|hash| !hash.is_empty())
        .ok_or(AuthorizeError::BadState("unknown or already used"))?;
    let presented = state_hash(state);
    if !bool::from(presented.as_bytes().ct_eq(kept_hash.as_bytes())) {
        return Err(AuthorizeError::BadState("unknown or already used"));
    }
    match expires_at {
        Some(expires) if expires > now => Ok(()),
        _ => Err(AuthorizeError::BadState("expired")),
    }
}

/// The provider's authorization URL for this Connect.
pub fn authorization_url(
    endpoint: &str,
    client_id: &str,
    scopes: &[String],
    redirect_uri: &str,
    state: &str,
    challenge: &str,
) -> Result<String, AuthorizeError> {
    let mut url = reqwest::Url::parse(endpoint).map_err(|error| {
        AuthorizeError::NotApplicable(format!(
            "spec.oauth2.authorizationUrl {endpoint:?} is not a URL ({error}): fix it"
        ))
    })?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        if !scopes.is_empty() {
            query.append_pair("scope", &scopes.join(" "));
        }
    }
    Ok(url.to_string())
}

fn secret_text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> String {
    data.get(key)
        .map(|value| {
            String::from_utf8_lossy(value)
                .trim_end_matches('\n')
                .to_owned()
        })
        .unwrap_or_default()
}

/// Starts a Connect of `connection` (whose user Secret holds `user`):
/// keeps the pending state and answers the URL to send the user to.
pub async fn begin(
    client: &kube::Client,
    connection: &Connection,
    user: &BTreeMap<String, Vec<u8>>,
    redirect_uri: &str,
    now: DateTime<Utc>,
) -> Result<String, AuthorizeError> {
    use kube::ResourceExt;
    let name = connection.name_any();
    let namespace = connection.namespace().unwrap_or_default();
    let spec = connection
        .spec
        .oauth2
        .as_ref()
        .filter(|spec| spec.grant == OAuth2Grant::AuthorizationCode)
        .ok_or_else(|| {
            AuthorizeError::NotApplicable(format!(
                "connection {name} does not use the AuthorizationCode grant: set spec.oauth2.grant to AuthorizationCode"
            ))
        })?;
    let endpoint = spec.effective_authorization_url().ok_or_else(|| {
        AuthorizeError::NotApplicable(format!(
            "connection {name} has no authorization endpoint: set spec.oauth2.provider or spec.oauth2.authorizationUrl"
        ))
    })?;
    let client_id = secret_text(user, CLIENT_ID_KEY);
    if client_id.is_empty() {
        return Err(AuthorizeError::NotApplicable(format!(
            "connection {name}'s Secret has no clientId: add it"
        )));
    }
    let state = build_state(&namespace, &name);
    let verifier = random_hex(2);
    let url = authorization_url(
        endpoint,
        &client_id,
        &spec.scopes,
        redirect_uri,
        &state,
        &pkce_challenge(&verifier),
    )?;
    let current = read_kept(client, &namespace, &name).await?;
    let data = BTreeMap::from([
        (PENDING_STATE_KEY.to_owned(), Some(state_hash(&state))),
        (PENDING_VERIFIER_KEY.to_owned(), Some(verifier)),
        (
            PENDING_REDIRECT_KEY.to_owned(),
            Some(redirect_uri.to_owned()),
        ),
        (
            PENDING_EXPIRES_KEY.to_owned(),
            Some((now + PENDING_LIFETIME).to_rfc3339()),
        ),
    ]);
    write_kept(
        client,
        &namespace,
        connection,
        current.as_ref(),
        data,
        BTreeMap::new(),
    )
    .await?;
    Ok(url)
}

/// Finishes a Connect: checks `state`, exchanges `code`, keeps the tokens.
/// Answers the Connection's (namespace, name).
pub async fn complete(
    client: &kube::Client,
    state: &str,
    code: &str,
    now: DateTime<Utc>,
) -> Result<(String, String), AuthorizeError> {
    let (namespace, name) = parse_state(state)?;
    let connections: Api<Connection> = Api::namespaced(client.clone(), &namespace);
    let connection = connections
        .get_opt(&name)
        .await?
        .ok_or(AuthorizeError::BadState("unknown or already used"))?;
    let kept = read_kept(client, &namespace, &name)
        .await?
        .ok_or(AuthorizeError::BadState("unknown or already used"))?;
    let data: BTreeMap<String, Vec<u8>> = kept
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect();
    let expires = DateTime::parse_from_rfc3339(&secret_text(&data, PENDING_EXPIRES_KEY))
        .ok()
        .map(|time| time.with_timezone(&Utc));
    let hash = secret_text(&data, PENDING_STATE_KEY);
    check_state(state, Some(&hash), expires, now)?;
    let user = super::controller::observe_secret(&connection, client, &namespace)
        .await?
        .unwrap_or_default();
    exchange_code(
        client,
        &namespace,
        &connection,
        &user,
        code,
        &secret_text(&data, PENDING_VERIFIER_KEY),
        &secret_text(&data, PENDING_REDIRECT_KEY),
        now,
    )
    .await?;
    Ok((namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
    }

    #[test]
    fn a_state_names_its_connection_and_is_unguessable() {
        let state = build_state("team-a", "crm.api");
        assert_eq!(
            parse_state(&state).unwrap(),
            ("team-a".to_owned(), "crm.api".to_owned())
        );
        assert_ne!(state, build_state("team-a", "crm.api"));
        for bad in [
            "",
            "abc",
            "dGVhbS9jcm0.short",
            "!!!.0123456789abcdef0123456789abcdef",
        ] {
            assert!(
                matches!(parse_state(bad), Err(AuthorizeError::BadState(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_the_pending_unexpired_state_passes() {
        let state = build_state("team", "crm");
        let hash = state_hash(&state);
        assert!(check_state(&state, Some(&hash), Some(at(10)), at(0)).is_ok());
        let other = build_state("team", "crm");
        let refused = check_state(&other, Some(&hash), Some(at(10)), at(0)).unwrap_err();
        assert!(
            refused.to_string().contains("unknown or already used"),
            "{refused}"
        );
        assert!(check_state(&state, None, Some(at(10)), at(0)).is_err());
        assert!(check_state(&state, Some(""), Some(at(10)), at(0)).is_err());
        let expired = check_state(&state, Some(&hash), Some(at(10)), at(10)).unwrap_err();
        assert!(expired.to_string().contains("expired"), "{expired}");
    }

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_authorization_url_carries_state_challenge_and_scopes() {
        let url = authorization_url(
            "https://provider.example/authorize?prompt=consent",
            "client 1",
            &["read".into(), "write".into()],
            "https://sluice.example/oauth2/callback",
            "st",
            "ch",
        )
        .unwrap();
        let parsed = reqwest::Url::parse(&url).unwrap();
        let query: BTreeMap<String, String> = parsed.query_pairs().into_owned().collect();
        assert_eq!(query["prompt"], "consent");
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], "client 1");
        assert_eq!(query["state"], "st");
        assert_eq!(query["code_challenge"], "ch");
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["scope"], "read write");
        assert!(authorization_url("not a url", "c", &[], "r", "s", "c").is_err());
    }
}
