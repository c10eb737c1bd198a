//! The SCU side of an association, on our own `Connection` (PDU framing with size
//! caps and timeouts): A-ASSOCIATE-RQ/AC/RJ, A-RELEASE, A-ABORT. Used by C-MOVE to
//! open the association to the move destination for its C-STORE sub-operations.
//! (dicom-ul's client association is not used: its P-DATA writer panics on drop.)

use std::net::SocketAddr;
use std::time::Duration;

use dicom_ul::pdu::{
    AbortRQSource, AssociationRJ, AssociationRQ, Pdu, PresentationContextProposed,
    PresentationContextResultReason, UserVariableItem,
};
use tokio::net::TcpStream;

use super::association::{AcceptedContext, APPLICATION_CONTEXT};
use super::connection::{Connection, ConnectionError};
use crate::config::DimseConfig;
use crate::ingest::spool::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// A presentation context we propose: an odd id, an abstract syntax, and the
/// transfer syntaxes we can send it in (most preferred first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntaxes: Vec<String>,
}

/// Timeouts and limits of an outgoing association.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP connect (and A-ASSOCIATE-AC wait) limit.
    pub connect_timeout: Duration,
    /// How long one read may stall.
    pub read_timeout: Duration,
    /// How long one write may stall.
    pub write_timeout: Duration,
    /// How long to wait for A-RELEASE-RP.
    pub release_timeout: Duration,
    /// Largest P-DATA-TF PDU we accept (advertised in A-ASSOCIATE-RQ).
    pub max_pdu_length: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            release_timeout: Duration::from_secs(10),
            max_pdu_length: 65_536,
        }
    }
}

impl ClientOptions {
    /// The node's `[dimse]` limits applied to outgoing associations.
    pub fn from_config(cfg: &DimseConfig) -> Self {
        Self {
            connect_timeout: Duration::from_secs(cfg.association_timeout_secs.max(1)),
            read_timeout: Duration::from_secs(cfg.read_timeout_secs.max(1)),
            write_timeout: Duration::from_secs(cfg.write_timeout_secs.max(1)),
            release_timeout: Duration::from_secs(10),
            max_pdu_length: cfg.max_pdu_length,
        }
    }
}

/// Why an outgoing association could not be established or released cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("connecting to {addr} timed out")]
    ConnectTimeout { addr: SocketAddr },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("association rejected: {0:?}")]
    Rejected(AssociationRJ),
    #[error("association aborted by the peer")]
    Aborted,
    #[error("no proposed presentation context was accepted")]
    NoContextAccepted,
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// An established association where we are the requestor (SCU side).
pub struct ScuAssociation {
    /// The connection, for sending commands and data sets (`send_command`,
    /// `send_data_set`, `read_pdu`); its `peer_max_pdu_length` is the acceptor's.
    pub conn: Connection,
    /// The accepted presentation contexts (id, abstract syntax, transfer syntax).
    pub contexts: Vec<AcceptedContext>,
    /// The peer's AE title (the called AE title we used).
    pub peer_ae: String,
    release_timeout: Duration,
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c == ' ')
}

fn check_ae(what: &str, ae: &str) -> Result<(), ClientError> {
    let t = ae.trim();
    if t.is_empty() || t.len() > 16 || !t.chars().all(|c| c.is_ascii() && !c.is_control()) {
        return Err(ClientError::InvalidRequest(format!(
            "{what} AE title must be 1 to 16 ASCII characters"
        )));
    }
    if t.contains('\\') {
        return Err(ClientError::InvalidRequest(format!(
            "{what} AE title contains a backslash"
        )));
    }
    Ok(())
}

fn check_contexts(contexts: &[ProposedContext]) -> Result<(), ClientError> {
    if contexts.is_empty() || contexts.len() > 128 {
        return Err(ClientError::InvalidRequest(format!(
            "1 to 128 presentation contexts needed, got {}",
            contexts.len()
        )));
    }
    let mut seen = [false; 256];
    for pc in contexts {
        if pc.id % 2 == 0 || seen[pc.id as usize] {
            return Err(ClientError::InvalidRequest(format!(
                "presentation context id {} is even or repeated",
                pc.id
            )));
        }
        seen[pc.id as usize] = true;
        if pc.transfer_syntaxes.is_empty() {
            return Err(ClientError::InvalidRequest(format!(
                "presentation context {} proposes no transfer syntax",
                pc.id
            )));
        }
    }
    Ok(())
}

