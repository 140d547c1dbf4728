use super::*;

fn at(days: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::days(days)
}

fn names() -> Vec<String> {
    vec![
        "sluice-operator.sluice-system.svc".into(),
        "127.0.0.1".into(),
    ]
}

fn fresh() -> StoredCerts {
    issue(
        &CertAction::IssueAll,
        None,
        &names(),
        &CertPolicy::default(),
        at(0),
    )
    .unwrap()
}

#[test]
fn nothing_stored_issues_everything_with_expiries_and_names() {
    let policy = CertPolicy::default();
    assert_eq!(
        plan_certificates(None, &names(), &policy, at(0)),
        CertAction::IssueAll
    );
    let stored = fresh();
    for key in [
        CA_CERT_KEY,
        CA_KEY_KEY,
        CA_BUNDLE_KEY,
        TLS_CERT_KEY,
        TLS_KEY_KEY,
    ] {
        assert!(stored.has(key), "{key} missing");
    }
    assert!(stored.data[TLS_CERT_KEY].starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(stored.data[CA_BUNDLE_KEY], stored.data[CA_CERT_KEY]);
    assert_eq!(stored.cert_not_after(), Some(at(365)));
    assert_eq!(stored.time(CA_NOT_AFTER), Some(at(5 * 365)));
    assert_eq!(
        stored.annotations[CERT_NAMES],
        "sluice-operator.sluice-system.svc,127.0.0.1"
    );
    assert_eq!(
        plan_certificates(Some(&stored), &names(), &policy, at(1)),
        CertAction::Keep
    );
}

#[test]
fn the_serving_certificate_is_renewed_before_expiry_or_when_names_change() {
    let policy = CertPolicy::default();
    let stored = fresh();
    assert_eq!(
        plan_certificates(Some(&stored), &names(), &policy, at(334)),
        CertAction::Keep
    );
    assert_eq!(
        plan_certificates(Some(&stored), &names(), &policy, at(336)),
        CertAction::IssueServing
    );
    let other = vec!["sluice.other.svc".to_owned()];
    assert_eq!(
        plan_certificates(Some(&stored), &other, &policy, at(1)),
        CertAction::IssueServing
    );
    let renewed = issue(
        &CertAction::IssueServing,
        Some(&stored),
        &names(),
        &policy,
        at(336),
    )
    .unwrap();
    assert_eq!(renewed.data[CA_CERT_KEY], stored.data[CA_CERT_KEY]);
    assert_eq!(renewed.data[CA_KEY_KEY], stored.data[CA_KEY_KEY]);
    assert_ne!(renewed.data[TLS_CERT_KEY], stored.data[TLS_CERT_KEY]);
    assert_eq!(renewed.cert_not_after(), Some(at(336 + 365)));
    assert_eq!(
        plan_certificates(Some(&renewed), &names(), &policy, at(337)),
        CertAction::Keep
    );
}

#[test]
fn an_expiring_ca_is_replaced_and_the_old_one_stays_trusted_until_it_expires() {
    let policy = CertPolicy::default();
    let stored = fresh();
    let late = at(4 * 365 + 1);
    assert_eq!(
        plan_certificates(Some(&stored), &names(), &policy, late),
        CertAction::IssueAll
    );
    let rotated = issue(
        &CertAction::IssueAll,
        Some(&stored),
        &names(),
        &policy,
        late,
    )
    .unwrap();
    assert_ne!(rotated.data[CA_CERT_KEY], stored.data[CA_CERT_KEY]);
    let bundle = &rotated.data[CA_BUNDLE_KEY];
    assert!(bundle.contains(&rotated.data[CA_CERT_KEY]));
    assert!(bundle.contains(&stored.data[CA_CERT_KEY]));
    // Once the old CA has expired, the next renewal drops it from the bundle.
    let after = at(5 * 365 + 1);
    let renewed = issue(
        &CertAction::IssueServing,
        Some(&rotated),
        &names(),
        &policy,
        after,
    )
    .unwrap();
    assert_eq!(renewed.data[CA_BUNDLE_KEY], rotated.data[CA_CERT_KEY]);
}

#[test]
fn incomplete_or_unreadable_state_starts_over() {
    let policy = CertPolicy::default();
    let mut stored = fresh();
    stored.data.remove(TLS_KEY_KEY);
    assert_eq!(
        plan_certificates(Some(&stored), &names(), &policy, at(1)),
        CertAction::IssueAll
    );
    let mut stored = fresh();
    stored
        .annotations
        .insert(CERT_NOT_AFTER.into(), "soon".into());
    assert_eq!(
        plan_certificates(Some(&stored), &names(), &policy, at(1)),
        CertAction::IssueAll
    );
}
