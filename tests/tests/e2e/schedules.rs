//! Schedules on the test bed: every slot makes exactly one run, two
//! leader-elected replicas never fire a slot twice, an operator stopped for
//! several slots fires according to `catchUp`, and suspend stops firing
//! while resume continues without a burst.
//!
//! Runs are counted by `spec.trigger.scheduledTime` (the slot), read from
//! the API server. A few waits pass wall-clock time on purpose: an outage or
//! a suspension only means something if slots go by during it.

use crate::operator_support::Bed;
use chrono::{DateTime, TimeDelta, Utc};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_crds::{ConditionStatus, Schedule, WorkflowRun};
use sluice_e2e::cluster::TestCluster;
use sluice_e2e::operator::{Operator, OperatorOptions, cluster, eventually};
use std::collections::BTreeMap;
use std::time::Duration;

/// A workflow whose runs finish at once.
fn light_workflow() -> Value {
    json!({"nodes": [{"name": "noop", "transform": {"jq": "{}"}}]})
}

async fn apply(cluster: &TestCluster, object: Value) {
    cluster
        .apply_value(object, std::path::Path::new("<test>"))
        .await
        .expect("failed to apply an object");
}

async fn apply_schedule(cluster: &TestCluster, name: &str, spec: Value) {
    let mut spec = spec;
    spec["workflowRef"] = json!({"name": "light"});
    apply(
        cluster,
        json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Schedule",
            "metadata": {"name": name}, "spec": spec,
        }),
    )
    .await;
}

async fn apply_workflow(cluster: &TestCluster) {
    apply(
        cluster,
        json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "light"}, "spec": light_workflow(),
        }),
    )
    .await;
}

/// Slot → run names of `schedule`'s runs.
async fn slots_of(cluster: &TestCluster, schedule: &str) -> BTreeMap<DateTime<Utc>, Vec<String>> {
    let runs: Api<WorkflowRun> = Api::namespaced(cluster.client(), cluster.namespace());
    let mut slots: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
    for run in runs
        .list(&ListParams::default())
        .await
        .expect("failed to list runs")
        .items
    {
        let trigger = run.spec.trigger.clone().unwrap_or_default();
        if trigger.source.as_deref() == Some(schedule)
            && let Some(slot) = trigger.scheduled_time
        {
            slots.entry(slot).or_default().push(run.name_any());
        }
    }
    slots
}

/// Waits until `schedule` has a run for a slot at or after `at`.
async fn wait_for_slot_after(cluster: &TestCluster, schedule: &str, at: DateTime<Utc>) {
    eventually(
        &format!("schedule {schedule} to fire at or after {at}"),
        || async move {
            slots_of(cluster, schedule)
                .await
                .range(at..)
                .next()
                .map(|_| ())
        },
    )
    .await;
}

async fn schedule_status(cluster: &TestCluster, name: &str) -> sluice_crds::ScheduleStatus {
    let schedules: Api<Schedule> = Api::namespaced(cluster.client(), cluster.namespace());
    schedules
        .get(name)
        .await
        .expect("failed to read the schedule")
        .status
        .unwrap_or_default()
}

