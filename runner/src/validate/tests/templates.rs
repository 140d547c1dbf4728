//! Template rules checked before any run: no templates in shell source,
//! url templates that percent-encoding would break, results that can never
//! fit their field, and the memory budget's form.

use super::*;

fn kubernetes_apply(name: &str, manifest: serde_json::Value) -> NodeSpec {
    NodeSpec::transform(name, ".").with(|n| {
        n.transform = None;
        n.kubernetes = Some(sluice_crds::nodes::KubernetesNode {
            action: Some(sluice_crds::nodes::KubernetesAction::Apply),
            manifest: Some(manifest),
            ..Default::default()
        });
    })
}

#[test]
fn a_template_in_a_shell_script_is_refused_with_the_safe_way() {
    let workflow = valid()
        .with_node(NodeSpec::shell("greet", "echo hello ${{ .input.name }}").needs(&["shape"]));
    assert_error(
        &workflow,
        "spec.nodes[2].shell.script",
        &[
            "node \"greet\": script contains the template ${{ .input.name }}",
            "runs as code",
            "env: {NAME: \"${{ .input.name }}\"}",
            "\"$NAME\" in the script",
        ],
    );
    // The same value through env, quoted, and in command items is fine.
    let safe = valid().with_node(NodeSpec::shell("greet", "echo hello \"$NAME\"").with(|n| {
        n.shell
            .as_mut()
            .unwrap()
            .env
            .insert("NAME".into(), "${{ .input.name }}".into());
    }));
    assert_eq!(errors(&safe), vec![]);
}

#[test]
fn a_url_starting_with_a_template_is_refused_with_a_whole_url_template() {
    let workflow = valid().with_node(NodeSpec::http_get(
        "get",
        "${{ .input.base }}/users/${{ .input.id }}",
    ));
    assert_error(
        &workflow,
        "spec.nodes[2].http.url",
        &[
            "url starts with the template ${{ .input.base }}",
            "percent-encoded as one component",
            r#"url: "${{ .input.base + "/users/" + (.input.id | @uri) }}""#,
        ],
    );
    for fine in [
        "${{ .input.base + \"/users\" }}",
        "https://api.example.com/users/${{ .input.id }}?q=${{ .input.q }}",
        "/relative/${{ .item }}",
    ] {
        let workflow = valid().with_node(NodeSpec::http_get("get", fine));
        assert_eq!(errors(&workflow), vec![], "{fine}");
    }
}

#[test]
fn the_suggested_whole_url_template_compiles_and_encodes_like_the_url() {
    let suggested = r#".input.base + "/users/" + (.input.id | @uri)"#;
    let program = crate::expr::Program::compile(suggested).unwrap();
    let url = program
        .first_json(crate::expr::json_to_val(
            &json!({"input": {"base": "http://h:1", "id": "a b/c"}}),
        ))
        .unwrap();
    assert_eq!(url, json!("http://h:1/users/a%20b%2Fc"));
}

#[test]
fn templates_that_can_never_fit_their_field_are_reported() {
    let text = valid().with_node(kubernetes_apply("apply", json!("kind: ${{ .input.kind }}")));
    assert_error(
        &text,
        "spec.nodes[2].kubernetes.manifest",
        &["manifest takes a JSON object", "always yields text"],
    );
    let constant = valid().with_node(kubernetes_apply("apply", json!("${{ [1, 2] }}")));
    assert_error(
        &constant,
        "spec.nodes[2].kubernetes.manifest",
        &["${{ [1, 2] }} always yields [1,2]"],
    );
    let null_url = valid().with_node(NodeSpec::http_get("get", "${{ null }}"));
    assert_error(
        &null_url,
        "spec.nodes[2].http.url",
        &["url is required", "always yields null"],
    );
    let wait = valid().with_node(NodeSpec::transform("w", ".").with(|n| {
        n.transform = None;
        n.wait = Some(sluice_crds::nodes::WaitNode {
            duration: Some("${{ 30 }}".into()),
            until: None,
        });
    }));
    assert_error(
        &wait,
        "spec.nodes[2].wait.duration",
        &["always yields \"30\""],
    );
    // Values only known at run time are left to the run.
    let later = valid().with_node(kubernetes_apply("apply", json!("${{ .input.manifest }}")));
    assert_eq!(errors(&later), vec![]);
}

#[test]
fn the_memory_budget_must_be_a_byte_quantity() {
    let mut workflow = valid();
    workflow.spec.memory_budget = Some("lots".into());
    assert_error(
        &workflow,
        "spec.memoryBudget",
        &["\"lots\" is not a positive size in bytes", "256Mi"],
    );
    workflow.spec.memory_budget = Some("512Mi".into());
    assert_eq!(
        compile(&workflow.spec).unwrap().memory_budget,
        Some(512 << 20)
    );
}
