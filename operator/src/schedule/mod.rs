//! The Schedule controller: cron slots in a time zone become WorkflowRuns,
//! exactly once per slot. [`cron`] is the slot math, [`plan`] the pure
//! decisions (overlap, deadline, catch-up, jitter, pause, suspend),
//! [`runs`] the index of each Schedule's runs and [`controller`] the shell
//! that reads, creates runs and writes status.

pub mod controller;
pub mod cron;
pub mod plan;
pub mod runs;
