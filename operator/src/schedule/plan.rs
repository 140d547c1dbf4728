//! The Schedule controller's decisions: from a Schedule, its runs and the
//! time, compute the slots to fire, the runs to cancel, the status to write,
//! the Events to emit and when to look again. Pure: no client, no `async`,
//! the clock and the moment this operator began leading are values.
//!
//! Where the state lives: `status.lastConsideredTime` (slots up to it are
//! decided), `status.bufferedSlots`, `status.lastScheduleTime`, and the runs
//! themselves, whose names are derived from their slot. A slot whose run
//! exists counts as decided even when the status write that followed its
//! creation was lost, and creating it again answers AlreadyExists.
//!
//! Rules, in order, for each slot after the last one decided whose time
//! (plus its jitter) has come:
//! - past `startingDeadlineSeconds` → missed;
//! - due after this operator began leading and at most
//!   [`DEFAULT_ON_TIME`] (or the deadline) late → on time;
//! - otherwise it was missed while no operator ran: `catchUp` fires the
//!   oldest `maxRuns` of those within its window, the rest are missed;
//! - what is to fire goes through the overlap policy against the active
//!   runs (and the runs planned before it): Skip, BufferOne, BufferAll,
//!   CancelOther (only the newest slot fires, active runs are cancelled),
//!   AllowAll.
//!
//! Suspended, paused or invalid schedules fire nothing and pass their slots
//! without counting them; on resuming, the slots until now are passed too
//! (no burst). A failed run pauses a `pauseOnFailure` schedule until the
//! spec changes (a new generation, which toggling `suspend` also makes).
//!
//! kstatus (Flux): invalid or paused after a failure, the schedule is
//! `Stalled` (only a spec change moves it); otherwise neither `Stalled` nor
//! `Reconciling` is present.

use super::cron::{InvalidField, SlotClock, jitter};
use chrono::{DateTime, TimeDelta, Utc};
use sluice_crds::common::{Progress, condition_type, find_condition, set_condition, set_progress};
use sluice_crds::schedule::OverlapPolicy;
use sluice_crds::{Condition, ConditionStatus, RunPhase, Schedule, ScheduleStatus};

/// Lateness within which a slot due while this operator leads still fires
/// when `startingDeadlineSeconds` is not set.
pub const DEFAULT_ON_TIME: TimeDelta = TimeDelta::seconds(60);
/// Slots listed in `status.nextScheduleTimes`.
pub const NEXT_TIMES: usize = 5;
/// Most slots BufferAll keeps waiting; later ones are missed.
pub const MAX_BUFFERED: usize = 100;
/// Most slots looked at in one plan; a longer outage is counted up to here.
pub const MAX_SCAN: usize = 100_000;
/// Most run names kept in `status.active`.
const MAX_ACTIVE: usize = 1000;

/// Condition type of a schedule stopped by a failed run.
pub const PAUSED: &str = "Paused";

/// Reasons used in conditions and Events, searchable by users.
pub mod reason {
    /// Cron and time zone parse.
    pub const VALID: &str = "Valid";
    /// Cron or time zone does not parse.
    pub const INVALID: &str = "InvalidSchedule";
    /// Slots fire.
    pub const SCHEDULING: &str = "Scheduling";
    /// `spec.suspend` is true.
    pub const SUSPENDED: &str = "Suspended";
    /// A run failed under `pauseOnFailure`.
    pub const RUN_FAILED: &str = "RunFailed";
    /// Not paused.
    pub const NOT_PAUSED: &str = "NotPaused";
    /// Unpaused by a spec change.
    pub const RESUMED: &str = "Resumed";
    /// Slots did not fire.
    pub const MISSED: &str = "MissedSlots";
    /// Active runs were cancelled by CancelOther.
    pub const CANCELLED_OTHER: &str = "CancelledOther";
}

/// A run of this schedule, as the plan needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedRun {
    /// Object name.
    pub name: String,
    /// `spec.trigger.scheduledTime`: the nominal slot it fired for.
    pub scheduled_time: Option<DateTime<Utc>>,
    /// `status.phase`; None before the run controller saw it.
    pub phase: Option<RunPhase>,
    /// `spec.cancel` is set.
    pub cancel_requested: bool,
    /// `status.completionTime`.
    pub completion_time: Option<DateTime<Utc>>,
}

