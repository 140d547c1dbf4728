//! The reconcile queue depth of a controller: objects a watch event has
//! asked to reconcile that no reconcile has picked up yet.
//!
//! kube-runtime's controller keeps its queue to itself, so the depth is
//! counted at the edges: a trigger (the object's own event, or a child's
//! mapped to it) enters the object, the start of its reconcile takes it
//! out, and its deletion takes it out too (the controller drops triggers
//! of objects gone from its cache). An object triggered many times before
//! it is reconciled counts once, as in the controller's own queue, which
//! deduplicates by object. Requeues after a delay are not waiting work and
//! are not counted. This module only counts; it never schedules.

use std::collections::HashSet;
use std::sync::Mutex;

/// Objects waiting for a reconcile, by `namespace/name`.
#[derive(Debug, Default)]
pub struct ReconcileQueue {
    waiting: Mutex<HashSet<String>>,
}

impl ReconcileQueue {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A trigger asked to reconcile `namespace/name`.
    pub fn enter(&self, namespace: &str, name: &str) {
        self.waiting().insert(format!("{namespace}/{name}"));
    }

    /// A reconcile of `namespace/name` started, or the object is gone.
    pub fn leave(&self, namespace: &str, name: &str) {
        self.waiting().remove(&format!("{namespace}/{name}"));
    }

    /// Objects waiting now.
    pub fn depth(&self) -> usize {
        self.waiting().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_counts_once_until_its_reconcile_starts() {
        let queue = ReconcileQueue::default();
        queue.enter("team-a", "run-1");
        queue.enter("team-a", "run-1");
        queue.enter("team-b", "run-1");
        assert_eq!(queue.depth(), 2, "one per object, whatever the triggers");
        queue.leave("team-a", "run-1");
        assert_eq!(queue.depth(), 1);
        queue.leave("team-a", "run-1");
        queue.leave("team-b", "run-1");
        assert_eq!(queue.depth(), 0);
    }
}
