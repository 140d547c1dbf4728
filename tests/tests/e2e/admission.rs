//! The admission webhooks through the API server: webhook configurations
//! pointing at the real operator's HTTPS port (its self-managed CA
//! published into their `caBundle` by the operator), and writes refused,
//! warned about or stamped on their way in.

use std::path::Path;

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use sluice_crds::{RunPhase, Workflow};
use sluice_e2e::cluster::TestCluster;
use sluice_e2e::operator::{Operator, eventually};

use crate::operator_support::Bed;
use crate::support::api_status;

const CREATED_BY: &str = "sluice.dev/created-by";

/// Installs both webhook configurations for `operator` (failurePolicy
/// Fail, so a webhook that is not called shows up as an error) and waits
/// until the operator has published its CA into them.
pub(crate) async fn install_webhooks(cluster: &TestCluster, operator: &Operator) {
    let name = format!("sluice-admission-{}", cluster.namespace());
    let base = operator.admission_url();
    let rules = json!([{
        "apiGroups": ["sluice.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
        "resources": ["workflows", "workflowruns", "schedules", "connections"], "scope": "Namespaced",
    }]);
    let webhook = |hook: &str, path: &str| {
        json!({
            "name": hook, "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "timeoutSeconds": 10,
            "clientConfig": {"url": format!("{base}{path}")},
            "rules": rules,
        })
    };
    for (kind, hook, path) in [
        (
            "ValidatingWebhookConfiguration",
            "validate.sluice.dev",
            "/validate",
        ),
        (
            "MutatingWebhookConfiguration",
            "creator.sluice.dev",
            "/mutate",
        ),
    ] {
        cluster
            .apply_value(
                json!({
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": kind,
                    "metadata": {"name": name},
                    "webhooks": [webhook(hook, path)],
                }),
                Path::new("<webhooks>"),
            )
            .await
            .expect("failed to apply a webhook configuration");
    }
    // The operator publishes its CA on its next certificate check (every
    // second in these tests, see `bed_with_webhooks`).
    let validating: Api<
        k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
    > = Api::all(cluster.client());
    let mutating: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(cluster.client());
    eventually(
        "the operator to publish its CA into both webhook configurations",
        || {
            let (validating, mutating, name) = (validating.clone(), mutating.clone(), name.clone());
            async move {
                let v = validating.get(&name).await.ok()?;
                let m = mutating.get(&name).await.ok()?;
                let published = |bundle: Option<&k8s_openapi::ByteString>| {
                    bundle.is_some_and(|b| !b.0.is_empty())
                };
                (published(v.webhooks?.first()?.client_config.ca_bundle.as_ref())
                    && published(m.webhooks?.first()?.client_config.ca_bundle.as_ref()))
                .then_some(())
            }
        },
    )
    .await;
}

/// A Bed whose operator re-checks its certificates every second, with
/// the webhooks installed.
async fn bed_with_webhooks(test: &str) -> Bed {
    let bed = Bed::start_with_env(test, &[("SLUICE_ADMISSION_CHECK_INTERVAL", "1s")]).await;
    install_webhooks(&bed.cluster, &bed.operator).await;
    bed
}

fn workflow_object(name: &str, nodes: Value) -> Workflow {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"nodes": nodes},
    }))
    .expect("a Workflow")
}

/// A client that authenticates as `user` in `groups` (kubectl's `--as`).
pub(crate) async fn client_as(cluster: &TestCluster, user: &str, groups: &[&str]) -> kube::Client {
    let mut kubeconfig =
        Kubeconfig::read_from(cluster.kubeconfig_path()).expect("read the test kubeconfig");
    for named in &mut kubeconfig.auth_infos {
        if let Some(auth) = named.auth_info.as_mut() {
            auth.impersonate = Some(user.to_owned());
            auth.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
        }
    }
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a client config");
    kube::Client::try_from(config).expect("a client")
}