/// Open an association to `addr` as `calling_ae`, calling `called_ae`, proposing
/// `contexts`. Succeeds only if at least one context is accepted; the accepted ones
/// (with the transfer syntax the peer chose) are in [`ScuAssociation::contexts`].
pub async fn associate(
    addr: SocketAddr,
    calling_ae: &str,
    called_ae: &str,
    contexts: &[ProposedContext],
    cfg: &ClientOptions,
) -> Result<ScuAssociation, ClientError> {
    check_ae("calling", calling_ae)?;
    check_ae("called", called_ae)?;
    check_contexts(contexts)?;

    let stream = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(ClientError::Connect { addr, source }),
        Err(_) => return Err(ClientError::ConnectTimeout { addr }),
    };
    let _ = stream.set_nodelay(true);
    let mut conn = Connection::new(
        stream,
        cfg.max_pdu_length,
        cfg.read_timeout,
        cfg.write_timeout,
    );

    let rq = AssociationRQ {
        protocol_version: 1,
        calling_ae_title: calling_ae.trim().to_string(),
        called_ae_title: called_ae.trim().to_string(),
        application_context_name: APPLICATION_CONTEXT.into(),
        presentation_contexts: contexts
            .iter()
            .map(|pc| PresentationContextProposed {
                id: pc.id,
                abstract_syntax: pc.abstract_syntax.clone(),
                transfer_syntaxes: pc.transfer_syntaxes.clone(),
            })
            .collect(),
        user_variables: vec![
            UserVariableItem::MaxLength(cfg.max_pdu_length),
            UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.into()),
            UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.into()),
        ],
    };
    conn.write_pdu(&Pdu::AssociationRQ(rq)).await?;

    let reply = match tokio::time::timeout(cfg.connect_timeout, conn.read_pdu()).await {
        Ok(r) => r?,
        Err(_) => {
            abort_conn(&mut conn).await;
            return Err(ConnectionError::Timeout.into());
        }
    };
    let ac = match reply {
        Pdu::AssociationAC(ac) => ac,
        Pdu::AssociationRJ(rj) => {
            conn.shutdown().await;
            return Err(ClientError::Rejected(rj));
        }
        Pdu::AbortRQ { .. } => {
            conn.shutdown().await;
            return Err(ClientError::Aborted);
        }
        _ => {
            abort_conn(&mut conn).await;
            return Err(ClientError::Protocol(
                "expected A-ASSOCIATE-AC or -RJ".into(),
            ));
        }
    };

    let mut accepted = Vec::new();
    for res in &ac.presentation_contexts {
        if res.reason != PresentationContextResultReason::Acceptance {
            continue;
        }
        let Some(pc) = contexts.iter().find(|p| p.id == res.id) else {
            continue;
        };
        let ts = trim(&res.transfer_syntax);
        // A transfer syntax we did not propose cannot be used.
        if !pc.transfer_syntaxes.iter().any(|t| trim(t) == ts) {
            tracing::warn!(
                id = res.id,
                ts,
                "peer accepted a transfer syntax that was not proposed"
            );
            continue;
        }
        accepted.push(AcceptedContext {
            id: res.id,
            abstract_syntax: trim(&pc.abstract_syntax).to_string(),
            transfer_syntax: ts.to_string(),
        });
    }
    if accepted.is_empty() {
        // Nothing usable: leave politely.
        let mut assoc = ScuAssociation {
            conn,
            contexts: accepted,
            peer_ae: called_ae.trim().to_string(),
            release_timeout: cfg.release_timeout,
        };
        let _ = assoc.release_inner().await;
        return Err(ClientError::NoContextAccepted);
    }

    conn.peer_max_pdu_length = ac
        .user_variables
        .iter()
        .find_map(|v| match v {
            UserVariableItem::MaxLength(n) => Some(*n),
            _ => None,
        })
        .filter(|n| *n != 0)
        .unwrap_or(u32::MAX)
        .clamp(
            dicom_ul::pdu::MINIMUM_PDU_SIZE,
            dicom_ul::pdu::MAXIMUM_PDU_SIZE,
        );

    Ok(ScuAssociation {
        conn,
        contexts: accepted,
        peer_ae: called_ae.trim().to_string(),
        release_timeout: cfg.release_timeout,
    })
}

async fn abort_conn(conn: &mut Connection) {
    let _ = conn
        .write_pdu(&Pdu::AbortRQ {
            source: AbortRQSource::ServiceUser,
        })
        .await;
    conn.shutdown().await;
}

impl ScuAssociation {
    /// The connection (for sub-operations).
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The accepted presentation contexts.
    pub fn contexts(&self) -> &[AcceptedContext] {
        &self.contexts
    }

    /// Release the association: A-RELEASE-RQ, then wait (at most the release timeout)
    /// for A-RELEASE-RP; on timeout the association is aborted. The TCP connection is
    /// closed in every case.
    pub async fn release(mut self) -> Result<(), ClientError> {
        self.release_inner().await
    }

