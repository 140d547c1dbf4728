//! Locates the workspace binaries the end-to-end tests run
//! (`sluice-runner`, `sluice-operator`).
//!
//! They are looked up in `<target dir>/<profile>/`, where the target dir is
//! `CARGO_TARGET_DIR` or `<workspace>/target` and the profile is `debug`,
//! or `release` when [`PROFILE_ENV`] says so (the benchmarks measure the
//! optimised binaries a user would run). This module does not build
//! anything: a missing binary is an error that says which command builds
//! it, so a test fails loudly instead of silently running something stale
//! from elsewhere.

use std::path::{Path, PathBuf};

/// A workspace binary that tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `sluice-runner`, the workflow engine run in Jobs.
    Runner,
    /// `sluice-operator`, the controllers.
    Operator,
}

impl Binary {
    /// The executable's file name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Runner => "sluice-runner",
            Self::Operator => "sluice-operator",
        }
    }

    /// The cargo package that builds it.
    pub fn package(self) -> &'static str {
        self.name()
    }
}

/// Set to `release` to run the release builds of the binaries.
pub const PROFILE_ENV: &str = "SLUICE_E2E_PROFILE";

/// Whether the release builds are the ones to run.
pub fn release() -> bool {
    std::env::var(PROFILE_ENV).is_ok_and(|profile| profile == "release")
}

/// A binary was not where it should be.
#[derive(Debug, thiserror::Error)]
#[error(
    "{binary} not found at {}: build it first with `cargo build -p {package} --bin {binary}` (add --release when SLUICE_E2E_PROFILE=release; the end-to-end tests run the real binaries from the target dir; set CARGO_TARGET_DIR if you build elsewhere)",
    path.display()
)]
pub struct MissingBinary {
    /// File name of the binary.
    pub binary: &'static str,
    /// Package that builds it.
    pub package: &'static str,
    /// Where it was expected.
    pub path: PathBuf,
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `CARGO_TARGET_DIR` (relative paths are taken from the workspace root) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The path of a workspace binary, or an error saying how to build it.
pub fn locate(binary: Binary) -> Result<PathBuf, MissingBinary> {
    let profile = if release() { "release" } else { "debug" };
    let path = target_dir().join(profile).join(format!(
        "{}{}",
        binary.name(),
        std::env::consts::EXE_SUFFIX
    ));
    if path.is_file() {
        Ok(path)
    } else {
        Err(MissingBinary {
            binary: binary.name(),
            package: binary.package(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_message_says_what_to_build() {
        let error = MissingBinary {
            binary: "sluice-runner",
            package: "sluice-runner",
            path: PathBuf::from("/nowhere/debug/sluice-runner"),
        };
        let message = error.to_string();
        assert!(
            message.contains("cargo build -p sluice-runner --bin sluice-runner"),
            "{message}"
        );
        assert!(
            message.contains("/nowhere/debug/sluice-runner"),
            "{message}"
        );
    }
}
