//! Prometheus metrics and the `/metrics`, `/healthz` and `/readyz`
//! endpoints. Labels are bounded sets (controller, category, phase), never
//! object names.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

type Labels = Vec<(&'static str, String)>;

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    reconcile_errors: Family<Labels, Counter>,
    runs_finished: Family<Labels, Counter>,
    run_duration: Histogram,
    schedule_lag: Histogram,
    webhook_requests: Family<Labels, Counter>,
    /// Runs waiting for a concurrency slot.
    pub queued_runs: Gauge,
    /// Mirror events not yet committed to PostgreSQL.
    pub mirror_backlog: Gauge,
    /// 1 while PostgreSQL is unreachable.
    pub mirror_down: Gauge,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
    leader_changes: Counter,
    leaderless: Histogram,
    /// Finished or deleted runs whose final state is not stored yet.
    pub runs_awaiting_mirror: Gauge,
    runs_history_lost: Counter,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let reconciles = Family::<Labels, Counter>::default();
        registry.register("reconciles", "Reconciles by controller", reconciles.clone());
        let reconcile_errors = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by controller and error category",
            reconcile_errors.clone(),
        );
        let runs_finished = Family::<Labels, Counter>::default();
        registry.register(
            "runs_finished",
            "Runs that ended, by phase",
            runs_finished.clone(),
        );
        let run_duration = Histogram::new(exponential_buckets(0.1, 2.0, 16));
        registry.register(
            "run_duration_seconds",
            "Wall time of finished runs",
            run_duration.clone(),
        );
        // 1 ms to about 65 s: a slot fired on time is a few milliseconds late.
        let schedule_lag = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register(
            "schedule_lag_seconds",
            "Time from a schedule slot (plus its jitter) to its run's creation",
            schedule_lag.clone(),
        );
        let webhook_requests = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook requests by outcome (accepted, completed, unauthorized, rate_limited, …)",
            webhook_requests.clone(),
        );
        let queued_runs = Gauge::default();
        registry.register(
            "queued_runs",
            "Runs waiting for a concurrency slot",
            queued_runs.clone(),
        );
        let mirror_backlog = Gauge::default();
        registry.register(
            "mirror_backlog",
            "Mirror events not yet in PostgreSQL",
            mirror_backlog.clone(),
        );
        let mirror_down = Gauge::default();
        registry.register(
            "mirror_down",
            "1 while PostgreSQL is unreachable",
            mirror_down.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica leads", leader.clone());
        let leader_changes = Counter::default();
        registry.register(
            "leader_changes",
            "Times this replica took the leader Lease (sum over replicas: every change)",
            leader_changes.clone(),
        );
        // 10 ms to about 80 s: a hand-off takes milliseconds, a crash
        // failover up to the lease duration plus a retry period.
        let leaderless = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register(
            "leaderless_seconds",
            "Time without a leader before this replica took over: from the previous leader's release or last renewal",
            leaderless.clone(),
        );
        let runs_awaiting_mirror = Gauge::default();
        registry.register(
            "runs_awaiting_mirror",
            "Finished or deleted runs whose final state is not in PostgreSQL yet (they keep their finalizer)",
            runs_awaiting_mirror.clone(),
        );
        let runs_history_lost = Counter::default();
        registry.register(
            "runs_history_lost",
            "Deleted runs released after the grace period without their final state in PostgreSQL",
            runs_history_lost.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            runs_finished,
            run_duration,
            schedule_lag,
            webhook_requests,
            queued_runs,
            mirror_backlog,
            mirror_down,
            leader,
            leader_changes,
            leaderless,
            runs_awaiting_mirror,
            runs_history_lost,
            ready: AtomicBool::new(false),
        }
    }

    /// Counts a reconcile of `controller`.
    pub fn reconciled(&self, controller: &'static str) {
        self.reconciles
            .get_or_create(&vec![("controller", controller.to_owned())])
            .inc();
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, controller: &'static str, category: &'static str) {
        self.reconcile_errors
            .get_or_create(&vec![
                ("controller", controller.to_owned()),
                ("category", category.to_owned()),
            ])
            .inc();
    }

    /// Records a finished run.
    pub fn run_finished(&self, phase: &str, seconds: Option<f64>) {
        self.runs_finished
            .get_or_create(&vec![("phase", phase.to_owned())])
            .inc();
        if let Some(seconds) = seconds {
            self.run_duration.observe(seconds);
        }
    }

    /// Counts a deleted run released without its final state stored.
    pub fn run_history_lost(&self) {
        self.runs_history_lost.inc();
    }

    /// Records how late a schedule slot's run was created.
    pub fn schedule_fired(&self, lag_seconds: f64) {
        self.schedule_lag.observe(lag_seconds.max(0.0));
    }

    /// Counts a webhook request by `outcome` (a fixed set of words).
    pub fn webhook_request(&self, outcome: &'static str) {
        self.webhook_requests
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// Records that this replica took the leader Lease, after `gap`
    /// without a leader (none when it created the Lease).
    pub fn leadership_acquired(&self, gap: Option<std::time::Duration>) {
        self.leader_changes.inc();
        if let Some(gap) = gap {
            self.leaderless.observe(gap.as_secs_f64());
        }
    }

    /// Marks the process ready (its servers are up; leading is not required).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Routes `/metrics`, `/healthz` and `/readyz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move { m.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Acquire) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_bounded_labels() {
        let metrics = Metrics::new();
        metrics.reconciled("workflow");
        metrics.reconcile_failed("run", "Conflict");
        metrics.run_finished("Succeeded", Some(1.5));
        metrics.schedule_fired(0.004);
        metrics.leadership_acquired(Some(std::time::Duration::from_millis(30)));
        let text = metrics.render();
        assert!(text.contains("sluice_leader_changes_total 1"), "{text}");
        assert!(
            text.contains(r#"sluice_leaderless_seconds_bucket{le="0.04"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_reconciles_total{controller="workflow"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"sluice_reconcile_errors_total{controller="run",category="Conflict"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_run_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"sluice_schedule_lag_seconds_bucket{le="0.004"} 1"#),
            "{text}"
        );
    }
}
