//! Preparing an emulated pod's process: volumes materialised as files,
//! mount paths rewritten, environment assembled.
//!
//! # Files and paths
//!
//! Each pod gets `<root>/<namespace>/<pod>/`. Secret, ConfigMap and
//! emptyDir volumes are written under `volumes/<volume>/` (Secret data
//! decoded, `items` honoured), and each of the first container's
//! `volumeMounts` is copied to `fs/<mountPath>` (with `subPath`). The
//! process cannot see `/etc/...`, so every mount path that appears in the
//! command, the args, an env value or `workingDir` is rewritten to its
//! place under `fs/` (a whole path component must match), and
//! `SLUICE_E2E_ROOT` holds the `fs/` folder for programs that build paths
//! themselves. The process starts in `workingDir` (rewritten, created) or
//! `fs/`, with a clean environment: `PATH`, `HOME` (the pod folder),
//! `HOSTNAME` (the pod name), then the container's `env`/`envFrom`
//! (`value`, `secretKeyRef`, `configMapKeyRef`, `fieldRef`, `$(VAR)`
//! expansion). stdout and stderr go to `logs/container.log`.
//!
//! A pod that cannot start (missing Secret, unsupported volume, no command)
//! fails at once with exit code 128 and reason `ContainerCannotRun`,
//! instead of hanging in `ContainerCreating` as a real node would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Secret, Volume};
use kube::api::Api;
use serde_json::Value;

use super::KubeletError;
use super::pod::PodRun;

/// Rewrites each mount path in `text` to its local folder; a mapping
/// applies only where a whole path matches (followed by `/`, a separator
/// or the end), longest mount path first.
pub fn substitute_paths(text: &str, mappings: &[(String, String)]) -> String {
    let mut ordered: Vec<&(String, String)> =
        mappings.iter().filter(|(from, _)| from.len() > 1).collect();
    ordered.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    let boundary_before = |text: &str, index: usize| {
        index == 0 || text[..index].ends_with(|character: char| " =:,'\"".contains(character))
    };
    let boundary_after = |text: &str, index: usize| {
        index == text.len()
            || text[index..].starts_with(|character: char| "/ :,;'\"".contains(character))
    };
    let mut result = String::with_capacity(text.len());
    let mut index = 0;
    'scan: while index < text.len() {
        for (from, to) in &ordered {
            if text[index..].starts_with(from.as_str())
                && boundary_before(text, index)
                && boundary_after(text, index + from.len())
            {
                result.push_str(to);
                index += from.len();
                continue 'scan;
            }
        }
        let Some(character) = text[index..].chars().next() else {
            break;
        };
        result.push(character);
        index += character.len_utf8();
    }
    result
}

/// Adds a mapping for each folder above a mount path that exists only in
/// the pod (`/var/run/sluice/connections` above
/// `/var/run/sluice/connections/crm`): in a real pod it holds the mounts,
/// so a program handed the folder finds them there. Folders that exist on
/// this machine (`/var`, `/tmp`) are left alone.
fn add_pod_only_ancestors(mappings: &mut Vec<(String, String)>, fs_root: &Path) {
    let mut ancestors = Vec::new();
    for (mount_path, _) in mappings.iter() {
        for ancestor in Path::new(mount_path).ancestors().skip(1) {
            let text = ancestor.display().to_string();
            if text.len() > 1
                && !ancestor.exists()
                && !mappings.iter().any(|(from, _)| *from == text)
                && !ancestors.iter().any(|(from, _)| *from == text)
            {
                let target = fs_root.join(text.trim_start_matches('/'));
                ancestors.push((text, target.display().to_string()));
            }
        }
    }
    mappings.extend(ancestors);
}

/// Expands `$(NAME)` references to already defined variables, like the kubelet.
pub fn expand_variables(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut result = text.to_string();
    for (name, value) in env {
        result = result.replace(&format!("$({name})"), value);
    }
    result
}

