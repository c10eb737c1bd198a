//! Query service (C-FIND SCP, PS3.4 Annex C): Patient Root and Study Root FIND on the
//! one query model. Pending responses 0xFF00 (0xFF01 when optional keys are not
//! supported), C-CANCEL honoured between responses, final 0x0000 / 0xFE00, failures
//! 0xA700 / 0xA900 / 0xC000 with an ErrorComment. One audit event per query.

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::association::AcceptedContext;
use super::command::{field, Command, CommandBuilder, DATA_SET_PRESENT};
use super::handler::{Association, AssociationError};
use super::{audit, sop, status, DimseContext};
use crate::query::dimse::{parse_identifier, render, IdentifierRules};
use crate::query::{execute, QueryError, QueryOptions};

/// Largest identifier accepted (bytes).
const MAX_IDENTIFIER: usize = 1 << 20;

/// Decode an identifier received on `pc`.
pub fn decode_identifier(pc: &AcceptedContext, bytes: &[u8]) -> Result<InMemDicomObject, String> {
    let ts = TransferSyntaxRegistry
        .get(&pc.transfer_syntax)
        .ok_or_else(|| "unknown transfer syntax".to_string())?;
    // Every declared length must fit before the parser allocates it.
    match crate::ingest::structure::check_data_set(bytes, &pc.transfer_syntax) {
        Ok(()) | Err(crate::ingest::layout::LayoutError::Deflated) => {}
        Err(e) => return Err(format!("identifier structure: {e}")),
    }
    InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| {
        let msg = e.to_string();
        msg.lines().next().unwrap_or("").chars().take(60).collect()
    })
}

/// Encode an identifier for `pc`.
pub fn encode_identifier(pc: &AcceptedContext, obj: &InMemDicomObject) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    if let Some(ts) = TransferSyntaxRegistry.get(&pc.transfer_syntax) {
        if let Err(e) = obj.write_dataset_with_ts(&mut out, ts) {
            // Only values we produced are written; log rather than send half a data set.
            tracing::error!(error = %e, "identifier could not be encoded");
            out.clear();
        }
    }
    out
}

/// The C-FIND status for a query error.
pub fn status_for(e: &QueryError) -> u16 {
    match e {
        QueryError::MissingLevel
        | QueryError::BadLevel
        | QueryError::KeyBelowLevel(_)
        | QueryError::MissingUniqueKey(_) => status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
        QueryError::BadValue { .. } => status::UNABLE_TO_PROCESS,
        QueryError::TooManyMatches(_) => status::OUT_OF_RESOURCES,
        QueryError::Db(_) => status::UNABLE_TO_PROCESS,
    }
}

/// Identifier rules for a Q/R presentation context on this association.
pub fn rules(
    assoc: &Association,
    pc: &AcceptedContext,
    ctx: &DimseContext,
) -> Option<IdentifierRules> {
    let model = sop::information_model(&pc.abstract_syntax)?;
    let n = &assoc.negotiated;
    let retrieve = sop::service_of(&pc.abstract_syntax) != Some("find");
    Some(IdentifierRules {
        model,
        relational: n.extended_flag(&pc.abstract_syntax, 1),
        retrieve,
        options: QueryOptions {
            case_insensitive_names: ctx.query.person_name_case_insensitive,
            combined_datetime: n.extended_flag(&pc.abstract_syntax, 2),
        },
    })
}

/// What the audit trail notes about one query.
#[derive(Default)]
struct Noted {
    level: Option<&'static str>,
    matches: Option<usize>,
}

/// Answer one C-FIND-RQ (audited: level, outcome, number of matches).
pub async fn handle(
    assoc: &mut Association,
    pc: &AcceptedContext,
    cmd: &Command,
    ctx: &DimseContext,
) -> Result<(), AssociationError> {
    let mut noted = Noted::default();
    let st = answer(assoc, pc, cmd, ctx, &mut noted).await?;
    let mut detail = format!("model={}", sop::model_name(&pc.abstract_syntax));
    if let Some(level) = noted.level {
        detail.push_str(&format!(" level={level}"));
    }
    if let Some(n) = noted.matches {
        detail.push_str(&format!(" matches={n}"));
    }
    ctx.audit
        .record(audit::with_status(&assoc.grant, "find", st).detail(detail))
        .await;
    Ok(())
}

