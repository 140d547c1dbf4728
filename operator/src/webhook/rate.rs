//! Per-trigger rate limiting: a token bucket per (namespace, workflow,
//! trigger) refilled at `perMinute` and holding at most `burst` tokens.
//! Limits are per replica (each replica serves webhooks). The clock is a
//! value so the bucket is tested without sleeping.

use sluice_crds::workflow::RateLimit;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per minute when a trigger sets no `rateLimit`.
pub const DEFAULT_PER_MINUTE: u32 = 60;

/// One trigger's bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The sustained rate and the burst of `limit` (defaults: 60/min, burst = rate).
pub fn limits(limit: Option<&RateLimit>) -> (f64, f64) {
    let per_minute = limit.map_or(DEFAULT_PER_MINUTE, |limit| limit.per_minute.max(1));
    let burst = limit
        .and_then(|limit| limit.burst)
        .unwrap_or(per_minute)
        .max(1);
    (f64::from(per_minute), f64::from(burst))
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            updated: now,
        }
    }

    /// Refills for the time since the last call and takes one token if there is one.
    pub fn try_take(&mut self, per_minute: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_minute / 60.0).min(burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Buckets of every trigger seen by this replica.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(String, String, String), Bucket>>,
}

impl RateLimiter {
    /// Takes a token for the trigger; false means the request must get 429.
    pub fn try_acquire(
        &self,
        namespace: &str,
        workflow: &str,
        trigger: &str,
        limit: Option<&RateLimit>,
        now: Instant,
    ) -> bool {
        let (per_minute, burst) = limits(limit);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets
            .entry((
                namespace.to_owned(),
                workflow.to_owned(),
                trigger.to_owned(),
            ))
            .or_insert_with(|| Bucket::full(burst, now))
            .try_take(per_minute, burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_the_rate_refills() {
        let start = Instant::now();
        let limit = RateLimit {
            per_minute: 60,
            burst: Some(3),
        };
        let limiter = RateLimiter::default();
        let take = |at| limiter.try_acquire("ns", "w", "t", Some(&limit), at);
        assert!(take(start) && take(start) && take(start));
        assert!(!take(start), "burst of 3 spent");
        assert!(!take(start + Duration::from_millis(500)));
        assert!(take(start + Duration::from_millis(1500)), "one per second");
        assert!(
            limiter.try_acquire("ns", "w", "other", Some(&limit), start),
            "buckets are per trigger"
        );
    }

    #[test]
    fn defaults_are_sixty_per_minute() {
        assert_eq!(limits(None), (60.0, 60.0));
        let limit = RateLimit {
            per_minute: 10,
            burst: None,
        };
        assert_eq!(limits(Some(&limit)), (10.0, 10.0));
    }
}
