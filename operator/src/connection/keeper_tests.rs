//! The token keeper against the local OAuth2 authorization server and the
//! API server stand-in, both real HTTP on loopback: each grant, renewal
//! before expiry, rotation, a revoked refresh token, and the run API's
//! renew-when-refused path.

use super::*;
use crate::connection::token_plan::reason;
use sluice_crds::oauth2::{OAuth2Grant, OAuth2Spec};
use sluice_crds::{ConnectionSpec, ConnectionType, LocalObjectReference};
use sluice_e2e::cluster::TestCluster;
use sluice_e2e::oauth2_server::{AuthServer, AuthServerOptions};

struct Bed {
    cluster: TestCluster,
    server: AuthServer,
}

impl Bed {
    async fn start(test: &str, lifetime: Duration) -> Bed {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cluster = TestCluster::start(test)
            .await
            .expect("the stand-in started");
        let server = AuthServer::start(AuthServerOptions {
            access_lifetime: lifetime,
            ..AuthServerOptions::default()
        })
        .await
        .expect("the authorization server started");
        Bed { cluster, server }
    }

    fn client(&self) -> kube::Client {
        self.cluster.client()
    }

    fn namespace(&self) -> &str {
        self.cluster.namespace()
    }

    /// Creates the Connection `crm` (its token Secret is owned by it, and
    /// the API server collects Secrets whose owner does not exist).
    async fn connection(&self, grant: OAuth2Grant) -> Connection {
        let mut connection = Connection::new(
            "crm",
            ConnectionSpec {
                type_: ConnectionType::Http,
                secret_ref: Some(LocalObjectReference {
                    name: "crm-client".into(),
                }),
                oauth2: Some(OAuth2Spec {
                    token_url: Some(self.server.token_url()),
                    authorization_url: Some(self.server.authorization_url()),
                    scopes: vec!["read".into()],
                    grant,
                    ..OAuth2Spec::default()
                }),
                ..ConnectionSpec::default()
            },
        );
        connection.metadata.namespace = Some(self.namespace().to_owned());
        let connections: Api<Connection> = Api::namespaced(self.client(), self.namespace());
        connections
            .create(&PostParams::default(), &connection)
            .await
            .expect("the Connection is created")
    }

    fn user_secret(&self, refresh_token: Option<&str>) -> BTreeMap<String, Vec<u8>> {
        let (id, secret) = self.server.client();
        let mut data = BTreeMap::from([
            (CLIENT_ID_KEY.to_owned(), id.into_bytes()),
            (CLIENT_SECRET_KEY.to_owned(), secret.into_bytes()),
        ]);
        if let Some(token) = refresh_token {
            data.insert(REFRESH_TOKEN_KEY.to_owned(), token.as_bytes().to_vec());
        }
        data
    }

    async fn kept(&self) -> Secret {
        read_kept(&self.client(), self.namespace(), "crm")
            .await
            .unwrap()
            .expect("the token Secret exists")
    }

    async fn kept_value(&self, key: &str) -> Option<String> {
        self.kept().await.data.and_then(|data| {
            data.get(key)
                .map(|value| String::from_utf8(value.0.clone()).unwrap())
        })
    }
}

#[tokio::test]
async fn client_credentials_are_exchanged_and_kept_in_an_owned_secret() {
    let bed = Bed::start("keeper-cc", Duration::from_secs(3600)).await;
    let connection = bed.connection(OAuth2Grant::ClientCredentials).await;
    let user = bed.user_secret(None);
    let now = Utc::now();
    let outcome = keep(&bed.client(), bed.namespace(), &connection, &user, now).await;
    assert!(outcome.authorized, "{outcome:?}");
    assert_eq!(outcome.reason, reason::TOKEN_ISSUED);
    let token = bed
        .kept_value(ACCESS_TOKEN_KEY)
        .await
        .expect("an access token");
    assert!(bed.server.access_token_valid(&token));
    assert_eq!(bed.kept_value(REFRESH_TOKEN_KEY).await, None);
    let secret = bed.kept().await;
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Connection", "crm")
    );
    assert_eq!(
        secret
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("sluice-operator")
    );
    assert_eq!(
        outcome.status.expires_at,
        Some(now + chrono::Duration::seconds(3600))
    );
    assert_eq!(outcome.status.scopes, ["read"]);
    assert_eq!(
        outcome.status.token_secret.as_deref(),
        Some(names::oauth2_token_secret_name("crm").as_str())
    );
    // Requeued at the renewal time: 5 minutes and some jitter before expiry.
    assert!(
        outcome.requeue_after <= Duration::from_secs(3300),
        "{outcome:?}"
    );
    assert!(
        outcome.requeue_after >= Duration::from_secs(2939),
        "{outcome:?}"
    );
    assert!(!outcome.message.contains(&token));

    // A second pass keeps the token: no new request.
    let again = keep(
        &bed.client(),
        bed.namespace(),
        &connection,
        &user,
        now + chrono::Duration::seconds(60),
    )
    .await;
    assert!(again.authorized);
    assert_eq!(bed.server.requests("client_credentials"), 1);

    // A new client secret is a new source: a token is obtained at once.
    let mut rotated = user.clone();
    rotated.insert(CLIENT_SECRET_KEY.to_owned(), b"not-the-secret".to_vec());
    let refused = keep(&bed.client(), bed.namespace(), &connection, &rotated, now).await;
    assert!(!refused.authorized);
    assert_eq!(refused.reason, reason::REFRESH_FAILED);
    assert!(
        refused.message.contains("invalid_client"),
        "{}",
        refused.message
    );
    assert!(
        !refused.message.contains("not-the-secret"),
        "{}",
        refused.message
    );
    assert_eq!(refused.requeue_after, REFUSED_RETRY);
}

