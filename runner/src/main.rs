//! `sluice-runner`: wires the process (TLS provider) and hands over to the CLI.

fn main() -> std::process::ExitCode {
    // One TLS provider for the whole process (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    sluice_runner::cli::main()
}
