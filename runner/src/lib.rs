//! Sluice's workflow engine and node types, shared by `sluice-runner exec`
//! (inside a Job) and `sluice-runner run` (locally).
//!
//! Map: [`validate`] checks a spec and compiles it ([`compiled`]) with the
//! jq [`expr`]essions; the [`engine`] runs it over the [`node::Node`]
//! trait, whose implementations live in [`nodes`]; [`report`] carries its
//! events; [`input`] checks run inputs; [`clock`] injects time; [`budget`]
//! counts the data a run holds; [`cli`] is the command line.

pub mod budget;
pub mod cli;
pub mod clock;
pub mod compiled;
pub mod connections;
pub mod engine;
pub mod exec;
pub mod expr;
pub mod input;
pub mod node;
pub mod nodes;
pub mod report;
pub mod validate;
