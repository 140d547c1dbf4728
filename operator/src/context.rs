//! What every controller and the run API share: the kube client, the
//! configuration, the runner defaults, the token key, the mirror, metrics,
//! and the error type whose categories become Event reasons and metric
//! labels.

use crate::config::Config;
use crate::mirror::Mirror;
use crate::run::job::RunnerDefaults;
use crate::run_api::token::TokenKey;
use crate::scope::{WatchScope, WatchStream};
use crate::telemetry::Metrics;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::runtime::controller::Action;
use kube::{Client, Resource};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a namespace's uid is trusted without a read (its deletion,
/// when seen, drops it sooner).
const NAMESPACE_TTL: Duration = Duration::from_secs(300);

/// Field manager and event reporter name of the operator.
pub const FIELD_MANAGER: &str = "sluice-operator";

/// Shared state of the operator process.
pub struct Context {
    /// Client of the Kubernetes API.
    pub client: Client,
    /// Configuration.
    pub config: Config,
    /// The namespaces watched (from the configuration).
    pub scope: WatchScope,
    /// Defaults of runner pods.
    pub runner_defaults: RunnerDefaults,
    /// Key deriving per-run credentials.
    pub token_key: TokenKey,
    /// The PostgreSQL mirror, when a database is configured.
    pub mirror: Option<Mirror>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Namespace uids (workspace ids) recently read, by namespace name
    /// ([`crate::mirror_map::namespace_uid`]); a namespace's deletion
    /// drops its entry ([`crate::workspaces::follow`]), so a namespace made
    /// again under the same name is read afresh.
    pub namespace_uids: crate::recent::Recent<uuid::Uuid>,
    /// Runs triggered and not yet picked up by a reconcile (the run
    /// controller's queue depth, sampled into `system_metrics`).
    pub reconcile_queue: crate::reconcile_queue::ReconcileQueue,
    /// Plans and each namespace's plan label, as the leader watches them.
    pub quotas: crate::quota::Quotas,
    events: crate::events::Publisher,
    admission_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Context {
    /// Watches `K` in every namespace the operator watches.
    pub fn watch<K>(&self, config: kube::runtime::watcher::Config) -> WatchStream<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
    {
        self.scope.watch(&self.client, config)
    }

    /// Builds the shared state.
    pub fn new(
        client: Client,
        config: Config,
        token_key: TokenKey,
        mirror: Option<Mirror>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let runner_defaults = RunnerDefaults {
            image: config.runner_image.clone(),
            command: config.runner_argv(),
            resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    (
                        "cpu".to_owned(),
                        Quantity(config.runner_cpu_request.clone()),
                    ),
                    ("memory".to_owned(), Quantity("64Mi".to_owned())),
                ])),
                limits: Some(BTreeMap::from([(
                    "memory".to_owned(),
                    Quantity(config.runner_memory_limit.clone()),
                )])),
                ..ResourceRequirements::default()
            },
            service_account_name: None,
            run_api_url: config.run_api_url.clone(),
        };
        let events = crate::events::Publisher::new(client.clone(), FIELD_MANAGER, &config.identity);
        Self {
            client,
            scope: config.scope(),
            config,
            runner_defaults,
            token_key,
            mirror,
            metrics,
            namespace_uids: crate::recent::Recent::new(NAMESPACE_TTL),
            reconcile_queue: crate::reconcile_queue::ReconcileQueue::default(),
            quotas: crate::quota::Quotas::default(),
            events,
            admission_locks: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an Event about `object`. Failing to publish is logged, never
    /// fatal: Events are for people, conditions are the API.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        action: &str,
        message: String,
    ) {
        if let Err(error) = self
            .events
            .publish(object, warning, reason, action, truncate(message, 1000))
            .await
        {
            tracing::warn!(%error, reason, "failed to publish event");
        }
    }

    /// Publishes an Event that must outlive its object's namespace: into
    /// the object's namespace, or, when that takes no new content (being
    /// deleted, gone), into the operator's own namespace.
    pub async fn publish_lasting<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        action: &str,
        message: String,
    ) {
        let message = truncate(message, 1000);
        let first = self
            .events
            .publish(object, warning, reason, action, message.clone())
            .await;
        let result = match first {
            Err(kube::Error::Api(status)) if matches!(status.code, 403 | 404) => {
                self.events
                    .publish_in(
                        Some(&self.config.lease_namespace),
                        object,
                        warning,
                        reason,
                        action,
                        message,
                    )
                    .await
            }
            other => other,
        };
        if let Err(error) = result {
            tracing::warn!(%error, reason, "failed to publish event");
        }
    }

    /// The shared error policy of every controller: counts the failure by
    /// category, retries a conflict (someone else wrote first) at once and
    /// quietly, and otherwise logs, publishes one Warning Event whose
    /// reason is the error's category, and requeues with per-object
    /// exponential backoff (1 s doubling to 5 min; reset after 5 quiet
    /// minutes).
    pub fn reconcile_error<K>(
        self: &Arc<Self>,
        controller: &'static str,
        object: &K,
        error: &Error,
    ) -> Action
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let category = error.category();
        self.metrics.reconcile_failed(controller, category);
        let name = object.meta().name.clone().unwrap_or_default();
        if category == "Conflict" {
            tracing::debug!(controller, object = %name, %error, "write conflict; retrying");
            return Action::requeue(Duration::from_millis(100));
        }
        tracing::warn!(controller, object = %name, %error, "reconcile failed");
        let key = format!(
            "{controller}/{}/{name}",
            object.meta().namespace.clone().unwrap_or_default()
        );
        let delay = {
            let mut failures = self
                .failures
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let entry = failures.entry(key).or_insert((0, Instant::now()));
            if entry.1.elapsed() > MAX_BACKOFF {
                entry.0 = 0;
            }
            entry.0 = entry.0.saturating_add(1);
            entry.1 = Instant::now();
            backoff(entry.0)
        };
        let context = self.clone();
        let object = object.clone();
        let message = error.to_string();
        tokio::spawn(async move {
            context
                .publish(&object, true, category, "Reconcile", message)
                .await;
        });
        Action::requeue(delay)
    }

    /// The lock serialising the quota decisions of one namespace's runs;
    /// taken before any of its workflows' locks.
    pub fn namespace_admission_lock(&self, namespace: &str) -> Arc<tokio::sync::Mutex<()>> {
        // A workflow's key always has a name after the slash.
        self.admission_lock(namespace, "")
    }

    /// The lock serialising admission decisions of one workflow.
    pub fn admission_lock(&self, namespace: &str, workflow: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .admission_locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        locks
            .entry(format!("{namespace}/{workflow}"))
            .or_default()
            .clone()
    }
}

/// Longest wait between retries of a failing object.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Wait before retry `failures` (1 → 1 s, doubling, at most [`MAX_BACKOFF`]).
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A failed reconcile, by category.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("failed to call the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object lacks a field the API server always sets.
    #[error("object {0} has no {1}")]
    MissingField(String, &'static str),
    /// JSON (de)serialisation failed.
    #[error("failed to encode or decode JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A read of what the mirror stored failed (PostgreSQL unreachable …).
    #[error("failed to read the PostgreSQL mirror: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// A bounded label for metrics and the reason of Warning Events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "Conflict",
            Error::Kube(_) => "KubernetesApi",
            Error::MissingField(..) => "MissingField",
            Error::Json(_) => "Serialization",
            Error::Database(_) => "Database",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn long_event_notes_are_cut_on_a_character_boundary() {
        let text = "é".repeat(600);
        let cut = truncate(text, 1000);
        assert!(cut.len() <= 1000);
        assert!(cut.ends_with('…'));
    }
}
