//! The Connection controller's decisions: from a Connection, what was
//! observed of its Secret and the result of a probe (if one ran), compute
//! the status to write, the Events to emit, whether a probe is due and when
//! to look again. Pure: no client, the clock is a value.
//!
//! - `Ready` is true when the Secret exists with every key the type needs
//!   ([`ConnectionSpec::required_secret_keys`]); its message names the
//!   missing key and the command that adds it.
//! - `Verified` is the last probe's result; it exists only when
//!   `spec.verify` is set. Probes run when the spec or the Secret's data
//!   changed since the last probe, and every `verify.interval` (10m).
//! - Events are planned on transitions only (status or reason change).
//! - kstatus (Flux): `Reconciling` while a probe of a new spec or new
//!   Secret data is under way ([`plan_probe_start`], written before the
//!   probe), while the Secret or a key is missing (creating it needs no
//!   spec change) and while the last probe failed (probed again every
//!   interval); `Stalled` when only a spec change helps (no
//!   `spec.secretRef` for a type that needs one, invalid probe settings).
//!
//! Nothing here may put a secret value into a message: the plan only sees
//! key names and a fingerprint.

use super::token_plan::{TokenOutcome, reason as token_reason};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sluice_crds::common::{Progress, condition_type, find_condition, set_condition, set_progress};
use sluice_crds::oauth2::AUTHORIZED;
use sluice_crds::{Condition, ConditionStatus, Connection, ConnectionStatus, ConnectionType};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Probe period when `verify.interval` is not set.
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(600);

/// How often a connection that is not Ready is looked at again, besides
/// Secret events (a safety net for missed watch events).
pub const NOT_READY_RECHECK: Duration = Duration::from_secs(300);

/// Reasons used in conditions and Events, searchable by users.
pub mod reason {
    /// The Secret holds every key the type needs.
    pub const READY: &str = "Ready";
    /// The type needs credentials but `spec.secretRef` is not set.
    pub const SECRET_REF_MISSING: &str = "SecretRefMissing";
    /// The Secret named by `spec.secretRef` does not exist.
    pub const SECRET_MISSING: &str = "SecretMissing";
    /// The Secret lacks a key the type needs.
    pub const SECRET_KEY_MISSING: &str = "SecretKeyMissing";
    /// The probe succeeded.
    pub const VERIFIED: &str = "Verified";
    /// The probe was not run because the connection is not Ready.
    pub const NOT_READY: &str = "NotReady";
    /// The type cannot be probed without side effects (slack).
    pub const NOT_PROBED: &str = "NotProbed";
    /// The server could not be reached (DNS, refused, timeout).
    pub const UNREACHABLE: &str = "Unreachable";
    /// The server refused the credentials.
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    /// The server answered, but not with success.
    pub const UNEXPECTED_RESPONSE: &str = "UnexpectedResponse";
    /// The connection's config or the probe's settings are invalid.
    pub const INVALID_CONFIG: &str = "InvalidConfig";
    /// A probe of a new spec or new Secret data is under way (Reconciling).
    pub const PROBING: &str = "Probing";
}

/// What the controller saw of the Secret named by `spec.secretRef`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretObservation {
    /// `spec.secretRef` is not set.
    NotReferenced,
    /// The Secret does not exist.
    Missing,
    /// The Secret exists with these keys and this data fingerprint.
    Present {
        /// Keys of `data` (and `stringData`, as the API server folds it in).
        keys: BTreeSet<String>,
        /// [`secret_fingerprint`] of its data.
        fingerprint: String,
    },
}

impl SecretObservation {
    /// The fingerprint of the Secret's data, when it exists.
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            SecretObservation::Present { fingerprint, .. } => Some(fingerprint),
            _ => None,
        }
    }
}

/// The result of one probe. The message never holds secret values (the
/// prober redacts them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Whether the probe succeeded.
    pub ok: bool,
    /// One of the probe [`reason`]s.
    pub reason: &'static str,
    /// What was probed and what happened.
    pub message: String,
}

/// What a probe was run against: a new spec generation or new Secret data
/// makes a new probe due at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeKey {
    /// `metadata.generation` of the Connection.
    pub generation: Option<i64>,
    /// Fingerprint of the Secret's data (None without a Secret).
    pub fingerprint: Option<String>,
}

/// An Event to emit about the Connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Message for people.
    pub message: String,
}

/// The controller's plan for one Connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionPlan {
    /// The status to write.
    pub status: ConnectionStatus,
    /// Whether it differs from the current status (skip the write if not).
    pub status_changed: bool,
    /// Events to emit.
    pub events: Vec<PlannedEvent>,
    /// When to reconcile again without a change.
    pub requeue_after: Duration,
}

