//! Each class of validation error: the message names the node, the path
//! names the field, and the text says how to fix it.

use super::*;
use serde_json::json;
use sluice_crds::workflow::{Backoff, RetryPolicy};
use sluice_crds::{NodeSpec, Workflow};

fn valid() -> Workflow {
    Workflow::fixture("w")
        .with_node(NodeSpec::transform("fetch", ".input"))
        .with_node(NodeSpec::transform("shape", ".nodes.fetch.output").needs(&["fetch"]))
}

fn errors(workflow: &Workflow) -> Vec<ValidationError> {
    validate(&workflow.spec)
}

/// Asserts one error at `path` whose message contains every fragment.
fn assert_error(workflow: &Workflow, path: &str, fragments: &[&str]) {
    let errors = errors(workflow);
    assert!(
        errors
            .iter()
            .any(|e| e.path == path && fragments.iter().all(|f| e.message.contains(f))),
        "no error at {path} containing {fragments:?} in {errors:#?}"
    );
}

#[test]
fn a_valid_workflow_has_no_errors_and_compiles() {
    assert_eq!(errors(&valid()), vec![]);
    let compiled = compile(&valid().spec).unwrap();
    assert_eq!(compiled.nodes[0].dependants, vec![1]);
    assert_eq!(compiled.parallelism, DEFAULT_PARALLELISM);
}

#[test]
fn display_is_path_colon_message() {
    let error = ValidationError::new("spec.nodes[0]", "bad: fix it");
    assert_eq!(error.to_string(), "spec.nodes[0]: bad: fix it");
}

#[test]
fn missing_and_extra_type_blocks() {
    let none = valid().with_node(NodeSpec::named("empty"));
    assert_error(
        &none,
        "spec.nodes[2]",
        &[
            "node \"empty\" has no node-type block",
            "add exactly one of http, transform",
        ],
    );
    let two = valid().with_node(
        NodeSpec::transform("both", ".").with(|n| n.fail = NodeSpec::fail("x", "m").fail),
    );
    assert_error(
        &two,
        "spec.nodes[2]",
        &[
            "node \"both\" has 2 node-type blocks (transform, fail)",
            "keep exactly one",
        ],
    );
}

#[test]
fn duplicate_and_malformed_names() {
    let duplicate = valid().with_node(NodeSpec::transform("fetch", "."));
    assert_error(
        &duplicate,
        "spec.nodes[2].name",
        &[
            "duplicate node name \"fetch\" (also spec.nodes[0])",
            "rename one",
        ],
    );
    let bad = valid().with_node(NodeSpec::transform("Bad_Name", "."));
    assert_error(
        &bad,
        "spec.nodes[2].name",
        &[
            "\"Bad_Name\" is invalid",
            "lowercase letters, digits and '-'",
        ],
    );
}

#[test]
fn needs_naming_nothing_suggests_the_closest_name() {
    let workflow = valid().with_node(NodeSpec::transform("late", ".").needs(&["fecth"]));
    assert_error(
        &workflow,
        "spec.nodes[2].needs[0]",
        &[
            "node \"late\" needs \"fecth\", which is not a node",
            "did you mean \"fetch\"?",
            "add a node named \"fecth\"",
        ],
    );
    let own = valid().with_node(NodeSpec::transform("me", ".").needs(&["me"]));
    assert_error(
        &own,
        "spec.nodes[2].needs[0]",
        &["node \"me\" needs itself", "remove \"me\""],
    );
}

#[test]
fn cycles_are_reported_once_with_their_path() {
    let workflow = Workflow::fixture("w")
        .with_node(NodeSpec::transform("a", ".").needs(&["c"]))
        .with_node(NodeSpec::transform("b", ".").needs(&["a"]))
        .with_node(NodeSpec::transform("c", ".").needs(&["b"]))
        .with_node(NodeSpec::transform("d", ".").needs(&["c"]));
    let errors = errors(&workflow);
    let cycles: Vec<_> = errors
        .iter()
        .filter(|e| e.message.contains("cycle"))
        .collect();
    assert_eq!(cycles.len(), 1, "{errors:#?}");
    assert_eq!(cycles[0].path, "spec.nodes[0].needs");
    assert_eq!(
        cycles[0].message,
        "needs form a cycle: a → c → b → a (each node needs the next): remove one of these needs"
    );
}

