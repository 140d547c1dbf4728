//! The token keeper's decisions for an OAuth2 Connection (`spec.oauth2`):
//! from what the operator-managed token Secret says (times and which
//! credentials the token came from — never a token value) and the clock,
//! whether to obtain a token now, with which request, or when to look
//! again; and the `Authorized` condition and `status.oauth2` of an outcome.
//! Pure: no client, the clock and the jitter seed are values.
//!
//! Renewal: a token obtained at `t0` that expires at `t1` is renewed at
//! `t1 - margin - jitter`, where `margin` is `spec.oauth2.refreshBefore`
//! (5m) but at most half the lifetime, and `jitter` is up to a tenth of
//! the lifetime, fixed per Connection (from its uid), so connections
//! created together do not all renew in the same second. Renewal thus
//! starts between 40% of the lifetime and `margin` before expiry.

use chrono::{DateTime, Utc};
use sluice_crds::Duration as SpecDuration;
use sluice_crds::oauth2::{OAuth2Grant, OAuth2Spec, OAuth2Status};
use std::time::Duration;

/// Renewal margin when `refreshBefore` is not set.
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// When a token whose lifetime the provider did not say is looked at again.
pub const UNKNOWN_LIFETIME_RECHECK: Duration = Duration::from_secs(3600);

/// Wait before trying again after a transient failure (unreachable, 5xx).
pub const TRANSIENT_RETRY: Duration = Duration::from_secs(15);

/// Wait before trying again after the provider refused the grant: only a
/// change of the Secret (a Secret event wakes the controller at once) or
/// of the provider's mind helps.
pub const REFUSED_RETRY: Duration = Duration::from_secs(300);

/// Reasons of the `Authorized` condition.
pub mod reason {
    /// A current access token is in the managed Secret.
    pub const TOKEN_ISSUED: &str = "TokenIssued";
    /// Renewing (or obtaining) the token failed; the message says why.
    pub const REFRESH_FAILED: &str = "RefreshFailed";
    /// The AuthorizationCode grant waits for a user to click Connect.
    pub const AUTHORIZATION_REQUIRED: &str = "AuthorizationRequired";
    /// The Secret with the client credentials is not Ready.
    pub const NOT_READY: &str = "NotReady";
    /// `spec.oauth2` cannot work as written (no token endpoint …).
    pub const INVALID_CONFIG: &str = "InvalidConfig";
}

/// What the managed token Secret says, without its values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeptToken {
    /// It holds an access token.
    pub has_access_token: bool,
    /// It holds a refresh token (rotated, or from a code exchange).
    pub has_refresh_token: bool,
    /// When the access token was obtained.
    pub obtained_at: Option<DateTime<Utc>>,
    /// When it expires (None: the provider did not say).
    pub expires_at: Option<DateTime<Utc>>,
    /// Fingerprint of what it was obtained from ([`token_source`]).
    pub source: Option<String>,
    /// Scopes granted.
    pub scopes: Vec<String>,
}

/// How a token is to be obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRequestKind {
    /// `grant_type=client_credentials`.
    ClientCredentials,
    /// `grant_type=refresh_token` with the refresh token of the managed Secret.
    KeptRefreshToken,
    /// `grant_type=refresh_token` with the one the user placed in their Secret.
    UserRefreshToken,
}

/// The keeper's next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenStep {
    /// Obtain a token now.
    Obtain(TokenRequestKind),
    /// The AuthorizationCode grant has no refresh token yet: a user must
    /// click Connect in the console.
    AwaitAuthorization,
    /// The token is current; renew it at this time (None: no expiry known,
    /// look again after [`UNKNOWN_LIFETIME_RECHECK`]).
    Keep(Option<DateTime<Utc>>),
}

