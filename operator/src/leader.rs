//! Leader election on a `coordination.k8s.io/v1` Lease. Only the leader
//! runs the controllers; every replica serves the run API and metrics.
//!
//! The rules (the defaults are those of Kubernetes' own controllers; see
//! [`LeaseSettings`] for why):
//! - A replica takes the Lease when it is absent, released (no holder) or
//!   expired (not renewed for its `leaseDurationSeconds`). Every write
//!   carries the Lease's resourceVersion, so two replicas racing for it
//!   cannot both win: the loser gets 409.
//! - The leader renews every `retry_period`. A leader that has not renewed
//!   for `renew_deadline` (shorter than the lease duration), or that sees
//!   another holder, gives up at once (the process exits and restarts as a
//!   follower), so it stops before anyone may take over: two leaders never
//!   act at once.
//! - Standbys watch the Lease, so a release is seen at once, and otherwise
//!   look again every `retry_period` and when the Lease expires.
//! - On graceful shutdown the leader stops its controllers first, then
//!   releases the Lease (holder cleared), and waits briefly until a standby
//!   holds it: a rolling update has no leaderless gap to speak of. A crash
//!   leaves a gap of at most the lease duration plus one retry period.
//!
//! [`decide`], [`takeover_gap`] and [`follow_wait`] are pure; [`Elector`]
//! talks to the API server. This module does not start or stop the
//! controllers: it only reports leadership through a watch channel.

use crate::telemetry::Metrics;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Name of the Lease.
pub const LEASE_NAME: &str = "sluice-operator-leader";

/// Timing of leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long a Lease stays valid after its last renewal: standbys wait
    /// this long after a leader's last renewal before taking over, so it
    /// bounds the leaderless gap after a crash.
    pub duration: Duration,
    /// How long a leader keeps leading without a successful renewal. Must
    /// be shorter than `duration`, so a leader cut off from the API server
    /// stops before a standby may take over.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby looks at the Lease.
    pub retry_period: Duration,
}

/// Lease settings that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseSettingsError {
    #[error(
        "invalid --lease-duration {0:?}: a Lease counts whole seconds, so it must be at least 1s"
    )]
    TooShort(Duration),
    #[error(
        "invalid --lease-renew-deadline {renew_deadline:?}: it must be shorter than --lease-duration ({duration:?}), or a leader cut off from the API server would still act after a standby took over; lower it or raise --lease-duration"
    )]
    RenewDeadline {
        renew_deadline: Duration,
        duration: Duration,
    },
    #[error(
        "invalid --lease-retry-period {retry_period:?}: it must be shorter than --lease-renew-deadline ({renew_deadline:?}), or the leader could not try to renew before giving up"
    )]
    RetryPeriod {
        retry_period: Duration,
        renew_deadline: Duration,
    },
}

impl LeaseSettings {
    /// Settings for `duration`, with a renew deadline and retry period
    /// when given, else derived from it: two thirds of it, and a fifth of
    /// it but at most 2 s (15 s → 10 s and 2 s, Kubernetes' defaults).
    pub fn new(
        duration: Duration,
        renew_deadline: Option<Duration>,
        retry_period: Option<Duration>,
    ) -> Result<Self, LeaseSettingsError> {
        let settings = Self {
            duration,
            renew_deadline: renew_deadline.unwrap_or(duration * 2 / 3),
            retry_period: retry_period.unwrap_or((duration / 5).min(Duration::from_secs(2))),
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), LeaseSettingsError> {
        if self.duration < Duration::from_secs(1) {
            return Err(LeaseSettingsError::TooShort(self.duration));
        }
        if self.renew_deadline >= self.duration {
            return Err(LeaseSettingsError::RenewDeadline {
                renew_deadline: self.renew_deadline,
                duration: self.duration,
            });
        }
        if self.retry_period >= self.renew_deadline || self.retry_period.is_zero() {
            return Err(LeaseSettingsError::RetryPeriod {
                retry_period: self.retry_period,
                renew_deadline: self.renew_deadline,
            });
        }
        Ok(())
    }

    /// The Lease's `leaseDurationSeconds`.
    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// What to do with the Lease as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseDecision {
    /// Nobody holds it: create it.
    Create,
    /// It names us: renew it.
    Renew,
    /// Released, or another holder let it expire: take it over.
    TakeOver,
    /// Another holder is alive: wait.
    Follow,
}

/// The holder of `spec`, `None` when released (absent or empty).
fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity
        .as_deref()
        .filter(|name| !name.is_empty())
}

