//! C-STORE sub-operations, the machinery under the C-MOVE and C-GET SCPs: which
//! presentation contexts to propose for a set of stored instances, and sending one
//! stored instance as a C-STORE-RQ on an association whose contexts are known (the
//! association to the move destination for C-MOVE, the requesting one for C-GET).
//!
//! An instance goes out exactly as stored when the peer accepted its stored transfer
//! syntax (the blob's data set bytes, no re-encoding); otherwise it is re-encoded in
//! explicit or implicit VR little endian, decompressing encapsulated pixel data.

use bytes::Bytes;
use dicom_dictionary_std::tags;
use dicom_ul::pdu::{PDataValueType, Pdu};

use super::association::AcceptedContext;
use super::client::ProposedContext;
use super::command::{field, Command, CommandBuilder, DATA_SET_PRESENT};
use super::connection::{Connection, ConnectionError};
use crate::db::repo::StoredInstance;
use crate::store::{BlobKey, BlobStore};
use crate::transcode::{self, EXPLICIT_VR_LE, IMPLICIT_VR_LE};

/// Priority (0000,0700): MEDIUM.
pub const PRIORITY_MEDIUM: u16 = 0x0000;
/// Most presentation contexts one association can carry (odd ids 1..=255).
pub const MAX_CONTEXTS: usize = 128;

/// The result of one C-STORE sub-operation, as counted in C-MOVE/C-GET responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubOpOutcome {
    /// Status 0000.
    Completed,
    /// A warning status (0xBxxx, 0x0001, 0x0107, 0x0116): counted as a warning.
    Warning(u16),
    /// Not stored: a failure status from the peer, or nothing was sent (no
    /// presentation context, blob missing, transcoding failed). The association is
    /// still usable.
    Failed(String),
}

/// What [`store_instance`] reports when the association is still usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubOpReport {
    pub outcome: SubOpOutcome,
    /// The status of the C-STORE-RSP (`None` when no C-STORE-RQ was sent).
    pub status: Option<u16>,
    /// C-GET only: a C-CANCEL-RQ arrived while the C-STORE-RSP was awaited; this is
    /// its Message ID Being Responded To (the C-GET's Message ID, which the caller
    /// should check). The C-STORE-RSP was still read, so the association is in a
    /// clean state: the caller stops its sub-operations and answers the C-GET with
    /// status Cancel (FE00).
    pub cancel: Option<u16>,
}

/// The association can no longer be used: the caller stops its sub-operations.
#[derive(Debug, thiserror::Error)]
pub enum SubOpError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("association aborted by the peer")]
    Aborted,
    #[error("protocol error: {0}")]
    Protocol(String),
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c == ' ')
}

/// Presentation contexts to propose for sending `instances`, odd ids 1, 3, 5, ...
/// For each distinct SOP class (in order of first appearance): one context per stored
/// transfer syntax of the class (so that every instance can go out exactly as stored
/// if the peer takes its syntax), plus one proposing explicit and implicit VR little
/// endian (the fallback, used after transcoding).
///
/// When that exceeds 128 contexts: one context per class proposing all its stored
/// syntaxes, plus the fallback; beyond 64 classes, one context per class proposing
/// its stored syntaxes followed by the two uncompressed ones; classes past the 128th
/// get no context (their instances fail with "no presentation context").
pub fn plan_contexts(instances: &[StoredInstance]) -> Vec<ProposedContext> {
    let mut classes: Vec<(String, Vec<String>)> = Vec::new();
    for inst in instances {
        let class = trim(&inst.sop_class_uid);
        let ts = trim(&inst.transfer_syntax_uid).to_string();
        match classes.iter_mut().find(|(c, _)| c == class) {
            Some((_, list)) => {
                if !list.contains(&ts) {
                    list.push(ts);
                }
            }
            None => classes.push((class.to_string(), vec![ts])),
        }
    }
    let uncompressed = || vec![EXPLICIT_VR_LE.to_string(), IMPLICIT_VR_LE.to_string()];
    let mut out = Vec::new();
    let mut next_id = 1u8;
    let mut push = |out: &mut Vec<ProposedContext>, abstract_syntax: &str, ts: Vec<String>| {
        out.push(ProposedContext {
            id: next_id,
            abstract_syntax: abstract_syntax.to_string(),
            transfer_syntaxes: ts,
        });
        next_id = next_id.wrapping_add(2);
    };
    let per_syntax: usize = classes.iter().map(|(_, ts)| ts.len() + 1).sum();
    if per_syntax <= MAX_CONTEXTS {
        for (class, stored) in classes {
            for ts in stored {
                push(&mut out, &class, vec![ts]);
            }
            push(&mut out, &class, uncompressed());
        }
    } else if classes.len() * 2 <= MAX_CONTEXTS {
        for (class, stored) in classes {
            push(&mut out, &class, stored);
            push(&mut out, &class, uncompressed());
        }
    } else {
        for (class, mut ts) in classes.into_iter().take(MAX_CONTEXTS) {
            for u in uncompressed() {
                if !ts.contains(&u) {
                    ts.push(u);
                }
            }
            push(&mut out, &class, ts);
        }
    }
    out
}

