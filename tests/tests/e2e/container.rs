//! The Sluice image, run with Docker as Kubernetes runs it: uid 65532, a
//! read-only root filesystem with an empty `/tmp` (as the runner Job
//! mounts), every capability dropped, no privilege escalation and no
//! network. The image (`SLUICE_E2E_IMAGE`, default `sluice:ci`) must hold
//! exactly the workspace's release binaries: `bash .ci/run` builds both,
//! `bash .ci/image/build` rebuilds the image from `target/release`.
//!
//! Also checked without Docker: the public `Dockerfile` and the offline
//! `.ci/image/Dockerfile` give the same runtime layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use sluice_e2e::binaries::workspace_root;

/// Environment variable naming the image under test.
const IMAGE_ENV: &str = "SLUICE_E2E_IMAGE";

fn image() -> String {
    std::env::var(IMAGE_ENV)
        .ok()
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| "sluice:ci".into())
}

fn docker_binary() -> PathBuf {
    std::env::var_os("DOCKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("docker"))
}

fn docker(args: &[&str]) -> Output {
    Command::new(docker_binary())
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "failed to run docker ({error}): the container tests need Docker — `bash .ci/run` installs docker.io, starts dockerd and builds the image, or point DOCKER at a docker CLI"
            )
        })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails the test, saying what to do, unless the daemon answers and the
/// image exists and holds the release binaries of this workspace.
fn require_image() -> String {
    let version = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        version.status.success(),
        "the Docker daemon does not answer: start it (`bash .ci/run` starts dockerd with its data under /var/lib/sluice-ci-docker):\n{}",
        text(&version.stderr)
    );
    let image = image();
    let inspect = docker(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert!(
        inspect.status.success(),
        "image {image} is missing: build it with `cargo build --release -p sluice-operator -p sluice-runner && bash .ci/image/build` (or run `bash .ci/run`), or set {IMAGE_ENV}:\n{}",
        text(&inspect.stderr)
    );
    for binary in ["sluice-operator", "sluice-runner"] {
        let local = workspace_root().join("target/release").join(binary);
        let local_sum = Command::new("sha256sum")
            .arg(&local)
            .output()
            .expect("run sha256sum");
        assert!(
            local_sum.status.success(),
            "{} is missing: the image must hold this workspace's release binaries; build them with `cargo build --release -p sluice-operator -p sluice-runner`, then `bash .ci/image/build`",
            local.display()
        );
        let in_image = run_in_image(
            &image,
            &["--entrypoint", "sha256sum"],
            &[&format!("/usr/local/bin/{binary}")],
        );
        let digest = |output: &[u8]| {
            text(output)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            digest(&in_image.stdout),
            digest(&local_sum.stdout),
            "{image} holds another {binary} than target/release: rebuild the image with `bash .ci/image/build`"
        );
    }
    image
}

/// `docker run` of `image` under the runner Job's restrictions.
fn run_in_image(image: &str, options: &[&str], args: &[&str]) -> Output {
    let examples = workspace_root().join("examples");
    let volume = format!("{}:/examples:ro", examples.display());
    let mut command = vec![
        "run",
        "--rm",
        "--user",
        "65532:65532",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--network",
        "none",
        "--volume",
        &volume,
    ];
    command.extend_from_slice(options);
    command.push(image);
    command.extend_from_slice(args);
    docker(&command)
}

/// Whether a workflow needs something outside the runner container: a
/// service (http, postgres, notify), the API server (kubernetes), the
/// operator (workflow) or a custom node's sidecar (custom).
fn needs_outside_service(workflow: &Value) -> bool {
    const OUTSIDE: [&str; 6] = [
        "http",
        "postgres",
        "notify",
        "kubernetes",
        "workflow",
        "custom",
    ];
    workflow["spec"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|node| OUTSIDE.iter().any(|key| node.get(key).is_some()))
}

/// The examples that need no outside service, with the input to run them.
fn self_contained_examples() -> BTreeMap<String, Value> {
    let inputs = BTreeMap::from([
        ("hello", json!({"name": "Ada"})),
        // 100 %: the run must not depend on how full this machine's disk is.
        ("disk-check", json!({"maxPercent": 100})),
    ]);
    let mut found = BTreeMap::new();
    let folder = workspace_root().join("examples");
    for entry in std::fs::read_dir(&folder).expect("read examples/") {
        let path = entry.expect("an entry").path();
        // Sub-folders (examples/argocd) hold GitOps layouts, not workflows to run alone.
        if path.extension().is_none_or(|extension| extension != "yaml") {
            continue;
        }
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&std::fs::read_to_string(&path).expect("read an example"))
                .expect("examples are YAML");
        let Some(workflow) = documents
            .iter()
            .find(|document| document["kind"] == "Workflow")
        else {
            continue;
        };
        if documents.iter().any(needs_outside_service) {
            continue;
        }
        let name = workflow["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        let input = inputs
            .get(name.as_str())
            .cloned()
            .unwrap_or_else(|| json!({}));
        let file = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        found.insert(file, input);
    }
    found
}

