//! Builders for Sluice objects in tests: `Workflow::fixture("w")
//! .with_node(NodeSpec::transform("a", ".input"))`. Plain data, no I/O.

use crate::LocalObjectReference;
use crate::nodes::{FailNode, HttpNode, ShellNode, TransformNode, WaitNode};
use crate::workflow::{NodeSpec, Workflow, WorkflowSpec};
use crate::workflow_run::{WorkflowRun, WorkflowRunSpec};

/// Namespace fixtures live in.
pub const FIXTURE_NAMESPACE: &str = "default";

impl Workflow {
    /// An empty workflow named `name` in the `default` namespace.
    pub fn fixture(name: &str) -> Self {
        let mut workflow = Workflow::new(name, WorkflowSpec::default());
        workflow.metadata.namespace = Some(FIXTURE_NAMESPACE.to_owned());
        workflow.metadata.generation = Some(1);
        workflow
    }

    /// Adds a node.
    pub fn with_node(mut self, node: NodeSpec) -> Self {
        self.spec.nodes.push(node);
        self
    }

    /// Changes the spec with `change`.
    pub fn with_spec(mut self, change: impl FnOnce(&mut WorkflowSpec)) -> Self {
        change(&mut self.spec);
        self
    }
}

impl WorkflowRun {
    /// A run of `workflow` named `name` in the `default` namespace.
    pub fn fixture(name: &str, workflow: &str) -> Self {
        let spec = WorkflowRunSpec {
            workflow_ref: LocalObjectReference {
                name: workflow.to_owned(),
            },
            ..WorkflowRunSpec::default()
        };
        let mut run = WorkflowRun::new(name, spec);
        run.metadata.namespace = Some(FIXTURE_NAMESPACE.to_owned());
        run.metadata.generation = Some(1);
        run
    }
}

impl NodeSpec {
    /// A node with only a name (add a type block before use).
    pub fn named(name: &str) -> Self {
        NodeSpec {
            name: name.to_owned(),
            ..NodeSpec::default()
        }
    }

    /// A `transform` node running `jq`.
    pub fn transform(name: &str, jq: &str) -> Self {
        NodeSpec {
            transform: Some(TransformNode { jq: jq.to_owned() }),
            ..Self::named(name)
        }
    }

    /// An `http` GET node.
    pub fn http_get(name: &str, url: &str) -> Self {
        NodeSpec {
            http: Some(HttpNode {
                url: url.to_owned(),
                ..HttpNode::default()
            }),
            ..Self::named(name)
        }
    }

    /// A `shell` node running `script`.
    pub fn shell(name: &str, script: &str) -> Self {
        NodeSpec {
            shell: Some(ShellNode {
                script: Some(script.to_owned()),
                ..ShellNode::default()
            }),
            ..Self::named(name)
        }
    }

    /// A `wait` node waiting `duration`.
    pub fn wait(name: &str, duration: &str) -> Self {
        NodeSpec {
            wait: Some(WaitNode {
                duration: Some(duration.to_owned()),
                until: None,
            }),
            ..Self::named(name)
        }
    }

    /// A `fail` node failing with `message`.
    pub fn fail(name: &str, message: &str) -> Self {
        NodeSpec {
            fail: Some(FailNode {
                message: message.to_owned(),
            }),
            ..Self::named(name)
        }
    }

    /// Sets `needs`.
    pub fn needs(mut self, needs: &[&str]) -> Self {
        self.needs = needs.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// Sets `if`.
    pub fn when(mut self, condition: &str) -> Self {
        self.condition = Some(condition.to_owned());
        self
    }

    /// Sets `forEach`.
    pub fn for_each(mut self, items: &str) -> Self {
        self.for_each = Some(items.to_owned());
        self
    }

    /// Changes the node with `change`.
    pub fn with(mut self, change: impl FnOnce(&mut NodeSpec)) -> Self {
        change(&mut self);
        self
    }
}