/// SHA-256 over the Secret's data: each key, a zero byte, the value's
/// length and the value, in key order. Lets readers see that credentials
/// changed without seeing them.
pub fn secret_fingerprint(data: &BTreeMap<String, Vec<u8>>) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in data {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
    }
    hex::encode(hasher.finalize())
}

/// The probe period of `connection`.
pub fn verify_interval(connection: &Connection) -> Duration {
    connection
        .spec
        .verify
        .as_ref()
        .and_then(|verify| verify.interval.as_ref())
        .map(|interval| interval.as_std())
        .filter(|interval| !interval.is_zero())
        .unwrap_or(DEFAULT_VERIFY_INTERVAL)
}

/// Whether the Secret satisfies the type; `Err` carries the Ready=False reason and message.
pub fn check_secret(
    connection: &Connection,
    namespace: &str,
    secret: &SecretObservation,
) -> Result<(), (&'static str, String)> {
    let name = connection.metadata.name.as_deref().unwrap_or_default();
    let required = connection.spec.required_secret_keys();
    let what = describe_type(connection);
    let secret_name = connection.spec.secret_ref.as_ref().map(|r| r.name.as_str());
    match (secret, secret_name) {
        (SecretObservation::NotReferenced, _) | (_, None) => match required.first() {
            None => Ok(()),
            Some(_) => Err((
                reason::SECRET_REF_MISSING,
                format!(
                    "connection {name} ({what}) needs a Secret with key(s) {}: set spec.secretRef.name to a Secret in namespace {namespace}",
                    required.join(", ")
                ),
            )),
        },
        (SecretObservation::Missing, Some(secret_name)) => Err((
            reason::SECRET_MISSING,
            format!(
                "secret {secret_name} named by spec.secretRef not found in namespace {namespace}: create it (kubectl create secret generic {secret_name} -n {namespace}{})",
                literal_flags(required)
            ),
        )),
        (SecretObservation::Present { keys, .. }, Some(secret_name)) => {
            match required.iter().find(|key| !keys.contains(**key)) {
                None => Ok(()),
                Some(key) => Err((
                    reason::SECRET_KEY_MISSING,
                    format!(
                        "secret {secret_name} has no key {key} ({what} needs {}): add it (kubectl create secret generic {secret_name} -n {namespace}{} --dry-run=client -o yaml | kubectl apply -f -)",
                        required.join(", "),
                        literal_flags(required)
                    ),
                )),
            }
        }
    }
}

fn literal_flags(keys: &[&str]) -> String {
    keys.iter()
        .map(|key| format!(" --from-literal={key}=…"))
        .collect()
}

fn describe_type(connection: &Connection) -> String {
    let type_name = connection.spec.type_.as_str();
    if let Some(oauth2) = &connection.spec.oauth2 {
        return format!("type {type_name}, oauth2 grant {}", oauth2.grant.as_str());
    }
    match connection.spec.config.get("auth") {
        Some(auth) if connection.spec.type_ == ConnectionType::Http => {
            format!("type {type_name}, auth {auth}")
        }
        _ => format!("type {type_name}"),
    }
}

/// Whether a probe should run now: the connection asks for verification,
/// its type can be probed, it is Ready, and the spec or Secret changed since
/// `last` or the interval has passed since the last probe.
pub fn probe_due(
    connection: &Connection,
    ready: bool,
    key: &ProbeKey,
    last: Option<&ProbeKey>,
    now: DateTime<Utc>,
) -> bool {
    if connection.spec.verify.is_none() || connection.spec.type_ == ConnectionType::Slack || !ready
    {
        return false;
    }
    if last != Some(key) {
        return true;
    }
    let last_time = connection
        .status
        .as_ref()
        .and_then(|status| status.last_verified_time);
    match last_time {
        None => true,
        Some(time) => {
            let interval = chrono::Duration::from_std(verify_interval(connection))
                .unwrap_or(chrono::Duration::MAX);
            time + interval <= now
        }
    }
}

