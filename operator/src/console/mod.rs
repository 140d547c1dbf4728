//! The web console's server: people sign in with their own Kubernetes
//! bearer token and read run history from PostgreSQL.
//!
//! - [`identity`]: TokenReview (who is this token) and SubjectAccessReview
//!   (may they do this verb in this namespace), through the operator's
//!   client but always about the user: the console never acts with the
//!   operator's own rights on a user's behalf, and has no superuser.
//! - [`session`]: sessions are rows of `user_sessions`; only a hash of the
//!   session token is stored.
//! - [`cookie`]: the session cookie and the CSRF token (pure).
//! - [`server`]: the HTTP routes, sign-in and sessions.
//! - [`runs`]: run history queries (PostgreSQL only); [`reads`]: their
//!   routes, each namespace checked first.
//! - [`actions`]: live objects and actions (run now, cancel, resume,
//!   suspend), sent to the API server as the user by impersonation.
//! - [`schedules`]: the schedules page's data (cron in words, next fires).
//! - [`stats`]: per-workflow success rate and p50 duration (7 days).
//! - [`connections`]: Connections and their conditions, as the user (no secret values).
//! - [`oauth2`]: Connect for OAuth2 Connections (AuthorizationCode grant)
//!   and the callback the provider sends the browser back to.
//! - [`audit`]: the audit trail of the readable namespaces, paginated.
//! - [`revisions`]: workflow revisions and a line diff between two.
//! - [`live`]: Server-Sent Events when a run changes.
//! - [`assets`]: the embedded pages (HTML, CSS, a JavaScript module).
//!
//! Off unless `--console-addr` is set; it needs the database.

pub mod actions;
pub mod assets;
pub mod audit;
pub mod connections;
pub mod cookie;
pub mod identity;
pub mod live;
pub mod oauth2;
pub mod reads;
pub mod revisions;
pub mod runs;
pub mod schedules;
pub mod server;
pub mod session;
pub mod stats;

use std::net::SocketAddr;
use std::time::Duration;

/// The console's flags.
#[derive(Clone, Debug, clap::Args)]
pub struct ConsoleConfig {
    /// Address of the web console, e.g. 0.0.0.0:8083. Unset: no console.
    /// The console needs --database-url.
    #[arg(long, env = "SLUICE_CONSOLE_ADDR")]
    pub console_addr: Option<SocketAddr>,

    /// How long a console session lasts after sign-in.
    #[arg(long, env = "SLUICE_CONSOLE_SESSION_TTL", default_value = "8h",
          value_parser = crate::config::parse_duration)]
    pub console_session_ttl: Duration,

    /// The OAuth2 redirect URI registered with providers for the
    /// AuthorizationCode grant, e.g. https://sluice.example.com/oauth2/callback
    /// (the console serves /oauth2/callback). Unset: built from the
    /// request's Host and X-Forwarded-Proto headers.
    #[arg(long, env = "SLUICE_OAUTH2_REDIRECT_URL")]
    pub oauth2_redirect_url: Option<String>,
}
