//! Quotas: the plan each namespace is on, and what its runs have used.
//!
//! - [`plan`] (pure): the decision for one waiting run, the usage it is
//!   taken from, the periods and their reset times.
//! - [`Quotas`]: the leader's view of the Plans and of each namespace's
//!   `sluice.dev/plan` label, kept by [`run`] from two watches (Plans here,
//!   namespaces in [`crate::workspaces::follow`]), which also hand Plans
//!   and subscriptions to the mirror.
//! - [`observe_departed`]: the namespace's runs that PostgreSQL holds and
//!   the cluster no longer does, read at most once per [`DEPARTED_TTL`].
//!
//! The decision is made inside run admission ([`crate::run::controller`])
//! under a lock per namespace, taken before the workflow's own admission
//! lock, from the run controller's watch cache of the namespace's runs
//! ([`crate::run::index::ByNamespace`]) plus the record, kept here and
//! changed only under that lock, of the runs this leader admitted that the
//! cache does not show as started yet ([`plan::Admitted`]). Only the leader
//! admits, its record starts empty, and it admits nothing before the cache
//! has listed every run, so a burst cannot slip past a limit; no admission
//! lists runs from the API server. This module never writes Kubernetes
//! objects.

pub mod plan;

use crate::context::Context;
use crate::mirror::{MirrorEvent, PlanRecord};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use plan::{Admitted, Departed, Subscribed};
use sluice_crds::plan::PLAN_LABEL;
use sluice_crds::{Plan, PlanSpec};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The longest admission waits for PostgreSQL's count of departed runs
/// before it goes on with the last count it has.
const DEPARTED_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a namespace's count of departed runs is used before it is read
/// again: runs history limits delete in that time count from the next read.
pub const DEPARTED_TTL: Duration = Duration::from_secs(10);

/// What admission knows of a namespace's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// The watches have not listed Plans and namespaces yet: wait.
    Unknown,
    /// No plan, or a plan that does not exist: no limits.
    Free,
    /// On this plan.
    On(Subscribed),
}

#[derive(Debug, Default)]
struct State {
    plans: HashMap<String, PlanSpec>,
    /// Each namespace's `sluice.dev/plan` label (None: no label).
    labels: HashMap<String, Option<String>>,
    plans_listed: bool,
    namespaces_listed: bool,
    /// The last count of departed runs per namespace and when it was read:
    /// used for [`DEPARTED_TTL`], and for when PostgreSQL does not answer
    /// in time.
    departed: HashMap<String, (Instant, Departed)>,
    /// Per namespace, the runs this leader admitted that the watch cache
    /// did not show as started when last looked at.
    admitted: HashMap<String, Admitted>,
}

/// The leader's view of Plans and namespace labels.
#[derive(Debug, Default)]
pub struct Quotas {
    state: Mutex<State>,
}

/// The plan a namespace with `label` is on: the label's plan, none for an
/// empty label (a way out of the default), else the default plan.
pub fn plan_name(label: Option<&str>, default_plan: Option<&str>) -> Option<String> {
    match label {
        Some("") => None,
        Some(plan) => Some(plan.to_owned()),
        None => default_plan
            .filter(|plan| !plan.is_empty())
            .map(str::to_owned),
    }
}

impl Quotas {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The plan of `namespace`.
    pub fn subscription(&self, namespace: &str, default_plan: Option<&str>) -> Subscription {
        let state = self.state();
        if !state.plans_listed || !state.namespaces_listed {
            return Subscription::Unknown;
        }
        let label = state.labels.get(namespace).cloned().flatten();
        let Some(name) = plan_name(label.as_deref(), default_plan) else {
            return Subscription::Free;
        };
        match state.plans.get(&name) {
            Some(spec) => Subscription::On(Subscribed {
                plan: name,
                limits: spec.limits.clone(),
            }),
            None => Subscription::Free,
        }
    }

    /// A namespace seen by the namespace watch, with its label.
    pub fn namespace_seen(&self, namespace: &str, label: Option<String>) {
        self.state().labels.insert(namespace.to_owned(), label);
    }

    /// A namespace gone.
    pub fn namespace_gone(&self, namespace: &str) {
        let mut state = self.state();
        state.labels.remove(namespace);
        state.departed.remove(namespace);
        state.admitted.remove(namespace);
    }

