//! The admission webhook's own certificate authority and serving
//! certificate: what the Secret holding them must contain, when to renew
//! them, and issuing new ones (rcgen, ring). No I/O: [`plan_certificates`]
//! takes the stored state and `now`, and [`issue`] returns the new state for
//! the shell to write.
//!
//! - The CA lives [`CertPolicy::ca_lifetime`] (5 years) and is replaced
//!   [`CertPolicy::ca_renew_before`] (1 year) before it expires; the old CA
//!   stays in the `caBundle` beside the new one until it expires, so API
//!   servers that still hold a serving certificate chain to it trust both.
//! - The serving certificate lives [`CertPolicy::cert_lifetime`] (1 year)
//!   and is renewed [`CertPolicy::cert_renew_before`] (30 days) before it
//!   expires, or at once when the DNS names it must cover change.
//!
//! Expiry times are stored as annotations beside the PEM data, so no X.509
//! parser is needed to decide.

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::collections::BTreeMap;

/// Secret key of the current CA certificate (PEM).
pub const CA_CERT_KEY: &str = "ca.crt";
/// Secret key of the current CA's private key (PEM).
pub const CA_KEY_KEY: &str = "ca.key";
/// Secret key of the trusted CA certificates: the current and, during a
/// CA rotation, the previous (PEM, concatenated). This is the `caBundle`.
pub const CA_BUNDLE_KEY: &str = "ca-bundle.crt";
/// Secret key of the serving certificate (PEM).
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Secret key of the serving certificate's private key (PEM).
pub const TLS_KEY_KEY: &str = "tls.key";
/// Annotation: when the CA expires (RFC 3339).
pub const CA_NOT_AFTER: &str = "sluice.dev/ca-not-after";
/// Annotation: when the serving certificate expires (RFC 3339).
pub const CERT_NOT_AFTER: &str = "sluice.dev/cert-not-after";
/// Annotation: the DNS names the serving certificate covers, comma separated.
pub const CERT_NAMES: &str = "sluice.dev/cert-dns-names";
/// Annotation: when the previous CA (still in the bundle) expires.
pub const PREVIOUS_CA_NOT_AFTER: &str = "sluice.dev/previous-ca-not-after";
/// Common name of the CA.
const CA_COMMON_NAME: &str = "sluice-admission-ca";

/// Lifetimes and renewal margins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertPolicy {
    /// How long a new CA is valid.
    pub ca_lifetime: Duration,
    /// Replace the CA this long before it expires.
    pub ca_renew_before: Duration,
    /// How long a new serving certificate is valid.
    pub cert_lifetime: Duration,
    /// Renew the serving certificate this long before it expires.
    pub cert_renew_before: Duration,
}

impl Default for CertPolicy {
    fn default() -> Self {
        Self {
            ca_lifetime: Duration::days(5 * 365),
            ca_renew_before: Duration::days(365),
            cert_lifetime: Duration::days(365),
            cert_renew_before: Duration::days(30),
        }
    }
}

/// What the Secret holds (string data and annotations).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredCerts {
    /// Data keys → PEM text.
    pub data: BTreeMap<String, String>,
    /// The Secret's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl StoredCerts {
    fn time(&self, annotation: &str) -> Option<DateTime<Utc>> {
        self.annotations
            .get(annotation)
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|time| time.with_timezone(&Utc))
    }

    fn has(&self, key: &str) -> bool {
        self.data.get(key).is_some_and(|value| !value.is_empty())
    }

    /// The `caBundle` to publish.
    pub fn ca_bundle(&self) -> Option<&str> {
        self.data.get(CA_BUNDLE_KEY).map(String::as_str)
    }

    /// The serving certificate chain and key (PEM).
    pub fn serving(&self) -> Option<(&str, &str)> {
        Some((
            self.data.get(TLS_CERT_KEY)?.as_str(),
            self.data.get(TLS_KEY_KEY)?.as_str(),
        ))
    }

    /// When the serving certificate expires, if known.
    pub fn cert_not_after(&self) -> Option<DateTime<Utc>> {
        self.time(CERT_NOT_AFTER)
    }
}

/// What to do with the stored certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertAction {
    /// They are good for now.
    Keep,
    /// Issue a new serving certificate from the current CA.
    IssueServing,
    /// Issue a new CA (keeping the old one trusted) and a serving certificate.
    IssueAll,
}

/// Decides whether to renew anything.
pub fn plan_certificates(
    stored: Option<&StoredCerts>,
    dns_names: &[String],
    policy: &CertPolicy,
    now: DateTime<Utc>,
) -> CertAction {
    let Some(stored) = stored else {
        return CertAction::IssueAll;
    };
    let complete = [
        CA_CERT_KEY,
        CA_KEY_KEY,
        CA_BUNDLE_KEY,
        TLS_CERT_KEY,
        TLS_KEY_KEY,
    ]
    .iter()
    .all(|key| stored.has(key));
    let (Some(ca_expiry), Some(cert_expiry), true) = (
        stored.time(CA_NOT_AFTER),
        stored.time(CERT_NOT_AFTER),
        complete,
    ) else {
        return CertAction::IssueAll;
    };
    if ca_expiry - policy.ca_renew_before <= now {
        return CertAction::IssueAll;
    }
    let names = stored
        .annotations
        .get(CERT_NAMES)
        .map(String::as_str)
        .unwrap_or_default();
    if cert_expiry - policy.cert_renew_before <= now || names != dns_names.join(",") {
        return CertAction::IssueServing;
    }
    CertAction::Keep
}

