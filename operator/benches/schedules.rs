//! Schedule plans for 10,000 schedules: the time to compute, for every one
//! of them, its next slots and its decisions (what fires, what is missed,
//! status, next wake-up) — what the controller spends when all of them
//! come due at once.
//!
//! The schedules mix 5- and 6-field crons, macros, `L`, time zones with and
//! without DST, overlap policies, jitter and catch-up; each has fired its
//! previous slot and one run of it is still active, as in steady state.
//! Two cases: an ordinary instant, and the instant after a 10-minute outage
//! (slots to count, catch-up to decide).
//!
//! Run: `cargo bench -p sluice-operator --bench schedules`

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_crds::common::Duration as SpecDuration;
use sluice_crds::schedule::{CatchUp, OverlapPolicy};
use sluice_crds::{RunPhase, Schedule, ScheduleSpec, ScheduleStatus};
use sluice_operator::schedule::cron::SlotClock;
use sluice_operator::schedule::plan::{Observed, ObservedRun, plan_schedule};
use std::hint::black_box;

const SCHEDULES: usize = 10_000;

const CRONS: [&str; 8] = [
    "* * * * *",
    "*/5 * * * *",
    "30 2 * * *",
    "0 9 * * MON-FRI",
    "*/10 * * * * *",
    "@hourly",
    "0 0 L * *",
    "15,45 8-18 * * *",
];
const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
];
const POLICIES: [OverlapPolicy; 5] = [
    OverlapPolicy::Skip,
    OverlapPolicy::BufferOne,
    OverlapPolicy::BufferAll,
    OverlapPolicy::CancelOther,
    OverlapPolicy::AllowAll,
];

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-29T00:59:30Z")
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or_default()
}

/// Schedule `index`, having fired its last slot before `at`, with one run of
/// that slot still active.
fn fixture(index: usize, at: DateTime<Utc>) -> (Schedule, Vec<ObservedRun>) {
    let spec = ScheduleSpec {
        cron: CRONS[index % CRONS.len()].to_owned(),
        time_zone: Some(ZONES[index % ZONES.len()].to_owned()),
        overlap_policy: Some(POLICIES[index % POLICIES.len()]),
        jitter: index
            .is_multiple_of(3)
            .then(|| SpecDuration::parse("30s").unwrap_or_else(|_| unreachable!())),
        catch_up: index.is_multiple_of(2).then(|| CatchUp {
            window: SpecDuration::parse("1h").unwrap_or_else(|_| unreachable!()),
            max_runs: Some(3),
        }),
        ..ScheduleSpec::default()
    };
    let mut schedule = Schedule::new(&format!("schedule-{index}"), spec);
    schedule.metadata.uid = Some(format!("00000000-0000-4000-8000-{index:012}"));
    schedule.metadata.namespace = Some("bench".to_owned());
    schedule.metadata.generation = Some(1);
    let clock = SlotClock::new(
        &schedule.spec.cron,
        schedule.spec.time_zone.as_deref(),
        None,
    )
    .unwrap_or_else(|error| panic!("{error}"));
    // The last slot at or before `at`: the one after a point a day back,
    // walked forward.
    let last = clock
        .slots_after(at - TimeDelta::days(40))
        .take_while(|slot| *slot <= at)
        .last()
        .unwrap_or(at - TimeDelta::days(40));
    let mut status = ScheduleStatus {
        last_schedule_time: Some(last),
        last_considered_time: Some(last),
        ..ScheduleStatus::default()
    };
    // A first plan sets the conditions, as a running controller would have.
    schedule.status = Some(status.clone());
    let run = ObservedRun {
        name: format!("schedule-{index}-{}", last.timestamp()),
        scheduled_time: Some(last),
        phase: Some(RunPhase::Running),
        cancel_requested: false,
        completion_time: None,
    };
    let observed = Observed {
        runs: vec![run.clone()],
        now: at,
        leading_since: at - TimeDelta::hours(1),
    };
    status = plan_schedule(&schedule, &observed).status;
    schedule.status = Some(status);
    (schedule, vec![run])
}

fn schedules(c: &mut Criterion) {
    let fleet: Vec<(Schedule, Vec<ObservedRun>)> =
        (0..SCHEDULES).map(|index| fixture(index, now())).collect();
    let mut group = c.benchmark_group("schedules");
    group.throughput(Throughput::Elements(SCHEDULES as u64));
    group.sample_size(10);

    group.bench_function("next_5_slots_10k", |b| {
        b.iter(|| {
            for (schedule, _) in &fleet {
                let clock = SlotClock::new(
                    &schedule.spec.cron,
                    schedule.spec.time_zone.as_deref(),
                    None,
                )
                .unwrap_or_else(|error| panic!("{error}"));
                black_box(clock.slots_after(now()).take(5).count());
            }
        })
    });

    for (case, at) in [
        ("plan_10k_next_minute", now() + TimeDelta::seconds(60)),
        ("plan_10k_after_10m_outage", now() + TimeDelta::minutes(10)),
    ] {
        group.bench_function(case, |b| {
            b.iter(|| {
                for (schedule, runs) in &fleet {
                    let observed = Observed {
                        runs: runs.clone(),
                        now: at,
                        leading_since: at - TimeDelta::seconds(1),
                    };
                    black_box(plan_schedule(schedule, &observed));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, schedules);
criterion_main!(benches);
