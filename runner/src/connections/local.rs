//! Loading Connection and Secret manifests for `sluice-runner run`, and
//! writing the secrets to a temporary folder in the pod layout. It only
//! reads the given files and writes that folder; it never prints a secret.

use super::ConnectionStore;
use crate::nodes::custom::{CustomTypes, Scope};
use base64::Engine as _;
use sluice_crds::{Connection, ConnectionSpec, NodeTypeSpec};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why local connection manifests could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or folder could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid YAML, or an object is not a valid Connection or Secret.
    #[error("failed to parse {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Two manifests define the same object.
    #[error("{kind} {name:?} is defined twice ({first} and {second}): keep one")]
    Duplicate {
        /// `Connection` or `Secret`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The file of the first definition.
        first: PathBuf,
        /// The file of the second definition.
        second: PathBuf,
    },
    /// A name or Secret key that cannot be a file name.
    #[error("{what} {name:?} in {path} is not a valid name: use letters, digits, '-', '_' and '.'")]
    InvalidName {
        /// What the name names.
        what: &'static str,
        /// The name.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// A Connection needs secrets but has no `secretRef`.
    #[error(
        "connection {connection:?} (type {type_}) needs the secret keys {keys:?} but has no spec.secretRef: name a Secret holding them"
    )]
    MissingSecretRef {
        /// The Connection.
        connection: String,
        /// Its type.
        type_: &'static str,
        /// The keys it needs.
        keys: Vec<&'static str>,
    },
    /// The Secret a Connection references is not among the manifests.
    #[error(
        "connection {connection:?} references Secret {secret:?}, which is not among the manifests: pass a file defining it with --connections"
    )]
    MissingSecret {
        /// The Connection.
        connection: String,
        /// The Secret it references.
        secret: String,
    },
    /// The Secret lacks a key the Connection's type needs.
    #[error(
        "connection {connection:?} needs key {key:?} in Secret {secret:?}: add it under the Secret's data (base64) or stringData"
    )]
    MissingSecretKey {
        /// The Connection.
        connection: String,
        /// The Secret.
        secret: String,
        /// The missing key.
        key: &'static str,
    },
    /// A `data` value is not base64.
    #[error(
        "Secret {secret:?} key {key:?} is not valid base64 under data: encode it, or move it under stringData"
    )]
    InvalidBase64 {
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
    },
    /// The temporary secrets folder could not be written.
    #[error("failed to write connection secrets to {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Connections loaded from local manifests, with their secrets written to a
/// temporary folder in the pod layout. The folder is deleted when this value
/// is dropped: keep it alive for the whole run.
pub struct LocalConnections {
    store: Arc<ConnectionStore>,
    secrets_dir: tempfile::TempDir,
    node_types: CustomTypes,
}

impl fmt::Debug for LocalConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalConnections")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl LocalConnections {
    /// The store to put in the run's `NodeContext`.
    pub fn store(&self) -> Arc<ConnectionStore> {
        Arc::clone(&self.store)
    }

    /// The temporary folder holding the secrets (`<dir>/<connection>/<key>`).
    pub fn secrets_dir(&self) -> &Path {
        self.secrets_dir.path()
    }

    /// The NodeType and ClusterNodeType manifests found among the files
    /// (a NodeType shadows a ClusterNodeType of the same name).
    pub fn node_types(&self) -> &CustomTypes {
        &self.node_types
    }
}

/// A Secret manifest, reduced to what local runs need.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretManifest {
    metadata: ObjectMeta,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct ObjectMeta {
    #[serde(default)]
    name: String,
}

