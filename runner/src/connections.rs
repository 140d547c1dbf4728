//! Connections as nodes see them: the Connection's spec (type and
//! non-secret config) and its secret values, read from files laid out as
//! `<dir>/<connection name>/<secret key>` — the layout the operator mounts
//! in runner pods ([`ConnectionStore::from_dir`]) and `sluice-runner run`
//! materialises locally from manifests ([`load_manifests`]).
//!
//! Secret values are held in memory only as long as the run needs them and
//! never appear in `Debug` output or errors; [`Redactor`] removes them from
//! text a remote server echoes back. Nothing here talks to a server.

mod local;
mod redact;

pub use local::{LoadError, LocalConnections, load_manifests};
pub(crate) use redact::percent_encode;
pub use redact::{REDACTED, Redactor};

use crate::node::NodeError;
use sluice_crds::ConnectionSpec;
use sluice_crds::connection::{CONNECTIONS_DIR, CONNECTIONS_DIR_ENV};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The connections available to a run.
#[derive(Default)]
pub struct ConnectionStore {
    specs: BTreeMap<String, ConnectionSpec>,
    secrets_dir: Option<PathBuf>,
}

impl fmt::Debug for ConnectionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionStore")
            .field("connections", &self.specs.keys().collect::<Vec<_>>())
            .field("secrets_dir", &self.secrets_dir)
            .finish()
    }
}

/// A connection resolved for one node: its spec and a way to read secrets.
pub struct ResolvedConnection<'a> {
    /// Name of the Connection.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a ConnectionSpec,
    secrets_dir: Option<PathBuf>,
}

impl fmt::Debug for ResolvedConnection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedConnection")
            .field("name", &self.name)
            .field("type", &self.spec.type_)
            .finish_non_exhaustive()
    }
}

/// The folder holding connection secrets in a runner pod:
/// `$SLUICE_CONNECTIONS_DIR` when set, else [`CONNECTIONS_DIR`].
pub fn pod_connections_dir() -> PathBuf {
    std::env::var_os(CONNECTIONS_DIR_ENV)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CONNECTIONS_DIR))
}

impl ConnectionStore {
    /// A store of `specs` whose secrets live under `secrets_dir`.
    pub fn new(specs: BTreeMap<String, ConnectionSpec>, secrets_dir: Option<PathBuf>) -> Self {
        Self { specs, secrets_dir }
    }

    /// A store of `specs` whose secrets are mounted under `dir` with the pod
    /// layout `<dir>/<connection name>/<secret key>` (in a runner pod:
    /// [`pod_connections_dir`]). Files are read when a node asks for them.
    pub fn from_dir(dir: impl Into<PathBuf>, specs: BTreeMap<String, ConnectionSpec>) -> Self {
        Self::new(specs, Some(dir.into()))
    }

    /// Names of the known connections.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.specs.keys().map(String::as_str)
    }

    /// The connection `name`, or an error telling the user how to provide it.
    pub fn get(&self, name: &str) -> Result<ResolvedConnection<'_>, NodeError> {
        let (name, spec) = self.specs.get_key_value(name).ok_or_else(|| {
            NodeError::permanent(format!(
                "connection {name:?} not found: create a Connection named {name:?} in this namespace (locally: pass its manifest with --connections)"
            ))
        })?;
        Ok(ResolvedConnection {
            name,
            spec,
            secrets_dir: self.secrets_dir.as_ref().map(|dir| dir.join(name)),
        })
    }
}

impl ResolvedConnection<'_> {
    /// The folder holding this connection's secret files, one per key.
    pub fn secrets_dir(&self) -> Option<&Path> {
        self.secrets_dir.as_deref()
    }

    /// A non-secret config value.
    pub fn config(&self, key: &str) -> Option<&str> {
        self.spec.config.get(key).map(String::as_str)
    }

    /// The secret value under `key`, trimmed of one trailing newline.
    pub fn secret(&self, key: &str) -> Result<String, NodeError> {
        let missing = || {
            NodeError::permanent(format!(
                "connection {:?} has no secret key {key:?}: add it to the Secret named in its secretRef",
                self.name
            ))
        };
        let dir = self.secrets_dir.as_deref().ok_or_else(missing)?;
        let text = read_secret_file(&dir.join(key)).ok_or_else(missing)?;
        Ok(text)
    }

    /// The secret value under `key`, if present.
    pub fn optional_secret(&self, key: &str) -> Option<String> {
        self.secrets_dir
            .as_deref()
            .and_then(|dir| read_secret_file(&dir.join(key)))
    }

    /// A redactor of every secret value of this connection (all files in its
    /// folder, whether or not the node uses them).
    pub fn redactor(&self) -> Redactor {
        let mut redactor = Redactor::default();
        let Some(dir) = self.secrets_dir.as_deref() else {
            return redactor;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return redactor;
        };
        for entry in entries.flatten() {
            // Mounted Secrets hold `..data` symlinks and dot folders; keys never start with a dot.
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if let Some(value) = read_secret_file(&entry.path()) {
                redactor.add(&value);
            }
        }
        redactor
    }
}

fn read_secret_file(path: &Path) -> Option<String> {
    let mut text = std::fs::read_to_string(path).ok()?;
    if text.ends_with('\n') {
        text.pop();
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_dir_reads_the_pod_layout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("db/password"), "hunter2\n").unwrap();
        let spec = ConnectionSpec {
            type_: sluice_crds::ConnectionType::Postgres,
            ..ConnectionSpec::default()
        };
        let store =
            ConnectionStore::from_dir(dir.path(), BTreeMap::from([("db".to_owned(), spec)]));
        let db = store.get("db").unwrap();
        assert_eq!(db.secret("password").unwrap(), "hunter2");
        assert_eq!(db.optional_secret("username"), None);
        let redacted = db.redactor().redact("password hunter2 / aHVudGVyMg==");
        assert_eq!(redacted, "password [REDACTED] / [REDACTED]");
        assert!(
            store
                .get("other")
                .unwrap_err()
                .message
                .contains("not found")
        );
    }
}
