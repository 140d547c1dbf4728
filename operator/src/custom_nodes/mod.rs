//! Custom node types (NodeType, ClusterNodeType) as the operator uses
//! them: which types a Workflow names, and reading the types usable in a
//! namespace (its NodeTypes shadowing the cluster's ClusterNodeTypes).
//! Only reads; validation is the runner's ([`sluice_runner::validate`]),
//! the pod's sidecars are [`crate::run::job`]'s.

pub mod mirror;
pub mod sidecars;

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use sluice_crds::{ClusterNodeType, CustomNodeType, Workflow};
use sluice_runner::nodes::custom::{CustomTypes, Scope};
use std::collections::BTreeSet;

/// The custom types `workflow`'s nodes name, in name order.
pub fn used_types(workflow: &Workflow) -> Vec<String> {
    workflow
        .spec
        .nodes
        .iter()
        .filter_map(|node| node.custom.as_ref().map(|custom| custom.type_.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Builds the usable types of a namespace from its NodeTypes and the
/// cluster's ClusterNodeTypes (pure: the caller lists them).
pub fn usable_types(
    node_types: &[CustomNodeType],
    cluster_node_types: &[ClusterNodeType],
) -> CustomTypes {
    let mut types = CustomTypes::new();
    for node_type in node_types {
        types.insert(
            node_type.name_any(),
            Scope::NodeType,
            node_type.spec.clone(),
        );
    }
    for cluster in cluster_node_types {
        types.insert(
            cluster.name_any(),
            Scope::ClusterNodeType,
            cluster.spec.definition.clone(),
        );
    }
    types
}

/// Reads the custom types usable in `namespace`. A ClusterNodeType list
/// the operator may not read (a namespace-scoped install without the
/// cluster role) counts as none.
pub async fn observe_usable_types(
    client: &Client,
    namespace: &str,
) -> Result<CustomTypes, kube::Error> {
    let node_types: Api<CustomNodeType> = Api::namespaced(client.clone(), namespace);
    let node_types = node_types.list(&ListParams::default()).await?.items;
    let cluster: Api<ClusterNodeType> = Api::all(client.clone());
    let cluster_node_types = match cluster.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 403 || status.code == 404 => Vec::new(),
        Err(error) => return Err(error),
    };
    Ok(usable_types(&node_types, &cluster_node_types))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crds::{ClusterNodeTypeSpec, NodeTypeSpec};

    fn spec(version: &str) -> NodeTypeSpec {
        NodeTypeSpec {
            version: version.into(),
            image: "example/greeter:1".into(),
            ..NodeTypeSpec::default()
        }
    }

    #[test]
    fn a_namespaces_node_type_shadows_the_cluster_one() {
        let local = CustomNodeType::new("greeter", spec("2.0.0"));
        let cluster = [
            ClusterNodeType::new(
                "greeter",
                ClusterNodeTypeSpec {
                    definition: spec("1.0.0"),
                },
            ),
            ClusterNodeType::new(
                "mailer",
                ClusterNodeTypeSpec {
                    definition: spec("3.0.0"),
                },
            ),
        ];
        let types = usable_types(&[local], &cluster);
        assert_eq!(types.get("greeter").unwrap().spec.version, "2.0.0");
        assert_eq!(types.get("mailer").unwrap().scope, Scope::ClusterNodeType);
        assert_eq!(types.names(), ["greeter", "mailer"]);
    }

    #[test]
    fn used_types_are_listed_once_in_name_order() {
        let workflow = Workflow::fixture("w")
            .with_node(custom_node("b", "mailer"))
            .with_node(custom_node("a", "greeter"))
            .with_node(custom_node("c", "greeter"));
        assert_eq!(used_types(&workflow), ["greeter", "mailer"]);
    }

    fn custom_node(name: &str, type_name: &str) -> sluice_crds::NodeSpec {
        sluice_crds::NodeSpec {
            name: name.into(),
            custom: Some(sluice_crds::nodes::CustomNode {
                type_: type_name.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
