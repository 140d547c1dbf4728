//! Pure tests of the Connection plan: conditions, Events, probe timing.

use super::*;
use chrono::TimeZone;
use sluice_crds::connection::VerifySpec;
use sluice_crds::nodes::{HttpNode, PostgresNode};
use sluice_crds::{ConnectionSpec, LocalObjectReference, NodeSpec, Workflow};

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap()
}

fn bearer(verify: bool) -> Connection {
    let mut connection = Connection::new(
        "crm",
        ConnectionSpec {
            type_: ConnectionType::Http,
            config: BTreeMap::from([
                ("auth".to_owned(), "bearer".to_owned()),
                ("baseUrl".to_owned(), "http://crm.example".to_owned()),
            ]),
            secret_ref: Some(LocalObjectReference {
                name: "crm-api-token".to_owned(),
            }),
            verify: verify.then(|| VerifySpec {
                url: Some("/health".to_owned()),
                interval: Some(sluice_crds::Duration::parse("5m").unwrap()),
            }),
            oauth2: None,
        },
    );
    connection.metadata.namespace = Some("team".to_owned());
    connection.metadata.generation = Some(1);
    connection
}

fn present(keys: &[&str]) -> SecretObservation {
    SecretObservation::Present {
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        fingerprint: "f1".to_owned(),
    }
}

fn condition<'a>(plan: &'a ConnectionPlan, type_: &str) -> &'a Condition {
    find_condition(&plan.status.conditions, type_).unwrap()
}

fn ok_probe() -> ProbeOutcome {
    ProbeOutcome {
        ok: true,
        reason: reason::VERIFIED,
        message: "GET http://crm.example/health answered 200".to_owned(),
    }
}

#[test]
fn ready_when_the_secret_has_every_required_key() {
    let plan = plan_connection(&bearer(false), "team", &present(&["token"]), None, at(0));
    let ready = condition(&plan, condition_type::READY);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::True, reason::READY)
    );
    assert!(find_condition(&plan.status.conditions, condition_type::VERIFIED).is_none());
    assert_eq!(plan.events.len(), 1);
    assert!(!plan.events[0].warning);
    assert!(plan.status_changed);
}

#[test]
fn a_missing_key_is_named_with_the_command_that_adds_it() {
    let plan = plan_connection(&bearer(false), "team", &present(&["other"]), None, at(0));
    let ready = condition(&plan, condition_type::READY);
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.reason, reason::SECRET_KEY_MISSING);
    assert!(
        ready
            .message
            .starts_with("secret crm-api-token has no key token"),
        "{}",
        ready.message
    );
    assert!(
        ready
            .message
            .contains("kubectl create secret generic crm-api-token -n team --from-literal=token=…")
    );
    assert_eq!(
        plan.events,
        vec![PlannedEvent {
            warning: true,
            reason: reason::SECRET_KEY_MISSING,
            message: ready.message.clone(),
        }]
    );
}

#[test]
fn a_missing_secret_and_a_missing_secret_ref_are_reported() {
    let plan = plan_connection(
        &bearer(false),
        "team",
        &SecretObservation::Missing,
        None,
        at(0),
    );
    let ready = condition(&plan, condition_type::READY);
    assert_eq!(ready.reason, reason::SECRET_MISSING);
    assert!(
        ready
            .message
            .contains("secret crm-api-token named by spec.secretRef not found in namespace team")
    );

    let mut no_ref = bearer(false);
    no_ref.spec.secret_ref = None;
    let plan = plan_connection(
        &no_ref,
        "team",
        &SecretObservation::NotReferenced,
        None,
        at(0),
    );
    assert_eq!(
        condition(&plan, condition_type::READY).reason,
        reason::SECRET_REF_MISSING
    );

    let mut anonymous = no_ref.clone();
    anonymous.spec.config.remove("auth");
    let plan = plan_connection(
        &anonymous,
        "team",
        &SecretObservation::NotReferenced,
        None,
        at(0),
    );
    assert_eq!(
        condition(&plan, condition_type::READY).status,
        ConditionStatus::True
    );
}

