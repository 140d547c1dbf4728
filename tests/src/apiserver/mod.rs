//! A Kubernetes API server stand-in on loopback, for end-to-end tests.
//!
//! [`ApiServer::start`] binds `127.0.0.1:0`, serves plain HTTP and writes a
//! kubeconfig that kube clients and kubectl load like any other. It follows
//! the Kubernetes API conventions for what Sluice and kubectl use: discovery,
//! CRUD, label/field selectors, watch with `resourceVersion`, bookmarks and
//! 410 Gone, the status subresource, merge/JSON/strategic patches and a
//! simplified server-side apply (see [`patch`]), `generation`, optimistic
//! concurrency, finalizers, ownerReference garbage collection, namespaces,
//! `Status` error bodies, and CustomResourceDefinitions that start serving
//! their types when created.
//!
//! Dynamic admission follows the real server: stored
//! Mutating/ValidatingWebhookConfigurations are called on every create and
//! update they match (see [`admission`]), and `dryRun=All` is honoured.
//!
//! TokenReview and SubjectAccessReview are answered from the tokens and
//! rules a test sets up ([`ApiServer::identities`], see [`access`]).
//!
//! It is not a real API server: requests themselves are neither
//! authenticated nor authorized (every request is allowed), no
//! built-in admission plugins, no schema validation, pruning or defaulting of custom
//! resources, no conversion between versions (all versions of a type share
//! one table), core/v1 and events.k8s.io/v1 Events are stored separately,
//! no protobuf or Table output, no OpenAPI schemas (`/openapi/v3` only tells
//! kubectl that the server validates; `fieldValidation` is accepted and
//! ignored).

pub mod access;
mod admission;
mod crds;
mod handlers;
mod kinds;
mod lifecycle;
mod openapi;
pub mod patch;
mod registry;
mod routes;
mod selector;
mod status;
mod store;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use access::Identities;
pub use lifecycle::{DeleteOptions, Propagation};
pub use registry::{Registry, ResourceKey, ResourceType};
pub use selector::Selector;
pub use status::{ApiError, ApiResult};
pub use store::{EventType, Store};

/// Errors starting the stand-in.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The loopback port could not be bound.
    #[error("failed to bind 127.0.0.1:0")]
    Bind(#[source] std::io::Error),
    /// The bound address could not be read.
    #[error("failed to read the bound address")]
    Address(#[source] std::io::Error),
}

/// Tunables of one stand-in.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// Changes kept per resource type for watches from an old version.
    pub history: usize,
    /// Idle time after which a watch with bookmarks gets one.
    pub bookmark_interval: Duration,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        Self {
            history: 10_000,
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

/// A running stand-in; stops when dropped.
#[derive(Debug)]
pub struct ApiServer {
    address: SocketAddr,
    store: Store,
    identities: Identities,
    lists: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ApiServer {
    /// Starts a stand-in with default options.
    pub async fn start() -> Result<Self, StartError> {
        Self::start_with(ApiServerOptions::default()).await
    }

    /// Starts a stand-in on a random loopback port.
    pub async fn start_with(options: ApiServerOptions) -> Result<Self, StartError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(StartError::Bind)?;
        let address = listener.local_addr().map_err(StartError::Address)?;
        let store = Store::new(options.history);
        let lists = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let shared = Arc::new(handlers::Shared {
            lists: lists.clone(),
            store: store.clone(),
            settings: handlers::Settings {
                bookmark_interval: options.bookmark_interval,
            },
        });
        let identities = Identities::default();
        let reviews = axum::Router::new()
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                axum::routing::post(access::token_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                axum::routing::post(access::access_review),
            )
            .with_state(identities.clone());
        let router = axum::Router::new()
            .fallback(handlers::handle)
            .with_state(shared)
            .layer(axum::middleware::from_fn_with_state(
                identities.clone(),
                access::authorize_impersonated,
            ))
            .merge(reviews);
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = served.await {
                tracing::warn!(%error, "api server stand-in stopped");
            }
        });
        Ok(Self {
            address,
            store,
            identities,
            lists,
            shutdown: Some(shutdown),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Direct access to the objects (for assertions the API cannot express).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Bearer tokens and rights that TokenReview and SubjectAccessReview
    /// answer from.
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// LISTs (collection GETs that are not watches) answered so far for
    /// the resource `plural`, in any namespace; a paginated LIST counts
    /// once.
    pub fn list_requests(&self, plural: &str) -> u64 {
        self.count(plural)
    }

    /// Pages after the first of paginated LISTs of `plural` (requests with
    /// `continue`).
    pub fn list_continuations(&self, plural: &str) -> u64 {
        self.count(&format!("{plural}#page"))
    }

    fn count(&self, key: &str) -> u64 {
        self.lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    /// A kubeconfig pointing at this stand-in, with `namespace` as the
    /// context's default namespace.
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sluice-e2e\n  cluster:\n    server: {}\nusers:\n- name: sluice-e2e\n  user: {{}}\ncontexts:\n- name: sluice-e2e\n  context:\n    cluster: sluice-e2e\n    user: sluice-e2e\n    namespace: {namespace}\ncurrent-context: sluice-e2e\n",
            self.url()
        )
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
