//! Leader election on a `coordination.k8s.io/v1` Lease. Only the leader
//! runs the controllers; every replica serves the run API and metrics.
//!
//! A replica takes the Lease when it is absent or expired, and renews it
//! every third of its duration. Every write carries the Lease's
//! resourceVersion, so two replicas racing for an expired Lease cannot both
//! win: the loser gets 409. A leader that fails to renew before the Lease
//! expires gives up leadership (the process exits and restarts as a
//! follower), so two leaders never act at once.

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::watch;

/// Name of the Lease.
pub const LEASE_NAME: &str = "sluice-operator-leader";

/// What to do with the Lease as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseDecision {
    /// Nobody holds it: create it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Another holder let it expire: take it over.
    TakeOver,
    /// Another holder is alive: wait.
    Follow,
}

/// Decides what to do with `lease` (None when absent) at `now`. Pure.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: DateTime<Utc>) -> LeaseDecision {
    let Some(spec) = lease else {
        return LeaseDecision::Create;
    };
    if spec.holder_identity.as_deref() == Some(identity) {
        return LeaseDecision::Renew;
    }
    let duration = spec.lease_duration_seconds.unwrap_or(15) as i64;
    let renewed = spec
        .renew_time
        .as_ref()
        .map(|t| to_chrono(&t.0))
        .unwrap_or_default();
    if spec.holder_identity.is_none() || renewed + chrono::Duration::seconds(duration) < now {
        LeaseDecision::TakeOver
    } else {
        LeaseDecision::Follow
    }
}

fn to_chrono(time: &Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(time.as_second(), time.subsec_nanosecond() as u32).unwrap_or_default()
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Campaigns for the Lease forever; `is_leader` follows the outcome.
pub async fn campaign(
    client: Client,
    namespace: String,
    identity: String,
    lease_duration: Duration,
    is_leader: watch::Sender<bool>,
) {
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let retry = lease_duration / 3;
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        let held = match try_hold(&leases, &identity, lease_duration).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(%error, "failed to read or write the leader lease");
                false
            }
        };
        if held {
            last_renewal = tokio::time::Instant::now();
        }
        let leading = *is_leader.borrow();
        if held && !leading {
            tracing::info!(%identity, "became leader");
            is_leader.send_replace(true);
        } else if !held && leading && last_renewal.elapsed() >= lease_duration {
            tracing::error!(%identity, "lost leadership: could not renew the lease in time");
            is_leader.send_replace(false);
        }
        tokio::time::sleep(retry).await;
    }
}

async fn try_hold(
    leases: &Api<Lease>,
    identity: &str,
    lease_duration: Duration,
) -> Result<bool, kube::Error> {
    let current = leases.get_opt(LEASE_NAME).await?;
    let decision = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        identity,
        Utc::now(),
    );
    let seconds = lease_duration.as_secs().max(1) as i32;
    let result = match (decision, current) {
        (LeaseDecision::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.to_owned()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(micro_now()),
                    renew_time: Some(micro_now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        (LeaseDecision::Renew | LeaseDecision::TakeOver, Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if decision == LeaseDecision::TakeOver {
                spec.holder_identity = Some(identity.to_owned());
                spec.acquire_time = Some(micro_now());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.lease_duration_seconds = Some(seconds);
            spec.renew_time = Some(micro_now());
            leases
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        _ => return Ok(false),
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn held_by(holder: &str, renewed: DateTime<Utc>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(
                Timestamp::from_second(renewed.timestamp()).unwrap(),
            )),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn the_lease_is_created_renewed_taken_over_or_followed() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
        assert_eq!(decide(None, "a", now), LeaseDecision::Create);
        assert_eq!(
            decide(Some(&held_by("a", now)), "a", now),
            LeaseDecision::Renew
        );
        let fresh = now - chrono::Duration::seconds(5);
        assert_eq!(
            decide(Some(&held_by("b", fresh)), "a", now),
            LeaseDecision::Follow
        );
        let stale = now - chrono::Duration::seconds(16);
        assert_eq!(
            decide(Some(&held_by("b", stale)), "a", now),
            LeaseDecision::TakeOver
        );
    }
}
