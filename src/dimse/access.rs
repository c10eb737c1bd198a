//! DIMSE access control — the one place that decides who may associate and which
//! services an association may use.
//!
//! A calling AE is admitted by [`AccessPolicy::admit`] before negotiation: with the
//! allow-list on (`require_known_peers`, resolved against `[node] mode`) it must be
//! listed in `[[dimse.peers]]`; a listed peer with `host_check` must connect from its
//! `host`, and one with `tls_fingerprint` must come over DICOM TLS presenting that
//! client certificate. The admitted association carries a [`Grant`]: the services it
//! may use (its presentation contexts for other services are refused in negotiation,
//! and a request for one anyway is answered 0x0124) and the centre its studies belong
//! to. Refusals are A-ASSOCIATE-RJ (permanent, service user, calling AE title not
//! recognized), whatever the reason, so the reason cannot be probed from outside.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceUserReason, AssociationRJSource,
};

use crate::config::{DimseConfig, NodeMode, PeerConfig};

/// How long resolving a peer's `host` for the host check may take.
const HOST_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The transport-level identity of a connection.
#[derive(Debug, Clone)]
pub struct PeerAddr {
    /// The TCP peer address.
    pub addr: SocketAddr,
    /// Set when the connection came over DICOM TLS.
    pub tls: Option<TlsIdentity>,
}

impl PeerAddr {
    /// A plain-TCP connection from `addr`.
    pub fn plain(addr: SocketAddr) -> Self {
        Self { addr, tls: None }
    }
}

/// What the TLS handshake established about the client.
#[derive(Debug, Clone, Default)]
pub struct TlsIdentity {
    /// SHA-256 (lower-case hex) of the client's leaf certificate (DER), if it sent one.
    pub client_cert_sha256: Option<String>,
}

/// What an admitted association may do.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The calling AE title.
    pub calling_ae: String,
    /// Where the association came from.
    pub ip: IpAddr,
    /// The centre of the peer (studies it stores belong to it).
    pub centre_id: Option<i64>,
    /// Whether the association runs over DICOM TLS.
    pub tls: bool,
    /// Services allowed; `None` = every service (an unlisted AE, allow-list off).
    services: Option<Vec<String>>,
}

impl Grant {
    /// Every service, no centre (unlisted peer with the allow-list off; tests).
    pub fn unrestricted(calling_ae: &str, ip: IpAddr) -> Self {
        Self {
            calling_ae: calling_ae.to_string(),
            ip,
            centre_id: None,
            tls: false,
            services: None,
        }
    }

    /// May this association use `service` (`echo`, `store`, `find`, `move`, `get`,
    /// `commit`)?
    pub fn allows(&self, service: &str) -> bool {
        match &self.services {
            None => true,
            Some(list) => list.iter().any(|s| s == service),
        }
    }
}

/// Why an association was refused by access control.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("calling AE title is not listed in [[dimse.peers]]")]
    UnknownPeer,
    #[error("peer address does not match the configured host")]
    HostMismatch,
    #[error("peer is pinned to a TLS client certificate but did not use DICOM TLS")]
    TlsRequired,
    #[error("TLS client certificate does not match the pinned fingerprint")]
    CertificateMismatch,
}

impl Denial {
    /// Short machine-readable code (metrics label, audit detail).
    pub fn code(&self) -> &'static str {
        match self {
            Denial::UnknownPeer => "unknown_peer",
            Denial::HostMismatch => "host_mismatch",
            Denial::TlsRequired => "tls_required",
            Denial::CertificateMismatch => "certificate_mismatch",
        }
    }

    /// The A-ASSOCIATE-RJ sent for every access denial.
    pub fn rejection(&self) -> AssociationRJ {
        AssociationRJ {
            result: AssociationRJResult::Permanent,
            source: AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CallingAETitleNotRecognized,
            ),
        }
    }
}

/// The access rules of the DIMSE listeners.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    require_known: bool,
    peers: Vec<PeerConfig>,
}

impl AccessPolicy {
    /// The policy of `[dimse]` in node mode `mode` (`require_known_peers = "auto"`
    /// is on in production, off in dev).
    pub fn new(cfg: &DimseConfig, mode: NodeMode) -> Self {
        Self {
            require_known: cfg.require_known_peers.resolve(mode),
            peers: cfg.peers.clone(),
        }
    }

    /// Is the calling-AE allow-list enforced?
    pub fn require_known_peers(&self) -> bool {
        self.require_known
    }

    /// Decide whether `calling_ae`, connected as `from`, may associate.
    pub async fn admit(&self, calling_ae: &str, from: &PeerAddr) -> Result<Grant, Denial> {
        let ip = from.addr.ip().to_canonical();
        let Some(peer) = self.peers.iter().find(|p| p.ae_title == calling_ae) else {
            if self.require_known {
                return Err(Denial::UnknownPeer);
            }
            let mut g = Grant::unrestricted(calling_ae, ip);
            g.tls = from.tls.is_some();
            return Ok(g);
        };
        if peer.host_check && !host_matches(&peer.host, ip).await {
            return Err(Denial::HostMismatch);
        }
        if let Some(pinned) = &peer.tls_fingerprint {
            let Some(tls) = &from.tls else {
                return Err(Denial::TlsRequired);
            };
            let presented = tls.client_cert_sha256.as_deref().unwrap_or("");
            if !fingerprint_eq(pinned, presented) {
                return Err(Denial::CertificateMismatch);
            }
        }
        Ok(Grant {
            calling_ae: calling_ae.to_string(),
            ip,
            centre_id: peer.centre_id,
            tls: from.tls.is_some(),
            services: Some(peer.services.clone()),
        })
    }
}