#[test]
fn events_are_planned_on_transitions_only() {
    let mut connection = bearer(false);
    let first = plan_connection(&connection, "team", &present(&[]), None, at(0));
    connection.status = Some(first.status.clone());
    let again = plan_connection(&connection, "team", &present(&[]), None, at(1));
    assert!(again.events.is_empty());
    assert!(!again.status_changed, "same observation, no write");
    let fixed = plan_connection(&connection, "team", &present(&["token"]), None, at(2));
    assert_eq!(fixed.events.len(), 1);
    assert_eq!(fixed.events[0].reason, reason::READY);
    let ready = condition(&fixed, condition_type::READY);
    assert_eq!(ready.last_transition_time, at(2));
}

#[test]
fn a_probe_sets_verified_and_a_failure_keeps_its_reason() {
    let mut connection = bearer(true);
    let plan = plan_connection(
        &connection,
        "team",
        &present(&["token"]),
        Some(&ok_probe()),
        at(0),
    );
    let verified = condition(&plan, condition_type::VERIFIED);
    assert_eq!(
        (verified.status, verified.reason.as_str()),
        (ConditionStatus::True, reason::VERIFIED)
    );
    assert_eq!(plan.status.last_verified_time, Some(at(0)));
    assert_eq!(plan.events.len(), 2, "Ready and Verified became true");
    assert_eq!(plan.requeue_after, Duration::from_secs(300));

    connection.status = Some(plan.status);
    let failure = ProbeOutcome {
        ok: false,
        reason: reason::AUTHENTICATION_FAILED,
        message: "GET http://crm.example/health answered 401".to_owned(),
    };
    let plan = plan_connection(
        &connection,
        "team",
        &present(&["token"]),
        Some(&failure),
        at(5),
    );
    let verified = condition(&plan, condition_type::VERIFIED);
    assert_eq!(verified.status, ConditionStatus::False);
    assert_eq!(verified.reason, reason::AUTHENTICATION_FAILED);
    assert_eq!(
        plan.events,
        vec![PlannedEvent {
            warning: true,
            reason: reason::AUTHENTICATION_FAILED,
            message: failure.message.clone(),
        }]
    );

    connection.status = Some(plan.status);
    let kept = plan_connection(&connection, "team", &present(&["token"]), None, at(6));
    assert_eq!(
        condition(&kept, condition_type::VERIFIED).reason,
        reason::AUTHENTICATION_FAILED
    );
    assert!(kept.events.is_empty());
    assert_eq!(kept.requeue_after, Duration::from_secs(240));
}

#[test]
fn an_unready_or_slack_connection_is_not_probed() {
    let plan = plan_connection(
        &bearer(true),
        "team",
        &SecretObservation::Missing,
        None,
        at(0),
    );
    let verified = condition(&plan, condition_type::VERIFIED);
    assert_eq!(
        (verified.status, verified.reason.as_str()),
        (ConditionStatus::Unknown, reason::NOT_READY)
    );
    assert!(!probe_due(
        &bearer(true),
        false,
        &ProbeKey::default(),
        None,
        at(0)
    ));

    let mut slack = bearer(true);
    slack.spec.type_ = ConnectionType::Slack;
    assert!(!probe_due(&slack, true, &ProbeKey::default(), None, at(0)));
    let plan = plan_connection(&slack, "team", &present(&["webhookUrl"]), None, at(0));
    assert_eq!(
        condition(&plan, condition_type::VERIFIED).reason,
        reason::NOT_PROBED
    );
}

