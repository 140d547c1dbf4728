//! [`TestCluster`]: the Kubernetes API one end-to-end test talks to.
//!
//! Without `SLUICE_E2E_KUBECONFIG` it starts a fresh API server stand-in
//! (one per test, so tests never share state); with it, it connects to that
//! cluster. Either way it applies the CRDs found in `charts/sluice/files/crds/`,
//! creates a fresh namespace for the test, writes a kubeconfig whose default
//! namespace is that namespace (for child processes such as the operator),
//! and hands out a `kube::Client` built from that kubeconfig — the same path
//! the operator's client takes. It also starts the kubelet emulator unless
//! `SLUICE_E2E_KUBELET` is `cluster` (the cluster's nodes run pods) or `none`
//! (nobody runs pods: benchmarks that measure only Job creation). It does not
//! run the operator.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use crate::apiserver::{ApiServer, StartError};
use crate::binaries::{Binary, locate, workspace_root};
use crate::kubelet::{Kubelet, KubeletOptions};

/// Environment variable naming a kubeconfig of a real cluster to test against.
pub const KUBECONFIG_ENV: &str = "SLUICE_E2E_KUBECONFIG";
/// Environment variable choosing who runs pods; see [`KubeletMode`].
pub const KUBELET_ENV: &str = "SLUICE_E2E_KUBELET";

/// Who runs the pods of the Jobs the operator creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeletMode {
    /// Unset: the kubelet emulator runs each Job's command as a local process.
    Emulator,
    /// `cluster`: a real cluster's nodes run them (needs a runner image).
    Cluster,
    /// `none`: nobody does; Jobs stay pending. For benchmarks that measure
    /// only how fast Jobs are created.
    None,
}

impl KubeletMode {
    /// The mode `SLUICE_E2E_KUBELET` asks for; any other value is the emulator.
    pub fn from_env() -> Self {
        match std::env::var(KUBELET_ENV).as_deref() {
            Ok("cluster") => Self::Cluster,
            Ok("none") => Self::None,
            _ => Self::Emulator,
        }
    }
}
/// Field manager of everything the harness applies.
pub const FIELD_MANAGER: &str = "sluice-e2e";

/// Errors setting up or using a test cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The stand-in did not start.
    #[error("failed to start the api server stand-in")]
    StartStandIn(#[from] StartError),
    /// A kubeconfig could not be read or used.
    #[error("failed to load kubeconfig {path}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A kube request failed.
    #[error("failed to {action}")]
    Kube {
        /// What the harness was doing.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A file could not be read or written.
    #[error("failed to access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A manifest was not valid YAML or not a Kubernetes object.
    #[error("failed to parse manifest {path}: {message}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A condition was not reached in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Kube { action, source }
}

/// Where the API comes from.
#[derive(Debug)]
enum Backend {
    StandIn(ApiServer),
    External,
}

/// One test's cluster, namespace, client and kubelet.
pub struct TestCluster {
    backend: Backend,
    client: kube::Client,
    namespace: String,
    kubeconfig: PathBuf,
    kubelet: Option<Kubelet>,
    /// Namespaces made by [`TestCluster::create_namespace`], each with its
    /// own kubelet emulator.
    more_namespaces: Vec<(String, Option<Kubelet>)>,
    workdir: tempfile::TempDir,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TestCluster")
            .field("backend", &self.backend)
            .field("namespace", &self.namespace)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

/// Installs ring as the process-wide rustls provider (kube's TLS needs one; a
/// second install is harmless).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn namespace_name(test: &str) -> String {
    let cleaned: String = test
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let mut base = format!("e2e-{}", cleaned.trim_matches('-'));
    base.truncate(63 - 6);
    format!("{}-{}", base.trim_end_matches('-'), &suffix[..5])
}

async fn client_from(path: &Path) -> Result<kube::Client, ClusterError> {
    install_crypto_provider();
    let wrap = |source: Box<dyn std::error::Error + Send + Sync>| ClusterError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|error| wrap(Box::new(error)))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| wrap(Box::new(error)))?;
    kube::Client::try_from(config).map_err(|error| wrap(Box::new(error)))
}

