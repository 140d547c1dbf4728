//! The native sidecars of a run's pod: one per custom node type its nodes
//! use, as an init container with `restartPolicy: Always` (Kubernetes
//! starts it before the runner and stops it after). Each listens on its
//! own localhost port, given to it in `SLUICE_NODE_PORT` and to the runner
//! in `SLUICE_NODE_SERVERS`, and sees only the Secrets of the Connections
//! its own nodes name. Pure: builds containers, never talks to a server.

use crate::run::job::{MountedConnection, connection_volume_name};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Capabilities, Container, EnvVar, SecurityContext, VolumeMount};
use sluice_crds::Workflow;
use sluice_crds::connection::{CONNECTIONS_DIR, CONNECTIONS_DIR_ENV};
use sluice_crds::node_type::{NODE_PORT_ENV, NODE_SERVERS_ENV};
use sluice_runner::nodes::custom::{CustomTypes, NodeServers, sidecar_name};
use std::collections::BTreeSet;

/// Port of the first sidecar; the next ones count up, in type-name order.
pub const FIRST_PORT: u16 = 9100;

/// Environment variable telling a sidecar which type it serves.
pub const NODE_TYPE_ENV: &str = "SLUICE_NODE_TYPE";

/// The sidecars of one run and where the runner reaches them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSidecars {
    /// The init containers, in type-name order.
    pub containers: Vec<Container>,
    /// Type name → `http://127.0.0.1:<port>`.
    pub servers: NodeServers,
}

