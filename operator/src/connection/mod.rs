//! The Connection controller: `Ready` when the referenced Secret holds the
//! keys the connection's type needs, `Verified` from an optional probe that
//! reuses the runner's node code. Pure decisions in [`plan`], the probe in
//! [`probe`], the Kubernetes shell in [`controller`].
//!
//! OAuth2 (`spec.oauth2`): [`token_plan`] decides when to obtain or renew
//! the access token (pure, injected clock), [`token`] talks to the token
//! endpoint, [`keeper`] keeps the token in an operator-managed Secret owned
//! by the Connection (the controller runs it every reconcile and requeues
//! at the renewal time; the run API runs it when a runner's token was
//! refused), and [`authorize`] runs the console's Connect (state, PKCE,
//! callback).
//!
//! Secret values never leave the shell's locals and the probe's temporary
//! folder: status, Events, logs, metrics and the mirror see key names and a
//! SHA-256 fingerprint only. OAuth2 tokens live in the managed Secret and
//! the keeper's locals; provider error texts are stripped of every value
//! sent before they reach a condition.

pub mod authorize;
pub mod controller;
pub mod keeper;
pub mod plan;
pub mod probe;
pub mod token;
pub mod token_plan;