pub(super) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> KubeletError {
    let path = path.to_path_buf();
    move |source| KubeletError::Io {
        action,
        path,
        source,
    }
}

pub(super) fn write_file(path: &Path, contents: &[u8]) -> Result<(), KubeletError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error("create", parent))?;
    }
    std::fs::write(path, contents).map_err(io_error("write", path))
}

pub(super) fn copy_tree(source: &Path, target: &Path) -> Result<(), KubeletError> {
    if source.is_dir() {
        std::fs::create_dir_all(target).map_err(io_error("create", target))?;
        for entry in std::fs::read_dir(source).map_err(io_error("read", source))? {
            let entry = entry.map_err(io_error("read", source))?;
            copy_tree(&entry.path(), &target.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
        std::fs::copy(source, target).map_err(io_error("copy", source))?;
        Ok(())
    }
}

pub(super) fn kube_error(action: String) -> impl FnOnce(kube::Error) -> KubeletError {
    move |source| KubeletError::Kube { action, source }
}

/// The key → bytes a Secret or ConfigMap provides.
type Data = BTreeMap<String, Vec<u8>>;

/// Everything needed to start the process.
pub(super) struct Prepared {
    pub(super) program: String,
    pub(super) args: Vec<String>,
    pub(super) env: BTreeMap<String, String>,
    pub(super) working_dir: PathBuf,
}

impl PodRun {
    pub(super) fn namespace(&self) -> String {
        self.job.metadata.namespace.clone().unwrap_or_default()
    }

    async fn secret_data(&self, name: &str, optional: bool) -> Result<Data, KubeletError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace());
        match secrets
            .get_opt(name)
            .await
            .map_err(kube_error(format!("get secret {name}")))?
        {
            Some(secret) => Ok(secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key, value.0))
                .collect()),
            None if optional => Ok(Data::new()),
            None => Err(KubeletError::Unsupported(format!(
                "secret \"{name}\" not found"
            ))),
        }
    }

    async fn config_map_data(&self, name: &str, optional: bool) -> Result<Data, KubeletError> {
        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace());
        match config_maps
            .get_opt(name)
            .await
            .map_err(kube_error(format!("get configmap {name}")))?
        {
            Some(config_map) => {
                let mut data: Data = config_map
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(key, value)| (key, value.into_bytes()))
                    .collect();
                data.extend(
                    config_map
                        .binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(key, value)| (key, value.0)),
                );
                Ok(data)
            }
            None if optional => Ok(Data::new()),
            None => Err(KubeletError::Unsupported(format!(
                "configmap \"{name}\" not found"
            ))),
        }
    }

    async fn materialise_volume(&self, volume: &Volume, folder: &Path) -> Result<(), KubeletError> {
        std::fs::create_dir_all(folder).map_err(io_error("create", folder))?;
        let (data, items) = if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            (
                self.secret_data(&name, secret.optional.unwrap_or(false))
                    .await?,
                secret.items.clone(),
            )
        } else if let Some(config_map) = &volume.config_map {
            (
                self.config_map_data(&config_map.name, config_map.optional.unwrap_or(false))
                    .await?,
                config_map.items.clone(),
            )
        } else if volume.empty_dir.is_some() {
            return Ok(());
        } else {
            return Err(KubeletError::Unsupported(format!(
                "volume \"{}\" is not a secret, configMap or emptyDir volume",
                volume.name
            )));
        };
        match items {
            Some(items) => {
                for item in items {
                    let value = data.get(&item.key).ok_or_else(|| {
                        KubeletError::Unsupported(format!(
                            "volume \"{}\" has no key \"{}\"",
                            volume.name, item.key
                        ))
                    })?;
                    write_file(&folder.join(&item.path), value)?;
                }
            }
            None => {
                for (key, value) in &data {
                    write_file(&folder.join(key), value)?;
                }
            }
        }
        Ok(())
    }

    async fn env_value(
        &self,
        source: &k8s_openapi::api::core::v1::EnvVarSource,
        pod: &Pod,
    ) -> Result<Option<String>, KubeletError> {
        if let Some(reference) = &source.secret_key_ref {
            let optional = reference.optional.unwrap_or(false);
            let data = self.secret_data(&reference.name, optional).await?;
            return match data.get(&reference.key) {
                Some(value) => Ok(Some(String::from_utf8_lossy(value).into_owned())),
                None if optional => Ok(None),
                None => Err(KubeletError::Unsupported(format!(
                    "secret \"{}\" has no key \"{}\"",
                    reference.name, reference.key
                ))),
            };
        }
        if let Some(reference) = &source.config_map_key_ref {
            let optional = reference.optional.unwrap_or(false);
            let data = self.config_map_data(&reference.name, optional).await?;
            return match data.get(&reference.key) {
                Some(value) => Ok(Some(String::from_utf8_lossy(value).into_owned())),
                None if optional => Ok(None),
                None => Err(KubeletError::Unsupported(format!(
                    "configmap \"{}\" has no key \"{}\"",
                    reference.name, reference.key
                ))),
            };
        }
        if let Some(reference) = &source.field_ref {
            let pod_json = serde_json::to_value(pod).unwrap_or(Value::Null);
            let path = reference.field_path.as_str();
            let value = match path {
                "status.podIP" | "status.hostIP" => Some("127.0.0.1".to_string()),
                _ => {
                    if let Some(label) = path
                        .strip_prefix("metadata.labels['")
                        .and_then(|rest| rest.strip_suffix("']"))
                    {
                        pod_json
                            .pointer(&format!("/metadata/labels/{label}"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    } else if let Some(annotation) = path
                        .strip_prefix("metadata.annotations['")
                        .and_then(|rest| rest.strip_suffix("']"))
                    {
                        pod_json
                            .pointer(&format!("/metadata/annotations/{annotation}"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    } else {
                        pod_json
                            .pointer(&format!("/{}", path.replace('.', "/")))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    }
                }
            };
            return Ok(Some(value.unwrap_or_default()));
        }
        Err(KubeletError::Unsupported(
            "only secretKeyRef, configMapKeyRef and fieldRef env sources are emulated".into(),
        ))
    }

    pub(super) async fn prepare(
        &self,
        pod: &Pod,
        spec: &PodSpec,
        container: &Container,
        folder: &Path,
    ) -> Result<Prepared, KubeletError> {
        let volumes_folder = folder.join("volumes");
        let fs_root = folder.join("fs");
        std::fs::create_dir_all(&fs_root).map_err(io_error("create", &fs_root))?;
        for volume in spec.volumes.iter().flatten() {
            self.materialise_volume(volume, &volumes_folder.join(&volume.name))
                .await?;
        }
        let mut mappings = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let mut source = volumes_folder.join(&mount.name);
            if !source.exists() {
                return Err(KubeletError::Unsupported(format!(
                    "volume mount \"{}\" names no volume",
                    mount.name
                )));
            }
            if let Some(sub_path) = mount
                .sub_path
                .as_deref()
                .filter(|sub_path| !sub_path.is_empty())
            {
                source = source.join(sub_path);
            }
            let target = fs_root.join(mount.mount_path.trim_start_matches('/'));
            copy_tree(&source, &target)?;
            mappings.push((
                mount.mount_path.trim_end_matches('/').to_string(),
                target.display().to_string(),
            ));
        }
        add_pod_only_ancestors(&mut mappings, &fs_root);
        let mut env = BTreeMap::new();
        env.insert(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        );
        env.insert("HOME".to_string(), folder.display().to_string());
        env.insert(
            "HOSTNAME".to_string(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        env.insert("SLUICE_E2E_ROOT".to_string(), fs_root.display().to_string());
        for source in container.env_from.iter().flatten() {
            let prefix = source.prefix.clone().unwrap_or_default();
            let data = if let Some(secret) = &source.secret_ref {
                self.secret_data(&secret.name, secret.optional.unwrap_or(false))
                    .await?
            } else if let Some(config_map) = &source.config_map_ref {
                self.config_map_data(&config_map.name, config_map.optional.unwrap_or(false))
                    .await?
            } else {
                continue;
            };
            for (key, value) in data {
                env.insert(
                    format!("{prefix}{key}"),
                    String::from_utf8_lossy(&value).into_owned(),
                );
            }
        }
        for variable in container.env.iter().flatten() {
            let value = match (&variable.value, &variable.value_from) {
                (Some(value), _) => Some(expand_variables(value, &env)),
                (None, Some(source)) => self.env_value(source, pod).await?,
                (None, None) => Some(String::new()),
            };
            if let Some(value) = value {
                env.insert(variable.name.clone(), substitute_paths(&value, &mappings));
            }
        }
        let mut words: Vec<String> = container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
            .cloned()
            .collect();
        if container.command.as_ref().is_none_or(Vec::is_empty) {
            return Err(KubeletError::Unsupported(
                "the container has no command (the emulator runs commands, not images)".into(),
            ));
        }
        for word in &mut words {
            *word = substitute_paths(&expand_variables(word, &env), &mappings);
        }
        let command = words.remove(0);
        let program = self
            .options
            .programs
            .get(&command)
            .map(|path| path.display().to_string())
            .unwrap_or(command);
        let working_dir = match container
            .working_dir
            .as_deref()
            .filter(|dir| !dir.is_empty())
        {
            Some(dir) => {
                let rewritten = substitute_paths(dir, &mappings);
                if rewritten == dir {
                    fs_root.join(dir.trim_start_matches('/'))
                } else {
                    PathBuf::from(rewritten)
                }
            }
            None => fs_root.clone(),
        };
        std::fs::create_dir_all(&working_dir).map_err(io_error("create", &working_dir))?;
        Ok(Prepared {
            program,
            args: words,
            env,
            working_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_rewritten_only_as_whole_paths() {
        let mappings = vec![
            (
                "/etc/sluice".to_string(),
                "/tmp/p/fs/etc/sluice".to_string(),
            ),
            (
                "/etc/sluice/secrets".to_string(),
                "/tmp/p/fs/etc/sluice/secrets".to_string(),
            ),
        ];
        assert_eq!(
            substitute_paths("/etc/sluice/secrets/token", &mappings),
            "/tmp/p/fs/etc/sluice/secrets/token"
        );
        assert_eq!(
            substitute_paths("--dir=/etc/sluice", &mappings),
            "--dir=/tmp/p/fs/etc/sluice"
        );
        assert_eq!(substitute_paths("/etc/sluicer", &mappings), "/etc/sluicer");
        assert_eq!(
            substitute_paths("cat /etc/sluice/a; ls", &mappings),
            "cat /tmp/p/fs/etc/sluice/a; ls"
        );
    }

    #[test]
    fn folders_that_exist_only_in_the_pod_are_rewritten_too() {
        let fs_root = Path::new("/tmp/p/fs");
        let mut mappings = vec![(
            "/var/run/sluice-e2e-nowhere/connections/crm".to_string(),
            "/tmp/p/fs/var/run/sluice-e2e-nowhere/connections/crm".to_string(),
        )];
        add_pod_only_ancestors(&mut mappings, fs_root);
        assert_eq!(
            substitute_paths("/var/run/sluice-e2e-nowhere/connections", &mappings),
            "/tmp/p/fs/var/run/sluice-e2e-nowhere/connections"
        );
        assert_eq!(
            substitute_paths("/var/run", &mappings),
            "/var/run",
            "a folder of this machine is left alone"
        );
    }

    #[test]
    fn variables_expand_like_the_kubelet() {
        let env = BTreeMap::from([("NAME".to_string(), "run-1".to_string())]);
        assert_eq!(
            expand_variables("--run=$(NAME) $(OTHER)", &env),
            "--run=run-1 $(OTHER)"
        );
    }
}
