//! `${{ jq }}` templates inside parameter values.
//!
//! A parameter block is compiled once into a [`Template`] tree that mirrors
//! the JSON value; rendering evaluates each embedded program against the
//! context. What a template yields depends on the field it is in
//! ([`FieldKind`]):
//! - a string that is exactly one template, in a field that takes any JSON
//!   (http `body`, postgres `params` …), yields the program's typed value;
//! - in a text field (shell `env`, `command`, http `headers`, `url` …) it
//!   yields the value's text: strings as they are, numbers, booleans,
//!   objects and lists as compact JSON (`null` leaves an optional field
//!   unset, and is the text `null` elsewhere, as jq's `tostring`);
//! - a string mixing text and templates interpolates the same texts, and in
//!   a `url` each spliced value is percent-encoded as one component.

use super::{CompileError, EvalError, Program, ProgramSet, val_to_json};
use jaq_json::Val;
use serde_json::Value;

/// What a parameter field takes, which decides what a template yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Any JSON: a whole-field template yields the typed value.
    Json,
    /// Text: a whole-field template yields the value's text.
    Text {
        /// Whether the field may be left out: then `null` leaves it unset.
        optional: bool,
    },
    /// A URL: text, and each value spliced into a longer URL is
    /// percent-encoded as one component (a template filling the whole URL
    /// is taken as it is).
    Url,
}

/// A compiled parameter value.
#[derive(Debug, Clone)]
pub enum Template {
    /// A value without templates, used as is.
    Literal(Value),
    /// A string that is exactly one `${{ }}` in a JSON field: yields the
    /// program's value.
    Value(Program),
    /// A string that is exactly one `${{ }}` in a text field: yields the
    /// value's text (`null` stays `null` when `keep_null`).
    TextOf {
        /// The program.
        program: Program,
        /// Whether `null` stays `null` (an optional field left unset).
        keep_null: bool,
    },
    /// A string mixing text and templates.
    Text(Vec<Segment>),
    /// A list with templates inside.
    Array(Vec<Template>),
    /// An object with templates inside.
    Object(Vec<(String, Template)>),
}

/// A piece of an interpolated string.
#[derive(Debug, Clone)]
pub enum Segment {
    /// Literal text.
    Text(String),
    /// A program whose value's text is spliced in.
    Expr(Program),
    /// A program whose value's text is spliced in percent-encoded, as one
    /// URL component.
    Encoded(Program),
}

/// A template that does not compile, at a path inside the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Path below the compiled value, e.g. `.headers.Authorization` or `.body[2]`.
    pub path: String,
    /// The template's text.
    pub template: String,
    /// Why it does not compile.
    pub error: TemplateErrorKind,
}

/// Why a template does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateErrorKind {
    /// `${{` without a closing `}}`.
    Unclosed,
    /// The jq inside does not compile.
    Compile(CompileError),
}

impl Template {
    /// Compiles every `${{ }}` in `value` (a JSON field) on its own,
    /// collecting all errors.
    pub fn compile(value: &Value) -> Result<Self, Vec<TemplateError>> {
        Self::compile_in(value, &mut ProgramSet::immediate())
    }

    /// Compiles every `${{ }}` in `value` (a JSON field) into `set`,
    /// collecting all errors.
    pub fn compile_in(value: &Value, set: &mut ProgramSet) -> Result<Self, Vec<TemplateError>> {
        Self::compile_block(value, &|_| FieldKind::Json, set)
    }