/// Loads Connection and Secret manifests for `sluice-runner run --connections PATH…`.
///
/// Each path is a YAML file (one or more `---`-separated documents, or a
/// `kind: List`) or a folder whose `.yaml`/`.yml`/`.json` files are read,
/// recursively, in name order. Objects other than Connections and Secrets
/// are ignored, so a folder of workflow manifests can be passed as is; a
/// local run has a single namespace, so namespaces are ignored too. Secret
/// `data` values are base64, `stringData` values plain text (and win).
///
/// Every Connection's Secret must be present with the keys its type needs
/// ([`ConnectionSpec::required_secret_keys`]). The secrets of each
/// Connection are written to a fresh temporary folder as
/// `<dir>/<connection name>/<key>` (mode 0600), the layout the operator
/// mounts in runner pods, and the returned value owns that folder: keep it
/// alive until the run ends, and put [`LocalConnections::store`] in the
/// run's `NodeContext`.
pub fn load_manifests(paths: &[PathBuf]) -> Result<LocalConnections, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    let mut connections: BTreeMap<String, (PathBuf, ConnectionSpec)> = BTreeMap::new();
    let mut secrets: BTreeMap<String, (PathBuf, BTreeMap<String, Vec<u8>>)> = BTreeMap::new();
    let mut node_types = CustomTypes::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|source| LoadError::Read {
            path: file.clone(),
            source,
        })?;
        let parse_error = |message: String| LoadError::Parse {
            path: file.clone(),
            message,
        };
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| parse_error(e.to_string()))?;
        for object in documents.into_iter().flat_map(list_items) {
            match object.get("kind").and_then(serde_json::Value::as_str) {
                Some("Connection") => {
                    let connection: Connection = serde_json::from_value(object)
                        .map_err(|e| parse_error(format!("invalid Connection: {e}")))?;
                    let name = connection.metadata.name.clone().unwrap_or_default();
                    check_name("Connection name", &name, file)?;
                    if let Some((first, _)) = connections.get(&name) {
                        return Err(duplicate("Connection", name, first, file));
                    }
                    connections.insert(name, (file.clone(), connection.spec));
                }
                Some("Secret") => {
                    let secret: SecretManifest = serde_json::from_value(object)
                        .map_err(|e| parse_error(format!("invalid Secret: {e}")))?;
                    let name = secret.metadata.name.clone();
                    check_name("Secret name", &name, file)?;
                    if let Some((first, _)) = secrets.get(&name) {
                        return Err(duplicate("Secret", name, first, file));
                    }
                    let values = decode_secret(secret, file)?;
                    secrets.insert(name, (file.clone(), values));
                }
                Some(kind @ ("NodeType" | "ClusterNodeType")) => {
                    let (scope, what) = if kind == "NodeType" {
                        (Scope::NodeType, "NodeType name")
                    } else {
                        (Scope::ClusterNodeType, "ClusterNodeType name")
                    };
                    let name = object
                        .pointer("/metadata/name")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    check_name(what, &name, file)?;
                    let spec: NodeTypeSpec =
                        serde_json::from_value(object.get("spec").cloned().unwrap_or_default())
                            .map_err(|e| parse_error(format!("invalid {kind} {name:?}: {e}")))?;
                    node_types.insert(name, scope, spec);
                }
                _ => {}
            }
        }
    }

    let secrets_dir = tempfile::Builder::new()
        .prefix("sluice-connections-")
        .tempdir()
        .map_err(|source| LoadError::Write {
            path: std::env::temp_dir(),
            source,
        })?;
    let mut specs = BTreeMap::new();
    for (name, (_, spec)) in connections {
        let required = spec.required_secret_keys();
        match &spec.secret_ref {
            None if !required.is_empty() => {
                return Err(LoadError::MissingSecretRef {
                    connection: name,
                    type_: spec.type_.as_str(),
                    keys: required.to_vec(),
                });
            }
            None => {}
            Some(secret_ref) => {
                let (_, values) =
                    secrets
                        .get(&secret_ref.name)
                        .ok_or_else(|| LoadError::MissingSecret {
                            connection: name.clone(),
                            secret: secret_ref.name.clone(),
                        })?;
                if let Some(key) = required.iter().find(|key| !values.contains_key(**key)) {
                    return Err(LoadError::MissingSecretKey {
                        connection: name,
                        secret: secret_ref.name.clone(),
                        key,
                    });
                }
                write_secret_files(&secrets_dir.path().join(&name), values)?;
            }
        }
        specs.insert(name, spec);
    }
    let store = ConnectionStore::from_dir(secrets_dir.path(), specs);
    Ok(LocalConnections {
        store: Arc::new(store),
        secrets_dir,
        node_types,
    })
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    if !std::fs::metadata(path).map_err(read_error)?.is_dir() {
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_error)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    entries.sort();
    for entry in entries {
        let is_manifest = entry
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "json"));
        if entry.is_dir() || is_manifest {
            collect_files(&entry, files)?;
        }
    }
    Ok(())
}