#[tokio::test]
async fn tokens_are_renewed_before_they_expire() {
    let bed = Bed::start("keeper-renew", Duration::from_secs(600)).await;
    let connection = bed.connection(OAuth2Grant::ClientCredentials).await;
    let user = bed.user_secret(None);
    let start = Utc::now();
    let first = keep(&bed.client(), bed.namespace(), &connection, &user, start).await;
    let first_token = bed.kept_value(ACCESS_TOKEN_KEY).await.unwrap();
    let renewal = first.status.next_refresh_time.expect("a renewal time");
    let expiry = first.status.expires_at.expect("an expiry");
    assert!(renewal < expiry, "renewed before it expires");

    let before = keep(
        &bed.client(),
        bed.namespace(),
        &connection,
        &user,
        renewal - chrono::Duration::seconds(1),
    )
    .await;
    assert!(before.authorized);
    assert_eq!(bed.server.requests("client_credentials"), 1, "not yet");

    let renewed = keep(&bed.client(), bed.namespace(), &connection, &user, renewal).await;
    assert!(renewed.authorized, "{renewed:?}");
    assert_eq!(bed.server.requests("client_credentials"), 2);
    let second_token = bed.kept_value(ACCESS_TOKEN_KEY).await.unwrap();
    assert_ne!(second_token, first_token);
    assert!(
        bed.server.access_token_valid(&first_token),
        "the old token was still valid when it was replaced"
    );
    assert_eq!(renewed.status.last_refresh_time, Some(renewal));
    assert!(renewed.status.expires_at.unwrap() > expiry);
}

#[tokio::test]
async fn refresh_tokens_are_rotated_and_a_revoked_one_shows_without_its_value() {
    let bed = Bed::start("keeper-rotate", Duration::from_secs(600)).await;
    let (client_id, _) = bed.server.client();
    let first = bed.server.seed_refresh_token(&client_id);
    let connection = bed.connection(OAuth2Grant::RefreshToken).await;
    let user = bed.user_secret(Some(&first));
    let start = Utc::now();

    let outcome = keep(&bed.client(), bed.namespace(), &connection, &user, start).await;
    assert!(outcome.authorized, "{outcome:?}");
    let second = bed
        .kept_value(REFRESH_TOKEN_KEY)
        .await
        .expect("the rotated token is kept");
    assert_ne!(second, first);
    assert!(
        !bed.server.refresh_token_valid(&first),
        "the first was used up"
    );
    assert!(bed.server.refresh_token_valid(&second));

    // The renewal uses the kept (rotated) token, not the user's used-up one.
    let renewal = outcome.status.next_refresh_time.unwrap();
    let renewed = keep(&bed.client(), bed.namespace(), &connection, &user, renewal).await;
    assert!(renewed.authorized, "{renewed:?}");
    let third = bed.kept_value(REFRESH_TOKEN_KEY).await.unwrap();
    assert_ne!(third, second);
    assert_eq!(bed.server.requests("refresh_token"), 2);

    // The provider revokes it: the failure says so, without the token.
    bed.server.revoke_all_refresh_tokens();
    let later = renewed.status.next_refresh_time.unwrap();
    let failed = keep(&bed.client(), bed.namespace(), &connection, &user, later).await;
    assert!(!failed.authorized);
    assert_eq!(failed.reason, reason::REFRESH_FAILED);
    assert!(
        failed.message.contains("invalid_grant"),
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains("refreshToken"),
        "names the fix: {}",
        failed.message
    );
    for secret in [&first, &second, &third, &bed.server.client().1] {
        assert!(
            !failed.message.contains(secret.as_str()),
            "{}",
            failed.message
        );
    }
    assert!(
        failed.status.expires_at.is_some(),
        "the old expiry is still reported"
    );

    // The user places a new refresh token: the keeper starts over from it.
    let fresh = bed.server.seed_refresh_token(&client_id);
    let recovered = keep(
        &bed.client(),
        bed.namespace(),
        &connection,
        &bed.user_secret(Some(&fresh)),
        later,
    )
    .await;
    assert!(recovered.authorized, "{recovered:?}");
}

