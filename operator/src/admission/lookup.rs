//! The real [`Lookup`]: reads through the operator's kube client. Only
//! reads, and only what one review asks for.

use super::server::{Lookup, LookupError};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use sluice_crds::{Connection, Workflow};

/// Reads Workflows, Connections and Secrets with the operator's client.
#[derive(Clone)]
pub struct KubeLookup {
    client: Client,
}

impl KubeLookup {
    /// A lookup over `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
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
}
