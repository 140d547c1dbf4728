//! Names the operator derives from other names: the Job of a run, the run
//! of a schedule slot, the credential Secret of a run, the OAuth2 token
//! Secret of a Connection.
//!
//! Each derivation is one pure function, so every component (and every
//! operator replica) computes the same name and creating it twice yields
//! AlreadyExists instead of a duplicate. Names that end up in labels must
//! fit a DNS-1123 label (63 characters): longer ones are truncated and end
//! with a short hash of the full name, so two long names never collide.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// Longest DNS-1123 label, the limit of a label value such as `job-name`.
pub const MAX_LABEL_LEN: usize = 63;

/// Longest object name (DNS-1123 subdomain).
pub const MAX_NAME_LEN: usize = 253;

/// Length of the hash suffix appended to shortened names.
const HASH_LEN: usize = 10;

/// Name of the Job executing the run named `run_name`.
pub fn job_name(run_name: &str) -> String {
    fit_label(run_name)
}

/// Name of the Secret holding the run API credential of `run_name`'s runner.
pub fn run_credential_secret_name(run_name: &str) -> String {
    fit_label(&format!("{run_name}-runner-token"))
}

/// Name of the operator-managed Secret holding the OAuth2 access token of
/// the Connection named `connection`.
pub fn oauth2_token_secret_name(connection: &str) -> String {
    fit_label(&format!("{connection}-oauth2-token"))
}

/// Name of the WorkflowRun a schedule creates for the slot whose nominal
/// time is `slot`: `<schedule>-<unix seconds>`.
pub fn scheduled_run_name(schedule_name: &str, slot: DateTime<Utc>) -> String {
    let suffix = format!("-{}", slot.timestamp());
    fit(schedule_name, &suffix, MAX_NAME_LEN)
}

/// `name` as a DNS-1123 label: lowercase alphanumerics and '-', at most 63
/// characters, shortened with a hash of the original when longer.
pub fn fit_label(name: &str) -> String {
    fit(name, "", MAX_LABEL_LEN)
}

/// `stem + suffix`, sanitised to label characters and at most `limit`
/// characters; when the stem must be cut, a hash of the full name follows it.
fn fit(stem: &str, suffix: &str, limit: usize) -> String {
    let clean: String = stem
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    let unchanged = clean == stem;
    if unchanged && clean.len() + suffix.len() <= limit {
        return format!("{clean}{suffix}");
    }
    let hash = short_hash(&format!("{stem}{suffix}"));
    let room = limit.saturating_sub(suffix.len() + HASH_LEN + 1);
    let head = clean[..clean.len().min(room)].trim_end_matches('-');
    let head = if head.is_empty() { "x" } else { head };
    format!("{head}-{hash}{suffix}")
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(digest)[..HASH_LEN].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn is_label(name: &str) -> bool {
        name.len() <= MAX_LABEL_LEN
            && !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn short_names_are_kept() {
        assert_eq!(job_name("triage-signup-x7k2p"), "triage-signup-x7k2p");
    }

    #[test]
    fn long_names_are_cut_and_hashed_into_a_label() {
        let long = "a".repeat(80);
        let name = job_name(&long);
        assert!(is_label(&name), "{name}");
        assert_eq!(name.len(), MAX_LABEL_LEN);
        assert_ne!(
            job_name(&format!("{long}b")),
            name,
            "different long names must not collide"
        );
        assert_eq!(job_name(&long), name, "derivation is deterministic");
    }

    #[test]
    fn invalid_label_characters_are_replaced_and_hashed() {
        let name = job_name("nightly.report");
        assert!(is_label(&name), "{name}");
        assert!(name.starts_with("nightly-report-"));
        assert_ne!(
            name,
            job_name("nightly-report"),
            "the dot and dash forms must not collide"
        );
    }

    #[test]
    fn a_cut_never_leaves_a_trailing_dash() {
        let name = job_name(&format!("{}-{}", "a".repeat(51), "b".repeat(40)));
        assert!(is_label(&name), "{name}");
    }

    #[test]
    fn scheduled_run_names_encode_the_slot() {
        let slot = Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap();
        assert_eq!(
            scheduled_run_name("nightly", slot),
            format!("nightly-{}", slot.timestamp())
        );
        let long = scheduled_run_name(&"s".repeat(300), slot);
        assert!(long.len() <= MAX_NAME_LEN && long.ends_with(&slot.timestamp().to_string()));
    }

    #[test]
    fn credential_secret_names_are_labels() {
        assert!(is_label(&run_credential_secret_name(&"r".repeat(70))));
        assert_eq!(run_credential_secret_name("r1"), "r1-runner-token");
    }
}