#[test]
fn probes_are_due_on_spec_or_secret_change_and_after_the_interval() {
    let mut connection = bearer(true);
    let key = ProbeKey {
        generation: Some(1),
        fingerprint: Some("f1".to_owned()),
    };
    assert!(
        probe_due(&connection, true, &key, None, at(0)),
        "never probed"
    );
    connection.status = Some(ConnectionStatus {
        last_verified_time: Some(at(0)),
        ..ConnectionStatus::default()
    });
    assert!(!probe_due(&connection, true, &key, Some(&key), at(4)));
    assert!(
        probe_due(&connection, true, &key, Some(&key), at(5)),
        "5m interval passed"
    );
    let rotated = ProbeKey {
        fingerprint: Some("f2".to_owned()),
        ..key.clone()
    };
    assert!(
        probe_due(&connection, true, &rotated, Some(&key), at(1)),
        "secret changed"
    );
    let edited = ProbeKey {
        generation: Some(2),
        ..key.clone()
    };
    assert!(
        probe_due(&connection, true, &edited, Some(&key), at(1)),
        "spec changed"
    );
    connection.spec.verify = None;
    assert!(!probe_due(&connection, true, &edited, Some(&key), at(1)));
}

#[test]
fn the_fingerprint_changes_with_any_byte_and_hides_the_values() {
    let data = BTreeMap::from([("token".to_owned(), b"s3cret".to_vec())]);
    let fingerprint = secret_fingerprint(&data);
    assert_eq!(fingerprint.len(), 64);
    assert!(!fingerprint.contains("s3cret"));
    let rotated = BTreeMap::from([("token".to_owned(), b"s3creT".to_vec())]);
    assert_ne!(fingerprint, secret_fingerprint(&rotated));
    // Key/value boundaries count: {"ab": "c"} differs from {"a": "bc"}.
    let one = BTreeMap::from([("ab".to_owned(), b"c".to_vec())]);
    let two = BTreeMap::from([("a".to_owned(), b"bc".to_vec())]);
    assert_ne!(secret_fingerprint(&one), secret_fingerprint(&two));
}

/// The kstatus conditions present (they are present only while True).
fn progress_of(status: &ConnectionStatus) -> Vec<(&str, &str)> {
    status
        .conditions
        .iter()
        .filter(|c| c.type_ == condition_type::RECONCILING || c.type_ == condition_type::STALLED)
        .inspect(|c| assert_eq!(c.status, ConditionStatus::True, "abnormal-true: {c:?}"))
        .map(|c| (c.type_.as_str(), c.reason.as_str()))
        .collect()
}

#[test]
fn kstatus_waits_for_a_missing_secret_and_stalls_without_a_secret_ref() {
    let plan = plan_connection(
        &bearer(false),
        "team",
        &SecretObservation::Missing,
        None,
        at(0),
    );
    assert_eq!(
        progress_of(&plan.status),
        [("Reconciling", reason::SECRET_MISSING)]
    );
    assert_eq!(plan.status.observed_generation, Some(1));
    let plan = plan_connection(&bearer(false), "team", &present(&[]), None, at(0));
    assert_eq!(
        progress_of(&plan.status),
        [("Reconciling", reason::SECRET_KEY_MISSING)]
    );

    let mut no_ref = bearer(false);
    no_ref.spec.secret_ref = None;
    let plan = plan_connection(
        &no_ref,
        "team",
        &SecretObservation::NotReferenced,
        None,
        at(0),
    );
    assert_eq!(
        progress_of(&plan.status),
        [("Stalled", reason::SECRET_REF_MISSING)]
    );
    let stalled = find_condition(&plan.status.conditions, condition_type::STALLED).unwrap();
    assert!(
        stalled.message.contains("set spec.secretRef.name"),
        "{stalled:?}"
    );

    let mut connection = bearer(false);
    connection.status = Some(plan.status);
    let plan = plan_connection(&connection, "team", &present(&["token"]), None, at(1));
    assert_eq!(progress_of(&plan.status), [], "Ready: settled");
}

