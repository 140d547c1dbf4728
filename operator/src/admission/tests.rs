//! The webhooks driven with AdmissionReview v1 bodies as the API server
//! sends them, through the HTTP router, one test per rule.

use super::server::{Lookup, LookupError, router};
use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sluice_crds::Workflow;
use std::collections::BTreeMap;
use std::sync::Arc;
use tower::ServiceExt;

/// What exists in the cluster, for the lookups.
#[derive(Default)]
struct Cluster {
    workflows: BTreeMap<String, Workflow>,
    connections: Vec<String>,
    secrets: Vec<String>,
    down: bool,
    quota: Option<super::rules::Quota>,
}

impl Cluster {
    fn check(&self, action: &'static str) -> Result<(), LookupError> {
        if self.down {
            return Err(LookupError {
                action,
                message: "connection refused".into(),
            });
        }
        Ok(())
    }
}

impl Lookup for Cluster {
    fn workflow<'a>(
        &'a self,
        _namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Workflow>, LookupError>> {
        Box::pin(async move {
            self.check("read the workflow")?;
            Ok(self.workflows.get(name).cloned())
        })
    }

    fn connection_names<'a>(
        &'a self,
        _namespace: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, LookupError>> {
        Box::pin(async move {
            self.check("list the connections")?;
            Ok(self.connections.clone())
        })
    }

    fn secret_exists<'a>(
        &'a self,
        _namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, LookupError>> {
        Box::pin(async move {
            self.check("read the secret")?;
            Ok(self.secrets.iter().any(|secret| secret == name))
        })
    }

    fn quota<'a>(
        &'a self,
        _namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<super::rules::Quota>, LookupError>> {
        Box::pin(async move {
            self.check("read the plan")?;
            Ok(self.quota.clone())
        })
    }
}

fn plural(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
}

/// The operator's own username, as the router is told it.
const OPERATOR: &str = "system:serviceaccount:sluice-system:sluice";

/// An AdmissionReview as kube-apiserver sends it, from alice.
fn review(operation: &str, object: &Value, old: Option<&Value>) -> Value {
    let alice = json!({
        "username": "alice@example.com",
        "uid": "014fbff9a07c",
        "groups": ["platform", "system:authenticated"],
    });
    review_by(alice, operation, object, old)
}

/// An AdmissionReview as kube-apiserver sends it for `user_info`.
fn review_by(user_info: Value, operation: &str, object: &Value, old: Option<&Value>) -> Value {
    let kind = object["kind"].as_str().unwrap_or("Workflow");
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "sluice.dev", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "sluice.dev", "version": "v1alpha1", "resource": plural(kind)},
            "requestKind": {"group": "sluice.dev", "version": "v1alpha1", "kind": kind},
            "requestResource": {"group": "sluice.dev", "version": "v1alpha1", "resource": plural(kind)},
            "name": object["metadata"]["name"],
            "namespace": "growth",
            "operation": operation,
            "userInfo": user_info,
            "object": object,
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

async fn post(cluster: Cluster, path: &str, body: Value) -> Value {
    let response = router(Arc::new(cluster), Some(OPERATOR.to_owned()))
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    answer["response"].clone()
}

async fn validate(cluster: Cluster, operation: &str, object: Value, old: Option<Value>) -> Value {
    let response = post(
        cluster,
        "/validate",
        review(operation, &object, old.as_ref()),
    )
    .await;
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    response
}

fn workflow(nodes: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "triage", "namespace": "growth"},
        "spec": {"nodes": nodes},
    })
}

/// The refused fields with their messages.
fn causes(response: &Value) -> Vec<(String, String)> {
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], 422, "{response}");
    assert_eq!(response["status"]["reason"], "Invalid");
    response["status"]["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cause| {
            (
                cause["field"].as_str().unwrap().to_owned(),
                cause["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn warnings(response: &Value) -> Vec<String> {
    assert_eq!(response["allowed"], true, "{response}");
    serde_json::from_value(response["warnings"].clone()).unwrap_or_default()
}

/// The validator's own message for `spec`.
fn validator_messages(object: &Value) -> Vec<(String, String)> {
    let spec = sluice_runner::validate::parse_spec(&object["spec"]).unwrap();
    sluice_runner::validate::validate(&spec)
        .into_iter()
        .map(|error| (error.path, error.message))
        .collect()
}

#[tokio::test]
async fn a_valid_workflow_is_allowed_without_warnings() {
    let object = workflow(json!([
        {"name": "a", "transform": {"jq": "{x: 1}"}},
        {"name": "b", "needs": ["a"], "transform": {"jq": ".nodes.a.output.x"}},
    ]));
    let response = validate(Cluster::default(), "CREATE", object, None).await;
    assert_eq!(warnings(&response), Vec::<String>::new());
}

#[tokio::test]
async fn a_jq_syntax_error_is_refused_with_the_validators_message_and_path() {
    let object = workflow(json!([{"name": "a", "transform": {"jq": "{x: "}}]));
    let expected = validator_messages(&object);
    let response = validate(Cluster::default(), "CREATE", object, None).await;
    let causes = causes(&response);
    assert_eq!(causes, expected);
    assert_eq!(causes[0].0, "spec.nodes[0].transform.jq");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Workflow \"triage\" is invalid: spec.nodes[0].transform.jq: "),
        "{message}"
    );
}