/// Builds the sidecars for the custom types `workflow` uses that `types`
/// defines (a type it lacks gets none; its nodes fail saying so).
/// `mounted` are the Connection Secrets of the pod, in the order
/// [`crate::run::job::build_job`] mounts them.
pub fn build_sidecars(
    workflow: &Workflow,
    types: &CustomTypes,
    mounted: &[MountedConnection],
) -> NodeSidecars {
    let mut sidecars = NodeSidecars::default();
    let used = super::used_types(workflow);
    let defined = used.iter().filter_map(|name| types.get(name));
    for (offset, custom) in defined.enumerate() {
        let port = FIRST_PORT + offset as u16;
        let connections: BTreeSet<&str> = workflow
            .spec
            .nodes
            .iter()
            .filter_map(|node| node.custom.as_ref())
            .filter(|block| block.type_ == custom.name)
            .filter_map(|block| block.connection.as_deref())
            .collect();
        let mut mounts = vec![VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        }];
        for (index, connection) in mounted.iter().enumerate() {
            if connections.contains(connection.connection.as_str()) {
                mounts.push(VolumeMount {
                    name: connection_volume_name(index),
                    mount_path: format!("{CONNECTIONS_DIR}/{}", connection.connection),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
            }
        }
        let env = [
            (NODE_PORT_ENV, port.to_string()),
            (NODE_TYPE_ENV, custom.name.clone()),
            (CONNECTIONS_DIR_ENV, CONNECTIONS_DIR.to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| EnvVar {
            name: name.to_owned(),
            value: Some(value),
            ..EnvVar::default()
        })
        .collect();
        let spec = &custom.spec;
        sidecars.containers.push(Container {
            name: sidecar_name(&custom.name),
            image: Some(spec.image.clone()),
            command: (!spec.command.is_empty()).then(|| spec.command.clone()),
            args: (!spec.args.is_empty()).then(|| spec.args.clone()),
            env: Some(env),
            resources: spec.resources.clone(),
            restart_policy: Some("Always".to_owned()),
            volume_mounts: Some(mounts),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".to_owned()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            }),
            ..Container::default()
        });
        sidecars
            .servers
            .insert(custom.name.clone(), format!("http://127.0.0.1:{port}"));
    }
    sidecars
}

/// Adds the sidecars to a run's Job and tells the runner where they are.
pub fn add_to_job(job: &mut Job, sidecars: NodeSidecars) {
    if sidecars.containers.is_empty() {
        return;
    }
    let Some(pod) = job
        .spec
        .as_mut()
        .and_then(|spec| spec.template.spec.as_mut())
    else {
        return;
    };
    if let Some(runner) = pod.containers.first_mut() {
        runner.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: NODE_SERVERS_ENV.to_owned(),
            value: Some(sidecars.servers.to_env_value()),
            ..EnvVar::default()
        });
    }
    pod.init_containers
        .get_or_insert_with(Vec::new)
        .extend(sidecars.containers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crds::nodes::CustomNode;
    use sluice_crds::{NodeSpec, NodeTypeSpec};
    use sluice_runner::nodes::custom::Scope;

    fn custom(name: &str, type_name: &str, connection: Option<&str>) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            custom: Some(CustomNode {
                type_: type_name.into(),
                connection: connection.map(Into::into),
                ..CustomNode::default()
            }),
            ..NodeSpec::default()
        }
    }

    fn types() -> CustomTypes {
        let mut types = CustomTypes::new();
        for (name, image) in [
            ("mailer", "example/mailer:2"),
            ("greeter", "example/greeter:1"),
        ] {
            types.insert(
                name,
                Scope::NodeType,
                NodeTypeSpec {
                    version: "1".into(),
                    image: image.into(),
                    command: vec!["serve".into()],
                    ..NodeTypeSpec::default()
                },
            );
        }
        types
    }

    #[test]
    fn one_native_sidecar_per_used_type_each_with_its_port_and_only_its_connections() {
        let workflow = Workflow::fixture("w")
            .with_node(custom("mail", "mailer", Some("smtp")))
            .with_node(custom("greet", "greeter", None))
            .with_node(custom("greet-again", "greeter", None))
            .with_node(custom("lost", "missing", None));
        let mounted = [
            MountedConnection {
                connection: "crm".into(),
                secret: "crm-token".into(),
                keys: vec![],
                optional: false,
            },
            MountedConnection {
                connection: "smtp".into(),
                secret: "smtp-login".into(),
                keys: vec![],
                optional: false,
            },
        ];
        let sidecars = build_sidecars(&workflow, &types(), &mounted);
        let names: Vec<&str> = sidecars
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["node-greeter", "node-mailer"]);
        assert_eq!(
            sidecars.servers.to_env_value(),
            "greeter=http://127.0.0.1:9100,mailer=http://127.0.0.1:9101"
        );
        let mailer = &sidecars.containers[1];
        assert_eq!(mailer.restart_policy.as_deref(), Some("Always"));
        assert_eq!(mailer.image.as_deref(), Some("example/mailer:2"));
        let env = mailer.env.clone().unwrap();
        assert!(
            env.iter()
                .any(|v| v.name == "SLUICE_NODE_PORT" && v.value.as_deref() == Some("9101"))
        );
        let mounts: Vec<(String, String)> = mailer
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .map(|m| (m.name, m.mount_path))
            .collect();
        assert_eq!(
            mounts,
            [
                ("tmp".to_owned(), "/tmp".to_owned()),
                ("connection-1".to_owned(), format!("{CONNECTIONS_DIR}/smtp"))
            ]
        );
        let greeter_mounts = sidecars.containers[0].volume_mounts.clone().unwrap();
        assert_eq!(greeter_mounts.len(), 1, "no Connection: only /tmp");
    }

    #[test]
    fn the_job_gets_the_sidecars_and_the_runner_their_addresses() {
        let workflow = Workflow::fixture("w").with_node(custom("greet", "greeter", None));
        let mut job = Job {
            spec: Some(k8s_openapi::api::batch::v1::JobSpec {
                template: k8s_openapi::api::core::v1::PodTemplateSpec {
                    spec: Some(k8s_openapi::api::core::v1::PodSpec {
                        containers: vec![Container {
                            name: "runner".into(),
                            ..Container::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Job::default()
        };
        add_to_job(&mut job, build_sidecars(&workflow, &types(), &[]));
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.init_containers.unwrap()[0].name, "node-greeter");
        let env = pod.containers[0].env.clone().unwrap();
        assert_eq!(env[0].name, "SLUICE_NODE_SERVERS");
        assert_eq!(
            env[0].value.as_deref(),
            Some("greeter=http://127.0.0.1:9100")
        );
    }
}
