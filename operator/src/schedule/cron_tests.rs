//! Slot math against known DST transitions (2026): America/New_York springs
//! forward on 8 March at 02:00 (07:00 UTC) and falls back on 1 November at
//! 02:00 EDT (06:00 UTC); Europe/Berlin springs forward on 29 March at 02:00
//! (01:00 UTC) and falls back on 25 October at 03:00 CEST (01:00 UTC).

use super::*;
use sluice_crds::schedule::{RepeatedTimePolicy, SkippedTimePolicy};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn clock(
    cron: &str,
    zone: &str,
    skipped: SkippedTimePolicy,
    repeated: RepeatedTimePolicy,
) -> SlotClock {
    let rules = DaylightSaving {
        skipped_time: Some(skipped),
        repeated_time: Some(repeated),
    };
    SlotClock::new(cron, Some(zone), Some(&rules)).unwrap()
}

fn defaults(cron: &str, zone: &str) -> SlotClock {
    SlotClock::new(cron, Some(zone), None).unwrap()
}

fn slots(clock: &SlotClock, after: &str, count: usize) -> Vec<String> {
    clock
        .slots_after(utc(after))
        .take(count)
        .map(|slot| slot.to_rfc3339())
        .collect()
}

use RepeatedTimePolicy::{Once, Twice};
use SkippedTimePolicy::{Shift, Skip};

#[test]
fn new_york_spring_forward_shifts_or_skips_a_daily_slot_in_the_gap() {
    let after = "2026-03-07T12:00:00+00:00";
    assert_eq!(
        slots(
            &clock("30 2 * * *", "America/New_York", Shift, Once),
            after,
            2
        ),
        ["2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00"],
        "02:30 does not exist on 8 March: fire at 03:00 EDT"
    );
    assert_eq!(
        slots(
            &clock("30 2 * * *", "America/New_York", Skip, Once),
            after,
            2
        ),
        ["2026-03-09T06:30:00+00:00", "2026-03-10T06:30:00+00:00"]
    );
    assert_eq!(
        slots(&defaults("30 2 * * *", "America/New_York"), after, 1),
        ["2026-03-08T07:00:00+00:00"],
        "Shift is the default"
    );
}

#[test]
fn new_york_spring_forward_folds_interval_matches_in_the_gap_into_one_slot() {
    let after = "2026-03-08T06:00:00+00:00";
    assert_eq!(
        slots(
            &clock("15,45 * * * *", "America/New_York", Shift, Once),
            after,
            4
        ),
        [
            "2026-03-08T06:15:00+00:00",
            "2026-03-08T06:45:00+00:00",
            "2026-03-08T07:00:00+00:00",
            "2026-03-08T07:15:00+00:00"
        ]
    );
    assert_eq!(
        slots(
            &clock("15,45 * * * *", "America/New_York", Skip, Once),
            after,
            3
        ),
        [
            "2026-03-08T06:15:00+00:00",
            "2026-03-08T06:45:00+00:00",
            "2026-03-08T07:15:00+00:00"
        ]
    );
    let every_second = clock("* * * * * *", "America/New_York", Shift, Once);
    assert_eq!(
        slots(&every_second, "2026-03-08T06:59:59+00:00", 2),
        ["2026-03-08T07:00:00+00:00", "2026-03-08T07:00:01+00:00"],
        "3,600 wall-clock seconds in the gap become the one instant 03:00 EDT"
    );
}

#[test]
fn new_york_fall_back_fires_a_daily_slot_once_or_twice() {
    let after = "2026-10-31T12:00:00+00:00";
    assert_eq!(
        slots(
            &clock("30 1 * * *", "America/New_York", Shift, Once),
            after,
            2
        ),
        ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"],
        "01:30 happens twice on 1 November: once means its first (EDT) occurrence"
    );
    assert_eq!(
        slots(
            &clock("30 1 * * *", "America/New_York", Shift, Twice),
            after,
            3
        ),
        [
            "2026-11-01T05:30:00+00:00",
            "2026-11-01T06:30:00+00:00",
            "2026-11-02T06:30:00+00:00"
        ]
    );
}

