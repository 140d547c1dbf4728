//! Connections as nodes see them: the Connection's spec (type and
//! non-secret config) and its secret values, read from files laid out as
//! `<dir>/<connection name>/<secret key>` — the layout the operator mounts
//! in runner pods and `sluice-runner run` materialises locally.
//!
//! Secret values are held in memory only as long as the run needs them and
//! never appear in `Debug` output or errors.

use crate::node::NodeError;
use sluice_crds::ConnectionSpec;
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

impl ConnectionStore {
    /// A store of `specs` whose secrets live under `secrets_dir`.
    pub fn new(specs: BTreeMap<String, ConnectionSpec>, secrets_dir: Option<PathBuf>) -> Self {
        Self { specs, secrets_dir }
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
}

fn read_secret_file(path: &Path) -> Option<String> {
    let mut text = std::fs::read_to_string(path).ok()?;
    if text.ends_with('\n') {
        text.pop();
    }
    Some(text)
}
