//! Templates in parameter blocks, before any run: what each field of a
//! node type takes (read from the type's published parameter schema), and
//! the checks that need no data:
//! - no `${{ }}` in `shell.script`, where data would run as shell code;
//! - no template at the start of a longer http `url`, where percent-encoding
//!   would break the URL;
//! - no template whose result can never fit its field (text in an object
//!   field, a constant of the wrong shape).
//!
//! Pure: reads the spec and the compiled templates, writes errors.

use super::ValidationError;
use crate::expr::{FieldKind, Program, Segment, Template};
use serde_json::Value;
use sluice_crds::NodeType;
use sluice_crds::nodes::ShellNode;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What one top-level parameter field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    /// How templates in it render.
    pub kind: FieldKind,
    /// Whether it takes only a JSON object (`kubernetes.manifest`).
    pub object: bool,
}

/// The fields of each node type's parameter block, by name.
pub(crate) fn fields(node_type: NodeType) -> &'static BTreeMap<String, Field> {
    static FIELDS: OnceLock<BTreeMap<NodeType, BTreeMap<String, Field>>> = OnceLock::new();
    let all = FIELDS.get_or_init(|| {
        NodeType::ALL
            .iter()
            .map(|&node_type| (node_type, fields_of(node_type)))
            .collect()
    });
    static NONE: BTreeMap<String, Field> = BTreeMap::new();
    all.get(&node_type).unwrap_or(&NONE)
}

/// How templates in field `key` of a `node_type` block render: typed in
/// fields that keep unknown JSON, text everywhere else.
pub(crate) fn kind_of(node_type: NodeType, key: &str) -> FieldKind {
    fields(node_type)
        .get(key)
        .map_or(FieldKind::Text { optional: true }, |field| field.kind)
}

fn fields_of(node_type: NodeType) -> BTreeMap<String, Field> {
    let schema = crate::nodes::parameter_schema(node_type);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema["properties"].as_object() else {
        return BTreeMap::new();
    };
    properties
        .iter()
        .map(|(key, property)| {
            let free = |schema: &Value| schema["x-kubernetes-preserve-unknown-fields"] == true;
            let json = free(property) || free(&property["items"]);
            let kind = if json {
                FieldKind::Json
            } else if node_type == NodeType::Http && key == "url" {
                FieldKind::Url
            } else {
                FieldKind::Text {
                    optional: !required.contains(&key.as_str()),
                }
            };
            let field = Field {
                kind,
                object: json && property["type"] == "object",
            };
            (key.clone(), field)
        })
        .collect()
}

/// `${{ }}` in a shell script splices data into shell source: refused,
/// with the safe way (env, quoted) spelled out.
pub(super) fn check_shell_script(
    name: &str,
    shell: &ShellNode,
    path: &str,
    errors: &mut Vec<ValidationError>,
) {
    let Some(script) = &shell.script else {
        return;
    };
    let Some(start) = script.find("${{") else {
        return;
    };
    let template = match script[start..].find("}}") {
        Some(end) => &script[start..start + end + 2],
        None => &script[start..],
    };
    let variable = variable_name(template);
    errors.push(ValidationError::new(
        format!("{path}.script"),
        format!(
            "node {name:?}: script contains the template {template}, which would splice data into shell source where it runs as code (a value such as `x; rm -rf ~` would run rm). Pass the value through env and quote it: env: {{{variable}: \"{template}\"}}, then write \"${variable}\" in the script"
        ),
    ));
}

/// An environment name for the value a template reads: its last field
/// (`.input.name` → `NAME`), else `VALUE`.
fn variable_name(template: &str) -> String {
    let inside = template
        .trim_start_matches("${{")
        .trim_end_matches("}}")
        .trim();
    let last: String = inside
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if last.is_empty() || last.starts_with(|c: char| c.is_ascii_digit()) {
        "VALUE".to_owned()
    } else {
        last.to_ascii_uppercase()
    }
}

/// Checks a compiled parameter block of node `name` (at `path`) against
/// what its fields take.
pub(super) fn check_block(
    name: &str,
    node_type: NodeType,
    block: &Template,
    path: &str,
    errors: &mut Vec<ValidationError>,
) {
    if node_type == NodeType::Http
        && let Some(Template::Text(segments)) = block.field("url")
        && let Some(Segment::Encoded(first)) = segments.first()
    {
        errors.push(ValidationError::new(
            format!("{path}.url"),
            format!(
                "node {name:?}: url starts with the template ${{{{ {} }}}}, but a value spliced into a longer url is percent-encoded as one component (so http://host would become http%3A%2F%2Fhost). Make the whole url one template: url: \"${{{{ {} }}}}\", or give the node a Connection with a baseUrl and a relative url",
                first.source(),
                whole_url_expression(segments)
            ),
        ));
    }
    for (key, field) in fields(node_type) {
        let Some(template) = block.field(key) else {
            continue;
        };
        let at = format!("{path}.{key}");
        if let Some(message) = never_fits(node_type, key, field, template) {
            errors.push(ValidationError::new(
                at,
                format!("node {name:?}: {message}"),
            ));
        }
    }
}

