//! What C-MOVE and C-GET share (PS3.4 C.4.2, C.4.3): resolving the identifier to
//! instances through the query model, sub-operation counts, pending and final
//! responses, and the final status (0000, B000, A702, FE00) with the Failed SOP
//! Instance UID List. Every request is audited once, at its final response (study
//! UIDs of the identifier, sub-operation counts).

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::association::AcceptedContext;
use super::command::{Command, CommandBuilder, DATA_SET_PRESENT};
use super::find::{decode_identifier, encode_identifier, rules, status_for};
use super::handler::{Association, AssociationError};
use super::suboperations::SubOpOutcome;
use super::{audit, status, DimseContext};
use crate::db::repo::StoredInstance;
use crate::query::dimse::parse_identifier;
use crate::query::instances;

/// Largest identifier accepted (bytes).
const MAX_IDENTIFIER: usize = 1 << 20;

/// Sub-operation bookkeeping.
#[derive(Debug, Default)]
pub struct Counts {
    pub remaining: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
    pub failed_uids: Vec<String>,
    /// Study Instance UIDs named by the identifier (for the audit trail).
    pub studies: Vec<String>,
}

impl Counts {
    pub fn new(total: usize) -> Self {
        Self {
            remaining: total.min(u16::MAX as usize) as u16,
            ..Default::default()
        }
    }

    /// Record one sub-operation's outcome.
    pub fn record(&mut self, inst: &StoredInstance, outcome: &SubOpOutcome) {
        self.remaining = self.remaining.saturating_sub(1);
        match outcome {
            SubOpOutcome::Completed => self.completed += 1,
            SubOpOutcome::Warning(_) => self.warning += 1,
            SubOpOutcome::Failed(reason) => {
                tracing::info!(reason = %reason, "sub-operation failed");
                self.fail(inst);
            }
        }
    }

    /// Count an instance as failed without trying it.
    pub fn fail(&mut self, inst: &StoredInstance) {
        self.remaining = self.remaining.saturating_sub(1);
        self.failed += 1;
        self.failed_uids.push(inst.sop_instance_uid.clone());
    }

    /// The final status once the sub-operations are over (not cancelled).
    pub fn final_status(&self) -> u16 {
        if self.failed == 0 && self.warning == 0 {
            status::SUCCESS
        } else if self.completed == 0 && self.warning == 0 {
            status::UNABLE_TO_PERFORM_SUBOPERATIONS
        } else {
            status::SUBOPERATIONS_WITH_FAILURES
        }
    }
}

/// The kind of a C-MOVE-RSP / C-GET-RSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Pending: carries the number of remaining sub-operations.
    Pending,
    /// Final; `with_data` when the Failed SOP Instance UID List follows.
    Final { with_data: bool },
}

/// Build a C-MOVE-RSP / C-GET-RSP command.
pub fn response(
    rsp_field: u16,
    cmd: &Command,
    pc: &AcceptedContext,
    st: u16,
    counts: &Counts,
    shape: Shape,
    comment: Option<&str>,
) -> Vec<u8> {
    let mut b = CommandBuilder::response_to(rsp_field, cmd.message_id)
        .uid(tags::AFFECTED_SOP_CLASS_UID, &pc.abstract_syntax)
        .us(tags::STATUS, st);
    if shape == Shape::Pending {
        b = b.us(tags::NUMBER_OF_REMAINING_SUBOPERATIONS, counts.remaining);
    }
    b = b
        .us(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, counts.completed)
        .us(tags::NUMBER_OF_FAILED_SUBOPERATIONS, counts.failed)
        .us(tags::NUMBER_OF_WARNING_SUBOPERATIONS, counts.warning);
    if shape == (Shape::Final { with_data: true }) {
        b = b.us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT);
    }
    if let Some(c) = comment {
        b = b.error_comment(c);
    }
    b.encode()
}

/// Audit one retrieve request at its final status.
async fn record(
    grant: &super::access::Grant,
    rsp_field: u16,
    cmd: &Command,
    st: u16,
    counts: &Counts,
    ctx: &DimseContext,
    comment: Option<&str>,
) {
    let action = if rsp_field == super::command::field::C_MOVE_RSP {
        "move"
    } else {
        "get"
    };
    let mut detail = String::new();
    if action == "move" {
        detail.push_str(&format!(
            "destination={} ",
            cmd.string(tags::MOVE_DESTINATION).unwrap_or_default()
        ));
    }
    detail.push_str(&format!(
        "completed={} failed={} warning={}",
        counts.completed, counts.failed, counts.warning
    ));
    if counts.studies.len() > 1 {
        detail.push_str(&format!(" studies={}", counts.studies.join(",")));
    }
    if let Some(c) = comment {
        detail.push_str(&format!(" reason={c}"));
    }
    let ev = audit::with_status(grant, action, st)
        .study(counts.studies.first().map(String::as_str))
        .detail(detail);
    ctx.audit.record(ev).await;
}

