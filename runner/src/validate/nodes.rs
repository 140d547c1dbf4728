//! Checks of one node's own fields: its single type block and that block's
//! parameters (templates compiled here), `retry`, `parallelism`.

use super::templates;
use super::{ValidationError, compile_hint, expression, node_prefix};
use crate::compiled::RetrySettings;
use crate::expr::{ProgramSet, Template, TemplateErrorKind};
use sluice_crds::NodeSpec;
use sluice_crds::NodeType;
use sluice_crds::nodes::KubernetesAction;
use sluice_crds::workflow::{EnvVar, NodeAction};
use std::time::Duration;

/// A node's type and compiled parameters.
pub(super) struct Block {
    pub node_type: NodeType,
    pub params: Template,
}

fn type_list() -> String {
    NodeType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the node's type block and compiles its parameters.
pub(super) fn check_block(
    node: &NodeSpec,
    path: &str,
    workflow_env: &[EnvVar],
    set: &mut ProgramSet,
    errors: &mut Vec<ValidationError>,
) -> Option<Block> {
    let name = &node.name;
    if node.parallelism.is_some() && node.for_each.is_none() {
        errors.push(ValidationError::new(
            format!("{path}.parallelism"),
            format!("node {name:?}: parallelism only applies to a node with forEach: remove it or add forEach"),
        ));
    }
    if let Some(parallelism) = node.parallelism
        && !(1..=1000).contains(&parallelism)
    {
        errors.push(ValidationError::new(
            format!("{path}.parallelism"),
            format!("node {name:?}: parallelism {parallelism} is out of range: use a value from 1 to 1000"),
        ));
    }
    let actions = node.actions();
    let action = match actions.as_slice() {
        [] => {
            errors.push(ValidationError::new(
                path,
                format!(
                    "node {name:?} has no node-type block: add exactly one of {}",
                    type_list()
                ),
            ));
            return None;
        }
        [only] => *only,
        several => {
            let types: Vec<&str> = several.iter().map(|a| a.node_type().as_str()).collect();
            errors.push(ValidationError::new(
                path,
                format!(
                    "node {name:?} has {} node-type blocks ({}): keep exactly one, and split the rest into separate nodes",
                    several.len(),
                    types.join(", ")
                ),
            ));
            return None;
        }
    };
    let node_type = action.node_type();
    let block_path = format!("{path}.{node_type}");
    let before = errors.len();
    check_parameters(name, action, &block_path, errors);
    let params = match action {
        NodeAction::Transform(transform) => {
            let program = expression(
                &transform.jq,
                name,
                &format!("{block_path}.jq"),
                set,
                errors,
            );
            program
                .map(|program| Template::Object(vec![("jq".to_owned(), Template::Value(program))]))
        }
        _ => compile_templates(name, &action, &block_path, workflow_env, set, errors),
    };
    (errors.len() == before)
        .then_some(params)
        .flatten()
        .map(|params| Block { node_type, params })
}

fn block_value(action: &NodeAction<'_>) -> serde_json::Value {
    let value = match action {
        NodeAction::Http(p) => serde_json::to_value(p),
        NodeAction::Transform(p) => serde_json::to_value(p),
        NodeAction::Wait(p) => serde_json::to_value(p),
        NodeAction::Postgres(p) => serde_json::to_value(p),
        NodeAction::Shell(p) => serde_json::to_value(p),
        NodeAction::Kubernetes(p) => serde_json::to_value(p),
        NodeAction::Workflow(p) => serde_json::to_value(p),
        NodeAction::Notify(p) => serde_json::to_value(p),
        NodeAction::Fail(p) => serde_json::to_value(p),
        NodeAction::Custom(p) => serde_json::to_value(p),
    };
    value.unwrap_or(serde_json::Value::Null)
}

fn compile_templates(
    name: &str,
    action: &NodeAction<'_>,
    block_path: &str,
    workflow_env: &[EnvVar],
    set: &mut ProgramSet,
    errors: &mut Vec<ValidationError>,
) -> Option<Template> {
    let mut value = block_value(action);
    // Shell commands see the workflow's env as environment variables; the
    // node's own env wins.
    if let (NodeAction::Shell(_), serde_json::Value::Object(fields)) = (action, &mut value)
        && !workflow_env.is_empty()
    {
        let mut env: serde_json::Map<String, serde_json::Value> = workflow_env
            .iter()
            .map(|var| {
                (
                    var.name.clone(),
                    serde_json::Value::String(var.value.clone()),
                )
            })
            .collect();
        if let Some(serde_json::Value::Object(own)) = fields.remove("env") {
            env.extend(own);
        }
        fields.insert("env".to_owned(), serde_json::Value::Object(env));
    }
    let node_type = action.node_type();
    let kind_of = |key: &str| templates::kind_of(node_type, key);
    match Template::compile_block(&value, &kind_of, set) {
        Ok(template) => {
            let before = errors.len();
            templates::check_block(name, node_type, &template, block_path, errors);
            (errors.len() == before).then_some(template)
        }
        Err(template_errors) => {
            for error in template_errors {
                let message = match &error.error {
                    TemplateErrorKind::Unclosed => format!(
                        "{}template {:?} is not closed: end it with }}}}",
                        node_prefix(name),
                        error.template
                    ),
                    TemplateErrorKind::Compile(compile) => format!(
                        "{}template {:?} does not compile: {compile}: {}",
                        node_prefix(name),
                        error.template,
                        compile_hint(&error.template, compile)
                    ),
                };
                errors.push(ValidationError::new(
                    format!("{block_path}{}", error.path),
                    message,
                ));
            }
            None
        }
    }
}

fn is_template(text: &str) -> bool {
    text.contains("${{")
}

fn required(name: &str, value: &str, path: String, what: &str, errors: &mut Vec<ValidationError>) {
    if value.trim().is_empty() {
        errors.push(ValidationError::new(
            path,
            format!("node {name:?}: {what} is empty: set it"),
        ));
    }
}

fn check_parameters(
    name: &str,
    action: NodeAction<'_>,
    path: &str,
    errors: &mut Vec<ValidationError>,
) {
    match action {
        NodeAction::Http(http) => {
            required(name, &http.url, format!("{path}.url"), "url", errors);
            for (index, status) in http.success_status.iter().enumerate() {
                if !(100..=599).contains(status) {
                    errors.push(ValidationError::new(
                        format!("{path}.successStatus[{index}]"),
                        format!("node {name:?}: status {status} is not an HTTP status: use 100 to 599"),
                    ));
                }
            }
        }
        NodeAction::Transform(_) => {}
        NodeAction::Wait(wait) => match (&wait.duration, &wait.until) {
            (Some(_), Some(_)) | (None, None) => errors.push(ValidationError::new(
                path,
                format!("node {name:?}: a wait node needs exactly one of duration and until: set one, e.g. duration: 30s"),
            )),
            (Some(duration), None) if !is_template(duration) => {
                if let Err(error) = sluice_crds::Duration::parse(duration) {
                    errors.push(ValidationError::new(
                        format!("{path}.duration"),
                        format!("node {name:?}: {error}"),
                    ));
                }
            }
            (None, Some(until))
                if !is_template(until) && chrono::DateTime::parse_from_rfc3339(until).is_err() =>
            {
                errors.push(ValidationError::new(
                    format!("{path}.until"),
                    format!("node {name:?}: until {until:?} is not an RFC 3339 time: write it like 2026-01-01T09:00:00Z"),
                ));
            }
            _ => {}
        },
        NodeAction::Postgres(postgres) => {
            required(name, &postgres.connection, format!("{path}.connection"), "connection", errors);
            required(name, &postgres.query, format!("{path}.query"), "query", errors);
            if let Some(max_rows) = postgres.max_rows
                && !(1..=100_000).contains(&max_rows)
            {
                errors.push(ValidationError::new(
                    format!("{path}.maxRows"),
                    format!("node {name:?}: maxRows {max_rows} is out of range: use 1 to 100000"),
                ));
            }
        }
        NodeAction::Shell(shell) => {
            templates::check_shell_script(name, shell, path, errors);
            if shell.script.is_some() != shell.command.is_empty() {
                errors.push(ValidationError::new(
                    path,
                    format!("node {name:?}: a shell node needs exactly one of script and command: set script for /bin/sh -c, or command for a program and its arguments"),
                ));
            }
            for (index, code) in shell.success_exit_codes.iter().enumerate() {
                if !(0..=255).contains(code) {
                    errors.push(ValidationError::new(
                        format!("{path}.successExitCodes[{index}]"),
                        format!("node {name:?}: exit code {code} is out of range: use 0 to 255"),
                    ));
                }
            }
        }
        NodeAction::Kubernetes(kubernetes) => {
            let action = kubernetes.action.unwrap_or_default();
            let missing = |field: &str, errors: &mut Vec<ValidationError>| {
                errors.push(ValidationError::new(
                    format!("{path}.{field}"),
                    format!("node {name:?}: action {action:?} needs {field}: set it"),
                ))
            };
            match action {
                KubernetesAction::Apply => {
                    if kubernetes.manifest.is_none() {
                        missing("manifest", errors);
                    }
                }
                KubernetesAction::Get | KubernetesAction::Delete | KubernetesAction::Patch => {
                    for (field, value) in [
                        ("apiVersion", &kubernetes.api_version),
                        ("kind", &kubernetes.kind),
                        ("name", &kubernetes.name),
                    ] {
                        if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                            missing(field, errors);
                        }
                    }
                    if action == KubernetesAction::Patch && kubernetes.patch.is_none() {
                        missing("patch", errors);
                    }
                }
            }
        }
        NodeAction::Workflow(workflow) => {
            required(name, &workflow.workflow_ref, format!("{path}.workflowRef"), "workflowRef", errors);
        }
        NodeAction::Notify(notify) => {
            required(name, &notify.connection, format!("{path}.connection"), "connection", errors);
            required(name, &notify.text, format!("{path}.text"), "text", errors);
        }
        NodeAction::Fail(fail) => {
            required(name, &fail.message, format!("{path}.message"), "message", errors);
        }
        NodeAction::Custom(custom) => {
            required(name, &custom.type_, format!("{path}.type"), "type", errors);
            let names = [
                ("type", Some(&custom.type_)),
                ("preset", custom.preset.as_ref()),
                ("connection", custom.connection.as_ref()),
            ];
            for (field, value) in names {
                if value.is_some_and(|value| is_template(value)) {
                    errors.push(ValidationError::new(
                        format!("{path}.{field}"),
                        format!("node {name:?}: {field} cannot be a template: the operator prepares the type's container and Connection before the run, so write the name itself"),
                    ));
                }
            }
            if custom
                .params
                .as_ref()
                .is_some_and(|params| !params.is_object() && !params.is_null())
            {
                errors.push(ValidationError::new(
                    format!("{path}.params"),
                    format!("node {name:?}: params must be an object of named parameters, e.g. params: {{name: Ada}}"),
                ));
            }
        }
    }
}

