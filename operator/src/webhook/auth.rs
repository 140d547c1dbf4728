//! Authentication of webhook requests: HMAC-SHA256 signatures over the body
//! (GitHub `sha256=<hex>`, Slack `v0=<hex>` over `v0:<ts>:<body>` with a
//! five-minute timestamp window, bare hex) or a bearer token. Pure: the key
//! and the clock are values; comparisons are constant-time.
//!
//! Errors say what is wrong with the request, never what was expected.

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sluice_crds::workflow::{SignatureFormat, WebhookAuth, WebhookAuthType};
use subtle::ConstantTimeEq;

/// Oldest Slack request timestamp accepted, in seconds (replay window).
pub const SLACK_MAX_AGE_SECONDS: i64 = 300;

/// Header with Slack's request timestamp.
pub const SLACK_TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The credential header is absent.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// The credential header is not in the configured format.
    #[error("malformed header {header}: expected {expected}")]
    Malformed {
        /// The header.
        header: String,
        /// The format it should have.
        expected: &'static str,
    },
    /// The signature or token does not match.
    #[error("the signature or token does not match")]
    Mismatch,
    /// A Slack timestamp outside the replay window.
    #[error("the request timestamp is more than five minutes away from now")]
    StaleTimestamp,
}

/// The header carrying the credential, lowercase.
pub fn credential_header(auth: &WebhookAuth) -> String {
    if let Some(header) = &auth.header {
        return header.to_ascii_lowercase();
    }
    match (
        auth.type_.unwrap_or_default(),
        auth.signature_format.unwrap_or_default(),
    ) {
        (WebhookAuthType::Bearer, _) => "authorization".to_owned(),
        (WebhookAuthType::Hmac, SignatureFormat::GitHub) => "x-hub-signature-256".to_owned(),
        (WebhookAuthType::Hmac, SignatureFormat::Slack) => "x-slack-signature".to_owned(),
        (WebhookAuthType::Hmac, SignatureFormat::Hex) => "x-signature".to_owned(),
    }
}

/// Checks the request's credential against `key` (the Secret value).
pub fn verify(
    auth: &WebhookAuth,
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<(), AuthError> {
    let header = credential_header(auth);
    let value = headers
        .get(header.as_str())
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .ok_or_else(|| AuthError::MissingHeader(header.clone()))?;
    match auth.type_.unwrap_or_default() {
        WebhookAuthType::Bearer => {
            let token = strip_prefix_ignore_case(value, "bearer ").unwrap_or(value);
            if bool::from(token.as_bytes().ct_eq(key)) {
                Ok(())
            } else {
                Err(AuthError::Mismatch)
            }
        }
        WebhookAuthType::Hmac => {
            let format = auth.signature_format.unwrap_or_default();
            let malformed = |expected| AuthError::Malformed {
                header: header.clone(),
                expected,
            };
            let mut mac =
                <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| AuthError::Mismatch)?;
            let hex_digest = match format {
                SignatureFormat::GitHub => value
                    .strip_prefix("sha256=")
                    .ok_or_else(|| malformed("sha256=<hex>"))?,
                SignatureFormat::Hex => value,
                SignatureFormat::Slack => {
                    let digest = value
                        .strip_prefix("v0=")
                        .ok_or_else(|| malformed("v0=<hex>"))?;
                    let timestamp = headers
                        .get(SLACK_TIMESTAMP_HEADER)
                        .and_then(|value| value.to_str().ok())
                        .ok_or_else(|| {
                            AuthError::MissingHeader(SLACK_TIMESTAMP_HEADER.to_owned())
                        })?;
                    let seconds: i64 =
                        timestamp.trim().parse().map_err(|_| AuthError::Malformed {
                            header: SLACK_TIMESTAMP_HEADER.to_owned(),
                            expected: "seconds since 1970",
                        })?;
                    if (now_unix - seconds).abs() > SLACK_MAX_AGE_SECONDS {
                        return Err(AuthError::StaleTimestamp);
                    }
                    mac.update(format!("v0:{}:", timestamp.trim()).as_bytes());
                    digest
                }
            };
            let expected = hex::decode(hex_digest).map_err(|_| malformed("a hex digest"))?;
            mac.update(body);
            mac.verify_slice(&expected).map_err(|_| AuthError::Mismatch)
        }
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| value[prefix.len()..].trim())
}

