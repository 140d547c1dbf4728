//! The per-run memory budget: the only limit on the data a run holds.
//!
//! Every node output a run keeps for its dependants is counted in bytes of
//! compact JSON, and so is an HTTP response body while it is read. A node
//! whose output would take the run over its budget fails, with an error
//! naming the node, the size and the setting to raise. The output cap is
//! not a limit on data: it only shortens the copies that are reported
//! (events, status, history), and those copies are marked.
//!
//! This module only counts and formats; the engine decides when to count.
//! No I/O.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Default budget: 256 MiB of node outputs as compact JSON.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 * 1024 * 1024;

/// Where a run's budget was set, named in errors so the user knows what to
/// raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// Neither the workflow nor the command line set one.
    Default,
    /// `spec.memoryBudget` of the workflow.
    Workflow,
    /// `sluice-runner run --memory-budget`.
    CommandLine,
}

impl BudgetSource {
    /// The budget as a phrase naming its setting.
    fn describe(self, limit: usize) -> String {
        match self {
            BudgetSource::Default => format!(
                "the run's memory budget of {} (the default; set spec.memoryBudget in the Workflow, or --memory-budget for sluice-runner run)",
                human(limit)
            ),
            BudgetSource::Workflow => format!(
                "the run's memory budget of {} (spec.memoryBudget)",
                human(limit)
            ),
            BudgetSource::CommandLine => format!(
                "the run's memory budget of {} (--memory-budget)",
                human(limit)
            ),
        }
    }
}

/// A run's memory budget and what it holds so far. Shared by the engine
/// (node outputs) and nodes that read data in (HTTP bodies).
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    source: BudgetSource,
    held: AtomicUsize,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        Self::new(DEFAULT_MEMORY_BUDGET, BudgetSource::Default)
    }
}

/// A value that does not fit the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct OverBudget {
    /// What did not fit, e.g. `the output of node "each"`.
    pub what: String,
    /// Its size in bytes (at least: counting may stop once over).
    pub size: usize,
    /// Bytes other outputs already held.
    pub held: usize,
    /// The budget.
    pub limit: usize,
    /// Where the budget was set.
    pub setting: BudgetSource,
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {} ({} bytes of JSON)",
            self.what,
            human(self.size),
            self.size
        )?;
        if self.held > 0 {
            write!(
                f,
                " and other nodes' outputs already hold {}",
                human(self.held)
            )?;
        }
        write!(
            f,
            ": over {}. Raise the budget, or make the node return less (select the fields you need, page through the data)",
            self.setting.describe(self.limit)
        )
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes, set by `source`.
    pub fn new(limit: usize, source: BudgetSource) -> Self {
        Self {
            limit,
            source,
            held: AtomicUsize::new(0),
        }
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.held())
    }

    /// The error for `what` of `size` bytes not fitting.
    pub fn over(&self, what: impl Into<String>, size: usize) -> OverBudget {
        OverBudget {
            what: what.into(),
            size,
            held: self.held(),
            limit: self.limit,
            setting: self.source,
        }
    }

    /// Whether `size` more bytes fit, without holding them.
    pub fn check(&self, what: impl FnOnce() -> String, size: usize) -> Result<(), OverBudget> {
        if size > self.remaining() {
            return Err(self.over(what(), size));
        }
        Ok(())
    }

    /// Holds `size` bytes for the rest of the run, or says why not.
    pub fn hold(&self, what: impl FnOnce() -> String, size: usize) -> Result<(), OverBudget> {
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                held.checked_add(size).filter(|total| *total <= self.limit)
            })
            .map(|_| ())
            .map_err(|_| self.over(what(), size))
    }
}

/// Size of `value` as compact JSON, without building the text.
pub fn json_len(value: &serde_json::Value) -> usize {
    let mut counter = Counter(0);
    // Writing a `Value` into a counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// At most `limit` bytes of `value`'s compact JSON text (cut at a
/// character boundary), without building the whole text.
pub fn json_prefix(value: &serde_json::Value, limit: usize) -> String {
    let mut prefix = Prefix {
        bytes: Vec::with_capacity(limit.min(64 * 1024)),
        limit,
    };
    // Stops with an error once the prefix is full; that is the point.
    let _ = serde_json::to_writer(&mut prefix, value);
    let mut end = prefix.bytes.len();
    while end > 0 && std::str::from_utf8(&prefix.bytes[..end]).is_err() {
        end -= 1;
    }
    String::from_utf8_lossy(&prefix.bytes[..end]).into_owned()
}

struct Prefix {
    bytes: Vec<u8>,
    limit: usize,
}

impl io::Write for Prefix {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.bytes.len();
        if room == 0 {
            return Err(io::Error::other("prefix full"));
        }
        let taken = bytes.len().min(room);
        self.bytes.extend_from_slice(&bytes[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A byte size for people: `512 B`, `3.2 KiB`, `64.0 MiB`, `1.5 GiB`.
pub fn human(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A byte quantity as Kubernetes writes them: `1048576`, `512Ki`, `256Mi`,
/// `1Gi`, `1Ti`, or decimal `500k`, `200M`, `1G`, `1T`.
pub fn parse_bytes(text: &str) -> Result<usize, BytesError> {
    let text = text.trim();
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, suffix) = text.split_at(digits);
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return Err(BytesError(text.to_owned())),
    };
    let number: u64 = number.parse().map_err(|_| BytesError(text.to_owned()))?;
    number
        .checked_mul(multiplier)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| BytesError(text.to_owned()))
}

/// A text that is not a positive byte quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a positive size in bytes: write it like 256Mi, 1Gi or 500M")]
pub struct BytesError(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_parse_like_kubernetes_quantities() {
        assert_eq!(parse_bytes("256Mi"), Ok(256 << 20));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("500M"), Ok(500_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        for bad in ["", "0", "12 MB", "-1Mi", "1.5Gi", "Mi"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_sizes_and_prefixes_match_the_text() {
        let value = json!({"b": [1, "x"], "a": "héllo"});
        let text = value.to_string();
        assert_eq!(json_len(&value), text.len());
        assert_eq!(json_prefix(&value, 1000), text);
        assert_eq!(json_prefix(&value, 5), &text[..5]);
        let cut = json_prefix(&json!("ééé"), 4);
        assert!(text.is_char_boundary(0) && cut == "\"é", "{cut}");
    }

    #[test]
    fn holding_past_the_limit_is_refused_with_the_setting() {
        let budget = MemoryBudget::new(1000, BudgetSource::Workflow);
        budget.hold(|| "a".into(), 600).unwrap();
        let error = budget
            .hold(|| "the output of node \"b\"".into(), 500)
            .unwrap_err();
        assert_eq!(budget.held(), 600);
        let message = error.to_string();
        for part in [
            "node \"b\"",
            "500 bytes",
            "600 B",
            "1000 B",
            "spec.memoryBudget",
        ] {
            assert!(message.contains(part), "{message}");
        }
        assert_eq!(budget.remaining(), 400);
    }
}
