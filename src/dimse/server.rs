//! The DIMSE listeners: plain TCP and, with `[dimse.tls] enabled`, DICOM TLS on a
//! second port (the TLS handshake runs in the connection's task, then the same
//! association code). Sets TCP_NODELAY, caps concurrent associations of both with one
//! semaphore (the excess gets A-ASSOCIATE-RJ transient, "local limit exceeded"; over
//! TLS it is just closed), and on shutdown stops accepting and gives in-flight
//! associations `shutdown_grace_secs` to finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJSource, Pdu,
};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::access::PeerAddr;
use super::connection::{Connection, Transport};
use super::{handler, DimseContext};
use crate::config::DimseConfig;

/// A bound, not yet running, DIMSE listener (and its TLS sibling).
pub struct DimseServer {
    listener: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    ctx: Arc<DimseContext>,
}

impl DimseServer {
    /// Bind the configured address; with `tls`, also `[dimse.tls] port` for it.
    pub async fn bind(ctx: DimseContext, tls: Option<TlsAcceptor>) -> std::io::Result<Self> {
        let addr = SocketAddr::new(ctx.config.bind, ctx.config.port);
        let listener = TcpListener::bind(addr).await?;
        let tls = match tls {
            Some(acceptor) => {
                let addr = SocketAddr::new(ctx.config.bind, ctx.config.tls.port);
                Some((TcpListener::bind(addr).await?, acceptor))
            }
            None => None,
        };
        Ok(Self {
            listener,
            tls,
            ctx: Arc::new(ctx),
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound address of the TLS listener, when there is one.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serve until `shutdown` is cancelled, then drain.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self { listener, tls, ctx } = self;
        let cfg = &ctx.config;
        let slots = Arc::new(Semaphore::new(cfg.max_associations));
        // Bounded number of "busy" rejections in flight, so a flood cannot pile up tasks.
        let rejecting = Arc::new(Semaphore::new(16));
        let tracker = TaskTracker::new();
        let (tls_listener, acceptor) = match tls {
            Some((l, a)) => (Some(l), Some(a)),
            None => (None, None),
        };
        loop {
            let (stream, peer, secure) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((s, p)) => (s, p, false),
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                accepted = accept_opt(tls_listener.as_ref()) => match accepted {
                    Ok((s, p)) => (s, p, true),
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let ctx = ctx.clone();
                    match (secure, acceptor.clone()) {
                        (true, Some(acceptor)) => {
                            tracker.spawn(async move {
                                serve_tls(stream, peer, acceptor, ctx).await;
                                drop(permit);
                            });
                        }
                        _ => {
                            let conn = connection(stream, cfg);
                            tracker.spawn(async move {
                                handler::run(conn, ctx, PeerAddr::plain(peer)).await;
                                drop(permit);
                            });
                        }
                    }
                }
                Err(_) => {
                    ctx.metrics
                        .associations_rejected
                        .with_label_values(&["limit"])
                        .inc();
                    tracing::warn!(%peer, "association limit reached; rejecting");
                    if secure {
                        // Answering would need a TLS handshake first; just close.
                        drop(stream);
                        continue;
                    }
                    if let Ok(permit) = rejecting.clone().try_acquire_owned() {
                        let conn = connection(stream, cfg);
                        tokio::spawn(async move {
                            reject_busy(conn).await;
                            drop(permit);
                        });
                    }
                }
            }
        }
        // Refuse new connections at once while the open ones drain.
        drop(listener);
        drop(tls_listener);
        tracker.close();
        let grace = Duration::from_secs(cfg.shutdown_grace_secs);
        tracing::info!(
            open = tracker.len(),
            "DIMSE listener closed; draining associations"
        );
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                open = tracker.len(),
                "associations still open after the grace period; closing them"
            );
        }
    }
}

/// A connection on `stream` with the configured limits and timeouts.
fn connection(stream: impl Transport + 'static, cfg: &DimseConfig) -> Connection {
    Connection::new(
        stream,
        cfg.max_pdu_length,
        Duration::from_secs(cfg.read_timeout_secs),
        Duration::from_secs(cfg.write_timeout_secs),
    )
}

/// Accept on the TLS listener, or never when there is none.
async fn accept_opt(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Handshake, then run the association over TLS.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    ctx: Arc<DimseContext>,
) {
    match super::tls::handshake(&acceptor, stream, ctx.association_timeout()).await {
        Ok((tls, identity)) => {
            let conn = connection(tls, &ctx.config);
            let from = PeerAddr {
                addr: peer,
                tls: Some(identity),
            };
            handler::run(conn, ctx, from).await;
        }
        Err(e) => {
            ctx.metrics
                .associations_rejected
                .with_label_values(&["tls"])
                .inc();
            tracing::info!(%peer, error = %e, "DICOM TLS connection refused");
            super::audit::association_rejected(
                &ctx,
                None,
                peer.ip().to_canonical(),
                crate::audit::Outcome::Denied,
                &e.to_string(),
            )
            .await;
        }
    }
}

/// Answer the A-ASSOCIATE-RQ of a connection beyond the limit with a transient rejection.
async fn reject_busy(mut conn: Connection) {
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_pdu()).await;
    if let Ok(Ok(Pdu::AssociationRQ(_))) = read {
        let rj = AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        };
        let _ = conn.write_pdu(&Pdu::AssociationRJ(rj)).await;
    }
    conn.shutdown().await;
}