/// Compare a configured fingerprint (hex, any case, `:` separators allowed) with a
/// presented one (lower-case hex).
fn fingerprint_eq(pinned: &str, presented: &str) -> bool {
    let norm: String = pinned
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    !presented.is_empty() && norm == presented
}

/// Is `ip` the address `host` names (an IP literal, or one of the addresses the name
/// resolves to)?
async fn host_matches(host: &str, ip: IpAddr) -> bool {
    if let Ok(literal) = host.parse::<IpAddr>() {
        return literal.to_canonical() == ip;
    }
    match tokio::time::timeout(HOST_LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(addrs)) => addrs.into_iter().any(|a| a.ip().to_canonical() == ip),
        _ => {
            tracing::warn!(host, "host check: peer host does not resolve");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KnownPeers;

    fn peer(ae: &str) -> PeerConfig {
        PeerConfig {
            ae_title: ae.into(),
            services: vec!["echo".into(), "store".into()],
            centre_id: Some(7),
            ..Default::default()
        }
    }

    fn from(ip: [u8; 4]) -> PeerAddr {
        PeerAddr::plain(SocketAddr::from((ip, 40000)))
    }

    #[test]
    fn auto_follows_node_mode() {
        let mut cfg = DimseConfig::default();
        assert_eq!(cfg.require_known_peers, KnownPeers::Auto);
        assert!(AccessPolicy::new(&cfg, NodeMode::Production).require_known_peers());
        assert!(!AccessPolicy::new(&cfg, NodeMode::Dev).require_known_peers());
        cfg.require_known_peers = KnownPeers::On;
        assert!(AccessPolicy::new(&cfg, NodeMode::Dev).require_known_peers());
        cfg.require_known_peers = KnownPeers::Off;
        assert!(!AccessPolicy::new(&cfg, NodeMode::Production).require_known_peers());
    }

    #[tokio::test]
    async fn unknown_peer_refused_only_with_the_allow_list() {
        let cfg = DimseConfig {
            peers: vec![peer("MOD")],
            ..Default::default()
        };
        let on = AccessPolicy::new(&cfg, NodeMode::Production);
        assert_eq!(
            on.admit("STRANGER", &from([10, 0, 0, 1]))
                .await
                .unwrap_err(),
            Denial::UnknownPeer
        );
        let off = AccessPolicy::new(&cfg, NodeMode::Dev);
        let g = off.admit("STRANGER", &from([10, 0, 0, 1])).await.unwrap();
        assert!(g.allows("find") && g.centre_id.is_none());
        // A listed peer keeps its limits and centre either way.
        let g = off.admit("MOD", &from([10, 0, 0, 1])).await.unwrap();
        assert!(g.allows("store") && !g.allows("find"));
        assert_eq!(g.centre_id, Some(7));
    }

    #[tokio::test]
    async fn host_check_and_tls_pinning() {
        let mut p = peer("MOD");
        p.host = "10.1.2.3".into();
        p.host_check = true;
        let mut cfg = DimseConfig {
            peers: vec![p],
            ..Default::default()
        };
        let policy = AccessPolicy::new(&cfg, NodeMode::Production);
        assert!(policy.admit("MOD", &from([10, 1, 2, 3])).await.is_ok());
        assert_eq!(
            policy.admit("MOD", &from([10, 1, 2, 4])).await.unwrap_err(),
            Denial::HostMismatch
        );
        // An IPv4-mapped IPv6 address is the same host.
        let mapped = PeerAddr::plain("[::ffff:10.1.2.3]:5000".parse().unwrap());
        assert!(policy.admit("MOD", &mapped).await.is_ok());

        let mut p = peer("PINNED");
        p.tls_fingerprint = Some("AB:CD:EF".into());
        cfg.peers = vec![p];
        let policy = AccessPolicy::new(&cfg, NodeMode::Production);
        assert_eq!(
            policy
                .admit("PINNED", &from([1, 1, 1, 1]))
                .await
                .unwrap_err(),
            Denial::TlsRequired
        );
        let mut tls = from([1, 1, 1, 1]);
        tls.tls = Some(TlsIdentity {
            client_cert_sha256: Some("abcdee".into()),
        });
        assert_eq!(
            policy.admit("PINNED", &tls).await.unwrap_err(),
            Denial::CertificateMismatch
        );
        tls.tls = Some(TlsIdentity {
            client_cert_sha256: Some("abcdef".into()),
        });
        assert!(policy.admit("PINNED", &tls).await.unwrap().tls);
    }
}
