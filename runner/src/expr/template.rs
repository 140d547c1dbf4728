//! `${{ jq }}` templates inside parameter values.
//!
//! A parameter block is compiled once into a [`Template`] tree that mirrors
//! the JSON value; rendering evaluates each embedded program against the
//! context. A string that is exactly one template yields the program's JSON
//! value; a mixed string interpolates (strings as-is, other values as
//! compact JSON).

use super::{CompileError, EvalError, Program, ProgramSet, val_to_json};
use jaq_json::Val;
use serde_json::Value;

/// A compiled parameter value.
#[derive(Debug, Clone)]
pub enum Template {
    /// A value without templates, used as is.
    Literal(Value),
    /// A string that is exactly one `${{ }}`: yields the program's value.
    Value(Program),
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
    /// A program whose value is spliced in.
    Expr(Program),
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
    /// Compiles every `${{ }}` in `value` on its own, collecting all errors.
    pub fn compile(value: &Value) -> Result<Self, Vec<TemplateError>> {
        Self::compile_in(value, &mut ProgramSet::immediate())
    }

    /// Compiles every `${{ }}` in `value` into `set`, collecting all errors.
    pub fn compile_in(value: &Value, set: &mut ProgramSet) -> Result<Self, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let template = compile_at(value, String::new(), set, &mut errors);
        if errors.is_empty() {
            Ok(template)
        } else {
            Err(errors)
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
            Template::Value(program) => found.push((path, program)),
            Template::Text(segments) => {
                for segment in segments {
                    if let Segment::Expr(program) = segment {
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
            Template::Text(segments) => {
                let mut text = String::new();
                for segment in segments {
                    match segment {
                        Segment::Text(literal) => text.push_str(literal),
                        Segment::Expr(program) => match program.first(context.clone())? {
                            Val::TStr(bytes) | Val::BStr(bytes) => {
                                text.push_str(&String::from_utf8_lossy(&bytes))
                            }
                            other => text.push_str(&val_to_json(&other).to_string()),
                        },
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

fn compile_at(
    value: &Value,
    path: String,
    set: &mut ProgramSet,
    errors: &mut Vec<TemplateError>,
) -> Template {
    match value {
        Value::String(text) if text.contains("${{") => compile_string(text, path, set, errors),
        Value::Array(items) if contains_template(value) => Template::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| compile_at(item, format!("{path}[{index}]"), set, errors))
                .collect(),
        ),
        Value::Object(fields) if contains_template(value) => Template::Object(
            fields
                .iter()
                .map(|(key, field)| {
                    (
                        key.clone(),
                        compile_at(field, format!("{path}.{key}"), set, errors),
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
                segments.push(Segment::Expr(program));
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
    match segments.as_slice() {
        [Segment::Expr(program)] => Template::Value(program.clone()),
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