#[test]
fn kstatus_reconciles_while_a_new_probe_runs_and_after_a_failed_one() {
    let mut connection = bearer(true);
    let key = ProbeKey {
        generation: Some(1),
        fingerprint: Some("f1".to_owned()),
    };
    let probing = plan_probe_start(&connection, &key, None, at(0)).expect("a first probe");
    assert_eq!(progress_of(&probing), [("Reconciling", reason::PROBING)]);
    assert_eq!(probing.observed_generation, Some(1));
    connection.status = Some(probing);
    assert_eq!(
        plan_probe_start(&connection, &key, None, at(0)),
        None,
        "already says so"
    );

    let plan = plan_connection(
        &connection,
        "team",
        &present(&["token"]),
        Some(&ok_probe()),
        at(0),
    );
    assert_eq!(progress_of(&plan.status), [], "probed: settled");
    assert!(plan.status_changed);
    connection.status = Some(plan.status);
    assert_eq!(
        plan_probe_start(&connection, &key, Some(&key), at(5)),
        None,
        "a periodic re-probe of an unchanged connection is not news"
    );
    let rotated = ProbeKey {
        fingerprint: Some("f2".to_owned()),
        ..key.clone()
    };
    let probing = plan_probe_start(&connection, &rotated, Some(&key), at(5)).expect("new data");
    assert!(
        find_condition(&probing.conditions, condition_type::RECONCILING)
            .unwrap()
            .message
            .contains("new Secret data")
    );

    let failure = ProbeOutcome {
        ok: false,
        reason: reason::UNREACHABLE,
        message: "GET http://crm.example/health: connection refused".to_owned(),
    };
    let plan = plan_connection(
        &connection,
        "team",
        &present(&["token"]),
        Some(&failure),
        at(5),
    );
    assert_eq!(
        progress_of(&plan.status),
        [("Reconciling", reason::UNREACHABLE)]
    );
    assert!(
        find_condition(&plan.status.conditions, condition_type::RECONCILING)
            .unwrap()
            .message
            .contains("probing again within 300s")
    );

    let invalid = ProbeOutcome {
        ok: false,
        reason: reason::INVALID_CONFIG,
        message: "verify.url is not a URL".to_owned(),
    };
    let plan = plan_connection(
        &connection,
        "team",
        &present(&["token"]),
        Some(&invalid),
        at(6),
    );
    assert_eq!(
        progress_of(&plan.status),
        [("Stalled", reason::INVALID_CONFIG)]
    );
}

#[test]
fn connections_in_another_namespace_are_refused() {
    let workflow = Workflow::fixture("w")
        .with_node(NodeSpec::named("a").with(|node| {
            node.http = Some(HttpNode {
                url: "/x".to_owned(),
                connection: Some("other-team/crm".to_owned()),
                ..HttpNode::default()
            })
        }))
        .with_node(NodeSpec::named("b").with(|node| {
            node.postgres = Some(PostgresNode {
                connection: "db.other-team".to_owned(),
                query: "select 1".to_owned(),
                ..PostgresNode::default()
            })
        }))
        .with_node(NodeSpec::named("c").with(|node| {
            node.postgres = Some(PostgresNode {
                connection: "db".to_owned(),
                query: "select 1".to_owned(),
                ..PostgresNode::default()
            })
        }));
    let issues = cross_namespace_issues(&workflow);
    assert_eq!(issues.len(), 2);
    assert_eq!(issues[0].path, "spec.nodes[0].http.connection");
    assert!(
        issues[0]
            .message
            .contains("\"other-team/crm\" names another namespace")
    );
    assert_eq!(issues[1].path, "spec.nodes[1].postgres.connection");
}

fn oauth2_connection() -> Connection {
    let mut connection = bearer(false);
    connection.spec.oauth2 = Some(sluice_crds::oauth2::OAuth2Spec {
        grant: sluice_crds::oauth2::OAuth2Grant::RefreshToken,
        token_url: Some("http://127.0.0.1:1/token".into()),
        ..Default::default()
    });
    connection
}