/// The objects of one document: itself, or the items of a `kind: List`.
fn list_items(document: serde_json::Value) -> Vec<serde_json::Value> {
    let is_list = document
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|kind| kind == "List" || kind.ends_with("List"));
    match document {
        serde_json::Value::Object(mut fields) if is_list => match fields.remove("items") {
            Some(serde_json::Value::Array(items)) => items,
            _ => Vec::new(),
        },
        serde_json::Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn duplicate(kind: &'static str, name: String, first: &Path, second: &Path) -> LoadError {
    LoadError::Duplicate {
        kind,
        name,
        first: first.to_owned(),
        second: second.to_owned(),
    }
}

fn check_name(what: &'static str, name: &str, path: &Path) -> Result<(), LoadError> {
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(LoadError::InvalidName {
            what,
            name: name.to_owned(),
            path: path.to_owned(),
        })
    }
}

fn decode_secret(
    secret: SecretManifest,
    path: &Path,
) -> Result<BTreeMap<String, Vec<u8>>, LoadError> {
    let mut values = BTreeMap::new();
    for (key, encoded) in secret.data {
        check_name("Secret key", &key, path)?;
        let compact: String = encoded.split_whitespace().collect();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| LoadError::InvalidBase64 {
                secret: secret.metadata.name.clone(),
                key: key.clone(),
            })?;
        values.insert(key, decoded);
    }
    for (key, text) in secret.string_data {
        check_name("Secret key", &key, path)?;
        values.insert(key, text.into_bytes());
    }
    Ok(values)
}