/// Why issuing failed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// rcgen refused the parameters or the key.
    #[error("failed to issue the {what} certificate: {source}")]
    Rcgen {
        /// "CA" or "serving".
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A time outside what X.509 can carry.
    #[error("failed to convert the expiry time {0} for a certificate")]
    Time(DateTime<Utc>),
}

fn rcgen_error(what: &'static str) -> impl Fn(rcgen::Error) -> IssueError {
    move |source| IssueError::Rcgen { what, source }
}

fn offset(time: DateTime<Utc>) -> Result<time::OffsetDateTime, IssueError> {
    time::OffsetDateTime::from_unix_timestamp(time.timestamp()).map_err(|_| IssueError::Time(time))
}

/// The CA's parameters; rebuilt the same way to sign with a stored CA key
/// (the issuer name and key are all a signature needs).
fn ca_params(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CertificateParams, IssueError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = offset(not_before)?;
    params.not_after = offset(not_after)?;
    Ok(params)
}

/// Carries out `action` on `stored` and returns what the Secret must hold
/// afterwards (`Keep` returns `stored` unchanged).
pub fn issue(
    action: &CertAction,
    stored: Option<&StoredCerts>,
    dns_names: &[String],
    policy: &CertPolicy,
    now: DateTime<Utc>,
) -> Result<StoredCerts, IssueError> {
    let mut next = stored.cloned().unwrap_or_default();
    let not_before = now - Duration::hours(1);
    let (ca_key, ca_expiry) = match action {
        CertAction::Keep => return Ok(next),
        CertAction::IssueAll => {
            let key = KeyPair::generate().map_err(rcgen_error("CA"))?;
            let expiry = now + policy.ca_lifetime;
            let certificate = ca_params(not_before, expiry)?
                .self_signed(&key)
                .map_err(rcgen_error("CA"))?;
            let mut bundle = certificate.pem();
            // Keep the outgoing CA trusted while it is still valid.
            let previous = stored.and_then(|old| {
                let expiry = old.time(CA_NOT_AFTER).filter(|expiry| *expiry > now)?;
                Some((old.data.get(CA_CERT_KEY)?.clone(), expiry))
            });
            next.annotations.remove(PREVIOUS_CA_NOT_AFTER);
            if let Some((pem, expiry)) = previous {
                bundle.push_str(&pem);
                next.annotations
                    .insert(PREVIOUS_CA_NOT_AFTER.into(), expiry.to_rfc3339());
            }
            next.data.insert(CA_CERT_KEY.into(), certificate.pem());
            next.data.insert(CA_KEY_KEY.into(), key.serialize_pem());
            next.data.insert(CA_BUNDLE_KEY.into(), bundle);
            next.annotations
                .insert(CA_NOT_AFTER.into(), expiry.to_rfc3339());
            (key, expiry)
        }
        CertAction::IssueServing => {
            let pem = next.data.get(CA_KEY_KEY).cloned().unwrap_or_default();
            let key = KeyPair::from_pem(&pem).map_err(rcgen_error("CA"))?;
            let expiry = next.time(CA_NOT_AFTER).unwrap_or(now);
            // Drop a previous CA from the bundle once it has expired.
            if next.time(PREVIOUS_CA_NOT_AFTER).is_some_and(|t| t <= now)
                && let Some(current) = next.data.get(CA_CERT_KEY).cloned()
            {
                next.data.insert(CA_BUNDLE_KEY.into(), current);
                next.annotations.remove(PREVIOUS_CA_NOT_AFTER);
            }
            (key, expiry)
        }
    };
    let ca_start = next
        .time(CA_NOT_AFTER)
        .map(|end| end - policy.ca_lifetime - Duration::hours(1))
        .unwrap_or(not_before);
    let issuer = Issuer::new(ca_params(ca_start, ca_expiry)?, ca_key);
    let key = KeyPair::generate().map_err(rcgen_error("serving"))?;
    let mut params = CertificateParams::new(dns_names.to_vec()).map_err(rcgen_error("serving"))?;
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        dns_names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = name;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    // Never outlive the CA that signs it.
    let cert_expiry = (now + policy.cert_lifetime).min(ca_expiry);
    params.not_before = offset(not_before)?;
    params.not_after = offset(cert_expiry)?;
    let certificate = params
        .signed_by(&key, &issuer)
        .map_err(rcgen_error("serving"))?;
    next.data.insert(TLS_CERT_KEY.into(), certificate.pem());
    next.data.insert(TLS_KEY_KEY.into(), key.serialize_pem());
    next.annotations
        .insert(CERT_NOT_AFTER.into(), cert_expiry.to_rfc3339());
    next.annotations
        .insert(CERT_NAMES.into(), dns_names.join(","));
    Ok(next)
}

#[cfg(test)]
#[path = "certs_tests.rs"]
mod tests;