#[test]
fn new_york_fall_back_orders_interval_slots_by_instant() {
    let after = "2026-11-01T03:59:00+00:00";
    assert_eq!(
        slots(
            &clock("*/30 * * * *", "America/New_York", Shift, Twice),
            after,
            7
        ),
        [
            "2026-11-01T04:00:00+00:00",
            "2026-11-01T04:30:00+00:00",
            "2026-11-01T05:00:00+00:00",
            "2026-11-01T05:30:00+00:00",
            "2026-11-01T06:00:00+00:00",
            "2026-11-01T06:30:00+00:00",
            "2026-11-01T07:00:00+00:00"
        ]
    );
    assert_eq!(
        slots(
            &clock("*/30 * * * *", "America/New_York", Shift, Once),
            after,
            5
        ),
        [
            "2026-11-01T04:00:00+00:00",
            "2026-11-01T04:30:00+00:00",
            "2026-11-01T05:00:00+00:00",
            "2026-11-01T05:30:00+00:00",
            "2026-11-01T07:00:00+00:00"
        ],
        "the repeated 01:00 and 01:30 EST do not fire again"
    );
    // Starting inside the repeated hour, on either side of the transition.
    let twice = clock("*/30 * * * *", "America/New_York", Shift, Twice);
    let once = clock("*/30 * * * *", "America/New_York", Shift, Once);
    assert_eq!(
        slots(&twice, "2026-11-01T05:10:00+00:00", 1),
        ["2026-11-01T05:30:00+00:00"]
    );
    assert_eq!(
        slots(&twice, "2026-11-01T05:40:00+00:00", 1),
        ["2026-11-01T06:00:00+00:00"]
    );
    assert_eq!(
        slots(&twice, "2026-11-01T06:10:00+00:00", 1),
        ["2026-11-01T06:30:00+00:00"]
    );
    assert_eq!(
        slots(&once, "2026-11-01T06:10:00+00:00", 1),
        ["2026-11-01T07:00:00+00:00"]
    );
}

#[test]
fn berlin_spring_forward_shifts_or_skips() {
    let after = "2026-03-28T12:00:00+00:00";
    assert_eq!(
        slots(&clock("30 2 * * *", "Europe/Berlin", Shift, Once), after, 2),
        ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"],
        "02:30 does not exist on 29 March: fire at 03:00 CEST"
    );
    assert_eq!(
        slots(&clock("30 2 * * *", "Europe/Berlin", Skip, Twice), after, 1),
        ["2026-03-30T00:30:00+00:00"]
    );
}

#[test]
fn berlin_fall_back_fires_once_or_twice() {
    let after = "2026-10-24T12:00:00+00:00";
    assert_eq!(
        slots(&clock("30 2 * * *", "Europe/Berlin", Shift, Once), after, 2),
        ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
    );
    assert_eq!(
        slots(&clock("30 2 * * *", "Europe/Berlin", Skip, Twice), after, 3),
        [
            "2026-10-25T00:30:00+00:00",
            "2026-10-25T01:30:00+00:00",
            "2026-10-26T01:30:00+00:00"
        ]
    );
}

#[test]
fn leap_day_fires_only_in_leap_years() {
    let leap = defaults("0 12 29 2 *", "UTC");
    assert_eq!(
        slots(&leap, "2026-01-01T00:00:00+00:00", 2),
        ["2028-02-29T12:00:00+00:00", "2032-02-29T12:00:00+00:00"]
    );
}

#[test]
fn month_ends() {
    let day_31 = defaults("0 0 31 * *", "UTC");
    assert_eq!(
        slots(&day_31, "2026-01-31T00:00:00+00:00", 2),
        ["2026-03-31T00:00:00+00:00", "2026-05-31T00:00:00+00:00"],
        "months without a 31st are passed over, as in every cron"
    );
    let last_day = defaults("0 0 L * *", "UTC");
    assert_eq!(
        slots(&last_day, "2026-01-31T00:00:00+00:00", 2),
        ["2026-02-28T00:00:00+00:00", "2026-03-31T00:00:00+00:00"]
    );
    assert_eq!(
        slots(&last_day, "2028-02-01T00:00:00+00:00", 1),
        ["2028-02-29T00:00:00+00:00"]
    );
}

