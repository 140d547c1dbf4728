//! Shared pieces of the operator scenarios: a [`Bed`] (cluster, database,
//! operator) per test, manifests as JSON, and waits on run and workflow
//! state.

use std::path::Path;

use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use sluice_crds::{RunPhase, Workflow, WorkflowRun};
use sluice_e2e::cluster::TestCluster;
use sluice_e2e::operator::{Operator, OperatorOptions, TestDatabase, cluster, eventually};

/// One test's cluster, database and operator.
pub struct Bed {
    // Dropped in this order: the operator before the cluster it talks to.
    pub operator: Operator,
    pub database: TestDatabase,
    pub cluster: TestCluster,
}

impl Bed {
    /// A cluster, a fresh database and an operator mirroring into it.
    pub async fn start(test: &str) -> Self {
        Self::start_with_env(test, &[]).await
    }

    /// [`Bed::start`] with extra environment variables for the operator.
    pub async fn start_with_env(test: &str, env: &[(&str, &str)]) -> Self {
        let cluster = cluster(test)
            .await
            .expect("failed to start the test cluster");
        let database = TestDatabase::create()
            .await
            .expect("failed to create the test database");
        let mut options = OperatorOptions::with_database(&database);
        options.env.extend(
            env.iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        let operator = Operator::start(&cluster, options)
            .await
            .expect("failed to start the operator");
        Self {
            cluster,
            database,
            operator,
        }
    }

    /// Stops the operator, drops the database, ends the cluster.
    pub async fn finish(mut self) {
        self.operator.kill().await;
        self.database
            .finish()
            .await
            .expect("failed to drop the test database");
        self.cluster
            .finish()
            .await
            .expect("failed to finish the cluster");
    }

    pub fn runs(&self) -> Api<WorkflowRun> {
        Api::namespaced(self.cluster.client(), self.cluster.namespace())
    }

    pub fn workflows(&self) -> Api<Workflow> {
        Api::namespaced(self.cluster.client(), self.cluster.namespace())
    }

    /// Applies one object given as JSON (into the test's namespace).
    pub async fn apply(&self, object: Value) {
        self.cluster
            .apply_value(object, Path::new("<test>"))
            .await
            .expect("failed to apply an object");
    }

    /// Applies a Workflow with `spec`.
    pub async fn apply_workflow(&self, name: &str, spec: Value) {
        self.apply(json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .await;
    }

    /// Creates a run of `workflow`; `extra` is merged into its spec.
    pub async fn create_run(&self, name: &str, workflow: &str, extra: Value) -> WorkflowRun {
        let mut spec = json!({"workflowRef": {"name": workflow}});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                spec.insert(key.clone(), value.clone());
            }
        }
        let run: WorkflowRun = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "WorkflowRun",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("a valid WorkflowRun");
        self.runs()
            .create(&PostParams::default(), &run)
            .await
            .expect("failed to create a run")
    }

    /// Waits until `check` holds for the run, and returns it.
    pub async fn wait_run(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&WorkflowRun) -> bool,
    ) -> WorkflowRun {
        let runs = self.runs();
        let check = &check;
        eventually(&format!("run {name}: {what}"), || {
            let runs = runs.clone();
            async move {
                let run = runs.get_opt(name).await.ok()??;
                check(&run).then_some(run)
            }
        })
        .await
    }

    /// Waits until the run reaches a terminal phase and asserts it is `phase`.
    pub async fn wait_terminal(&self, name: &str, phase: RunPhase) -> WorkflowRun {
        let run = self
            .wait_run(name, "a terminal phase", |run| {
                run.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(RunPhase::is_terminal)
                    && run
                        .status
                        .as_ref()
                        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Completed"))
            })
            .await;
        let status = run.status.clone().unwrap_or_default();
        assert_eq!(
            status.phase,
            Some(phase),
            "run {name} ended {:?} ({:?}: {:?}); nodes: {:?}",
            status.phase,
            status.reason,
            status.message,
            status.nodes
        );
        run
    }

    /// The Events (events.k8s.io/v1, what the operator writes) about an
    /// object of the test's namespace.
    pub async fn events_about(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.cluster.client(), self.cluster.namespace());
        events
            .list(&ListParams::default())
            .await
            .expect("failed to list events")
            .items
            .into_iter()
            .filter(|event| {
                event
                    .regarding
                    .as_ref()
                    .and_then(|regarding| regarding.name.as_deref())
                    == Some(name)
            })
            .collect()
    }

    /// The names of the test's runs.
    pub async fn run_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .runs()
            .list(&ListParams::default())
            .await
            .expect("failed to list runs")
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        names.sort();
        names
    }
}

/// A workflow that succeeds at once: a jq transform and a shell step.
pub fn quick_workflow() -> Value {
    json!({
        "nodes": [
            {"name": "greet", "transform": {"jq": "{message: \"hello \\(.input.name // \"world\")\"}"}},
            {"name": "shout", "needs": ["greet"], "shell": {
                "script": "echo working >&2; tr a-z A-Z",
                "stdin": "${{ .nodes.greet.output.message }}",
            }},
        ],
        "output": "{message: .nodes.greet.output.message, shouted: .nodes.shout.output.stdout}",
    })
}

/// A workflow that waits `duration` (e.g. `60s`).
pub fn waiting_workflow(duration: &str) -> Value {
    json!({"nodes": [{"name": "pause", "wait": {"duration": duration}}]})
}