/// The provider's consent page for a code with `challenge`.
fn consent_url(
    server: &AuthServer,
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
) -> String {
    let mut url = reqwest::Url::parse(&server.authorization_url()).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", "s-1")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    url.to_string()
}

#[tokio::test]
async fn the_authorization_code_grant_waits_for_connect_then_renews_with_its_refresh_token() {
    let bed = Bed::start("keeper-code", Duration::from_secs(600)).await;
    let connection = bed.connection(OAuth2Grant::AuthorizationCode).await;
    let user = bed.user_secret(None);
    let now = Utc::now();
    let waiting = keep(&bed.client(), bed.namespace(), &connection, &user, now).await;
    assert!(!waiting.authorized);
    assert_eq!(waiting.reason, reason::AUTHORIZATION_REQUIRED);
    assert!(waiting.message.contains("Connect"), "{}", waiting.message);

    // A user consents at the provider: its redirect carries the code.
    let verifier = "v".repeat(64);
    let challenge = super::super::authorize::pkce_challenge(&verifier);
    let redirect_uri = "http://127.0.0.1:9/oauth2/callback";
    let (client_id, _) = bed.server.client();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let consent = no_redirects
        .get(consent_url(
            &bed.server,
            &client_id,
            redirect_uri,
            &challenge,
        ))
        .send()
        .await
        .unwrap();
    let location = consent.headers()["location"].to_str().unwrap().to_owned();
    let code = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .unwrap();

    // A wrong verifier is refused; the right one is exchanged and kept.
    let wrong = exchange_code(
        &bed.client(),
        bed.namespace(),
        &connection,
        &user,
        &code,
        &"w".repeat(64),
        redirect_uri,
        now,
    )
    .await;
    assert!(wrong.is_err());
    let consent = no_redirects
        .get(consent_url(
            &bed.server,
            &client_id,
            redirect_uri,
            &challenge,
        ))
        .send()
        .await
        .unwrap();
    let location = consent.headers()["location"].to_str().unwrap().to_owned();
    let code = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .unwrap();
    exchange_code(
        &bed.client(),
        bed.namespace(),
        &connection,
        &user,
        &code,
        &verifier,
        redirect_uri,
        now,
    )
    .await
    .expect("the code is exchanged");
    assert!(bed.kept_value(REFRESH_TOKEN_KEY).await.is_some());
    let connected = keep(&bed.client(), bed.namespace(), &connection, &user, now).await;
    assert!(connected.authorized, "{connected:?}");
    let renewal = connected.status.next_refresh_time.unwrap();
    let renewed = keep(&bed.client(), bed.namespace(), &connection, &user, renewal).await;
    assert!(renewed.authorized, "{renewed:?}");
    assert_eq!(bed.server.requests("refresh_token"), 1);
}

#[tokio::test]
async fn a_refused_token_is_renewed_once_however_many_runners_ask() {
    use sha2::{Digest, Sha256};
    let bed = Bed::start("keeper-refused", Duration::from_secs(600)).await;
    let connection = bed.connection(OAuth2Grant::ClientCredentials).await;
    let user = bed.user_secret(None);
    let now = Utc::now();
    keep(&bed.client(), bed.namespace(), &connection, &user, now).await;
    let refused = bed.kept_value(ACCESS_TOKEN_KEY).await.unwrap();
    let hash = hex::encode(Sha256::digest(refused.as_bytes()));
    let (fresh, _) = current_or_renewed(
        &bed.client(),
        bed.namespace(),
        &connection,
        &user,
        &hash,
        now,
    )
    .await
    .unwrap();
    assert_ne!(fresh, refused);
    assert_eq!(
        bed.kept_value(ACCESS_TOKEN_KEY).await.as_deref(),
        Some(fresh.as_str())
    );
    // A second runner refused with the same old token gets the new one, no request.
    let (again, _) = current_or_renewed(
        &bed.client(),
        bed.namespace(),
        &connection,
        &user,
        &hash,
        now,
    )
    .await
    .unwrap();
    assert_eq!(again, fresh);
    assert_eq!(bed.server.requests("client_credentials"), 2);
}
