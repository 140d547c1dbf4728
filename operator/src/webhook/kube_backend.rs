//! The webhook server's backend on a real cluster: plain GETs and one
//! create through the kube client. Namespaces outside the operator's
//! `--namespace` are invisible (their webhooks answer 404).

use super::{BackendError, WebhookBackend};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use sluice_crds::{Workflow, WorkflowRun, WorkflowRunStatus};

/// [`WebhookBackend`] over the Kubernetes API.
pub struct KubeBackend {
    client: Client,
    namespace: Option<String>,
}

impl KubeBackend {
    /// A backend serving every namespace, or only `namespace`.
    pub fn new(client: Client, namespace: Option<String>) -> Self {
        Self { client, namespace }
    }

    fn serves(&self, namespace: &str) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|only| only == namespace)
    }
}

fn failed(action: &'static str) -> impl Fn(kube::Error) -> BackendError {
    move |error| BackendError {
        action,
        message: error.to_string(),
    }
}

impl WebhookBackend for KubeBackend {
    fn workflow<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Workflow>, BackendError>> {
        Box::pin(async move {
            if !self.serves(namespace) {
                return Ok(None);
            }
            let api: Api<Workflow> = Api::namespaced(self.client.clone(), namespace);
            api.get_opt(name).await.map_err(failed("read the workflow"))
        })
    }

    fn secret_value<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        Box::pin(async move {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            let secret = api
                .get_opt(name)
                .await
                .map_err(failed("read the trigger's secret"))?;
            Ok(secret.and_then(|secret| {
                secret
                    .data
                    .and_then(|mut data| data.remove(key))
                    .map(|value| value.0)
                    .or_else(|| {
                        secret
                            .string_data
                            .and_then(|mut data| data.remove(key))
                            .map(String::into_bytes)
                    })
            }))
        })
    }

    fn create_run<'a>(
        &'a self,
        namespace: &'a str,
        run: WorkflowRun,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            let api: Api<WorkflowRun> = Api::namespaced(self.client.clone(), namespace);
            let created = api
                .create(&PostParams::default(), &run)
                .await
                .map_err(failed("create the run"))?;
            Ok(created.name_any())
        })
    }

    fn run_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<WorkflowRunStatus>, BackendError>> {
        Box::pin(async move {
            let api: Api<WorkflowRun> = Api::namespaced(self.client.clone(), namespace);
            let run = api.get_opt(name).await.map_err(failed("read the run"))?;
            Ok(run.map(|run| run.status.unwrap_or_default()))
        })
    }
}