/// One jq expression building the url of `segments`, encoding every
/// spliced value after the first as the url does (`@uri`).
fn whole_url_expression(segments: &[Segment]) -> String {
    let part = |program: &Program, encoded: bool| {
        let source = program.source();
        let simple = source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '[' | ']' | '"'));
        match (encoded, simple) {
            (false, true) => source.to_owned(),
            (false, false) => format!("({source})"),
            (true, _) => format!("({source} | @uri)"),
        }
    };
    segments
        .iter()
        .enumerate()
        .map(|(index, segment)| match segment {
            Segment::Text(text) => Value::String(text.clone()).to_string(),
            Segment::Expr(program) | Segment::Encoded(program) => part(program, index > 0),
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Why `template` in field `key` can never fit it, when that is known
/// before the run.
fn never_fits(
    node_type: NodeType,
    key: &str,
    field: &Field,
    template: &Template,
) -> Option<String> {
    if field.object {
        return match template {
            Template::Text(_) => Some(format!(
                "{key} takes a JSON object, but a string mixing text and templates always yields text: make the whole field one template yielding an object, or write the object in YAML"
            )),
            Template::Value(program) => {
                constant(program)
                    .filter(|value| !value.is_object())
                    .map(|value| {
                        format!(
                            "{key} takes a JSON object, but ${{{{ {} }}}} always yields {value}",
                            program.source()
                        )
                    })
            }
            _ => None,
        };
    }
    let Template::TextOf { program, keep_null } = template else {
        return None;
    };
    let value = constant(program)?;
    if value.is_null() && !keep_null {
        return Some(format!(
            "{key} is required, but ${{{{ {} }}}} always yields null: give it a value, e.g. ${{{{ {} // \"…\" }}}}",
            program.source(),
            program.source()
        ));
    }
    let text = match &value {
        Value::Null => return None,
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    match (node_type, key) {
        (NodeType::Wait, "duration") => sluice_crds::Duration::parse(&text)
            .err()
            .map(|error| format!("${{{{ {} }}}} always yields {text:?}: {error}", program.source())),
        (NodeType::Wait, "until") => chrono::DateTime::parse_from_rfc3339(&text).err().map(|_| {
            format!(
                "${{{{ {} }}}} always yields {text:?}, which is not an RFC 3339 time: write it like 2026-01-01T09:00:00Z",
                program.source()
            )
        }),
        _ => None,
    }
}

/// The value of a program that is a JSON literal (`5`, `"x"`, `null`,
/// `[1]`): known before any run.
fn constant(program: &Program) -> Option<Value> {
    serde_json::from_str(program.source().trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::ProgramSet;
    use serde_json::json;

    #[test]
    fn free_json_fields_are_typed_and_the_rest_is_text() {
        let json = [
            (NodeType::Http, "body"),
            (NodeType::Postgres, "params"),
            (NodeType::Kubernetes, "manifest"),
            (NodeType::Kubernetes, "patch"),
            (NodeType::Workflow, "input"),
            (NodeType::Notify, "payload"),
            (NodeType::Custom, "params"),
        ];
        for node_type in NodeType::ALL {
            for (key, field) in fields(node_type) {
                let expected = json.contains(&(node_type, key.as_str()));
                assert_eq!(
                    field.kind == FieldKind::Json,
                    expected,
                    "{node_type}.{key}: {field:?}"
                );
            }
        }
        assert_eq!(kind_of(NodeType::Http, "url"), FieldKind::Url);
        assert_eq!(
            kind_of(NodeType::Shell, "stdin"),
            FieldKind::Text { optional: true }
        );
        assert_eq!(
            kind_of(NodeType::Notify, "text"),
            FieldKind::Text { optional: false }
        );
        assert!(fields(NodeType::Kubernetes)["manifest"].object);
        assert!(!fields(NodeType::Http)["body"].object);
    }

    /// A block of `node_type` with its required fields set.
    fn base_block(node_type: NodeType) -> Value {
        match node_type {
            NodeType::Http => json!({"url": "http://127.0.0.1/x"}),
            NodeType::Transform => json!({"jq": "."}),
            NodeType::Wait => json!({}),
            NodeType::Postgres => json!({"connection": "db", "query": "SELECT 1"}),
            NodeType::Shell => json!({"command": ["true"]}),
            NodeType::Kubernetes => json!({}),
            NodeType::Workflow => json!({"workflowRef": "child"}),
            NodeType::Notify => json!({"connection": "chat", "text": "hi"}),
            NodeType::Fail => json!({"message": "no"}),
            NodeType::Custom => json!({"type": "greeter"}),
        }
    }

    /// The block parsed into the node type's typed parameters, as a node
    /// does before it runs, then back to JSON.
    fn parsed(node_type: NodeType, block: Value) -> Result<Value, String> {
        use sluice_crds::nodes as p;
        fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
            block: Value,
        ) -> Result<Value, String> {
            let typed: T = serde_json::from_value(block).map_err(|e| e.to_string())?;
            Ok(serde_json::to_value(typed).unwrap())
        }
        match node_type {
            NodeType::Http => typed::<p::HttpNode>(block),
            NodeType::Transform => typed::<p::TransformNode>(block),
            NodeType::Wait => typed::<p::WaitNode>(block),
            NodeType::Postgres => typed::<p::PostgresNode>(block),
            NodeType::Shell => typed::<p::ShellNode>(block),
            NodeType::Kubernetes => typed::<p::KubernetesNode>(block),
            NodeType::Workflow => typed::<p::WorkflowNode>(block),
            NodeType::Notify => typed::<p::NotifyNode>(block),
            NodeType::Fail => typed::<p::FailNode>(block),
            NodeType::Custom => typed::<p::CustomNode>(block),
        }
    }

    #[test]
    fn every_string_field_takes_number_boolean_and_object_templates() {
        let mut checked = Vec::new();
        for node_type in NodeType::ALL {
            let schema = crate::nodes::parameter_schema(node_type);
            for (key, property) in schema["properties"].as_object().unwrap() {
                let string =
                    |s: &Value| s["type"] == "string" || s["type"] == json!(["string", "null"]);
                // Where a template sits in the field, and where its text lands.
                let (field, at): (Value, &dyn Fn(&Value) -> Value) = if string(property) {
                    (json!("${{ .v }}"), &|v: &Value| v.clone())
                } else if string(&property["items"]) {
                    (json!(["${{ .v }}"]), &|v: &Value| v[0].clone())
                } else if string(&property["additionalProperties"]) {
                    (json!({"K": "${{ .v }}"}), &|v: &Value| v["K"].clone())
                } else {
                    continue;
                };
                let mut block = base_block(node_type);
                block[key] = field;
                let kind = |name: &str| kind_of(node_type, name);
                let template =
                    Template::compile_block(&block, &kind, &mut ProgramSet::immediate()).unwrap();
                for (value, text) in [
                    (json!(42), "42"),
                    (json!(2.5), "2.5"),
                    (json!(true), "true"),
                    (json!({"a": [1, "x"]}), r#"{"a":[1,"x"]}"#),
                    (json!("plain"), "plain"),
                ] {
                    let context = crate::expr::json_to_val(&json!({"v": value}));
                    let rendered = template.render(&context).unwrap();
                    let parsed = parsed(node_type, rendered.clone())
                        .unwrap_or_else(|e| panic!("{node_type}.{key} = {value}: {e}"));
                    assert_eq!(
                        at(&parsed[key.as_str()]),
                        json!(text),
                        "{node_type}.{key} = {value}"
                    );
                }
                checked.push(format!("{node_type}.{key}"));
            }
        }
        for field in [
            "shell.env",
            "shell.command",
            "shell.stdin",
            "http.headers",
            "http.query",
            "http.url",
            "notify.text",
            "notify.subject",
            "notify.to",
            "wait.duration",
        ] {
            assert!(
                checked.iter().any(|c| c == field),
                "{field} not checked: {checked:?}"
            );
        }
    }

    #[test]
    fn variable_names_come_from_the_last_field() {
        assert_eq!(variable_name("${{ .input.name }}"), "NAME");
        assert_eq!(variable_name("${{ .item }}"), "ITEM");
        assert_eq!(variable_name("${{ .nodes[\"a-b\"].output }}"), "OUTPUT");
        assert_eq!(variable_name("${{ 1 + 2 }}"), "VALUE");
    }
}
