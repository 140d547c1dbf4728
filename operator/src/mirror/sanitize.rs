//! Making payloads storable, and secrets unstorable.
//!
//! PostgreSQL rejects NUL in `text` and `\u0000` in `jsonb`, rejects invalid
//! UTF-8, errors on over-long `VARCHAR(n)` values and on very deep JSON. One
//! bad payload must never fail a batch, so every string the mirror writes
//! passes through here first:
//! - NUL becomes the six characters `\u0000` (counted in [`Notes`]);
//! - invalid UTF-8 becomes U+FFFD (noted);
//! - JSON deeper than [`Limits::max_depth`] has the deep subtree replaced by
//!   a `{"$sluice": {"depthCapped": …}}` marker (noted);
//! - JSON larger than [`Limits::payload_cap_bytes`] once serialised is
//!   replaced by `{"$sluice": {"truncated": true, "originalBytes": …,
//!   "capBytes": …}, "preview": "<start of the JSON text>"}` (noted);
//! - texts (errors, log lines) are cut at a character boundary (noted).
//!
//! [`mask_secrets`] removes values of secret-looking keys and passwords in
//! URLs from configuration before it is stored. Nothing here does I/O.

use serde_json::{Map, Value, json};

/// What a NUL character is stored as.
pub const NUL_ESCAPE: &str = "\\u0000";
/// What a masked secret value is stored as.
pub const MASK: &str = "***";

/// Size and shape limits for stored payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Serialised size cap of one JSON payload (node input, output, result).
    pub payload_cap_bytes: usize,
    /// Cap of one error message or similar text.
    pub text_cap_bytes: usize,
    /// Cap of one log line.
    pub log_line_cap_bytes: usize,
    /// Deepest JSON nesting kept.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            payload_cap_bytes: 1024 * 1024,
            text_cap_bytes: 64 * 1024,
            log_line_cap_bytes: 64 * 1024,
            max_depth: 64,
        }
    }
}

/// A payload that was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub field: &'static str,
    pub original_bytes: usize,
    pub cap_bytes: usize,
}

/// What sanitising changed, stored next to the row it concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    pub nul_escaped: usize,
    pub invalid_utf8: Vec<&'static str>,
    pub truncated: Vec<Truncation>,
    pub depth_capped: Vec<&'static str>,
}

impl Notes {
    pub fn is_empty(&self) -> bool {
        self.nul_escaped == 0
            && self.invalid_utf8.is_empty()
            && self.truncated.is_empty()
            && self.depth_capped.is_empty()
    }

    /// `None` when nothing was changed, so clean rows carry no notes.
    pub fn to_json(&self) -> Option<Value> {
        if self.is_empty() {
            return None;
        }
        let mut notes = Map::new();
        if self.nul_escaped > 0 {
            notes.insert("nulEscaped".into(), json!(self.nul_escaped));
        }
        if !self.invalid_utf8.is_empty() {
            notes.insert("invalidUtf8".into(), json!(self.invalid_utf8));
        }
        if !self.truncated.is_empty() {
            let truncated: Vec<Value> = self
                .truncated
                .iter()
                .map(|cut| {
                    json!({"field": cut.field, "originalBytes": cut.original_bytes, "capBytes": cut.cap_bytes})
                })
                .collect();
            notes.insert("truncated".into(), Value::Array(truncated));
        }
        if !self.depth_capped.is_empty() {
            notes.insert("depthCapped".into(), json!(self.depth_capped));
        }
        Some(Value::Object(notes))
    }

    /// Adds the notes to a JSON object (log metadata) under `sluice`.
    pub fn merge_into(&self, metadata: Option<Value>) -> Option<Value> {
        let Some(notes) = self.to_json() else {
            return metadata;
        };
        let mut object = match metadata {
            Some(Value::Object(object)) => object,
            Some(other) => {
                let mut object = Map::new();
                object.insert("value".into(), other);
                object
            }
            None => Map::new(),
        };
        object.insert("sluice".into(), notes);
        Some(Value::Object(object))
    }
}

/// The largest index `<= at` that is a char boundary of `text`.
fn floor_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    let mut index = at;
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn escape_nul(text: &str, notes: &mut Notes) -> Option<String> {
    if !text.contains('\0') {
        return None;
    }
    notes.nul_escaped += text.matches('\0').count();
    Some(text.replace('\0', NUL_ESCAPE))
}

/// A text for a `TEXT` column: NULs escaped, cut to `cap_bytes`.
pub fn text(value: &str, cap_bytes: usize, field: &'static str, notes: &mut Notes) -> String {
    let escaped = escape_nul(value, notes);
    let mut value = escaped.unwrap_or_else(|| value.to_owned());
    if value.len() > cap_bytes {
        notes.truncated.push(Truncation {
            field,
            original_bytes: value.len(),
            cap_bytes,
        });
        value.truncate(floor_boundary(&value, cap_bytes));
    }
    value
}

