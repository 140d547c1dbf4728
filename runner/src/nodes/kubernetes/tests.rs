//! Pure tests of the `kubernetes` node: parameters → request, and the
//! classification of API errors. The calls themselves are tested end to end
//! against the API server stand-in (`tests/tests/e2e/cluster_nodes.rs`).

use super::*;

fn params(value: Value) -> KubernetesParams {
    serde_json::from_value(value).unwrap()
}

#[test]
fn get_defaults_to_the_runs_namespace() {
    let request = build_request(
        params(json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "settings"})),
        "team-a",
    )
    .unwrap();
    assert_eq!(
        request,
        Request {
            action: KubernetesAction::Get,
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "settings".into(),
            namespace: "team-a".into(),
            body: Body::None,
        }
    );
}

#[test]
fn apply_takes_identity_from_the_manifest() {
    let manifest = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": {"replicas": 2}
    });
    let request = build_request(
        params(json!({"action": "Apply", "manifest": manifest})),
        "team-a",
    )
    .unwrap();
    assert_eq!(
        (
            request.api_version.as_str(),
            request.kind.as_str(),
            request.name.as_str(),
            request.namespace.as_str()
        ),
        ("apps/v1", "Deployment", "web", "prod")
    );
    assert_eq!(request.body, Body::Manifest(manifest));
}

#[test]
fn apply_fills_the_manifest_from_the_parameters() {
    let request = build_request(
        params(json!({
            "action": "Apply", "apiVersion": "v1", "kind": "ConfigMap", "name": "settings",
            "manifest": {"data": {"a": "1"}}
        })),
        "team-a",
    )
    .unwrap();
    assert_eq!(
        request.body,
        Body::Manifest(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings"}, "data": {"a": "1"}
        }))
    );
    assert_eq!(request.namespace, "team-a");
}

#[test]
fn parameters_and_manifest_must_agree() {
    let error = build_request(
        params(json!({
            "action": "Apply", "name": "other",
            "manifest": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}
        })),
        "team-a",
    )
    .unwrap_err();
    assert!(!error.retryable);
    assert!(
        error
            .message
            .contains("kubernetes.name is \"other\" but the manifest says \"settings\""),
        "{error}"
    );
}

#[test]
fn missing_fields_are_named() {
    let get = build_request(
        params(json!({"apiVersion": "v1", "kind": "ConfigMap"})),
        "a",
    );
    assert_eq!(
        get.unwrap_err().message,
        "kubernetes.name is required for action Get"
    );
    let apply = build_request(params(json!({"action": "Apply"})), "a");
    assert!(
        apply
            .unwrap_err()
            .message
            .contains("kubernetes.manifest is required")
    );
    let apply = build_request(
        params(json!({"action": "Apply", "manifest": {"kind": "ConfigMap"}})),
        "a",
    );
    assert!(
        apply
            .unwrap_err()
            .message
            .contains("kubernetes.apiVersion (or the manifest's) is required")
    );
    let patch = build_request(
        params(json!({"action": "Patch", "apiVersion": "v1", "kind": "ConfigMap", "name": "x"})),
        "a",
    );
    assert_eq!(
        patch.unwrap_err().message,
        "kubernetes.patch is required for action Patch"
    );
}

#[test]
fn patch_documents_match_their_type() {
    assert_eq!(
        patch_body(
            KubernetesPatchType::Merge,
            Some(json!({"data": {"a": "2"}}))
        )
        .unwrap(),
        Body::Merge(json!({"data": {"a": "2"}}))
    );
    let list = json!([{"op": "replace", "path": "/data/a", "value": "2"}]);
    assert!(matches!(
        patch_body(KubernetesPatchType::Json, Some(list.clone())),
        Ok(Body::Json(_))
    ));
    let merge_with_list = patch_body(KubernetesPatchType::Merge, Some(list)).unwrap_err();
    assert!(merge_with_list.message.contains("use patchType Json"));
    let bad_json_patch =
        patch_body(KubernetesPatchType::Json, Some(json!({"op": "nope"}))).unwrap_err();
    assert!(bad_json_patch.message.contains("is not a JSON patch"));
}

#[test]
fn forbidden_names_the_missing_grant() {
    let error = api_error(
        KubernetesAction::Patch,
        "configmaps \"x\" in namespace \"a\"",
        "configmaps",
        403,
        "configmaps \"x\" is forbidden",
    );
    assert!(!error.retryable);
    assert!(
        error
            .message
            .starts_with("the run's ServiceAccount may not patch configmaps: grant it with a Role, or set spec.runner.serviceAccountName"),
        "{error}"
    );
}

#[test]
fn api_errors_are_retryable_only_when_another_attempt_may_succeed() {
    let retryable = |code| api_error(KubernetesAction::Get, "x", "configmaps", code, "m").retryable;
    for code in [409, 429, 500, 503, 504] {
        assert!(retryable(code), "{code}");
    }
    for code in [400, 401, 403, 404, 422] {
        assert!(!retryable(code), "{code}");
    }
    let not_found = api_error(
        KubernetesAction::Get,
        "configmaps \"x\" in namespace \"a\"",
        "configmaps",
        404,
        "m",
    );
    assert!(
        not_found
            .message
            .starts_with("failed to get configmaps \"x\" in namespace \"a\": not found")
    );
}