/// How an instance will be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// The stored data set bytes on this context.
    AsStored(u8),
    /// Re-encoded in this uncompressed syntax on this context.
    Transcode(u8, String),
}

fn choose_route(accepted: &[AcceptedContext], inst: &StoredInstance) -> Option<Route> {
    let class = trim(&inst.sop_class_uid);
    let stored_ts = trim(&inst.transfer_syntax_uid);
    let of_class = || {
        accepted
            .iter()
            .filter(|c| trim(&c.abstract_syntax) == class)
    };
    if let Some(c) = of_class().find(|c| trim(&c.transfer_syntax) == stored_ts) {
        return Some(Route::AsStored(c.id));
    }
    for ts in [EXPLICIT_VR_LE, IMPLICIT_VR_LE] {
        if let Some(c) = of_class().find(|c| trim(&c.transfer_syntax) == ts) {
            return Some(Route::Transcode(c.id, ts.to_string()));
        }
    }
    None
}

/// Map a C-STORE-RSP status to an outcome.
pub fn outcome_for_status(status: u16, comment: Option<&str>) -> SubOpOutcome {
    match status {
        super::status::SUCCESS => SubOpOutcome::Completed,
        s if super::status::is_warning(s) => SubOpOutcome::Warning(s),
        s => SubOpOutcome::Failed(match comment {
            Some(c) => format!("peer answered {s:04X}: {c}"),
            None => format!("peer answered {s:04X}"),
        }),
    }
}

fn not_sent(reason: String) -> SubOpReport {
    SubOpReport {
        outcome: SubOpOutcome::Failed(reason),
        status: None,
        cancel: None,
    }
}

/// The data set bytes to send, or why there are none.
async fn data_set_for(store: &BlobStore, key: &str, route: &Route) -> Result<Bytes, String> {
    let blob = store
        .get(&BlobKey(key.to_string()))
        .await
        .map_err(|e| format!("stored object could not be read: {e}"))?;
    match route {
        Route::AsStored(_) => {
            let at = transcode::dataset_offset(&blob).map_err(|e| e.to_string())?;
            Ok(blob.slice(at..))
        }
        Route::Transcode(_, ts) => {
            let ts = ts.clone();
            tokio::task::spawn_blocking(move || transcode::to_uncompressed(&blob, &ts))
                .await
                .map_err(|e| format!("transcoding task failed: {e}"))?
                .map(Bytes::from)
                .map_err(|e| e.to_string())
        }
    }
}

