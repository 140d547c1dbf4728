//! A run's input: the workflow's defaults merged under it, then checked
//! against `spec.input.schema` — a small JSON-schema subset (type,
//! required, properties, items, enum, minimum/maximum,
//! minLength/maxLength, pattern). Shared with the operator, which checks
//! WorkflowRun inputs the same way. Pure.

use serde_json::{Map, Value};
use sluice_crds::workflow::InputSpec;

/// Keywords the checker understands; others are ignored (`description`, …).
const TYPES: [&str; 7] = [
    "object", "array", "string", "number", "integer", "boolean", "null",
];

/// One way the input breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input{path}: {message}")]
pub struct InputError {
    /// Path inside the input, e.g. `.user.email` (empty for the whole input).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Merges the defaults under `input` (top-level fields the input does not
/// set) and checks the result. `null` input counts as `{}`.
pub fn prepare(spec: Option<&InputSpec>, input: Value) -> Result<Value, Vec<InputError>> {
    let mut input = if input.is_null() {
        Value::Object(Map::new())
    } else {
        input
    };
    if let (Some(Value::Object(defaults)), Value::Object(fields)) =
        (spec.and_then(|s| s.defaults.as_ref()), &mut input)
    {
        for (key, value) in defaults {
            fields.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    if let Some(schema) = spec.and_then(|s| s.schema.as_ref()) {
        let mut errors = Vec::new();
        check(schema, &input, String::new(), &|_| false, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
    }
    Ok(input)
}

/// The message for an input that breaks workflow `workflow`'s schema, shared
/// by the run controller (Completed condition) and admission (refusal).
pub fn mismatch_message(workflow: &str, errors: &[InputError]) -> String {
    format!(
        "spec.input does not match workflow {workflow:?}'s input schema: {}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// Checks that a schema is usable: an object, known types, compiling patterns.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let Value::Object(fields) = schema else {
        return Err(
            "the input schema must be an object, e.g. {type: object, properties: {...}}".into(),
        );
    };
    if let Some(type_) = fields.get("type") {
        let names: Vec<&str> = match type_ {
            Value::String(name) => vec![name.as_str()],
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            _ => vec![""],
        };
        for name in names {
            if !TYPES.contains(&name) {
                return Err(format!(
                    "unknown type {name:?}: use one of {}",
                    TYPES.join(", ")
                ));
            }
        }
    }
    if let Some(pattern) = fields.get("pattern").and_then(Value::as_str)
        && let Err(error) = regex::Regex::new(pattern)
    {
        return Err(format!(
            "pattern {pattern:?} is not a valid regular expression: {error}"
        ));
    }
    if let Some(Value::Object(properties)) = fields.get("properties") {
        for (name, property) in properties {
            check_schema(property).map_err(|e| format!("property {name:?}: {e}"))?;
        }
    }
    if let Some(items) = fields.get("items") {
        check_schema(items).map_err(|e| format!("items: {e}"))?;
    }
    Ok(())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, expected: &str) -> bool {
    let actual = type_name(value);
    actual == expected
        || (expected == "number" && actual == "integer")
        || (expected == "integer" && value.as_f64().is_some_and(|f| f.fract() == 0.0))
}

/// Checks `value` against `schema`, skipping every value for which
/// `unknown` is true (a `${{ }}` template, whose value comes at run time).
/// Each error's path is relative to `value`.
pub fn check_value(
    schema: &Value,
    value: &Value,
    unknown: &dyn Fn(&Value) -> bool,
) -> Vec<InputError> {
    let mut errors = Vec::new();
    check(schema, value, String::new(), unknown, &mut errors);
    errors
}

fn check(
    schema: &Value,
    value: &Value,
    path: String,
    unknown: &dyn Fn(&Value) -> bool,
    errors: &mut Vec<InputError>,
) {
    let Value::Object(schema) = schema else {
        return;
    };
    if unknown(value) {
        return;
    }
    let mut fail = |message: String| {
        errors.push(InputError {
            path: path.clone(),
            message,
        })
    };
    if let Some(type_) = schema.get("type") {
        let expected: Vec<&str> = match type_ {
            Value::String(name) => vec![name.as_str()],
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !expected.is_empty() && !expected.iter().any(|t| has_type(value, t)) {
            fail(format!(
                "expected {}, got {}",
                expected.join(" or "),
                type_name(value)
            ));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        let shown: Vec<String> = allowed.iter().map(Value::to_string).collect();
        fail(format!("{value} is not one of {}", shown.join(", ")));
    }
    if let Some(number) = value.as_f64() {
        if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64)
            && number < minimum
        {
            fail(format!("{value} is less than the minimum {minimum}"));
        }
        if let Some(maximum) = schema.get("maximum").and_then(Value::as_f64)
            && number > maximum
        {
            fail(format!("{value} is more than the maximum {maximum}"));
        }
    }
    if let Value::String(text) = value {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            fail(format!(
                "is {length} characters long, shorter than minLength {min}"
            ));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            fail(format!(
                "is {length} characters long, longer than maxLength {max}"
            ));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
            && let Ok(regex) = regex::Regex::new(pattern)
            && !regex.is_match(text)
        {
            fail(format!("{text:?} does not match the pattern {pattern:?}"));
        }
    }
    if let Value::Object(fields) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(name) {
                    fail(format!("missing required field {name:?}"));
                }
            }
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, property) in properties {
                if let Some(field) = fields.get(name) {
                    check(property, field, format!("{path}.{name}"), unknown, errors);
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            check(
                item_schema,
                item,
                format!("{path}[{index}]"),
                unknown,
                errors,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(schema: Value, defaults: Value) -> InputSpec {
        InputSpec {
            schema: Some(schema),
            defaults: Some(defaults),
        }
    }

    #[test]
    fn defaults_fill_unset_top_level_fields() {
        let spec = spec(json!({"type": "object"}), json!({"source": "web", "n": 1}));
        let input = prepare(Some(&spec), json!({"n": 2})).unwrap();
        assert_eq!(input, json!({"source": "web", "n": 2}));
        assert_eq!(prepare(Some(&spec), Value::Null).unwrap()["n"], json!(1));
    }

    #[test]
    fn every_keyword_is_checked_and_all_errors_collected() {
        let schema = json!({
            "type": "object",
            "required": ["email", "age"],
            "properties": {
                "email": {"type": "string", "pattern": "^[^@]+@[^@]+$", "maxLength": 10},
                "plan": {"enum": ["free", "pro"]},
                "seats": {"type": "integer", "minimum": 1, "maximum": 5},
                "name": {"type": "string", "minLength": 2},
                "tags": {"type": "array", "items": {"type": "string"}},
            }
        });
        let errors = prepare(
            Some(&spec(schema, json!({}))),
            json!({"email": "not-an-email-at-all", "plan": "gold", "seats": 9, "name": "A", "tags": ["a", 1]}),
        )
        .unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for expected in [
            "input: missing required field \"age\"",
            "input.email: \"not-an-email-at-all\" does not match",
            "input.email: is 19 characters long, longer than maxLength 10",
            "input.plan: \"gold\" is not one of \"free\", \"pro\"",
            "input.seats: 9 is more than the maximum 5",
            "input.name: is 1 characters long, shorter than minLength 2",
            "input.tags[1]: expected string, got integer",
        ] {
            assert!(
                shown.iter().any(|s| s.starts_with(expected)),
                "{expected} not in {shown:#?}"
            );
        }
    }

    #[test]
    fn integers_count_as_numbers() {
        let schema = spec(json!({"type": "number", "minimum": 0}), json!(null));
        assert!(prepare(Some(&schema), json!(3)).is_ok());
    }

    #[test]
    fn bad_schemas_are_reported() {
        assert!(
            check_schema(&json!({"type": "strng"}))
                .unwrap_err()
                .contains("strng")
        );
        assert!(
            check_schema(&json!({"properties": {"a": {"pattern": "("}}}))
                .unwrap_err()
                .contains("pattern")
        );
    }
}
