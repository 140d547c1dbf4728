-- The web console (operator/src/console/): a session keeps the identity the
-- Kubernetes API server gave its token (user name, UID, groups, extra), so
-- every SubjectAccessReview of the session asks about that identity.
-- Session tokens are stored as SHA-256 hex in user_sessions.token (the
-- seed's idx_sessions_token finds them).
ALTER TABLE user_sessions ADD COLUMN kubernetes_identity JSONB NOT NULL DEFAULT '{}';