/// The hex HMAC-SHA256 of `message` under `key` (tests, benchmarks, clients).
pub fn sign_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crds::common::SecretKeyReference;

    fn auth(type_: WebhookAuthType, format: Option<SignatureFormat>) -> WebhookAuth {
        WebhookAuth {
            type_: Some(type_),
            secret_ref: SecretKeyReference {
                name: "hook".to_owned(),
                key: "key".to_owned(),
            },
            header: None,
            signature_format: format,
        }
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    const NOW: i64 = 1_767_225_600;

    #[test]
    fn github_signatures_verify_and_tampering_fails() {
        let github = auth(WebhookAuthType::Hmac, None);
        let good = headers(&[(
            "x-hub-signature-256",
            format!("sha256={}", sign_hex(b"k", b"{}")),
        )]);
        assert_eq!(verify(&github, b"k", &good, b"{}", NOW), Ok(()));
        assert_eq!(
            verify(&github, b"k", &good, b"{ }", NOW),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            verify(&github, b"other", &good, b"{}", NOW),
            Err(AuthError::Mismatch)
        );
        let bare = headers(&[("x-hub-signature-256", sign_hex(b"k", b"{}"))]);
        assert!(matches!(
            verify(&github, b"k", &bare, b"{}", NOW),
            Err(AuthError::Malformed { .. })
        ));
        assert_eq!(
            verify(&github, b"k", &HeaderMap::new(), b"{}", NOW),
            Err(AuthError::MissingHeader("x-hub-signature-256".to_owned()))
        );
    }

    #[test]
    fn slack_signatures_cover_the_timestamp_and_expire_after_five_minutes() {
        let slack = auth(WebhookAuthType::Hmac, Some(SignatureFormat::Slack));
        let signed = |ts: i64| {
            headers(&[
                (
                    "x-slack-signature",
                    format!("v0={}", sign_hex(b"k", format!("v0:{ts}:body").as_bytes())),
                ),
                ("x-slack-request-timestamp", ts.to_string()),
            ])
        };
        assert_eq!(
            verify(&slack, b"k", &signed(NOW - 10), b"body", NOW),
            Ok(())
        );
        assert_eq!(
            verify(&slack, b"k", &signed(NOW - 301), b"body", NOW),
            Err(AuthError::StaleTimestamp)
        );
        let mut replayed = signed(NOW - 10);
        replayed.insert(
            "x-slack-request-timestamp",
            (NOW - 5).to_string().parse().unwrap(),
        );
        assert_eq!(
            verify(&slack, b"k", &replayed, b"body", NOW),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn hex_signatures_and_bearer_tokens_use_their_headers() {
        let mut hex_auth = auth(WebhookAuthType::Hmac, Some(SignatureFormat::Hex));
        hex_auth.header = Some("X-Custom-Sig".to_owned());
        let good = headers(&[("x-custom-sig", sign_hex(b"k", b"x"))]);
        assert_eq!(verify(&hex_auth, b"k", &good, b"x", NOW), Ok(()));

        let bearer = auth(WebhookAuthType::Bearer, None);
        let ok = headers(&[("authorization", "Bearer tok".to_owned())]);
        assert_eq!(verify(&bearer, b"tok", &ok, b"", NOW), Ok(()));
        let bad = headers(&[("authorization", "Bearer to".to_owned())]);
        assert_eq!(
            verify(&bearer, b"tok", &bad, b"", NOW),
            Err(AuthError::Mismatch)
        );
        assert_eq!(credential_header(&bearer), "authorization");
    }
}