/// Send one stored instance as a C-STORE sub-operation and read its C-STORE-RSP.
///
/// `accepted` are the association's accepted presentation contexts; `message_id`
/// the C-STORE-RQ's Message ID; `originator` the C-MOVE's (calling AE title, Message
/// ID), sent as Move Originator AE Title (0000,1030) / Message ID (0000,1031).
///
/// Context choice: one with the instance's SOP class and its stored transfer syntax
/// (the stored data set bytes go out unchanged), else one with the class and an
/// uncompressed little-endian syntax (re-encoded, pixel data decompressed), else
/// `Failed("no presentation context ...")` without sending anything.
///
/// Returns `Ok` whenever the association is still usable, including failures of this
/// one instance; `Err` when it is not (I/O error, timeout, A-ABORT, protocol error):
/// the caller stops and counts the remaining instances as failed.
///
/// On a C-GET's requesting association a C-CANCEL-RQ may arrive while the response
/// is awaited: it is noted in [`SubOpReport::cancel`] and the C-STORE-RSP is still
/// read. The connection is read PDU by PDU: PDVs following the C-STORE-RSP in the
/// same P-DATA-TF are not kept (peers do not send any before our next request).
pub async fn store_instance(
    conn: &mut Connection,
    accepted: &[AcceptedContext],
    store: &BlobStore,
    inst: &StoredInstance,
    message_id: u16,
    originator: Option<(&str, u16)>,
) -> Result<SubOpReport, SubOpError> {
    let Some(route) = choose_route(accepted, inst) else {
        return Ok(not_sent(format!(
            "no presentation context for {} in {} or an uncompressed syntax",
            trim(&inst.sop_class_uid),
            trim(&inst.transfer_syntax_uid)
        )));
    };
    let data = match data_set_for(store, &inst.blob_key, &route).await {
        Ok(d) => d,
        Err(reason) => {
            tracing::warn!(blob = %inst.blob_key, %reason, "sub-operation not sent");
            return Ok(not_sent(reason));
        }
    };
    let pc_id = match &route {
        Route::AsStored(id) | Route::Transcode(id, _) => *id,
    };

    let mut cmd = CommandBuilder::new(field::C_STORE_RQ)
        .us(tags::MESSAGE_ID, message_id)
        .us(tags::PRIORITY, PRIORITY_MEDIUM)
        .us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT)
        .uid(tags::AFFECTED_SOP_CLASS_UID, trim(&inst.sop_class_uid))
        .uid(
            tags::AFFECTED_SOP_INSTANCE_UID,
            trim(&inst.sop_instance_uid),
        );
    if let Some((ae, id)) = originator {
        cmd = cmd
            .ae(tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE, ae.trim())
            .us(tags::MOVE_ORIGINATOR_MESSAGE_ID, id);
    }
    conn.send_command(pc_id, cmd.encode()).await?;
    conn.send_data_set(pc_id, &data).await?;
    drop(data);

    let mut cancel = None;
    loop {
        let rsp = read_command(conn).await?;
        match rsp.field {
            field::C_STORE_RSP => {
                let responded = rsp.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO);
                if responded != Some(message_id) {
                    return Err(SubOpError::Protocol(format!(
                        "C-STORE-RSP answers message {responded:?}, expected {message_id}"
                    )));
                }
                if rsp.has_data_set {
                    return Err(SubOpError::Protocol(
                        "C-STORE-RSP announces a data set".into(),
                    ));
                }
                let status = rsp
                    .u16(tags::STATUS)
                    .ok_or_else(|| SubOpError::Protocol("C-STORE-RSP without a status".into()))?;
                let comment = rsp.string(tags::ERROR_COMMENT);
                return Ok(SubOpReport {
                    outcome: outcome_for_status(status, comment.as_deref()),
                    status: Some(status),
                    cancel,
                });
            }
            field::C_CANCEL_RQ if !rsp.has_data_set => {
                cancel = Some(rsp.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO).unwrap_or(0));
            }
            other => {
                return Err(SubOpError::Protocol(format!(
                    "unexpected command {other:04X} while awaiting C-STORE-RSP"
                )))
            }
        }
    }
}

