//! Placeholder until the webhook benchmark lands.
fn main() {}
