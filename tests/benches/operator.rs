//! Performance of the real `sluice-operator` against the API server
//! stand-in, printed as numbers (no criterion: these are distributions and
//! one-off sizes, not a function timed in a loop).
//!
//! ```text
//! cargo bench -p sluice-e2e --bench operator                # all three
//! cargo bench -p sluice-e2e --bench operator -- admission   # issue 6a
//! cargo bench -p sluice-e2e --bench operator -- memory      # issue 6b
//! cargo bench -p sluice-e2e --bench operator -- schedules   # issue 7
//! cargo bench -p sluice-e2e --bench operator -- webhooks    # issue 8
//! cargo bench -p sluice-e2e --bench operator -- stuck       # issue 12
//! cargo bench -p sluice-e2e --bench operator -- catchup     # issue 20
//! cargo bench -p sluice-e2e --bench operator -- quotas      # issue 19
//! ```
//!
//! `stuck` and `catchup` are described in [`liveness`]; `stuck` uses a
//! real PostgreSQL database (the others run without one).
//!
//! - `admission`: WorkflowRuns created open-loop at `SLUICE_BENCH_RATE`
//!   (default 100) per second for `SLUICE_BENCH_SECONDS` (default 10) of a
//!   one-`transform`-node workflow without a concurrency limit; latency =
//!   the moment a Job watcher in this process sees the run's Job − the
//!   moment the run's create call answered.
//! - `quotas`: `admission` twice, the second time with the namespace on a
//!   Plan whose counting limits are checked for every run and never
//!   reached; prints both p99s and their difference.
//! - `memory`: the operator's VmRSS/VmHWM once `SLUICE_BENCH_WORKFLOWS`
//!   (default 10,000) Workflows all have `status.observedGeneration`.
//! - `schedules`: `SLUICE_BENCH_SCHEDULES` (default 10,000) Schedules
//!   `<s> * * * * *` (s = i mod 60, AllowAll) for `SLUICE_BENCH_SECONDS`
//!   (default 120 here); lag = the moment a run watcher in this process sees
//!   a slot's run − `spec.trigger.scheduledTime`, for slots after all the
//!   Schedules exist; then the operator's RSS.
//! - `webhooks`: GitHub-signed `POST /hooks/…` requests to the operator's
//!   webhook server, open-loop at `SLUICE_BENCH_WEBHOOK_RATE` (default 200)
//!   per second for `SLUICE_BENCH_SECONDS` (default 10); latency = request
//!   sent → 202 answered (the run exists by then: the answer names it), and
//!   request sent → a run watcher in this process sees the run.
//!
//! No database (the mirror is off) and no kubelet emulator (Jobs are never
//! run): these measure the operator's own path, with the release build of
//! `sluice-operator` (set `SLUICE_E2E_PROFILE=debug` for the debug one). The stand-in, the watchers
//! and the load generator share this process and the machine's cores with
//! the operator, so the numbers are an upper bound of what the operator
//! alone would show.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use sluice_crds::{Schedule, Workflow, WorkflowRun};
use sluice_e2e::binaries::PROFILE_ENV;
use sluice_e2e::cluster::{KUBELET_ENV, TestCluster};
use sluice_e2e::operator::{Operator, OperatorOptions, cluster};

#[path = "operator/liveness.rs"]
mod liveness;

/// Each slot's run at its first sighting: run name → (slot, lag in ms).
type Sightings = HashMap<String, (DateTime<Utc>, f64)>;

/// Requests in flight while creating objects in bulk.
const IN_FLIGHT: usize = 32;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // These benchmarks measure Job creation, so nobody runs pods. The kubelet
    // mode is read from the environment only; set it for a child of this same
    // binary rather than for this process.
    if std::env::var(KUBELET_ENV).as_deref() != Ok("none") {
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(std::env::args_os().skip(1))
            .env(KUBELET_ENV, "none")
            .env(
                PROFILE_ENV,
                std::env::var(PROFILE_ENV).unwrap_or_else(|_| "release".to_owned()),
            )
            .status()
            .expect("failed to run the benchmark");
        std::process::exit(status.code().unwrap_or(1));
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let selected = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        if selected("admission") {
            admission().await;
        }
        if selected("quotas") {
            quotas().await;
        }
        if selected("memory") {
            memory().await;
        }
        if selected("schedules") {
            schedules().await;
        }
        if selected("webhooks") {
            webhooks().await;
        }
        if selected("stuck") {
            liveness::stuck().await;
        }
        if selected("catchup") {
            liveness::catchup().await;
        }
    });
}

