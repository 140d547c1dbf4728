//! Plans of an every-minute schedule against an injected clock: each test
//! plays reconciles in order, writing each planned status back as the shell
//! does, with the runs the shell would have created.

use super::*;
use sluice_crds::ScheduleSpec;
use sluice_crds::common::Duration as SpecDuration;
use sluice_crds::schedule::CatchUp;

const UID: &str = "0b0e0000-0000-4000-8000-000000000001";

/// 2026-01-01T00:00:00Z plus `seconds`.
fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600 + seconds, 0).unwrap()
}

fn schedule(spec: ScheduleSpec) -> Schedule {
    let mut schedule = Schedule::new("nightly", spec);
    schedule.metadata.uid = Some(UID.to_owned());
    schedule.metadata.namespace = Some("growth".to_owned());
    schedule.metadata.generation = Some(1);
    schedule.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(t(-30).timestamp()).unwrap(),
        ));
    schedule
}

fn every_minute() -> ScheduleSpec {
    ScheduleSpec {
        cron: "* * * * *".to_owned(),
        ..ScheduleSpec::default()
    }
}

fn with(policy: OverlapPolicy) -> ScheduleSpec {
    ScheduleSpec {
        overlap_policy: Some(policy),
        ..every_minute()
    }
}

fn run(slot: DateTime<Utc>, phase: Option<RunPhase>) -> ObservedRun {
    ObservedRun {
        name: crate::names::scheduled_run_name("nightly", slot),
        scheduled_time: Some(slot),
        phase,
        cancel_requested: false,
        completion_time: phase
            .filter(|p| p.is_terminal())
            .map(|_| slot + TimeDelta::seconds(10)),
    }
}

/// The operator has been leading for an hour at every `now` unless told.
fn observed(now: DateTime<Utc>, runs: Vec<ObservedRun>) -> Observed {
    Observed {
        runs,
        now,
        leading_since: t(-3600),
    }
}

/// Plans, then writes the planned status back, as the shell does.
fn step(schedule: &mut Schedule, observed: &Observed) -> SchedulePlan {
    let plan = plan_schedule(schedule, observed);
    schedule.status = Some(plan.status.clone());
    plan
}

fn condition<'a>(plan: &'a SchedulePlan, type_: &str) -> &'a Condition {
    find_condition(&plan.status.conditions, type_).unwrap()
}

fn minutes(slots: &[DateTime<Utc>]) -> Vec<i64> {
    slots
        .iter()
        .map(|slot| (*slot - t(0)).num_seconds() / 60)
        .collect()
}

#[test]
fn a_due_slot_fires_and_the_controller_wakes_for_the_next() {
    let mut schedule = schedule(every_minute());
    let plan = step(
        &mut schedule,
        &observed(t(0) + TimeDelta::milliseconds(20), vec![]),
    );
    assert_eq!(plan.fire, [t(0)]);
    assert_eq!(plan.status.last_schedule_time, Some(t(0)));
    assert_eq!(minutes(&plan.status.next_schedule_times), [1, 2, 3, 4, 5]);
    assert_eq!(
        plan.requeue_after,
        Some(std::time::Duration::from_millis(59_980))
    );
    assert_eq!(
        plan.status.active,
        [crate::names::scheduled_run_name("nightly", t(0))]
    );
    assert_eq!(
        condition(&plan, condition_type::VALID).status,
        ConditionStatus::True
    );
    assert_eq!(
        condition(&plan, condition_type::READY).status,
        ConditionStatus::True
    );
    assert_eq!(condition(&plan, PAUSED).status, ConditionStatus::False);
    assert_eq!(plan.status.missed_slots, None);

    let again = step(&mut schedule, &observed(t(1), vec![run(t(0), None)]));
    assert!(again.fire.is_empty(), "the slot is decided");
    assert!(!again.status_changed, "nothing to write");
    assert!(again.events.is_empty());
}

#[test]
fn slots_before_the_schedule_existed_never_fire() {
    let mut schedule = schedule(every_minute());
    let plan = step(&mut schedule, &observed(t(-10), vec![]));
    assert!(plan.fire.is_empty());
    assert_eq!(plan.status.missed_slots, None);
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(10)));
}