#[test]
fn expressions_that_do_not_compile_name_field_and_position() {
    let workflow = valid()
        .with_node(NodeSpec::transform("t", ".a | ").needs(&["fetch"]))
        .with_node(
            NodeSpec::transform("i", ".")
                .when(".x ==")
                .needs(&["fetch"]),
        )
        .with_node(NodeSpec::transform("f", ".").for_each("[.x,,]"))
        .with_spec(|s| s.output = Some("{a:".into()));
    assert_error(
        &workflow,
        "spec.nodes[2].transform.jq",
        &[
            "node \"t\": expression \".a | \" does not compile",
            "at 1:6",
            "fix the jq syntax",
        ],
    );
    assert_error(
        &workflow,
        "spec.nodes[3].if",
        &["node \"i\"", "does not compile"],
    );
    assert_error(
        &workflow,
        "spec.nodes[4].forEach",
        &["node \"f\"", "at 1:5"],
    );
    assert_error(
        &workflow,
        "spec.output",
        &["expression \"{a:\" does not compile"],
    );
}

#[test]
fn templates_in_string_parameters_are_compiled() {
    let workflow = valid().with_node(
        NodeSpec::http_get("call", "https://x/${{ .input.id | }}").with(|n| {
            n.http
                .as_mut()
                .unwrap()
                .headers
                .insert("X-Id".into(), "${{ .input.id".into());
        }),
    );
    assert_error(
        &workflow,
        "spec.nodes[2].http.url",
        &[
            "node \"call\": template \"${{ .input.id | }}\" does not compile",
            "at 1:",
            "fix the jq",
        ],
    );
    assert_error(
        &workflow,
        "spec.nodes[2].http.headers.X-Id",
        &["is not closed", "end it with }}"],
    );
}

#[test]
fn expressions_may_only_read_nodes_they_need() {
    let workflow = valid()
        .with_node(NodeSpec::transform("sibling", ".nodes.shape.output").needs(&["fetch"]))
        .with_node(
            NodeSpec::http_get("deep", "https://x/${{ .nodes[\"fetch\"].output }}")
                .needs(&["shape"]),
        )
        .with_node(NodeSpec::transform("ghost", ".").when(".nodes.nobody.output"));
    assert_error(
        &workflow,
        "spec.nodes[2].transform.jq",
        &[
            "node \"sibling\" reads .nodes.shape but does not need \"shape\"",
            "add \"shape\" to its needs",
        ],
    );
    assert!(
        !errors(&workflow)
            .iter()
            .any(|e| e.path.starts_with("spec.nodes[3]")),
        "transitive needs are fine"
    );
    assert_error(
        &workflow,
        "spec.nodes[4].if",
        &["reads .nodes.nobody, but there is no node named \"nobody\""],
    );
}

#[test]
fn dashed_names_get_a_bracket_hint() {
    let workflow = Workflow::fixture("w")
        .with_node(NodeSpec::transform("tag-each", "1"))
        .with_node(NodeSpec::transform("r", ".nodes.tag-each.output").needs(&["tag-each"]));
    assert_error(
        &workflow,
        "spec.nodes[1].transform.jq",
        &["must be read as .nodes[\"tag-each\"]"],
    );
}

