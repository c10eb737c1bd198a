//! Storage service (C-STORE SCP, PS3.4 Annex B): the data set is streamed from the
//! association into a spool file behind a Part 10 header naming the negotiated transfer
//! syntax, then handed to the one ingest path (with the peer's centre); the response
//! carries its outcome. Every C-STORE is audited (queued, never awaited on the DB).

use dicom_dictionary_std::tags;

use super::association::AcceptedContext;
use super::command::{field, Command, CommandBuilder};
use super::handler::{Association, AssociationError};
use super::{audit, status, DimseContext};
use crate::ingest::{IngestContext, IngestError, InstanceIdentity};

/// Receive one C-STORE-RQ's data set, ingest it, answer C-STORE-RSP.
pub async fn handle(
    assoc: &mut Association,
    pc: &AcceptedContext,
    cmd: &Command,
    ctx: &DimseContext,
) -> Result<(), AssociationError> {
    let (st, identity, rsp) = receive(assoc, pc, cmd, ctx).await?;
    let sop_instance = cmd.string(tags::AFFECTED_SOP_INSTANCE_UID);
    let ev = audit::with_status(&assoc.grant, "store", st);
    let ev = match &identity {
        Some(id) => ev
            .study(Some(&id.study_instance_uid))
            .series(Some(&id.series_instance_uid))
            .instance(Some(&id.sop_instance_uid)),
        None => ev.instance(sop_instance.as_deref()),
    };
    // Audited before answering: an SCU that drops the association meanwhile has still
    // stored (or tried to store) the instance.
    ctx.audit.record(ev).await;
    assoc.send_command(pc.id, rsp).await
}

/// Receive and ingest: the status, the instance's UIDs when stored, and the response.
async fn receive(
    assoc: &mut Association,
    pc: &AcceptedContext,
    cmd: &Command,
    ctx: &DimseContext,
) -> Result<(u16, Option<InstanceIdentity>, Vec<u8>), AssociationError> {
    let sop_class = cmd.string(tags::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
    let sop_instance = cmd
        .string(tags::AFFECTED_SOP_INSTANCE_UID)
        .unwrap_or_default();
    let respond = |st: u16, comment: Option<&str>| {
        let mut b = CommandBuilder::response_to(field::C_STORE_RSP, cmd.message_id)
            .uid(tags::AFFECTED_SOP_CLASS_UID, &sop_class)
            .uid(tags::AFFECTED_SOP_INSTANCE_UID, &sop_instance)
            .us(tags::STATUS, st);
        if let Some(c) = comment {
            b = b.error_comment(c);
        }
        b.encode()
    };

    if !cmd.has_data_set {
        ctx.count_failure(status::CANNOT_UNDERSTAND);
        let rsp = respond(
            status::CANNOT_UNDERSTAND,
            Some("C-STORE-RQ without a data set"),
        );
        return Ok((status::CANNOT_UNDERSTAND, None, rsp));
    }
    // The request must name the context's SOP class and a syntactically valid instance.
    let early_error = if sop_class != pc.abstract_syntax {
        Some((
            status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
            "Affected SOP Class UID differs from the presentation context",
        ))
    } else if crate::ingest::uid::check_uid(&sop_instance).is_err() {
        Some((
            status::CANNOT_UNDERSTAND,
            "Affected SOP Instance UID is not a valid UID",
        ))
    } else {
        None
    };
    if let Some((st, comment)) = early_error {
        assoc.drain_data().await?;
        ctx.count_failure(st);
        return Ok((st, None, respond(st, Some(comment))));
    }

    // Stream the data set into the spool.
    let spool = ctx.ingestor.spool();
    let mut writer = match spool.create().await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot create spool file");
            assoc.drain_data().await?;
            ctx.count_failure(status::OUT_OF_RESOURCES);
            let rsp = respond(status::OUT_OF_RESOURCES, Some("spool unavailable"));
            return Ok((status::OUT_OF_RESOURCES, None, rsp));
        }
    };
    let mut failure: Option<IngestError> = writer
        .write_part10_header(
            &sop_class,
            &sop_instance,
            &pc.transfer_syntax,
            Some(&assoc.negotiated.calling_ae),
        )
        .await
        .err()
        .map(|e| IngestError::Io(e.to_string()));
    let limit = ctx.config.max_object_bytes;
    let mut received: u64 = 0;
    loop {
        // An abort or a broken connection here drops `writer`, deleting the spool file.
        let pdv = assoc.next_data().await?;
        if pdv.presentation_context_id != pc.id {
            return Err(AssociationError::Protocol(
                "data set fragment on another presentation context".into(),
            ));
        }
        received += pdv.data.len() as u64;
        if failure.is_none() {
            if received > limit {
                failure = Some(IngestError::TooLarge { limit });
            } else if let Err(e) = writer.write(&pdv.data).await {
                failure = Some(IngestError::Io(e.to_string()));
            }
        }
        if pdv.is_last {
            break;
        }
    }

    let outcome = match failure {
        Some(e) => Err(e),
        None => match writer.finish().await {
            Ok(file) => {
                let ictx = IngestContext {
                    source_ae: Some(assoc.negotiated.calling_ae.clone()),
                    expected_sop_class_uid: Some(sop_class.clone()),
                    expected_sop_instance_uid: Some(sop_instance.clone()),
                    expected_study_instance_uid: None,
                    centre_id: assoc.grant.centre_id,
                    ..Default::default()
                };
                // Run to completion even if this association is torn down meanwhile.
                let ingestor = ctx.ingestor.clone();
                match tokio::spawn(async move { ingestor.ingest_identified(file, ictx).await })
                    .await
                {
                    Ok(r) => r.map(|(_, id)| id),
                    Err(e) => Err(IngestError::Io(e.to_string())),
                }
            }
            Err(e) => Err(IngestError::Io(e.to_string())),
        },
    };
    let (st, identity, rsp) = match outcome {
        Ok(id) => (status::SUCCESS, Some(id), respond(status::SUCCESS, None)),
        Err(e) => {
            let st = status::for_ingest_error(&e);
            if e.is_rejection() {
                tracing::info!(calling_ae = %assoc.negotiated.calling_ae, code = e.code(), status = format_args!("{st:04X}"), "C-STORE rejected: {e}");
            } else {
                tracing::error!(calling_ae = %assoc.negotiated.calling_ae, code = e.code(), status = format_args!("{st:04X}"), "C-STORE failed: {e}");
            }
            ctx.count_failure(st);
            (st, None, respond(st, Some(&e.to_string())))
        }
    };
    Ok((st, identity, rsp))
}