fn assert_one_run_per_slot(slots: &BTreeMap<DateTime<Utc>, Vec<String>>) {
    for (slot, names) in slots {
        assert_eq!(names.len(), 1, "slot {slot} fired {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_firing_every_second_makes_one_run_per_slot() {
    let bed = Bed::start("schedule-every-second").await;
    apply_workflow(&bed.cluster).await;
    apply_schedule(
        &bed.cluster,
        "ticker",
        json!({"cron": "* * * * * *", "overlapPolicy": "AllowAll"}),
    )
    .await;
    let first = eventually("the first slot to fire", || async {
        slots_of(&bed.cluster, "ticker")
            .await
            .keys()
            .next()
            .copied()
    })
    .await;
    // A window that starts after the first slot, so the schedule's creation
    // time cannot cut it.
    let start = first + TimeDelta::seconds(1);
    let end = start + TimeDelta::seconds(10);
    wait_for_slot_after(&bed.cluster, "ticker", end).await;
    let slots = slots_of(&bed.cluster, "ticker").await;
    let in_window: Vec<_> = slots.range(start..end).collect();
    assert_eq!(
        in_window.len(),
        10,
        "a schedule firing every second for 10 s made runs for {:?}",
        in_window.iter().map(|(slot, _)| slot).collect::<Vec<_>>()
    );
    assert_one_run_per_slot(&slots);

    let runs: Api<WorkflowRun> = bed.runs();
    let (slot, names) = in_window[0];
    let run = runs.get(&names[0]).await.expect("failed to read a run");
    assert_eq!(run.name_any(), format!("ticker-{}", slot.timestamp()));
    assert_eq!(
        run.labels().get("sluice.dev/schedule").map(String::as_str),
        Some("ticker")
    );
    assert!(
        run.owner_references()
            .iter()
            .any(|o| o.kind == "Schedule" && o.name == "ticker")
    );
    let status = schedule_status(&bed.cluster, "ticker").await;
    assert_eq!(status.next_schedule_times.len(), 5);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
    );
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leader_elected_operators_never_fire_a_slot_twice() {
    let cluster = cluster("schedule-two-replicas")
        .await
        .expect("failed to start the test cluster");
    let replica = |identity: &str| OperatorOptions {
        leader_election: true,
        identity: identity.to_string(),
        env: vec![("SLUICE_LEASE_DURATION".into(), "3s".into())],
        ..OperatorOptions::default()
    };
    let (first, second) = tokio::join!(
        Operator::start(&cluster, replica("replica-a")),
        Operator::start(&cluster, replica("replica-b")),
    );
    let mut first = first.expect("failed to start replica a");
    let mut second = second.expect("failed to start replica b");
    apply_workflow(&cluster).await;
    apply_schedule(
        &cluster,
        "ticker",
        json!({"cron": "* * * * * *", "overlapPolicy": "AllowAll"}),
    )
    .await;
    let started = Utc::now();
    wait_for_slot_after(&cluster, "ticker", started + TimeDelta::seconds(4)).await;
    // The leader dies; the other replica takes over and keeps firing.
    let leader = if first.is_leader().await {
        &mut first
    } else {
        &mut second
    };
    leader.kill().await;
    let killed = Utc::now();
    // Slots during the takeover (the lease must expire) are missed: there
    // is no catchUp here. The survivor then fires on its own.
    eventually("the surviving replica to fire three slots", || async {
        let slots = slots_of(&cluster, "ticker").await;
        (slots.range(killed + TimeDelta::seconds(1)..).count() >= 3).then_some(())
    })
    .await;
    assert_one_run_per_slot(&slots_of(&cluster, "ticker").await);
    drop((first, second));
    cluster
        .finish()
        .await
        .expect("failed to finish the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_stopped_for_five_slots_fires_according_to_catch_up() {
    let mut bed = Bed::start("schedule-catch-up").await;
    apply_workflow(&bed.cluster).await;
    apply_schedule(
        &bed.cluster,
        "plain",
        json!({"cron": "* * * * * *", "overlapPolicy": "AllowAll"}),
    )
    .await;
    apply_schedule(
        &bed.cluster,
        "catching",
        json!({"cron": "* * * * * *", "overlapPolicy": "AllowAll",
               "catchUp": {"window": "1h", "maxRuns": 2}}),
    )
    .await;
    let started = Utc::now();
    wait_for_slot_after(&bed.cluster, "plain", started + TimeDelta::seconds(2)).await;
    wait_for_slot_after(&bed.cluster, "catching", started + TimeDelta::seconds(2)).await;
    bed.operator.kill().await;
    let killed = Utc::now();
    // Let six slots pass with no operator (the outage is the point here).
    tokio::time::sleep(Duration::from_secs(6)).await;
    bed.operator
        .restart()
        .await
        .expect("failed to restart the operator");
    let restarted = Utc::now();
    wait_for_slot_after(&bed.cluster, "plain", restarted + TimeDelta::seconds(2)).await;
    wait_for_slot_after(&bed.cluster, "catching", restarted + TimeDelta::seconds(2)).await;

    for (schedule, caught_up) in [("plain", 0), ("catching", 2)] {
        let slots = slots_of(&bed.cluster, schedule).await;
        assert_one_run_per_slot(&slots);
        let fired: Vec<DateTime<Utc>> = slots.keys().copied().collect();
        let last_before = *fired
            .iter()
            .filter(|slot| **slot <= killed)
            .max()
            .expect("slots fired before the outage");
        let after: Vec<i64> = fired
            .iter()
            .filter(|slot| **slot > last_before)
            .map(|slot| (*slot - last_before).num_seconds())
            .collect();
        // The first `caught_up` missed slots fire late, oldest first; the
        // rest of the gap is missed; then slots fire on time again.
        let expected_caught: Vec<i64> = (1..=caught_up).collect();
        assert_eq!(
            &after[..caught_up as usize],
            &expected_caught[..],
            "{schedule}: {after:?}"
        );
        let resumed = after[caught_up as usize];
        assert!(
            resumed >= 6,
            "{schedule}: fired within the outage: {after:?}"
        );
        let status = schedule_status(&bed.cluster, schedule).await;
        assert_eq!(
            status.missed_slots,
            Some(resumed - 1 - caught_up),
            "{schedule}: every slot of the gap not caught up is counted as missed"
        );
    }
    bed.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_stops_firing_and_resume_continues_without_a_burst() {
    let bed = Bed::start("schedule-suspend").await;
    apply_workflow(&bed.cluster).await;
    let spec = |suspend: bool| json!({"cron": "* * * * * *", "overlapPolicy": "AllowAll", "suspend": suspend});
    apply_schedule(&bed.cluster, "ticker", spec(false)).await;
    wait_for_slot_after(&bed.cluster, "ticker", Utc::now() + TimeDelta::seconds(1)).await;

    let schedules: Api<Schedule> = Api::namespaced(bed.cluster.client(), bed.cluster.namespace());
    let patch = |suspend: bool| json!({"spec": {"suspend": suspend}});
    schedules
        .patch(
            "ticker",
            &PatchParams::default(),
            &Patch::Merge(&patch(true)),
        )
        .await
        .expect("failed to suspend");
    let suspended = eventually("the schedule to report Suspended", || async {
        let status = schedule_status(&bed.cluster, "ticker").await;
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == "Suspended")
            .then(Utc::now)
    })
    .await;
    let last_before = *slots_of(&bed.cluster, "ticker")
        .await
        .keys()
        .max()
        .expect("runs");
    // Slots pass while suspended (the point of the test).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let while_suspended = slots_of(&bed.cluster, "ticker").await;
    assert_eq!(
        while_suspended.keys().max(),
        Some(&last_before),
        "no slot fires while suspended"
    );
    assert!(last_before <= suspended);

    schedules
        .patch(
            "ticker",
            &PatchParams::default(),
            &Patch::Merge(&patch(false)),
        )
        .await
        .expect("failed to resume");
    let resumed = Utc::now();
    wait_for_slot_after(&bed.cluster, "ticker", resumed + TimeDelta::seconds(2)).await;
    let slots = slots_of(&bed.cluster, "ticker").await;
    assert_one_run_per_slot(&slots);
    let burst: Vec<_> = slots
        .keys()
        .filter(|slot| **slot > last_before && **slot < resumed - TimeDelta::seconds(1))
        .collect();
    assert!(
        burst.is_empty(),
        "slots passed while suspended fired on resume: {burst:?}"
    );
    assert_eq!(
        schedule_status(&bed.cluster, "ticker").await.missed_slots,
        None
    );
    bed.finish().await;
}
