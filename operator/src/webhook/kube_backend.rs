//! The webhook server's backend on a real cluster: plain GETs and one
//! create through the kube client. Namespaces outside the operator's
//! `--watch-namespaces` are invisible (their webhooks answer 404).

use super::{BackendError, WebhookBackend};
use crate::scope::WatchScope;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use sluice_crds::{Workflow, WorkflowRun, WorkflowRunStatus};

/// Creates of a `generateName` run tried before giving up on name clashes.
const GENERATE_NAME_ATTEMPTS: u32 = 4;

/// [`WebhookBackend`] over the Kubernetes API.
pub struct KubeBackend {
    client: Client,
    scope: WatchScope,
}

impl KubeBackend {
    /// A backend serving the namespaces of `scope`.
    pub fn new(client: Client, scope: WatchScope) -> Self {
        Self { client, scope }
    }

    fn serves(&self, namespace: &str) -> bool {
        self.scope.contains(namespace)
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
            if !self.serves(namespace) {
                return Ok(None);
            }
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
            if !self.serves(namespace) {
                return Err(BackendError {
                    action: "create the run",
                    message: format!("namespace {namespace} is not watched by this operator"),
                });
            }
            let api: Api<WorkflowRun> = Api::namespaced(self.client.clone(), namespace);
            // The run is named by `generateName`; API servers before
            // Kubernetes 1.32 answer a clash of the random suffix with
            // AlreadyExists instead of trying another, so try again here.
            let mut attempt = 1;
            loop {
                match api.create(&PostParams::default(), &run).await {
                    Ok(created) => return Ok(created.name_any()),
                    Err(kube::Error::Api(status))
                        if status.code == 409
                            && attempt < GENERATE_NAME_ATTEMPTS
                            && run.metadata.name.is_none() =>
                    {
                        attempt += 1;
                    }
                    Err(error) => return Err(failed("create the run")(error)),
                }
            }
        })
    }

    fn run_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<WorkflowRunStatus>, BackendError>> {
        Box::pin(async move {
            if !self.serves(namespace) {
                return Ok(None);
            }
            let api: Api<WorkflowRun> = Api::namespaced(self.client.clone(), namespace);
            let run = api.get_opt(name).await.map_err(failed("read the run"))?;
            Ok(run.map(|run| run.status.unwrap_or_default()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Request, Response};
    use kube::client::Body;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A client whose API server clashes on the first `clashes` creates.
    fn clashing_server(clashes: u32) -> (Client, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let service = tower::service_fn(move |_: Request<Body>| {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let (status, body) = if call < clashes {
                    let status = serde_json::json!({
                        "kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "AlreadyExists", "code": 409,
                        "message": format!("workflowruns.sluice.dev \"w-clash{call}\" already exists"),
                    });
                    (409, status)
                } else {
                    let run = WorkflowRun::fixture(&format!("w-fresh{call}"), "w");
                    (201, serde_json::to_value(run).expect("a run serializes"))
                };
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string().into_bytes()))
                        .expect("a response"),
                )
            }
        });
        (Client::new(service, "default"), calls)
    }

    fn generated_run() -> WorkflowRun {
        let mut run = WorkflowRun::fixture("unused", "w");
        run.metadata.name = None;
        run.metadata.generate_name = Some("w-".to_owned());
        run
    }

    #[tokio::test]
    async fn a_clashing_generated_name_is_tried_again() {
        let (client, calls) = clashing_server(2);
        let backend = KubeBackend::new(client, WatchScope::Cluster);
        let name = backend
            .create_run("default", generated_run())
            .await
            .expect("the third create succeeds");
        assert_eq!(name, "w-fresh2");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn clashes_end_in_an_error_after_a_few_attempts() {
        let (client, calls) = clashing_server(u32::MAX);
        let backend = KubeBackend::new(client, WatchScope::Cluster);
        let error = backend
            .create_run("default", generated_run())
            .await
            .expect_err("every create clashes");
        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(calls.load(Ordering::SeqCst), GENERATE_NAME_ATTEMPTS);
    }

    #[tokio::test]
    async fn namespaces_outside_the_list_are_never_asked_for() {
        let (client, calls) = clashing_server(0);
        let scope = WatchScope::new(&["growth".to_owned(), "payments".to_owned()]);
        let backend = KubeBackend::new(client, scope);
        let workflow = backend.workflow("billing", "w").await.expect("no error");
        assert!(workflow.is_none());
        let secret = backend
            .secret_value("billing", "s", "k")
            .await
            .expect("no error");
        assert!(secret.is_none());
        let status = backend.run_status("billing", "r").await.expect("no error");
        assert!(status.is_none());
        let refused = backend
            .create_run("billing", generated_run())
            .await
            .expect_err("not watched");
        assert!(refused.to_string().contains("not watched"), "{refused}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