impl ObservedRun {
    fn is_active(&self) -> bool {
        !self.phase.is_some_and(RunPhase::is_terminal)
    }
}

/// What the controller observed besides the Schedule itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// Runs created by this schedule.
    pub runs: Vec<ObservedRun>,
    /// The time of the plan.
    pub now: DateTime<Utc>,
    /// When this operator began running controllers: slots due before it
    /// were missed while no operator ran.
    pub leading_since: DateTime<Utc>,
}

/// An Event to emit about the Schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Message for people.
    pub message: String,
}

/// The controller's plan for one Schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulePlan {
    /// Nominal times of the slots to fire now, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Names of active runs to cancel (`spec.cancel: true`).
    pub cancel: Vec<String>,
    /// The status to write.
    pub status: ScheduleStatus,
    /// Whether it differs from the current status (skip the write if not).
    pub status_changed: bool,
    /// Events to emit.
    pub events: Vec<PlannedEvent>,
    /// When to look again without a change; None waits for one.
    pub requeue_after: Option<std::time::Duration>,
}

/// Why slots did not fire, for the Event.
#[derive(Default)]
struct Missed {
    deadline: u64,
    downtime: u64,
    overlap: u64,
}

impl Missed {
    fn total(&self) -> u64 {
        self.deadline + self.downtime + self.overlap
    }

    fn message(&self) -> String {
        let mut parts = vec![];
        if self.downtime > 0 {
            parts.push(format!(
                "{} while no operator ran (set spec.catchUp to fire them late)",
                self.downtime
            ));
        }
        if self.deadline > 0 {
            parts.push(format!(
                "{} past spec.startingDeadlineSeconds",
                self.deadline
            ));
        }
        if self.overlap > 0 {
            parts.push(format!(
                "{} skipped by spec.overlapPolicy while runs were active",
                self.overlap
            ));
        }
        format!("slots did not fire: {}", parts.join(", "))
    }
}

/// When `slot` of `schedule` is due: the slot plus the schedule's jitter,
/// derived from its uid and the slot so that restarts do not move it.
pub fn due_time(schedule: &Schedule, slot: DateTime<Utc>) -> DateTime<Utc> {
    let uid = schedule.metadata.uid.as_deref().unwrap_or_default();
    let max_jitter = schedule
        .spec
        .jitter
        .as_ref()
        .map(|j| j.as_std())
        .unwrap_or_default();
    slot + jitter(uid, slot, max_jitter)
}

