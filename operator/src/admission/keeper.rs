//! Keeps the admission port's certificate current: reads the Secret,
//! renews what [`plan_certificates`] says (self-managed) and writes it back
//! with optimistic concurrency, loads the serving certificate into the TLS
//! resolver, and patches the `caBundle` of the webhook configurations.
//! With cert-manager it only reads the Secret cert-manager writes.
//!
//! Every replica runs this. Replicas racing to renew all end up serving
//! the winner's certificate: a write that loses (409) re-reads and plans
//! again.

use super::certs::{self, CertAction, CertPolicy, StoredCerts, plan_certificates};
use super::settings::{AdmissionConfig, CertSource};
use super::tls::ReloadableCert;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// Reading or writing an object failed.
    #[error("failed to {action}: {source}")]
    Kube {
        /// What was attempted.
        action: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Issuing a certificate failed.
    #[error(transparent)]
    Issue(#[from] certs::IssueError),
    /// The Secret's certificate could not be served.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    /// The Secret lacks the serving certificate (cert-manager has not written it yet).
    #[error("secret {0} has no tls.crt and tls.key yet")]
    NotIssued(String),
    /// Other replicas kept winning the write.
    #[error("failed to store the admission certificates in secret {0}: it kept changing")]
    Contended(String),
}

fn kube_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> KeeperError {
    let action = action.into();
    move |source| KeeperError::Kube { action, source }
}

/// The certificate keeper of one replica.
pub struct Keeper {
    client: Client,
    namespace: String,
    settings: AdmissionConfig,
    policy: CertPolicy,
    cert: Arc<ReloadableCert>,
}

impl Keeper {
    /// A keeper storing its Secret in `namespace` (the operator's).
    pub fn new(
        client: Client,
        namespace: String,
        settings: AdmissionConfig,
        cert: Arc<ReloadableCert>,
    ) -> Self {
        Self {
            client,
            namespace,
            settings,
            policy: CertPolicy::default(),
            cert,
        }
    }

    /// Refreshes until `stopping`: at start, every check interval, and
    /// every 10 seconds while a refresh fails.
    pub async fn run(self, mut stopping: watch::Receiver<bool>) {
        loop {
            let wait = match self.refresh().await {
                Ok(()) => self.settings.admission_check_interval,
                Err(error) => {
                    tracing::warn!(%error, "failed to refresh the admission certificate; retrying");
                    Duration::from_secs(10)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopping.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// One round: renew if due, serve, publish the CA.
    pub async fn refresh(&self) -> Result<(), KeeperError> {
        let stored = match self.settings.admission_certs {
            CertSource::SelfManaged => self.renew().await?,
            CertSource::CertManager => self.read().await?.unwrap_or_default(),
        };
        let (cert, key) = stored
            .serving()
            .ok_or_else(|| KeeperError::NotIssued(self.secret_name()))?;
        self.cert.load(cert, key)?;
        if self.settings.admission_certs == CertSource::SelfManaged
            && let Some(bundle) = stored.ca_bundle()
        {
            self.publish(bundle).await?;
        }
        Ok(())
    }

    fn secret_name(&self) -> String {
        format!("{}/{}", self.namespace, self.settings.admission_secret)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn read_secret(&self) -> Result<Option<Secret>, KeeperError> {
        self.secrets()
            .get_opt(&self.settings.admission_secret)
            .await
            .map_err(kube_error(format!("read secret {}", self.secret_name())))
    }

    async fn read(&self) -> Result<Option<StoredCerts>, KeeperError> {
        Ok(self.read_secret().await?.map(|secret| stored_of(&secret)))
    }

    async fn renew(&self) -> Result<StoredCerts, KeeperError> {
        for _ in 0..5 {
            let secret = self.read_secret().await?;
            let stored = secret.as_ref().map(stored_of);
            let now = chrono::Utc::now();
            let names = &self.settings.admission_dns_names;
            let action = plan_certificates(stored.as_ref(), names, &self.policy, now);
            if action == CertAction::Keep {
                return Ok(stored.unwrap_or_default());
            }
            tracing::info!(?action, secret = %self.secret_name(), "issuing admission certificates");
            let next = certs::issue(&action, stored.as_ref(), names, &self.policy, now)?;
            let written = match secret {
                None => {
                    self.secrets()
                        .create(&PostParams::default(), &self.secret_of(&next, None))
                        .await
                }
                Some(current) => {
                    self.secrets()
                        .replace(
                            &self.settings.admission_secret,
                            &PostParams::default(),
                            &self.secret_of(&next, Some(current.metadata)),
                        )
                        .await
                }
            };
            match written {
                Ok(_) => return Ok(next),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => {
                    return Err(kube_error(format!("write secret {}", self.secret_name()))(
                        error,
                    ));
                }
            }
        }
        Err(KeeperError::Contended(self.secret_name()))
    }

    fn secret_of(&self, stored: &StoredCerts, current: Option<ObjectMeta>) -> Secret {
        let mut metadata = current.unwrap_or_else(|| ObjectMeta {
            name: Some(self.settings.admission_secret.clone()),
            namespace: Some(self.namespace.clone()),
            ..ObjectMeta::default()
        });
        let mut annotations = metadata.annotations.take().unwrap_or_default();
        annotations.extend(stored.annotations.clone());
        metadata.annotations = Some(annotations);
        Secret {
            metadata,
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(
                stored
                    .data
                    .iter()
                    .map(|(key, value)| (key.clone(), ByteString(value.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    /// Sets `caBundle` on every webhook of both configurations that lacks it.
    async fn publish(&self, bundle: &str) -> Result<(), KeeperError> {
        let name = &self.settings.admission_webhook_config;
        let wanted = ByteString(bundle.as_bytes().to_vec());
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        if let Some(mut config) = validating.get_opt(name).await.map_err(kube_error(format!(
            "read ValidatingWebhookConfiguration {name}"
        )))? {
            let webhooks = config.webhooks.get_or_insert_default();
            if set_bundles(
                webhooks.iter_mut().map(|w| &mut w.client_config.ca_bundle),
                &wanted,
            ) {
                validating
                    .replace(name, &PostParams::default(), &config)
                    .await
                    .map_err(kube_error(format!(
                        "patch the caBundle of ValidatingWebhookConfiguration {name}"
                    )))?;
                tracing::info!(%name, "published the admission CA to the ValidatingWebhookConfiguration");
            }
        }
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        if let Some(mut config) = mutating.get_opt(name).await.map_err(kube_error(format!(
            "read MutatingWebhookConfiguration {name}"
        )))? {
            let webhooks = config.webhooks.get_or_insert_default();
            if set_bundles(
                webhooks.iter_mut().map(|w| &mut w.client_config.ca_bundle),
                &wanted,
            ) {
                mutating
                    .replace(name, &PostParams::default(), &config)
                    .await
                    .map_err(kube_error(format!(
                        "patch the caBundle of MutatingWebhookConfiguration {name}"
                    )))?;
                tracing::info!(%name, "published the admission CA to the MutatingWebhookConfiguration");
            }
        }
        Ok(())
    }
}

/// Sets every bundle to `wanted`; whether anything changed.
fn set_bundles<'a>(
    bundles: impl Iterator<Item = &'a mut Option<ByteString>>,
    wanted: &ByteString,
) -> bool {
    let mut changed = false;
    for bundle in bundles {
        if bundle.as_ref() != Some(wanted) {
            *bundle = Some(wanted.clone());
            changed = true;
        }
    }
    changed
}

fn stored_of(secret: &Secret) -> StoredCerts {
    let data: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), String::from_utf8(value.0.clone()).ok()?)))
        .collect();
    StoredCerts {
        data,
        annotations: secret.metadata.annotations.clone().unwrap_or_default(),
    }
}