/// Plans the status and Events of `connection`. `probe` is the result of a
/// probe run in this reconcile (None: keep the last `Verified`).
pub fn plan_connection(
    connection: &Connection,
    namespace: &str,
    secret: &SecretObservation,
    probe: Option<&ProbeOutcome>,
    now: DateTime<Utc>,
) -> ConnectionPlan {
    let current = connection.status.clone().unwrap_or_default();
    let generation = connection.metadata.generation;
    let mut status = current.clone();
    status.observed_generation = generation;
    let mut events = vec![];

    let ready_result = check_secret(connection, namespace, secret);
    let ready = ready_result.is_ok();
    let ready_condition = match ready_result {
        Ok(()) => Condition::new(
            condition_type::READY,
            ConditionStatus::True,
            reason::READY,
            match &connection.spec.secret_ref {
                Some(secret_ref) => format!(
                    "secret {} holds every key the connection needs",
                    secret_ref.name
                ),
                None => "the connection needs no credentials".to_owned(),
            },
            generation,
            now,
        ),
        Err((reason, message)) => Condition::new(
            condition_type::READY,
            ConditionStatus::False,
            reason,
            message,
            generation,
            now,
        ),
    };
    plan_transition(&current.conditions, &ready_condition, &mut events);
    set_condition(&mut status.conditions, ready_condition);

    let verified = verified_condition(connection, ready, probe, generation, now);
    match verified {
        Some(condition) => {
            plan_transition(&current.conditions, &condition, &mut events);
            set_condition(&mut status.conditions, condition);
        }
        None => status
            .conditions
            .retain(|c| c.type_ != condition_type::VERIFIED),
    }
    if probe.is_some() {
        status.last_verified_time = Some(now);
    }
    let progress = progress(connection, &status);
    set_progress(&mut status.conditions, &progress, generation, now);

    let requeue_after = if !ready {
        NOT_READY_RECHECK
    } else if connection.spec.verify.is_some() && connection.spec.type_ != ConnectionType::Slack {
        let interval = verify_interval(connection);
        let elapsed = status
            .last_verified_time
            .map(|time| (now - time).to_std().unwrap_or_default())
            .unwrap_or(interval);
        interval.saturating_sub(elapsed).max(Duration::from_secs(1))
    } else {
        DEFAULT_VERIFY_INTERVAL
    };
    ConnectionPlan {
        status_changed: status != current,
        status,
        events,
        requeue_after,
    }
}

/// The status to write before a probe starts, so kstatus readers see the
/// connection Reconciling while it runs: only when the probe is for a new
/// spec generation or new Secret data (a periodic re-probe of an unchanged
/// connection is not news), and None when the status already says so.
pub fn plan_probe_start(
    connection: &Connection,
    key: &ProbeKey,
    last: Option<&ProbeKey>,
    now: DateTime<Utc>,
) -> Option<ConnectionStatus> {
    let current = connection.status.clone().unwrap_or_default();
    let generation = connection.metadata.generation;
    let verified = find_condition(&current.conditions, condition_type::VERIFIED);
    let new_spec = verified.is_none_or(|c| c.observed_generation != generation);
    let new_secret = last.is_some_and(|last| last.fingerprint != key.fingerprint);
    if !new_spec && !new_secret {
        return None;
    }
    let mut status = current.clone();
    status.observed_generation = generation;
    let what = if new_spec {
        format!("generation {}", generation.unwrap_or_default())
    } else {
        "the new Secret data".to_owned()
    };
    set_progress(
        &mut status.conditions,
        &Progress::reconciling(
            reason::PROBING,
            format!("probing the connection for {what}"),
        ),
        generation,
        now,
    );
    (status != current).then_some(status)
}

/// Folds the token keeper's outcome into `plan`: the `Authorized`
/// condition (with an Event on a transition), `status.oauth2`, kstatus
/// (Reconciling while not authorized) and the requeue (no later than the
/// renewal time). `None` (no `spec.oauth2`) removes both.
pub fn fold_token(
    mut plan: ConnectionPlan,
    connection: &Connection,
    token: Option<&TokenOutcome>,
    now: DateTime<Utc>,
) -> ConnectionPlan {
    let current = connection.status.clone().unwrap_or_default();
    let generation = connection.metadata.generation;
    match token {
        None => {
            plan.status.conditions.retain(|c| c.type_ != AUTHORIZED);
            plan.status.oauth2 = None;
        }
        Some(token) => {
            let status = if token.authorized {
                ConditionStatus::True
            } else if token.reason == token_reason::NOT_READY {
                ConditionStatus::Unknown
            } else {
                ConditionStatus::False
            };
            let condition = Condition::new(
                AUTHORIZED,
                status,
                token.reason,
                token.message.clone(),
                generation,
                now,
            );
            plan_transition(&current.conditions, &condition, &mut plan.events);
            set_condition(&mut plan.status.conditions, condition);
            plan.status.oauth2 = Some(token.status.clone());
            plan.requeue_after = plan.requeue_after.min(token.requeue_after);
            let settled = progress(connection, &plan.status) == Progress::Settled;
            if settled && status == ConditionStatus::False {
                set_progress(
                    &mut plan.status.conditions,
                    &Progress::reconciling(token.reason, format!("waiting: {}", token.message)),
                    generation,
                    now,
                );
            }
        }
    }
    plan.status_changed = plan.status != current;
    plan
}

