-- OAuth2 Connections (operator/src/connection/keeper.rs, mirrored by
-- operator/src/mirror/catalog.rs).
--
-- oauth_connections: one row per OAuth2 Connection, id = connection_id =
-- the Connection's uid, with what the operator knows of the token it keeps:
-- status, expiry, scopes, last refresh. Never a token: the seed's
-- access_token and refresh_token columns stay, and a constraint keeps them
-- empty.
ALTER TABLE oauth_connections ADD COLUMN status VARCHAR(30);
ALTER TABLE oauth_connections ADD COLUMN grant_type VARCHAR(30);
ALTER TABLE oauth_connections ADD COLUMN last_refreshed_at TIMESTAMP WITH TIME ZONE;
ALTER TABLE oauth_connections ADD CONSTRAINT oauth_connections_no_tokens
    CHECK (access_token IS NULL AND refresh_token IS NULL) NOT VALID;
CREATE UNIQUE INDEX oauth_connections_connection_id_key ON oauth_connections (connection_id);

-- oauth_providers: besides the seed's per-user provider logins, the
-- provider presets a Connection names in spec.oauth2.provider (rows with
-- is_preset, no user). The operator's presets (crds/src/oauth2.rs) are the
-- source of truth; a test checks these rows agree with them. Rows a team
-- adds with is_preset false describe their own providers for reports; a
-- Connection uses such a provider by setting tokenUrl/authorizationUrl.
ALTER TABLE oauth_providers ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE oauth_providers ALTER COLUMN provider_user_id DROP NOT NULL;
ALTER TABLE oauth_providers ADD COLUMN display_name VARCHAR(100);
ALTER TABLE oauth_providers ADD COLUMN token_url TEXT;
ALTER TABLE oauth_providers ADD COLUMN authorization_url TEXT;
ALTER TABLE oauth_providers ADD COLUMN client_auth VARCHAR(10);
ALTER TABLE oauth_providers ADD COLUMN is_preset BOOLEAN NOT NULL DEFAULT FALSE;
CREATE UNIQUE INDEX oauth_providers_preset_key ON oauth_providers (provider) WHERE is_preset;

INSERT INTO oauth_providers (provider, display_name, token_url, authorization_url, client_auth, is_preset)
VALUES
    ('google', 'Google', 'https://oauth2.googleapis.com/token',
     'https://accounts.google.com/o/oauth2/v2/auth', 'basic', TRUE),
    ('microsoft', 'Microsoft', 'https://login.microsoftonline.com/common/oauth2/v2.0/token',
     'https://login.microsoftonline.com/common/oauth2/v2.0/authorize', 'body', TRUE),
    ('github', 'GitHub', 'https://github.com/login/oauth/access_token',
     'https://github.com/login/oauth/authorize', 'body', TRUE),
    ('slack', 'Slack', 'https://slack.com/api/oauth.v2.access',
     'https://slack.com/oauth/v2/authorize', 'basic', TRUE),
    ('salesforce', 'Salesforce', 'https://login.salesforce.com/services/oauth2/token',
     'https://login.salesforce.com/services/oauth2/authorize', 'body', TRUE),
    ('hubspot', 'HubSpot', 'https://api.hubapi.com/oauth/v1/token',
     'https://app.hubspot.com/oauth/authorize', 'body', TRUE);
