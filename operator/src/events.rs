//! Kubernetes Events (`events.k8s.io/v1`) about Sluice objects.
//!
//! The same Event repeated about the same object within [`SERIES_WINDOW`]
//! (a reconcile failing again, say) becomes one Event with a growing
//! `series.count` instead of a new object, as `kubectl describe` expects.
//! The memory of recent Events is bounded ([`REMEMBERED`] entries): kube's
//! own recorder keeps every Event of the last six minutes and scans them all
//! on each publish, which at hundreds of runs a second costs tens of
//! megabytes and most of a core. Forgetting an Event early only means its
//! next repetition starts a new series.

use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a repeated Event extends its series rather than starting anew.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How many recent Events are remembered for series.
pub const REMEMBERED: usize = 1024;

/// What makes two Events the same: the object, type, reason and action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    regarding: (String, String, String, String),
    warning: bool,
    reason: String,
    action: String,
}

/// A published Event, for extending its series.
#[derive(Debug, Clone, PartialEq)]
struct Published {
    name: String,
    count: i32,
    last: Instant,
}

/// The recent Events, at most [`REMEMBERED`] of them.
#[derive(Debug, Default)]
struct Recent {
    entries: HashMap<Key, Published>,
}

impl Recent {
    /// The recent Event `key` repeats at `now`, with its count raised.
    fn repeat(&self, key: &Key, now: Instant) -> Option<Published> {
        let published = self.entries.get(key)?;
        (now.saturating_duration_since(published.last) < SERIES_WINDOW).then(|| Published {
            count: published.count.saturating_add(1),
            ..published.clone()
        })
    }

    /// Remembers `published`; when full, forgets expired Events first and
    /// then the least recent one.
    fn remember(&mut self, key: Key, published: Published) {
        if self.entries.len() >= REMEMBERED && !self.entries.contains_key(&key) {
            let now = published.last;
            self.entries
                .retain(|_, old| now.saturating_duration_since(old.last) < SERIES_WINDOW);
            if self.entries.len() >= REMEMBERED
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, old)| old.last)
                    .map(|(key, _)| key.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, published);
    }
}

/// Publishes Events as one reporting controller.
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    recent: Mutex<Recent>,
}

impl Publisher {
    /// A publisher reporting as `controller` (the instance is the pod name when known).
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            recent: Mutex::default(),
        }
    }

    /// Publishes an Event about `object`, or extends the series of the same
    /// recent Event.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        self.publish_in(None, object, warning, reason, action, note)
            .await
    }

    /// As [`Publisher::publish`], into `namespace` rather than the
    /// object's own: for an object whose namespace is being deleted and
    /// takes no new Events (`events.k8s.io/v1` Events may regard an object
    /// of another namespace).
    pub async fn publish_in<K: Resource<DynamicType = ()>>(
        &self,
        namespace: Option<&str>,
        object: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let regarding = object.object_ref(&());
        let namespace = namespace
            .map(str::to_owned)
            .or_else(|| regarding.namespace.clone())
            .unwrap_or_else(|| "default".to_owned());
        let key = Key {
            regarding: (
                regarding.kind.clone().unwrap_or_default(),
                namespace.clone(),
                regarding.name.clone().unwrap_or_default(),
                regarding.uid.clone().unwrap_or_default(),
            ),
            warning,
            reason: reason.to_owned(),
            action: action.to_owned(),
        };
        let now = jiff::Timestamp::now();
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let repeated = self.recent().repeat(&key, Instant::now());
        if let Some(mut series) = repeated {
            let patch = serde_json::json!({
                "series": EventSeries {
                    count: series.count,
                    last_observed_time: MicroTime(now),
                },
                "note": note,
            });
            match events
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    series.last = Instant::now();
                    self.recent().remember(key, series);
                    return Ok(());
                }
                // Deleted meanwhile (a TTL, a person): start a new one below.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            ..Event::default()
        };
        events.create(&PostParams::default(), &event).await?;
        self.recent().remember(
            key,
            Published {
                name,
                count: 1,
                last: Instant::now(),
            },
        );
        Ok(())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key {
            regarding: (
                "WorkflowRun".into(),
                "ns".into(),
                name.into(),
                format!("uid-{name}"),
            ),
            warning: false,
            reason: "Started".into(),
            action: "Start".into(),
        }
    }

    fn published(name: &str, last: Instant) -> Published {
        Published {
            name: name.into(),
            count: 1,
            last,
        }
    }

    #[test]
    fn a_repeat_within_the_window_extends_the_series() {
        let start = Instant::now();
        let mut recent = Recent::default();
        assert_eq!(recent.repeat(&key("a"), start), None);
        recent.remember(key("a"), published("a.1", start));
        let again = recent
            .repeat(&key("a"), start + Duration::from_secs(5))
            .expect("a repeat");
        assert_eq!((again.name.as_str(), again.count), ("a.1", 2));
        assert_eq!(recent.repeat(&key("b"), start), None);
        assert_eq!(recent.repeat(&key("a"), start + SERIES_WINDOW), None);
    }

    #[test]
    fn memory_stays_bounded_and_forgets_the_least_recent_first() {
        let start = Instant::now();
        let mut recent = Recent::default();
        for index in 0..REMEMBERED + 10 {
            let at = start + Duration::from_millis(index as u64);
            recent.remember(key(&index.to_string()), published(&index.to_string(), at));
        }
        assert_eq!(recent.entries.len(), REMEMBERED);
        let late = start + Duration::from_secs(1);
        assert_eq!(
            recent.repeat(&key("0"), late),
            None,
            "the oldest is forgotten"
        );
        assert!(
            recent
                .repeat(&key(&(REMEMBERED + 9).to_string()), late)
                .is_some()
        );
    }

    #[test]
    fn expired_events_are_forgotten_before_recent_ones() {
        let start = Instant::now();
        let mut recent = Recent::default();
        recent.remember(key("old"), published("old", start));
        let later = start + SERIES_WINDOW + Duration::from_secs(1);
        for index in 1..REMEMBERED {
            recent.remember(key(&index.to_string()), published("x", later));
        }
        recent.remember(key("new"), published("new", later));
        assert_eq!(recent.entries.len(), REMEMBERED);
        assert!(!recent.entries.contains_key(&key("old")));
        assert!(recent.entries.contains_key(&key("1")));
    }
}