    /// Compiles a parameter block: each top-level field of `value` (and
    /// everything inside it) as `kind_of` its name says.
    pub fn compile_block(
        value: &Value,
        kind_of: &dyn Fn(&str) -> FieldKind,
        set: &mut ProgramSet,
    ) -> Result<Self, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let template = match value {
            Value::Object(fields) if contains_template(value) => Template::Object(
                fields
                    .iter()
                    .map(|(key, field)| {
                        let path = format!(".{key}");
                        let kind = kind_of(key);
                        (key.clone(), compile_at(field, path, kind, set, &mut errors))
                    })
                    .collect(),
            ),
            other => compile_at(other, String::new(), FieldKind::Json, set, &mut errors),
        };
        if errors.is_empty() {
            Ok(template)
        } else {
            Err(errors)
        }
    }

    /// The template of top-level field `key` of a compiled block.
    pub fn field(&self, key: &str) -> Option<&Template> {
        match self {
            Template::Object(fields) => fields
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, field)| field),
            _ => None,
        }
    }

    /// Every program inside, with its path (for static checks).
    pub fn programs(&self) -> Vec<(String, &Program)> {
        let mut found = Vec::new();
        self.collect_programs(String::new(), &mut found);
        found
    }

    fn collect_programs<'a>(&'a self, path: String, found: &mut Vec<(String, &'a Program)>) {
        match self {
            Template::Literal(_) => {}
            Template::Value(program) | Template::TextOf { program, .. } => {
                found.push((path, program))
            }
            Template::Text(segments) => {
                for segment in segments {
                    if let Segment::Expr(program) | Segment::Encoded(program) = segment {
                        found.push((path.clone(), program));
                    }
                }
            }
            Template::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    item.collect_programs(format!("{path}[{index}]"), found);
                }
            }
            Template::Object(fields) => {
                for (key, field) in fields {
                    field.collect_programs(format!("{path}.{key}"), found);
                }
            }
        }
    }

    /// Renders the value against `context`.
    pub fn render(&self, context: &Val) -> Result<Value, EvalError> {
        Ok(match self {
            Template::Literal(value) => value.clone(),
            Template::Value(program) => program.first_json(context.clone())?,
            Template::TextOf { program, keep_null } => match program.first(context.clone())? {
                Val::Null if *keep_null => Value::Null,
                value => Value::String(text_of(&value)),
            },
            Template::Text(segments) => {
                let mut text = String::new();
                for segment in segments {
                    match segment {
                        Segment::Text(literal) => text.push_str(literal),
                        Segment::Expr(program) => {
                            text.push_str(&text_of(&program.first(context.clone())?))
                        }
                        Segment::Encoded(program) => {
                            encode_component(&text_of(&program.first(context.clone())?), &mut text)
                        }
                    }
                }
                Value::String(text)
            }
            Template::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| item.render(context))
                    .collect::<Result<_, _>>()?,
            ),
            Template::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(key, field)| Ok((key.clone(), field.render(context)?)))
                    .collect::<Result<_, EvalError>>()?,
            ),
        })
    }
}

/// The text a value gives in a text field: strings as they are, anything
/// else as compact JSON.
fn text_of(value: &Val) -> String {
    match value {
        Val::TStr(bytes) | Val::BStr(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => val_to_json(other).to_string(),
    }
}

/// Appends `text` percent-encoded as one URL component: everything but
/// the unreserved characters `A-Z a-z 0-9 - . _ ~` (RFC 3986).
fn encode_component(text: &str, into: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            into.push(char::from(byte));
        } else {
            into.push_str(&format!("%{byte:02X}"));
        }
    }
}

fn compile_at(
    value: &Value,
    path: String,
    kind: FieldKind,
    set: &mut ProgramSet,
    errors: &mut Vec<TemplateError>,
) -> Template {
    // Inside a field, only the field itself may be left unset.
    let inner = match kind {
        FieldKind::Text { .. } => FieldKind::Text { optional: false },
        other => other,
    };
    match value {
        Value::String(text) if text.contains("${{") => {
            compile_string(text, path, kind, set, errors)
        }
        Value::Array(items) if contains_template(value) => Template::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    compile_at(item, format!("{path}[{index}]"), inner, set, errors)
                })
                .collect(),
        ),
        Value::Object(fields) if contains_template(value) => Template::Object(
            fields
                .iter()
                .map(|(key, field)| {
                    (
                        key.clone(),
                        compile_at(field, format!("{path}.{key}"), inner, set, errors),
                    )
                })
                .collect(),
        ),
        other => Template::Literal(other.clone()),
    }
}

fn contains_template(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains("${{"),
        Value::Array(items) => items.iter().any(contains_template),
        Value::Object(fields) => fields.values().any(contains_template),
        _ => false,
    }
}

fn compile_string(
    text: &str,
    path: String,
    kind: FieldKind,
    set: &mut ProgramSet,
    errors: &mut Vec<TemplateError>,
) -> Template {
    let mut segments = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        if start > 0 {
            segments.push(Segment::Text(rest[..start].to_owned()));
        }
        let body = &rest[start + 3..];
        match close_template(body, set) {
            Ok((program, end)) => {
                segments.push(match kind {
                    FieldKind::Url => Segment::Encoded(program),
                    _ => Segment::Expr(program),
                });
                rest = &body[end + 2..];
            }
            Err(error) => {
                let shown = match body.find("}}") {
                    Some(end) => &rest[start..start + 3 + end + 2],
                    None => &rest[start..],
                };
                errors.push(TemplateError {
                    path: path.clone(),
                    template: shown.to_owned(),
                    error,
                });
                return Template::Literal(Value::String(text.to_owned()));
            }
        }
    }
    if !rest.is_empty() {
        segments.push(Segment::Text(rest.to_owned()));
    }
    match (segments.as_slice(), kind) {
        ([Segment::Expr(program)], FieldKind::Json) => Template::Value(program.clone()),
        ([Segment::Expr(program) | Segment::Encoded(program)], FieldKind::Text { optional }) => {
            Template::TextOf {
                program: program.clone(),
                keep_null: optional,
            }
        }
        ([Segment::Expr(program) | Segment::Encoded(program)], FieldKind::Url) => {
            Template::TextOf {
                program: program.clone(),
                keep_null: false,
            }
        }
        _ => Template::Text(segments),
    }
}

