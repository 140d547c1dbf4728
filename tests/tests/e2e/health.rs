//! The Argo CD health scripts shipped in the chart (`charts/sluice/argocd/`)
//! run by a real Lua interpreter on objects the operator brought into each
//! state, and the `argocd-cm` snippet in docs/argocd.md kept equal to them.
//! Also runs the PostSync hook example (`examples/argocd/`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use sluice_crds::RunPhase;
use sluice_e2e::binaries::workspace_root;
use sluice_e2e::operator::eventually;

use crate::operator_support::Bed;

const LUA: &str = "lua5.4";

fn script(kind: &str) -> String {
    let path = workspace_root()
        .join("charts/sluice/argocd")
        .join(format!("{}.lua", kind.to_lowercase()));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()))
}

/// `value` as a Lua expression (objects become tables keyed by string).
fn lua_value(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => lua_string(text),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(key, value)| format!("[{}] = {}", lua_string(key), lua_value(value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn lua_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for byte in text.bytes() {
        match byte {
            b'"' => quoted.push_str("\\\""),
            b'\\' => quoted.push_str("\\\\"),
            b' '..=b'~' => quoted.push(byte as char),
            other => quoted.push_str(&format!("\\{other:03}")),
        }
    }
    quoted.push('"');
    quoted
}

/// (status, message) the health script of `kind` gives `object`, run the
/// way Argo CD runs it: `obj` set, the script's returned table read.
fn health(kind: &str, object: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{}\nend)()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua_value(object),
        script(kind)
    );
    let mut child = Command::new(LUA)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("failed to run {LUA} ({error}): install it with `apt-get install lua5.4` (bash .ci/run does)")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(program.as_bytes())
        .expect("write the program");
    let output = child.wait_with_output().expect("lua output");
    assert!(
        output.status.success(),
        "the {kind} health script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_owned(), message.to_owned())
}

async fn object(bed: &Bed, kind: &str, plural: &str, name: &str) -> Value {
    let resource = ApiResource {
        group: "sluice.dev".into(),
        version: "v1alpha1".into(),
        api_version: "sluice.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(bed.cluster.client(), bed.cluster.namespace(), &resource);
    serde_json::to_value(api.get(name).await.expect("read the object")).expect("JSON")
}

/// Waits until the health of `name` is `expected`; returns its message.
async fn wait_health(bed: &Bed, kind: &str, plural: &str, name: &str, expected: &str) -> String {
    eventually(
        &format!("{kind} {name} to be {expected} to Argo CD"),
        || async {
            let (status, message) = health(kind, &object(bed, kind, plural, name).await);
            (status == expected).then_some(message)
        },
    )
    .await
}

#[test]
fn the_argocd_cm_snippet_in_the_docs_is_the_shipped_scripts() {
    let docs =
        std::fs::read_to_string(workspace_root().join("docs/argocd.md")).expect("docs/argocd.md");
    for kind in ["Workflow", "WorkflowRun", "Schedule", "Connection"] {
        let indented: String = script(kind)
            .lines()
            .map(|line| {
                if line.is_empty() {
                    "\n".to_owned()
                } else {
                    format!("    {line}\n")
                }
            })
            .collect();
        let block = format!("  resource.customizations.health.sluice.dev_{kind}: |\n{indented}");
        assert!(
            docs.contains(&block),
            "docs/argocd.md does not hold charts/sluice/argocd/{}.lua as it is: copy it again",
            kind.to_lowercase()
        );
    }
}

#[tokio::test]
async fn the_health_scripts_read_the_states_the_operator_produces() {
    let bed = Bed::start("argocd-health").await;
    // A run created before the operator admits it is Progressing.
    assert_eq!(
        health(
            "WorkflowRun",
            &json!({"metadata": {"name": "new"}, "spec": {}})
        )
        .0,
        "Progressing"
    );

    bed.apply_workflow(
        "good",
        json!({"nodes": [{"name": "a", "transform": {"jq": "{ok: true}"}}]}),
    )
    .await;
    bed.apply_workflow(
        "bad",
        json!({"nodes": [{"name": "a", "transform": {"jq": "{"}}]}),
    )
    .await;
    bed.apply_workflow(
        "failing",
        json!({"nodes": [{"name": "boom", "fail": {"message": "no"}}]}),
    )
    .await;
    wait_health(&bed, "Workflow", "workflows", "good", "Healthy").await;
    let message = wait_health(&bed, "Workflow", "workflows", "bad", "Degraded").await;
    assert!(message.contains("spec.nodes[0].transform.jq"), "{message}");

    bed.create_run("good-1", "good", json!({})).await;
    bed.wait_terminal("good-1", RunPhase::Succeeded).await;
    wait_health(&bed, "WorkflowRun", "workflowruns", "good-1", "Healthy").await;
    bed.create_run("failing-1", "failing", json!({})).await;
    bed.wait_terminal("failing-1", RunPhase::Failed).await;
    let message = wait_health(&bed, "WorkflowRun", "workflowruns", "failing-1", "Degraded").await;
    assert!(message.starts_with("failed at node boom"), "{message}");

    for (name, data) in [("with-secret", json!({"token": "t"}))] {
        bed.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}))
            .await;
    }
    for (name, secret) in [("crm", "with-secret"), ("billing", "absent")] {
        bed.apply(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Connection", "metadata": {"name": name},
            "spec": {"type": "http", "config": {"baseUrl": "https://example.com", "auth": "bearer"}, "secretRef": {"name": secret}},
        }))
        .await;
    }
    wait_health(&bed, "Connection", "connections", "crm", "Healthy").await;
    let message = wait_health(&bed, "Connection", "connections", "billing", "Degraded").await;
    assert!(message.contains("absent"), "{message}");

    for (name, workflow, cron) in [
        ("hourly", "good", "0 * * * *"),
        ("nonsense", "good", "61 * * * *"),
        ("every-second", "failing", "* * * * * *"),
    ] {
        bed.apply(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Schedule", "metadata": {"name": name},
            "spec": {"workflowRef": {"name": workflow}, "cron": cron, "pauseOnFailure": true},
        }))
        .await;
    }
    wait_health(&bed, "Schedule", "schedules", "hourly", "Healthy").await;
    let message = wait_health(&bed, "Schedule", "schedules", "nonsense", "Degraded").await;
    assert!(
        message.contains("spec.cron") || message.contains("cron"),
        "{message}"
    );
    let message = wait_health(&bed, "Schedule", "schedules", "every-second", "Degraded").await;
    assert!(
        message.starts_with("paused after a failed run"),
        "{message}"
    );
    bed.finish().await;
}

