//! Verification service (C-ECHO SCP, PS3.4 Annex A).

use dicom_dictionary_std::tags;

use super::association::AcceptedContext;
use super::command::{field, Command, CommandBuilder};
use super::handler::{Association, AssociationError};
use super::{sop, status, DimseContext};

/// Answer a C-ECHO-RQ.
pub async fn handle(
    assoc: &mut Association,
    pc: &AcceptedContext,
    cmd: &Command,
    _ctx: &DimseContext,
) -> Result<(), AssociationError> {
    if cmd.has_data_set {
        assoc.drain_data().await?;
    }
    let rsp = CommandBuilder::response_to(field::C_ECHO_RSP, cmd.message_id)
        .uid(tags::AFFECTED_SOP_CLASS_UID, sop::VERIFICATION)
        .us(tags::STATUS, status::SUCCESS)
        .encode();
    assoc.send_command(pc.id, rsp).await
}