/// Send the final response (with the Failed SOP Instance UID List when needed).
pub async fn send_final(
    assoc: &mut Association,
    rsp_field: u16,
    cmd: &Command,
    pc: &AcceptedContext,
    st: u16,
    counts: &Counts,
    ctx: &DimseContext,
) -> Result<(), AssociationError> {
    if st != status::SUCCESS {
        ctx.count_failure(st);
    }
    record(&assoc.grant, rsp_field, cmd, st, counts, ctx, None).await;
    let with_data = !counts.failed_uids.is_empty();
    assoc
        .send_command(
            pc.id,
            response(
                rsp_field,
                cmd,
                pc,
                st,
                counts,
                Shape::Final { with_data },
                None,
            ),
        )
        .await?;
    if with_data {
        let mut ident = InMemDicomObject::new_empty();
        ident.put(DataElement::new(
            tags::FAILED_SOP_INSTANCE_UID_LIST,
            VR::UI,
            PrimitiveValue::Strs(counts.failed_uids.iter().cloned().collect()),
        ));
        assoc
            .conn
            .send_data_set(pc.id, &encode_identifier(pc, &ident))
            .await?;
    }
    Ok(())
}

/// The instances a retrieve request names.
pub struct Retrieval {
    pub instances: Vec<StoredInstance>,
    /// The identifier's Study Instance UID(s), if it has any.
    pub studies: Vec<String>,
}

impl Retrieval {
    /// Fresh counts for these instances (studies noted for the audit trail).
    pub fn counts(&self) -> Counts {
        let mut c = Counts::new(self.instances.len());
        c.studies = self.studies.clone();
        c
    }
}

/// Read the identifier and resolve it to instances. `Err((status, comment))` is a
/// failure to answer at once (the identifier has been read either way).
pub async fn resolve(
    assoc: &mut Association,
    pc: &AcceptedContext,
    cmd: &Command,
    ctx: &DimseContext,
) -> Result<Result<Retrieval, (u16, String)>, AssociationError> {
    if !cmd.has_data_set {
        return Ok(Err((
            status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
            "request without an identifier".into(),
        )));
    }
    let Some(bytes) = assoc.read_data_set(pc.id, MAX_IDENTIFIER).await? else {
        return Ok(Err((
            status::OUT_OF_RESOURCES,
            "identifier too large".into(),
        )));
    };
    let Some(rules) = rules(assoc, pc, ctx) else {
        return Ok(Err((
            status::SOP_CLASS_NOT_SUPPORTED,
            "not a Query/Retrieve class".into(),
        )));
    };
    let ident = match decode_identifier(pc, &bytes) {
        Ok(i) => i,
        Err(e) => {
            return Ok(Err((
                status::UNABLE_TO_PROCESS,
                format!("identifier unreadable: {e}"),
            )))
        }
    };
    let query = match parse_identifier(&ident, rules) {
        Ok(q) => q,
        Err(e) => return Ok(Err((status_for(&e), e.to_string()))),
    };
    let studies: Vec<String> = ident
        .get(tags::STUDY_INSTANCE_UID)
        .and_then(|e| e.to_multi_str().ok().map(|v| v.to_vec()))
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.trim_matches(|c: char| c == '\0' || c == ' ').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    match instances(ctx.repo.connection(), &query, Some(u16::MAX as u64)).await {
        Ok(instances) => Ok(Ok(Retrieval { instances, studies })),
        Err(e) => {
            tracing::error!(error = %e, "retrieve could not resolve its identifier");
            Ok(Err((status::UNABLE_TO_CALCULATE_MATCHES, e.to_string())))
        }
    }
}

/// Answer with a failure status and no sub-operations.
pub async fn refuse(
    assoc: &mut Association,
    rsp_field: u16,
    cmd: &Command,
    pc: &AcceptedContext,
    st: u16,
    comment: &str,
    ctx: &DimseContext,
) -> Result<(), AssociationError> {
    ctx.count_failure(st);
    tracing::info!(calling_ae = %assoc.negotiated.calling_ae, status = format_args!("{st:04X}"), "retrieve refused: {comment}");
    let counts = Counts::default();
    record(
        &assoc.grant,
        rsp_field,
        cmd,
        st,
        &counts,
        ctx,
        Some(comment),
    )
    .await;
    assoc
        .send_command(
            pc.id,
            response(
                rsp_field,
                cmd,
                pc,
                st,
                &counts,
                Shape::Final { with_data: false },
                Some(comment),
            ),
        )
        .await
}