/// Bytes that should be text (a log line): invalid UTF-8 repaired, then
/// as [`text`].
pub fn bytes_text(
    value: &[u8],
    cap_bytes: usize,
    field: &'static str,
    notes: &mut Notes,
) -> String {
    match std::str::from_utf8(value) {
        Ok(valid) => text(valid, cap_bytes, field, notes),
        Err(_) => {
            notes.invalid_utf8.push(field);
            text(&String::from_utf8_lossy(value), cap_bytes, field, notes)
        }
    }
}

/// A name for a `VARCHAR(max_chars)` column: NULs escaped, cut silently
/// (Kubernetes names fit; this only keeps a freak value from failing a row).
pub fn varchar(value: &str, max_chars: usize) -> String {
    let value = if value.contains('\0') {
        value.replace('\0', NUL_ESCAPE)
    } else {
        value.to_owned()
    };
    match value.char_indices().nth(max_chars) {
        Some((end, _)) => value[..end].to_owned(),
        None => value,
    }
}

/// True when `value` has a NUL anywhere or nests deeper than `max_depth`.
fn needs_cleaning(value: &Value, depth: usize, max_depth: usize) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => {
            (depth >= max_depth && !items.is_empty())
                || items
                    .iter()
                    .any(|item| needs_cleaning(item, depth + 1, max_depth))
        }
        Value::Object(fields) => {
            (depth >= max_depth && !fields.is_empty())
                || fields.iter().any(|(key, item)| {
                    key.contains('\0') || needs_cleaning(item, depth + 1, max_depth)
                })
        }
        _ => false,
    }
}

fn depth_marker(max_depth: usize) -> Value {
    json!({"$sluice": {"depthCapped": true, "maxDepth": max_depth}})
}

