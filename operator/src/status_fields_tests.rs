//! Every status field the four CRDs promise is written by some code path.
//!
//! The test walks the generated schema of `status` of Workflow,
//! WorkflowRun, Schedule and Connection (nested objects and list items
//! included) and looks, in the operator's non-test source, for a write of
//! each field: an assignment (`.field =`), a mutation (`&mut ….field`,
//! `.field.push(`), a struct-literal field (`field: <expression>`) or a
//! JSON key (`"fieldName":`). A field with none of them fails the test.
//! Conditions are written by `set_condition` in `sluice-crds`, so its
//! source counts too.

use kube::CustomResourceExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// `(path, JSON name)` of every property under `schema`.
fn walk(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let field_path = format!("{path}.{name}");
            out.push((field_path.clone(), name.clone()));
            walk(property, &field_path, out);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(items, &format!("{path}[]"), out);
    }
}

fn status_fields<K: CustomResourceExt>() -> Vec<(String, String)> {
    let crd = serde_json::to_value(K::crd()).expect("a CRD serializes");
    let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    assert!(status.is_object(), "{} has no status schema", K::crd_name());
    let mut fields = Vec::new();
    walk(status, &format!("{}.status", K::crd_name()), &mut fields);
    fields
}

fn snake_case(name: &str) -> String {
    let mut snake = String::new();
    for character in name.chars() {
        if character.is_ascii_uppercase() {
            snake.push('_');
            snake.push(character.to_ascii_lowercase());
        } else {
            snake.push(character);
        }
    }
    match snake.as_str() {
        "type" => "type_".to_owned(),
        _ => snake,
    }
}

/// The non-test part of every Rust file under `dir`.
fn sources(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("failed to read {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            sources(&path, out);
        } else if name.ends_with(".rs") && !name.ends_with("_tests.rs") && name != "fixtures.rs" {
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            out.push(code.to_owned());
        }
    }
}

/// Whether the text after `field: ` starts an expression rather than a type.
fn is_expression(value: &str) -> bool {
    let value = value.trim_start();
    let Some(first) = value.chars().next() else {
        return false;
    };
    if first.is_ascii_uppercase() {
        let rest = value.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
        return rest.starts_with("::") || rest.starts_with('(') || rest.starts_with(" {");
    }
    !matches!(first, '&' | '\'') && !value.starts_with("impl ") && !value.starts_with("dyn ")
}

fn writes(code: &str, snake: &str, camel: &str) -> bool {
    let boundary = |rest: &str| {
        !rest
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let member = format!(".{snake}");
    let assigned = code.match_indices(&member).any(|(at, _)| {
        let rest = &code[at + member.len()..];
        let borrowed = code[..at]
            .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            .ends_with("&mut ");
        boundary(rest)
            && (rest.starts_with(" =") && !rest.starts_with(" ==")
                || rest.starts_with(" +=")
                || rest.starts_with(" -=")
                || rest.starts_with(".push(")
                || rest.starts_with(".insert(")
                || rest.starts_with(".get_or_insert")
                || rest.starts_with(".extend(")
                || borrowed)
    });
    let literal = code.lines().any(|line| {
        let line = line.trim_start();
        if line.starts_with("pub ")
            || line.starts_with("let ")
            || line.starts_with("fn ")
            || line.starts_with("//")
        {
            return false;
        }
        line.strip_prefix(snake)
            .and_then(|rest| rest.strip_prefix(": "))
            .is_some_and(is_expression)
    });
    let json_key = code.contains(&format!("\"{camel}\":"));
    assigned || literal || json_key
}

#[test]
fn every_status_field_of_the_four_crds_is_written_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut code = Vec::new();
    sources(&root.join("src"), &mut code);
    code.push(
        std::fs::read_to_string(root.join("../crds/src/common.rs"))
            .expect("crds/src/common.rs is readable")
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .to_owned(),
    );
    let code = code.join("\n");
    let mut fields = status_fields::<sluice_crds::Workflow>();
    fields.extend(status_fields::<sluice_crds::WorkflowRun>());
    fields.extend(status_fields::<sluice_crds::Schedule>());
    fields.extend(status_fields::<sluice_crds::Connection>());
    assert!(fields.len() > 40, "the walk found only {fields:?}");
    let unwritten: BTreeSet<String> = fields
        .iter()
        .filter(|(_, name)| !writes(&code, &snake_case(name), name))
        .map(|(path, _)| path.clone())
        .collect();
    assert!(
        unwritten.is_empty(),
        "status fields no code path writes (write them, or drop them from the API): {unwritten:#?}"
    );
}

#[test]
fn the_write_detector_tells_writes_from_declarations() {
    assert!(writes("status.last_run = Some(x);", "last_run", "lastRun"));
    assert!(writes(
        "    last_run: summary.last_run,",
        "last_run",
        "lastRun"
    ));
    assert!(writes("    runs: RunCounts::default(),", "runs", "runs"));
    assert!(writes("json!({\"lastRun\": x})", "last_run", "lastRun"));
    assert!(writes(
        "set(&mut status.conditions, c)",
        "conditions",
        "conditions"
    ));
    assert!(!writes(
        "    pub last_run: Option<LastRun>,",
        "last_run",
        "lastRun"
    ));
    assert!(!writes(
        "fn f(runs: &[RunEntry]) {}\nlet runs: Api<WorkflowRun> = x;",
        "runs",
        "runs"
    ));
    assert!(!writes(
        "if status.last_run == None {}",
        "last_run",
        "lastRun"
    ));
    assert!(!writes("    runs: Vec<String>,", "runs", "runs"));
}