/// Checks `retry` and applies its defaults.
pub(super) fn check_retry(
    node: &NodeSpec,
    path: &str,
    errors: &mut Vec<ValidationError>,
) -> RetrySettings {
    let defaults = RetrySettings::none();
    let Some(retry) = &node.retry else {
        return defaults;
    };
    let name = &node.name;
    let path = format!("{path}.retry");
    if retry.limit > 100 {
        errors.push(ValidationError::new(
            format!("{path}.limit"),
            format!(
                "node {name:?}: retry limit {} is above 100: use 0 to 100",
                retry.limit
            ),
        ));
    }
    let backoff = retry.backoff.clone().unwrap_or_default();
    let settings = RetrySettings {
        limit: retry.limit,
        initial: backoff
            .initial
            .as_ref()
            .map_or(defaults.initial, |d| d.as_std()),
        max: backoff.max.as_ref().map_or(defaults.max, |d| d.as_std()),
        factor: backoff.factor.unwrap_or(defaults.factor),
        jitter_percent: backoff.jitter_percent.unwrap_or(defaults.jitter_percent),
    };
    if !(1..=10).contains(&settings.factor) {
        errors.push(ValidationError::new(
            format!("{path}.backoff.factor"),
            format!(
                "node {name:?}: backoff factor {} is out of range: use 1 to 10",
                settings.factor
            ),
        ));
    }
    if settings.jitter_percent > 100 {
        errors.push(ValidationError::new(
            format!("{path}.backoff.jitterPercent"),
            format!(
                "node {name:?}: jitterPercent {} is above 100: use 0 to 100",
                settings.jitter_percent
            ),
        ));
    }
    if settings.initial == Duration::ZERO {
        errors.push(ValidationError::new(
            format!("{path}.backoff.initial"),
            format!("node {name:?}: backoff initial is zero: use a positive duration such as 1s"),
        ));
    }
    if settings.initial > settings.max {
        errors.push(ValidationError::new(
            format!("{path}.backoff"),
            format!(
                "node {name:?}: backoff initial ({:?}) is longer than max ({:?}): make initial at most max",
                settings.initial, settings.max
            ),
        ));
    }
    settings
}