/// Plans one reconcile of `schedule`.
pub fn plan_schedule(schedule: &Schedule, observed: &Observed) -> SchedulePlan {
    let spec = &schedule.spec;
    let now = observed.now;
    let generation = schedule.metadata.generation;
    let current = schedule.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let mut events = vec![];
    status.observed_generation = generation;

    let mut runs: Vec<&ObservedRun> = observed.runs.iter().collect();
    runs.sort_by_key(|run| (run.scheduled_time, run.name.clone()));
    status.active = runs
        .iter()
        .filter(|run| run.is_active())
        .take(MAX_ACTIVE)
        .map(|run| run.name.clone())
        .collect();
    status.last_successful_time = runs
        .iter()
        .filter(|run| run.phase == Some(RunPhase::Succeeded))
        .filter_map(|run| run.completion_time)
        .chain(current.last_successful_time)
        .max();
    // A run whose status write was lost still marks its slot as fired.
    status.last_schedule_time = runs
        .iter()
        .filter_map(|run| run.scheduled_time)
        .chain(current.last_schedule_time)
        .max();

    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        Condition::new(
            type_,
            ConditionStatus::from_bool(ok),
            reason,
            message,
            generation,
            now,
        )
    };
    let was_ready = find_condition(&current.conditions, condition_type::READY).map(|c| c.status);

    let clock = SlotClock::new(
        &spec.cron,
        spec.time_zone.as_deref(),
        spec.daylight_saving.as_ref(),
    )
    .and_then(|clock| validate_catch_up(schedule).map(|()| clock));
    let clock = match clock {
        Ok(clock) => clock,
        Err(invalid) => {
            let message = invalid.to_string();
            let was = find_condition(&current.conditions, condition_type::VALID);
            if was.is_none_or(|c| c.status != ConditionStatus::False || c.message != message) {
                events.push(PlannedEvent {
                    warning: true,
                    reason: reason::INVALID,
                    message: message.clone(),
                });
            }
            set_condition(
                &mut status.conditions,
                condition(condition_type::VALID, false, reason::INVALID, message),
            );
            set_condition(
                &mut status.conditions,
                condition(
                    condition_type::READY,
                    false,
                    reason::INVALID,
                    "the schedule is invalid: see the Valid condition".to_owned(),
                ),
            );
            status.next_schedule_times.clear();
            return finish(current, status, events, vec![], vec![], None, now);
        }
    };
    if find_condition(&current.conditions, condition_type::VALID)
        .is_some_and(|c| c.status == ConditionStatus::False)
    {
        events.push(PlannedEvent {
            warning: false,
            reason: reason::VALID,
            message: "the schedule is valid again".to_owned(),
        });
    }
    set_condition(
        &mut status.conditions,
        condition(
            condition_type::VALID,
            true,
            reason::VALID,
            "cron and time zone are valid".to_owned(),
        ),
    );

    // Pause: a failed run after the last unpause stops firing until the
    // spec changes.
    let paused_condition = find_condition(&current.conditions, PAUSED).cloned();
    let paused = match &paused_condition {
        Some(c) if c.status == ConditionStatus::True => {
            if c.observed_generation == generation {
                true
            } else {
                set_condition(
                    &mut status.conditions,
                    condition(
                        PAUSED,
                        false,
                        reason::RESUMED,
                        "the spec changed: firing again".to_owned(),
                    ),
                );
                events.push(PlannedEvent {
                    warning: false,
                    reason: reason::RESUMED,
                    message: "the spec changed after a failed run: firing again".to_owned(),
                });
                false
            }
        }
        _ => {
            let since = paused_condition.as_ref().map(|c| c.last_transition_time);
            let failed = spec
                .pause_on_failure
                .unwrap_or(false)
                .then(|| {
                    runs.iter().rev().find(|run| {
                        run.phase == Some(RunPhase::Failed)
                            && since.is_none_or(|since| {
                                run.completion_time.or(run.scheduled_time) >= Some(since)
                            })
                    })
                })
                .flatten();
            match failed {
                Some(run) => {
                    let message = format!(
                        "run {} failed and spec.pauseOnFailure is true: no slot fires until the spec changes (e.g. toggle spec.suspend)",
                        run.name
                    );
                    events.push(PlannedEvent {
                        warning: true,
                        reason: reason::RUN_FAILED,
                        message: message.clone(),
                    });
                    set_condition(
                        &mut status.conditions,
                        condition(PAUSED, true, reason::RUN_FAILED, message),
                    );
                    true
                }
                None => {
                    let reason = paused_condition.as_ref().map_or(reason::NOT_PAUSED, |c| {
                        if c.reason == reason::RESUMED {
                            reason::RESUMED
                        } else {
                            reason::NOT_PAUSED
                        }
                    });
                    set_condition(
                        &mut status.conditions,
                        condition(PAUSED, false, reason, "slots fire".to_owned()),
                    );
                    false
                }
            }
        }
    };
    let suspended = spec.suspend.unwrap_or(false);

    let considered = current
        .last_considered_time
        .into_iter()
        .chain(status.last_schedule_time)
        .chain(current.buffered_slots.last().copied())
        .max()
        .or_else(|| creation_time(schedule))
        .unwrap_or(now);
    let max_jitter = spec.jitter.as_ref().map(|j| j.as_std()).unwrap_or_default();
    let due = |slot: DateTime<Utc>| due_time(schedule, slot);

    if suspended || paused {
        let (reason, message) = if suspended {
            (
                reason::SUSPENDED,
                "spec.suspend is true: no slot fires; resuming does not fire the slots passed meanwhile",
            )
        } else {
            (
                reason::RUN_FAILED,
                "paused after a failed run: see the Paused condition",
            )
        };
        set_condition(
            &mut status.conditions,
            condition(condition_type::READY, false, reason, message.to_owned()),
        );
        let missed = Missed {
            overlap: status.buffered_slots.len() as u64,
            ..Missed::default()
        };
        status.buffered_slots.clear();
        status.last_considered_time = Some(considered.max(now));
        status.next_schedule_times.clear();
        add_missed(&mut status, &missed, &mut events);
        return finish(current, status, events, vec![], vec![], None, now);
    }
    set_condition(
        &mut status.conditions,
        condition(
            condition_type::READY,
            true,
            reason::SCHEDULING,
            "slots fire".to_owned(),
        ),
    );
    // Back from suspended, paused or invalid: the slots passed meanwhile
    // are not fired (no burst).
    let considered = if was_ready == Some(ConditionStatus::False) {
        considered.max(now)
    } else {
        considered
    };

    let policy = spec.overlap_policy.unwrap_or_default();
    let deadline = spec
        .starting_deadline_seconds
        .map(|seconds| TimeDelta::seconds(seconds.max(0)));
    let on_time_limit = deadline.unwrap_or(DEFAULT_ON_TIME);
    let catch_up = spec.catch_up.as_ref().map(|catch_up| {
        (
            TimeDelta::from_std(catch_up.window.as_std()).unwrap_or(TimeDelta::MAX),
            catch_up.max_runs.unwrap_or(1) as usize,
        )
    });

    let mut missed = Missed::default();
    let mut active = status.active.len();
    let mut fire: Vec<DateTime<Utc>> = vec![];
    let mut buffered = std::mem::take(&mut status.buffered_slots);

    // Buffered slots start, oldest first, once no run is active.
    if policy != OverlapPolicy::AllowAll {
        while active == 0 && !buffered.is_empty() {
            let slot = buffered.remove(0);
            if deadline.is_some_and(|deadline| now - due(slot) > deadline) {
                missed.deadline += 1;
            } else {
                fire.push(slot);
                active += 1;
            }
        }
    } else {
        active = 0;
        fire.append(&mut buffered);
    }

    // Slots so far back that nothing could fire them are only counted.
    let lookback = catch_up
        .map_or(on_time_limit, |(window, _)| window.max(on_time_limit))
        .max(deadline.unwrap_or(TimeDelta::zero()));
    let horizon = lookback
        .checked_add(&TimeDelta::from_std(max_jitter).unwrap_or_default())
        .and_then(|lookback| now.checked_sub_signed(lookback))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut cursor = considered;
    let mut scanned = 0;
    let mut slots = clock.slots_after(considered).peekable();
    while let Some(slot) = slots.next_if(|slot| *slot <= horizon) {
        scanned += 1;
        if deadline.is_some() {
            missed.deadline += 1;
        } else {
            missed.downtime += 1;
        }
        cursor = slot;
        if scanned >= MAX_SCAN {
            cursor = horizon;
            slots = clock.slots_after(horizon).peekable();
            break;
        }
    }

    let mut arrivals: Vec<DateTime<Utc>> = vec![];
    let mut caught_up = 0;
    while let Some(slot) = slots.next_if(|slot| due(*slot) <= now) {
        scanned += 1;
        cursor = slot;
        let late = now - due(slot);
        if deadline.is_some_and(|deadline| late > deadline) {
            missed.deadline += 1;
        } else if due(slot) >= observed.leading_since && late <= on_time_limit {
            arrivals.push(slot);
        } else if let Some((window, max_runs)) = catch_up
            && now - slot <= window
            && caught_up < max_runs
        {
            caught_up += 1;
            arrivals.push(slot);
        } else {
            missed.downtime += 1;
        }
        if scanned >= 2 * MAX_SCAN {
            break;
        }
    }

    let mut cancel = vec![];
    if policy == OverlapPolicy::CancelOther {
        if let Some(newest) = arrivals.pop() {
            missed.overlap += arrivals.len() as u64 + fire.len() as u64;
            fire = vec![newest];
            cancel = runs
                .iter()
                .filter(|run| run.is_active() && !run.cancel_requested)
                .map(|run| run.name.clone())
                .collect();
            if !cancel.is_empty() {
                events.push(PlannedEvent {
                    warning: false,
                    reason: reason::CANCELLED_OTHER,
                    message: format!(
                        "cancelled {} active run(s) for the slot at {} (overlapPolicy CancelOther): {}",
                        cancel.len(),
                        newest.to_rfc3339(),
                        cancel.join(", ")
                    ),
                });
            }
        }
    } else {
        for slot in arrivals {
            match policy {
                OverlapPolicy::AllowAll => fire.push(slot),
                _ if active == 0 => {
                    fire.push(slot);
                    active += 1;
                }
                OverlapPolicy::BufferOne if buffered.is_empty() => buffered.push(slot),
                OverlapPolicy::BufferAll if buffered.len() < MAX_BUFFERED => buffered.push(slot),
                _ => missed.overlap += 1,
            }
        }
    }

    let name = schedule.metadata.name.as_deref().unwrap_or_default();
    for slot in &fire {
        let run_name = crate::names::scheduled_run_name(name, *slot);
        if !status.active.contains(&run_name) && status.active.len() < MAX_ACTIVE {
            status.active.push(run_name);
        }
    }
    status.buffered_slots = buffered;
    status.last_considered_time = Some(cursor);
    if let Some(newest) = fire.iter().max() {
        status.last_schedule_time = status.last_schedule_time.max(Some(*newest));
    }
    add_missed(&mut status, &missed, &mut events);
    status.next_schedule_times = clock.slots_after(cursor).take(NEXT_TIMES).collect();
    let requeue_after = status.next_schedule_times.first().map(|next| {
        (due(*next) - now)
            .to_std()
            .unwrap_or(std::time::Duration::ZERO)
    });
    finish(current, status, events, fire, cancel, requeue_after, now)
}

