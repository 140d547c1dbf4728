//! How long the operator is without a leader when the leader goes away,
//! with two real `sluice-operator` replicas against the API server
//! stand-in, printed as numbers (issue 20).
//!
//! ```text
//! cargo bench -p sluice-e2e --bench handover
//! SLUICE_BENCH_HANDOVERS=50 SLUICE_BENCH_CRASHES=0 cargo bench -p sluice-e2e --bench handover
//! ```
//!
//! - Graceful hand-offs (`SLUICE_BENCH_HANDOVERS`, default 20): SIGTERM to
//!   the leader, as `kubectl delete pod` or a rolling update does. Each
//!   round reports the leaderless gap as the Lease records it (the
//!   standby's `acquireTime` − the `renewTime` the leader wrote when it
//!   released), the time from SIGTERM until this process's watch sees the
//!   standby hold the Lease (which includes the old leader stopping its
//!   controllers), and the standby's own `sluice_leaderless_seconds`.
//!   The stopped replica is started again as the next standby.
//! - Crash failovers (`SLUICE_BENCH_CRASHES`, default 3): SIGKILL to the
//!   leader; the gap is from the SIGKILL until the watch sees the standby
//!   hold the Lease. Bounded by the lease settings, whose production
//!   defaults (`SLUICE_BENCH_LEASE`, default 15s) the replicas use here.
//!
//! No database and no kubelet: leader election needs neither. Release
//! builds (`SLUICE_E2E_PROFILE=debug` for the debug ones). The stand-in
//! and the watch share this process and the machine's cores with the
//! replicas, so the numbers are an upper bound.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use sluice_e2e::binaries::PROFILE_ENV;
use sluice_e2e::operator::{Operator, OperatorOptions, cluster};
use tokio::sync::mpsc;

const LEASE: &str = "sluice-operator-leader";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::var(PROFILE_ENV).is_err() {
        // The harness reads the profile from the environment: set it for a
        // child of this same binary rather than for this process.
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(std::env::args_os().skip(1))
            .env(PROFILE_ENV, "release")
            .status()
            .expect("failed to run the benchmark");
        std::process::exit(status.code().unwrap_or(1));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(handovers());
}

fn micros(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.0.as_microsecond()).unwrap_or_default()
}

/// p50, p90 and max of `samples` (milliseconds), as one line.
fn summary(samples: &mut [f64]) -> String {
    if samples.is_empty() {
        return "no samples".to_owned();
    }
    samples.sort_by(f64::total_cmp);
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    format!(
        "n={} min={:.1} ms p50={:.1} ms p90={:.1} ms max={:.1} ms",
        samples.len(),
        samples[0],
        at(0.50),
        at(0.90),
        samples[samples.len() - 1]
    )
}

/// Waits until the watched Lease names `holder`, returning it and when
/// it was seen; `released` gets the last holder-less version seen before.
async fn wait_holder(
    seen: &mut mpsc::UnboundedReceiver<(LeaseSpec, Instant)>,
    holder: &str,
    released: &mut Option<LeaseSpec>,
) -> (LeaseSpec, Instant) {
    loop {
        let (spec, at) = tokio::time::timeout(Duration::from_secs(120), seen.recv())
            .await
            .expect("the lease changes hands within 2 minutes")
            .expect("the lease watch runs");
        match spec.holder_identity.as_deref() {
            Some(name) if name == holder => return (spec, at),
            None | Some("") => *released = Some(spec),
            _ => {}
        }
    }
}

/// The value of an unlabelled sample in `/metrics` text.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