/// The fingerprint a token is tied to: a change means the kept token no
/// longer fits the spec or the Secret. Client credentials: client id and
/// secret, token URL and scopes. RefreshToken: client id, token URL and
/// the user's refresh token (placing a new one starts over from it; a new
/// client secret does not). AuthorizationCode: client id and token URL (the
/// refresh token came from the console's Connect).
pub fn token_source(
    spec: &OAuth2Spec,
    client_id: &[u8],
    client_secret: &[u8],
    user_refresh_token: Option<&[u8]>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    part(spec.grant.as_str().as_bytes());
    part(client_id);
    part(spec.effective_token_url().unwrap_or_default().as_bytes());
    match spec.grant {
        OAuth2Grant::ClientCredentials => {
            part(client_secret);
            part(spec.scopes.join(" ").as_bytes());
        }
        OAuth2Grant::RefreshToken => part(user_refresh_token.unwrap_or_default()),
        OAuth2Grant::AuthorizationCode => {}
    }
    hex::encode(hasher.finalize())
}

/// When a token obtained at `obtained_at`, expiring at `expires_at`, is
/// renewed, with `jitter_seed` fixing this Connection's share of jitter.
pub fn renew_at(
    obtained_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    refresh_before: Option<&SpecDuration>,
    jitter_seed: u64,
) -> DateTime<Utc> {
    let lifetime = (expires_at - obtained_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    let margin = refresh_before
        .map(SpecDuration::as_std)
        .unwrap_or(DEFAULT_REFRESH_BEFORE)
        .min(lifetime / 2);
    let jitter_room = (lifetime / 10).as_millis() as u64;
    let jitter = Duration::from_millis(match jitter_room {
        0 => 0,
        room => jitter_seed % (room + 1),
    });
    let before = chrono::Duration::from_std(margin + jitter).unwrap_or(chrono::Duration::zero());
    expires_at - before
}

/// A seed for [`renew_at`] from the Connection's uid.
pub fn jitter_seed(uid: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(uid.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// The keeper's next step for `spec`, given the managed Secret (`kept`),
/// the fingerprint of the current credentials (`source`), and `now`.
pub fn plan_token(
    spec: &OAuth2Spec,
    kept: &KeptToken,
    source: &str,
    now: DateTime<Utc>,
    jitter_seed: u64,
) -> TokenStep {
    let fits = kept.source.as_deref() == Some(source);
    if !fits {
        return match spec.grant {
            OAuth2Grant::ClientCredentials => {
                TokenStep::Obtain(TokenRequestKind::ClientCredentials)
            }
            OAuth2Grant::RefreshToken => TokenStep::Obtain(TokenRequestKind::UserRefreshToken),
            OAuth2Grant::AuthorizationCode => TokenStep::AwaitAuthorization,
        };
    }
    let renewal = match (kept.obtained_at, kept.expires_at) {
        (Some(obtained), Some(expires)) => Some(renew_at(
            obtained,
            expires,
            spec.refresh_before.as_ref(),
            jitter_seed,
        )),
        _ => None,
    };
    let due = !kept.has_access_token || renewal.is_some_and(|at| at <= now);
    if !due {
        return TokenStep::Keep(renewal);
    }
    match spec.grant {
        OAuth2Grant::ClientCredentials => TokenStep::Obtain(TokenRequestKind::ClientCredentials),
        _ if kept.has_refresh_token => TokenStep::Obtain(TokenRequestKind::KeptRefreshToken),
        OAuth2Grant::RefreshToken => TokenStep::Obtain(TokenRequestKind::UserRefreshToken),
        OAuth2Grant::AuthorizationCode => TokenStep::AwaitAuthorization,
    }
}

/// What became of a keeper pass, for the `Authorized` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenOutcome {
    /// Whether a current access token is kept.
    pub authorized: bool,
    /// One of [`reason`].
    pub reason: &'static str,
    /// For people; never holds a secret value.
    pub message: String,
    /// What `status.oauth2` says now.
    pub status: OAuth2Status,
    /// When to look again.
    pub requeue_after: Duration,
}

/// The wait until `at` (at least one second).
pub fn wait_until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1))
}

