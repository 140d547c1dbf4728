//! Every manifest in `examples/` deserializes into the Rust types and
//! serializes back to the same JSON, so the types lose nothing a user wrote.

use crate::{Connection, Schedule, Workflow, WorkflowRun};
use k8s_openapi::api::core::v1::Secret;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::PathBuf;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Every YAML document of every file in `examples/`, with where it came from.
pub(crate) fn example_documents() -> Vec<(String, Value)> {
    // Top level and the Argo CD examples (examples/argocd/).
    let mut files: Vec<PathBuf> = [examples_dir(), examples_dir().join("argocd")]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).expect("examples/ exists"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut documents = vec![];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let values: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
        for (index, value) in values.into_iter().enumerate() {
            documents.push((format!("{}#{index}", file.display()), value));
        }
    }
    documents
}

fn round_trip<T: DeserializeOwned + Serialize>(origin: &str, value: &Value) {
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{origin} does not fit the API types: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, value,
        "{origin} changed when read into the types and written back"
    );
}

#[test]
fn every_example_round_trips_through_the_types_without_loss() {
    let documents = example_documents();
    let mut kinds = std::collections::BTreeSet::new();
    for (origin, value) in &documents {
        let kind = value["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{origin} has no kind"));
        match kind {
            "Workflow" => round_trip::<Workflow>(origin, value),
            "WorkflowRun" => round_trip::<WorkflowRun>(origin, value),
            "Schedule" => round_trip::<Schedule>(origin, value),
            "Connection" => round_trip::<Connection>(origin, value),
            "Secret" => round_trip::<Secret>(origin, value),
            "NodeType" => round_trip::<crate::CustomNodeType>(origin, value),
            other => panic!("{origin}: unexpected kind {other} in examples/"),
        }
        kinds.insert(kind.to_owned());
    }
    for kind in [
        "Workflow",
        "WorkflowRun",
        "Schedule",
        "Connection",
        "Secret",
    ] {
        assert!(kinds.contains(kind), "examples/ needs at least one {kind}");
    }
}

#[test]
fn every_example_passes_the_crd_cel_rules() {
    for (origin, value) in example_documents() {
        let result = match value["kind"].as_str() {
            Some("Workflow") => {
                kube::core::cel::validate_cel(&serde_json::from_value::<Workflow>(value).unwrap())
            }
            Some("WorkflowRun") => kube::core::cel::validate_cel(
                &serde_json::from_value::<WorkflowRun>(value).unwrap(),
            ),
            Some("Schedule") => {
                kube::core::cel::validate_cel(&serde_json::from_value::<Schedule>(value).unwrap())
            }
            Some("Connection") => {
                kube::core::cel::validate_cel(&serde_json::from_value::<Connection>(value).unwrap())
            }
            _ => Ok(()),
        };
        assert!(result.is_ok(), "{origin} breaks a CEL rule: {result:?}");
    }
}
