//! Storage Commitment Push Model SCP (PS3.4 Annex J): an N-ACTION-RQ asks Glia to take
//! responsibility for a list of instances; Glia answers N-ACTION-RSP, checks each one
//! (indexed, same SOP class, object present in the blob store) and reports the result
//! with an N-EVENT-REPORT-RQ on the same association (event 1: all committed; event 2:
//! some failed, with a FailureReason per instance). Each request is audited (counts).

use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::association::AcceptedContext;
use super::command::{field, Command, CommandBuilder, DATA_SET_PRESENT};
use super::find::{decode_identifier, encode_identifier};
use super::handler::{Association, AssociationError};
use super::{sop, status, DimseContext};
use crate::store::BlobKey;

/// Action Type ID of "Request Storage Commitment".
pub const ACTION_REQUEST_COMMITMENT: u16 = 1;
/// Event Type IDs of the N-EVENT-REPORT.
pub const EVENT_ALL_COMMITTED: u16 = 1;
pub const EVENT_SOME_FAILED: u16 = 2;
/// Failure Reasons (PS3.4 J.3.2.1.1.2).
pub const REASON_PROCESSING_FAILURE: u16 = 0x0110;
pub const REASON_NO_SUCH_OBJECT: u16 = 0x0112;
pub const REASON_CLASS_INSTANCE_CONFLICT: u16 = 0x0119;

/// Largest N-ACTION information accepted (bytes).
const MAX_ACTION: usize = 16 << 20;

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?.to_string();
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ').to_string();
    (!s.is_empty()).then_some(s)
}

fn reference(class: &str, instance: &str, reason: Option<u16>) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from(class),
    ));
    item.put(DataElement::new(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(instance),
    ));
    if let Some(r) = reason {
        item.put(DataElement::new(
            tags::FAILURE_REASON,
            VR::US,
            PrimitiveValue::from(r),
        ));
    }
    item
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, Value::from(DataSetSequence::from(items)))
}