#[test]
fn a_restart_right_after_a_slot_does_not_fire_it_again() {
    // The run was created, then the operator died before writing status.
    let mut schedule = schedule(every_minute());
    let restarted = Observed {
        runs: vec![run(t(0), Some(RunPhase::Running))],
        now: t(1),
        leading_since: t(0) + TimeDelta::milliseconds(500),
    };
    let plan = step(&mut schedule, &restarted);
    assert!(plan.fire.is_empty());
    assert_eq!(plan.status.last_schedule_time, Some(t(0)));
    assert_eq!(plan.status.missed_slots, None, "a fired slot is not missed");
    assert_eq!(minutes(&plan.status.next_schedule_times)[0], 1);
}

/// The schedule fired at t(0); the operator was down from then until 5m10s.
fn after_downtime(spec: ScheduleSpec) -> SchedulePlan {
    let mut schedule = schedule(spec);
    step(&mut schedule, &observed(t(0), vec![]));
    let restarted = Observed {
        runs: vec![run(t(0), Some(RunPhase::Succeeded))],
        now: t(311),
        leading_since: t(310),
    };
    step(&mut schedule, &restarted)
}

fn catch_up(window: &str, max_runs: Option<u32>) -> Option<CatchUp> {
    Some(CatchUp {
        window: SpecDuration::parse(window).unwrap(),
        max_runs,
    })
}

#[test]
fn without_catch_up_slots_missed_while_down_are_counted_not_fired() {
    let plan = after_downtime(every_minute());
    assert!(plan.fire.is_empty());
    assert_eq!(plan.status.missed_slots, Some(5));
    assert_eq!(plan.status.last_considered_time, Some(t(300)));
    assert_eq!(minutes(&plan.status.next_schedule_times)[0], 6);
    let event = plan
        .events
        .iter()
        .find(|e| e.reason == reason::MISSED)
        .unwrap();
    assert!(
        event.warning && event.message.contains("5 while no operator ran"),
        "{event:?}"
    );
}

#[test]
fn catch_up_with_a_window_larger_than_the_gap_fires_up_to_max_runs_oldest_first() {
    let plan = after_downtime(ScheduleSpec {
        catch_up: catch_up("1h", Some(10)),
        ..with(OverlapPolicy::AllowAll)
    });
    assert_eq!(minutes(&plan.fire), [1, 2, 3, 4, 5]);
    assert_eq!(plan.status.missed_slots, None);
    assert_eq!(plan.status.last_schedule_time, Some(t(300)));

    let limited = after_downtime(ScheduleSpec {
        catch_up: catch_up("1h", Some(2)),
        ..with(OverlapPolicy::AllowAll)
    });
    assert_eq!(minutes(&limited.fire), [1, 2], "maxRuns: the oldest two");
    assert_eq!(limited.status.missed_slots, Some(3));

    let default_max = after_downtime(ScheduleSpec {
        catch_up: catch_up("1h", None),
        ..with(OverlapPolicy::AllowAll)
    });
    assert_eq!(minutes(&default_max.fire), [1], "maxRuns defaults to 1");
}

#[test]
fn catch_up_with_a_window_smaller_than_the_gap_fires_only_inside_it() {
    let plan = after_downtime(ScheduleSpec {
        catch_up: catch_up("2m30s", Some(10)),
        ..with(OverlapPolicy::AllowAll)
    });
    assert_eq!(minutes(&plan.fire), [3, 4, 5]);
    assert_eq!(plan.status.missed_slots, Some(2));
}

#[test]
fn caught_up_slots_still_obey_the_overlap_policy() {
    let plan = after_downtime(ScheduleSpec {
        catch_up: catch_up("1h", Some(10)),
        ..with(OverlapPolicy::Skip)
    });
    assert_eq!(minutes(&plan.fire), [1], "one at a time under Skip");
    assert_eq!(plan.status.missed_slots, Some(4));
}

#[test]
fn a_long_outage_is_counted_without_walking_every_slot_twice() {
    let mut schedule = schedule(ScheduleSpec {
        cron: "* * * * * *".to_owned(),
        ..ScheduleSpec::default()
    });
    step(&mut schedule, &observed(t(0), vec![]));
    let week = 7 * 24 * 3600;
    let started = t(week) + TimeDelta::milliseconds(500);
    let plan = step(
        &mut schedule,
        &Observed {
            runs: vec![],
            now: started,
            leading_since: started,
        },
    );
    assert!(plan.fire.is_empty());
    assert!(plan.status.missed_slots.unwrap() >= MAX_SCAN as i64);
    assert!(plan.status.last_considered_time.unwrap() >= t(week - 61));
}