fn clean(
    value: &Value,
    depth: usize,
    max_depth: usize,
    capped: &mut bool,
    notes: &mut Notes,
) -> Value {
    match value {
        Value::String(text) => {
            Value::String(escape_nul(text, notes).unwrap_or_else(|| text.clone()))
        }
        Value::Array(items) if depth >= max_depth && !items.is_empty() => {
            *capped = true;
            depth_marker(max_depth)
        }
        Value::Object(fields) if depth >= max_depth && !fields.is_empty() => {
            *capped = true;
            depth_marker(max_depth)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| clean(item, depth + 1, max_depth, capped, notes))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, item)| {
                    let key = escape_nul(key, notes).unwrap_or_else(|| key.clone());
                    (key, clean(item, depth + 1, max_depth, capped, notes))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A JSON payload as `jsonb` text: NULs escaped, depth and size capped.
pub fn json_text(value: &Value, limits: &Limits, field: &'static str, notes: &mut Notes) -> String {
    let cleaned;
    let value = if needs_cleaning(value, 0, limits.max_depth) {
        let mut capped = false;
        cleaned = clean(value, 0, limits.max_depth, &mut capped, notes);
        if capped {
            notes.depth_capped.push(field);
        }
        &cleaned
    } else {
        value
    };
    // Serialising a `Value` cannot fail (all keys are strings).
    let serialised = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    if serialised.len() <= limits.payload_cap_bytes {
        return serialised;
    }
    notes.truncated.push(Truncation {
        field,
        original_bytes: serialised.len(),
        cap_bytes: limits.payload_cap_bytes,
    });
    // Escaping may double the preview's size; half the cap keeps the row
    // near the cap.
    let preview = &serialised[..floor_boundary(&serialised, limits.payload_cap_bytes / 2)];
    json!({
        "$sluice": {"truncated": true, "originalBytes": serialised.len(), "capBytes": limits.payload_cap_bytes},
        "preview": preview,
    })
    .to_string()
}

/// As [`json_text`], for an optional payload.
pub fn json_opt(
    value: Option<&Value>,
    limits: &Limits,
    field: &'static str,
    notes: &mut Notes,
) -> Option<String> {
    value.map(|value| json_text(value, limits, field, notes))
}

const SECRET_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "credential",
    "private",
    "cookie",
    "authorization",
    "signature",
];

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
fn mask_url_password(text: &str) -> Option<String> {
    let scheme_end = text.find("://")? + 3;
    let authority_end = text[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |end| scheme_end + end);
    let at = text[scheme_end..authority_end].rfind('@')? + scheme_end;
    let colon = text[scheme_end..at].find(':')? + scheme_end;
    Some(format!("{}{}{}", &text[..=colon], MASK, &text[at..]))
}

/// Configuration with secret-looking values replaced by [`MASK`].
pub fn mask_secrets(value: &Value) -> Value {
    mask_at(value, 0)
}

fn mask_at(value: &Value, depth: usize) -> Value {
    // Deeper than any real configuration: drop rather than recurse on.
    if depth > 64 {
        return Value::String(MASK.to_owned());
    }
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, item)| {
                    let masked = if is_secret_key(key) && !item.is_null() {
                        Value::String(MASK.to_owned())
                    } else {
                        mask_at(item, depth + 1)
                    };
                    (key.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| mask_at(item, depth + 1)).collect())
        }
        Value::String(text) => {
            Value::String(mask_url_password(text).unwrap_or_else(|| text.clone()))
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Value {
        let mut value = json!("leaf");
        for _ in 0..depth {
            value = json!({ "next": value });
        }
        value
    }

    #[test]
    fn nul_is_escaped_in_strings_and_keys() {
        let mut notes = Notes::default();
        let stored = json_text(
            &json!({"a\u{0}b": ["x\u{0}y"]}),
            &Limits::default(),
            "output",
            &mut notes,
        );
        assert_eq!(stored, r#"{"a\\u0000b":["x\\u0000y"]}"#);
        assert_eq!(notes.nul_escaped, 2);
    }

    #[test]
    fn clean_json_is_serialised_unchanged() {
        let mut notes = Notes::default();
        let stored = json_text(
            &json!({"a": [1, "two"]}),
            &Limits::default(),
            "output",
            &mut notes,
        );
        assert_eq!(stored, r#"{"a":[1,"two"]}"#);
        assert!(notes.is_empty());
        assert_eq!(notes.to_json(), None);
    }

    #[test]
    fn large_json_is_replaced_by_a_recorded_preview() {
        let limits = Limits {
            payload_cap_bytes: 100,
            ..Limits::default()
        };
        let mut notes = Notes::default();
        let big = json!({"body": "é".repeat(500)});
        let stored: Value =
            serde_json::from_str(&json_text(&big, &limits, "output", &mut notes)).unwrap();
        assert_eq!(stored["$sluice"]["truncated"], json!(true));
        assert_eq!(stored["$sluice"]["originalBytes"], json!(1011));
        assert_eq!(stored["$sluice"]["capBytes"], json!(100));
        assert!(
            stored["preview"]
                .as_str()
                .unwrap()
                .starts_with(r#"{"body":"é"#)
        );
        assert_eq!(
            notes.truncated,
            vec![Truncation {
                field: "output",
                original_bytes: 1011,
                cap_bytes: 100
            }]
        );
    }

    #[test]
    fn deep_json_is_capped_at_max_depth() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let mut notes = Notes::default();
        let stored: Value =
            serde_json::from_str(&json_text(&nested(10), &limits, "input", &mut notes)).unwrap();
        assert_eq!(
            stored["next"]["next"]["next"]["$sluice"]["depthCapped"],
            json!(true)
        );
        assert_eq!(notes.depth_capped, vec!["input"]);
        let mut notes = Notes::default();
        json_text(&nested(3), &limits, "input", &mut notes);
        assert!(notes.is_empty(), "three levels fit a depth of three");
    }

    #[test]
    fn texts_are_cut_at_char_boundaries() {
        let mut notes = Notes::default();
        assert_eq!(text("ééé", 3, "error", &mut notes), "é");
        assert_eq!(notes.truncated[0].original_bytes, 6);
        assert_eq!(varchar("abc\0def", 5), r"abc\u");
        assert_eq!(varchar("héllo", 10), "héllo");
    }

    #[test]
    fn invalid_utf8_is_repaired_and_noted() {
        let mut notes = Notes::default();
        assert_eq!(
            bytes_text(b"ok \xff\xfe done\0", 100, "message", &mut notes),
            "ok \u{fffd}\u{fffd} done\\u0000"
        );
        assert_eq!(notes.invalid_utf8, vec!["message"]);
        assert_eq!(notes.nul_escaped, 1);
        let merged = notes.merge_into(Some(json!({"pod": "p"}))).unwrap();
        assert_eq!(merged["pod"], json!("p"));
        assert_eq!(merged["sluice"]["invalidUtf8"], json!(["message"]));
    }

    #[test]
    fn secrets_are_masked() {
        let masked = mask_secrets(&json!({
            "baseUrl": "https://crm.example.com",
            "auth": "bearer",
            "apiToken": "abc",
            "nested": {"Password": "hunter2", "dsn": "postgres://app:hunter2@db:5432/app?x=1"},
            "clientSecret": null,
        }));
        assert_eq!(
            masked,
            json!({
                "baseUrl": "https://crm.example.com",
                "auth": "bearer",
                "apiToken": "***",
                "nested": {"Password": "***", "dsn": "postgres://app:***@db:5432/app?x=1"},
                "clientSecret": null,
            })
        );
    }
}