/// Read one (possibly fragmented) command set.
async fn read_command(conn: &mut Connection) -> Result<Command, SubOpError> {
    let mut bytes = Vec::new();
    loop {
        match conn.read_pdu().await? {
            Pdu::PData { data } => {
                for pdv in data {
                    if pdv.value_type != PDataValueType::Command {
                        return Err(SubOpError::Protocol(
                            "data set fragment while awaiting a response".into(),
                        ));
                    }
                    bytes.extend_from_slice(&pdv.data);
                    if pdv.is_last {
                        return Command::decode(&bytes)
                            .map_err(|e| SubOpError::Protocol(e.to_string()));
                    }
                }
            }
            Pdu::AbortRQ { .. } => return Err(SubOpError::Aborted),
            Pdu::ReleaseRQ => {
                return Err(SubOpError::Protocol(
                    "release requested during a sub-operation".into(),
                ))
            }
            _ => return Err(SubOpError::Protocol("unexpected PDU".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(class: &str, ts: &str) -> StoredInstance {
        StoredInstance {
            sop_instance_uid: "1.2.3".into(),
            sop_class_uid: class.into(),
            transfer_syntax_uid: ts.into(),
            blob_key: "v1/x".into(),
            size_bytes: 0,
        }
    }

    const MR: &str = "1.2.840.10008.5.1.4.1.1.4";
    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const RLE: &str = "1.2.840.10008.1.2.5";

    #[test]
    fn contexts_per_class_and_syntax_with_fallback() {
        let plan = plan_contexts(&[
            inst(MR, RLE),
            inst(CT, EXPLICIT_VR_LE),
            inst(MR, EXPLICIT_VR_LE),
            inst(MR, RLE),
        ]);
        let ids: Vec<u8> = plan.iter().map(|c| c.id).collect();
        assert_eq!(ids, [1, 3, 5, 7, 9]);
        let got: Vec<(&str, Vec<&str>)> = plan
            .iter()
            .map(|c| {
                let ts = c.transfer_syntaxes.iter().map(|t| t.as_str()).collect();
                (c.abstract_syntax.as_str(), ts)
            })
            .collect();
        assert_eq!(
            got,
            [
                (MR, vec![RLE]),
                (MR, vec![EXPLICIT_VR_LE]),
                (MR, vec![EXPLICIT_VR_LE, IMPLICIT_VR_LE]),
                (CT, vec![EXPLICIT_VR_LE]),
                (CT, vec![EXPLICIT_VR_LE, IMPLICIT_VR_LE]),
            ]
        );
        assert!(plan_contexts(&[]).is_empty());
    }

    #[test]
    fn many_classes_are_capped_at_128_odd_ids() {
        // 50 classes × 2 syntaxes: 150 > 128, so grouped per class (100 contexts).
        let grouped: Vec<_> = (0..100)
            .map(|i| inst(&format!("1.2.3.{}", i / 2), [RLE, EXPLICIT_VR_LE][i % 2]))
            .collect();
        let plan = plan_contexts(&grouped);
        assert_eq!(plan.len(), 100);
        assert_eq!(plan[0].transfer_syntaxes, [RLE, EXPLICIT_VR_LE]);
        assert_eq!(plan[1].transfer_syntaxes, [EXPLICIT_VR_LE, IMPLICIT_VR_LE]);

        let many: Vec<_> = (0..200).map(|i| inst(&format!("1.2.3.{i}"), RLE)).collect();
        let plan = plan_contexts(&many);
        assert_eq!(plan.len(), MAX_CONTEXTS);
        assert_eq!(plan.last().unwrap().id, 255);
        assert!(plan.iter().all(|c| c.id % 2 == 1));
        assert_eq!(
            plan[0].transfer_syntaxes,
            [RLE, EXPLICIT_VR_LE, IMPLICIT_VR_LE]
        );
        assert_eq!(plan_contexts(&many[..64]).len(), 128);
    }

    #[test]
    fn route_prefers_stored_syntax_then_uncompressed() {
        let acc = |id, a: &str, ts: &str| AcceptedContext {
            id,
            abstract_syntax: a.into(),
            transfer_syntax: ts.into(),
        };
        let both = [acc(1, MR, RLE), acc(3, MR, IMPLICIT_VR_LE)];
        assert_eq!(
            choose_route(&both, &inst(MR, RLE)),
            Some(Route::AsStored(1))
        );
        assert_eq!(
            choose_route(&both, &inst(MR, EXPLICIT_VR_LE)),
            Some(Route::Transcode(3, IMPLICIT_VR_LE.into()))
        );
        assert_eq!(
            choose_route(&both, &inst(MR, IMPLICIT_VR_LE)),
            Some(Route::AsStored(3))
        );
        assert_eq!(choose_route(&both, &inst(CT, RLE)), None);
        // A compressed context of another syntax is no route.
        let jpeg = [acc(1, MR, "1.2.840.10008.1.2.4.70")];
        assert_eq!(choose_route(&jpeg, &inst(MR, RLE)), None);
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(outcome_for_status(0x0000, None), SubOpOutcome::Completed);
        for w in [0xB000, 0xB006, 0xB007] {
            assert_eq!(outcome_for_status(w, None), SubOpOutcome::Warning(w));
        }
        for f in [0xA700, 0xC000, 0xFE00, 0xFF00] {
            let SubOpOutcome::Failed(r) = outcome_for_status(f, Some("full")) else {
                panic!("{f:04X} is a failure");
            };
            assert!(r.contains(&format!("{f:04X}")) && r.contains("full"));
        }
    }

    /// A connected pair of our connections over loopback.
    async fn pair() -> (Connection, Connection) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (c, s) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        let t = std::time::Duration::from_secs(5);
        let mk = |s| Connection::new(s, 65_536, t, t);
        (mk(c.unwrap()), mk(s.unwrap().0))
    }

    /// A small explicit-LE MR object in an in-memory blob store.
    async fn stored_mr(store: &BlobStore) -> StoredInstance {
        use dicom_core::{DataElement, PrimitiveValue, VR};
        let el = |t, vr, v: &str| DataElement::new(t, vr, PrimitiveValue::from(v));
        let obj = dicom_object::InMemDicomObject::from_element_iter([
            el(tags::SOP_CLASS_UID, VR::UI, MR),
            el(tags::SOP_INSTANCE_UID, VR::UI, "1.2.3"),
            el(tags::PATIENT_NAME, VR::PN, "SUB^OP"),
        ]);
        let meta = dicom_object::meta::FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(MR)
            .media_storage_sop_instance_uid("1.2.3")
            .transfer_syntax(EXPLICIT_VR_LE)
            .implementation_class_uid("2.25.1");
        let mut buf = Vec::new();
        obj.with_meta(meta).unwrap().write_all(&mut buf).unwrap();
        store
            .put_bytes(&BlobKey("v1/x".into()), buf.into())
            .await
            .unwrap();
        inst(MR, EXPLICIT_VR_LE)
    }

    fn command_pdu(cmd: CommandBuilder) -> Pdu {
        Pdu::PData {
            data: vec![dicom_ul::pdu::PDataValue {
                presentation_context_id: 1,
                value_type: PDataValueType::Command,
                is_last: true,
                data: cmd.encode(),
            }],
        }
    }

    fn store_rsp(id: u16, status: u16) -> Pdu {
        command_pdu(CommandBuilder::response_to(field::C_STORE_RSP, id).us(tags::STATUS, status))
    }

    /// The peer: read one C-STORE (command + data set), then send `replies`.
    async fn peer(mut c: Connection, replies: Vec<Pdu>) -> (Command, Vec<u8>) {
        let (mut cmd, mut data) = (Vec::new(), Vec::new());
        loop {
            let Pdu::PData { data: pdvs } = c.read_pdu().await.unwrap() else {
                panic!("expected P-DATA");
            };
            for p in pdvs {
                match p.value_type {
                    PDataValueType::Command => cmd.extend_from_slice(&p.data),
                    PDataValueType::Data => data.extend_from_slice(&p.data),
                }
                if p.is_last && p.value_type == PDataValueType::Data {
                    for r in &replies {
                        c.write_pdu(r).await.unwrap();
                    }
                    return (Command::decode(&cmd).unwrap(), data);
                }
            }
        }
    }

    #[tokio::test]
    async fn store_instance_against_a_scripted_peer() {
        let store = BlobStore::in_memory();
        let mr = stored_mr(&store).await;
        let accepted = [AcceptedContext {
            id: 1,
            abstract_syntax: MR.into(),
            transfer_syntax: EXPLICIT_VR_LE.into(),
        }];
        let cancel = command_pdu(
            CommandBuilder::new(field::C_CANCEL_RQ)
                .us(tags::MESSAGE_ID_BEING_RESPONDED_TO, 9)
                .us(
                    tags::COMMAND_DATA_SET_TYPE,
                    crate::dimse::command::NO_DATA_SET,
                ),
        );
        // (peer replies, expected result)
        type Expected = Result<(SubOpOutcome, Option<u16>), &'static str>;
        let cases: Vec<(Vec<Pdu>, Expected)> = vec![
            (vec![store_rsp(7, 0)], Ok((SubOpOutcome::Completed, None))),
            (
                vec![store_rsp(7, 0xB007)],
                Ok((SubOpOutcome::Warning(0xB007), None)),
            ),
            (
                vec![cancel, store_rsp(7, 0)],
                Ok((SubOpOutcome::Completed, Some(9))),
            ),
            (vec![store_rsp(6, 0)], Err("protocol")),
            (
                vec![Pdu::AbortRQ {
                    source: dicom_ul::pdu::AbortRQSource::ServiceUser,
                }],
                Err("aborted"),
            ),
        ];
        for (replies, expected) in cases {
            let (mut ours, theirs) = pair().await;
            let peer = tokio::spawn(peer(theirs, replies));
            let got =
                store_instance(&mut ours, &accepted, &store, &mr, 7, Some(("MOVER", 3))).await;
            let (cmd, data) = peer.await.unwrap();
            assert_eq!(cmd.field, field::C_STORE_RQ);
            assert_eq!(cmd.message_id, 7);
            assert_eq!(
                cmd.string(tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE)
                    .as_deref(),
                Some("MOVER")
            );
            assert_eq!(cmd.u16(tags::MOVE_ORIGINATOR_MESSAGE_ID), Some(3));
            let blob = store.get(&BlobKey("v1/x".into())).await.unwrap();
            assert_eq!(
                data,
                blob[transcode::dataset_offset(&blob).unwrap()..],
                "as stored"
            );
            match (got, expected) {
                (Ok(r), Ok((outcome, cancel))) => {
                    assert_eq!((r.outcome, r.cancel), (outcome, cancel));
                }
                (Err(SubOpError::Protocol(_)), Err("protocol")) => {}
                (Err(SubOpError::Aborted), Err("aborted")) => {}
                (got, expected) => panic!("{got:?} but expected {expected:?}"),
            }
        }
        // Nothing sent: no context for the class, or no blob.
        let (mut ours, _theirs) = pair().await;
        let ct = inst(CT, EXPLICIT_VR_LE);
        let r = store_instance(&mut ours, &accepted, &store, &ct, 1, None)
            .await
            .unwrap();
        assert!(
            matches!(r.outcome, SubOpOutcome::Failed(ref m) if m.contains("no presentation context"))
        );
        let missing = StoredInstance {
            blob_key: "v1/missing".into(),
            ..mr.clone()
        };
        let r = store_instance(&mut ours, &accepted, &store, &missing, 2, None)
            .await
            .unwrap();
        assert!(matches!(r.outcome, SubOpOutcome::Failed(_)) && r.status.is_none());
    }
}