/// Answer the query; the final status sent.
async fn answer(
    assoc: &mut Association,
    pc: &AcceptedContext,
    cmd: &Command,
    ctx: &DimseContext,
    noted: &mut Noted,
) -> Result<u16, AssociationError> {
    let respond = |st: u16, comment: Option<&str>| {
        let mut b = CommandBuilder::response_to(field::C_FIND_RSP, cmd.message_id)
            .uid(tags::AFFECTED_SOP_CLASS_UID, &pc.abstract_syntax)
            .us(tags::STATUS, st);
        if let Some(c) = comment {
            b = b.error_comment(c);
        }
        b.encode()
    };
    let fail = |st: u16, comment: &str| {
        ctx.count_failure(st);
        (st, respond(st, Some(comment)))
    };
    let (st, rsp) = 'failed: {
        if !cmd.has_data_set {
            break 'failed fail(
                status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
                "C-FIND-RQ without an identifier",
            );
        }
        let Some(bytes) = assoc.read_data_set(pc.id, MAX_IDENTIFIER).await? else {
            break 'failed fail(status::OUT_OF_RESOURCES, "identifier too large");
        };
        let Some(rules) = rules(assoc, pc, ctx) else {
            break 'failed fail(
                status::SOP_CLASS_NOT_SUPPORTED,
                "not a Query/Retrieve FIND class",
            );
        };
        let ident = match decode_identifier(pc, &bytes) {
            Ok(i) => i,
            Err(e) => {
                break 'failed fail(
                    status::UNABLE_TO_PROCESS,
                    &format!("identifier unreadable: {e}"),
                )
            }
        };
        let query = match parse_identifier(&ident, rules) {
            Ok(q) => q,
            Err(e) => {
                tracing::info!(calling_ae = %assoc.negotiated.calling_ae, code = e.code(), "C-FIND refused: {e}");
                break 'failed fail(status_for(&e), &e.to_string());
            }
        };
        noted.level = Some(query.level.as_str());
        let rows = match execute(ctx.repo.connection(), &query, Some(ctx.query.max_matches)).await {
            Ok(rows) => rows,
            Err(e) => {
                if matches!(e, QueryError::Db(_)) {
                    tracing::error!(error = %e, "C-FIND failed");
                }
                break 'failed fail(status_for(&e), &e.to_string());
            }
        };
        noted.matches = Some(rows.len());
        tracing::debug!(calling_ae = %assoc.negotiated.calling_ae, level = query.level.as_str(), matches = rows.len(), "C-FIND");
        let pending = if query.unsupported_matching {
            status::PENDING_WARNING
        } else {
            status::PENDING
        };
        for row in &rows {
            if assoc.cancel_requested(cmd.message_id).await? {
                break 'failed (status::CANCEL, respond(status::CANCEL, None));
            }
            let ident = render(&query, row, &ctx.config.ae_title);
            let rsp = CommandBuilder::response_to(field::C_FIND_RSP, cmd.message_id)
                .uid(tags::AFFECTED_SOP_CLASS_UID, &pc.abstract_syntax)
                .us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT)
                .us(tags::STATUS, pending)
                .encode();
            // Command and identifier in separate P-DATA-TFs: some SCUs (pynetdicom was
            // seen to) lose an identifier that shares a PDU with its command.
            assoc.send_command(pc.id, rsp).await?;
            assoc
                .conn
                .send_data_set(pc.id, &encode_identifier(pc, &ident))
                .await?;
        }
        (status::SUCCESS, respond(status::SUCCESS, None))
    };
    assoc.send_command(pc.id, rsp).await?;
    Ok(st)
}
