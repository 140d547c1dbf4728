//! The schedules page's data (pure): a Schedule's cron in words, its next
//! fire times in its own time zone (from the controller's
//! [`SlotClock`](crate::schedule::cron::SlotClock), so the page and the
//! controller agree), whether it is suspended, and its recent fires.

use crate::schedule::cron::SlotClock;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use sluice_crds::schedule::DaylightSaving;

/// How many next fire times the page shows.
pub const NEXT_FIRES: usize = 5;
/// How many recent fires the page shows per schedule.
pub const RECENT_FIRES: usize = 5;

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A cron expression in words, e.g. "every 5 minutes" or "at 09:00 on
/// Monday–Friday". Covers the usual shapes of 5-field crons and the
/// macros; anything else is returned as written.
pub fn describe_cron(cron: &str) -> String {
    let cron = cron.trim();
    let macro_words = match cron {
        "@yearly" | "@annually" => Some("at 00:00 on 1 January"),
        "@monthly" => Some("at 00:00 on day 1 of the month"),
        "@weekly" => Some("at 00:00 on Sunday"),
        "@daily" | "@midnight" => Some("at 00:00 every day"),
        "@hourly" => Some("every hour"),
        _ => None,
    };
    if let Some(words) = macro_words {
        return words.to_owned();
    }
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields[..] else {
        return cron.to_owned();
    };
    describe_fields(minute, hour, day, month, weekday).unwrap_or_else(|| cron.to_owned())
}

fn describe_fields(
    minute: &str,
    hour: &str,
    day: &str,
    month: &str,
    weekday: &str,
) -> Option<String> {
    let time = match (minute, hour) {
        ("*", "*") => "every minute".to_owned(),
        (minute, "*") => {
            if let Some(step) = minute.strip_prefix("*/") {
                let step: u32 = step.parse().ok()?;
                if step == 1 {
                    "every minute".to_owned()
                } else {
                    format!("every {step} minutes")
                }
            } else {
                let minute: u32 = number(minute, 59)?;
                if minute == 0 {
                    "every hour".to_owned()
                } else {
                    format!("at minute {minute} of every hour")
                }
            }
        }
        (minute, hour) => {
            let minute: u32 = number(minute, 59)?;
            if let Some(step) = hour.strip_prefix("*/") {
                let step: u32 = step.parse().ok()?;
                format!("at minute {minute} of every {step} hours")
            } else {
                let hours = hour
                    .split(',')
                    .map(|hour| number(hour, 23).map(|hour| format!("{hour:02}:{minute:02}")))
                    .collect::<Option<Vec<_>>>()?;
                format!("at {}", join(&hours))
            }
        }
    };
    let mut words = time;
    match (day, weekday) {
        ("*", "*") => {
            if month == "*" && words.starts_with("at ") && !words.starts_with("at minute") {
                words.push_str(" every day");
            }
        }
        (day, "*") => {
            let days = day
                .split(',')
                .map(|day| {
                    number(day, 31)
                        .filter(|day| *day >= 1)
                        .map(|day| day.to_string())
                })
                .collect::<Option<Vec<_>>>()?;
            words.push_str(&format!(" on day {} of the month", join(&days)));
        }
        ("*", weekday) => words.push_str(&format!(" on {}", describe_weekdays(weekday)?)),
        _ => return None,
    }
    if month != "*" {
        let months = month
            .split(',')
            .map(|month| {
                number(month, 12)
                    .filter(|month| *month >= 1)
                    .map(|month| MONTHS[month as usize - 1].to_owned())
            })
            .collect::<Option<Vec<_>>>()?;
        words.push_str(&format!(" in {}", join(&months)));
    }
    Some(words)
}

/// Days of the week, as numbers (0 or 7 = Sunday), three-letter names,
/// ranges (`1-5`) and lists.
fn describe_weekdays(field: &str) -> Option<String> {
    let parts = field
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((first, last)) => Some(format!("{}–{}", weekday(first)?, weekday(last)?)),
            None => weekday(part).map(str::to_owned),
        })
        .collect::<Option<Vec<_>>>()?;
    Some(join(&parts))
}