fn token_outcome(authorized: bool, reason: &'static str, message: &str) -> TokenOutcome {
    TokenOutcome {
        authorized,
        reason,
        message: message.to_owned(),
        status: sluice_crds::oauth2::OAuth2Status {
            expires_at: Some(at(30)),
            ..Default::default()
        },
        requeue_after: Duration::from_secs(90),
    }
}

#[test]
fn a_failed_refresh_shows_on_authorized_with_a_warning_once() {
    let connection = oauth2_connection();
    let keys = present(&["clientId", "clientSecret", "refreshToken"]);
    let plan = plan_connection(&connection, "team", &keys, None, at(0));
    let issued = token_outcome(true, token_reason::TOKEN_ISSUED, "holds a token");
    let plan = fold_token(plan, &connection, Some(&issued), at(0));
    let authorized = condition(&plan, AUTHORIZED);
    assert_eq!(authorized.status, ConditionStatus::True);
    assert_eq!(
        plan.status.oauth2.as_ref().unwrap().expires_at,
        Some(at(30))
    );
    assert_eq!(
        plan.requeue_after,
        Duration::from_secs(90),
        "requeued at the renewal"
    );
    assert!(
        plan.events
            .iter()
            .any(|e| !e.warning && e.reason == token_reason::TOKEN_ISSUED)
    );

    let mut stored = connection.clone();
    stored.status = Some(plan.status.clone());
    let failed = token_outcome(
        false,
        token_reason::REFRESH_FAILED,
        "failed to obtain an access token for connection crm: invalid_grant: refresh token [REDACTED] was revoked",
    );
    let plan = plan_connection(&stored, "team", &keys, None, at(5));
    let plan = fold_token(plan, &stored, Some(&failed), at(5));
    let authorized = condition(&plan, AUTHORIZED);
    assert_eq!(
        (authorized.status, authorized.reason.as_str()),
        (ConditionStatus::False, token_reason::REFRESH_FAILED)
    );
    assert!(authorized.message.contains("invalid_grant"));
    assert!(plan.status_changed);
    let warnings: Vec<_> = plan.events.iter().filter(|e| e.warning).collect();
    assert_eq!(warnings.len(), 1, "{:?}", plan.events);
    assert_eq!(warnings[0].reason, token_reason::REFRESH_FAILED);
    let reconciling = condition(&plan, condition_type::RECONCILING);
    assert_eq!(reconciling.reason, token_reason::REFRESH_FAILED);

    // The same failure again: no new Event.
    let mut stored = connection.clone();
    stored.status = Some(plan.status.clone());
    let plan = plan_connection(&stored, "team", &keys, None, at(6));
    let plan = fold_token(plan, &stored, Some(&failed), at(6));
    assert!(plan.events.is_empty(), "{:?}", plan.events);
}

#[test]
fn without_oauth2_the_authorized_condition_and_token_status_go() {
    let connection = oauth2_connection();
    let keys = present(&["clientId", "clientSecret", "refreshToken"]);
    let plan = plan_connection(&connection, "team", &keys, None, at(0));
    let issued = token_outcome(true, token_reason::TOKEN_ISSUED, "holds a token");
    let plan = fold_token(plan, &connection, Some(&issued), at(0));
    let mut plain = bearer(false);
    plain.status = Some(plan.status.clone());
    let plan = plan_connection(&plain, "team", &present(&["token"]), None, at(1));
    let plan = fold_token(plan, &plain, None, at(1));
    assert!(find_condition(&plan.status.conditions, AUTHORIZED).is_none());
    assert!(plan.status.oauth2.is_none());
}

#[test]
fn an_oauth2_connection_needs_the_grants_secret_keys() {
    let connection = oauth2_connection();
    let plan = plan_connection(
        &connection,
        "team",
        &present(&["clientId", "clientSecret"]),
        None,
        at(0),
    );
    let ready = condition(&plan, condition_type::READY);
    assert_eq!(ready.status, ConditionStatus::False);
    assert!(ready.message.contains("refreshToken"), "{}", ready.message);
}
