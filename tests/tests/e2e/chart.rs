//! The Helm chart renders objects a Kubernetes 1.33 API server accepts, and
//! the operator's Deployment only sets environment variables the operator
//! reads.

use std::path::{Path, PathBuf};
use std::process::Command;

fn helm() -> PathBuf {
    std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("helm"))
}

/// `helm template` of the chart with `sets`, as YAML text.
fn render(sets: &[&str]) -> String {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/sluice");
    let mut command = Command::new(helm());
    command
        .args(["template", "demo"])
        .arg(&chart)
        .args(["--namespace", "sluice-system"]);
    for set in sets {
        command.args(["--set", set]);
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!("failed to run helm ({e}): install helm v3+ (bash .ci/run does) or point HELM at it")
    });
    assert!(
        output.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn validate(yaml: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("failed to run kubernetes-validate ({e}): pip install kubernetes-validate")
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the rendered chart is not valid Kubernetes 1.33:\n{report}"
    );
}

#[test]
fn the_chart_renders_valid_kubernetes_objects() {
    validate(&render(&[]));
    let with_database = render(&["database.secretName=sluice-db", "operator.namespace=growth"]);
    validate(&with_database);
    assert!(with_database.contains("name: DATABASE_URL"));
    assert!(with_database.contains("name: SLUICE_NAMESPACE"));
}

#[test]
fn the_deployment_sets_only_variables_the_operator_reads() {
    sluice_e2e::operator::ensure_binaries().expect("build sluice-operator");
    let help =
        Command::new(sluice_e2e::binaries::locate(sluice_e2e::binaries::Binary::Operator).unwrap())
            .arg("--help")
            .output()
            .expect("run sluice-operator --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let rendered = render(&["database.secretName=sluice-db", "operator.namespace=growth"]);
    let set: Vec<&str> = rendered
        .lines()
        .filter_map(|line| {
            line.trim_start()
                .strip_prefix("- {name: ")
                .or_else(|| line.trim_start().strip_prefix("- name: "))
        })
        .map(|rest| rest.split([',', ' ', '}']).next().unwrap_or_default())
        .filter(|name| name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !name.is_empty())
        .collect();
    assert!(set.len() >= 8, "{set:?}");
    for name in set {
        let known = help.contains(&format!("env: {name}="))
            || help.contains(&format!("env: {name}]"))
            || name == "RUST_LOG";
        assert!(
            known,
            "the chart sets {name}, which sluice-operator does not read (see sluice-operator --help)"
        );
    }
}