/// Answer one N-ACTION-RQ (Storage Commitment request).
pub async fn handle(
    assoc: &mut Association,
    pc: &AcceptedContext,
    cmd: &Command,
    ctx: &DimseContext,
) -> Result<(), AssociationError> {
    let respond = |st: u16, comment: Option<&str>| {
        let mut b = CommandBuilder::response_to(field::N_ACTION_RSP, cmd.message_id)
            .uid(tags::AFFECTED_SOP_CLASS_UID, sop::STORAGE_COMMITMENT_PUSH)
            .uid(
                tags::AFFECTED_SOP_INSTANCE_UID,
                sop::STORAGE_COMMITMENT_INSTANCE,
            )
            .us(tags::ACTION_TYPE_ID, ACTION_REQUEST_COMMITMENT)
            .us(tags::STATUS, st);
        if let Some(c) = comment {
            b = b.error_comment(c);
        }
        b.encode()
    };
    let data = if cmd.has_data_set {
        assoc.read_data_set(pc.id, MAX_ACTION).await?
    } else {
        None
    };
    if cmd.string(tags::REQUESTED_SOP_INSTANCE_UID).as_deref()
        != Some(sop::STORAGE_COMMITMENT_INSTANCE)
    {
        ctx.count_failure(status::NO_SUCH_SOP_INSTANCE);
        return assoc
            .send_command(
                pc.id,
                respond(
                    status::NO_SUCH_SOP_INSTANCE,
                    Some("not the well-known Storage Commitment instance"),
                ),
            )
            .await;
    }
    if cmd.u16(tags::ACTION_TYPE_ID) != Some(ACTION_REQUEST_COMMITMENT) {
        ctx.count_failure(status::NO_SUCH_ACTION_TYPE);
        return assoc
            .send_command(pc.id, respond(status::NO_SUCH_ACTION_TYPE, None))
            .await;
    }
    let request = data.and_then(|d| decode_identifier(pc, &d).ok());
    let Some(request) = request else {
        ctx.count_failure(status::INVALID_ARGUMENT);
        return assoc
            .send_command(
                pc.id,
                respond(
                    status::INVALID_ARGUMENT,
                    Some("missing or unreadable action information"),
                ),
            )
            .await;
    };
    let Some(transaction) = text(&request, tags::TRANSACTION_UID) else {
        ctx.count_failure(status::MISSING_ATTRIBUTE);
        return assoc
            .send_command(
                pc.id,
                respond(
                    status::MISSING_ATTRIBUTE,
                    Some("Transaction UID is missing"),
                ),
            )
            .await;
    };
    let refs: Vec<(String, String)> = match request
        .get(tags::REFERENCED_SOP_SEQUENCE)
        .map(|e| e.value())
    {
        Some(Value::Sequence(seq)) => seq
            .items()
            .iter()
            .map(|i| {
                (
                    text(i, tags::REFERENCED_SOP_CLASS_UID).unwrap_or_default(),
                    text(i, tags::REFERENCED_SOP_INSTANCE_UID).unwrap_or_default(),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    if refs.is_empty() {
        {
            ctx.count_failure(status::MISSING_ATTRIBUTE);
            return assoc
                .send_command(
                    pc.id,
                    respond(
                        status::MISSING_ATTRIBUTE,
                        Some("Referenced SOP Sequence is missing"),
                    ),
                )
                .await;
        }
    };
    assoc
        .send_command(pc.id, respond(status::SUCCESS, None))
        .await?;

    // Decide each reference: really stored and indexed?
    let mut committed = Vec::new();
    let mut committed_uids = Vec::new();
    let mut failed = Vec::new();
    for (class, instance) in &refs {
        let reason = match ctx.repo.find_instance(instance).await {
            Ok(Some(row)) if row.sop_class_uid != *class => Some(REASON_CLASS_INSTANCE_CONFLICT),
            Ok(Some(row)) => match ctx.store.exists(&BlobKey(row.blob_key)).await {
                Ok(true) => None,
                _ => Some(REASON_PROCESSING_FAILURE),
            },
            Ok(None) => Some(REASON_NO_SUCH_OBJECT),
            Err(_) => Some(REASON_PROCESSING_FAILURE),
        };
        match reason {
            None => {
                committed.push(reference(class, instance, None));
                committed_uids.push(instance.clone());
            }
            Some(r) => failed.push(reference(class, instance, Some(r))),
        }
    }
    tracing::info!(calling_ae = %assoc.negotiated.calling_ae, committed = committed.len(), failed = failed.len(), "storage commitment");
    let outcome = if failed.is_empty() {
        crate::audit::Outcome::Success
    } else {
        crate::audit::Outcome::Failure
    };
    ctx.audit
        .record(
            super::audit::event(&assoc.grant, "commit")
                .outcome(outcome, Some(i32::from(status::SUCCESS)))
                .detail(format!(
                    "committed={} failed={}",
                    committed.len(),
                    failed.len()
                )),
        )
        .await;
    // The SCU says these instances are complete: their studies need not wait for
    // the AI pipeline's stable age.
    ctx.ai_trigger.studies_complete(&committed_uids).await;
    let event = if failed.is_empty() {
        EVENT_ALL_COMMITTED
    } else {
        EVENT_SOME_FAILED
    };
    let mut info = InMemDicomObject::new_empty();
    info.put(DataElement::new(
        tags::TRANSACTION_UID,
        VR::UI,
        PrimitiveValue::from(transaction),
    ));
    info.put(DataElement::new(
        tags::RETRIEVE_AE_TITLE,
        VR::AE,
        PrimitiveValue::from(ctx.config.ae_title.as_str()),
    ));
    if !committed.is_empty() {
        info.put(sequence(tags::REFERENCED_SOP_SEQUENCE, committed));
    }
    if !failed.is_empty() {
        info.put(sequence(tags::FAILED_SOP_SEQUENCE, failed));
    }
    let report = CommandBuilder::new(field::N_EVENT_REPORT_RQ)
        .uid(tags::AFFECTED_SOP_CLASS_UID, sop::STORAGE_COMMITMENT_PUSH)
        .us(tags::MESSAGE_ID, cmd.message_id.wrapping_add(0x8000))
        .us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT)
        .uid(
            tags::AFFECTED_SOP_INSTANCE_UID,
            sop::STORAGE_COMMITMENT_INSTANCE,
        )
        .us(tags::EVENT_TYPE_ID, event)
        .encode();
    assoc.send_command(pc.id, report).await?;
    assoc
        .conn
        .send_data_set(pc.id, &encode_identifier(pc, &info))
        .await?;
    // The N-EVENT-REPORT-RSP comes back through the message loop (responses are noted
    // there and need no answer).
    Ok(())
}