fn write_secret_files(dir: &Path, values: &BTreeMap<String, Vec<u8>>) -> Result<(), LoadError> {
    let write_error = |path: &Path| {
        let path = path.to_owned();
        move |source| LoadError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    for (key, value) in values {
        let path = dir.join(key);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(write_error(&path))?;
        std::io::Write::write_all(&mut file, value).map_err(write_error(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const MANIFESTS: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: Connection
metadata: {name: crm-api, namespace: growth}
spec:
  type: http
  config: {baseUrl: "https://crm.example.com", auth: basic}
  secretRef: {name: crm-credentials}
---
apiVersion: v1
kind: Secret
metadata: {name: crm-credentials}
data:
  username: YWRh          # "ada"
  password: czNjcjN0IQ==  # "s3cr3t!"
stringData:
  note: "plain text"
---
apiVersion: sluice.dev/v1alpha1
kind: Workflow
metadata: {name: ignored}
spec: {nodes: []}
"#;

    #[test]
    fn loads_a_folder_and_materialises_secrets_in_the_pod_layout() {
        let manifests = tempfile::tempdir().unwrap();
        write(manifests.path(), "crm.yaml", MANIFESTS);
        write(manifests.path(), "README.md", "not a manifest: skipped");
        let nested = manifests.path().join("more");
        std::fs::create_dir(&nested).unwrap();
        write(
            &nested,
            "slack.yml",
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: sluice.dev/v1alpha1\n  kind: Connection\n  metadata: {name: alerts}\n  spec: {type: slack, secretRef: {name: alerts-hook}}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: alerts-hook}\n  stringData: {webhookUrl: 'https://hooks.example/T/B/x'}\n",
        );

        let local = load_manifests(&[manifests.path().to_owned()]).unwrap();
        let store = local.store();
        assert_eq!(store.names().collect::<Vec<_>>(), ["alerts", "crm-api"]);
        let crm = store.get("crm-api").unwrap();
        assert_eq!(crm.config("baseUrl"), Some("https://crm.example.com"));
        assert_eq!(crm.secret("username").unwrap(), "ada");
        assert_eq!(crm.secret("password").unwrap(), "s3cr3t!");
        assert_eq!(crm.secret("note").unwrap(), "plain text");
        assert_eq!(
            std::fs::read_to_string(local.secrets_dir().join("crm-api/password")).unwrap(),
            "s3cr3t!"
        );
        let alerts = store.get("alerts").unwrap();
        assert_eq!(
            alerts.secret("webhookUrl").unwrap(),
            "https://hooks.example/T/B/x"
        );
        assert!(!format!("{local:?} {crm:?}").contains("s3cr3t"));

        let dir = local.secrets_dir().to_owned();
        drop(local);
        assert!(
            !dir.exists(),
            "the secrets folder is removed with the value"
        );
    }

    #[test]
    fn a_missing_required_key_names_connection_secret_and_key() {
        let manifests = tempfile::tempdir().unwrap();
        let file = write(
            manifests.path(),
            "c.yaml",
            "kind: Connection\napiVersion: sluice.dev/v1alpha1\nmetadata: {name: crm}\nspec: {type: http, config: {auth: bearer}, secretRef: {name: crm-token}}\n---\nkind: Secret\napiVersion: v1\nmetadata: {name: crm-token}\nstringData: {tokn: typo}\n",
        );
        let error = load_manifests(&[file]).unwrap_err().to_string();
        assert!(error.contains("\"crm\""), "{error}");
        assert!(error.contains("\"crm-token\""), "{error}");
        assert!(error.contains("\"token\""), "{error}");
    }

    #[test]
    fn a_missing_secret_and_bad_base64_are_explained() {
        let manifests = tempfile::tempdir().unwrap();
        let file = write(
            manifests.path(),
            "c.yaml",
            "kind: Connection\napiVersion: sluice.dev/v1alpha1\nmetadata: {name: db}\nspec: {type: postgres, secretRef: {name: db-password}}\n",
        );
        let error = load_manifests(std::slice::from_ref(&file))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"db\"")
                && error.contains("\"db-password\"")
                && error.contains("not among the manifests"),
            "{error}"
        );

        let secret = write(
            manifests.path(),
            "s.yaml",
            "kind: Secret\napiVersion: v1\nmetadata: {name: db-password}\ndata: {password: 'not base64!'}\n",
        );
        let error = load_manifests(&[file, secret]).unwrap_err().to_string();
        assert!(
            error.contains("\"password\"") && error.contains("base64"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_and_unsafe_names_are_rejected() {
        let manifests = tempfile::tempdir().unwrap();
        let one = write(
            manifests.path(),
            "a.yaml",
            "kind: Secret\napiVersion: v1\nmetadata: {name: s}\n",
        );
        let two = write(
            manifests.path(),
            "b.yaml",
            "kind: Secret\napiVersion: v1\nmetadata: {name: s}\n",
        );
        let error = load_manifests(&[one, two]).unwrap_err().to_string();
        assert!(error.contains("defined twice"), "{error}");

        let bad = write(
            manifests.path(),
            "c.yaml",
            "kind: Secret\napiVersion: v1\nmetadata: {name: t}\nstringData: {'../escape': x}\n",
        );
        let error = load_manifests(&[bad]).unwrap_err().to_string();
        assert!(error.contains("not a valid name"), "{error}");
    }

    #[test]
    fn the_example_connections_load() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/crm-connection.yaml");
        let local = load_manifests(&[example]).unwrap();
        let store = local.store();
        assert_eq!(
            store.names().collect::<Vec<_>>(),
            ["crm-api", "sales-slack"]
        );
        assert_eq!(
            store
                .get("sales-slack")
                .unwrap()
                .secret("webhookUrl")
                .unwrap(),
            "https://hooks.slack.com/services/T000/B000/replace-me"
        );
    }
}
