//! Removing secret values from text a remote server echoes back (error
//! bodies, response headers) before it reaches an output, an error or a log
//! line. It never prints the values it holds.

use base64::Engine as _;
use std::fmt;

/// Replaces secret values (and the encodings a server may echo them in:
/// percent- and form-encoding, base64, HTTP Basic credentials) with `[REDACTED]`.
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("values", &self.needles.len())
            .finish()
    }
}

/// What replaces a secret value in text.
pub const REDACTED: &str = "[REDACTED]";

impl Redactor {
    /// Adds a secret value and its common encodings.
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let base64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let url_encoded = percent_encode(secret);
        let form_encoded = url_encoded.replace("%20", "+");
        for needle in [secret.to_owned(), base64, url_encoded, form_encoded] {
            if !self.needles.contains(&needle) {
                self.needles.push(needle);
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        self.needles
            .sort_by_key(|needle| std::cmp::Reverse(needle.len()));
    }

    /// Adds HTTP Basic credentials: both values and `base64(user:password)`.
    pub fn add_basic(&mut self, username: &str, password: &str) {
        self.add(username);
        self.add(password);
        self.add(&format!("{username}:{password}"));
    }

    /// Merges another redactor's values into this one.
    pub fn extend(&mut self, other: &Redactor) {
        for needle in &other.needles {
            if !self.needles.contains(needle) {
                self.needles.push(needle.clone());
            }
        }
        self.needles
            .sort_by_key(|needle| std::cmp::Reverse(needle.len()));
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = text.replace(needle.as_str(), REDACTED);
            }
        }
        text
    }

    /// `value` with secret values replaced in every string (and object key).
    pub fn redact_json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.needles.is_empty() {
            return value;
        }
        match value {
            Value::String(text) => Value::String(self.redact(&text)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(key, v)| (self.redact(&key), self.redact_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (as used in
/// `application/x-www-form-urlencoded` and query strings).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_covers_encodings_and_json() {
        let mut redactor = Redactor::default();
        redactor.add_basic("ada", "p@ss word");
        let basic = base64::engine::general_purpose::STANDARD.encode("ada:p@ss word");
        let text = format!("Basic {basic} p%40ss%20word p@ss word");
        assert_eq!(
            redactor.redact(&text),
            "Basic [REDACTED] [REDACTED] [REDACTED]"
        );
        let json = serde_json::json!({"echo": ["p@ss word"], "n": 1});
        assert_eq!(
            redactor.redact_json(json),
            serde_json::json!({"echo": ["[REDACTED]"], "n": 1})
        );
        assert!(!format!("{redactor:?}").contains("p@ss"));
    }
}
