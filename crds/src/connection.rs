//! The `Connection` resource: an endpoint and the Secret holding its
//! credentials, referenced by nodes by name.
//!
//! Secret values are never part of this type. Runner pods read them from
//! files: `<connections dir>/<connection name>/<secret key>`, where the
//! connections dir is [`CONNECTIONS_DIR`] in a pod (the operator mounts each
//! referenced Secret there, read-only) and a temporary folder laid out the
//! same way for `sluice-runner run`.

use crate::common::{Condition, Duration, LocalObjectReference, conditions_schema};
use crate::oauth2::{OAuth2Spec, OAuth2Status};
use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where runner pods find connection secrets: one folder per connection, one
/// file per Secret key.
pub const CONNECTIONS_DIR: &str = "/var/run/sluice/connections";

/// Environment variable that overrides [`CONNECTIONS_DIR`].
pub const CONNECTIONS_DIR_ENV: &str = "SLUICE_CONNECTIONS_DIR";

/// Desired state of a Connection: the service type, its settings and the Secret with its credentials.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Connection",
    doc = "A Connection holds what nodes need to reach a service: non-secret settings in config, credentials in a Secret. Nodes name it in their connection field.",
    namespaced,
    status = "ConnectionStatus",
    shortname = "conn",
    category = "sluice",
    printcolumn = r#"{"name": "Type", "type": "string", "jsonPath": ".spec.type"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Verified", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Verified\")].status"}"#,
    printcolumn = r#"{"name": "Authorized", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Authorized\")].status", "priority": 1}"#,
    printcolumn = r#"{"name": "Token Expires", "type": "date", "jsonPath": ".status.oauth2.expiresAt", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("!has(self.oauth2) || self.type == 'http'")
        .message("oauth2 only applies to connections of type http: set type to http or remove oauth2")
        .field_path(".oauth2"),
    validation = Rule::new("!has(self.oauth2) || has(self.secretRef)")
        .message("oauth2 needs a Secret with the client credentials (clientId, clientSecret): set secretRef.name")
        .field_path(".secretRef")
)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSpec {
    /// Kind of service: http, postgres, smtp or slack.
    #[serde(rename = "type")]
    pub type_: ConnectionType,
    /// Non-secret settings. Keys by type —
    /// http: `baseUrl`, `auth` (none, bearer, basic, apiKey, oauth2),
    /// `apiKeyHeader` (default `X-API-Key`), `apiKeyQuery`, `tokenUrl`,
    /// `scopes`, `clientAuth` (basic or body, for oauth2);
    /// postgres: `host`, `port`, `database`, `user`, `sslMode` (disable,
    /// prefer, require, verify-ca, verify-full), `connectTimeout`;
    /// smtp: `host`, `port`, `from`, `to`, `tls` (none, starttls, tls),
    /// `caFile`;
    /// slack: none (the webhook URL is secret).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::common::string_map_schema")]
    pub config: BTreeMap<String, String>,
    /// Secret in the same namespace with the credentials. Keys by type —
    /// http: `token` (bearer), `username`+`password` (basic), `apiKey`,
    /// `clientId`+`clientSecret` (oauth2); postgres: `password` (and
    /// optionally `username`); smtp: `username`+`password` when the server
    /// needs them; slack: `webhookUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Probe the connection and report the result as the `Verified` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// OAuth2 kept by the operator (type http): it obtains the access
    /// token with the grant chosen here, renews it before it expires and
    /// keeps it in a Secret it manages (`status.oauth2.tokenSecret`), which
    /// runner pods mount; nodes send it as a bearer token. The Secret of
    /// `secretRef` holds `clientId`, `clientSecret` and, for the
    /// RefreshToken grant, the first `refreshToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Spec>,
}

/// Kind of service a Connection reaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionType {
    /// An HTTP API.
    #[default]
    Http,
    /// A PostgreSQL database.
    Postgres,
    /// An SMTP server.
    Smtp,
    /// A Slack incoming webhook.
    Slack,
}

impl ConnectionType {
    /// The name used in manifests, e.g. `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionType::Http => "http",
            ConnectionType::Postgres => "postgres",
            ConnectionType::Smtp => "smtp",
            ConnectionType::Slack => "slack",
        }
    }
}

impl ConnectionSpec {
    /// Secret keys this connection cannot work without, given its type and
    /// `config.auth`.
    pub fn required_secret_keys(&self) -> &'static [&'static str] {
        if let Some(oauth2) = &self.oauth2 {
            return oauth2.required_secret_keys();
        }
        match self.type_ {
            ConnectionType::Http => match self.config.get("auth").map(String::as_str) {
                Some("bearer") => &["token"],
                Some("basic") => &["username", "password"],
                Some("apiKey") => &["apiKey"],
                Some("oauth2") => &["clientId", "clientSecret"],
                _ => &[],
            },
            ConnectionType::Postgres => &["password"],
            ConnectionType::Smtp => &[],
            ConnectionType::Slack => &["webhookUrl"],
        }
    }
}

/// How to probe a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// For http: the path or URL to GET (relative to `baseUrl`); any 2xx
    /// verifies. Postgres runs `SELECT 1`; smtp reads the greeting; slack is
    /// not probed (posting would send a message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub url: Option<String>,
    /// How often to probe again. Defaults to 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// Observed state of a Connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the Secret exists with the keys the type needs),
    /// `Verified` (the last probe succeeded) and, with `spec.oauth2`,
    /// `Authorized` (the operator holds a current access token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// When the last probe ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_time: Option<DateTime<Utc>>,
    /// The OAuth2 token the operator keeps (times and scopes; never a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Status>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(auth: &str) -> ConnectionSpec {
        ConnectionSpec {
            type_: ConnectionType::Http,
            config: BTreeMap::from([("auth".to_owned(), auth.to_owned())]),
            ..ConnectionSpec::default()
        }
    }

    #[test]
    fn required_secret_keys_follow_type_and_auth() {
        assert_eq!(http("bearer").required_secret_keys(), ["token"]);
        assert_eq!(
            http("basic").required_secret_keys(),
            ["username", "password"]
        );
        assert_eq!(
            http("oauth2").required_secret_keys(),
            ["clientId", "clientSecret"]
        );
        assert!(http("none").required_secret_keys().is_empty());
        let slack = ConnectionSpec {
            type_: ConnectionType::Slack,
            ..ConnectionSpec::default()
        };
        assert_eq!(slack.required_secret_keys(), ["webhookUrl"]);
    }
}