struct Bench {
    // Dropped in this order: the operator before its cluster.
    operator: Operator,
    cluster: TestCluster,
}

impl Bench {
    async fn start(name: &str) -> Self {
        let cluster = cluster(name).await.expect("failed to start the cluster");
        let operator = Operator::start(&cluster, OperatorOptions::default())
            .await
            .expect("failed to start the operator");
        Self { operator, cluster }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.cluster.client(), self.cluster.namespace())
    }

    async fn apply_workflow(&self, name: &str) {
        let workflow: Workflow =
            serde_json::from_value(workflow_manifest(name)).expect("a valid Workflow");
        self.api::<Workflow>()
            .create(&PostParams::default(), &workflow)
            .await
            .expect("failed to create the workflow");
        self.wait_reconciled(1).await;
    }

    /// Waits until `count` Workflows have `status.observedGeneration`.
    async fn wait_reconciled(&self, count: usize) -> Duration {
        let started = Instant::now();
        loop {
            let list = self
                .api::<Workflow>()
                .list(&ListParams::default())
                .await
                .expect("failed to list workflows");
            let done = list
                .items
                .iter()
                .filter(|w| {
                    w.status.as_ref().and_then(|s| s.observed_generation) == w.metadata.generation
                        && w.metadata.generation.is_some()
                })
                .count();
            if done >= count {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "only {done} of {count} workflows reconciled after 10 minutes"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn memory(&self) -> String {
        let pid = self.operator.id().expect("the operator runs");
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
        let field = |name: &str| {
            status
                .lines()
                .find(|line| line.starts_with(name))
                .map(|line| line[name.len()..].trim().to_owned())
                .unwrap_or_default()
        };
        format!("VmRSS {}, VmHWM {}", field("VmRSS:"), field("VmHWM:"))
    }

    async fn finish(mut self) {
        self.operator.kill().await;
        self.cluster
            .finish()
            .await
            .expect("failed to finish the cluster");
    }
}

/// A first sighting of each object a watcher sees, by name.
fn watch_sightings<K>(
    api: Api<K>,
) -> (
    Arc<Mutex<HashMap<String, Instant>>>,
    tokio::task::JoinHandle<()>,
)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let recorded = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) = event {
                let now = Instant::now();
                recorded
                    .lock()
                    .expect("not poisoned")
                    .entry(object.name_any())
                    .or_insert(now);
            }
        }
    });
    (seen, task)
}

fn workflow_manifest(name: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"nodes": [{"name": "t", "transform": {"jq": "."}}]},
    })
}

