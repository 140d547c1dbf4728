//! OAuth2 on a Connection (`spec.oauth2`): the provider (a preset or its
//! own endpoints), the grant, and what the operator reports of the token
//! it keeps (`status.oauth2`). Token values are never part of these types:
//! the operator keeps the access token in a Secret it manages
//! ([`ACCESS_TOKEN_KEY`]), which runner pods mount like any other
//! connection Secret.
//!
//! The presets ([`OAuth2Provider::preset`]) are defaults: a Connection's
//! own `tokenUrl`, `authorizationUrl`, `scopes` and `clientAuth` override
//! them, and a provider without a preset is described by those fields alone.

use crate::common::Duration;
use chrono::{DateTime, Utc};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Key of the access token in the operator-managed Secret, and the name of
/// the file runner pods read it from.
pub const ACCESS_TOKEN_KEY: &str = "accessToken";

/// Key of the refresh token: in the user's Secret (the first one, for the
/// RefreshToken grant) and in the operator-managed Secret (the current one,
/// after rotations and after an authorization-code exchange). Never mounted
/// in runner pods.
pub const REFRESH_TOKEN_KEY: &str = "refreshToken";

/// Key of the client id in the user's Secret.
pub const CLIENT_ID_KEY: &str = "clientId";

/// Key of the client secret in the user's Secret.
pub const CLIENT_SECRET_KEY: &str = "clientSecret";

/// Condition type: the operator holds a current access token.
pub const AUTHORIZED: &str = "Authorized";

/// How the operator obtains tokens for a Connection.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(
    validation = Rule::new("has(self.provider) || has(self.tokenUrl)")
        .message("oauth2 needs a token endpoint: set provider to a preset (google, microsoft, github, slack, salesforce, hubspot) or set tokenUrl"),
    validation = Rule::new("!has(self.grant) || self.grant != 'AuthorizationCode' || has(self.provider) || has(self.authorizationUrl)")
        .message("the AuthorizationCode grant needs an authorization endpoint: set provider to a preset or set authorizationUrl")
        .field_path(".authorizationUrl")
)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Spec {
    /// A provider preset whose endpoints and client authentication are
    /// used where this block does not set its own: google, microsoft,
    /// github, slack, salesforce or hubspot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<OAuth2Provider>,
    /// The token endpoint (overrides the preset's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub token_url: Option<String>,
    /// The authorization endpoint the console's Connect action sends the
    /// user to (AuthorizationCode grant; overrides the preset's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub authorization_url: Option<String>,
    /// Scopes to ask for (at most 64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 512)))]
    pub scopes: Vec<String>,
    /// How the first token is obtained: ClientCredentials (the Secret's
    /// clientId and clientSecret), RefreshToken (a refreshToken key the
    /// user placed in the Secret) or AuthorizationCode (a user clicks
    /// Connect in the console). Defaults to ClientCredentials.
    #[serde(default)]
    pub grant: OAuth2Grant,
    /// How the client authenticates at the token endpoint: Basic (HTTP
    /// Basic, the default unless the preset says otherwise) or Body
    /// (client_id and client_secret in the form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// How long before expiry the token is renewed, at most half its
    /// lifetime; a little random jitter is added so connections do not all
    /// renew at once. Defaults to 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_before: Option<Duration>,
}

/// An OAuth2 grant type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OAuth2Grant {
    /// `client_credentials`: the client acts on its own behalf.
    #[default]
    ClientCredentials,
    /// `refresh_token`: the user placed a refresh token in the Secret.
    RefreshToken,
    /// `authorization_code` with PKCE, started by the console's Connect action.
    AuthorizationCode,
}

impl OAuth2Grant {
    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            OAuth2Grant::ClientCredentials => "ClientCredentials",
            OAuth2Grant::RefreshToken => "RefreshToken",
            OAuth2Grant::AuthorizationCode => "AuthorizationCode",
        }
    }
}

/// How a client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the request body.
    Body,
}

/// A provider preset: its token URL, authorization URL and client
/// authentication are used where spec.oauth2 does not set its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OAuth2Provider {
    /// Google (accounts.google.com).
    Google,
    /// Microsoft identity platform, the `common` tenant (set tokenUrl and
    /// authorizationUrl for a single tenant).
    Microsoft,
    /// GitHub OAuth apps.
    #[serde(rename = "github")]
    GitHub,
    /// Slack apps (OAuth v2).
    Slack,
    /// Salesforce (production login; set the URLs for a sandbox or My Domain).
    Salesforce,
    /// HubSpot.
    #[serde(rename = "hubspot")]
    HubSpot,
}

/// The endpoints and client authentication of a preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderPreset {
    /// Name used in manifests (`spec.oauth2.provider`).
    pub name: &'static str,
    /// Name for people.
    pub display_name: &'static str,
    /// Token endpoint.
    pub token_url: &'static str,
    /// Authorization endpoint.
    pub authorization_url: &'static str,
    /// Client authentication the provider expects.
    pub client_auth: ClientAuth,
}

impl OAuth2Provider {
    /// Every preset, in a stable order.
    pub const ALL: [OAuth2Provider; 6] = [
        OAuth2Provider::Google,
        OAuth2Provider::Microsoft,
        OAuth2Provider::GitHub,
        OAuth2Provider::Slack,
        OAuth2Provider::Salesforce,
        OAuth2Provider::HubSpot,
    ];