    async fn release_inner(&mut self) -> Result<(), ClientError> {
        let timeout = self.release_timeout;
        let result = match tokio::time::timeout(timeout, self.release_exchange()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Connection(ConnectionError::Timeout)),
        };
        match &result {
            Ok(()) | Err(ClientError::Aborted) => self.conn.shutdown().await,
            Err(_) => abort_conn(&mut self.conn).await,
        }
        result
    }

    async fn release_exchange(&mut self) -> Result<(), ClientError> {
        self.conn.write_pdu(&Pdu::ReleaseRQ).await?;
        loop {
            match self.conn.read_pdu().await? {
                Pdu::ReleaseRP => return Ok(()),
                // Release collision (PS3.8 §7.2.2): as requestor, answer and keep waiting.
                Pdu::ReleaseRQ => self.conn.write_pdu(&Pdu::ReleaseRP).await?,
                Pdu::AbortRQ { .. } => return Err(ClientError::Aborted),
                // Late data (e.g. a response we no longer wait for): ignored.
                Pdu::PData { .. } => {}
                _ => {
                    return Err(ClientError::Protocol(
                        "unexpected PDU during release".into(),
                    ))
                }
            }
        }
    }

    /// Abort the association (A-ABORT, source service user) and close the connection.
    pub async fn abort(mut self) {
        abort_conn(&mut self.conn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimse::association::negotiate;

    fn ctx(id: u8, a: &str, ts: &[&str]) -> ProposedContext {
        ProposedContext {
            id,
            abstract_syntax: a.into(),
            transfer_syntaxes: ts.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A minimal acceptor on our own association code: negotiates, then answers
    /// A-RELEASE-RQ.
    async fn acceptor(cfg: DimseConfig) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut conn =
                Connection::new(s, 16_384, Duration::from_secs(5), Duration::from_secs(5));
            let Ok(Pdu::AssociationRQ(rq)) = conn.read_pdu().await else {
                return;
            };
            match negotiate(&rq, &cfg) {
                Ok((ac, _)) => conn.write_pdu(&Pdu::AssociationAC(ac)).await.unwrap(),
                Err(rj) => {
                    conn.write_pdu(&Pdu::AssociationRJ(rj)).await.unwrap();
                    return;
                }
            }
            if let Ok(Pdu::ReleaseRQ) = conn.read_pdu().await {
                conn.write_pdu(&Pdu::ReleaseRP).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn associate_and_release_against_our_acceptor() {
        let addr = acceptor(DimseConfig::default()).await;
        let contexts = [
            ctx(1, "1.2.840.10008.5.1.4.1.1.4", &["1.2.840.10008.1.2.4.70"]),
            ctx(
                3,
                "1.2.840.10008.5.1.4.1.1.4",
                &["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"],
            ),
            ctx(5, "1.2.840.10008.5.1.4.1.1.2", &["1.2.3.4.5.6"]),
        ];
        let assoc = associate(addr, "GLIA", "GLIA", &contexts, &ClientOptions::default())
            .await
            .unwrap();
        assert_eq!(assoc.contexts().len(), 2, "unknown transfer syntax refused");
        assert_eq!(
            assoc.contexts()[0].transfer_syntax,
            "1.2.840.10008.1.2.4.70"
        );
        assert_eq!(assoc.contexts()[1].transfer_syntax, "1.2.840.10008.1.2.1");
        assert_eq!(
            assoc.conn.peer_max_pdu_length,
            DimseConfig::default().max_pdu_length
        );
        assoc.release().await.unwrap();
    }

    #[tokio::test]
    async fn rejection_and_bad_requests_are_errors() {
        let cfg = DimseConfig::default();
        let addr = acceptor(cfg).await;
        let contexts = [ctx(1, "1.2.840.10008.1.1", &["1.2.840.10008.1.2"])];
        let err = associate(addr, "ME", "NOT_GLIA", &contexts, &ClientOptions::default())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ClientError::Rejected(_)), "{err}");
        let bad = [ctx(2, "1.2.840.10008.1.1", &["1.2.840.10008.1.2"])];
        assert!(matches!(
            associate(addr, "ME", "GLIA", &bad, &ClientOptions::default()).await,
            Err(ClientError::InvalidRequest(_))
        ));
        assert!(matches!(
            associate(
                addr,
                "A_VERY_LONG_AE_TITLE",
                "GLIA",
                &contexts,
                &ClientOptions::default()
            )
            .await,
            Err(ClientError::InvalidRequest(_))
        ));
        // Nothing listening.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            associate(closed, "ME", "GLIA", &contexts, &ClientOptions::default()).await,
            Err(ClientError::Connect { .. })
        ));
    }
}