#[test]
fn wait_needs_exactly_one_valid_field() {
    let both = valid().with_node(
        NodeSpec::wait("w1", "1s")
            .with(|n| n.wait.as_mut().unwrap().until = Some("2030-01-01T00:00:00Z".into())),
    );
    assert_error(
        &both,
        "spec.nodes[2].wait",
        &[
            "node \"w1\": a wait node needs exactly one of duration and until",
            "set one",
        ],
    );
    let neither = valid()
        .with_node(NodeSpec::wait("w2", "1s").with(|n| n.wait.as_mut().unwrap().duration = None));
    assert_error(
        &neither,
        "spec.nodes[2].wait",
        &["exactly one of duration and until"],
    );
    let bad = valid().with_node(NodeSpec::wait("w3", "soon"));
    assert_error(
        &bad,
        "spec.nodes[2].wait.duration",
        &["node \"w3\": invalid duration \"soon\"", "e.g. 500ms"],
    );
    let until = valid().with_node(NodeSpec::wait("w4", "1s").with(|n| {
        let wait = n.wait.as_mut().unwrap();
        wait.duration = None;
        wait.until = Some("tomorrow".into());
    }));
    assert_error(
        &until,
        "spec.nodes[2].wait.until",
        &[
            "node \"w4\"",
            "not an RFC 3339 time",
            "2026-01-01T09:00:00Z",
        ],
    );
    let templated = valid().with_node(NodeSpec::wait("w5", "${{ .input.delay }}"));
    assert_eq!(errors(&templated), vec![]);
}

#[test]
fn shell_needs_exactly_one_of_script_and_command() {
    let both = valid().with_node(
        NodeSpec::shell("s", "echo")
            .with(|n| n.shell.as_mut().unwrap().command = vec!["ls".into()]),
    );
    assert_error(
        &both,
        "spec.nodes[2].shell",
        &["node \"s\": a shell node needs exactly one of script and command"],
    );
}

#[test]
fn empty_required_parameters_are_named() {
    let workflow = valid().with_node(NodeSpec::fail("stop", " "));
    assert_error(
        &workflow,
        "spec.nodes[2].fail.message",
        &["node \"stop\": message is empty: set it"],
    );
    let http = valid().with_node(NodeSpec::http_get("call", ""));
    assert_error(
        &http,
        "spec.nodes[2].http.url",
        &["node \"call\": url is empty"],
    );
}

#[test]
fn retry_timeout_and_parallelism_values_are_checked() {
    let backoff = |factor, jitter, initial: &str, max: &str| Backoff {
        initial: Some(sluice_crds::Duration::parse(initial).unwrap()),
        max: Some(sluice_crds::Duration::parse(max).unwrap()),
        factor: Some(factor),
        jitter_percent: Some(jitter),
    };
    let workflow = valid()
        .with_node(NodeSpec::transform("r1", ".").with(|n| {
            n.retry = Some(RetryPolicy {
                limit: 101,
                backoff: Some(backoff(0, 150, "10s", "1s")),
            })
        }))
        .with_node(NodeSpec::transform("r2", ".").with(|n| {
            n.timeout = Some(sluice_crds::Duration::parse("0s").unwrap());
            n.parallelism = Some(3);
        }));
    assert_error(
        &workflow,
        "spec.nodes[2].retry.limit",
        &["node \"r1\": retry limit 101 is above 100", "use 0 to 100"],
    );
    assert_error(
        &workflow,
        "spec.nodes[2].retry.backoff.factor",
        &["backoff factor 0 is out of range"],
    );
    assert_error(
        &workflow,
        "spec.nodes[2].retry.backoff.jitterPercent",
        &["jitterPercent 150 is above 100"],
    );
    assert_error(
        &workflow,
        "spec.nodes[2].retry.backoff",
        &[
            "initial (10s) is longer than max (1s)",
            "make initial at most max",
        ],
    );
    assert_error(
        &workflow,
        "spec.nodes[3].timeout",
        &["node \"r2\" has a zero timeout", "such as 30s"],
    );
    assert_error(
        &workflow,
        "spec.nodes[3].parallelism",
        &["node \"r2\": parallelism only applies to a node with forEach"],
    );
    let spec_level = valid().with_spec(|s| {
        s.parallelism = Some(0);
        s.active_deadline_seconds = Some(0);
    });
    assert_error(
        &spec_level,
        "spec.parallelism",
        &["parallelism 0 is out of range: use a value from 1 to 1000"],
    );
    assert_error(
        &spec_level,
        "spec.activeDeadlineSeconds",
        &["is not positive"],
    );
}

