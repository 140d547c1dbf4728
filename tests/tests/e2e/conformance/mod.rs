//! API conformance: every behaviour of the API server stand-in that Sluice
//! and kubectl rely on, exercised through `kube::Api` and kube-runtime's
//! watcher against a test-only `Widget` CRD (or the built-in types). The
//! same tests run against a real cluster with `SLUICE_E2E_KUBECONFIG`.

mod deletion;
mod objects;
mod types;
mod watch;