async fn handovers() {
    let graceful = env_number("SLUICE_BENCH_HANDOVERS", 20);
    let crashes = env_number("SLUICE_BENCH_CRASHES", 3);
    let lease = std::env::var("SLUICE_BENCH_LEASE").unwrap_or_else(|_| "15s".to_owned());
    let cluster = cluster("bench-handover")
        .await
        .expect("failed to start the cluster");
    let replica = |identity: &str| OperatorOptions {
        leader_election: true,
        identity: identity.to_owned(),
        env: vec![("SLUICE_LEASE_DURATION".into(), lease.clone())],
        ..OperatorOptions::default()
    };
    let mut replicas = [
        Operator::start(&cluster, replica("replica-a"))
            .await
            .expect("failed to start replica a"),
        Operator::start(&cluster, replica("replica-b"))
            .await
            .expect("failed to start replica b"),
    ];
    let names = ["replica-a", "replica-b"];

    let leases: Api<Lease> = Api::namespaced(cluster.client(), cluster.namespace());
    let (sender, mut seen) = mpsc::unbounded_channel();
    let watching = tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={LEASE}"));
        let mut events = watcher(leases, config).applied_objects().boxed();
        while let Some(event) = events.next().await {
            if let Ok(lease) = event
                && sender
                    .send((lease.spec.unwrap_or_default(), Instant::now()))
                    .is_err()
            {
                break;
            }
        }
    });

    let mut leader = loop {
        let (spec, _) = seen.recv().await.expect("the lease watch runs");
        match spec.holder_identity.as_deref() {
            Some("replica-a") => break 0,
            Some("replica-b") => break 1,
            _ => {}
        }
    };
    replicas[leader]
        .wait_leader()
        .await
        .expect("the leader leads");

    let (mut lease_gaps, mut sigterm_to_standby, mut metric_gaps) = (vec![], vec![], vec![]);
    for _ in 0..graceful {
        let standby = 1 - leader;
        replicas[standby]
            .wait_ready()
            .await
            .expect("the standby serves");
        let signalled = Instant::now();
        replicas[leader]
            .terminate()
            .await
            .expect("the leader exits on SIGTERM");
        let mut released = None;
        let (taken, at) = wait_holder(&mut seen, names[standby], &mut released).await;
        let released = released.expect("the leader released the lease");
        let gap = micros(taken.acquire_time.as_ref().expect("acquireTime"))
            - micros(released.renew_time.as_ref().expect("renewTime"));
        lease_gaps.push(gap.num_microseconds().unwrap_or_default() as f64 / 1000.0);
        sigterm_to_standby.push(at.duration_since(signalled).as_secs_f64() * 1000.0);
        replicas[standby]
            .wait_leader()
            .await
            .expect("the standby leads");
        let metrics = replicas[standby].metrics().await.expect("metrics");
        let (sum, count) = (
            sample(&metrics, "sluice_leaderless_seconds_sum").unwrap_or_default(),
            sample(&metrics, "sluice_leaderless_seconds_count").unwrap_or_default(),
        );
        if count > 0.0 {
            // Each replica restarts between its take-overs: one observation.
            metric_gaps.push(sum / count * 1000.0);
        }
        replicas[leader]
            .restart()
            .await
            .expect("the stopped replica starts again");
        leader = standby;
    }

    let mut crash_gaps = vec![];
    for _ in 0..crashes {
        let standby = 1 - leader;
        replicas[standby]
            .wait_ready()
            .await
            .expect("the standby serves");
        // Let the standby see a renewal, as it would in a settled cluster.
        let _ = wait_holder(&mut seen, names[leader], &mut None).await;
        let killed = Instant::now();
        replicas[leader].kill().await;
        let (_, at) = wait_holder(&mut seen, names[standby], &mut None).await;
        crash_gaps.push(at.duration_since(killed).as_secs_f64() * 1000.0);
        replicas[leader]
            .restart()
            .await
            .expect("the killed replica starts again");
        leader = standby;
    }
    watching.abort();

    println!("handover: graceful (SIGTERM) hand-offs between two replicas, lease {lease}");
    println!(
        "  leaderless gap in the Lease (release → acquire): {}",
        summary(&mut lease_gaps)
    );
    println!(
        "  SIGTERM → standby seen holding the Lease:        {}",
        summary(&mut sigterm_to_standby)
    );
    println!(
        "  sluice_leaderless_seconds of the new leader:     {}",
        summary(&mut metric_gaps)
    );
    println!("handover: crash (SIGKILL) failovers, lease {lease}");
    println!(
        "  SIGKILL → standby seen holding the Lease:        {}",
        summary(&mut crash_gaps)
    );
    for replica in &mut replicas {
        replica.kill().await;
    }
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}