    /// The runs of `namespace` this leader admitted that the cache did not
    /// show as started when last looked at. Call under the namespace's
    /// admission lock.
    pub fn admitted(&self, namespace: &str) -> Admitted {
        self.state()
            .admitted
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the record of `namespace` (what [`plan::decide`] kept).
    pub fn keep_admitted(&self, namespace: &str, admitted: Admitted) {
        let mut state = self.state();
        if admitted.is_empty() {
            state.admitted.remove(namespace);
        } else {
            state.admitted.insert(namespace.to_owned(), admitted);
        }
    }

    /// Records that `run` of `namespace` is being started at `at`. Call
    /// under the namespace's admission lock, before the start.
    pub fn note_admitted(&self, namespace: &str, run: &str, at: DateTime<Utc>) {
        self.state()
            .admitted
            .entry(namespace.to_owned())
            .or_default()
            .insert(run.to_owned(), at);
    }

    /// The namespace watch has listed every namespace once.
    pub fn namespaces_listed(&self) {
        self.state().namespaces_listed = true;
    }

    fn plans_replaced(&self, plans: HashMap<String, PlanSpec>) {
        let mut state = self.state();
        state.plans = plans;
        state.plans_listed = true;
    }

    fn plan_seen(&self, name: String, spec: PlanSpec) {
        self.state().plans.insert(name, spec);
    }

    fn plan_gone(&self, name: &str) {
        self.state().plans.remove(name);
    }

    /// Marks both watches listed without running them (tests, benches).
    pub fn assume_listed(&self, plans: HashMap<String, PlanSpec>) {
        self.plans_replaced(plans);
        self.namespaces_listed();
    }
}

/// The mirror record of a Plan (or of its deletion).
pub fn build_plan_record(plan: &Plan, deleted: bool) -> Option<PlanRecord> {
    Some(PlanRecord {
        uid: Uuid::parse_str(plan.metadata.uid.as_deref()?).ok()?,
        name: plan.name_any(),
        description: plan.spec.description.clone(),
        limits: serde_json::to_value(&plan.spec.limits).unwrap_or_default(),
        created_at: plan
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|time| DateTime::from_timestamp(time.0.as_second(), 0)),
        deleted,
    })
}

/// The `sluice.dev/plan` label of a namespace.
pub fn plan_label(labels: Option<&BTreeMap<String, String>>) -> Option<String> {
    labels.and_then(|labels| labels.get(PLAN_LABEL)).cloned()
}

/// Follows Plans (into [`Quotas`] and the mirror) and namespaces
/// ([`crate::workspaces::follow`]) until `shutdown`. Runs on the leader.
pub async fn run(context: Arc<Context>, shutdown: impl std::future::Future<Output = ()>) {
    let both = futures::future::join(
        follow_plans(&context),
        crate::workspaces::follow(&context, context.mirror.as_ref()),
    );
    tokio::select! {
        _ = both => {}
        _ = shutdown => {}
    }
}

async fn follow_plans(context: &Context) {
    let plans: Api<Plan> = Api::all(context.client.clone());
    let mut events = watcher(plans, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: HashMap<String, PlanSpec> = HashMap::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                // Plans that cannot be listed (no CRD, no RBAC) must not
                // hold every run back: until they can, nothing is limited.
                if !context.quotas.state().plans_listed {
                    context.quotas.plans_replaced(HashMap::new());
                }
                tracing::warn!(%error, "plan watch failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(plan) => {
                listing.insert(plan.name_any(), plan.spec.clone());
                offer_plan(context, &plan, false);
            }
            watcher::Event::InitDone => context.quotas.plans_replaced(std::mem::take(&mut listing)),
            watcher::Event::Apply(plan) => {
                context.quotas.plan_seen(plan.name_any(), plan.spec.clone());
                offer_plan(context, &plan, false);
            }
            watcher::Event::Delete(plan) => {
                context.quotas.plan_gone(&plan.name_any());
                offer_plan(context, &plan, true);
            }
        }
    }
}

fn offer_plan(context: &Context, plan: &Plan, deleted: bool) {
    if let Some(record) = build_plan_record(plan, deleted) {
        crate::mirror_map::offer(context, MirrorEvent::Plan(record));
    }
}

/// What PostgreSQL holds of `namespace`'s runs that are not among
/// `in_cluster` (run uids): the runs history limits deleted after the
/// mirror stored them (a run's finalizer keeps it until then, so reading
/// the cluster first and PostgreSQL second misses none). Without a mirror:
/// nothing. A count read less than [`DEPARTED_TTL`] ago is used as it is;
/// when PostgreSQL does not answer within [`DEPARTED_TIMEOUT`], the last
/// count for the namespace is used: admission never waits on PostgreSQL
/// for long, and at most once per namespace per [`DEPARTED_TTL`].
pub async fn observe_departed(
    context: &Context,
    namespace: &str,
    in_cluster: &[Uuid],
    now: DateTime<Utc>,
) -> Departed {
    let Some(mirror) = &context.mirror else {
        return Departed::default();
    };
    if let Some((read_at, departed)) = context.quotas.state().departed.get(namespace)
        && read_at.elapsed() < DEPARTED_TTL
    {
        return *departed;
    }
    let Some(workspace) = crate::mirror_map::namespace_uid(context, namespace).await else {
        return Departed::default();
    };
    let read = count_departed(mirror.pool(), workspace, in_cluster, now);
    match tokio::time::timeout(DEPARTED_TIMEOUT, read).await {
        Ok(Ok(departed)) => {
            context
                .quotas
                .state()
                .departed
                .insert(namespace.to_owned(), (Instant::now(), departed));
            departed
        }
        outcome => {
            let error = match outcome {
                Ok(Err(error)) => error.to_string(),
                _ => "timed out".to_owned(),
            };
            tracing::warn!(namespace, %error, "failed to count departed runs; using the last count");
            context
                .quotas
                .state()
                .departed
                .get(namespace)
                .map(|(_, departed)| *departed)
                .unwrap_or_default()
        }
    }
}

