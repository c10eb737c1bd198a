//! One association, from A-ASSOCIATE-RQ to release or abort: admission (`access`),
//! negotiation, then a loop that reads DIMSE messages and dispatches each to its
//! service, refusing (0x0124) any the peer may not use.

use std::collections::VecDeque;
use std::sync::Arc;

use dicom_ul::pdu::{AbortRQServiceProviderReason, AbortRQSource, PDataValue, PDataValueType, Pdu};

use super::access::{Grant, PeerAddr};
use super::association::{negotiate_for, Negotiated};
use super::command::{field, Command, CommandBuilder};
use super::connection::{Connection, ConnectionError};
use super::{audit, cget, cmove, commit, echo, find, status, store, DimseContext};
use crate::audit::Outcome;

/// What the peer sent next.
pub enum Incoming {
    Pdv(PDataValue),
    Release,
    Abort,
}

/// Errors that end an association.
#[derive(Debug, thiserror::Error)]
pub enum AssociationError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("association aborted by peer")]
    Aborted,
}

/// An established association.
pub struct Association {
    pub conn: Connection,
    pub negotiated: Negotiated,
    /// Who the peer is and what it may do.
    pub grant: Grant,
    pending: VecDeque<PDataValue>,
}

impl Association {
    /// The next PDV, or a release/abort request.
    pub async fn next(&mut self) -> Result<Incoming, AssociationError> {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return Ok(Incoming::Pdv(p));
            }
            match self.conn.read_pdu().await? {
                Pdu::PData { data } => self.pending.extend(data),
                Pdu::ReleaseRQ => return Ok(Incoming::Release),
                Pdu::AbortRQ { .. } => return Ok(Incoming::Abort),
                other => {
                    return Err(AssociationError::Protocol(format!(
                        "unexpected {}",
                        pdu_kind(&other)
                    )))
                }
            }
        }
    }

    /// The next Data PDV of the data set in progress; an abort is an error.
    pub async fn next_data(&mut self) -> Result<PDataValue, AssociationError> {
        match self.next().await? {
            Incoming::Pdv(p) if p.value_type == PDataValueType::Data => Ok(p),
            Incoming::Pdv(_) => Err(AssociationError::Protocol(
                "command fragment inside a data set".into(),
            )),
            Incoming::Release => Err(AssociationError::Protocol(
                "release requested inside a data set".into(),
            )),
            Incoming::Abort => Err(AssociationError::Aborted),
        }
    }

    /// Send a command set on presentation context `pc_id`.
    pub async fn send_command(
        &mut self,
        pc_id: u8,
        bytes: Vec<u8>,
    ) -> Result<(), AssociationError> {
        Ok(self.conn.send_command(pc_id, bytes).await?)
    }

    /// Read a whole (small) data set into memory: identifiers, N-ACTION information.
    /// Returns `None` (after draining it) when it exceeds `max_bytes`.
    pub async fn read_data_set(
        &mut self,
        pc_id: u8,
        max_bytes: usize,
    ) -> Result<Option<Vec<u8>>, AssociationError> {
        let mut buf = Vec::new();
        let mut too_big = false;
        loop {
            let p = self.next_data().await?;
            if p.presentation_context_id != pc_id {
                return Err(AssociationError::Protocol(
                    "data set fragment on another presentation context".into(),
                ));
            }
            if !too_big {
                if buf.len() + p.data.len() > max_bytes {
                    too_big = true;
                    buf = Vec::new();
                } else {
                    buf.extend_from_slice(&p.data);
                }
            }
            if p.is_last {
                return Ok((!too_big).then_some(buf));
            }
        }
    }

    /// Has the peer sent a C-CANCEL-RQ for `message_id`? Never blocks when nothing
    /// has arrived; other PDVs that arrive meanwhile are kept for later.
    pub async fn cancel_requested(&mut self, message_id: u16) -> Result<bool, AssociationError> {
        while self.conn.input_ready() {
            match self.conn.read_pdu().await? {
                Pdu::PData { data } => self.pending.extend(data),
                Pdu::AbortRQ { .. } => return Err(AssociationError::Aborted),
                other => {
                    return Err(AssociationError::Protocol(format!(
                        "unexpected {} during an operation",
                        pdu_kind(&other)
                    )))
                }
            }
        }
        let pos = self.pending.iter().position(|p| {
            p.value_type == PDataValueType::Command
                && p.is_last
                && Command::decode(&p.data)
                    .map(|c| {
                        c.field == field::C_CANCEL_RQ
                            && c.u16(dicom_dictionary_std::tags::MESSAGE_ID_BEING_RESPONDED_TO)
                                == Some(message_id)
                    })
                    .unwrap_or(false)
        });
        Ok(match pos {
            Some(i) => {
                self.pending.remove(i);
                true
            }
            None => false,
        })
    }

    /// Skip the rest of a data set (after a failure decided before it was read).
    pub async fn drain_data(&mut self) -> Result<(), AssociationError> {
        loop {
            if self.next_data().await?.is_last {
                return Ok(());
            }
        }
    }
}

