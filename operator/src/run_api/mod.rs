//! The run API: runner pods fetch their run's frozen snapshot and send
//! their events here, and `workflow` nodes start child runs through it
//! (`children`). Served by every replica (not only the leader).

pub mod children;
pub mod server;
pub mod token;
