//! The quota decision for one waiting run (pure: the namespace's plan, its
//! runs, what PostgreSQL holds of runs no longer in the cluster, and the
//! clock → [`QuotaDecision`]).
//!
//! Counting: a run counts from its start (`status.startTime`, set when
//! admission starts it) against the runs-per-day and runs-per-month limits
//! of the UTC day and month it started in; its runner time (start to end,
//! or to now while it runs) counts against node-seconds per month for the
//! part inside the month. Runs the cluster no longer holds (deleted by
//! history limits, after the mirror stored them) come in as [`Departed`].
//! Refused runs never started, so they never count.
//!
//! The runs come from the run controller's watch cache, which may be a
//! moment behind what this leader wrote: the runs it admitted that the
//! cache does not show as started yet ([`Admitted`]) count as running
//! since their admission ([`with_admitted`]), so a burst cannot slip past a
//! limit while the watch catches up. [`decide`] is the whole decision.
//!
//! Order: the refusing limits first (input size, runs per day, per month,
//! node-seconds), then the concurrent-runs limit, which holds a run in
//! Queued; waiting runs start in the workflows' start order (priority, then
//! age, then name), the same order every replica computes.

use crate::run::admission::RunView;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use sluice_crds::{PlanLimits, RunPhase};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The runs of one namespace this leader admitted (run name → when) that
/// the watch cache did not show as started when last looked at.
pub type Admitted = BTreeMap<String, DateTime<Utc>>;

/// What PostgreSQL holds of the namespace's runs the cluster no longer
/// has: counted on top of the cluster's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Departed {
    /// Started today (UTC).
    pub runs_today: u64,
    /// Started this month (UTC).
    pub runs_this_month: u64,
    /// Runner seconds within this month.
    pub node_seconds_this_month: u64,
}

/// A namespace's use of its plan at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Running now (the candidate aside).
    pub active: usize,
    pub runs_today: u64,
    pub runs_this_month: u64,
    pub node_seconds_this_month: u64,
}

/// The plan a namespace is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribed {
    /// The Plan's name.
    pub plan: String,
    pub limits: PlanLimits,
}

/// What happens to the waiting run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaDecision {
    /// No limit stands in the way.
    Admit,
    /// Wait in Queued: the concurrent-runs limit is reached.
    Hold {
        /// Place among the namespace's waiting runs; 1 starts next.
        position: usize,
        message: String,
    },
    /// Fail the run: a refusing limit is reached.
    Refuse {
        /// The limit's field, e.g. `spec.limits.runsPerDay`.
        limit: &'static str,
        message: String,
    },
}

