//! The run API: runner pods fetch their run's frozen snapshot and send
//! their events here, and `workflow` nodes start child runs through it
//! (`children`), and `http` nodes whose OAuth2 token was refused ask for a
//! renewed one (`tokens`). Served by every replica (not only the leader).

pub mod children;
pub mod server;
pub mod token;
mod tokens;
