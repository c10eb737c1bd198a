//! Retrieve service, C-GET SCP (PS3.4 C.4.3): Patient Root and Study Root GET. The
//! sub-operation C-STOREs go over the requesting association, on the storage contexts
//! for which the SCU took the SCP role by role selection; without them every
//! sub-operation fails. Same counts, statuses and C-CANCEL handling as C-MOVE.

use super::association::AcceptedContext;
use super::command::{field, Command};
use super::handler::{Association, AssociationError};
use super::retrieve::{refuse, resolve, response, send_final, Shape};
use super::suboperations::store_instance;
use super::{status, DimseContext};

/// Answer one C-GET-RQ.
pub async fn handle(
    assoc: &mut Association,
    pc: &AcceptedContext,
    cmd: &Command,
    ctx: &DimseContext,
) -> Result<(), AssociationError> {
    const RSP: u16 = field::C_GET_RSP;
    let retrieval = match resolve(assoc, pc, cmd, ctx).await? {
        Ok(r) => r,
        Err((st, comment)) => return refuse(assoc, RSP, cmd, pc, st, &comment, ctx).await,
    };
    // Storage contexts on which the requestor accepted the SCP role.
    let storage: Vec<AcceptedContext> = assoc
        .negotiated
        .contexts
        .iter()
        .filter(|c| {
            assoc
                .negotiated
                .requestor_scp_classes
                .contains(&c.abstract_syntax)
        })
        .cloned()
        .collect();
    let mut counts = retrieval.counts();
    let list = retrieval.instances;
    let mut cancelled = false;
    for (i, inst) in list.iter().enumerate() {
        if assoc.cancel_requested(cmd.message_id).await? {
            cancelled = true;
            break;
        }
        let report = store_instance(
            &mut assoc.conn,
            &storage,
            &ctx.store,
            inst,
            (i + 1) as u16,
            None,
        )
        .await
        .map_err(|e| AssociationError::Protocol(format!("C-GET sub-operation: {e}")))?;
        counts.record(inst, &report.outcome);
        if report.cancel == Some(cmd.message_id) {
            cancelled = true;
            break;
        }
        if counts.remaining > 0 {
            let rsp = response(RSP, cmd, pc, status::PENDING, &counts, Shape::Pending, None);
            assoc.send_command(pc.id, rsp).await?;
        }
    }
    let st = if cancelled {
        status::CANCEL
    } else {
        counts.final_status()
    };
    send_final(assoc, RSP, cmd, pc, st, &counts, ctx).await
}
