//! Slot math of a Schedule: parses `spec.cron` and `spec.timeZone` and lists
//! the nominal instants of its slots in order, with the explicit daylight
//! saving rule applied. Pure: no clock, no client.
//!
//! croner walks wall-clock time and guesses per pattern what to do with
//! DST (a "fixed-time" job is shifted out of a gap and fires once in an
//! overlap; an "interval" job skips the gap and fires twice in an overlap).
//! Sluice makes the rule explicit and the same for every pattern, so croner
//! is only asked for wall-clock matches ([`NaiveDateTime`]) and each match
//! is placed in the time zone here:
//!
//! - a wall-clock time that does not exist (spring forward) is `Shift`ed to
//!   the first instant after the gap (several matches in one gap become one
//!   slot), or `Skip`ped;
//! - a wall-clock time that happens twice (fall back) fires `Once`, at its
//!   first occurrence, or `Twice`.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use sha2::{Digest, Sha256};
use sluice_crds::schedule::{DaylightSaving, RepeatedTimePolicy, SkippedTimePolicy};

/// Most wall-clock matches looked at for one slot; bounds the work spent on
/// a pattern whose matches all fall outside the time line (never in
/// practice: a fall-back hour of an every-second cron is 3,600).
const MAX_MATCHES_PER_SLOT: usize = 10_000;

/// A field of the spec that does not parse, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    /// Field path, e.g. `spec.cron`.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The slots of a Schedule: its cron in its time zone under its DST rule.
#[derive(Clone, Debug)]
pub struct SlotClock {
    cron: Cron,
    zone: Tz,
    skipped: SkippedTimePolicy,
    repeated: RepeatedTimePolicy,
}

impl SlotClock {
    /// Parses the cron (5 fields, 6 with leading seconds, or a macro such as
    /// `@hourly`) and the IANA time zone (UTC when absent).
    pub fn new(
        cron: &str,
        time_zone: Option<&str>,
        daylight_saving: Option<&DaylightSaving>,
    ) -> Result<Self, InvalidField> {
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let parsed = parser.parse(cron).map_err(|error| InvalidField {
            field: "spec.cron",
            message: format!(
                "{cron:?} is not a valid cron expression ({error}): use 5 fields \
                 (minute hour day-of-month month day-of-week), 6 with a leading seconds \
                 field, or @yearly, @monthly, @weekly, @daily, @hourly"
            ),
        })?;
        let zone = match time_zone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| InvalidField {
                field: "spec.timeZone",
                message: format!(
                    "{name:?} is not an IANA time zone: use a name such as \
                     Europe/Berlin, America/New_York or UTC"
                ),
            })?,
        };
        let rules = daylight_saving.cloned().unwrap_or_default();
        Ok(Self {
            cron: parsed,
            zone,
            skipped: rules.skipped_time.unwrap_or_default(),
            repeated: rules.repeated_time.unwrap_or_default(),
        })
    }

    /// The first slot strictly after `after`, or None when the pattern
    /// never matches again (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Wall-clock matches at or before `after` read with the smallest
        // nearby offset cannot land after `after`, whatever the DST rule.
        let smallest_offset = [
            after - TimeDelta::days(1),
            after,
            after + TimeDelta::days(1),
        ]
        .into_iter()
        .map(|instant| self.offset_seconds(instant))
        .min()
        .unwrap_or(0);
        let mut cursor = after.naive_utc() + TimeDelta::seconds(smallest_offset.into());
        // Within an overlap the earlier and later instants of successive
        // matches interleave, so a candidate found there is only final once
        // no later match can come before it.
        let mut best: Option<DateTime<Utc>> = None;
        for _ in 0..MAX_MATCHES_PER_SLOT {
            let wall = self.cron.find_next_occurrence(&cursor, false).ok()?;
            cursor = wall;
            match self.zone.from_local_datetime(&wall) {
                LocalResult::Single(instant) => {
                    let instant = instant.with_timezone(&Utc);
                    if instant > after {
                        return Some(earliest(best, instant));
                    }
                }
                LocalResult::Ambiguous(earlier, later) => {
                    let (earlier_utc, later_utc) =
                        (earlier.with_timezone(&Utc), later.with_timezone(&Utc));
                    if earlier_utc > after {
                        return Some(earliest(best, earlier_utc));
                    }
                    let twice = self.repeated == RepeatedTimePolicy::Twice;
                    if twice && later_utc > after {
                        best = Some(earliest(best, later_utc));
                    }
                    // Matches whose first occurrence is not after `after`
                    // (and, when firing twice, whose second is not either)
                    // can be stepped over at once.
                    // (Only then: the next single match after the overlap,
                    // read with the later offset, may come first.)
                    let offset = if twice && later_utc > after {
                        earlier.offset().fix().local_minus_utc()
                    } else {
                        later.offset().fix().local_minus_utc()
                    };
                    let skip_to = after.naive_utc() + TimeDelta::seconds(offset.into());
                    cursor = cursor.max(skip_to);
                }
                LocalResult::None => {
                    if self.skipped == SkippedTimePolicy::Skip {
                        continue;
                    }
                    let gap_end = self.gap_end(wall);
                    if gap_end > after {
                        return Some(earliest(best, gap_end));
                    }
                    // Every match left in this gap shifts to the same instant.
                    let gap_end_wall = gap_end.naive_utc()
                        + TimeDelta::seconds(self.offset_seconds(gap_end).into());
                    cursor = cursor.max(gap_end_wall - TimeDelta::seconds(1));
                }
            }
        }
        best
    }

    /// Slots strictly after `after`, in order.
    pub fn slots_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(after), move |slot| self.next_after(*slot))
    }

    fn offset_seconds(&self, instant: DateTime<Utc>) -> i32 {
        self.zone
            .offset_from_utc_datetime(&instant.naive_utc())
            .fix()
            .local_minus_utc()
    }

    /// The first instant after the DST gap holding the wall-clock time
    /// `wall`: the smallest instant whose wall clock reads `wall` or later.
    fn gap_end(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        // Offsets lie within -12h..+14h, so these bound the answer; zone
        // transitions fall on whole seconds.
        let wall_seconds = wall.and_utc().timestamp();
        let mut low = wall_seconds - 16 * 3600;
        let mut high = wall_seconds + 16 * 3600;
        let reads_at_least = |seconds: i64| {
            DateTime::from_timestamp(seconds, 0).is_some_and(|instant| {
                seconds + i64::from(self.offset_seconds(instant)) >= wall_seconds
            })
        };
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if reads_at_least(middle) {
                high = middle;
            } else {
                low = middle;
            }
        }
        DateTime::from_timestamp(high, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

fn earliest(best: Option<DateTime<Utc>>, candidate: DateTime<Utc>) -> DateTime<Utc> {
    best.map_or(candidate, |best| best.min(candidate))
}

/// Delay added to `slot` of the schedule with `uid`: in `[0, max)`, the
/// same for the same schedule and slot on every replica and after every
/// restart, so jitter never moves (or refires) a slot.
pub fn jitter(uid: &str, slot: DateTime<Utc>, max: std::time::Duration) -> TimeDelta {
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return TimeDelta::zero();
    }
    let digest = Sha256::digest(format!("{uid}/{}", slot.timestamp()).as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let delay = u64::from_be_bytes(head) % millis;
    TimeDelta::milliseconds(i64::try_from(delay).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[path = "cron_tests.rs"]
mod tests;
