//! Validation of a Workflow spec, shared by the operator (status conditions)
//! and `sluice-runner validate`/`run`.
//!
//! [`compile`] checks everything that can be checked without running the
//! workflow — node types, names, `needs`, cycles, every jq expression and
//! template, which nodes an expression may read, parameters, retry and
//! timeout values — and collects *all* errors, each with a field path and a
//! hint. On success it returns the [`CompiledWorkflow`] the engine runs, so
//! expressions are compiled exactly once. Pure: no I/O, no clock.

mod custom;
mod graph;
mod nodes;
mod raw;
mod templates;

pub use custom::check_custom_nodes;
pub use raw::parse_spec;

use crate::compiled::{CompiledNode, CompiledWorkflow};
use crate::expr::{CompileError, Program, ProgramSet};
use sluice_crds::WorkflowSpec;
use sluice_crds::workflow::{MAX_NEEDS, MAX_NODES};
use std::fmt;
use std::time::Duration;

/// Default of `spec.parallelism`.
pub const DEFAULT_PARALLELISM: usize = 10;

/// One problem in a Workflow spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ValidationError {
    /// Field path, e.g. `spec.nodes[3].http.url`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ValidationError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl From<ValidationError> for sluice_crds::workflow::ValidationIssue {
    fn from(error: ValidationError) -> Self {
        Self {
            path: error.path,
            message: error.message,
        }
    }
}

/// Every error in `spec` (empty when it is valid).
pub fn validate(spec: &WorkflowSpec) -> Vec<ValidationError> {
    compile(spec).err().unwrap_or_default()
}

/// Validates `spec` and compiles it for the engine.
///
/// Every expression of the workflow is parsed once and compiled in one jaq
/// compilation (the standard library once, not once per expression). Only
/// when that fails is the workflow validated again to say which expression
/// is wrong: first with syntax checked per expression, then, for an
/// undefined name, expression by expression.
pub fn compile(spec: &WorkflowSpec) -> Result<CompiledWorkflow, Vec<ValidationError>> {
    let mut set = ProgramSet::batch();
    let result = compile_with(spec, &mut set);
    if set.link().is_ok() {
        return result;
    }
    let mut set = ProgramSet::checked();
    let result = compile_with(spec, &mut set);
    match (result, set.link()) {
        (result, Ok(())) => result,
        (_, Err(link_error)) => match compile_with(spec, &mut ProgramSet::immediate()) {
            Err(errors) => Err(errors),
            Ok(_) => Err(vec![ValidationError::new(
                "spec",
                format!("failed to compile the workflow's expressions: {link_error}"),
            )]),
        },
    }
}

fn compile_with(
    spec: &WorkflowSpec,
    set: &mut ProgramSet,
) -> Result<CompiledWorkflow, Vec<ValidationError>> {
    let mut errors = Vec::new();
    check_spec_fields(spec, &mut errors);
    let names = graph::check_names(spec, &mut errors);
    let needs = graph::resolve_needs(spec, &names, &mut errors);
    graph::check_cycles(spec, &needs, &mut errors);
    let upstream = graph::upstream(&needs);

    let mut nodes = Vec::with_capacity(spec.nodes.len());
    for (index, node) in spec.nodes.iter().enumerate() {
        let path = format!("spec.nodes[{index}]");
        let mut reads = Vec::new();
        let condition = node
            .condition
            .as_deref()
            .and_then(|source| {
                expression(source, &node.name, &format!("{path}.if"), set, &mut errors)
            })
            .inspect(|program| reads.push((format!("{path}.if"), program.clone())));
        let for_each = node
            .for_each
            .as_deref()
            .and_then(|source| {
                expression(
                    source,
                    &node.name,
                    &format!("{path}.forEach"),
                    set,
                    &mut errors,
                )
            })
            .inspect(|program| reads.push((format!("{path}.forEach"), program.clone())));
        let block = nodes::check_block(node, &path, &spec.env, set, &mut errors);
        if let Some(block) = &block {
            for (field, program) in block.params.programs() {
                reads.push((
                    format!("{path}.{}{field}", block.node_type),
                    program.clone(),
                ));
            }
        }
        graph::check_reads(spec, index, &reads, &names, &upstream, &mut errors);
        let retry = nodes::check_retry(node, &path, &mut errors);
        let timeout = node.timeout.as_ref().map(|t| t.as_std());
        if timeout == Some(Duration::ZERO) {
            errors.push(ValidationError::new(
                format!("{path}.timeout"),
                format!(
                    "node {:?} has a zero timeout: use a positive duration such as 30s, or remove timeout",
                    node.name
                ),
            ));
        }
        if let Some(block) = block {
            nodes.push(CompiledNode {
                name: node.name.clone(),
                node_type: block.node_type,
                needs: needs[index].clone(),
                dependants: Vec::new(),
                run_when: node.run_when(),
                condition,
                for_each,
                parallelism: node.parallelism.map(|p| p.max(1) as usize),
                params: block.params,
                retry,
                timeout,
                continue_on_error: node.continue_on_error.unwrap_or(false),
            });
        }
    }

    let output = spec.output.as_deref().and_then(|source| {
        let program = expression(source, "", "spec.output", set, &mut errors)?;
        let reads = vec![("spec.output".to_owned(), program.clone())];
        graph::check_output_reads(&reads, &names, &mut errors);
        Some(program)
    });

    if !errors.is_empty() {
        return Err(errors);
    }
    for index in 0..nodes.len() {
        for need in nodes[index].needs.clone() {
            nodes[need].dependants.push(index);
        }
    }
    Ok(CompiledWorkflow {
        nodes,
        output,
        parallelism: spec
            .parallelism
            .map_or(DEFAULT_PARALLELISM, |p| p.max(1) as usize),
        deadline: spec
            .active_deadline_seconds
            .map(|s| Duration::from_secs(s.max(1) as u64)),
        env: spec
            .env
            .iter()
            .map(|var| {
                (
                    var.name.clone(),
                    serde_json::Value::String(var.value.clone()),
                )
            })
            .collect(),
        memory_budget: spec
            .memory_budget
            .as_deref()
            .and_then(|text| crate::budget::parse_bytes(text).ok()),
    })
}