#[tokio::test]
async fn an_undefined_jq_filter_is_refused_naming_the_expression_that_uses_it() {
    let object = workflow(json!([
        {"name": "a", "transform": {"jq": "{x: 1}"}},
        {"name": "b", "needs": ["a"], "if": ".nodes.a.output.x | frobnicate", "transform": {"jq": "1"}},
    ]));
    let expected = validator_messages(&object);
    let causes = causes(&validate(Cluster::default(), "CREATE", object, None).await);
    assert_eq!(causes, expected);
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0].0, "spec.nodes[1].if");
    assert!(causes[0].1.contains("frobnicate"), "{causes:?}");
    assert!(
        causes[0].1.contains("check the spelling of the filter"),
        "{causes:?}"
    );
}

#[tokio::test]
async fn a_template_in_a_shell_script_is_refused_with_the_safe_form_as_its_fix() {
    let object = workflow(json!([
        {"name": "greet", "shell": {"script": "echo hello ${{ .input.name }}"}},
    ]));
    let expected = validator_messages(&object);
    let response = validate(Cluster::default(), "CREATE", object, None).await;
    let causes = causes(&response);
    assert_eq!(causes, expected);
    assert_eq!(causes[0].0, "spec.nodes[0].shell.script");
    assert!(
        causes[0]
            .1
            .contains("would splice data into shell source where it runs as code"),
        "{causes:?}"
    );
    assert!(
        causes[0]
            .1
            .contains(r#"env: {NAME: "${{ .input.name }}"}, then write "$NAME" in the script"#),
        "{causes:?}"
    );
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.nodes[0].shell.script: node \"greet\": script contains"),
        "{message}"
    );

    let safe = workflow(json!([
        {"name": "greet", "shell": {"script": "echo hello \"$NAME\"", "env": {"NAME": "${{ .input.name }}"}}},
    ]));
    let response = validate(Cluster::default(), "CREATE", safe, None).await;
    assert_eq!(warnings(&response), Vec::<String>::new());
}

#[tokio::test]
async fn a_cycle_is_refused_with_its_path() {
    let object = workflow(json!([
        {"name": "a", "needs": ["c"], "transform": {"jq": "1"}},
        {"name": "b", "needs": ["a"], "transform": {"jq": "1"}},
        {"name": "c", "needs": ["b"], "transform": {"jq": "1"}},
    ]));
    let causes = causes(&validate(Cluster::default(), "CREATE", object, None).await);
    assert_eq!(causes[0].0, "spec.nodes[0].needs");
    assert!(causes[0].1.contains("a → c → b → a"), "{causes:?}");
}

#[tokio::test]
async fn reading_a_node_that_is_not_upstream_is_refused() {
    let object = workflow(json!([
        {"name": "a", "transform": {"jq": "1"}},
        {"name": "b", "transform": {"jq": ".nodes.a.output"}},
    ]));
    let causes =
        causes(&validate(Cluster::default(), "UPDATE", object.clone(), Some(object)).await);
    assert_eq!(causes[0].0, "spec.nodes[1].transform.jq");
    assert!(causes[0].1.contains("add \"a\" to its needs"), "{causes:?}");
}

#[tokio::test]
async fn an_unknown_node_type_is_refused_before_anything_else() {
    let object = workflow(json!([{"name": "a", "htp": {"url": "https://x"}}]));
    let causes = causes(&validate(Cluster::default(), "CREATE", object, None).await);
    assert_eq!(causes[0].0, "spec.nodes[0].htp");
    assert!(causes[0].1.contains("unknown node type"), "{causes:?}");
}

