//! Per-run credentials for the run API.
//!
//! A runner's token is HMAC-SHA256(operator key, run UID). Every replica
//! holds the same key (a Secret the operator creates once), so any replica
//! verifies any runner without shared state, and a token opens exactly one
//! run: a runner cannot act on another run by changing the URL. Comparison
//! is constant-time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

/// Name of the Secret holding the operator key, in the operator's namespace.
pub const KEY_SECRET_NAME: &str = "sluice-run-api-key";
/// Key of the operator key inside that Secret.
pub const KEY_SECRET_KEY: &str = "key";

/// The operator-wide key that derives runner tokens.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    /// A key from stored bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// A fresh random key (32 bytes from the OS, via UUIDv4).
    pub fn generate() -> Self {
        let mut bytes = Vec::with_capacity(32);
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self(bytes)
    }

    /// The key's bytes, for storing in its Secret.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self, run_uid: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(run_uid.as_bytes());
        mac
    }

    /// The token of the run with UID `run_uid`.
    pub fn token_for(&self, run_uid: &str) -> String {
        hex::encode(self.mac(run_uid).finalize().into_bytes())
    }

    /// Whether `token` is the token of the run with UID `run_uid`.
    pub fn verify(&self, run_uid: &str, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) => self.mac(run_uid).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_own_run_only() {
        let key = TokenKey::generate();
        let token = key.token_for("uid-a");
        assert!(key.verify("uid-a", &token));
        assert!(
            !key.verify("uid-b", &token),
            "another run's token is refused"
        );
        assert!(!key.verify("uid-a", "not hex"));
        assert!(
            !TokenKey::generate().verify("uid-a", &token),
            "another operator key is refused"
        );
    }

    #[test]
    fn the_key_never_prints() {
        let key = TokenKey::new(b"secret-bytes".to_vec());
        assert!(!format!("{key:?}").contains("secret"));
    }
}