/// The count behind [`observe_departed`].
pub async fn count_departed(
    pool: &sqlx::PgPool,
    workspace: Uuid,
    in_cluster: &[Uuid],
    now: DateTime<Utc>,
) -> Result<Departed, sqlx::Error> {
    let today = plan::day_start(now);
    let month = plan::month_start(now);
    let (runs_today, runs_this_month, node_seconds): (i64, i64, f64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE e.started_at >= $2),
                count(*) FILTER (WHERE e.started_at >= $3),
                COALESCE(sum(GREATEST(0, extract(epoch FROM
                    LEAST(COALESCE(e.ended_at, $4), $4) - GREATEST(e.started_at, $3)))), 0)::float8
         FROM workflow_executions e
         JOIN workflows w ON w.id = e.workflow_id
         WHERE w.workspace_id = $1
           AND e.started_at IS NOT NULL
           AND (e.started_at >= $3 OR e.ended_at >= $3)
           AND e.id <> ALL($5)",
    )
    .bind(workspace)
    .bind(today)
    .bind(month)
    .bind(now)
    .bind(in_cluster)
    .fetch_one(pool)
    .await?;
    Ok(Departed {
        runs_today: runs_today.max(0) as u64,
        runs_this_month: runs_this_month.max(0) as u64,
        node_seconds_this_month: node_seconds.max(0.0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crds::PlanLimits;

    #[test]
    fn a_label_names_the_plan_an_empty_one_opts_out_and_none_takes_the_default() {
        assert_eq!(plan_name(Some("gold"), Some("free")), Some("gold".into()));
        assert_eq!(plan_name(Some(""), Some("free")), None);
        assert_eq!(plan_name(None, Some("free")), Some("free".into()));
        assert_eq!(plan_name(None, Some("")), None);
        assert_eq!(plan_name(None, None), None);
    }

    #[test]
    fn admission_waits_until_both_watches_listed_and_a_missing_plan_limits_nothing() {
        let quotas = Quotas::default();
        assert_eq!(quotas.subscription("team-a", None), Subscription::Unknown);
        let small = PlanSpec {
            description: None,
            limits: PlanLimits {
                runs_per_day: Some(5),
                ..PlanLimits::default()
            },
        };
        quotas.plans_replaced(HashMap::from([("small".to_owned(), small.clone())]));
        assert_eq!(quotas.subscription("team-a", None), Subscription::Unknown);
        quotas.namespace_seen("team-a", Some("small".into()));
        quotas.namespace_seen("team-b", Some("missing".into()));
        quotas.namespaces_listed();
        assert_eq!(
            quotas.subscription("team-a", None),
            Subscription::On(Subscribed {
                plan: "small".into(),
                limits: small.limits.clone()
            })
        );
        assert_eq!(quotas.subscription("team-b", None), Subscription::Free);
        assert_eq!(quotas.subscription("team-c", None), Subscription::Free);
        assert!(matches!(
            quotas.subscription("team-c", Some("small")),
            Subscription::On(_)
        ));
        quotas.plan_gone("small");
        assert_eq!(quotas.subscription("team-a", None), Subscription::Free);
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn departed_runs_are_counted_by_period_without_the_clusters_own(pool: sqlx::PgPool) {
        use crate::mirror::fixtures::*;
        use crate::mirror::records::RunPhase;
        // Workspace uid(1), workflow uid(10), on 2025-03-14.
        let mut yesterday = execution(1, RunPhase::Succeeded);
        let mut today = execution(2, RunPhase::Succeeded);
        let in_cluster = execution(3, RunPhase::Succeeded);
        let mut never_started = execution(4, RunPhase::Failed);
        never_started.started_at = None;
        yesterday.started_at = Some(at(0, 0) - chrono::Duration::days(1));
        yesterday.ended_at = yesterday
            .started_at
            .map(|started| started + chrono::Duration::seconds(90));
        today.started_at = Some(at(8, 0));
        today.ended_at = Some(at(8, 0) + chrono::Duration::seconds(30));
        seed_runs(&pool, &[yesterday, today, in_cluster, never_started]).await;
        let departed = count_departed(&pool, uid(1), &[uid(1003)], at(12, 0))
            .await
            .unwrap();
        assert_eq!(
            departed,
            Departed {
                runs_today: 1,
                runs_this_month: 2,
                node_seconds_this_month: 120,
            }
        );
        let other = count_departed(&pool, uid(2), &[], at(12, 0)).await.unwrap();
        assert_eq!(other, Departed::default(), "another namespace's runs");
    }
}