#[tokio::test]
async fn a_connection_in_another_namespace_is_refused() {
    let object = workflow(json!([
        {"name": "a", "http": {"url": "https://x", "connection": "team/crm"}},
    ]));
    let causes = causes(&validate(Cluster::default(), "CREATE", object, None).await);
    assert_eq!(causes[0].0, "spec.nodes[0].http.connection");
}

#[tokio::test]
async fn a_missing_connection_is_a_warning_not_a_refusal() {
    let object = workflow(json!([
        {"name": "a", "http": {"url": "https://x", "connection": "crm"}},
        {"name": "b", "http": {"url": "https://y", "connection": "billing"}},
    ]));
    let cluster = Cluster {
        connections: vec!["billing".into()],
        ..Cluster::default()
    };
    let warnings = warnings(&validate(cluster, "CREATE", object, None).await);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("connection \"crm\" does not exist"));
}

#[tokio::test]
async fn too_many_nodes_are_refused_by_admission() {
    let limit = sluice_crds::workflow::MAX_NODES;
    let nodes: Vec<Value> = (0..=limit)
        .map(|index| json!({"name": format!("n{index}"), "transform": {"jq": "1"}}))
        .collect();
    let causes =
        causes(&validate(Cluster::default(), "CREATE", workflow(json!(nodes)), None).await);
    assert_eq!(causes[0].0, "spec.nodes");
    assert!(
        causes[0]
            .1
            .contains(&format!("more than the limit of {limit}"))
    );
}

#[tokio::test]
async fn a_need_naming_no_node_is_refused_by_admission_not_cel() {
    let object = workflow(json!([
        {"name": "fetch", "transform": {"jq": "1"}},
        {"name": "late", "needs": ["fecth"], "transform": {"jq": "1"}},
    ]));
    let expected = validator_messages(&object);
    let causes = causes(&validate(Cluster::default(), "CREATE", object, None).await);
    assert_eq!(causes, expected);
    assert_eq!(causes[0].0, "spec.nodes[1].needs[0]");
    assert!(
        causes[0].1.contains("did you mean \"fetch\"?"),
        "{causes:?}"
    );
}

#[tokio::test]
async fn duplicate_trigger_names_are_refused() {
    let mut object = workflow(json!([{"name": "a", "transform": {"jq": "1"}}]));
    let trigger =
        json!({"name": "hook", "webhook": {"auth": {"secretRef": {"name": "s", "key": "k"}}}});
    object["spec"]["triggers"] = json!([trigger, trigger]);
    let causes = causes(&validate(Cluster::default(), "CREATE", object, None).await);
    assert_eq!(causes[0].0, "spec.triggers[1].name");
}

/// A 1,000-node workflow at the limits: layers of 64 nodes, each node
/// needing all 64 of the layer before it and reading one of them.
pub(crate) fn thousand_nodes() -> Value {
    let limit = sluice_crds::workflow::MAX_NODES;
    let width = sluice_crds::workflow::MAX_NEEDS;
    let nodes: Vec<Value> = (0..limit)
        .map(|index| {
            let layer = index / width;
            let needs: Vec<String> = if layer == 0 {
                vec![]
            } else {
                ((layer - 1) * width..layer * width)
                    .map(|n| format!("n{n}"))
                    .collect()
            };
            let jq = match needs.first() {
                Some(first) => format!(".nodes[\"{first}\"].output + 1"),
                None => "1".to_owned(),
            };
            json!({"name": format!("n{index}"), "needs": needs, "transform": {"jq": jq}})
        })
        .collect();
    workflow(json!(nodes))
}

#[tokio::test]
async fn a_workflow_at_the_limits_is_allowed() {
    let response = validate(Cluster::default(), "CREATE", thousand_nodes(), None).await;
    assert_eq!(warnings(&response), Vec::<String>::new());
}

fn typed_workflow(schema: Value) -> Workflow {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "signup", "namespace": "growth"},
        "spec": {"input": {"schema": schema}, "nodes": [{"name": "a", "transform": {"jq": "1"}}]},
    }))
    .unwrap()
}

fn with_signup() -> Cluster {
    let schema = json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}});
    Cluster {
        workflows: BTreeMap::from([("signup".to_owned(), typed_workflow(schema))]),
        ..Cluster::default()
    }
}

fn run(workflow: &str, input: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "signup-1", "namespace": "growth"},
        "spec": {"workflowRef": {"name": workflow}, "input": input},
    })
}

