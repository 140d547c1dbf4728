//! The Helm chart: `helm lint --strict` passes and every rendered object
//! passes `kubernetes-validate --strict` (Kubernetes 1.33) for several value
//! sets; the schema refuses bad values with a message naming them; the
//! objects each value turns on are there and consistent (selectors match,
//! alerts and the dashboard use metrics the operator exports, the
//! Deployment only sets variables the operator reads).
//!
//! This file holds the rendering helpers, the value sets and the checks
//! over all of them; `objects.rs` checks what single values turn on;
//! `hook.rs` runs the `helm test` hook's script against the real operator.

mod hook;
mod objects;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn helm() -> PathBuf {
    std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("helm"))
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/sluice")
}

/// A values file holding `values` (YAML), alive as long as the handle.
fn values_file(values: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("create a values file");
    std::fs::write(file.path(), values).expect("write a values file");
    file
}

fn run_helm(args: &[&str], values: &str) -> std::process::Output {
    run_helm_in("sluice-system", args, values)
}

fn run_helm_in(namespace: &str, args: &[&str], values: &str) -> std::process::Output {
    let file = values_file(values);
    Command::new(helm())
        .args(args)
        .arg(chart())
        .args(["--namespace", namespace, "--values"])
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "failed to run helm ({e}): install helm v3+ (bash .ci/run does) or point HELM at it"
            )
        })
}

/// `helm template` of the chart with `values`, as YAML text.
fn render(values: &str) -> String {
    render_in("sluice-system", values)
}

/// `helm template` of the chart installed in `namespace`.
fn render_in(namespace: &str, values: &str) -> String {
    let output = run_helm_in(namespace, &["template", "demo"], values);
    assert!(
        output.status.success(),
        "helm template failed with values\n{values}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm writes UTF-8")
}

/// The rendered objects, parsed.
fn objects(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("the rendered chart is YAML")
        .into_iter()
        .filter(|object| !object.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|object| object["kind"].as_str().map(str::to_owned))
        .collect()
}

/// Kinds of custom resources kubernetes-validate has no schema for; their
/// shape is checked by the assertions of the tests instead.
const WITHOUT_SCHEMA: [&str; 5] = [
    "Certificate",
    "HTTPRoute",
    "Issuer",
    "PrometheusRule",
    "ServiceMonitor",
];

fn validate(yaml: &str) {
    let file = values_file(yaml);
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
    for line in report.lines().filter(|line| !line.starts_with("INFO ")) {
        let known_gap = line.contains("Couldn't find schema for kind")
            && WITHOUT_SCHEMA
                .iter()
                .any(|kind| line.contains(&format!("kind {kind} ")));
        assert!(known_gap, "kubernetes-validate reported: {line}\n{report}");
    }
}

fn lint(values: &str) {
    let output = run_helm(&["lint", "--strict"], values);
    assert!(
        output.status.success(),
        "helm lint --strict failed with values\n{values}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const DEFAULTS: &str = "{}\n";

const NAMESPACE_SCOPED: &str = r#"
rbac: {scope: namespace, watchNamespaces: [growth, payments]}
database: {secretName: sluice-db-app, secretKey: uri}
operator: {replicas: 1}
"#;

const EVERYTHING_ON: &str = r#"
image: {repository: registry.example.com/platform/sluice, tag: "0.1.0-rc1", pullPolicy: Always}
imagePullSecrets: [{name: registry}]
runner:
  image: {repository: registry.example.com/platform/sluice-runner}
  resources: {requests: {cpu: 250m}, limits: {memory: 1Gi}}
operator:
  replicas: 3
  podDisruptionBudget: {minAvailable: 2}
  podAnnotations: {example.com/team: platform}
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: [{key: dedicated, operator: Equal, value: platform, effect: NoSchedule}]
  priorityClassName: sluice-operator
  leaderElection: {leaseDuration: 30s, renewDeadline: 20s, retryPeriod: 4s}
  extraEnv:
    - {name: SLUICE_RECONCILE_CONCURRENCY, value: "32"}
    - name: SLUICE_OUTPUT_CAP_BYTES
      valueFrom: {configMapKeyRef: {name: sluice-tuning, key: outputCap}}
networkPolicy:
  enabled: true
  webhooks:
    from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}]
  metrics:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
ingress:
  enabled: true
  className: nginx
  host: hooks.example.com
  tls: [{secretName: hooks-tls, hosts: [hooks.example.com]}]
httpRoute:
  enabled: true
  parentRefs: [{name: public, namespace: gateway-system}]
  hostnames: [hooks.example.com]
admission: {failurePolicy: Fail, certManager: {enabled: true}}
metrics:
  serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}
  prometheusRule: {enabled: true, labels: {release: kube-prometheus-stack}}
  grafanaDashboard: {enabled: true}
"#;

const MINIMAL: &str = r#"
operator: {replicas: 1, podDisruptionBudget: {enabled: false}}
crds: {install: false}
rbac: {aggregateToDefaultRoles: false}
test: {enabled: false}
admission: {enabled: false}
"#;

