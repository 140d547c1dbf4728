//! Time as the engine sees it: [`Clock::now`] and [`Clock::sleep`], injected
//! so retries, backoff, timeouts, deadlines and `wait` nodes are
//! deterministic under test.
//!
//! [`SystemClock`] is wall time. [`ManualClock`] is virtual time for tests:
//! it runs on tokio's paused clock (`#[tokio::test(start_paused = true)]`),
//! which jumps ahead whenever every task is waiting, and records every
//! sleep it is asked for so tests assert exact backoff timings.

use crate::node::BoxFuture;
use chrono::{DateTime, TimeZone, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A source of time and of sleeping.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Waits for `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Virtual time for tests: starts at 2026-01-01T00:00:00Z and advances with
/// tokio's (paused) clock. Records every sleep.
#[derive(Debug, Clone)]
pub struct ManualClock {
    start_wall: DateTime<Utc>,
    start: tokio::time::Instant,
    sleeps: Arc<Mutex<Vec<Duration>>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock at 2026-01-01T00:00:00Z.
    pub fn new() -> Self {
        Self {
            start_wall: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            start: tokio::time::Instant::now(),
            sleeps: Arc::default(),
        }
    }

    /// Virtual time elapsed since the clock was made.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Every sleep asked for so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.start_wall + self.start.elapsed()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        if let Ok(mut sleeps) = self.sleeps.lock() {
            sleeps.push(duration);
        }
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A small seeded random source (xorshift64*) for backoff jitter, so
/// tests can fix the sequence.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    /// A source seeded with `seed` (0 is replaced by a fixed constant).
    pub fn seeded(seed: u64) -> Self {
        Self {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// A source seeded from the current time.
    pub fn from_time() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self::seeded(nanos)
    }

    /// A number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let value = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (value >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_manual_clock_advances_with_sleeps_and_records_them() {
        let clock = ManualClock::new();
        let before = clock.now();
        clock.sleep(Duration::from_secs(90)).await;
        assert_eq!((clock.now() - before).num_seconds(), 90);
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(90)]);
    }

    #[test]
    fn jitter_is_reproducible_and_in_range() {
        let mut a = Jitter::seeded(7);
        let mut b = Jitter::seeded(7);
        for _ in 0..100 {
            let x = a.next_unit();
            assert_eq!(x, b.next_unit());
            assert!((0.0..1.0).contains(&x));
        }
    }
}
