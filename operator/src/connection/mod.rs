//! The Connection controller: `Ready` when the referenced Secret holds the
//! keys the connection's type needs, `Verified` from an optional probe that
//! reuses the runner's node code. Pure decisions in [`plan`], the probe in
//! [`probe`], the Kubernetes shell in [`controller`].
//!
//! Secret values never leave the shell's locals and the probe's temporary
//! folder: status, Events, logs, metrics and the mirror see key names and a
//! SHA-256 fingerprint only.

pub mod controller;
pub mod plan;
pub mod probe;
