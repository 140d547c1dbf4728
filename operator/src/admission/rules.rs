//! What the validating webhook decides about one object: the refusals (each
//! with its field path) and the warnings. Pure: the shell looks up what a
//! rule needs ([`Needs`]) and passes it in as [`Observed`]; no client, no
//! clock.
//!
//! Every message comes from the code that judges the same thing later, so
//! `kubectl apply` and the status conditions say the same words:
//! - Workflow: the runner's `parse_spec` and `validate` (jq, cycles, reads
//!   of nodes that are not upstream, parameters, the node limits) and the
//!   connection controller's cross-namespace rule;
//! - WorkflowRun: the run controller's input-schema message, and the
//!   immutable `workflowRef` (also a CEL rule, for clusters without the
//!   webhook);
//! - Schedule: the schedule controller's cron, time-zone and catch-up
//!   checks, and its input against the workflow's schema;
//! - Connection: its Secret.
//!
//! References to objects that do not exist yet (a Connection, a Workflow, a
//! Secret) are warnings, never refusals: GitOps tools apply objects in any
//! order.

use serde_json::Value;
use sluice_crds::{Connection, Schedule, Workflow, WorkflowRun};

/// The kinds the webhook judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `workflows.sluice.dev`.
    Workflow,
    /// `workflowruns.sluice.dev`.
    WorkflowRun,
    /// `schedules.sluice.dev`.
    Schedule,
    /// `connections.sluice.dev`.
    Connection,
}

impl Kind {
    /// The kind of a Sluice object by its `kind`, or None for other kinds.
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "Workflow" => Some(Self::Workflow),
            "WorkflowRun" => Some(Self::WorkflowRun),
            "Schedule" => Some(Self::Schedule),
            "Connection" => Some(Self::Connection),
            _ => None,
        }
    }
}

/// One refusal: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Field path, e.g. `spec.nodes[3].transform.jq`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The webhook's answer about one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Why the object is refused; empty when it is allowed.
    pub refusals: Vec<Refusal>,
    /// Things the user should know that do not block the write.
    pub warnings: Vec<String>,
}