#[test]
fn a_leading_seconds_field_is_read() {
    let every_ten = defaults("*/10 * * * * *", "UTC");
    assert_eq!(
        slots(&every_ten, "2026-01-01T00:00:05+00:00", 3),
        [
            "2026-01-01T00:00:10+00:00",
            "2026-01-01T00:00:20+00:00",
            "2026-01-01T00:00:30+00:00"
        ]
    );
    let sub_second = utc("2026-01-01T00:00:09.999+00:00");
    assert_eq!(
        every_ten.next_after(sub_second),
        Some(utc("2026-01-01T00:00:10+00:00"))
    );
}

#[test]
fn macros_are_read_in_the_time_zone() {
    let after = "2026-06-01T10:20:00+00:00";
    assert_eq!(
        slots(&defaults("@hourly", "UTC"), after, 1),
        ["2026-06-01T11:00:00+00:00"]
    );
    assert_eq!(
        slots(&defaults("@daily", "Europe/Berlin"), after, 1),
        ["2026-06-01T22:00:00+00:00"],
        "midnight CEST"
    );
    assert_eq!(
        slots(&defaults("@weekly", "UTC"), after, 1),
        ["2026-06-07T00:00:00+00:00"],
        "Sunday"
    );
    assert_eq!(
        slots(&defaults("@monthly", "UTC"), after, 1),
        ["2026-07-01T00:00:00+00:00"]
    );
    assert_eq!(
        slots(&defaults("@yearly", "UTC"), after, 1),
        ["2027-01-01T00:00:00+00:00"]
    );
}

#[test]
fn utc_is_the_default_time_zone() {
    let clock = SlotClock::new("0 9 * * *", None, None).unwrap();
    assert_eq!(
        slots(&clock, "2026-06-01T10:00:00+00:00", 1),
        ["2026-06-02T09:00:00+00:00"]
    );
}

#[test]
fn invalid_crons_and_zones_name_the_field_and_the_fix() {
    for cron in ["61 * * * *", "every day", "0 0 * * * * 2026", "@reboot"] {
        let error = SlotClock::new(cron, None, None).unwrap_err();
        assert_eq!(error.field, "spec.cron", "{cron}");
        assert!(error.message.contains("use 5 fields"), "{}", error.message);
    }
    let error = SlotClock::new("0 * * * *", Some("Mars/Olympus"), None).unwrap_err();
    assert_eq!(error.field, "spec.timeZone");
    assert!(error.to_string().contains("Europe/Berlin"), "{error}");
}

#[test]
fn a_pattern_that_never_matches_has_no_slot() {
    let clock = defaults("0 0 30 2 *", "UTC");
    assert_eq!(clock.next_after(utc("2026-01-01T00:00:00+00:00")), None);
}

#[test]
fn jitter_is_stable_per_schedule_and_slot_and_bounded() {
    let max = std::time::Duration::from_secs(30);
    let slot = utc("2026-01-01T00:00:00+00:00");
    let first = jitter("uid-1", slot, max);
    assert_eq!(
        jitter("uid-1", slot, max),
        first,
        "a restart computes the same delay"
    );
    let delays: Vec<TimeDelta> = (0..200)
        .map(|minute| jitter("uid-1", slot + TimeDelta::minutes(minute), max))
        .collect();
    assert!(
        delays
            .iter()
            .all(|d| *d >= TimeDelta::zero() && *d < TimeDelta::seconds(30))
    );
    assert!(
        delays
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 150,
        "slots are spread"
    );
    assert_ne!(jitter("uid-2", slot, max), first, "schedules are spread");
    assert_eq!(
        jitter("uid-1", slot, std::time::Duration::ZERO),
        TimeDelta::zero()
    );
}