#[tokio::test]
async fn the_postsync_hook_example_runs_and_turns_healthy() {
    let bed = Bed::start("argocd-hook").await;
    let folder: PathBuf = workspace_root().join("examples");
    for file in ["hello.yaml", "argocd/hello-smoke-test.yaml"] {
        let text = std::fs::read_to_string(folder.join(file)).expect("an example");
        let mut document: Value = serde_saphyr::from_str(&text).expect("YAML");
        // The test's namespace, not default.
        document["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("namespace");
        if document["kind"] == "WorkflowRun" {
            let run: sluice_crds::WorkflowRun = serde_json::from_value(document).expect("a run");
            bed.runs()
                .create(&Default::default(), &run)
                .await
                .expect("create the hook's run");
        } else {
            bed.apply(document).await;
        }
    }
    let name = eventually("the hook's run to exist", || async {
        let runs = bed.runs().list(&ListParams::default()).await.ok()?;
        runs.items.first().and_then(|run| run.metadata.name.clone())
    })
    .await;
    let run = bed.wait_terminal(&name, RunPhase::Succeeded).await;
    assert_eq!(
        run.metadata
            .annotations
            .unwrap_or_default()
            .get("argocd.argoproj.io/hook")
            .map(String::as_str),
        Some("PostSync")
    );
    wait_health(&bed, "WorkflowRun", "workflowruns", &name, "Healthy").await;
    bed.finish().await;
}