/// Midnight UTC starting the day of `now`.
pub fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.from_utc_datetime(&now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// The first instant of the UTC month of `now`.
pub fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or(now.date_naive());
    Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// The first instant of the next UTC month.
pub fn next_month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = match now.month() {
        12 => (now.year() + 1, 1),
        month => (now.year(), month + 1),
    };
    let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(now.date_naive());
    Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// Runner seconds of a run inside `[from, now]`.
fn seconds_within(
    started: DateTime<Utc>,
    ended: Option<DateTime<Utc>>,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> u64 {
    let begin = started.max(from);
    let end = ended.unwrap_or(now).min(now);
    (end - begin).num_seconds().max(0) as u64
}

/// The namespace's use from its runs in the cluster (`runs`, which may hold
/// the candidate: it is left out) and the departed ones.
pub fn build_usage(
    runs: &[RunView],
    candidate: &str,
    departed: Departed,
    now: DateTime<Utc>,
) -> Usage {
    let today = day_start(now);
    let month = month_start(now);
    let mut usage = Usage {
        active: 0,
        runs_today: departed.runs_today,
        runs_this_month: departed.runs_this_month,
        node_seconds_this_month: departed.node_seconds_this_month,
    };
    for run in runs.iter().filter(|run| run.name != candidate) {
        if run.is_active() {
            usage.active += 1;
        }
        let Some(started) = run.started else {
            continue;
        };
        if started >= today {
            usage.runs_today += 1;
        }
        if started >= month {
            usage.runs_this_month += 1;
        }
        if run.ended.is_none_or(|ended| ended > month) {
            usage.node_seconds_this_month += seconds_within(started, run.ended, month, now);
        }
    }
    usage
}

fn at(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Decides whether `candidate` may start under `subscribed`'s limits.
/// `input_bytes` is the size of its input's JSON; `runs` are the
/// namespace's runs (for the order of waiting runs).
pub fn plan_quota(
    subscribed: &Subscribed,
    usage: &Usage,
    candidate: &RunView,
    runs: &[RunView],
    input_bytes: u64,
    now: DateTime<Utc>,
) -> QuotaDecision {
    let plan = &subscribed.plan;
    let limits = &subscribed.limits;
    if let Some(refusal) = refuse_input(subscribed, input_bytes) {
        return refusal;
    }
    let tomorrow = day_start(now) + Duration::days(1);
    if let Some(limit) = limits.runs_per_day
        && usage.runs_today >= u64::from(limit)
    {
        return QuotaDecision::Refuse {
            limit: "spec.limits.runsPerDay",
            message: format!(
                "plan {plan:?} allows {limit} runs per day (spec.limits.runsPerDay) and this namespace has started {} today (UTC); the limit resets at {}",
                usage.runs_today,
                at(tomorrow)
            ),
        };
    }
    if let Some(limit) = limits.runs_per_month
        && usage.runs_this_month >= u64::from(limit)
    {
        return QuotaDecision::Refuse {
            limit: "spec.limits.runsPerMonth",
            message: format!(
                "plan {plan:?} allows {limit} runs per month (spec.limits.runsPerMonth) and this namespace has started {} this month (UTC); the limit resets at {}",
                usage.runs_this_month,
                at(next_month_start(now))
            ),
        };
    }
    if let Some(limit) = limits.node_seconds_per_month
        && usage.node_seconds_this_month >= limit
    {
        return QuotaDecision::Refuse {
            limit: "spec.limits.nodeSecondsPerMonth",
            message: format!(
                "plan {plan:?} allows {limit} node-seconds per month (spec.limits.nodeSecondsPerMonth) and this namespace has used {} this month (UTC); the limit resets at {}",
                usage.node_seconds_this_month,
                at(next_month_start(now))
            ),
        };
    }
    let Some(limit) = limits.concurrent_runs else {
        return QuotaDecision::Admit;
    };
    let limit = limit.max(1) as usize;
    let free = limit.saturating_sub(usage.active);
    let ahead = runs
        .iter()
        .filter(|run| run.name != candidate.name && run.is_waiting())
        .filter(|run| run.start_order(candidate) == Ordering::Less)
        .count();
    if ahead < free {
        return QuotaDecision::Admit;
    }
    let position = ahead - free + 1;
    QuotaDecision::Hold {
        position,
        message: format!(
            "plan {plan:?} allows {limit} concurrent runs per namespace (spec.limits.concurrentRuns) and {} are running: waiting at position {position}; it starts when a run ends",
            usage.active
        ),
    }
}

/// The namespace's runs as admission counts them: the cache's `cached`
/// runs, with each run of `admitted` that the cache does not show as
/// started counted as running since its admission. Also returns what stays
/// in the record: a run leaves it once the cache shows it started, finished
/// or gone (a run admitted this moment is always in the cache: the watch
/// delivered it before its reconcile).
pub fn with_admitted(cached: &[RunView], admitted: &Admitted) -> (Vec<RunView>, Admitted) {
    let mut kept = Admitted::new();
    let runs = cached
        .iter()
        .map(|run| match admitted.get(&run.name) {
            Some(at) if run.started.is_none() && !run.phase.is_some_and(RunPhase::is_terminal) => {
                kept.insert(run.name.clone(), *at);
                RunView {
                    phase: Some(RunPhase::Running),
                    started: Some(*at),
                    ended: None,
                    ..run.clone()
                }
            }
            _ => run.clone(),
        })
        .collect();
    (runs, kept)
}

/// The quota decision for `candidate` from the cache's runs of its
/// namespace, the runs this leader admitted that the cache does not show
/// started, the departed runs and the clock; with the record to keep.
pub fn decide(
    subscribed: &Subscribed,
    cached: &[RunView],
    admitted: &Admitted,
    departed: Departed,
    candidate: &RunView,
    input_bytes: u64,
    now: DateTime<Utc>,
) -> (QuotaDecision, Admitted) {
    let (runs, kept) = with_admitted(cached, admitted);
    let usage = build_usage(&runs, &candidate.name, departed, now);
    let decision = plan_quota(subscribed, &usage, candidate, &runs, input_bytes, now);
    (decision, kept)
}

/// The refusal of an input larger than the plan allows: needs no count, so
/// the admission webhook says it too.
pub fn refuse_input(subscribed: &Subscribed, input_bytes: u64) -> Option<QuotaDecision> {
    let limit = subscribed.limits.max_input_bytes?;
    (input_bytes > limit).then(|| QuotaDecision::Refuse {
        limit: "spec.limits.maxInputBytes",
        message: format!(
            "spec.input is {input_bytes} bytes of JSON and plan {:?} allows at most {limit} (spec.limits.maxInputBytes): pass less input (e.g. a reference to the data) or move the namespace to a larger plan",
            subscribed.plan
        ),
    })
}

/// The Job deadline a run gets: the workflow's own (if any), cut to the
/// plan's longest run duration.
pub fn capped_deadline(workflow_seconds: Option<i64>, limits: Option<&PlanLimits>) -> Option<i64> {
    let plan_seconds = limits
        .and_then(|limits| limits.max_run_duration.as_ref())
        .map(|duration| duration.as_std().as_secs().max(1) as i64);
    match (workflow_seconds, plan_seconds) {
        (Some(own), Some(cap)) => Some(own.min(cap)),
        (own, cap) => own.or(cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 15, 0, 0).unwrap()
    }

    fn run(name: &str, phase: Option<RunPhase>, started_hours_ago: Option<i64>) -> RunView {
        RunView {
            name: name.to_owned(),
            phase,
            priority: 0,
            created: now() - Duration::hours(started_hours_ago.unwrap_or(0)) - Duration::minutes(1),
            cancelling: false,
            started: started_hours_ago.map(|hours| now() - Duration::hours(hours)),
            ended: None,
        }
    }

    fn finished(name: &str, started_hours_ago: i64, minutes: i64) -> RunView {
        let mut view = run(name, Some(RunPhase::Succeeded), Some(started_hours_ago));
        view.ended = view
            .started
            .map(|started| started + Duration::minutes(minutes));
        view
    }

    fn on(limits: PlanLimits) -> Subscribed {
        Subscribed {
            plan: "small".into(),
            limits,
        }
    }

    #[test]
    fn periods_are_utc_days_and_months() {
        assert_eq!(
            day_start(now()),
            Utc.with_ymd_and_hms(2026, 12, 7, 0, 0, 0).unwrap()
        );
        assert_eq!(
            month_start(now()),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            next_month_start(now()),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn usage_counts_starts_by_period_and_runner_time_inside_the_month() {
        let runs = [
            finished("today", 2, 10),
            finished("this-month", 24 * 3, 30),
            // Started on November 30 at 23:00: only its December part counts.
            finished("across-months", 24 * 6 + 16, 24 * 60),
            run("running", Some(RunPhase::Running), Some(1)),
            run("waiting", Some(RunPhase::Queued), None),
            run("candidate", None, None),
        ];
        let departed = Departed {
            runs_today: 1,
            runs_this_month: 4,
            node_seconds_this_month: 100,
        };
        let usage = build_usage(&runs, "candidate", departed, now());
        assert_eq!(usage.active, 1);
        assert_eq!(usage.runs_today, 1 + 2, "today and running, plus departed");
        assert_eq!(usage.runs_this_month, 4 + 3);
        // 10 min + 30 min + (Nov 30 23:00 → Dec 1 23:00: 23 h in December) + 1 h running.
        assert_eq!(
            usage.node_seconds_this_month,
            100 + 600 + 1800 + 23 * 3600 + 3600
        );
    }

    #[test]
    fn a_daily_limit_refuses_with_the_use_and_the_reset_time() {
        let plan = on(PlanLimits {
            runs_per_day: Some(2),
            ..PlanLimits::default()
        });
        let candidate = run("c", None, None);
        let usage = Usage {
            runs_today: 2,
            ..Usage::default()
        };
        match plan_quota(&plan, &usage, &candidate, &[], 10, now()) {
            QuotaDecision::Refuse { limit, message } => {
                assert_eq!(limit, "spec.limits.runsPerDay");
                assert_eq!(
                    message,
                    "plan \"small\" allows 2 runs per day (spec.limits.runsPerDay) and this namespace has started 2 today (UTC); the limit resets at 2026-12-08T00:00:00Z"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let under = Usage {
            runs_today: 1,
            ..Usage::default()
        };
        assert_eq!(
            plan_quota(&plan, &under, &candidate, &[], 10, now()),
            QuotaDecision::Admit
        );
    }

    #[test]
    fn monthly_and_node_second_limits_reset_next_month() {
        let candidate = run("c", None, None);
        let monthly = on(PlanLimits {
            runs_per_month: Some(10),
            node_seconds_per_month: Some(3600),
            ..PlanLimits::default()
        });
        let busy = Usage {
            runs_this_month: 10,
            ..Usage::default()
        };
        let QuotaDecision::Refuse { limit, message } =
            plan_quota(&monthly, &busy, &candidate, &[], 0, now())
        else {
            panic!("expected a refusal");
        };
        assert_eq!(limit, "spec.limits.runsPerMonth");
        assert!(
            message.ends_with("resets at 2027-01-01T00:00:00Z"),
            "{message}"
        );
        let spent = Usage {
            runs_this_month: 3,
            node_seconds_this_month: 3600,
            ..Usage::default()
        };
        let QuotaDecision::Refuse { limit, message } =
            plan_quota(&monthly, &spent, &candidate, &[], 0, now())
        else {
            panic!("expected a refusal");
        };
        assert_eq!(limit, "spec.limits.nodeSecondsPerMonth");
        assert!(message.contains("has used 3600 this month"), "{message}");
    }

    #[test]
    fn the_concurrent_limit_holds_runs_in_start_order() {
        let plan = on(PlanLimits {
            concurrent_runs: Some(2),
            ..PlanLimits::default()
        });
        let mut runs = vec![
            run("a", Some(RunPhase::Running), Some(1)),
            run("b", Some(RunPhase::Running), Some(1)),
        ];
        for (index, name) in ["w1", "w2", "w3"].iter().enumerate() {
            let mut waiting = run(name, Some(RunPhase::Queued), None);
            waiting.created = now() + Duration::seconds(index as i64);
            runs.push(waiting);
        }
        let usage = build_usage(&runs, "w2", Departed::default(), now());
        match plan_quota(&plan, &usage, &runs[3], &runs, 0, now()) {
            QuotaDecision::Hold { position, message } => {
                assert_eq!(position, 2);
                assert_eq!(
                    message,
                    "plan \"small\" allows 2 concurrent runs per namespace (spec.limits.concurrentRuns) and 2 are running: waiting at position 2; it starts when a run ends"
                );
            }
            other => panic!("expected a hold, got {other:?}"),
        }
        // One ends: the oldest waiting run starts, the next keeps waiting.
        runs[0].phase = Some(RunPhase::Succeeded);
        let usage = build_usage(&runs, "w1", Departed::default(), now());
        assert_eq!(
            plan_quota(&plan, &usage, &runs[2], &runs, 0, now()),
            QuotaDecision::Admit
        );
        let usage = build_usage(&runs, "w2", Departed::default(), now());
        assert!(matches!(
            plan_quota(&plan, &usage, &runs[3], &runs, 0, now()),
            QuotaDecision::Hold { position: 1, .. }
        ));
    }

    #[test]
    fn a_large_input_is_refused_before_anything_is_counted() {
        let plan = on(PlanLimits {
            max_input_bytes: Some(100),
            concurrent_runs: Some(1),
            ..PlanLimits::default()
        });
        let candidate = run("c", None, None);
        let QuotaDecision::Refuse { limit, message } =
            plan_quota(&plan, &Usage::default(), &candidate, &[], 101, now())
        else {
            panic!("expected a refusal");
        };
        assert_eq!(limit, "spec.limits.maxInputBytes");
        assert!(message.starts_with("spec.input is 101 bytes"), "{message}");
        assert_eq!(refuse_input(&plan, 100), None);
    }

    #[test]
    fn without_limits_every_run_is_admitted() {
        let runs: Vec<RunView> = (0..50)
            .map(|i| run(&format!("r{i}"), Some(RunPhase::Running), Some(1)))
            .collect();
        let candidate = run("c", None, None);
        let usage = build_usage(&runs, "c", Departed::default(), now());
        assert_eq!(
            plan_quota(
                &on(PlanLimits::default()),
                &usage,
                &candidate,
                &runs,
                1 << 30,
                now()
            ),
            QuotaDecision::Admit
        );
    }

    #[test]
    fn the_deadline_is_cut_to_the_plans_longest_run() {
        let limits = PlanLimits {
            max_run_duration: Some(sluice_crds::Duration::parse("30m").unwrap()),
            ..PlanLimits::default()
        };
        assert_eq!(capped_deadline(Some(3600), Some(&limits)), Some(1800));
        assert_eq!(capped_deadline(Some(60), Some(&limits)), Some(60));
        assert_eq!(capped_deadline(None, Some(&limits)), Some(1800));
        assert_eq!(capped_deadline(Some(60), None), Some(60));
        assert_eq!(capped_deadline(None, Some(&PlanLimits::default())), None);
    }

    #[test]
    fn runs_admitted_but_not_yet_seen_started_count_until_the_cache_shows_them() {
        let limits = PlanLimits {
            concurrent_runs: Some(2),
            runs_per_day: Some(4),
            ..PlanLimits::default()
        };
        let admitted_at = now() - Duration::seconds(1);
        // The cache still shows a and b waiting (created after c, so behind
        // it in line): this leader started them.
        let mut a = run("a", Some(RunPhase::Queued), None);
        let mut b = run("b", None, None);
        a.created = now();
        b.created = now();
        let cached = [
            a,
            b,
            run("c", Some(RunPhase::Queued), None),
            run("done", Some(RunPhase::Succeeded), Some(1)),
        ];
        let admitted =
            Admitted::from([("a".to_owned(), admitted_at), ("b".to_owned(), admitted_at)]);
        let candidate = run("c", Some(RunPhase::Queued), None);
        let (decision, kept) = decide(
            &on(limits.clone()),
            &cached,
            &admitted,
            Departed::default(),
            &candidate,
            0,
            now(),
        );
        assert!(
            matches!(decision, QuotaDecision::Hold { position: 1, .. }),
            "two running by the record: {decision:?}"
        );
        assert_eq!(kept, admitted, "the cache shows neither started");
        // Without the record the cache alone would let c start.
        let (alone, _) = decide(
            &on(limits.clone()),
            &cached,
            &Admitted::new(),
            Departed::default(),
            &candidate,
            0,
            now(),
        );
        assert_eq!(alone, QuotaDecision::Admit);

        // The cache catches up: a started, b finished without a start
        // (cancelled), and a run admitted earlier is gone.
        let mut seen_a = run("a", Some(RunPhase::Running), Some(0));
        seen_a.started = Some(admitted_at);
        let cached = [
            seen_a,
            run("b", Some(RunPhase::Cancelled), None),
            run("c", Some(RunPhase::Queued), None),
            run("done", Some(RunPhase::Succeeded), Some(1)),
        ];
        let mut admitted = admitted;
        admitted.insert("gone".to_owned(), admitted_at);
        let (decision, kept) = decide(
            &on(limits.clone()),
            &cached,
            &admitted,
            Departed::default(),
            &candidate,
            0,
            now(),
        );
        assert_eq!(decision, QuotaDecision::Admit, "one running of two");
        assert!(kept.is_empty(), "nothing left to cover: {kept:?}");

        // Admitted runs count as started today against the daily limit.
        let cached = [
            run("x", Some(RunPhase::Queued), None),
            run("y", Some(RunPhase::Queued), None),
            run("c", Some(RunPhase::Queued), None),
        ];
        let admitted =
            Admitted::from([("x".to_owned(), admitted_at), ("y".to_owned(), admitted_at)]);
        let departed = Departed {
            runs_today: 2,
            runs_this_month: 2,
            node_seconds_this_month: 0,
        };
        let (decision, _) = decide(
            &on(PlanLimits {
                runs_per_day: Some(4),
                ..PlanLimits::default()
            }),
            &cached,
            &admitted,
            departed,
            &candidate,
            0,
            now(),
        );
        assert!(
            matches!(
                decision,
                QuotaDecision::Refuse {
                    limit: "spec.limits.runsPerDay",
                    ..
                }
            ),
            "2 departed + 2 admitted: {decision:?}"
        );
    }
}