#[tokio::test]
async fn a_run_whose_input_breaks_the_schema_is_refused_with_the_run_controllers_message() {
    let response = validate(
        with_signup(),
        "CREATE",
        run("signup", json!({"email": 7})),
        None,
    )
    .await;
    let causes = causes(&response);
    let errors = sluice_runner::input::prepare(
        typed_workflow(json!({"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}}))
            .spec
            .input
            .as_ref(),
        json!({"email": 7}),
    )
    .unwrap_err();
    assert_eq!(
        causes,
        vec![(
            "spec.input".to_owned(),
            sluice_runner::input::mismatch_message("signup", &errors)
        )]
    );
    let allowed = validate(
        with_signup(),
        "CREATE",
        run("signup", json!({"email": "a@b.c"})),
        None,
    )
    .await;
    assert_eq!(warnings(&allowed), Vec::<String>::new());
}

#[tokio::test]
async fn a_run_of_a_workflow_not_yet_applied_is_allowed_with_a_warning() {
    let response = validate(Cluster::default(), "CREATE", run("later", json!({})), None).await;
    let warnings = warnings(&response);
    assert!(
        warnings[0].starts_with("workflow \"later\" does not exist"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn a_runs_workflow_ref_cannot_change() {
    let old = run("signup", json!({"email": "a@b.c"}));
    let new = run("other", json!({"email": "a@b.c"}));
    let causes = causes(&validate(with_signup(), "UPDATE", new, Some(old.clone())).await);
    assert_eq!(causes[0].0, "spec.workflowRef");
    assert!(causes[0].1.starts_with("workflowRef cannot change"));
    // Other updates (cancel) pass without judging the input again.
    let mut cancelled = old.clone();
    cancelled["spec"]["cancel"] = json!(true);
    warnings(&validate(with_signup(), "UPDATE", cancelled, Some(old)).await);
}

fn schedule(cron: &str, zone: &str, input: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "nightly", "namespace": "growth"},
        "spec": {"workflowRef": {"name": "signup"}, "cron": cron, "timeZone": zone, "input": input},
    })
}

#[tokio::test]
async fn a_schedule_with_a_bad_cron_or_time_zone_is_refused() {
    let input = json!({"email": "a@b.c"});
    let bad_cron = causes(
        &validate(
            with_signup(),
            "CREATE",
            schedule("61 * * * *", "UTC", input.clone()),
            None,
        )
        .await,
    );
    assert_eq!(bad_cron[0].0, "spec.cron");
    let bad_zone = causes(
        &validate(
            with_signup(),
            "CREATE",
            schedule("0 * * * *", "Mars/Olympus", input.clone()),
            None,
        )
        .await,
    );
    assert_eq!(bad_zone[0].0, "spec.timeZone");
    assert!(bad_zone[0].1.contains("is not an IANA time zone"));
    let mut zero_window = schedule("0 * * * *", "UTC", input.clone());
    zero_window["spec"]["catchUp"] = json!({"window": "0s"});
    let catch_up = causes(&validate(with_signup(), "CREATE", zero_window, None).await);
    assert_eq!(catch_up[0].0, "spec.catchUp.window");
    warnings(
        &validate(
            with_signup(),
            "CREATE",
            schedule("0 9 * * 1-5", "Europe/Berlin", input),
            None,
        )
        .await,
    );
}

#[tokio::test]
async fn a_schedules_input_is_checked_against_its_workflow() {
    let causes = causes(
        &validate(
            with_signup(),
            "CREATE",
            schedule("@daily", "UTC", json!({})),
            None,
        )
        .await,
    );
    assert_eq!(causes[0].0, "spec.input");
    let warnings = warnings(
        &validate(
            Cluster::default(),
            "CREATE",
            schedule("@daily", "UTC", json!({})),
            None,
        )
        .await,
    );
    assert!(warnings[0].contains("the schedule fires no run until it is created"));
}

#[tokio::test]
async fn a_connection_without_its_secret_is_allowed_with_a_warning() {
    let connection = json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Connection",
        "metadata": {"name": "crm", "namespace": "growth"},
        "spec": {"type": "http", "config": {"baseUrl": "https://crm.example.com", "auth": "bearer"}, "secretRef": {"name": "crm-token"}},
    });
    let warned = warnings(&validate(Cluster::default(), "CREATE", connection.clone(), None).await);
    assert!(warned[0].starts_with("secret \"crm-token\" named by spec.secretRef does not exist"));
    let present = Cluster {
        secrets: vec!["crm-token".into()],
        ..Cluster::default()
    };
    assert!(warnings(&validate(present, "CREATE", connection, None).await).is_empty());
}

#[tokio::test]
async fn an_unreachable_api_server_never_blocks_a_write() {
    let cluster = Cluster {
        down: true,
        ..Cluster::default()
    };
    let warnings =
        warnings(&validate(cluster, "CREATE", run("signup", json!({"email": 7})), None).await);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("failed to read the workflow")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn deletes_and_other_kinds_pass() {
    let object = workflow(json!([{"name": "a", "transform": {"jq": "{"}}]));
    let response = validate(Cluster::default(), "DELETE", object.clone(), None).await;
    assert_eq!(response["allowed"], true);
    let mut other = object;
    other["kind"] = json!("ConfigMap");
    let response = validate(Cluster::default(), "CREATE", other, None).await;
    assert_eq!(response["allowed"], true);
}

#[tokio::test]
async fn a_body_that_is_not_a_review_is_answered_not_dropped() {
    let response = post(Cluster::default(), "/validate", json!({"hello": "world"})).await;
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("failed to read the AdmissionReview")
    );
}

fn applied_patch(response: &Value, object: &Value) -> Value {
    assert_eq!(response["allowed"], true, "{response}");
    let mut object = object.clone();
    if let Some(patch) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    object
}

#[tokio::test]
async fn the_mutating_webhook_stamps_the_creator_and_keeps_it_on_updates() {
    use super::creator::{CREATED_BY, CREATED_BY_GROUPS, annotation};
    let mut forged = run("signup", json!({}));
    forged["metadata"]["annotations"] = json!({CREATED_BY: "root"});
    let response = post(
        Cluster::default(),
        "/mutate",
        review("CREATE", &forged, None),
    )
    .await;
    let created = applied_patch(&response, &forged);
    assert_eq!(
        annotation(&created, CREATED_BY).as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        annotation(&created, CREATED_BY_GROUPS).as_deref(),
        Some("platform,system:authenticated")
    );
    let response = post(
        Cluster::default(),
        "/mutate",
        review("UPDATE", &forged, Some(&created)),
    )
    .await;
    let updated = applied_patch(&response, &forged);
    assert_eq!(
        annotation(&updated, CREATED_BY).as_deref(),
        Some("alice@example.com")
    );
    // Schedules and Connections carry no creator.
    let object = schedule("@daily", "UTC", json!({}));
    let response = post(
        Cluster::default(),
        "/mutate",
        review("CREATE", &object, None),
    )
    .await;
    assert!(response.get("patch").is_none());
}

#[tokio::test]
async fn runs_the_operator_starts_are_created_by_their_trigger_and_nobody_else_can_claim_one() {
    use super::creator::{CREATED_BY, CREATED_BY_GROUPS, annotation};
    let operator = json!({
        "username": OPERATOR,
        "groups": ["system:serviceaccounts", "system:serviceaccounts:sluice-system", "system:authenticated"],
    });
    for (trigger, expected) in [
        (
            json!({"type": "Schedule", "source": "nightly", "scheduledTime": "2026-12-07T02:30:00Z"}),
            "system:sluice:schedule:nightly",
        ),
        (
            json!({"type": "Webhook", "source": "signup-hook", "data": {"query": {}}}),
            "system:sluice:webhook:signup/signup-hook",
        ),
        (
            json!({"type": "Workflow", "source": "parent-x7k2p"}),
            "system:sluice:run:parent-x7k2p",
        ),
    ] {
        let mut started = run("signup", json!({}));
        started["spec"]["trigger"] = trigger;
        let response = post(
            Cluster::default(),
            "/mutate",
            review_by(operator.clone(), "CREATE", &started, None),
        )
        .await;
        let created = applied_patch(&response, &started);
        assert_eq!(annotation(&created, CREATED_BY).as_deref(), Some(expected));
        assert_eq!(
            annotation(&created, CREATED_BY_GROUPS).as_deref(),
            Some(
                "system:serviceaccounts,system:serviceaccounts:sluice-system,system:authenticated"
            )
        );

        // A user writing the same trigger is recorded as themselves.
        let response = post(
            Cluster::default(),
            "/mutate",
            review("CREATE", &started, None),
        )
        .await;
        let claimed = applied_patch(&response, &started);
        assert_eq!(
            annotation(&claimed, CREATED_BY).as_deref(),
            Some("alice@example.com")
        );
    }

    // A manual run by the operator's identity (e.g. kubectl with its token)
    // stays under that identity.
    let manual = run("signup", json!({}));
    let response = post(
        Cluster::default(),
        "/mutate",
        review_by(operator, "CREATE", &manual, None),
    )
    .await;
    assert_eq!(
        annotation(&applied_patch(&response, &manual), CREATED_BY).as_deref(),
        Some(OPERATOR)
    );
}

/// A client trusting only the PEM certificates in `bundle`.
fn client_trusting(bundle: &str) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_https_port_serves_reviews_and_swaps_in_a_renewed_certificate() {
    use super::certs::{CertAction, CertPolicy, issue};
    use super::tls::{ReloadableCert, TlsListener, server_config};
    let names = vec!["127.0.0.1".to_owned()];
    let policy = CertPolicy::default();
    let now = chrono::Utc::now();
    let first = issue(&CertAction::IssueAll, None, &names, &policy, now).unwrap();
    let cert = Arc::new(ReloadableCert::default());
    let (chain, key) = first.serving().unwrap();
    cert.load(chain, key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let listener = TlsListener::new(listener, server_config(cert.clone()).unwrap()).unwrap();
    let app = router(Arc::new(with_signup()), Some(OPERATOR.to_owned()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("https://{address}/validate");
    let body = review("CREATE", &run("signup", json!({"email": 7})), None);

    let trusting_first = client_trusting(first.ca_bundle().unwrap());
    let answer: Value = trusting_first
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["details"]["causes"][0]["field"],
        "spec.input"
    );

    // A new CA: clients trusting only the first one are refused from the
    // next connection on, clients with the new bundle (both CAs) are served.
    let rotated = issue(&CertAction::IssueAll, Some(&first), &names, &policy, now).unwrap();
    let (chain, key) = rotated.serving().unwrap();
    cert.load(chain, key).unwrap();
    let fresh_first = client_trusting(first.data[super::certs::CA_CERT_KEY].as_str());
    assert!(fresh_first.post(&url).json(&body).send().await.is_err());
    let trusting_bundle = client_trusting(rotated.ca_bundle().unwrap());
    let status = trusting_bundle
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// A namespace on plan "small": 2 runs a day, inputs up to 64 bytes, and
/// `started_today` runs started today.
fn on_small_plan(started_today: usize) -> Cluster {
    use crate::quota::plan::Subscribed;
    use crate::run::admission::RunView;
    let now = chrono::Utc::now();
    let runs = (0..started_today)
        .map(|index| RunView {
            name: format!("earlier-{index}"),
            phase: Some(sluice_crds::RunPhase::Succeeded),
            priority: 0,
            created: now,
            cancelling: false,
            started: Some(now),
            ended: Some(now),
        })
        .collect();
    Cluster {
        quota: Some(super::rules::Quota {
            subscribed: Some(Subscribed {
                plan: "small".into(),
                limits: sluice_crds::PlanLimits {
                    runs_per_day: Some(2),
                    max_input_bytes: Some(64),
                    ..Default::default()
                },
            }),
            runs,
        }),
        ..Cluster::default()
    }
}

fn new_run(input: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "next", "namespace": "growth"},
        "spec": {"workflowRef": {"name": "triage"}, "input": input},
    })
}

#[tokio::test]
async fn a_run_over_its_plans_daily_limit_is_refused_with_the_reset_time() {
    let response = validate(on_small_plan(2), "CREATE", new_run(json!({})), None).await;
    let causes = causes(&response);
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0].0, "metadata.namespace");
    let tomorrow = (chrono::Utc::now().date_naive() + chrono::Duration::days(1))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    assert_eq!(
        causes[0].1,
        format!(
            "QuotaExceeded: plan \"small\" allows 2 runs per day (spec.limits.runsPerDay) and this namespace has started 2 today (UTC); the limit resets at {tomorrow}"
        )
    );
    let under = validate(on_small_plan(1), "CREATE", new_run(json!({})), None).await;
    assert_eq!(under["allowed"], true, "{under}");
}

#[tokio::test]
async fn a_run_input_larger_than_the_plan_allows_is_refused_at_spec_input() {
    let big = json!({"text": "x".repeat(100)});
    let response = validate(on_small_plan(0), "CREATE", new_run(big.clone()), None).await;
    let causes = causes(&response);
    assert_eq!(causes[0].0, "spec.input");
    assert!(causes[0].1.contains("allows at most 64"), "{causes:?}");
    // An update of an existing run is not judged again.
    let update = validate(
        on_small_plan(5),
        "UPDATE",
        new_run(big.clone()),
        Some(new_run(big)),
    )
    .await;
    assert_eq!(update["allowed"], true, "{update}");
}
