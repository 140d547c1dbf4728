//! What data nodes see: whole outputs whatever the output cap, the memory
//! budget as the only limit, key order across node boundaries, and text
//! from whole-field templates in text fields.

use super::*;
use crate::report::shortened;

fn events_of(h: &Harness) -> Vec<EventKind> {
    h.recorder.events().into_iter().map(|e| e.kind).collect()
}

#[tokio::test(start_paused = true)]
async fn an_over_cap_output_reaches_the_next_node_whole_and_only_its_report_is_marked() {
    let mut h = harness();
    h.engine = h.engine.with_output_cap(1000);
    let mut workflow = Workflow::fixture("w")
        .with_node(NodeSpec::transform(
            "generate",
            "[range(2000) | {id: ., group: (. % 3)}]",
        ))
        .with_node(
            NodeSpec::transform(
                "groups",
                ".nodes.generate.output | group_by(.group) | map(length)",
            )
            .needs(&["generate"]),
        );
    workflow.spec.output = Some(".nodes.generate.output".into());
    let result = h.run(workflow, json!({})).await;
    assert_eq!(result.summary.phase, RunPhase::Succeeded, "{result:?}");

    let groups = result.node("groups").unwrap();
    assert_eq!(groups.output, Some(json!([667, 667, 666])), "read whole");
    let generate = result.node("generate").unwrap();
    assert!(generate.truncated);
    let bytes = generate.output_bytes.unwrap();
    assert!(bytes > 30_000, "{bytes}");
    let reported = generate.output.as_ref().unwrap();
    assert_eq!(shortened(reported), Some((bytes, 1000)));
    assert!(
        reported["preview"]
            .as_str()
            .unwrap()
            .starts_with("[{\"id\":0,\"group\":0}")
    );

    // The run output is whole; its reported copy is marked too.
    assert_eq!(result.output.as_array().map(Vec::len), Some(2000));
    assert!(result.summary.output_truncated);
    assert_eq!(shortened(&result.summary.output).map(|s| s.0), Some(bytes));

    // The events (what the run API, status and history receive) carry the
    // marked copy, and say so on the wire.
    let finished = events_of(&h)
        .into_iter()
        .find_map(|kind| match kind {
            EventKind::NodeFinished(node) if node.node == "generate" => Some(node),
            _ => None,
        })
        .unwrap();
    let wire = crate::report::to_wire(&EventKind::NodeFinished(finished)).unwrap();
    assert!(matches!(
        wire,
        sluice_crds::run_api::RunEventKind::NodeFinished {
            output_truncated: true,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn going_over_the_memory_budget_fails_the_node_naming_it_the_size_and_the_setting() {
    let h = harness();
    let mut workflow = Workflow::fixture("w")
        .with_node(scripted("first", "big:2000"))
        .with_node(scripted("second", "big:2000").needs(&["first"]));
    workflow.spec.memory_budget = Some("3Ki".into());
    let result = h.run(workflow.clone(), json!({})).await;
    assert_eq!(result.summary.phase, RunPhase::Failed);
    assert_eq!(result.summary.failed_node.as_deref(), Some("second"));
    let error = result.node("second").unwrap().error.clone().unwrap();
    for part in [
        "node \"second\"",
        "2002 bytes",
        "2.0 KiB",
        "3.0 KiB",
        "spec.memoryBudget",
    ] {
        assert!(error.contains(part), "{part:?} missing from {error}");
    }

    // The command line's budget wins, and is the one named.
    let mut h = harness();
    h.engine = h.engine.with_memory_budget(10_000);
    let result = h.run(workflow.clone(), json!({})).await;
    assert_eq!(result.summary.phase, RunPhase::Succeeded, "{result:?}");
    let mut h = harness();
    h.engine = h.engine.with_memory_budget(1000);
    let result = h.run(workflow, json!({})).await;
    let error = result.node("first").unwrap().error.clone().unwrap();
    assert!(error.contains("--memory-budget"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_for_each_stops_as_soon_as_its_output_passes_the_budget() {
    let h = harness();
    let mut workflow = Workflow::fixture("w").with_node(
        NodeSpec::transform("each", "\"x\" * 100")
            .for_each("[range(1000)]")
            .with(|n| n.parallelism = Some(1)),
    );
    workflow.spec.memory_budget = Some("5000".into());
    let result = h.run(workflow, json!({})).await;
    let each = result.node("each").unwrap();
    assert_eq!(each.phase, NodePhase::Failed);
    let error = each.error.clone().unwrap();
    assert!(
        error.contains("node \"each\" after 49 of 1000 items"),
        "{error}"
    );
    assert!(error.contains("spec.memoryBudget"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn key_order_survives_three_nodes() {
    let h = harness();
    let workflow = Workflow::fixture("w")
        .with_node(NodeSpec::transform(
            "make",
            "{zeta: 1, alpha: {y: 1, b: 2}, mid: [{k2: 1, k1: 2}]}",
        ))
        .with_node(NodeSpec::transform("extend", ".nodes.make.output + {beta: 3}").needs(&["make"]))
        .with_node(
            NodeSpec::transform(
                "read",
                r#"{keys: (.nodes.extend.output | keys_unsorted), csv: ([.nodes.extend.output.mid[0] | to_entries[] | .key] | join(",")), whole: .nodes.extend.output}"#,
            )
            .needs(&["extend"]),
        );
    let result = h.run(workflow, json!({})).await;
    let read = result.node("read").unwrap().output.clone().unwrap();
    assert_eq!(read["keys"], json!(["zeta", "alpha", "mid", "beta"]));
    assert_eq!(read["csv"], json!("k2,k1"));
    assert_eq!(
        serde_json::to_string(&read["whole"]).unwrap(),
        r#"{"zeta":1,"alpha":{"y":1,"b":2},"mid":[{"k2":1,"k1":2}],"beta":3}"#
    );
    assert_eq!(
        serde_json::to_string(&result.output).unwrap(),
        serde_json::to_string(&json!({"read": read})).unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn shell_text_fields_take_numbers_booleans_and_objects() {
    let h = harness();
    let workflow = Workflow::fixture("w").with_node(
        NodeSpec::shell(
            "show",
            "printf '%s|%s|%s|' \"$ITEM\" \"$FLAG\" \"$OBJ\"; cat",
        )
        .with(|n| {
            let shell = n.shell.as_mut().unwrap();
            shell.env = [
                ("ITEM".to_owned(), "${{ .item }}".to_owned()),
                ("FLAG".to_owned(), "${{ .item > 1 }}".to_owned()),
                ("OBJ".to_owned(), "${{ {n: .item} }}".to_owned()),
            ]
            .into();
            shell.stdin = Some("${{ [.item] }}".into());
        })
        .for_each("[1, 2.5]"),
    );
    let result = h.run(workflow, json!({})).await;
    assert_eq!(result.summary.phase, RunPhase::Succeeded, "{result:?}");
    let outputs = result.node("show").unwrap().output.clone().unwrap();
    let stdout: Vec<&str> = outputs
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["stdout"].as_str().unwrap())
        .collect();
    assert_eq!(
        stdout,
        ["1|false|{\"n\":1}|[1]", "2.5|true|{\"n\":2.5}|[2.5]"]
    );
}