/// Finds the `}}` closing a template: the first one whose inside compiles
/// (jq objects may contain `}}`). Returns the program and the byte offset
/// of the closing braces.
fn close_template(body: &str, set: &mut ProgramSet) -> Result<(Program, usize), TemplateErrorKind> {
    let mut first_error = None;
    let mut from = 0;
    while let Some(found) = body[from..].find("}}") {
        let end = from + found;
        match set.add(body[..end].trim()) {
            Ok(program) => return Ok((program, end)),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
        from = end + 1;
    }
    Err(first_error.map_or(TemplateErrorKind::Unclosed, TemplateErrorKind::Compile))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::json_to_val;
    use serde_json::json;

    fn render(value: Value, context: Value) -> Value {
        Template::compile(&value)
            .unwrap()
            .render(&json_to_val(&context))
            .unwrap()
    }

    #[test]
    fn a_lone_template_yields_the_value_itself() {
        let context = json!({"input": {"n": 3, "tags": ["a"]}});
        assert_eq!(render(json!("${{ .input.n }}"), context.clone()), json!(3));
        assert_eq!(
            render(json!({"t": "${{.input.tags}}"}), context),
            json!({"t": ["a"]})
        );
    }

    #[test]
    fn mixed_strings_interpolate_text_and_compact_json() {
        let context = json!({"input": {"name": "Ada", "n": {"a": 1}}});
        assert_eq!(
            render(json!("hi ${{ .input.name }}: ${{ .input.n }}!"), context),
            json!("hi Ada: {\"a\":1}!")
        );
    }

    fn render_block(value: Value, kind: FieldKind, context: Value) -> Value {
        Template::compile_block(&value, &|_| kind, &mut ProgramSet::immediate())
            .unwrap()
            .render(&json_to_val(&context))
            .unwrap()
    }

    #[test]
    fn text_fields_get_the_text_of_a_whole_field_template() {
        let context = json!({"n": 7, "b": false, "o": {"z": 1, "a": [2]}, "s": "x", "none": null});
        let block = json!({"f": "${{ .n }}", "g": "${{ .b }}", "h": "${{ .o }}", "i": "${{ .s }}",
                           "list": ["${{ .n }}"], "map": {"k": "${{ .none }}"}, "unset": "${{ .none }}"});
        assert_eq!(
            render_block(
                block.clone(),
                FieldKind::Text { optional: true },
                context.clone()
            ),
            json!({"f": "7", "g": "false", "h": r#"{"z":1,"a":[2]}"#, "i": "x",
                   "list": ["7"], "map": {"k": "null"}, "unset": null})
        );
        assert_eq!(
            render_block(
                json!({"f": "${{ .none }}"}),
                FieldKind::Text { optional: false },
                context.clone()
            ),
            json!({"f": "null"}),
            "a required field gets text, as jq's tostring"
        );
        assert_eq!(
            render_block(block, FieldKind::Json, context)["h"],
            json!({"z": 1, "a": [2]}),
            "JSON fields keep the typed value"
        );
    }

    #[test]
    fn values_spliced_into_a_url_are_encoded_as_one_component() {
        let context = json!({"email": "ada+lovelace@example.com", "path": "../admin?x=1#y", "base": "http://h:8/a b"});
        assert_eq!(
            render_block(
                json!({"url": "https://crm/api/people/${{ .path }}?email=${{ .email }}"}),
                FieldKind::Url,
                context.clone()
            ),
            json!({"url": "https://crm/api/people/..%2Fadmin%3Fx%3D1%23y?email=ada%2Blovelace%40example.com"})
        );
        assert_eq!(
            render_block(json!({"url": "${{ .base }}"}), FieldKind::Url, context),
            json!({"url": "http://h:8/a b"}),
            "a template filling the whole url is taken as it is"
        );
    }

    #[test]
    fn templates_may_contain_closing_braces() {
        let context = json!({});
        assert_eq!(
            render(json!("${{ {a: {b: 1}} }}"), context),
            json!({"a": {"b": 1}})
        );
    }

    #[test]
    fn errors_name_the_path_and_template() {
        let errors =
            Template::compile(&json!({"body": [1, "x ${{ .a | }}"], "u": "${{ .b"})).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].path, ".body[1]");
        assert_eq!(errors[0].template, "${{ .a | }}");
        assert!(matches!(errors[0].error, TemplateErrorKind::Compile(_)));
        assert_eq!(errors[1].path, ".u");
        assert_eq!(errors[1].error, TemplateErrorKind::Unclosed);
    }
}