/// When the Lease stops being valid: its last renewal plus its duration.
fn expiry(spec: &LeaseSpec) -> DateTime<Utc> {
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    renewed(spec) + chrono::Duration::seconds(duration)
}

fn renewed(spec: &LeaseSpec) -> DateTime<Utc> {
    spec.renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|time| to_chrono(&time.0))
        .unwrap_or_default()
}

/// Decides what to do with `lease` (None when absent) at `now`. Pure.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: DateTime<Utc>) -> LeaseDecision {
    let Some(spec) = lease else {
        return LeaseDecision::Create;
    };
    match holder(spec) {
        Some(name) if name == identity => LeaseDecision::Renew,
        None => LeaseDecision::TakeOver,
        Some(_) if expiry(spec) < now => LeaseDecision::TakeOver,
        Some(_) => LeaseDecision::Follow,
    }
}

/// How long nobody led before we took over `previous` at `now`: from the
/// previous leader's last sign of life (its release, or its last renewal
/// when it crashed) to now. Pure.
pub fn takeover_gap(previous: &LeaseSpec, now: DateTime<Utc>) -> Duration {
    (now - renewed(previous)).to_std().unwrap_or_default()
}

/// How long a standby waits before looking at `lease` again: until it
/// expires, but at most `retry_period` (and a moment at least, so a lost
/// race does not spin). Pure.
pub fn follow_wait(lease: &LeaseSpec, now: DateTime<Utc>, retry_period: Duration) -> Duration {
    let until_expiry = (expiry(lease) - now)
        .to_std()
        .unwrap_or_default()
        .saturating_add(Duration::from_millis(10));
    until_expiry
        .min(retry_period)
        .max(Duration::from_millis(50))
}

fn to_chrono(time: &Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(time.as_second(), time.subsec_nanosecond() as u32).unwrap_or_default()
}

fn micro(time: DateTime<Utc>) -> MicroTime {
    MicroTime(
        Timestamp::from_microsecond(time.timestamp_micros()).unwrap_or_else(|_| Timestamp::now()),
    )
}

/// The outcome of one look at the Lease.
#[derive(Debug)]
enum Hold {
    /// We held it and renewed it.
    Renewed,
    /// We took it; `previous` is the Lease as it was (none when we created it).
    Acquired { previous: Option<LeaseSpec> },
    /// Another replica holds it.
    Following(LeaseSpec),
    /// Another replica wrote first.
    Raced,
}

/// One replica's side of the election.
pub struct Elector {
    leases: Api<Lease>,
    identity: String,
    settings: LeaseSettings,
    metrics: Arc<Metrics>,
}

