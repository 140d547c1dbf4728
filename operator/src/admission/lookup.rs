//! The real [`Lookup`]: reads through the operator's kube client. Only
//! reads, and only what one review asks for (for a new run on a plan that
//! counts runs: its namespace, the plan and the namespace's runs).

use super::rules::Quota;
use super::server::{Lookup, LookupError};
use crate::quota::plan::Subscribed;
use crate::run::admission::RunView;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use sluice_crds::{Connection, Plan, Workflow, WorkflowRun};

/// Reads Workflows, Connections, Secrets, namespaces' plans and runs with
/// the operator's client.
#[derive(Clone)]
pub struct KubeLookup {
    client: Client,
    /// The plan of namespaces without a `sluice.dev/plan` label.
    default_plan: Option<String>,
}

impl KubeLookup {
    /// A lookup over `client`.
    pub fn new(client: Client, default_plan: Option<String>) -> Self {
        Self {
            client,
            default_plan,
        }
    }
}

fn failed(action: &'static str) -> impl Fn(kube::Error) -> LookupError {
    move |error| LookupError {
        action,
        message: error.to_string(),
    }
}

impl Lookup for KubeLookup {
    fn workflow<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Workflow>, LookupError>> {
        Box::pin(async move {
            Api::<Workflow>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(failed("read the workflow"))
        })
    }

    fn connection_names<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, LookupError>> {
        Box::pin(async move {
            let listed = Api::<Connection>::namespaced(self.client.clone(), namespace)
                .list_metadata(&ListParams::default())
                .await
                .map_err(failed("list the connections"))?;
            Ok(listed.items.iter().map(ResourceExt::name_any).collect())
        })
    }

    fn secret_exists<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<bool, LookupError>> {
        Box::pin(async move {
            Api::<Secret>::namespaced(self.client.clone(), namespace)
                .get_metadata_opt(name)
                .await
                .map(|secret| secret.is_some())
                .map_err(failed("read the secret"))
        })
    }

    fn quota<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<Quota>, LookupError>> {
        Box::pin(async move {
            let labels = Api::<Namespace>::all(self.client.clone())
                .get_metadata_opt(namespace)
                .await
                .map_err(failed("read the namespace"))?
                .and_then(|namespace| namespace.metadata.labels);
            let label = crate::quota::plan_label(labels.as_ref());
            let Some(name) =
                crate::quota::plan_name(label.as_deref(), self.default_plan.as_deref())
            else {
                return Ok(None);
            };
            let Some(plan) = Api::<Plan>::all(self.client.clone())
                .get_opt(&name)
                .await
                .map_err(failed("read the plan"))?
            else {
                return Ok(None);
            };
            let limits = &plan.spec.limits;
            let counted = limits.runs_per_day.is_some()
                || limits.runs_per_month.is_some()
                || limits.node_seconds_per_month.is_some();
            let runs = if counted {
                Api::<WorkflowRun>::namespaced(self.client.clone(), namespace)
                    .list(&ListParams::default())
                    .await
                    .map_err(failed("list the namespace's runs"))?
                    .items
                    .iter()
                    .map(RunView::of)
                    .collect()
            } else {
                Vec::new()
            };
            Ok(Some(Quota {
                subscribed: Some(Subscribed {
                    plan: name,
                    limits: plan.spec.limits,
                }),
                runs,
            }))
        })
    }
}