/// kstatus of the planned `status`.
fn progress(connection: &Connection, status: &ConnectionStatus) -> Progress {
    if let Some(ready) = find_condition(&status.conditions, condition_type::READY)
        && ready.status != ConditionStatus::True
    {
        return if ready.reason == reason::SECRET_REF_MISSING {
            Progress::stalled(&ready.reason, ready.message.clone())
        } else {
            Progress::reconciling(&ready.reason, format!("waiting: {}", ready.message))
        };
    }
    match find_condition(&status.conditions, condition_type::VERIFIED) {
        Some(verified)
            if verified.status == ConditionStatus::False
                && verified.reason == reason::INVALID_CONFIG =>
        {
            Progress::stalled(
                reason::INVALID_CONFIG,
                format!("fix the spec: {}", verified.message),
            )
        }
        Some(verified) if verified.status == ConditionStatus::False => Progress::reconciling(
            &verified.reason,
            format!(
                "the last probe failed (see the Verified condition): probing again within {}s",
                verify_interval(connection).as_secs()
            ),
        ),
        _ => Progress::Settled,
    }
}

fn verified_condition(
    connection: &Connection,
    ready: bool,
    probe: Option<&ProbeOutcome>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Option<Condition> {
    connection.spec.verify.as_ref()?;
    let (status, reason, message) = if connection.spec.type_ == ConnectionType::Slack {
        (
            ConditionStatus::Unknown,
            reason::NOT_PROBED,
            "slack connections are not probed: posting would send a message".to_owned(),
        )
    } else if !ready {
        (
            ConditionStatus::Unknown,
            reason::NOT_READY,
            "not probed: the connection is not Ready (see the Ready condition)".to_owned(),
        )
    } else if let Some(probe) = probe {
        (
            ConditionStatus::from_bool(probe.ok),
            probe.reason,
            probe.message.clone(),
        )
    } else {
        let existing = connection
            .status
            .as_ref()
            .and_then(|status| find_condition(&status.conditions, condition_type::VERIFIED))?;
        // A NotReady/NotProbed placeholder is stale once the connection is Ready and probeable.
        if existing.reason == reason::NOT_READY || existing.reason == reason::NOT_PROBED {
            return None;
        }
        return Some(existing.clone());
    };
    Some(Condition::new(
        condition_type::VERIFIED,
        status,
        reason,
        message,
        generation,
        now,
    ))
}

/// Plans an Event when `next` differs from the current condition of its
/// type in status or reason: Normal when it becomes True, Warning otherwise.
fn plan_transition(current: &[Condition], next: &Condition, events: &mut Vec<PlannedEvent>) {
    let before = find_condition(current, &next.type_).map(|c| (c.status, c.reason.as_str()));
    if before == Some((next.status, next.reason.as_str())) {
        return;
    }
    let reason = static_reason(&next.reason);
    match next.status {
        ConditionStatus::True => events.push(PlannedEvent {
            warning: false,
            reason,
            message: next.message.clone(),
        }),
        ConditionStatus::False => events.push(PlannedEvent {
            warning: true,
            reason,
            message: next.message.clone(),
        }),
        // Unknown is a placeholder (not probed), not news for people.
        ConditionStatus::Unknown => {}
    }
}

fn static_reason(text: &str) -> &'static str {
    [
        reason::READY,
        reason::SECRET_REF_MISSING,
        reason::SECRET_MISSING,
        reason::SECRET_KEY_MISSING,
        reason::VERIFIED,
        reason::NOT_READY,
        reason::NOT_PROBED,
        reason::UNREACHABLE,
        reason::AUTHENTICATION_FAILED,
        reason::UNEXPECTED_RESPONSE,
        reason::INVALID_CONFIG,
        token_reason::TOKEN_ISSUED,
        token_reason::REFRESH_FAILED,
        token_reason::AUTHORIZATION_REQUIRED,
        token_reason::INVALID_CONFIG,
    ]
    .into_iter()
    .find(|known| *known == text)
    .unwrap_or("ConnectionChanged")
}

/// Validation errors for node `connection` fields that try to name another
/// namespace (`ns/name` or `name.ns`): a workflow may only use Connections
/// in its own namespace, and their Secrets are mounted from there.
pub fn cross_namespace_issues(
    workflow: &sluice_crds::Workflow,
) -> Vec<sluice_crds::workflow::ValidationIssue> {
    let mut issues = vec![];
    for (index, node) in workflow.spec.nodes.iter().enumerate() {
        let named = [
            (
                "http",
                node.http.as_ref().and_then(|n| n.connection.as_ref()),
            ),
            ("postgres", node.postgres.as_ref().map(|n| &n.connection)),
            ("notify", node.notify.as_ref().map(|n| &n.connection)),
        ];
        for (block, name) in named {
            let Some(name) = name else { continue };
            if name.contains('/') || name.contains('.') {
                issues.push(sluice_crds::workflow::ValidationIssue {
                    path: format!("spec.nodes[{index}].{block}.connection"),
                    message: format!(
                        "node {:?}: connection {name:?} names another namespace: connections must be in the workflow's namespace; create a Connection there and use its plain name (no '/' or '.')",
                        node.name
                    ),
                });
            }
        }
    }
    issues
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