fn check_spec_fields(spec: &WorkflowSpec, errors: &mut Vec<ValidationError>) {
    if spec.nodes.is_empty() {
        errors.push(ValidationError::new(
            "spec.nodes",
            "the workflow has no nodes: add at least one node under spec.nodes",
        ));
    }
    if spec.nodes.len() > MAX_NODES {
        errors.push(ValidationError::new(
            "spec.nodes",
            format!(
                "the workflow has {} nodes, more than the limit of {MAX_NODES}: split it into child workflows with a workflow node",
                spec.nodes.len()
            ),
        ));
    }
    if let Some(parallelism) = spec.parallelism
        && !(1..=1000).contains(&parallelism)
    {
        errors.push(ValidationError::new(
            "spec.parallelism",
            format!("parallelism {parallelism} is out of range: use a value from 1 to 1000"),
        ));
    }
    if let Some(budget) = &spec.memory_budget
        && let Err(error) = crate::budget::parse_bytes(budget)
    {
        errors.push(ValidationError::new(
            "spec.memoryBudget",
            format!("memoryBudget {error}"),
        ));
    }
    if let Some(seconds) = spec.active_deadline_seconds
        && seconds < 1
    {
        errors.push(ValidationError::new(
            "spec.activeDeadlineSeconds",
            format!(
                "activeDeadlineSeconds {seconds} is not positive: use at least 1, or remove it"
            ),
        ));
    }
    for (index, var) in spec.env.iter().enumerate() {
        let valid = var
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && var
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            errors.push(ValidationError::new(
                format!("spec.env[{index}].name"),
                format!(
                    "environment name {:?} is invalid: use letters, digits and '_', not starting with a digit",
                    var.name
                ),
            ));
        }
    }
    for (index, node) in spec.nodes.iter().enumerate() {
        if node.needs.len() > MAX_NEEDS {
            errors.push(ValidationError::new(
                format!("spec.nodes[{index}].needs"),
                format!(
                    "node {:?} needs {} nodes, more than the limit of {MAX_NEEDS}: add an intermediate node",
                    node.name,
                    node.needs.len()
                ),
            ));
        }
    }
    if let Some(schema) = spec.input.as_ref().and_then(|input| input.schema.as_ref())
        && let Err(error) = crate::input::check_schema(schema)
    {
        errors.push(ValidationError::new("spec.input.schema", error));
    }
}

/// Compiles one expression, recording an error naming the node and field.
pub(crate) fn expression(
    source: &str,
    node: &str,
    path: &str,
    set: &mut ProgramSet,
    errors: &mut Vec<ValidationError>,
) -> Option<Program> {
    match set.add(source) {
        Ok(program) => Some(program),
        Err(error) => {
            errors.push(ValidationError::new(
                path,
                format!(
                    "{}expression {source:?} does not compile: {error}: {}",
                    node_prefix(node),
                    compile_hint(source, &error)
                ),
            ));
            None
        }
    }
}

/// `node "x": ` or nothing for workflow-level fields.
pub(crate) fn node_prefix(node: &str) -> String {
    if node.is_empty() {
        String::new()
    } else {
        format!("node {node:?}: ")
    }
}

/// How to fix a jq compile error.
pub(crate) fn compile_hint(source: &str, error: &CompileError) -> String {
    if let Some(dashed) = dashed_node_path(source) {
        return format!(
            "node names containing '-' must be read as .nodes[\"{dashed}\"], not .nodes.{dashed}"
        );
    }
    if error.message.starts_with("undefined") {
        return "check the spelling of the filter or variable (jq manual: https://jqlang.org/manual/)"
            .to_owned();
    }
    "fix the jq syntax (jq manual: https://jqlang.org/manual/)".to_owned()
}

fn dashed_node_path(source: &str) -> Option<String> {
    let at = source.find(".nodes.")?;
    let name: String = source[at + ".nodes.".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    name.contains('-').then_some(name)
}

#[cfg(test)]
mod tests;