/// `text` with every non-empty `secret` replaced by `[REDACTED]`, cut to
/// `max_chars` characters: provider error texts sometimes quote the
/// refresh token or the client secret they refuse.
pub fn strip_secrets(text: &str, secrets: &[&str], max_chars: usize) -> String {
    let mut stripped = text.to_owned();
    for secret in secrets.iter().filter(|secret| secret.len() >= 4) {
        stripped = stripped.replace(secret, "[REDACTED]");
    }
    let mut stripped: String = stripped.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = stripped.char_indices().nth(max_chars) {
        stripped.truncate(cut);
        stripped.push('…');
    }
    stripped
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
    }

    fn spec(grant: OAuth2Grant) -> OAuth2Spec {
        OAuth2Spec {
            token_url: Some("http://127.0.0.1:1/token".into()),
            grant,
            ..OAuth2Spec::default()
        }
    }

    fn kept(source: &str, obtained: i64, expires: i64) -> KeptToken {
        KeptToken {
            has_access_token: true,
            has_refresh_token: true,
            obtained_at: Some(at(obtained)),
            expires_at: Some(at(expires)),
            source: Some(source.into()),
            scopes: vec![],
        }
    }

    #[test]
    fn a_one_hour_token_is_renewed_five_minutes_and_some_jitter_before_expiry() {
        let renew = renew_at(at(0), at(3600), None, 0);
        assert_eq!(renew, at(3300));
        // The jitter is at most a tenth of the lifetime, and fixed by the seed.
        let seeds = [
            1u64,
            7,
            1_000_003,
            u64::MAX,
            jitter_seed("uid-a"),
            jitter_seed("uid-b"),
        ];
        for seed in seeds {
            let renew = renew_at(at(0), at(3600), None, seed);
            assert!(
                renew <= at(3300) && renew >= at(2940),
                "{renew} for seed {seed}"
            );
            assert_eq!(renew, renew_at(at(0), at(3600), None, seed));
        }
        assert_ne!(
            renew_at(at(0), at(3600), None, jitter_seed("uid-a")),
            renew_at(at(0), at(3600), None, jitter_seed("uid-b")),
            "two connections renew at different times"
        );
    }

    #[test]
    fn a_short_token_is_renewed_at_half_its_life_at_the_latest() {
        // 10 s lifetime: margin min(5m, 5s) = 5s, jitter ≤ 1s.
        for seed in [0, 500, 999, 1000, 123_456_789] {
            let renew = renew_at(at(0), at(10), None, seed);
            assert!(renew <= at(5) && renew >= at(4), "{renew}");
        }
        let custom = SpecDuration::parse("2s").unwrap();
        assert_eq!(renew_at(at(0), at(10), Some(&custom), 0), at(8));
        // A token that came back already expired is renewed at once.
        assert!(renew_at(at(10), at(5), None, 42) <= at(5));
    }

    #[test]
    fn a_fitting_current_token_is_kept_until_its_renewal_time() {
        let spec = spec(OAuth2Grant::ClientCredentials);
        let kept = kept("src", 0, 3600);
        assert_eq!(
            plan_token(&spec, &kept, "src", at(10), 0),
            TokenStep::Keep(Some(at(3300)))
        );
        assert_eq!(
            plan_token(&spec, &kept, "src", at(3299), 0),
            TokenStep::Keep(Some(at(3300)))
        );
        assert_eq!(
            plan_token(&spec, &kept, "src", at(3300), 0),
            TokenStep::Obtain(TokenRequestKind::ClientCredentials)
        );
        let unknown = KeptToken {
            expires_at: None,
            ..kept.clone()
        };
        assert_eq!(
            plan_token(&spec, &unknown, "src", at(99_999), 0),
            TokenStep::Keep(None)
        );
    }

    #[test]
    fn new_credentials_replace_the_token_at_once() {
        let kept = kept("old", 0, 3600);
        assert_eq!(
            plan_token(
                &spec(OAuth2Grant::ClientCredentials),
                &kept,
                "new",
                at(1),
                0
            ),
            TokenStep::Obtain(TokenRequestKind::ClientCredentials)
        );
        assert_eq!(
            plan_token(&spec(OAuth2Grant::RefreshToken), &kept, "new", at(1), 0),
            TokenStep::Obtain(TokenRequestKind::UserRefreshToken),
            "a new refresh token placed by the user is used, not the rotated one"
        );
        assert_eq!(
            plan_token(
                &spec(OAuth2Grant::AuthorizationCode),
                &kept,
                "new",
                at(1),
                0
            ),
            TokenStep::AwaitAuthorization,
            "another client needs a new consent"
        );
        assert_eq!(
            plan_token(
                &spec(OAuth2Grant::AuthorizationCode),
                &KeptToken::default(),
                "new",
                at(1),
                0
            ),
            TokenStep::AwaitAuthorization
        );
    }

    #[test]
    fn renewals_use_the_kept_refresh_token_when_there_is_one() {
        let due = at(3300);
        for grant in [OAuth2Grant::RefreshToken, OAuth2Grant::AuthorizationCode] {
            assert_eq!(
                plan_token(&spec(grant), &kept("src", 0, 3600), "src", due, 0),
                TokenStep::Obtain(TokenRequestKind::KeptRefreshToken)
            );
        }
        let without = KeptToken {
            has_refresh_token: false,
            ..kept("src", 0, 3600)
        };
        assert_eq!(
            plan_token(&spec(OAuth2Grant::RefreshToken), &without, "src", due, 0),
            TokenStep::Obtain(TokenRequestKind::UserRefreshToken)
        );
        assert_eq!(
            plan_token(
                &spec(OAuth2Grant::AuthorizationCode),
                &without,
                "src",
                due,
                0
            ),
            TokenStep::AwaitAuthorization
        );
        let empty = KeptToken {
            has_access_token: false,
            ..kept("src", 0, 3600)
        };
        assert_eq!(
            plan_token(&spec(OAuth2Grant::RefreshToken), &empty, "src", at(1), 0),
            TokenStep::Obtain(TokenRequestKind::KeptRefreshToken)
        );
    }

    #[test]
    fn the_source_follows_what_matters_for_each_grant() {
        let cc = spec(OAuth2Grant::ClientCredentials);
        assert_ne!(
            token_source(&cc, b"id", b"s1", None),
            token_source(&cc, b"id", b"s2", None)
        );
        let rt = spec(OAuth2Grant::RefreshToken);
        assert_eq!(
            token_source(&rt, b"id", b"s1", Some(b"rt")),
            token_source(&rt, b"id", b"s2", Some(b"rt")),
            "a rotated client secret keeps the refresh token"
        );
        assert_ne!(
            token_source(&rt, b"id", b"s1", Some(b"rt1")),
            token_source(&rt, b"id", b"s1", Some(b"rt2"))
        );
        assert_ne!(
            token_source(&cc, b"id", b"s1", None),
            token_source(&rt, b"id", b"s1", None)
        );
    }

    #[test]
    fn provider_texts_lose_the_secrets_they_quote() {
        let text =
            "invalid_grant: refresh token rt-SECRET-1 was revoked for client cs-TOP\n\n(see docs)";
        assert_eq!(
            strip_secrets(text, &["rt-SECRET-1", "cs-TOP", ""], 200),
            "invalid_grant: refresh token [REDACTED] was revoked for client [REDACTED] (see docs)"
        );
        let long = "é".repeat(500);
        let cut = strip_secrets(&long, &[], 100);
        assert_eq!(cut.chars().count(), 101);
    }

    #[test]
    fn waits_are_at_least_a_second() {
        assert_eq!(wait_until(at(5), at(10)), Duration::from_secs(1));
        assert_eq!(wait_until(at(70), at(10)), Duration::from_secs(60));
    }
}
