//! Watch streams: newline-delimited `{"type": …, "object": …}` events read
//! from a resource type's event log.
//!
//! A watch starts from `resourceVersion` (every kept change after it is
//! replayed; a version older than the kept history answers a 410 `ERROR`
//! event, as the real server does, so kube's watcher relists) or, with no
//! version or "0", from synthetic ADDED events for the current state. Each
//! watcher reads the shared log at its own pace, so a slow client never
//! loses events. With `allowWatchBookmarks`, a BOOKMARK carrying the latest
//! version is sent when the stream has been idle for the bookmark interval
//! and when `timeoutSeconds` ends the stream. Changes that move an object in
//! or out of a selector are sent as ADDED/DELETED.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures::SinkExt;
use futures::channel::mpsc;
use serde_json::{Value, json};

use super::registry::ResourceType;
use super::selector::Selector;
use super::status::ApiError;
use super::store::{EventType, LogEntry, Store, meta_str};

/// What one watch request asked for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// The watched type.
    pub resource: ResourceType,
    /// The version the client speaks (for `apiVersion` of sent objects).
    pub version: String,
    /// Only this namespace, or all.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: Selector,
    /// `fieldSelector`.
    pub fields: Selector,
    /// `resourceVersion` to start after; `None` for "current state first".
    pub since: Option<u64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// Idle time before a bookmark.
    pub bookmark_interval: Duration,
    /// Send `PartialObjectMetadata` instead of whole objects.
    pub metadata_only: bool,
}

impl WatchRequest {
    fn selected(&self, object: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|namespace| meta_str(object, "namespace") == namespace)
            && self.labels.matches_labels(object)
            && self.fields.matches_fields(object)
    }

    fn render(&self, event: &str, object: &Value) -> Bytes {
        let mut object = object.clone();
        object["apiVersion"] = json!(self.resource.api_version(&self.version));
        object["kind"] = json!(self.resource.kind);
        if self.metadata_only {
            object = super::handlers::partial_metadata(&object);
        }
        let mut line = json!({"type": event, "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    /// The event to send for a logged change, if the client selected it.
    fn translate(&self, entry: &LogEntry) -> Option<Bytes> {
        let now = self.selected(&entry.object);
        let before = entry
            .previous
            .as_deref()
            .map(|previous| self.selected(previous));
        let event = match (entry.event, before, now) {
            (EventType::Modified, Some(false), true) => EventType::Added,
            (EventType::Modified, Some(true), false) => EventType::Deleted,
            (_, _, false) => return None,
            (event, _, true) => event,
        };
        Some(self.render(event.as_str(), &entry.object))
    }

    fn bookmark(&self, resource_version: u64) -> Bytes {
        self.render(
            "BOOKMARK",
            &json!({"metadata": {"resourceVersion": resource_version.to_string()}}),
        )
    }

    fn error(&self, error: &ApiError) -> Bytes {
        let mut line = json!({"type": "ERROR", "object": error.to_status()}).to_string();
        line.push('\n');
        Bytes::from(line)
    }
}

type Sender = mpsc::Sender<Result<Bytes, Infallible>>;

/// Reads the log after `position`; `Err` carries the 410 to send.
fn drain(
    store: &Store,
    request: &WatchRequest,
    position: u64,
) -> Result<(Vec<Bytes>, u64), ApiError> {
    let state = store.lock();
    let entries = state.events_since(&request.resource.key(), position)?;
    let lines = entries
        .iter()
        .filter_map(|entry| request.translate(entry))
        .collect();
    Ok((lines, state.resource_version))
}

async fn run(store: Store, request: WatchRequest, mut sender: Sender) {
    let mut changes = store.subscribe();
    let deadline = tokio::time::Instant::now() + request.timeout;
    let mut position = match request.since {
        Some(since) => since,
        None => {
            let (lines, current) = {
                let state = store.lock();
                let lines: Vec<Bytes> = state
                    .list(&request.resource.key(), request.namespace.as_deref())
                    .into_iter()
                    .filter(|object| request.selected(object))
                    .map(|object| request.render("ADDED", object))
                    .collect();
                (lines, state.resource_version)
            };
            for line in lines {
                if sender.send(Ok(line)).await.is_err() {
                    return;
                }
            }
            current
        }
    };
    loop {
        if sender.is_closed() {
            return;
        }
        changes.borrow_and_update();
        match drain(&store, &request, position) {
            Ok((lines, current)) => {
                for line in lines {
                    if sender.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
                position = current;
            }
            Err(gone) => {
                let _ = sender.send(Ok(request.error(&gone))).await;
                return;
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if request.bookmarks {
                    let _ = sender.send(Ok(request.bookmark(position))).await;
                }
                return;
            }
            () = tokio::time::sleep(request.bookmark_interval) => {
                if request.bookmarks && sender.send(Ok(request.bookmark(position))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Starts a watch and returns the streaming response.
pub fn respond(store: Store, request: WatchRequest) -> Response {
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(run(store, request, sender));
    let mut response = Response::new(Body::from_stream(receiver));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