#[tokio::test]
async fn a_broken_workflow_is_refused_at_create_with_the_validators_message() {
    let bed = bed_with_webhooks("admission-broken").await;
    let nodes = json!([
        {"name": "fetch", "transform": {"jq": "{x: 1}"}},
        {"name": "score", "needs": ["fetch"], "transform": {"jq": "{vip: .nodes.fetch.output.x >"}},
    ]);
    let broken = workflow_object("broken", nodes);
    let expected = sluice_runner::validate::validate(&broken.spec);
    assert_eq!(expected.len(), 1, "{expected:?}");

    // A server-side dry run shows the error and stores nothing…
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let status = api_status(bed.workflows().create(&dry_run, &broken).await);
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains(&expected[0].message),
        "{}",
        status.message
    );
    // …and so does the create itself, with the field path.
    let status = api_status(
        bed.workflows()
            .create(&PostParams::default(), &broken)
            .await,
    );
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
    assert!(
        status.message.starts_with("admission webhook \"validate.sluice.dev\" denied the request: Workflow \"broken\" is invalid: spec.nodes[1].transform.jq: "),
        "{}",
        status.message
    );
    assert!(status.message.contains(&expected[0].message));
    let causes = status.details.expect("details with causes").causes;
    assert_eq!(causes[0].field, "spec.nodes[1].transform.jq");
    assert!(bed.workflows().get_opt("broken").await.unwrap().is_none());

    // The fixed workflow goes through; a dry run of it stores nothing.
    let fixed = workflow_object(
        "fixed",
        json!([{"name": "fetch", "transform": {"jq": "{x: 1}"}}]),
    );
    bed.workflows()
        .create(&dry_run, &fixed)
        .await
        .expect("dry run of a valid workflow");
    assert!(bed.workflows().get_opt("fixed").await.unwrap().is_none());
    bed.workflows()
        .create(&PostParams::default(), &fixed)
        .await
        .expect("a valid workflow is admitted");

    // An update that breaks it is refused too; the stored spec stays.
    let patch = json!({"spec": {"nodes": [{"name": "fetch", "transform": {"jq": "{"}}]}});
    let status = api_status(
        bed.workflows()
            .patch("fixed", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert_eq!(status.code, 422);
    bed.finish().await;
}

#[tokio::test]
async fn the_creator_annotation_cannot_be_set_by_a_user() {
    let bed = bed_with_webhooks("admission-creator").await;
    let alice = client_as(&bed.cluster, "alice@example.com", &["platform"]).await;
    let as_alice: Api<Workflow> = Api::namespaced(alice, bed.cluster.namespace());
    let mut forged = workflow_object("mine", json!([{"name": "a", "transform": {"jq": "1"}}]));
    forged.metadata.annotations = Some([(CREATED_BY.to_owned(), "root".to_owned())].into());
    let created = as_alice
        .create(&PostParams::default(), &forged)
        .await
        .expect("create as alice");
    let annotations = created.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(CREATED_BY).map(String::as_str),
        Some("alice@example.com")
    );
    assert_eq!(
        annotations
            .get("sluice.dev/created-by-groups")
            .map(String::as_str),
        Some("platform,system:authenticated")
    );

    // Another user rewrites it: the stored creator stays.
    let mallory = client_as(&bed.cluster, "mallory", &[]).await;
    let as_mallory: Api<Workflow> = Api::namespaced(mallory, bed.cluster.namespace());
    let patch = json!({"metadata": {"annotations": {CREATED_BY: "mallory"}}});
    let patched = as_mallory
        .patch("mine", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the patch itself is allowed");
    let annotations = patched.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get(CREATED_BY).map(String::as_str),
        Some("alice@example.com")
    );

    // Runs are stamped with their creator too.
    let run = bed.create_run("mine-1", "mine", json!({})).await;
    let annotations = run.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get(CREATED_BY).map(String::as_str),
        Some("kubernetes-admin")
    );
    bed.finish().await;
}

/// 1,000 transform nodes in layers of 64, each needing the whole layer
/// before it and adding one to a value read from it.
fn thousand_nodes() -> Value {
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
                None => "0".to_owned(),
            };
            json!({"name": format!("n{index}"), "needs": needs, "transform": {"jq": jq}})
        })
        .collect();
    json!(nodes)
}

#[tokio::test]
async fn a_thousand_node_workflow_is_accepted_and_runs() {
    let bed = bed_with_webhooks("admission-thousand").await;
    let mut workflow = workflow_object("big", thousand_nodes());
    workflow.spec.output = Some(".nodes[\"n999\"].output".to_owned());
    bed.workflows()
        .create(&PostParams::default(), &workflow)
        .await
        .expect("a 1,000-node workflow is admitted");
    eventually("workflow big to be Ready", || async {
        let workflow = bed.workflows().get("big").await.ok()?;
        let status = workflow.status?;
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == sluice_crds::ConditionStatus::True)
            .then_some(())
    })
    .await;
    bed.create_run("big-1", "big", json!({})).await;
    let run = bed.wait_terminal("big-1", RunPhase::Succeeded).await;
    let status = run.status.expect("status");
    // 1,000 nodes in 16 layers: the last layer read a value 15 deep.
    assert_eq!(status.output, Some(json!(15)), "{:?}", status.message);
    bed.finish().await;
}