#[test]
fn a_slot_past_its_starting_deadline_is_missed() {
    let spec = ScheduleSpec {
        starting_deadline_seconds: Some(10),
        ..every_minute()
    };
    let mut late = schedule(spec.clone());
    let plan = step(&mut late, &observed(t(30), vec![]));
    assert!(plan.fire.is_empty());
    assert_eq!(plan.status.missed_slots, Some(1));
    assert!(plan.events[0].message.contains("startingDeadlineSeconds"));

    let mut in_time = schedule(spec);
    assert_eq!(step(&mut in_time, &observed(t(9), vec![])).fire, [t(0)]);
}

#[test]
fn a_lagging_controller_still_fires_slots_within_a_minute() {
    let mut schedule = schedule(ScheduleSpec {
        cron: "* * * * * *".to_owned(),
        overlap_policy: Some(OverlapPolicy::AllowAll),
        ..ScheduleSpec::default()
    });
    step(&mut schedule, &observed(t(0), vec![]));
    let plan = step(&mut schedule, &observed(t(3), vec![]));
    assert_eq!(plan.fire, [t(1), t(2), t(3)]);
}

/// A run for t(0) still running when the slot of minute 1 comes.
fn overlapping(policy: OverlapPolicy) -> (Schedule, SchedulePlan) {
    let mut schedule = schedule(with(policy));
    step(&mut schedule, &observed(t(0), vec![]));
    let plan = step(
        &mut schedule,
        &observed(t(61), vec![run(t(0), Some(RunPhase::Running))]),
    );
    (schedule, plan)
}

#[test]
fn skip_drops_a_slot_while_a_run_is_active() {
    let (_, plan) = overlapping(OverlapPolicy::Skip);
    assert!(plan.fire.is_empty());
    assert_eq!(plan.status.missed_slots, Some(1));
    assert!(plan.events[0].message.contains("overlapPolicy"));
}

#[test]
fn allow_all_starts_alongside() {
    let (_, plan) = overlapping(OverlapPolicy::AllowAll);
    assert_eq!(plan.fire, [t(60)]);
    assert!(plan.cancel.is_empty());
}

#[test]
fn cancel_other_cancels_the_active_run_and_starts_the_new_one() {
    let (_, plan) = overlapping(OverlapPolicy::CancelOther);
    assert_eq!(plan.fire, [t(60)]);
    assert_eq!(
        plan.cancel,
        [crate::names::scheduled_run_name("nightly", t(0))]
    );
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == reason::CANCELLED_OTHER)
    );
}

#[test]
fn buffer_one_keeps_one_slot_until_the_run_ends() {
    let (mut schedule, plan) = overlapping(OverlapPolicy::BufferOne);
    assert!(plan.fire.is_empty());
    assert_eq!(plan.status.buffered_slots, [t(60)]);
    let running = vec![run(t(0), Some(RunPhase::Running))];
    let plan = step(&mut schedule, &observed(t(121), running));
    assert_eq!(plan.status.buffered_slots, [t(60)], "the first one waits");
    assert_eq!(plan.status.missed_slots, Some(1), "the second is dropped");
    let done = vec![run(t(0), Some(RunPhase::Succeeded))];
    let plan = step(&mut schedule, &observed(t(150), done));
    assert_eq!(plan.fire, [t(60)]);
    assert!(plan.status.buffered_slots.is_empty());
    assert_eq!(plan.status.last_successful_time, Some(t(10)));
}

#[test]
fn buffer_all_starts_every_waiting_slot_in_order() {
    let (mut schedule, _) = overlapping(OverlapPolicy::BufferAll);
    let running = vec![run(t(0), Some(RunPhase::Running))];
    let plan = step(&mut schedule, &observed(t(121), running));
    assert_eq!(plan.status.buffered_slots, [t(60), t(120)]);
    let plan = step(
        &mut schedule,
        &observed(t(130), vec![run(t(0), Some(RunPhase::Failed))]),
    );
    assert_eq!(plan.fire, [t(60)], "one at a time");
    assert_eq!(plan.status.buffered_slots, [t(120)]);
    let runs = vec![
        run(t(0), Some(RunPhase::Failed)),
        run(t(60), Some(RunPhase::Succeeded)),
    ];
    let plan = step(&mut schedule, &observed(t(140), runs));
    assert_eq!(plan.fire, [t(120)]);
    assert!(plan.status.buffered_slots.is_empty());
    assert_eq!(plan.status.missed_slots, None);
}