fn pdu_kind(p: &Pdu) -> &'static str {
    match p {
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
        Pdu::Unknown { .. } => "unknown PDU",
    }
}

async fn send_abort(conn: &mut Connection, reason: AbortRQServiceProviderReason) {
    let _ = conn
        .write_pdu(&Pdu::AbortRQ {
            source: AbortRQSource::ServiceProvider(reason),
        })
        .await;
    conn.shutdown().await;
}

/// Run one association on an accepted connection (plain TCP or TLS).
pub async fn run(mut conn: Connection, ctx: Arc<DimseContext>, from: PeerAddr) {
    let peer = from.addr;
    // A-ASSOCIATE-RQ must come first, within the association timeout.
    let first = tokio::time::timeout(ctx.association_timeout(), conn.read_pdu()).await;
    let rq = match first {
        Ok(Ok(Pdu::AssociationRQ(rq))) => rq,
        Ok(Ok(other)) => {
            tracing::info!(%peer, pdu = pdu_kind(&other), "connection did not start with A-ASSOCIATE-RQ");
            ctx.metrics
                .associations_rejected
                .with_label_values(&["protocol"])
                .inc();
            send_abort(&mut conn, AbortRQServiceProviderReason::UnexpectedPdu).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "not a DICOM association");
            ctx.metrics
                .associations_rejected
                .with_label_values(&["protocol"])
                .inc();
            if !matches!(e, ConnectionError::Closed) {
                send_abort(&mut conn, AbortRQServiceProviderReason::UnrecognizedPdu).await;
            }
            return;
        }
        Err(_) => {
            ctx.metrics
                .associations_rejected
                .with_label_values(&["timeout"])
                .inc();
            conn.shutdown().await;
            return;
        }
    };
    let calling = rq
        .calling_ae_title
        .trim_matches(|c: char| c == '\0' || c == ' ')
        .to_string();
    let admitted = ctx.access.admit(&calling, &from).await;
    let negotiation = match &admitted {
        Ok(grant) => negotiate_for(&rq, &ctx.config, grant).map_err(|rj| (rj, None)),
        Err(denial) => Err((denial.rejection(), Some(denial))),
    };
    let (ac, negotiated) = match negotiation {
        Ok(ok) => ok,
        Err((rj, denial)) => {
            tracing::info!(%peer, calling_ae = %calling, source = ?rj.source, reason = denial.map(|d| d.code()), "association rejected");
            ctx.metrics
                .associations_rejected
                .with_label_values(&[if denial.is_some() {
                    "denied"
                } else {
                    "rejected"
                }])
                .inc();
            let (outcome, reason) = match denial {
                Some(d) => (Outcome::Denied, d.to_string()),
                None => (Outcome::Failure, format!("{:?}", rj.source)),
            };
            audit::association_rejected(
                &ctx,
                Some(&calling),
                peer.ip().to_canonical(),
                outcome,
                &reason,
            )
            .await;
            let _ = conn.write_pdu(&Pdu::AssociationRJ(rj)).await;
            conn.shutdown().await;
            return;
        }
    };
    let Ok(grant) = admitted else { return };
    if !negotiated.refused_services.is_empty() {
        audit::services_refused(&ctx, &grant, &negotiated.refused_services).await;
    }
    conn.peer_max_pdu_length = negotiated.peer_max_pdu_length;
    if conn.write_pdu(&Pdu::AssociationAC(ac)).await.is_err() {
        return;
    }
    tracing::info!(%peer, calling_ae = %negotiated.calling_ae, contexts = negotiated.contexts.len(), tls = grant.tls, "association accepted");
    ctx.metrics.associations_open.inc();
    let mut assoc = Association {
        conn,
        negotiated,
        grant,
        pending: VecDeque::new(),
    };
    let result = serve(&mut assoc, &ctx).await;
    ctx.metrics.associations_open.dec();
    match result {
        Ok(()) => tracing::info!(%peer, "association released"),
        Err(AssociationError::Aborted) => tracing::info!(%peer, "association aborted by peer"),
        Err(AssociationError::Connection(ConnectionError::Closed)) => {
            tracing::info!(%peer, "connection closed without release")
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "association aborted");
            let reason = match e {
                AssociationError::Connection(ConnectionError::TooLarge { .. }) => {
                    AbortRQServiceProviderReason::InvalidPduParameter
                }
                _ => AbortRQServiceProviderReason::UnexpectedPdu,
            };
            send_abort(&mut assoc.conn, reason).await;
        }
    }
}