fn weekday(field: &str) -> Option<&'static str> {
    if let Ok(number) = field.parse::<usize>() {
        return (number <= 7).then(|| DAYS[number % 7]);
    }
    DAYS.iter()
        .find(|day| day[..3].eq_ignore_ascii_case(field))
        .copied()
}

fn number(field: &str, max: u32) -> Option<u32> {
    field.parse().ok().filter(|value| *value <= max)
}

fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// One Schedule object (as the API server returned it) as the page shows
/// it. `runs` are WorkflowRun objects of the namespace; those fired by this
/// schedule are its recent fires (`None`: the user may not list runs).
pub fn build_schedule_view(schedule: &Value, runs: Option<&[Value]>, now: DateTime<Utc>) -> Value {
    let name = schedule
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let spec = schedule.get("spec").cloned().unwrap_or(Value::Null);
    let cron = spec["cron"].as_str().unwrap_or_default();
    let time_zone = spec["timeZone"].as_str();
    let daylight_saving: Option<DaylightSaving> = spec
        .get("daylightSaving")
        .and_then(|value| serde_json::from_value(value.clone()).ok());
    let zone: Tz = time_zone
        .and_then(|zone| zone.parse().ok())
        .unwrap_or(Tz::UTC);
    let (next_fires, invalid) = match SlotClock::new(cron, time_zone, daylight_saving.as_ref()) {
        Ok(clock) => (
            clock
                .slots_after(now)
                .take(NEXT_FIRES)
                .map(|slot| slot.with_timezone(&zone).to_rfc3339())
                .collect::<Vec<_>>(),
            None,
        ),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    let recent_fires = runs.map(|runs| {
        let mut fires: Vec<(String, Value)> = runs
            .iter()
            .filter(|run| {
                run.pointer("/spec/trigger/type").and_then(Value::as_str) == Some("Schedule")
                    && run.pointer("/spec/trigger/source").and_then(Value::as_str) == Some(name)
            })
            .map(|run| {
                let slot = run
                    .pointer("/spec/trigger/scheduledTime")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let slot_in_zone = DateTime::parse_from_rfc3339(&slot)
                    .map(|slot| slot.with_timezone(&zone).to_rfc3339())
                    .unwrap_or_else(|_| slot.clone());
                (
                    slot,
                    json!({
                        "run": run.pointer("/metadata/name"),
                        "scheduledTime": slot_in_zone,
                        "phase": run.pointer("/status/phase"),
                    }),
                )
            })
            .collect();
        fires.sort_by(|a, b| {
            let a = DateTime::parse_from_rfc3339(&a.0).ok();
            let b = DateTime::parse_from_rfc3339(&b.0).ok();
            b.cmp(&a)
        });
        fires
            .into_iter()
            .take(RECENT_FIRES)
            .map(|(_, fire)| fire)
            .collect::<Vec<_>>()
    });
    json!({
        "name": name,
        "workflow": spec.pointer("/workflowRef/name"),
        "cron": cron,
        "cronInWords": describe_cron(cron),
        "timeZone": zone.name(),
        "suspended": spec["suspend"].as_bool().unwrap_or(false),
        "nextFires": next_fires,
        "invalid": invalid,
        "recentFires": recent_fires,
        "lastScheduleTime": schedule.pointer("/status/lastScheduleTime"),
        "missedSlots": schedule.pointer("/status/missedSlots"),
        "spec": spec,
        "status": schedule.get("status"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_crons_read_as_words() {
        for (cron, words) in [
            ("*/5 * * * *", "every 5 minutes"),
            ("* * * * *", "every minute"),
            ("0 * * * *", "every hour"),
            ("15 * * * *", "at minute 15 of every hour"),
            ("0 */2 * * *", "at minute 0 of every 2 hours"),
            ("0 9 * * 1-5", "at 09:00 on Monday–Friday"),
            ("30 9 * * MON-FRI", "at 09:30 on Monday–Friday"),
            ("0 0 * * *", "at 00:00 every day"),
            ("0 8,17 * * *", "at 08:00 and 17:00 every day"),
            ("0 6 * * 0,6", "at 06:00 on Sunday and Saturday"),
            ("0 3 1 * *", "at 03:00 on day 1 of the month"),
            ("0 0 1 1 *", "at 00:00 on day 1 of the month in January"),
            ("@hourly", "every hour"),
            ("@daily", "at 00:00 every day"),
        ] {
            assert_eq!(describe_cron(cron), words, "{cron}");
        }
    }

    #[test]
    fn crons_not_covered_are_shown_as_written() {
        for cron in [
            "0 9 1 * 1",
            "5-10 * * * *",
            "0 9 L * *",
            "0 0 9 * * *",
            "0 25 * * *",
            "nonsense",
        ] {
            assert_eq!(describe_cron(cron), cron);
        }
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn next_fires_are_the_controllers_slots_in_the_schedules_time_zone() {
        let schedule = json!({
            "metadata": {"name": "nightly"},
            "spec": {"workflowRef": {"name": "report"}, "cron": "0 9 * * 1-5",
                     "timeZone": "Europe/Berlin", "suspend": true},
        });
        // Friday 2026-03-27 10:00 Berlin (09:00 UTC); DST starts on Sunday 29th.
        let view = build_schedule_view(&schedule, None, utc("2026-03-27T09:00:00Z"));
        assert_eq!(
            view["nextFires"],
            json!([
                "2026-03-30T09:00:00+02:00",
                "2026-03-31T09:00:00+02:00",
                "2026-04-01T09:00:00+02:00",
                "2026-04-02T09:00:00+02:00",
                "2026-04-03T09:00:00+02:00",
            ])
        );
        assert_eq!(view["cronInWords"], "at 09:00 on Monday–Friday");
        assert_eq!(view["suspended"], true);
        assert_eq!(view["timeZone"], "Europe/Berlin");
        assert_eq!(view["recentFires"], Value::Null);
        assert_eq!(view["invalid"], Value::Null);
    }

    #[test]
    fn an_invalid_schedule_has_no_next_fires_and_says_why() {
        let schedule = json!({
            "metadata": {"name": "broken"},
            "spec": {"workflowRef": {"name": "report"}, "cron": "0 9 * *"},
        });
        let view = build_schedule_view(&schedule, Some(&[]), utc("2026-03-27T09:00:00Z"));
        assert_eq!(view["nextFires"], json!([]));
        assert!(view["invalid"].as_str().unwrap().starts_with("spec.cron"));
        assert_eq!(view["suspended"], false);
        assert_eq!(view["recentFires"], json!([]));
    }

    #[test]
    fn recent_fires_are_this_schedules_runs_newest_first() {
        let schedule = json!({
            "metadata": {"name": "nightly"},
            "spec": {"workflowRef": {"name": "report"}, "cron": "0 0 * * *", "timeZone": "UTC"},
        });
        let run = |name: &str, source: &str, slot: &str| {
            json!({
                "metadata": {"name": name},
                "spec": {"trigger": {"type": "Schedule", "source": source, "scheduledTime": slot}},
                "status": {"phase": "Succeeded"},
            })
        };
        let mut runs: Vec<Value> = (1..=7)
            .map(|day| {
                run(
                    &format!("nightly-{day}"),
                    "nightly",
                    &format!("2026-03-0{day}T00:00:00Z"),
                )
            })
            .collect();
        runs.push(run("other-1", "other", "2026-03-09T00:00:00Z"));
        runs.push(json!({"metadata": {"name": "manual"}, "spec": {"trigger": {"type": "Manual", "source": "nightly"}}}));
        let view = build_schedule_view(&schedule, Some(&runs), utc("2026-03-08T00:00:00Z"));
        let names: Vec<&str> = view["recentFires"]
            .as_array()
            .unwrap()
            .iter()
            .map(|fire| fire["run"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "nightly-7",
                "nightly-6",
                "nightly-5",
                "nightly-4",
                "nightly-3"
            ]
        );
        assert_eq!(
            view["recentFires"][0]["scheduledTime"],
            "2026-03-07T00:00:00+00:00"
        );
        assert_eq!(view["recentFires"][0]["phase"], "Succeeded");
    }
}
