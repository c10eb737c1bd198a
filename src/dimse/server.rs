//! The DIMSE listener: accepts TCP connections, sets TCP_NODELAY, caps concurrent
//! associations with a semaphore (the excess gets A-ASSOCIATE-RJ transient, "local
//! limit exceeded"), and on shutdown stops accepting and gives in-flight associations
//! `shutdown_grace_secs` to finish.

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

use super::connection::Connection;
use super::{handler, DimseContext};

/// A bound, not yet running, DIMSE listener.
pub struct DimseServer {
    listener: TcpListener,
    ctx: Arc<DimseContext>,
}

impl DimseServer {
    /// Bind the configured address.
    pub async fn bind(ctx: DimseContext) -> std::io::Result<Self> {
        let addr = SocketAddr::new(ctx.config.bind, ctx.config.port);
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            ctx: Arc::new(ctx),
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` is cancelled, then drain.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self { listener, ctx } = self;
        let cfg = &ctx.config;
        let slots = Arc::new(Semaphore::new(cfg.max_associations));
        // Bounded number of "busy" rejections in flight, so a flood cannot pile up tasks.
        let rejecting = Arc::new(Semaphore::new(16));
        let tracker = TaskTracker::new();
        let new_conn = |stream: tokio::net::TcpStream| {
            Connection::new(
                stream,
                cfg.max_pdu_length,
                Duration::from_secs(cfg.read_timeout_secs),
                Duration::from_secs(cfg.write_timeout_secs),
            )
        };
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let ctx = ctx.clone();
                    let conn = new_conn(stream);
                    tracker.spawn(async move {
                        handler::run(conn, ctx, peer).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    ctx.metrics
                        .associations_rejected
                        .with_label_values(&["limit"])
                        .inc();
                    tracing::warn!(%peer, "association limit reached; rejecting");
                    if let Ok(permit) = rejecting.clone().try_acquire_owned() {
                        let conn = new_conn(stream);
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