/// Answer a request for a service the peer may not use: 0x0124 with an ErrorComment,
/// audited as denied.
async fn refuse_unauthorized(
    assoc: &mut Association,
    ctx: &DimseContext,
    cmd: &Command,
    pc: &super::association::AcceptedContext,
    service: &str,
) -> Result<(), AssociationError> {
    if cmd.has_data_set {
        assoc.drain_data().await?;
    }
    tracing::info!(calling_ae = %assoc.grant.calling_ae, service, "DIMSE request refused: service not allowed");
    ctx.count_failure(status::NOT_AUTHORIZED);
    let mut ev = audit::with_status(&assoc.grant, service, status::NOT_AUTHORIZED)
        .detail("refused: service not allowed for this peer");
    if cmd.field == field::C_STORE_RQ {
        ev = ev.instance(
            cmd.string(dicom_dictionary_std::tags::AFFECTED_SOP_INSTANCE_UID)
                .as_deref(),
        );
    }
    ctx.audit.record(ev).await;
    let mut b = CommandBuilder::response_to(cmd.field | field::RESPONSE_BIT, cmd.message_id).uid(
        dicom_dictionary_std::tags::AFFECTED_SOP_CLASS_UID,
        &pc.abstract_syntax,
    );
    if let Some(uid) = cmd.string(dicom_dictionary_std::tags::AFFECTED_SOP_INSTANCE_UID) {
        b = b.uid(dicom_dictionary_std::tags::AFFECTED_SOP_INSTANCE_UID, &uid);
    }
    let rsp = b
        .us(dicom_dictionary_std::tags::STATUS, status::NOT_AUTHORIZED)
        .error_comment("Refused: not authorized for this service")
        .encode();
    assoc.send_command(pc.id, rsp).await
}