/// p50, p99 and max of `samples` (milliseconds), as one line.
fn summary(samples: &mut [f64]) -> String {
    if samples.is_empty() {
        return "no samples".to_owned();
    }
    samples.sort_by(f64::total_cmp);
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    format!(
        "n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    )
}

/// Issue 6a: run creation → Job creation at a steady rate.
async fn admission() {
    admission_at("bench-admission", None).await;
}

/// Issue 19: the same load twice, without a plan and with the namespace on
/// a plan whose counting limits (concurrent runs, runs per day and month,
/// node-seconds) are checked for every run but never reached; prints the
/// p99 of each and the difference (target: within 5 ms).
async fn quotas() {
    let without = admission_at("bench-quota-off", None).await;
    let limits = json!({
        "concurrentRuns": 1_000_000,
        "runsPerDay": 1_000_000,
        "runsPerMonth": 1_000_000,
        "nodeSecondsPerMonth": 1_000_000_000u64,
        "maxInputBytes": 1_000,
    });
    let with = admission_at("bench-quota-on", Some(limits)).await;
    println!(
        "quotas: run created → Job seen p99 without a plan {:.1} ms, with every counting limit {:.1} ms: {:+.1} ms",
        without,
        with,
        with - without
    );
}

/// Puts the bench's namespace on a new plan with `limits` and waits until
/// the operator enforces it: a probe run with too large an input is refused.
async fn subscribe(bench: &Bench, limits: Value) {
    let plan = format!("{}-plan", bench.cluster.namespace());
    bench
        .cluster
        .apply_value(
            json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "Plan",
                "metadata": {"name": plan},
                "spec": {"limits": limits},
            }),
            std::path::Path::new("<bench>"),
        )
        .await
        .expect("failed to create the plan");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(bench.cluster.client());
    namespaces
        .patch(
            bench.cluster.namespace(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"sluice.dev/plan": plan}}})),
        )
        .await
        .expect("failed to label the namespace");
    let probe: WorkflowRun = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "probe"},
        "spec": {"workflowRef": {"name": "trivial"}, "input": {"pad": "x".repeat(2_000)}},
    }))
    .expect("a valid WorkflowRun");
    let runs = bench.api::<WorkflowRun>();
    runs.create(&PostParams::default(), &probe)
        .await
        .expect("failed to create the probe run");
    let started = Instant::now();
    loop {
        let reason = runs
            .get("probe")
            .await
            .expect("failed to read the probe run")
            .status
            .and_then(|status| status.reason);
        if reason.as_deref() == Some("QuotaExceeded") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the operator did not enforce the plan within 60 s (probe: {reason:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates runs open-loop and prints their latencies; returns the p99 of
/// run created → Job seen, in milliseconds.
async fn admission_at(name: &str, plan: Option<Value>) -> f64 {
    let rate = env_number("SLUICE_BENCH_RATE", 100);
    let seconds = env_number("SLUICE_BENCH_SECONDS", 10);
    let bench = Bench::start(name).await;
    bench.apply_workflow("trivial").await;
    let on_plan = plan.is_some();
    if let Some(limits) = plan {
        subscribe(&bench, limits).await;
    }

    // First sighting of each Job, by name.
    let (seen, watch) = watch_sightings(bench.api::<Job>());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut clock = tokio::time::interval(period);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let runs = bench.api::<WorkflowRun>();
    let mut creations = Vec::with_capacity(total as usize);
    let started = Instant::now();
    for index in 0..total {
        clock.tick().await;
        let runs = runs.clone();
        creations.push(tokio::spawn(async move {
            let name = format!("run-{index:05}");
            let run: WorkflowRun = serde_json::from_value(json!({
                "apiVersion": "sluice.dev/v1alpha1",
                "kind": "WorkflowRun",
                "metadata": {"name": name},
                "spec": {"workflowRef": {"name": "trivial"}},
            }))
            .expect("a valid WorkflowRun");
            let sent = Instant::now();
            runs.create(&PostParams::default(), &run)
                .await
                .expect("failed to create a run");
            (name, sent, Instant::now())
        }));
    }
    let offered = started.elapsed();
    let mut created = vec![];
    for creation in creations {
        created.push(creation.await.expect("a creation task"));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let missing = {
            let seen = seen.lock().expect("not poisoned");
            created
                .iter()
                .filter(|(name, _, _)| !seen.contains_key(&sluice_operator::names::job_name(name)))
                .count()
        };
        if missing == 0 || Instant::now() > deadline {
            if missing > 0 {
                println!("admission: {missing} runs got no Job within 120 s");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch.abort();
    let seen = seen.lock().expect("not poisoned").clone();
    let mut from_created = vec![];
    let mut from_sent = vec![];
    let mut create_calls = vec![];
    for (name, sent, answered) in &created {
        create_calls.push((*answered - *sent).as_secs_f64() * 1000.0);
        if let Some(job_seen) = seen.get(&sluice_operator::names::job_name(name)) {
            let since =
                |at: &Instant| job_seen.saturating_duration_since(*at).as_secs_f64() * 1000.0;
            from_created.push(since(answered));
            from_sent.push(since(sent));
        }
    }
    println!(
        "admission{}: {total} runs offered at {rate}/s over {:.2} s (no database, no kubelet)",
        if on_plan { " on a plan" } else { "" },
        offered.as_secs_f64()
    );
    println!(
        "admission: run created → Job seen: {}",
        summary(&mut from_created)
    );
    println!(
        "admission: create sent → Job seen:  {}",
        summary(&mut from_sent)
    );
    println!(
        "admission: create call:             {}",
        summary(&mut create_calls)
    );
    println!("admission: operator {}", bench.memory());
    bench.finish().await;
    p99(&mut from_created)
}

/// The 99th percentile of `samples` (milliseconds), as [`summary`] counts it.
fn p99(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() as f64 * 0.99).ceil() as usize).clamp(1, samples.len()) - 1]
}

/// Issue 6b: operator memory with many Workflows.
async fn memory() {
    let count = env_number("SLUICE_BENCH_WORKFLOWS", 10_000) as usize;
    let bench = Bench::start("bench-memory").await;
    println!("memory: operator idle: {}", bench.memory());
    let workflows = bench.api::<Workflow>();
    let started = Instant::now();
    stream::iter(0..count)
        .map(|index| {
            let workflows = workflows.clone();
            async move {
                let workflow: Workflow =
                    serde_json::from_value(workflow_manifest(&format!("wf-{index:05}")))
                        .expect("a valid Workflow");
                workflows.create(&PostParams::default(), &workflow).await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await
        .expect("failed to create a workflow");
    let created = started.elapsed();
    let waited = bench.wait_reconciled(count).await;
    println!(
        "memory: {count} workflows created in {:.1} s, all reconciled {:.1} s later",
        created.as_secs_f64(),
        waited.as_secs_f64()
    );
    println!(
        "memory: operator with {count} workflows: {}",
        bench.memory()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("memory: operator 5 s later: {}", bench.memory());
    bench.finish().await;
}

/// Issue 7: firing lag with many Schedules in one operator.
async fn schedules() {
    let count = env_number("SLUICE_BENCH_SCHEDULES", 10_000) as usize;
    let seconds = env_number("SLUICE_BENCH_SECONDS", 120);
    let bench = Bench::start("bench-schedules").await;
    bench.apply_workflow("trivial").await;

    // Lag of each slot's run at its first sighting, by run name.
    let lags: Arc<Mutex<Sightings>> = Arc::default();
    let watch = {
        let lags = lags.clone();
        let runs = bench.api::<WorkflowRun>();
        tokio::spawn(async move {
            let config = watcher::Config::default().labels("sluice.dev/schedule");
            let mut events = watcher(runs, config).boxed();
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(run) | watcher::Event::InitApply(run)) = event {
                    let now = Utc::now();
                    let Some(slot) = run.spec.trigger.as_ref().and_then(|t| t.scheduled_time)
                    else {
                        continue;
                    };
                    let lag = (now - slot).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
                    lags.lock()
                        .expect("not poisoned")
                        .entry(run.name_any())
                        .or_insert((slot, lag));
                }
            }
        })
    };

    let schedules = bench.api::<Schedule>();
    let started = Instant::now();
    stream::iter(0..count)
        .map(|index| {
            let schedules = schedules.clone();
            async move {
                let schedule: Schedule = serde_json::from_value(json!({
                    "apiVersion": "sluice.dev/v1alpha1",
                    "kind": "Schedule",
                    "metadata": {"name": format!("s-{index:05}")},
                    "spec": {
                        "workflowRef": {"name": "trivial"},
                        "cron": format!("{} * * * * *", index % 60),
                        "overlapPolicy": "AllowAll",
                    },
                }))
                .expect("a valid Schedule");
                schedules.create(&PostParams::default(), &schedule).await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await
        .expect("failed to create a schedule");
    println!(
        "schedules: {count} schedules created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Slots from here on: every schedule exists and the operator had a
    // few seconds to see them all.
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "schedules: operator with {count} schedules and {} runs: {}",
        lags.lock().expect("not poisoned").len(),
        bench.memory()
    );
    let from = Utc::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let until = Utc::now();
    println!(
        "schedules: operator with {count} schedules and {} runs, none finished (no kubelet): {}",
        lags.lock().expect("not poisoned").len(),
        bench.memory()
    );
    // Slots due in the window may still be firing: give them the on-time limit.
    tokio::time::sleep(Duration::from_secs(10)).await;
    watch.abort();
    let lags = lags.lock().expect("not poisoned").clone();
    let mut window: Vec<f64> = lags
        .values()
        .filter(|(slot, _)| *slot >= from && *slot < until)
        .map(|(_, lag)| *lag)
        .collect();
    let expected = count as f64 * (until - from).num_milliseconds() as f64 / 60_000.0;
    println!(
        "schedules: {count} schedules, slots over {seconds} s (≈{expected:.0} expected, {} fired, {} runs seen in all)",
        window.len(),
        lags.len()
    );
    println!("schedules: slot → run seen: {}", summary(&mut window));
    println!("schedules: operator after the window: {}", bench.memory());
    bench.finish().await;
}

/// Issue 8: webhook request → run created, through the real operator.
async fn webhooks() {
    let rate = env_number("SLUICE_BENCH_WEBHOOK_RATE", 200);
    let seconds = env_number("SLUICE_BENCH_SECONDS", 10);
    let bench = Bench::start("bench-webhooks").await;
    let key = b"bench-webhook-key";
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "hook-key"},
        "stringData": {"hmacKey": String::from_utf8_lossy(key)},
    }))
    .expect("a valid Secret");
    bench
        .api::<k8s_openapi::api::core::v1::Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("failed to create the secret");
    let mut manifest = workflow_manifest("hooked");
    manifest["spec"]["triggers"] = json!([{"name": "push", "webhook": {
        "auth": {"type": "Hmac", "signatureFormat": "GitHub", "secretRef": {"name": "hook-key", "key": "hmacKey"}},
        "rateLimit": {"perMinute": 1_000_000, "burst": 1_000_000},
    }}]);
    let workflow: Workflow = serde_json::from_value(manifest).expect("a valid Workflow");
    bench
        .api::<Workflow>()
        .create(&PostParams::default(), &workflow)
        .await
        .expect("failed to create the workflow");
    bench.wait_reconciled(1).await;
    let (seen, watch) = watch_sightings(bench.api::<WorkflowRun>());
    let url = format!(
        "{}/hooks/{}/hooked/push",
        bench.operator.webhook_url(),
        bench.cluster.namespace()
    );
    let client = reqwest::Client::new();
    let send = |index: u64| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let body = format!(r#"{{"order": {index}, "items": [1, 2, 3]}}"#);
            let signature = format!(
                "sha256={}",
                sluice_operator::webhook::auth::sign_hex(key, body.as_bytes())
            );
            let sent = Instant::now();
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await
                .expect("the webhook answered");
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            (status, answer, sent, Instant::now())
        }
    };
    // Warm up: the operator may not have read the workflow's trigger yet.
    let deadline = Instant::now() + Duration::from_secs(30);
    while send(u64::MAX).await.0 != 202 {
        assert!(
            Instant::now() < deadline,
            "the webhook never accepted a request"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut clock = tokio::time::interval(period);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::with_capacity(total as usize);
    let started = Instant::now();
    for index in 0..total {
        clock.tick().await;
        requests.push(tokio::spawn(send(index)));
    }
    let offered = started.elapsed();
    let mut answered = vec![];
    let mut refused: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
    for request in requests {
        let (status, answer, sent, done) = request.await.expect("a request task");
        match answer["run"].as_str() {
            Some(run) if status == 202 => answered.push((run.to_owned(), sent, done)),
            _ => refused.entry(status).or_default().push(answer.to_string()),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let all_seen = {
            let seen = seen.lock().expect("not poisoned");
            answered.iter().all(|(run, _, _)| seen.contains_key(run))
        };
        if all_seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watch.abort();
    let seen = seen.lock().expect("not poisoned").clone();
    let mut to_answer = vec![];
    let mut to_seen = vec![];
    for (run, sent, done) in &answered {
        to_answer.push((*done - *sent).as_secs_f64() * 1000.0);
        if let Some(at) = seen.get(run) {
            to_seen.push(at.saturating_duration_since(*sent).as_secs_f64() * 1000.0);
        }
    }
    println!(
        "webhooks: {total} signed requests offered at {rate}/s over {:.2} s; {} answered 202",
        offered.as_secs_f64(),
        answered.len()
    );
    for (status, answers) in &refused {
        println!(
            "webhooks: {} answered {status}, e.g. {}",
            answers.len(),
            answers[0]
        );
    }
    println!(
        "webhooks: request → 202 (run created): {}",
        summary(&mut to_answer)
    );
    println!(
        "webhooks: request → run seen by a watch: {}",
        summary(&mut to_seen)
    );
    println!("webhooks: operator {}", bench.memory());
    bench.finish().await;
}