    /// The preset's endpoints.
    pub fn preset(self) -> ProviderPreset {
        match self {
            OAuth2Provider::Google => ProviderPreset {
                name: "google",
                display_name: "Google",
                token_url: "https://oauth2.googleapis.com/token",
                authorization_url: "https://accounts.google.com/o/oauth2/v2/auth",
                client_auth: ClientAuth::Basic,
            },
            OAuth2Provider::Microsoft => ProviderPreset {
                name: "microsoft",
                display_name: "Microsoft",
                token_url: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
                authorization_url: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
                client_auth: ClientAuth::Body,
            },
            OAuth2Provider::GitHub => ProviderPreset {
                name: "github",
                display_name: "GitHub",
                token_url: "https://github.com/login/oauth/access_token",
                authorization_url: "https://github.com/login/oauth/authorize",
                client_auth: ClientAuth::Body,
            },
            OAuth2Provider::Slack => ProviderPreset {
                name: "slack",
                display_name: "Slack",
                token_url: "https://slack.com/api/oauth.v2.access",
                authorization_url: "https://slack.com/oauth/v2/authorize",
                client_auth: ClientAuth::Basic,
            },
            OAuth2Provider::Salesforce => ProviderPreset {
                name: "salesforce",
                display_name: "Salesforce",
                token_url: "https://login.salesforce.com/services/oauth2/token",
                authorization_url: "https://login.salesforce.com/services/oauth2/authorize",
                client_auth: ClientAuth::Body,
            },
            OAuth2Provider::HubSpot => ProviderPreset {
                name: "hubspot",
                display_name: "HubSpot",
                token_url: "https://api.hubapi.com/oauth/v1/token",
                authorization_url: "https://app.hubspot.com/oauth/authorize",
                client_auth: ClientAuth::Body,
            },
        }
    }
}

impl OAuth2Spec {
    /// The token endpoint: `tokenUrl`, else the preset's.
    pub fn effective_token_url(&self) -> Option<&str> {
        self.token_url
            .as_deref()
            .or_else(|| self.provider.map(|provider| provider.preset().token_url))
    }

    /// The authorization endpoint: `authorizationUrl`, else the preset's.
    pub fn effective_authorization_url(&self) -> Option<&str> {
        self.authorization_url.as_deref().or_else(|| {
            self.provider
                .map(|provider| provider.preset().authorization_url)
        })
    }

    /// The client authentication: `clientAuth`, else the preset's, else Basic.
    pub fn effective_client_auth(&self) -> ClientAuth {
        self.client_auth
            .or_else(|| self.provider.map(|provider| provider.preset().client_auth))
            .unwrap_or_default()
    }

    /// The provider's name for reports: the preset's, else `custom`.
    pub fn provider_name(&self) -> &'static str {
        self.provider
            .map(|provider| provider.preset().name)
            .unwrap_or("custom")
    }

    /// Keys the user's Secret must hold for this grant.
    pub fn required_secret_keys(&self) -> &'static [&'static str] {
        match self.grant {
            OAuth2Grant::ClientCredentials | OAuth2Grant::AuthorizationCode => {
                &[CLIENT_ID_KEY, CLIENT_SECRET_KEY]
            }
            OAuth2Grant::RefreshToken => &[CLIENT_ID_KEY, CLIENT_SECRET_KEY, REFRESH_TOKEN_KEY],
        }
    }
}

/// What the operator reports of the token it keeps: times and scopes,
/// never a token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Status {
    /// The operator-managed Secret holding the access token (key
    /// `accessToken`), mounted in runner pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub token_secret: Option<String>,
    /// When the current access token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the operator last obtained a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<DateTime<Utc>>,
    /// When the operator will renew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<DateTime<Utc>>,
    /// The scopes the provider granted (or asked for, when it did not say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 512)))]
    pub scopes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_fields_override_the_preset() {
        let mut spec = OAuth2Spec {
            provider: Some(OAuth2Provider::GitHub),
            ..OAuth2Spec::default()
        };
        assert_eq!(
            spec.effective_token_url(),
            Some("https://github.com/login/oauth/access_token")
        );
        assert_eq!(spec.effective_client_auth(), ClientAuth::Body);
        spec.token_url = Some("http://127.0.0.1:1/token".into());
        spec.client_auth = Some(ClientAuth::Basic);
        assert_eq!(spec.effective_token_url(), Some("http://127.0.0.1:1/token"));
        assert_eq!(spec.effective_client_auth(), ClientAuth::Basic);
        let custom = OAuth2Spec::default();
        assert_eq!(custom.effective_token_url(), None);
        assert_eq!(custom.provider_name(), "custom");
    }

    #[test]
    fn every_preset_has_https_endpoints_and_its_own_name() {
        let mut names = std::collections::BTreeSet::new();
        for provider in OAuth2Provider::ALL {
            let preset = provider.preset();
            assert!(preset.token_url.starts_with("https://"), "{preset:?}");
            assert!(
                preset.authorization_url.starts_with("https://"),
                "{preset:?}"
            );
            assert!(names.insert(preset.name));
            let text = serde_json::to_string(&provider).unwrap();
            assert_eq!(text, format!("\"{}\"", preset.name));
        }
    }

    #[test]
    fn the_refresh_token_grant_needs_the_refresh_token_key() {
        let spec = OAuth2Spec {
            grant: OAuth2Grant::RefreshToken,
            ..OAuth2Spec::default()
        };
        assert!(spec.required_secret_keys().contains(&REFRESH_TOKEN_KEY));
        assert!(
            !OAuth2Spec::default()
                .required_secret_keys()
                .contains(&REFRESH_TOKEN_KEY)
        );
    }
}
