//! A validated workflow, ready for the engine: node indices instead of
//! names, compiled expressions and templates, defaults applied. Built only
//! by [`crate::validate::compile`].

use crate::expr::{Program, Template};
use sluice_crds::NodeType;
use sluice_crds::workflow::RunWhen;
use std::time::Duration;

/// A workflow the engine can run.
#[derive(Debug, Clone)]
pub struct CompiledWorkflow {
    /// The nodes, in spec order.
    pub nodes: Vec<CompiledNode>,
    /// `spec.output`, when set.
    pub output: Option<Program>,
    /// Most node executions (nodes and forEach items) running at once.
    pub parallelism: usize,
    /// `spec.activeDeadlineSeconds`.
    pub deadline: Option<Duration>,
    /// `spec.env` as the object `.env` in expressions.
    pub env: serde_json::Map<String, serde_json::Value>,
    /// `spec.memoryBudget` in bytes, when set.
    pub memory_budget: Option<usize>,
}

/// One node, compiled.
#[derive(Debug, Clone)]
pub struct CompiledNode {
    /// Its name.
    pub name: String,
    /// Its type.
    pub node_type: NodeType,
    /// Indices of the nodes it needs.
    pub needs: Vec<usize>,
    /// Indices of the nodes that need it.
    pub dependants: Vec<usize>,
    /// How it reacts to its needs' outcomes.
    pub run_when: RunWhen,
    /// `if`.
    pub condition: Option<Program>,
    /// `forEach`.
    pub for_each: Option<Program>,
    /// Most forEach items at once (defaults to the run's parallelism).
    pub parallelism: Option<usize>,
    /// The parameter block with its templates compiled.
    pub params: Template,
    /// Retry policy with defaults applied.
    pub retry: RetrySettings,
    /// Longest one attempt may take.
    pub timeout: Option<Duration>,
    /// Whether a failure leaves the run going.
    pub continue_on_error: bool,
}

/// A node's retry policy with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Retries after the first attempt.
    pub limit: u32,
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Multiplier between waits.
    pub factor: u32,
    /// Random spread of each wait, in percent.
    pub jitter_percent: u32,
}

impl RetrySettings {
    /// No retries (the defaults of `Backoff` otherwise).
    pub fn none() -> Self {
        Self {
            limit: 0,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            factor: 2,
            jitter_percent: 20,
        }
    }

    /// The wait before retry number `retry` (1 for the wait after the first
    /// attempt), before jitter: `initial × factor^(retry-1)`, capped at `max`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let mut delay = self.initial;
        for _ in 1..retry {
            delay = delay.saturating_mul(self.factor);
            if delay >= self.max {
                return self.max;
            }
        }
        delay.min(self.max)
    }

    /// The wait before retry number `retry`, spread by ±`jitter_percent`
    /// using `unit` (a random number in `[0, 1)`), never above `max`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let base = self.base_delay(retry);
        let spread = f64::from(self.jitter_percent) / 100.0;
        let factor = 1.0 + spread * (2.0 * unit - 1.0);
        base.mul_f64(factor.max(0.0)).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_factor_and_stops_at_max() {
        let retry = RetrySettings {
            limit: 10,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
            factor: 2,
            jitter_percent: 0,
        };
        let delays: Vec<u64> = (1..=5).map(|n| retry.base_delay(n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 5, 5]);
    }

    #[test]
    fn jitter_spreads_within_the_percentage_and_under_max() {
        let retry = RetrySettings {
            jitter_percent: 20,
            ..RetrySettings {
                limit: 3,
                initial: Duration::from_secs(10),
                max: Duration::from_secs(11),
                factor: 2,
                jitter_percent: 0,
            }
        };
        assert_eq!(retry.delay(1, 0.0), Duration::from_secs(8));
        assert_eq!(retry.delay(1, 0.5), Duration::from_secs(10));
        assert_eq!(retry.delay(1, 0.999_999), Duration::from_secs(11));
    }
}