impl Verdict {
    fn refuse(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.refusals.push(Refusal {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Whether the object may be written.
    pub fn allowed(&self) -> bool {
        self.refusals.is_empty()
    }
}

/// What the shell must look up before [`judge`] can run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The Workflow of this name in the object's namespace.
    pub workflow: Option<String>,
    /// The names of the Connections in the object's namespace.
    pub connections: bool,
    /// Whether the Secret of this name exists in the object's namespace.
    pub secret: Option<String>,
    /// The namespace's plan and runs (a WorkflowRun being created).
    pub quota: bool,
}

/// A namespace's plan, and its runs when a refusing limit counts them.
#[derive(Clone, Debug, Default)]
pub struct Quota {
    pub subscribed: Option<crate::quota::plan::Subscribed>,
    pub runs: Vec<crate::run::admission::RunView>,
}

/// What the shell found.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The workflow asked for by [`Needs::workflow`], if it exists.
    pub workflow: Option<Workflow>,
    /// The Connections in the namespace, when asked for.
    pub connections: Vec<String>,
    /// Whether the Secret asked for exists.
    pub secret_exists: bool,
    /// The namespace's plan and runs, when asked for and on a plan.
    pub quota: Option<Quota>,
    /// When the lookups were made (the quota periods).
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The lookups judging `object` of `kind` needs. Nothing for an object
/// whose spec does not parse: it is refused before any lookup.
pub fn needs(kind: Kind, object: &Value) -> Needs {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let workflow_ref = || {
        spec.pointer("/workflowRef/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match kind {
        Kind::Workflow => Needs {
            connections: true,
            ..Needs::default()
        },
        Kind::WorkflowRun => Needs {
            workflow: workflow_ref(),
            quota: true,
            ..Needs::default()
        },
        Kind::Schedule => Needs {
            workflow: workflow_ref(),
            ..Needs::default()
        },
        Kind::Connection => Needs {
            secret: spec
                .pointer("/secretRef/name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            ..Needs::default()
        },
    }
}

/// Judges `object` (and, on update, what it replaces).
pub fn judge(kind: Kind, object: &Value, old: Option<&Value>, observed: &Observed) -> Verdict {
    let mut verdict = Verdict::default();
    match kind {
        Kind::Workflow => judge_workflow(object, observed, &mut verdict),
        Kind::WorkflowRun => judge_run(object, old, observed, &mut verdict),
        Kind::Schedule => judge_schedule(object, observed, &mut verdict),
        Kind::Connection => judge_connection(object, observed, &mut verdict),
    }
    verdict
}

fn parse<T: serde::de::DeserializeOwned>(
    kind: &str,
    object: &Value,
    verdict: &mut Verdict,
) -> Option<T> {
    match serde_json::from_value(object.clone()) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            verdict.refuse(
                "spec",
                format!("the object does not fit the {kind} API: {error}: fix the field it names"),
            );
            None
        }
    }
}

fn judge_workflow(object: &Value, observed: &Observed, verdict: &mut Verdict) {
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let spec = match sluice_runner::validate::parse_spec(spec) {
        Ok(spec) => spec,
        Err(errors) => {
            for error in errors {
                verdict.refuse(error.path, error.message);
            }
            return;
        }
    };
    // The spec is read once above; the rest of the object (metadata) is
    // read without copying the nodes again.
    let Some(mut workflow) = parse::<Workflow>("Workflow", &without_spec(object), verdict) else {
        return;
    };
    workflow.spec = spec;
    for error in sluice_runner::validate::validate(&workflow.spec) {
        verdict.refuse(error.path, error.message);
    }
    for issue in crate::connection::plan::cross_namespace_issues(&workflow) {
        verdict.refuse(issue.path, issue.message);
    }
    // A list-map on a real API server; said here with a fix for the rest.
    for (index, trigger) in workflow.spec.triggers.iter().enumerate() {
        if let Some(first) = workflow.spec.triggers[..index]
            .iter()
            .position(|other| other.name == trigger.name)
        {
            verdict.refuse(
                format!("spec.triggers[{index}].name"),
                format!(
                    "duplicate trigger name {:?} (also spec.triggers[{first}]): rename one of the two triggers",
                    trigger.name
                ),
            );
        }
    }
    if !verdict.allowed() {
        return;
    }
    for name in crate::run::job::referenced_connections(&workflow) {
        if !observed.connections.contains(&name) {
            verdict.warnings.push(format!(
                "connection {name:?} does not exist in this namespace yet: the workflow stays not Ready (ConnectionMissing) until it is created"
            ));
        }
    }
}

/// `object` with an empty node list for its spec.
fn without_spec(object: &Value) -> Value {
    match object.as_object() {
        Some(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| match key.as_str() {
                    "spec" => (key.clone(), serde_json::json!({"nodes": []})),
                    _ => (key.clone(), value.clone()),
                })
                .collect(),
        ),
        None => object.clone(),
    }
}

fn judge_run(object: &Value, old: Option<&Value>, observed: &Observed, verdict: &mut Verdict) {
    let Some(run) = parse::<WorkflowRun>("WorkflowRun", object, verdict) else {
        return;
    };
    if let Some(old) = old {
        // An update: only the immutable reference matters here; the input
        // was judged when the run was created.
        if let Ok(old) = serde_json::from_value::<WorkflowRun>(old.clone())
            && old.spec.workflow_ref != run.spec.workflow_ref
        {
            verdict.refuse(
                "spec.workflowRef",
                format!(
                    "workflowRef cannot change after the run is created (it was {:?}, the update sets {:?}): create a new run instead",
                    old.spec.workflow_ref.name, run.spec.workflow_ref.name
                ),
            );
        }
        return;
    }
    judge_quota(&run, observed, verdict);
    let workflow_name = &run.spec.workflow_ref.name;
    let Some(workflow) = &observed.workflow else {
        verdict.warnings.push(format!(
            "workflow {workflow_name:?} does not exist in this namespace yet: the run waits for it"
        ));
        return;
    };
    // A resumed run's input may come from the earlier run: judged at start.
    if run.spec.resume_from.is_some() && run.spec.input.is_none() {
        return;
    }
    let input = run.spec.input.clone().unwrap_or(Value::Null);
    if let Err(errors) = sluice_runner::input::prepare(workflow.spec.input.as_ref(), input) {
        verdict.refuse(
            "spec.input",
            sluice_runner::input::mismatch_message(workflow_name, &errors),
        );
    }
}

/// The refusing limits of the namespace's plan: the input's size, and the
/// runs per day or month and node-seconds as far as the runs in the
/// cluster already use them (the controller adds the runs only PostgreSQL
/// still holds, and decides exactly under its lock). The concurrent limit
/// only makes a run wait, so it is not judged here.
fn judge_quota(run: &WorkflowRun, observed: &Observed, verdict: &mut Verdict) {
    use crate::quota::plan::{Departed, QuotaDecision, build_usage, plan_quota};
    let Some(Quota {
        subscribed: Some(subscribed),
        runs,
    }) = &observed.quota
    else {
        return;
    };
    let name = run.metadata.name.clone().unwrap_or_default();
    let input_bytes = run
        .spec
        .input
        .as_ref()
        .and_then(|input| serde_json::to_vec(input).ok())
        .map_or(4, |bytes| bytes.len() as u64);
    let candidate = crate::run::admission::RunView::of(run);
    let usage = build_usage(runs, &name, Departed::default(), observed.now);
    if let QuotaDecision::Refuse { limit, message } = plan_quota(
        subscribed,
        &usage,
        &candidate,
        runs,
        input_bytes,
        observed.now,
    ) {
        let field = match limit {
            "spec.limits.maxInputBytes" => "spec.input",
            _ => "metadata.namespace",
        };
        verdict.refuse(
            field,
            format!("{}: {message}", sluice_crds::plan::QUOTA_EXCEEDED),
        );
    }
}

fn judge_schedule(object: &Value, observed: &Observed, verdict: &mut Verdict) {
    let Some(schedule) = parse::<Schedule>("Schedule", object, verdict) else {
        return;
    };
    let spec = &schedule.spec;
    if let Err(invalid) = crate::schedule::cron::SlotClock::new(
        &spec.cron,
        spec.time_zone.as_deref(),
        spec.daylight_saving.as_ref(),
    ) {
        verdict.refuse(invalid.field, invalid.message);
    }
    if let Err(invalid) = crate::schedule::plan::validate_catch_up(&schedule) {
        verdict.refuse(invalid.field, invalid.message);
    }
    let workflow_name = &spec.workflow_ref.name;
    match &observed.workflow {
        None => verdict.warnings.push(format!(
            "workflow {workflow_name:?} does not exist in this namespace yet: the schedule fires no run until it is created"
        )),
        Some(workflow) => {
            let input = spec.input.clone().unwrap_or(Value::Null);
            if let Err(errors) = sluice_runner::input::prepare(workflow.spec.input.as_ref(), input)
            {
                verdict.refuse(
                    "spec.input",
                    sluice_runner::input::mismatch_message(workflow_name, &errors),
                );
            }
        }
    }
}

fn judge_connection(object: &Value, observed: &Observed, verdict: &mut Verdict) {
    let Some(connection) = parse::<Connection>("Connection", object, verdict) else {
        return;
    };
    if let Some(secret) = &connection.spec.secret_ref
        && !observed.secret_exists
    {
        verdict.warnings.push(format!(
            "secret {:?} named by spec.secretRef does not exist in this namespace yet: the connection stays not Ready (SecretMissing) until it is created",
            secret.name
        ));
    }
}