const VALUE_SETS: [(&str, &str); 4] = [
    ("defaults", DEFAULTS),
    ("namespace-scoped", NAMESPACE_SCOPED),
    ("everything-on", EVERYTHING_ON),
    ("minimal", MINIMAL),
];

#[test]
fn every_value_set_lints_and_renders_valid_kubernetes_objects() {
    for (name, values) in VALUE_SETS {
        eprintln!("value set {name}");
        lint(values);
        validate(&render(values));
    }
}

#[test]
fn the_schema_refuses_bad_values_naming_them() {
    let cases = [
        ("operator: {replicas: 0}", "/operator/replicas"),
        ("operator: {replica: 2}", "'replica' not allowed"),
        ("image: {pullPolicy: Sometimes}", "/image/pullPolicy"),
        ("image: {repository: 'Not An Image'}", "/image/repository"),
        (
            "runner: {resources: {limits: {memory: lots}}}",
            "/runner/resources/limits/memory",
        ),
        ("rbac: {scope: everywhere}", "/rbac/scope"),
        ("rbac: {watchNamespaces: [growth]}", "/rbac/watchNamespaces"),
        (
            "rbac: {scope: namespace, watchNamespaces: [Growth]}",
            "/rbac/watchNamespaces/0",
        ),
        ("httpRoute: {enabled: true}", "/httpRoute/parentRefs"),
        (
            "metrics: {prometheusRule: {failedRunRatio: 2}}",
            "/metrics/prometheusRule/failedRunRatio",
        ),
        (
            "metrics: {serviceMonitor: {interval: often}}",
            "/metrics/serviceMonitor/interval",
        ),
        (
            "database: {secretName: 'My Secret'}",
            "/database/secretName",
        ),
        ("crds: {install: 'yes'}", "/crds/install"),
        (
            "operator: {leaderElection: {leaseDuration: soon}}",
            "/operator/leaderElection/leaseDuration",
        ),
        (
            "operator: {leaderElection: {renewDeadline: 10}}",
            "/operator/leaderElection/renewDeadline",
        ),
        (
            "operator: {leaderElection: {retryPeriod: 1s, jitter: 1s}}",
            "'jitter' not allowed",
        ),
        ("operator: {extraEnv: [{value: x}]}", "/operator/extraEnv/0"),
        (
            "operator: {extraEnv: [{name: 'NOT VALID', value: x}]}",
            "/operator/extraEnv/0/name",
        ),
        (
            "admission: {failurePolicy: Sometimes}",
            "/admission/failurePolicy",
        ),
        ("unknownTopLevel: 1", "'unknownTopLevel' not allowed"),
    ];
    for (values, named) in cases {
        let output = run_helm(&["template", "demo"], values);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "helm accepted the bad values {values}"
        );
        assert!(
            stderr.contains("values don't meet the specifications of the schema")
                && stderr.contains(named),
            "the refusal of {values} should name {named}:\n{stderr}"
        );
    }
}

#[test]
fn crds_are_templates_kept_on_uninstall_with_an_opt_out() {
    let rendered = objects(&render(DEFAULTS));
    let crds: Vec<&Value> = rendered
        .iter()
        .filter(|object| object["kind"] == "CustomResourceDefinition")
        .collect();
    let names: BTreeSet<&str> = crds
        .iter()
        .filter_map(|crd| crd["metadata"]["name"].as_str())
        .collect();
    let generated: BTreeSet<String> = sluice_crds::generate::crds()
        .into_iter()
        .filter_map(|crd| crd.metadata.name)
        .collect();
    assert_eq!(
        names,
        generated.iter().map(String::as_str).collect(),
        "the chart installs every generated CRD"
    );
    for crd in &crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{crd}"
        );
        let generated = sluice_crds::generate::crds()
            .into_iter()
            .find(|candidate| {
                candidate.metadata.name.as_deref() == crd["metadata"]["name"].as_str()
            })
            .expect("generated");
        assert_eq!(
            numbers_as_floats(crd["spec"].clone()),
            numbers_as_floats(serde_json::to_value(&generated.spec).expect("serialize")),
            "the chart's CRD equals the generated one"
        );
    }
    let not_kept = objects(&render("crds: {keep: false}"));
    assert!(
        not_kept
            .iter()
            .all(|object| object["kind"] != "CustomResourceDefinition"
                || object["metadata"]["annotations"]["helm.sh/resource-policy"].is_null())
    );
    assert!(!kinds(&objects(&render(MINIMAL))).contains("CustomResourceDefinition"));
    assert!(
        !chart().join("crds").exists(),
        "charts/sluice/crds/ would be installed by Helm a second time, and never upgraded"
    );
}

/// `value` with every number as a float: Helm's YAML round trip writes
/// `0.0` as `0`, the same number to the API server.
fn numbers_as_floats(value: Value) -> Value {
    match value {
        Value::Number(number) => number
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, numbers_as_floats(value)))
                .collect(),
        ),
        other => other,
    }
}