#[test]
fn jitter_delays_a_slot_by_the_same_bounded_amount_every_time() {
    let spec = ScheduleSpec {
        jitter: Some(SpecDuration::parse("30s").unwrap()),
        ..every_minute()
    };
    let delay = jitter(UID, t(60), std::time::Duration::from_secs(30));
    assert!(delay < TimeDelta::seconds(30));
    let mut first = schedule(spec.clone());
    step(&mut first, &observed(t(0) + delay, vec![]));
    let mut restarted = first.clone();
    let plan = step(&mut first, &observed(t(30), vec![]));
    let again = step(&mut restarted, &observed(t(30), vec![]));
    assert_eq!(
        plan.requeue_after, again.requeue_after,
        "a restart keeps the delay"
    );
    let expected = (t(60) + delay - t(30)).to_std().unwrap();
    assert_eq!(plan.requeue_after, Some(expected));

    let before = t(60) + delay - TimeDelta::milliseconds(1);
    assert!(step(&mut first, &observed(before, vec![])).fire.is_empty());
    let plan = step(&mut first, &observed(t(60) + delay, vec![]));
    assert_eq!(plan.fire, [t(60)], "the run's slot stays nominal");
}

#[test]
fn a_failed_run_pauses_until_the_spec_changes() {
    let mut schedule = schedule(ScheduleSpec {
        pause_on_failure: Some(true),
        ..every_minute()
    });
    step(&mut schedule, &observed(t(0), vec![]));
    let failed = vec![run(t(0), Some(RunPhase::Failed))];
    let plan = step(&mut schedule, &observed(t(61), failed.clone()));
    assert!(plan.fire.is_empty());
    assert_eq!(condition(&plan, PAUSED).status, ConditionStatus::True);
    assert_eq!(
        condition(&plan, condition_type::READY).reason,
        reason::RUN_FAILED
    );
    assert_eq!(plan.requeue_after, None, "wait for a spec change");
    assert!(plan.status.next_schedule_times.is_empty());
    assert_eq!(plan.events.len(), 1);
    let still = step(&mut schedule, &observed(t(300), failed.clone()));
    assert!(still.fire.is_empty() && still.events.is_empty());

    schedule.metadata.generation = Some(2);
    let resumed = step(&mut schedule, &observed(t(301), failed.clone()));
    assert_eq!(condition(&resumed, PAUSED).status, ConditionStatus::False);
    assert!(
        resumed.fire.is_empty(),
        "no burst of the slots passed while paused"
    );
    assert_eq!(minutes(&resumed.status.next_schedule_times)[0], 6);
    let next = step(&mut schedule, &observed(t(360), failed));
    assert_eq!(next.fire, [t(360)], "the old failure does not pause again");
}

#[test]
fn suspend_stops_firing_and_resuming_does_not_burst() {
    let mut schedule = schedule(every_minute());
    step(&mut schedule, &observed(t(0), vec![]));
    schedule.spec.suspend = Some(true);
    schedule.metadata.generation = Some(2);
    let plan = step(&mut schedule, &observed(t(61), vec![]));
    assert!(plan.fire.is_empty());
    assert_eq!(
        condition(&plan, condition_type::READY).reason,
        reason::SUSPENDED
    );
    assert_eq!(plan.requeue_after, None);
    assert!(plan.status.next_schedule_times.is_empty());

    schedule.spec.suspend = Some(false);
    schedule.metadata.generation = Some(3);
    let plan = step(&mut schedule, &observed(t(601), vec![]));
    assert!(plan.fire.is_empty(), "slots 1..=10 passed while suspended");
    assert_eq!(
        plan.status.missed_slots, None,
        "and are not counted as missed"
    );
    let plan = step(&mut schedule, &observed(t(660), vec![]));
    assert_eq!(plan.fire, [t(660)]);
}