fn write_file(path: &Path, contents: &str) -> Result<(), ClusterError> {
    std::fs::write(path, contents).map_err(|source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A kubeconfig for a real cluster, with every context's namespace set to the test's.
fn rewrite_kubeconfig(source: &Path, namespace: &str, target: &Path) -> Result<(), ClusterError> {
    let mut kubeconfig =
        Kubeconfig::read_from(source).map_err(|error| ClusterError::Kubeconfig {
            path: source.to_path_buf(),
            source: Box::new(error),
        })?;
    for context in &mut kubeconfig.contexts {
        if let Some(context) = context.context.as_mut() {
            context.namespace = Some(namespace.to_string());
        }
    }
    let yaml = serde_json::to_string(&kubeconfig).map_err(|error| ClusterError::Manifest {
        path: source.to_path_buf(),
        message: error.to_string(),
    })?;
    write_file(target, &yaml)
}

impl TestCluster {
    /// Sets up the cluster for one test; `test` names its namespace.
    pub async fn start(test: &str) -> Result<Self, ClusterError> {
        let workdir = tempfile::Builder::new()
            .prefix("sluice-e2e-")
            .tempdir()
            .map_err(|source| ClusterError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let namespace = namespace_name(test);
        let kubeconfig = workdir.path().join("kubeconfig");
        let backend = match std::env::var_os(KUBECONFIG_ENV).filter(|value| !value.is_empty()) {
            Some(external) => {
                rewrite_kubeconfig(Path::new(&external), &namespace, &kubeconfig)?;
                Backend::External
            }
            None => {
                let server = ApiServer::start().await?;
                write_file(&kubeconfig, &server.kubeconfig_yaml(&namespace))?;
                Backend::StandIn(server)
            }
        };
        let client = client_from(&kubeconfig).await?;
        let mut cluster = Self {
            backend,
            client,
            namespace,
            kubeconfig,
            kubelet: None,
            more_namespaces: Vec::new(),
            workdir,
        };
        cluster.apply_chart_crds().await?;
        let namespace = cluster.namespace.clone();
        cluster.kubelet = cluster.make_namespace(&namespace, "kubelet").await?;
        Ok(cluster)
    }

    /// Creates namespace `name` (labelled as the test's) and, with the
    /// kubelet emulator, starts one for its Jobs with its files in `folder`.
    async fn make_namespace(
        &self,
        name: &str,
        folder: &str,
    ) -> Result<Option<Kubelet>, ClusterError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let object = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"sluice.dev/e2e": "true"}},
        }))
        .map_err(|error| ClusterError::Manifest {
            path: PathBuf::from("<namespace>"),
            message: error.to_string(),
        })?;
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .map_err(kube_error(format!("create namespace {name}")))?;
        if KubeletMode::from_env() != KubeletMode::Emulator {
            return Ok(None);
        }
        let mut options = KubeletOptions::new(self.workdir.path().join(folder)).namespace(name);
        // Jobs name the workspace binaries by command name; a missing one
        // fails its pod with a message (and `binaries::locate` says how to build it).
        for binary in [Binary::Runner, Binary::Operator] {
            if let Ok(path) = locate(binary) {
                options = options.program(binary.name(), path);
            }
        }
        // The example custom node type's image runs examples/custom-node/greeter.py.
        options = options.program(
            "sluice-greeter-node",
            crate::binaries::workspace_root().join("examples/custom-node/greeter.py"),
        );
        Ok(Some(Kubelet::start(self.client.clone(), options)))
    }

    /// Creates one more namespace for the test, `<test's namespace>-<suffix>`,
    /// whose Jobs run as the test's do; [`TestCluster::finish`] deletes it
    /// on a real cluster. Returns its name.
    pub async fn create_namespace(&mut self, suffix: &str) -> Result<String, ClusterError> {
        let name = format!("{}-{suffix}", self.namespace);
        let kubelet = self
            .make_namespace(&name, &format!("kubelet-{suffix}"))
            .await?;
        self.more_namespaces.push((name.clone(), kubelet));
        Ok(name)
    }

    /// A client whose default namespace is the test's.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The test's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A kubeconfig file for child processes (default namespace: the test's).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A scratch folder that lives as long as the cluster.
    pub fn workdir(&self) -> &Path {
        self.workdir.path()
    }

    /// The stand-in, when the test does not run against a real cluster.
    pub fn stand_in(&self) -> Option<&ApiServer> {
        match &self.backend {
            Backend::StandIn(server) => Some(server),
            Backend::External => None,
        }
    }

    /// The kubelet emulator, when [`KubeletMode::Emulator`].
    pub fn kubelet(&self) -> Option<&Kubelet> {
        self.kubelet.as_ref()
    }

    /// Applies every CRD in `charts/sluice/files/crds/*.yaml` and waits until each is established.
    pub async fn apply_chart_crds(&self) -> Result<(), ClusterError> {
        let folder = workspace_root().join("charts/sluice/files/crds");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&folder) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.extension()
                        .is_some_and(|extension| extension == "yaml" || extension == "yml")
                })
                .collect(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(ClusterError::Io {
                    path: folder,
                    source,
                });
            }
        };
        files.sort();
        for file in files {
            self.apply_file(&file).await?;
        }
        Ok(())
    }

    /// Applies every document of a YAML file with server-side apply
    /// (CRDs are waited for until established).
    pub async fn apply_file(&self, path: &Path) -> Result<Vec<DynamicObject>, ClusterError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClusterError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|error| ClusterError::Manifest {
                path: path.to_path_buf(),
                message: error.to_string(),
            })?;
        let mut applied = Vec::new();
        for document in documents.into_iter().filter(|document| !document.is_null()) {
            applied.push(self.apply_value(document, path).await?);
        }
        Ok(applied)
    }

    /// Applies one object given as JSON; namespaced objects without a
    /// namespace go to the test's namespace.
    pub async fn apply_value(
        &self,
        document: Value,
        origin: &Path,
    ) -> Result<DynamicObject, ClusterError> {
        let manifest_error = |message: &str| ClusterError::Manifest {
            path: origin.to_path_buf(),
            message: message.to_string(),
        };
        let api_version = document
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| manifest_error("apiVersion is missing"))?;
        let kind = document
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| manifest_error("kind is missing"))?;
        let name = document
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| manifest_error("metadata.name is missing"))?
            .to_string();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(kube_error(format!("discover {api_version} {kind}")))?;
        let api: Api<DynamicObject> = if capabilities.scope == kube::discovery::Scope::Namespaced {
            let namespace = document
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(&self.namespace);
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&document),
            )
            .await
            .map_err(kube_error(format!("apply {kind} {name}")))?;
        if kind == "CustomResourceDefinition" {
            self.wait_established(&name).await?;
        }
        Ok(applied)
    }

    /// Waits until a CRD reports `Established`.
    pub async fn wait_established(&self, name: &str) -> Result<(), ClusterError> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let limit = Duration::from_secs(30);
        let started = tokio::time::Instant::now();
        loop {
            let crd = crds
                .get(name)
                .await
                .map_err(kube_error(format!("get crd {name}")))?;
            let established = crd
                .status
                .and_then(|status| status.conditions)
                .unwrap_or_default()
                .iter()
                .any(|condition| condition.type_ == "Established" && condition.status == "True");
            if established {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(ClusterError::Timeout(
                    limit,
                    format!("crd {name} to be established"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the test: stops the kubelets and, on a real cluster, deletes the
    /// namespaces (the stand-in just stops).
    pub async fn finish(mut self) -> Result<(), ClusterError> {
        self.kubelet.take();
        let more: Vec<String> = self
            .more_namespaces
            .drain(..)
            .map(|(name, _kubelet)| name)
            .collect();
        if matches!(self.backend, Backend::External) {
            let namespaces: Api<Namespace> = Api::all(self.client.clone());
            for name in more.iter().chain([&self.namespace]) {
                namespaces
                    .delete(name, &DeleteParams::background())
                    .await
                    .map_err(kube_error(format!("delete namespace {name}")))?;
            }
        }
        Ok(())
    }
}
