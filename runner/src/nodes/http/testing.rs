//! Test support shared by the I/O node tests (`http`, `postgres`,
//! `notify`): connections with secrets in a temporary pod-layout folder, a
//! node context, recorded log lines, and axum servers on 127.0.0.1.

use crate::connections::ConnectionStore;
use crate::node::{Attempt, LogLevel, LogSink, NodeContext, RunInfo};
use axum::Router;
use sluice_crds::{ConnectionSpec, ConnectionType, LocalObjectReference};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Connections for a test, with their secrets in a temporary pod-layout folder.
pub(crate) struct TestConnections {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) store: Arc<ConnectionStore>,
}

/// Key/value pairs: a connection's config or its secrets.
pub(crate) type Pairs<'a> = &'a [(&'a str, &'a str)];

/// Builds connections from `(name, type, config, secrets)`.
pub(crate) fn connections(
    entries: &[(&str, ConnectionType, Pairs<'_>, Pairs<'_>)],
) -> TestConnections {
    let dir = tempfile::tempdir().unwrap();
    let mut specs = BTreeMap::new();
    for (name, type_, config, secrets) in entries {
        std::fs::create_dir(dir.path().join(name)).unwrap();
        for (key, value) in *secrets {
            std::fs::write(dir.path().join(name).join(key), value).unwrap();
        }
        let spec = ConnectionSpec {
            type_: *type_,
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            secret_ref: Some(LocalObjectReference {
                name: format!("{name}-secret"),
            }),
            verify: None,
            oauth2: None,
        };
        specs.insert((*name).to_owned(), spec);
    }
    let store = Arc::new(ConnectionStore::from_dir(dir.path(), specs));
    TestConnections { _dir: dir, store }
}

/// Log lines nodes emitted, to assert secrets never reach them.
#[derive(Default)]
pub(crate) struct RecordedLogs(pub(crate) Mutex<Vec<String>>);

impl LogSink for RecordedLogs {
    fn log(&self, node: &str, level: LogLevel, message: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{node} {level:?} {message}"));
    }
}

/// A context over `connections`, with a shared client like the engine's.
pub(crate) fn context(connections: &TestConnections, logs: Arc<RecordedLogs>) -> NodeContext {
    let _ = rustls::crypto::ring::default_provider().install_default();
    NodeContext {
        run: RunInfo::default(),
        connections: Arc::clone(&connections.store),
        http: reqwest::Client::builder().build().unwrap(),
        logs,
        run_api: None,
        memory: Arc::default(),
    }
}

/// Serves `router` on a random port of 127.0.0.1; returns its base URL.
pub(crate) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// A URL on which nothing listens.
pub(crate) async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

pub(crate) fn attempt() -> Attempt {
    Attempt {
        node: "test".to_owned(),
        number: 1,
        item: None,
    }
}
