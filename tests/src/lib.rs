//! End-to-end test bed for Sluice: an API server stand-in, a kubelet
//! emulator, a per-test cluster handle and the lookup of the workspace
//! binaries. The tests themselves live in `tests/e2e/` (one test binary).
//!
//! - [`apiserver`]: a Kubernetes API server stand-in on `127.0.0.1` (plain
//!   HTTP, random port) that kube clients and kubectl use through an
//!   ordinary kubeconfig.
//! - [`kubelet`]: plays kubelet and Job controller through the kube client
//!   only — runs each Job's command as a local process and keeps Pod and
//!   Job status true.
//! - [`cluster`]: [`cluster::TestCluster`], one per test — the stand-in or a
//!   real cluster, a fresh namespace, a client, a kubeconfig file for child
//!   processes, the kubelet emulator.
//! - [`binaries`]: where `sluice-runner` and `sluice-operator` are built.
//! - [`operator`]: builds the binaries, creates a fresh PostgreSQL database
//!   per test and runs the real operator against a [`cluster::TestCluster`].
//! - [`oauth2_server`]: a local OAuth2 authorization server and protected
//!   API for the OAuth2 Connection tests (also used by the operator's).
//! - [`reach`]: how runner pods reach that operator (loopback, or in
//!   cluster mode every address plus one advertised to pods).
//!
//! This crate does not start PostgreSQL: the operator tests need a server
//! (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and fail with a message saying so when there is none.
//!
//! # Running the suite
//!
//! `cargo test -p sluice-e2e` runs everything against the stand-in. Tests
//! that run the real binaries build them first (once per test process,
//! `cargo build -p sluice-operator -p sluice-runner`; see [`operator`]); the kubectl tests
//! need `kubectl` (v1.32+) on `PATH`, in `$KUBECTL` or at `/usr/bin/kubectl`.
//!
//! # Against a real cluster
//!
//! The same tests run unchanged against a real API server:
//!
//! ```text
//! SLUICE_E2E_KUBECONFIG=$HOME/.kube/config cargo test -p sluice-e2e
//! ```
//!
//! With `SLUICE_E2E_KUBECONFIG` set, each test connects to that cluster
//! (current context) instead of starting a stand-in, applies the CRDs in
//! `charts/sluice/files/crds/*.yaml` (and the test-only `Widget` CRD,
//! `widgets.e2e.sluice.dev`) with server-side apply and waits until they
//! are established, then works in its own namespace `e2e-<test>-<random>`
//! (labelled `sluice.dev/e2e=true`), which it deletes when it finishes. A
//! failed test leaves its namespace behind for inspection; clean up with
//! `kubectl delete namespace -l sluice.dev/e2e=true`. The credentials need
//! to create namespaces and CRDs.
//!
//! The harness still plays the kubelet: it runs Jobs of the test's
//! namespace as local processes. That suits clusters without nodes (an API
//! server and etcd only, like envtest) — on a cluster whose controller
//! manager runs the Job controller, set `SLUICE_E2E_KUBELET=cluster` so
//! real nodes run the pods instead; Jobs then need real images
//! (`SLUICE_E2E_RUNNER_IMAGE` names the runner image, which the operator
//! under test launches; the shell tests use `busybox:1.36`), and the
//! operator, still a process on this machine, serves its run API and
//! webhooks on every address and advertises `SLUICE_E2E_ADVERTISE_ADDRESS`
//! (default: this machine's first non-loopback address) to pods — see
//! [`reach`]. Tests of the stand-in itself (`standin::*`) always use their
//! own stand-in.

pub mod apiserver;
pub mod binaries;
pub mod cluster;
pub mod kubelet;
pub mod oauth2_server;
pub mod operator;
pub mod reach;
