//! The session cookie and the CSRF token. Pure: no I/O.
//!
//! The cookie is `Secure; HttpOnly; SameSite=Strict` (browsers treat
//! `http://localhost`, what `kubectl port-forward` gives, as secure). The
//! CSRF token is derived from the session token, so it needs no storage;
//! a page gets it from the sign-in answer or `GET /api/session` and sends
//! it back in the `X-CSRF-Token` header of every non-GET request.

use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "sluice_session";
/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A fresh session token: 256 random bits (from the OS, via UUIDv4), hex.
pub fn new_session_token() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    hex::encode(bytes)
}

/// What `user_sessions.token` stores: the SHA-256 of the session token, so
/// a read of the table does not hand out sessions.
pub fn stored_token(session_token: &str) -> String {
    hex::encode(Sha256::digest(session_token.as_bytes()))
}

/// The CSRF token of a session.
pub fn csrf_token(session_token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"sluice-console-csrf\0");
    hasher.update(session_token.as_bytes());
    hex::encode(hasher.finalize())
}

/// Whether `presented` is the CSRF token of `session_token`.
pub fn csrf_matches(session_token: &str, presented: &str) -> bool {
    csrf_token(session_token)
        .as_bytes()
        .ct_eq(presented.as_bytes())
        .into()
}

/// `Set-Cookie` value that stores the session.
pub fn build_session_cookie(session_token: &str, lifetime: Duration) -> String {
    format!(
        "{COOKIE_NAME}={session_token}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Strict",
        lifetime.as_secs()
    )
}

/// `Set-Cookie` value that removes the session cookie.
pub fn build_expired_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}

/// The session token in a `Cookie` header, if any.
pub fn session_from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_secure_http_only_and_strict() {
        let cookie = build_session_cookie("abc", Duration::from_secs(60));
        assert!(cookie.starts_with("sluice_session=abc; "));
        for attribute in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=60",
            "Path=/",
        ] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
        assert!(build_expired_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn the_session_is_found_among_other_cookies() {
        assert_eq!(
            session_from_cookie_header("a=1; sluice_session=tok; b=2"),
            Some("tok")
        );
        assert_eq!(session_from_cookie_header("sluice_session="), None);
        assert_eq!(session_from_cookie_header("other=tok"), None);
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let first = new_session_token();
        let second = new_session_token();
        assert_eq!(first.len(), 64);
        assert_ne!(first, second);
        assert!(csrf_matches(&first, &csrf_token(&first)));
        assert!(!csrf_matches(&first, &csrf_token(&second)));
        assert!(!csrf_matches(&first, ""));
        assert_ne!(stored_token(&first), first);
        assert_ne!(csrf_token(&first), stored_token(&first));
    }
}
