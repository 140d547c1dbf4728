//! The Connection controller's shell: observe the Secret (through the API:
//! reading Secrets is the operator's permission, never the runner's), probe
//! when due ([`super::probe`]), plan ([`super::plan`]), apply (status,
//! Events, mirror).
//!
//! Secrets are watched and mapped to the Connections naming them (a scan of
//! the controller's own cache in the Secret's namespace), so creating or
//! rotating a Secret re-reconciles its Connections at once. Secret values
//! stay in this function's locals: they are never logged, stored in status
//! or handed to the mirror (which only gets a fingerprint).
//!
//! With `spec.oauth2`, each reconcile of a Ready Connection runs the token
//! keeper ([`super::keeper::keep`]) and requeues no later than the token's
//! renewal time.

use super::plan::{
    ProbeKey, SecretObservation, fold_token, plan_connection, plan_probe_start, probe_due,
    secret_fingerprint,
};
use crate::context::{Context, Error};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use sluice_crds::Connection;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

const CONTROLLER: &str = "connection";

/// State the controller keeps between reconciles: what each Connection was
/// last probed against (lost on restart, which costs one extra probe).
pub struct State {
    context: Arc<Context>,
    probed: Mutex<HashMap<String, ProbeKey>>,
}

/// Runs the controller until the process shuts down.
pub async fn run(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let connections = context.watch::<Connection>(watcher::Config::default());
    // The operator's own Secrets (run credentials) are never a Connection's:
    // leaving them out spares one event per run.
    let secrets = context
        .watch::<Secret>(
            watcher::Config::default().labels("app.kubernetes.io/managed-by!=sluice-operator"),
        )
        .default_backoff()
        .touched_objects();
    let controller =
        crate::watch::lean_controller(connections, context.config.reconcile_concurrency);
    let cache = controller.store();
    let state = Arc::new(State {
        context,
        probed: Mutex::new(HashMap::new()),
    });
    controller
        .watches_stream(secrets, move |secret: Secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            cache
                .state()
                .into_iter()
                .filter(|connection| {
                    connection.namespace() == namespace
                        && connection
                            .spec
                            .secret_ref
                            .as_ref()
                            .is_some_and(|secret_ref| secret_ref.name == name)
                })
                .map(|connection| ObjectRef::from_obj(&*connection))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state)
        .for_each(|_| async {})
        .await;
}

/// Checks one Connection's Secret, probes it when due and writes its status.
pub async fn reconcile(
    mut connection: Arc<Connection>,
    state: Arc<State>,
) -> Result<Action, Error> {
    let context = &state.context;
    context.metrics.reconciled(CONTROLLER);
    if connection.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = connection.name_any();
    let namespace = connection
        .namespace()
        .ok_or_else(|| Error::MissingField(name.clone(), "metadata.namespace"))?;
    let data = observe_secret(&connection, &context.client, &namespace).await?;
    let observation = match &data {
        None if connection.spec.secret_ref.is_none() => SecretObservation::NotReferenced,
        None => SecretObservation::Missing,
        Some(data) => SecretObservation::Present {
            keys: data.keys().cloned().collect(),
            fingerprint: secret_fingerprint(data),
        },
    };
    let ready = super::plan::check_secret(&connection, &namespace, &observation).is_ok();
    let now = chrono::Utc::now();
    let key = ProbeKey {
        generation: connection.metadata.generation,
        fingerprint: observation.fingerprint().map(str::to_owned),
    };
    let memory_key = format!("{namespace}/{name}");
    let last = state
        .probed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&memory_key)
        .cloned();
    let outcome = if probe_due(&connection, ready, &key, last.as_ref(), now) {
        if let Some(status) = plan_probe_start(&connection, &key, last.as_ref(), now) {
            let api: Api<Connection> = Api::namespaced(context.client.clone(), &namespace);
            let patch = serde_json::json!({"status": status});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            // Plan the outcome against what is now stored, so Reconciling goes.
            let mut probing = (*connection).clone();
            probing.status = Some(status);
            connection = Arc::new(probing);
        }
        let empty = BTreeMap::new();
        let outcome =
            super::probe::probe(&name, &connection.spec, data.as_ref().unwrap_or(&empty)).await;
        state
            .probed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(memory_key, key);
        Some(outcome)
    } else {
        None
    };
    let token = match &connection.spec.oauth2 {
        None => None,
        Some(_) if !ready => Some(super::token_plan::TokenOutcome {
            authorized: false,
            reason: super::token_plan::reason::NOT_READY,
            message: "no token: the connection is not Ready (see the Ready condition)".to_owned(),
            status: Default::default(),
            requeue_after: super::plan::NOT_READY_RECHECK,
        }),
        Some(_) => Some(
            super::keeper::keep(
                &context.client,
                &namespace,
                &connection,
                data.as_ref().unwrap_or(&BTreeMap::new()),
                now,
            )
            .await,
        ),
    };
    drop(data);

    let plan = plan_connection(&connection, &namespace, &observation, outcome.as_ref(), now);
    let plan = fold_token(plan, &connection, token.as_ref(), now);
    if plan.status_changed {
        let api: Api<Connection> = Api::namespaced(context.client.clone(), &namespace);
        let mut patch = serde_json::json!({"status": plan.status});
        if plan.status.oauth2.is_none() {
            // A merge patch leaves absent fields alone: null removes them.
            patch["status"]["oauth2"] = serde_json::Value::Null;
        }
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    for event in &plan.events {
        context
            .publish(
                &*connection,
                event.warning,
                event.reason,
                "Verify",
                event.message.clone(),
            )
            .await;
    }
    crate::mirror_map::offer_connection(
        context,
        &connection,
        &plan.status,
        observation.fingerprint().map(str::to_owned),
    );
    Ok(Action::requeue(plan.requeue_after))
}

/// The Secret's data (with `stringData` folded in), or None when it does
/// not exist or is not referenced.
/// The data of the Secret `connection` names, if it names one that exists.
pub async fn observe_secret(
    connection: &Connection,
    client: &kube::Client,
    namespace: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, kube::Error> {
    let Some(secret_ref) = &connection.spec.secret_ref else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = secrets.get_opt(&secret_ref.name).await? else {
        return Ok(None);
    };
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect();
    for (key, value) in secret.string_data.unwrap_or_default() {
        data.insert(key, value.into_bytes());
    }
    Ok(Some(data))
}

fn error_policy(connection: Arc<Connection>, error: &Error, state: Arc<State>) -> Action {
    state
        .context
        .reconcile_error(CONTROLLER, &*connection, error)
}