/// The message loop of an established association.
async fn serve(assoc: &mut Association, ctx: &DimseContext) -> Result<(), AssociationError> {
    loop {
        // Read one command set (possibly fragmented).
        let mut bytes = Vec::new();
        let pc_id = loop {
            match assoc.next().await? {
                Incoming::Pdv(p) if p.value_type == PDataValueType::Command => {
                    bytes.extend_from_slice(&p.data);
                    if p.is_last {
                        break p.presentation_context_id;
                    }
                }
                Incoming::Pdv(_) => {
                    return Err(AssociationError::Protocol(
                        "data set without a command".into(),
                    ))
                }
                Incoming::Release => {
                    assoc.conn.write_pdu(&Pdu::ReleaseRP).await?;
                    assoc.conn.shutdown().await;
                    return Ok(());
                }
                Incoming::Abort => return Err(AssociationError::Aborted),
            }
        };
        let cmd = Command::decode(&bytes).map_err(|e| AssociationError::Protocol(e.to_string()))?;
        let Some(pc) = assoc.negotiated.context(pc_id).cloned() else {
            return Err(AssociationError::Protocol(format!(
                "presentation context {pc_id} was not accepted"
            )));
        };
        // A request is served only on a context of its own service, so a peer cannot
        // reach a service it was not granted through another service's context.
        let service = super::sop::service_of(&pc.abstract_syntax);
        let wanted = match cmd.field {
            field::C_ECHO_RQ => Some("echo"),
            field::C_STORE_RQ => Some("store"),
            field::C_FIND_RQ => Some("find"),
            field::C_MOVE_RQ => Some("move"),
            field::C_GET_RQ => Some("get"),
            field::N_ACTION_RQ => Some("commit"),
            _ => None,
        };
        if wanted.is_some() && wanted != service {
            if cmd.has_data_set {
                assoc.drain_data().await?;
            }
            ctx.count_failure(status::SOP_CLASS_NOT_SUPPORTED);
            let rsp = CommandBuilder::response_to(cmd.field | field::RESPONSE_BIT, cmd.message_id)
                .uid(
                    dicom_dictionary_std::tags::AFFECTED_SOP_CLASS_UID,
                    &pc.abstract_syntax,
                )
                .us(
                    dicom_dictionary_std::tags::STATUS,
                    status::SOP_CLASS_NOT_SUPPORTED,
                )
                .error_comment("operation not supported on this presentation context")
                .encode();
            assoc.send_command(pc.id, rsp).await?;
            continue;
        }
        if let Some(service) = wanted.filter(|s| !assoc.grant.allows(s)) {
            refuse_unauthorized(assoc, ctx, &cmd, &pc, service).await?;
            continue;
        }
        match cmd.field {
            field::C_ECHO_RQ => echo::handle(assoc, &pc, &cmd, ctx).await?,
            field::C_STORE_RQ => store::handle(assoc, &pc, &cmd, ctx).await?,
            field::C_FIND_RQ => find::handle(assoc, &pc, &cmd, ctx).await?,
            field::C_MOVE_RQ => cmove::handle(assoc, &pc, &cmd, ctx).await?,
            field::C_GET_RQ => cget::handle(assoc, &pc, &cmd, ctx).await?,
            field::N_ACTION_RQ => commit::handle(assoc, &pc, &cmd, ctx).await?,
            other => {
                if cmd.has_data_set {
                    assoc.drain_data().await?;
                }
                if other & field::RESPONSE_BIT != 0 || other == field::C_CANCEL_RQ {
                    // Nothing to answer to a stray response or a cancel with nothing running.
                    continue;
                }
                ctx.metrics
                    .dimse_failures
                    .with_label_values(&[&format!("{:04X}", status::UNRECOGNIZED_OPERATION)])
                    .inc();
                let rsp = CommandBuilder::response_to(other | field::RESPONSE_BIT, cmd.message_id)
                    .uid(
                        dicom_dictionary_std::tags::AFFECTED_SOP_CLASS_UID,
                        &pc.abstract_syntax,
                    )
                    .us(
                        dicom_dictionary_std::tags::STATUS,
                        status::UNRECOGNIZED_OPERATION,
                    )
                    .encode();
                assoc.send_command(pc.id, rsp).await?;
            }
        }
    }
}