impl Elector {
    /// An elector for the Lease in `namespace`, as `identity`.
    pub fn new(
        client: Client,
        namespace: &str,
        identity: String,
        settings: LeaseSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            leases: Api::namespaced(client, namespace),
            identity,
            settings,
            metrics,
        }
    }

    /// Campaigns until `release` completes; `is_leader` follows the
    /// outcome. `release` must complete only once this replica's
    /// controllers have stopped: the Lease is then released (when held)
    /// and the hand-off to a standby awaited for up to one retry period.
    pub async fn campaign(
        self,
        is_leader: watch::Sender<bool>,
        release: impl std::future::Future<Output = ()>,
    ) {
        let (seen_sender, mut seen) = watch::channel(None);
        let watching = tokio::spawn(watch_lease(self.leases.clone(), seen_sender));
        tokio::pin!(release);
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            let leading = *is_leader.borrow();
            let wait = match self.try_hold(leading).await {
                Ok(Hold::Renewed) => {
                    last_renewal = tokio::time::Instant::now();
                    self.settings.retry_period
                }
                Ok(Hold::Acquired { previous }) => {
                    last_renewal = tokio::time::Instant::now();
                    let gap = previous.as_ref().map(|spec| takeover_gap(spec, Utc::now()));
                    self.metrics.leadership_acquired(gap);
                    tracing::info!(
                        identity = %self.identity,
                        previous = previous.as_ref().and_then(holder),
                        leaderless_seconds = gap.map(|gap| gap.as_secs_f64()),
                        "became leader"
                    );
                    is_leader.send_replace(true);
                    self.settings.retry_period
                }
                Ok(Hold::Following(lease)) => {
                    if leading {
                        tracing::error!(identity = %self.identity, holder = holder(&lease), "lost leadership: another replica holds the lease");
                        is_leader.send_replace(false);
                    }
                    follow_wait(&lease, Utc::now(), self.settings.retry_period)
                }
                Ok(Hold::Raced) => Duration::from_millis(50),
                Err(error) => {
                    tracing::warn!(%error, "failed to read or write the leader lease");
                    self.settings.retry_period
                }
            };
            if *is_leader.borrow() && last_renewal.elapsed() >= self.settings.renew_deadline {
                tracing::error!(identity = %self.identity, "lost leadership: could not renew the lease in time");
                is_leader.send_replace(false);
            }
            let following = !*is_leader.borrow();
            tokio::select! {
                _ = &mut release => break,
                _ = tokio::time::sleep(wait) => {}
                _ = released_elsewhere(&mut seen, &self.identity), if following => {}
            }
        }
        if *is_leader.borrow() {
            self.hand_over(&mut seen).await;
            is_leader.send_replace(false);
        }
        watching.abort();
    }

    /// Reads the Lease and renews, takes or follows it.
    async fn try_hold(&self, leading: bool) -> Result<Hold, kube::Error> {
        let current = self.leases.get_opt(LEASE_NAME).await?;
        let now = Utc::now();
        let spec = current.as_ref().and_then(|lease| lease.spec.clone());
        let decision = decide(spec.as_ref(), &self.identity, now);
        let seconds = self.settings.duration_seconds();
        let result = match (decision, current) {
            (LeaseDecision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.to_owned()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(micro(now)),
                        renew_time: Some(micro(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.leases
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| Hold::Acquired { previous: None })
            }
            (LeaseDecision::Renew | LeaseDecision::TakeOver, Some(mut lease)) => {
                // A Lease naming us that this process does not hold was
                // left by our previous incarnation: taking it is a change.
                let acquiring = decision == LeaseDecision::TakeOver || !leading;
                let previous = lease.spec.clone().unwrap_or_default();
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if acquiring {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(micro(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(seconds);
                spec.renew_time = Some(micro(now));
                self.leases
                    .replace(LEASE_NAME, &PostParams::default(), &lease)
                    .await
                    .map(|_| {
                        if acquiring {
                            Hold::Acquired {
                                previous: Some(previous),
                            }
                        } else {
                            Hold::Renewed
                        }
                    })
            }
            _ => return Ok(Hold::Following(spec.unwrap_or_default())),
        };
        match result {
            Ok(hold) => Ok(hold),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Hold::Raced),
            Err(error) => Err(error),
        }
    }

    /// Releases the Lease we hold and waits (one retry period at most)
    /// until a standby holds it.
    async fn hand_over(&self, seen: &mut watch::Receiver<Option<LeaseSpec>>) {
        match self.release().await {
            Ok(true) => tracing::info!(identity = %self.identity, "released the leader lease"),
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(%error, "failed to release the leader lease; a standby takes over when it expires");
                return;
            }
        }
        let identity = self.identity.as_str();
        let taken = seen.wait_for(|lease| {
            lease
                .as_ref()
                .and_then(holder)
                .is_some_and(|name| name != identity)
        });
        match tokio::time::timeout(self.settings.retry_period, taken).await {
            Ok(Ok(lease)) => {
                let successor = lease.as_ref().and_then(holder).unwrap_or_default();
                tracing::info!(identity, successor, "handed leadership over");
            }
            _ => tracing::info!(
                identity,
                "no standby took the lease within the retry period; the next replica to start takes it at once"
            ),
        }
    }

    /// Clears the holder of the Lease if it is us. Ok(false) when it was not ours.
    async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.leases.get_opt(LEASE_NAME).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if holder(spec) != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        // As Kubernetes' own elector does: whoever reads the Lease by its
        // duration alone sees it expire within a second.
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(micro(Utc::now()));
        match self
            .leases
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// Completes when a change of the watched Lease lets `identity` take it
/// (released or gone): a standby then looks at once instead of at its next
/// retry. Expiry is no change; [`follow_wait`] times that.
async fn released_elsewhere(seen: &mut watch::Receiver<Option<LeaseSpec>>, identity: &str) {
    loop {
        if seen.changed().await.is_err() {
            // The watch ended: only the timer wakes the standby now.
            return std::future::pending().await;
        }
        let takeable = seen
            .borrow_and_update()
            .as_ref()
            .is_some_and(|spec| decide(Some(spec), identity, Utc::now()) != LeaseDecision::Follow);
        if takeable {
            return;
        }
    }
}

/// Follows the Lease, publishing its latest spec (default when deleted).
async fn watch_lease(leases: Api<Lease>, seen: watch::Sender<Option<LeaseSpec>>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={LEASE_NAME}"));
    let mut events = watcher(leases, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) => {
                seen.send_replace(Some(lease.spec.unwrap_or_default()));
            }
            Ok(watcher::Event::Delete(_)) => {
                seen.send_replace(Some(LeaseSpec::default()));
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(error) => tracing::debug!(%error, "leader lease watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(second: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(second)
    }

    fn held_by(holder: &str, renewed: DateTime<Utc>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(micro(renewed)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn the_lease_is_created_renewed_taken_over_or_followed() {
        let now = at(60);
        assert_eq!(decide(None, "a", now), LeaseDecision::Create);
        assert_eq!(
            decide(Some(&held_by("a", now)), "a", now),
            LeaseDecision::Renew
        );
        assert_eq!(
            decide(Some(&held_by("b", at(55))), "a", now),
            LeaseDecision::Follow
        );
        assert_eq!(
            decide(Some(&held_by("b", at(44))), "a", now),
            LeaseDecision::TakeOver
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let now = at(60);
        let mut released = held_by("b", now);
        released.holder_identity = None;
        assert_eq!(decide(Some(&released), "a", now), LeaseDecision::TakeOver);
        released.holder_identity = Some(String::new());
        assert_eq!(
            decide(Some(&released), "a", now),
            LeaseDecision::TakeOver,
            "client-go releases with an empty holder"
        );
    }

    #[test]
    fn the_gap_runs_from_the_last_renewal_or_release() {
        let previous = held_by("b", at(10));
        assert_eq!(takeover_gap(&previous, at(25)), Duration::from_secs(15));
        assert_eq!(
            takeover_gap(&previous, at(9)),
            Duration::ZERO,
            "clock skew between replicas never makes a negative gap"
        );
    }

    #[test]
    fn a_standby_looks_again_when_the_lease_expires_or_after_a_retry_period() {
        let retry = Duration::from_secs(2);
        let lease = held_by("b", at(0));
        assert_eq!(follow_wait(&lease, at(1), retry), retry);
        assert_eq!(
            follow_wait(&lease, at(14), retry),
            Duration::from_millis(1010)
        );
        assert_eq!(
            follow_wait(&lease, at(20), retry),
            Duration::from_millis(50),
            "an expired lease is retried soon, not in a tight loop"
        );
    }

    #[test]
    fn settings_default_to_kubernetes_timings_and_reject_unsafe_ones() {
        let settings = LeaseSettings::new(Duration::from_secs(15), None, None).unwrap();
        assert_eq!(
            (settings.renew_deadline, settings.retry_period),
            (Duration::from_secs(10), Duration::from_secs(2))
        );
        let short = LeaseSettings::new(Duration::from_secs(3), None, None).unwrap();
        assert_eq!(
            (short.renew_deadline, short.retry_period),
            (Duration::from_secs(2), Duration::from_millis(600))
        );
        assert!(matches!(
            LeaseSettings::new(Duration::from_secs(15), Some(Duration::from_secs(15)), None),
            Err(LeaseSettingsError::RenewDeadline { .. })
        ));
        assert!(matches!(
            LeaseSettings::new(Duration::from_secs(15), None, Some(Duration::from_secs(10))),
            Err(LeaseSettingsError::RetryPeriod { .. })
        ));
        assert!(matches!(
            LeaseSettings::new(Duration::from_millis(500), None, None),
            Err(LeaseSettingsError::TooShort(_))
        ));
        let message =
            LeaseSettings::new(Duration::from_secs(5), Some(Duration::from_secs(6)), None)
                .unwrap_err()
                .to_string();
        assert!(message.contains("--lease-renew-deadline"), "{message}");
    }
}
