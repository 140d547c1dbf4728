//! The run API: runner pods fetch their run's frozen snapshot and send
//! their events here. Served by every replica (not only the leader).

pub mod server;
pub mod token;