#[test]
fn the_runner_image_runs_every_self_contained_example_locked_down() {
    let image = require_image();
    let examples = self_contained_examples();
    assert!(
        examples.contains_key("hello.yaml") && examples.contains_key("disk-check.yaml"),
        "{examples:?}"
    );
    for (file, input) in &examples {
        let output = run_in_image(
            &image,
            &["--entrypoint", "sluice-runner"],
            &[
                "run",
                &format!("/examples/{file}"),
                "--input",
                &input.to_string(),
            ],
        );
        assert!(
            output.status.success(),
            "{file} failed in {image}:\n{}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        let result: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "{file}: the output is JSON ({error}):\n{}",
                text(&output.stdout)
            )
        });
        match file.as_str() {
            "hello.yaml" => assert_eq!(result["greeting"], "Hello, Ada!", "{result}"),
            "disk-check.yaml" => assert!(result["usedPercent"].is_number(), "{result}"),
            _ => {}
        }
    }
}

#[test]
fn the_image_entrypoint_is_the_operator() {
    let image = require_image();
    let output = run_in_image(&image, &[], &["--help"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let help = text(&output.stdout);
    assert!(help.contains("sluice-operator"), "{help}");
    assert!(help.contains("SLUICE_RUN_API_URL"), "{help}");
}

#[test]
fn runner_exec_without_a_run_api_fails_saying_why() {
    let image = require_image();
    let output = run_in_image(&image, &["--entrypoint", "sluice-runner"], &["exec"]);
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "exec without a run API succeeded: {stderr}"
    );
    assert!(
        stderr.contains("SLUICE_RUN_TOKEN_FILE is not set")
            && stderr.contains("runs inside a Job created by the operator"),
        "{stderr}"
    );
    let output = run_in_image(
        &image,
        &[
            "--entrypoint",
            "sluice-runner",
            "--env",
            "SLUICE_RUN_TOKEN_FILE=/var/run/sluice/token",
        ],
        &["exec"],
    );
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("failed to read the run token from /var/run/sluice/token"),
        "{stderr}"
    );
}

#[test]
fn the_image_runs_as_nonroot_with_certificates_and_a_shell() {
    let image = require_image();
    let script = "id -u; id -g; id -un; test -s /etc/ssl/certs/ca-certificates.crt && echo certificates; \
                  command -v sluice-operator; command -v sluice-runner; awk '$2 == \"/\" {split($4, o, \",\"); print \"root \" o[1]}' /proc/mounts; \
                  touch /tmp/probe && echo tmp-writable";
    let output = run_in_image(&image, &["--entrypoint", "/bin/sh"], &["-c", script]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).lines().collect::<Vec<_>>(),
        [
            "65532",
            "65532",
            "nonroot",
            "certificates",
            "/usr/local/bin/sluice-operator",
            "/usr/local/bin/sluice-runner",
            "root ro",
            "tmp-writable",
        ]
    );
}

/// The instructions of a Dockerfile's last stage that shape the runtime
/// layout: where files are copied to, the user and the entrypoint.
fn runtime_layout(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    let last_stage = text
        .rsplit_once("\nFROM ")
        .map_or(text.as_str(), |(_, stage)| stage);
    last_stage
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first() {
                Some(&"COPY") => words.last().map(|target| format!("COPY {target}")),
                Some(&"USER") | Some(&"ENTRYPOINT") | Some(&"WORKDIR") | Some(&"ENV") => {
                    Some(line.trim().to_owned())
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn the_public_and_the_offline_dockerfile_give_the_same_runtime_layout() {
    let root = workspace_root();
    let public = runtime_layout(&root.join("Dockerfile"));
    let offline = runtime_layout(&root.join(".ci/image/Dockerfile"));
    assert!(public.len() >= 4, "{public:?}");
    assert_eq!(public, offline);
    let base_script =
        std::fs::read_to_string(root.join(".ci/image/build")).expect("read the build script");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("read the Dockerfile");
    for both in [
        "useradd --uid 65532 --system --no-create-home nonroot",
        "ca-certificates",
    ] {
        assert!(
            dockerfile.contains(both) && base_script.contains(both),
            "both bases: {both}"
        );
    }
}