#[test]
fn an_invalid_cron_or_time_zone_is_reported_once_and_fires_nothing() {
    let mut bad_cron = schedule(ScheduleSpec {
        cron: "61 * * * *".to_owned(),
        ..ScheduleSpec::default()
    });
    let plan = step(&mut bad_cron, &observed(t(0), vec![]));
    let valid = condition(&plan, condition_type::VALID);
    assert_eq!(valid.status, ConditionStatus::False);
    assert!(
        valid.message.starts_with("spec.cron: "),
        "{}",
        valid.message
    );
    assert_eq!(plan.requeue_after, None);
    assert!(plan.fire.is_empty());
    assert_eq!(plan.events.len(), 1);
    assert!(plan.events[0].warning);
    let again = step(&mut bad_cron, &observed(t(60), vec![]));
    assert!(again.events.is_empty(), "one Warning per transition");

    let mut bad_zone = schedule(ScheduleSpec {
        time_zone: Some("Europe/Atlantis".to_owned()),
        ..every_minute()
    });
    let plan = step(&mut bad_zone, &observed(t(0), vec![]));
    assert!(
        condition(&plan, condition_type::VALID)
            .message
            .starts_with("spec.timeZone: ")
    );

    bad_zone.spec.time_zone = Some("Europe/Berlin".to_owned());
    bad_zone.metadata.generation = Some(2);
    let fixed = step(&mut bad_zone, &observed(t(120), vec![]));
    assert_eq!(
        condition(&fixed, condition_type::VALID).status,
        ConditionStatus::True
    );
    assert!(
        fixed.fire.is_empty(),
        "slots passed while invalid do not fire"
    );
    assert!(fixed.events.iter().any(|e| e.reason == reason::VALID));
}

#[test]
fn a_zero_catch_up_window_names_the_field() {
    let mut schedule = schedule(ScheduleSpec {
        catch_up: catch_up("0s", None),
        ..every_minute()
    });
    let plan = step(&mut schedule, &observed(t(0), vec![]));
    assert!(
        condition(&plan, condition_type::VALID)
            .message
            .starts_with("spec.catchUp.window: ")
    );
}

/// The kstatus conditions present (they are present only while True).
fn progress_of(plan: &SchedulePlan) -> Vec<(&str, &str)> {
    plan.status
        .conditions
        .iter()
        .filter(|c| c.type_ == condition_type::RECONCILING || c.type_ == condition_type::STALLED)
        .inspect(|c| assert_eq!(c.status, ConditionStatus::True, "abnormal-true: {c:?}"))
        .map(|c| (c.type_.as_str(), c.reason.as_str()))
        .collect()
}

#[test]
fn kstatus_invalid_and_paused_schedules_are_stalled_until_the_spec_changes() {
    let mut schedule = schedule(ScheduleSpec {
        pause_on_failure: Some(true),
        ..every_minute()
    });
    let firing = step(&mut schedule, &observed(t(0), vec![]));
    assert_eq!(progress_of(&firing), []);
    assert_eq!(firing.status.observed_generation, Some(1));

    let failed = vec![run(t(0), Some(RunPhase::Failed))];
    let paused = step(&mut schedule, &observed(t(61), failed.clone()));
    assert_eq!(progress_of(&paused), [("Stalled", reason::RUN_FAILED)]);
    let stalled = condition(&paused, condition_type::STALLED);
    assert_eq!(stalled.observed_generation, Some(1));
    assert_eq!(stalled.last_transition_time, t(61));
    let still = step(&mut schedule, &observed(t(300), failed.clone()));
    assert_eq!(
        condition(&still, condition_type::STALLED).last_transition_time,
        t(61),
        "still stalled"
    );

    schedule.spec.cron = "61 * * * *".to_owned();
    schedule.metadata.generation = Some(2);
    let invalid = step(&mut schedule, &observed(t(301), failed.clone()));
    assert_eq!(progress_of(&invalid), [("Stalled", reason::INVALID)]);
    assert_eq!(invalid.status.observed_generation, Some(2));
    assert_eq!(
        condition(&invalid, condition_type::STALLED).observed_generation,
        Some(2)
    );

    schedule.spec.cron = "* * * * *".to_owned();
    schedule.spec.suspend = Some(true);
    schedule.metadata.generation = Some(3);
    let suspended = step(&mut schedule, &observed(t(302), failed.clone()));
    assert_eq!(progress_of(&suspended), [], "suspended is settled");

    schedule.spec.suspend = Some(false);
    schedule.metadata.generation = Some(4);
    let resumed = step(&mut schedule, &observed(t(303), failed));
    assert_eq!(progress_of(&resumed), []);
    assert_eq!(
        condition(&resumed, condition_type::READY).status,
        ConditionStatus::True
    );
}
