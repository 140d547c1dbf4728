//! How the operator under test is reached by runner pods and webhook
//! callers.
//!
//! Against the stand-in (or a cluster whose pods the kubelet emulator runs
//! as local processes) everything stays on loopback. With
//! `SLUICE_E2E_KUBELET=cluster` runner pods run on the cluster's nodes:
//! the operator then launches `SLUICE_E2E_RUNNER_IMAGE` (required) and
//! serves its run API, webhooks and admission webhooks on every address
//! (the API server calls the latter), advertising
//! `SLUICE_E2E_ADVERTISE_ADDRESS` — by default the host's first
//! non-loopback address — to pods. This module decides; it starts nothing.

/// Errors choosing how pods reach the operator.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// Cluster mode without a runner image.
    #[error(
        "SLUICE_E2E_KUBELET=cluster runs runner pods on the cluster's nodes: set SLUICE_E2E_RUNNER_IMAGE to a runner image they can pull (bash .ci/image/build makes sluice:ci; on kind load it with `kind load docker-image sluice:ci`)"
    )]
    NoRunnerImage,
    /// No address pods could reach was found.
    #[error(
        "failed to find a non-loopback address of this host that pods can reach ({0}): set SLUICE_E2E_ADVERTISE_ADDRESS to one"
    )]
    NoAddress(String),
}

/// Environment variable naming the runner image of Jobs in cluster mode.
pub const RUNNER_IMAGE_ENV: &str = "SLUICE_E2E_RUNNER_IMAGE";
/// Environment variable naming the address pods reach this host at
/// (cluster mode); default: the host's first non-loopback address.
pub const ADVERTISE_ENV: &str = "SLUICE_E2E_ADVERTISE_ADDRESS";

/// Whether runner pods run on a real cluster's nodes (`SLUICE_E2E_KUBELET=cluster`)
/// rather than as local processes of the kubelet emulator.
pub fn pods_on_cluster_nodes() -> bool {
    crate::cluster::KubeletMode::from_env() == crate::cluster::KubeletMode::Cluster
}

/// The address pods on the cluster's nodes reach this host at:
/// `SLUICE_E2E_ADVERTISE_ADDRESS`, else the address of the interface the
/// host routes outside traffic through (its first non-loopback address).
pub fn advertised_host() -> Result<String, ReachError> {
    if let Some(address) = std::env::var(ADVERTISE_ENV)
        .ok()
        .filter(|address| !address.trim().is_empty())
    {
        return Ok(address.trim().to_owned());
    }
    // Connecting a UDP socket sends nothing; it only asks the kernel which
    // local address routes towards the (documentation-range) destination.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|socket| socket.connect("192.0.2.1:9").map(|()| socket))
        .and_then(|socket| socket.local_addr());
    match socket {
        Ok(address) if !address.ip().is_loopback() && !address.ip().is_unspecified() => {
            Ok(address.ip().to_string())
        }
        other => Err(ReachError::NoAddress(format!("{other:?}"))),
    }
}

/// How the operator under test is reached: bind addresses, and the host
/// runner pods and webhook callers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Where the run API and webhooks listen.
    pub bind_host: String,
    /// Where pods and callers reach them.
    pub advertised_host: String,
    /// Runner image of Jobs, when pods run on real nodes.
    pub runner_image: Option<String>,
}

impl Reach {
    /// The reach this process's environment asks for.
    pub fn from_env() -> Result<Self, ReachError> {
        build_reach(
            pods_on_cluster_nodes(),
            advertised_host,
            std::env::var(RUNNER_IMAGE_ENV).ok(),
        )
    }
}

fn build_reach(
    on_nodes: bool,
    advertised: impl FnOnce() -> Result<String, ReachError>,
    runner_image: Option<String>,
) -> Result<Reach, ReachError> {
    if !on_nodes {
        return Ok(Reach {
            bind_host: "127.0.0.1".into(),
            advertised_host: "127.0.0.1".into(),
            runner_image: None,
        });
    }
    let runner_image = runner_image
        .filter(|image| !image.trim().is_empty())
        .ok_or(ReachError::NoRunnerImage)?;
    Ok(Reach {
        bind_host: "0.0.0.0".into(),
        advertised_host: advertised()?,
        runner_image: Some(runner_image),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mode_binds_every_address_advertises_the_host_and_passes_the_image() {
        let local = build_reach(false, || panic!("not asked"), Some("ignored".into())).unwrap();
        assert_eq!(
            (local.bind_host.as_str(), local.advertised_host.as_str()),
            ("127.0.0.1", "127.0.0.1")
        );
        assert_eq!(local.runner_image, None);

        let nodes = build_reach(
            true,
            || Ok("10.1.2.3".into()),
            Some("registry.example.com/sluice:ci".into()),
        )
        .unwrap();
        assert_eq!(nodes.bind_host, "0.0.0.0");
        assert_eq!(nodes.advertised_host, "10.1.2.3");
        assert_eq!(
            nodes.runner_image.as_deref(),
            Some("registry.example.com/sluice:ci")
        );

        let missing = build_reach(true, || Ok("10.1.2.3".into()), None).unwrap_err();
        assert!(missing.to_string().contains(RUNNER_IMAGE_ENV), "{missing}");
        let unroutable = build_reach(
            true,
            || Err(ReachError::NoAddress("none".into())),
            Some("sluice:ci".into()),
        )
        .unwrap_err();
        assert!(
            unroutable.to_string().contains(ADVERTISE_ENV),
            "{unroutable}"
        );
    }

    #[test]
    fn the_advertised_host_is_not_loopback() {
        if std::env::var_os(ADVERTISE_ENV).is_none() {
            match advertised_host() {
                Ok(host) => {
                    let ip: std::net::IpAddr = host.parse().expect("an IP address");
                    assert!(!ip.is_loopback(), "{host}");
                }
                Err(error) => assert!(error.to_string().contains(ADVERTISE_ENV), "{error}"),
            }
        }
    }
}
