//! Who a user is (TokenReview) and what they may do (SubjectAccessReview),
//! asked of the Kubernetes API server. The operator's client only carries
//! the question: the answer is about the user's identity, never the
//! operator's own rights.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API group of Sluice's resources.
pub const SLUICE_GROUP: &str = "sluice.dev";

/// A user as the API server authenticated them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Kubernetes user name (e.g. `system:serviceaccount:team:viewer`).
    pub username: String,
    /// The user's UID, when the authenticator gives one.
    #[serde(default)]
    pub uid: String,
    /// Groups the user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Extra attributes the authenticator gave.
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// One access question: `verb` on `resource` (of [`SLUICE_GROUP`]) in
/// `namespace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access<'a> {
    pub namespace: &'a str,
    pub verb: &'a str,
    pub resource: &'a str,
}

/// Errors reaching the API server.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("failed to review the token with the Kubernetes API")]
    TokenReview(#[source] kube::Error),
    #[error("failed to review access with the Kubernetes API")]
    AccessReview(#[source] kube::Error),
}

/// Asks the API server.
#[derive(Clone)]
pub struct KubeAuthority {
    client: Client,
}

impl KubeAuthority {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The client, for requests sent as a user (impersonation).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The user a bearer token belongs to; `None` when the API server does
    /// not accept the token.
    pub async fn review_token(&self, token: &str) -> Result<Option<Identity>, IdentityError> {
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(IdentityError::TokenReview)?;
        let Some(status) = answer.status else {
            return Ok(None);
        };
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let Some(user) = status.user else {
            return Ok(None);
        };
        let Some(username) = user.username.filter(|name| !name.is_empty()) else {
            return Ok(None);
        };
        Ok(Some(Identity {
            username,
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }))
    }

    /// Whether `identity` may do `access`.
    pub async fn allowed(
        &self,
        identity: &Identity,
        access: &Access<'_>,
    ) -> Result<bool, IdentityError> {
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview {
            spec: build_access_review(identity, access),
            ..SubjectAccessReview::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(IdentityError::AccessReview)?;
        Ok(answer.status.is_some_and(|status| status.allowed))
    }
}

/// The SubjectAccessReview spec asking about `identity` and `access`.
pub fn build_access_review(identity: &Identity, access: &Access<'_>) -> SubjectAccessReviewSpec {
    SubjectAccessReviewSpec {
        user: Some(identity.username.clone()),
        uid: Some(identity.uid.clone()).filter(|uid| !uid.is_empty()),
        groups: Some(identity.groups.clone()),
        extra: Some(identity.extra.clone()).filter(|extra| !extra.is_empty()),
        resource_attributes: Some(ResourceAttributes {
            group: Some(SLUICE_GROUP.to_owned()),
            namespace: Some(access.namespace.to_owned()),
            resource: Some(access.resource.to_owned()),
            verb: Some(access.verb.to_owned()),
            ..ResourceAttributes::default()
        }),
        ..SubjectAccessReviewSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_review_asks_about_the_user_not_the_operator() {
        let identity = Identity {
            username: "ada".to_owned(),
            uid: String::new(),
            groups: vec!["system:authenticated".to_owned()],
            extra: BTreeMap::new(),
        };
        let spec = build_access_review(
            &identity,
            &Access {
                namespace: "team",
                verb: "list",
                resource: "workflowruns",
            },
        );
        assert_eq!(spec.user.as_deref(), Some("ada"));
        assert_eq!(spec.uid, None);
        assert_eq!(spec.groups, Some(vec!["system:authenticated".to_owned()]));
        let resource = spec.resource_attributes.expect("resource attributes");
        assert_eq!(
            (
                resource.group.as_deref(),
                resource.namespace.as_deref(),
                resource.resource.as_deref(),
                resource.verb.as_deref()
            ),
            (
                Some("sluice.dev"),
                Some("team"),
                Some("workflowruns"),
                Some("list")
            )
        );
    }
}