#[test]
fn kubernetes_and_workflow_nodes_are_validated_not_rejected() {
    let workflow = valid().with_node(
        NodeSpec::named("kube")
            .with(|n| n.kubernetes = Some(sluice_crds::nodes::KubernetesNode::default())),
    );
    assert_error(
        &workflow,
        "spec.nodes[2].kubernetes.apiVersion",
        &["node \"kube\": action Get needs apiVersion"],
    );
    let fine = valid().with_node(NodeSpec::named("child").with(|n| {
        n.workflow = Some(sluice_crds::nodes::WorkflowNode {
            workflow_ref: "other".into(),
            ..Default::default()
        })
    }));
    assert_eq!(errors(&fine), vec![]);
}

#[test]
fn a_bad_input_schema_is_reported() {
    let workflow = valid().with_spec(|s| {
        s.input = Some(sluice_crds::workflow::InputSpec {
            schema: Some(json!({"type": "obj"})),
            defaults: None,
        })
    });
    assert_error(&workflow, "spec.input.schema", &["unknown type \"obj\""]);
}

#[test]
fn every_error_is_collected_at_once() {
    let workflow = Workflow::fixture("w")
        .with_node(NodeSpec::named("a"))
        .with_node(NodeSpec::transform("a", ".["))
        .with_node(NodeSpec::fail("b", "x").needs(&["zz"]));
    assert_eq!(errors(&workflow).len(), 4, "{:#?}", errors(&workflow));
}

#[test]
fn parsing_reports_unknown_types_and_bad_parameters_with_paths() {
    let spec = json!({"nodes": [
        {"name": "a", "slack": {"text": "hi"}},
        {"name": "b", "http": {"url": 5}},
        {"name": "c", "timeout": "10 seconds", "fail": {"message": "x"}},
        {"name": "d", "transform": {"jq": "."}},
    ]});
    let errors = parse_spec(&spec).unwrap_err();
    let find = |path: &str| {
        errors
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path}: {errors:#?}"))
    };
    assert!(
        find("spec.nodes[0].slack")
            .message
            .contains("unknown node type or field \"slack\": node types are http, transform")
    );
    assert!(
        find("spec.nodes[1].http")
            .message
            .contains("node \"b\": invalid http parameters")
    );
    assert!(find("spec.nodes[2].timeout").message.contains("e.g. 500ms"));
    assert_eq!(errors.len(), 3);
    let good = parse_spec(&json!({"nodes": [{"name": "d", "transform": {"jq": "."}}]})).unwrap();
    assert_eq!(good.nodes.len(), 1);
}

#[test]
fn workflow_env_reaches_shell_nodes_under_their_own() {
    let workflow = Workflow::fixture("w")
        .with_spec(|s| {
            s.env = vec![
                sluice_crds::workflow::EnvVar {
                    name: "A".into(),
                    value: "workflow".into(),
                },
                sluice_crds::workflow::EnvVar {
                    name: "B".into(),
                    value: "workflow".into(),
                },
            ]
        })
        .with_node(NodeSpec::shell("s", "env").with(|n| {
            n.shell
                .as_mut()
                .unwrap()
                .env
                .insert("B".into(), "node".into());
        }));
    let compiled = compile(&workflow.spec).unwrap();
    let params = compiled.nodes[0]
        .params
        .render(&crate::expr::json_to_val(&json!({})))
        .unwrap();
    assert_eq!(params["env"], json!({"A": "workflow", "B": "node"}));
}

mod templates;
