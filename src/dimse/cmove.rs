//! Retrieve service, C-MOVE SCP (PS3.4 C.4.2): Patient Root and Study Root MOVE. The
//! destination AE comes from `[[dimse.peers]]`; sub-operations are C-STOREs over a new
//! association to it (as stored, or uncompressed when the destination does not accept
//! the stored syntax). Pending responses carry the counts; C-CANCEL stops the transfer.

use dicom_dictionary_std::tags;

use super::association::AcceptedContext;
use super::client::{associate, ClientOptions};
use super::command::{field, Command};
use super::handler::{Association, AssociationError};
use super::retrieve::{refuse, resolve, response, send_final, Shape};
use super::suboperations::{plan_contexts, store_instance};
use super::{status, DimseContext};

/// Answer one C-MOVE-RQ.
pub async fn handle(
    assoc: &mut Association,
    pc: &AcceptedContext,
    cmd: &Command,
    ctx: &DimseContext,
) -> Result<(), AssociationError> {
    const RSP: u16 = field::C_MOVE_RSP;
    let destination = cmd.string(tags::MOVE_DESTINATION).unwrap_or_default();
    let retrieval = match resolve(assoc, pc, cmd, ctx).await? {
        Ok(r) => r,
        Err((st, comment)) => return refuse(assoc, RSP, cmd, pc, st, &comment, ctx).await,
    };
    let Some(peer) = ctx.config.peers.iter().find(|p| p.ae_title == destination) else {
        return refuse(
            assoc,
            RSP,
            cmd,
            pc,
            status::MOVE_DESTINATION_UNKNOWN,
            "move destination unknown",
            ctx,
        )
        .await;
    };
    let mut counts = retrieval.counts();
    let list = retrieval.instances;
    if list.is_empty() {
        return send_final(assoc, RSP, cmd, pc, status::SUCCESS, &counts, ctx).await;
    }
    let addr = tokio::net::lookup_host((peer.host.as_str(), peer.port))
        .await
        .ok()
        .and_then(|mut a| a.next());
    let opts = ClientOptions::from_config(&ctx.config);
    let dest = match addr {
        Some(addr) => {
            associate(
                addr,
                &ctx.config.ae_title,
                &peer.ae_title,
                &plan_contexts(&list),
                &opts,
            )
            .await
        }
        None => Err(super::client::ClientError::InvalidRequest(
            "destination host does not resolve".into(),
        )),
    };
    let mut dest = match dest {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(destination = %destination, error = %e, "C-MOVE destination unreachable");
            for inst in &list {
                counts.fail(inst);
            }
            return send_final(
                assoc,
                RSP,
                cmd,
                pc,
                status::UNABLE_TO_PERFORM_SUBOPERATIONS,
                &counts,
                ctx,
            )
            .await;
        }
    };
    let originator = assoc.negotiated.calling_ae.clone();
    let mut cancelled = false;
    let mut broken = false;
    for (i, inst) in list.iter().enumerate() {
        if broken {
            counts.fail(inst);
            continue;
        }
        match assoc.cancel_requested(cmd.message_id).await {
            Ok(true) => {
                cancelled = true;
                break;
            }
            Ok(false) => {}
            Err(e) => {
                // The requestor is gone: end the destination association properly.
                dest.abort().await;
                return Err(e);
            }
        }
        let contexts = dest.contexts().to_vec();
        match store_instance(
            dest.connection(),
            &contexts,
            &ctx.store,
            inst,
            (i + 1) as u16,
            Some((&originator, cmd.message_id)),
        )
        .await
        {
            Ok(report) => counts.record(inst, &report.outcome),
            Err(e) => {
                tracing::warn!(destination = %destination, error = %e, "C-MOVE destination association failed");
                counts.fail(inst);
                broken = true;
            }
        }
        if counts.remaining > 0 {
            let rsp = response(RSP, cmd, pc, status::PENDING, &counts, Shape::Pending, None);
            if let Err(e) = assoc.send_command(pc.id, rsp).await {
                dest.abort().await;
                return Err(e);
            }
        }
    }
    if broken {
        dest.abort().await;
    } else if let Err(e) = dest.release().await {
        tracing::info!(error = %e, "C-MOVE destination did not release cleanly");
    }
    let st = if cancelled {
        status::CANCEL
    } else {
        counts.final_status()
    };
    send_final(assoc, RSP, cmd, pc, st, &counts, ctx).await
}
