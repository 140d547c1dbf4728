//! Label and field selectors, parsed from the `labelSelector` and
//! `fieldSelector` query parameters.
//!
//! Label selectors support the full set-based grammar (`a=b`, `a==b`,
//! `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`). Field selectors support
//! `=`, `==` and `!=` on any dotted path of the object (the real server
//! limits the fields per type; the stand-in accepts them all).

use serde_json::Value;

use super::status::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label or field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// Splits on commas that are not inside parentheses.
fn split_terms(input: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in input.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&input[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&input[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|term| !term.is_empty())
        .collect()
}

fn parse_set(key: &str, rest: &str) -> ApiResult<Vec<String>> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: values for {key} need parentheses"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .collect())
}

fn parse_term(term: &str) -> ApiResult<Requirement> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key.trim().to_string()));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(
            key.trim().to_string(),
            value.trim().to_string(),
        ));
    }
    if let Some((key, value)) = term.split_once("==") {
        return Ok(Requirement::Equals(
            key.trim().to_string(),
            value.trim().to_string(),
        ));
    }
    if let Some((key, value)) = term.split_once('=') {
        return Ok(Requirement::Equals(
            key.trim().to_string(),
            value.trim().to_string(),
        ));
    }
    if let Some((key, rest)) = term.split_once(" notin ") {
        let key = key.trim();
        return Ok(Requirement::NotIn(key.to_string(), parse_set(key, rest)?));
    }
    if let Some((key, rest)) = term.split_once(" in ") {
        let key = key.trim();
        return Ok(Requirement::In(key.to_string(), parse_set(key, rest)?));
    }
    if term.contains(' ') || term.contains('(') {
        return Err(ApiError::bad_request(format!(
            "unable to parse requirement: {term:?}"
        )));
    }
    Ok(Requirement::Exists(term.to_string()))
}

impl Selector {
    /// Parses a selector string; `None` or "" gives the match-all selector.
    pub fn parse(input: Option<&str>) -> ApiResult<Self> {
        let requirements = split_terms(input.unwrap_or(""))
            .into_iter()
            .map(parse_term)
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(Self { requirements })
    }

    /// Whether `lookup` (key → value, `None` when absent) satisfies every requirement.
    fn matches_with(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::Equals(key, value) => lookup(key).as_deref() == Some(value.as_str()),
                Requirement::NotEquals(key, value) => {
                    lookup(key).as_deref() != Some(value.as_str())
                }
                Requirement::In(key, values) => {
                    lookup(key).is_some_and(|found| values.contains(&found))
                }
                Requirement::NotIn(key, values) => {
                    lookup(key).is_none_or(|found| !values.contains(&found))
                }
                Requirement::Exists(key) => lookup(key).is_some(),
                Requirement::DoesNotExist(key) => lookup(key).is_none(),
            })
    }

    /// Matches against `metadata.labels`.
    pub fn matches_labels(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.matches_with(|key| {
            labels
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    }

    /// Matches against dotted field paths of the object (`metadata.name`, `status.phase`).
    pub fn matches_fields(&self, object: &Value) -> bool {
        self.matches_with(|path| {
            let mut current = object;
            for segment in path.split('.') {
                current = current.get(segment)?;
            }
            match current {
                Value::String(text) => Some(text.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn set_based_label_selector_matches_like_kubernetes() {
        let object = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let check = |selector: &str| {
            Selector::parse(Some(selector))
                .unwrap()
                .matches_labels(&object)
        };
        assert!(check("app=web"));
        assert!(check("app==web,tier"));
        assert!(!check("app!=web"));
        assert!(check("app in (db, web),!missing"));
        assert!(!check("tier notin (front)"));
        assert!(check("missing notin (x)"));
        assert!(!check("app in (db)"));
        assert!(check(""));
    }

    #[test]
    fn field_selector_reads_dotted_paths() {
        let object = json!({"metadata": {"name": "a"}, "status": {"phase": "Running"}});
        let check = |selector: &str| {
            Selector::parse(Some(selector))
                .unwrap()
                .matches_fields(&object)
        };
        assert!(check("metadata.name=a,status.phase!=Failed"));
        assert!(!check("metadata.name=b"));
    }
}