fn finish(
    current: ScheduleStatus,
    status: ScheduleStatus,
    events: Vec<PlannedEvent>,
    fire: Vec<DateTime<Utc>>,
    cancel: Vec<String>,
    requeue_after: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> SchedulePlan {
    let mut status = status;
    let progress = progress(&status.conditions);
    set_progress(
        &mut status.conditions,
        &progress,
        status.observed_generation,
        now,
    );
    SchedulePlan {
        status_changed: status != current,
        status,
        events,
        fire,
        cancel,
        requeue_after,
    }
}

/// kstatus: an invalid cron, time zone or catch-up, and a pause after a
/// failed run, both wait for a spec change (Stalled); firing or suspended,
/// the schedule is settled.
fn progress(conditions: &[Condition]) -> Progress {
    let Some(ready) = find_condition(conditions, condition_type::READY) else {
        return Progress::Settled;
    };
    match ready.reason.as_str() {
        reason::INVALID => Progress::stalled(
            reason::INVALID,
            "the schedule is invalid: fix the field named in the Valid condition",
        ),
        reason::RUN_FAILED => Progress::stalled(
            reason::RUN_FAILED,
            "paused after a failed run (see the Paused condition): change the spec to fire again",
        ),
        _ => Progress::Settled,
    }
}

fn add_missed(status: &mut ScheduleStatus, missed: &Missed, events: &mut Vec<PlannedEvent>) {
    let total = missed.total();
    if total == 0 {
        return;
    }
    let total = i64::try_from(total).unwrap_or(i64::MAX);
    status.missed_slots = Some(status.missed_slots.unwrap_or(0).saturating_add(total));
    events.push(PlannedEvent {
        warning: true,
        reason: reason::MISSED,
        message: missed.message(),
    });
}

pub(crate) fn validate_catch_up(schedule: &Schedule) -> Result<(), InvalidField> {
    match &schedule.spec.catch_up {
        Some(catch_up) if catch_up.window.as_std().is_zero() => Err(InvalidField {
            field: "spec.catchUp.window",
            message: "the window is zero, so no missed slot could fire: set a duration such as 1h, or remove spec.catchUp".to_owned(),
        }),
        Some(catch_up) if catch_up.max_runs == Some(0) => Err(InvalidField {
            field: "spec.catchUp.maxRuns",
            message: "maxRuns is 0: set at least 1, or remove spec.catchUp".to_owned(),
        }),
        _ => Ok(()),
    }
}

fn creation_time(schedule: &Schedule) -> Option<DateTime<Utc>> {
    let time = schedule.metadata.creation_timestamp.as_ref()?;
    DateTime::from_timestamp(time.0.as_second(), time.0.subsec_nanosecond() as u32)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
