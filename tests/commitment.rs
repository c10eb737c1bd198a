//! Storage Commitment Push Model: only instances really stored and indexed are
//! committed; the others are reported failed with the right reason. Both backends.

mod common;

use common::gen::{encode_explicit_le, mr_dataset, new_uid, Ids};
use common::scu::Scu;
use common::TestEnv;
use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use glia::dimse::command::{field, CommandBuilder, DATA_SET_PRESENT};
use glia::dimse::sop::{STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH};

fn item(class: &str, inst: &str) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from(class),
    ));
    o.put(DataElement::new(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(inst),
    ));
    o
}

fn refs(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Vec<(String, Option<u16>)> {
    match obj.element_opt(tag).unwrap().map(|e| e.value()) {
        Some(Value::Sequence(s)) => s
            .items()
            .iter()
            .map(|i| {
                (
                    i.element(tags::REFERENCED_SOP_INSTANCE_UID)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .trim_end_matches('\0')
                        .to_string(),
                    i.element_opt(tags::FAILURE_REASON)
                        .unwrap()
                        .map(|e| e.to_int::<u16>().unwrap()),
                )
            })
            .collect(),
        _ => vec![],
    }
}

async fn commitment(env: TestEnv) {
    let node = env.start().await;
    let mut scu = Scu::connect_with(
        node.dimse_addr,
        "GLIA",
        &[uids::MR_IMAGE_STORAGE, STORAGE_COMMITMENT_PUSH],
    )
    .await
    .unwrap();
    let a = Ids::new("COMMIT");
    let b = a.next_instance();
    for (n, ids) in [&a, &b].iter().enumerate() {
        let data = encode_explicit_le(&mr_dataset(ids, n as i32, 8, 8));
        assert_eq!(
            scu.store(uids::MR_IMAGE_STORAGE, &ids.sop, &data).await.0,
            0
        );
    }
    let missing = new_uid();
    let transaction = new_uid();
    let requested = vec![
        item(uids::MR_IMAGE_STORAGE, &a.sop),
        item(uids::MR_IMAGE_STORAGE, &missing),
        item(uids::CT_IMAGE_STORAGE, &b.sop),
    ];
    let (event, data) = request_commitment(&mut scu, &transaction, requested, 77).await;
    assert_eq!(event.u16(tags::EVENT_TYPE_ID), Some(2), "some failed");
    let data = data.expect("event information");
    assert_eq!(
        data.element(tags::TRANSACTION_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0'),
        transaction
    );
    assert_eq!(
        refs(&data, tags::REFERENCED_SOP_SEQUENCE),
        vec![(a.sop.clone(), None)]
    );
    let mut failed = refs(&data, tags::FAILED_SOP_SEQUENCE);
    failed.sort();
    let mut want = vec![
        (missing.clone(), Some(0x0112)),
        (b.sop.clone(), Some(0x0119)),
    ];
    want.sort();
    assert_eq!(failed, want);
    // Acknowledge the event; the association carries on.
    acknowledge(&mut scu, &event).await;
    let more = b.next_instance();
    let data = encode_explicit_le(&mr_dataset(&more, 3, 8, 8));
    assert_eq!(
        scu.store(uids::MR_IMAGE_STORAGE, &more.sop, &data).await.0,
        0
    );
    scu.release().await;
    node.stop().await;
}
both_backends!(commitment, commitment);

/// Send an N-ACTION commitment request (`transaction`, `refs`), check the
/// N-ACTION-RSP, and return the N-EVENT-REPORT-RQ with its event information.
async fn request_commitment(
    scu: &mut Scu,
    transaction: &str,
    refs: Vec<InMemDicomObject>,
    message_id: u16,
) -> (glia::dimse::command::Command, Option<InMemDicomObject>) {
    let mut info = InMemDicomObject::new_empty();
    info.put(DataElement::new(
        tags::TRANSACTION_UID,
        VR::UI,
        PrimitiveValue::from(transaction),
    ));
    info.put(DataElement::new(
        tags::REFERENCED_SOP_SEQUENCE,
        VR::SQ,
        Value::from(DataSetSequence::from(refs)),
    ));
    let (pc, _) = scu.pc(STORAGE_COMMITMENT_PUSH);
    let cmd = CommandBuilder::new(field::N_ACTION_RQ)
        .uid(tags::REQUESTED_SOP_CLASS_UID, STORAGE_COMMITMENT_PUSH)
        .us(tags::MESSAGE_ID, message_id)
        .us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT)
        .uid(
            tags::REQUESTED_SOP_INSTANCE_UID,
            STORAGE_COMMITMENT_INSTANCE,
        )
        .us(tags::ACTION_TYPE_ID, 1)
        .encode();
    scu.send_command(pc, cmd).await;
    scu.send_data(pc, &encode_explicit_le(&info), true).await;

    let (rsp, _) = scu.response_with_data(STORAGE_COMMITMENT_PUSH).await;
    assert_eq!(rsp.field, field::N_ACTION_RSP);
    assert_eq!(rsp.u16(tags::STATUS), Some(0));
    assert_eq!(
        rsp.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO),
        Some(message_id)
    );
    let (event, data) = scu.response_with_data(STORAGE_COMMITMENT_PUSH).await;
    assert_eq!(event.field, field::N_EVENT_REPORT_RQ);
    (event, data)
}

/// Answer an N-EVENT-REPORT-RQ with success.
async fn acknowledge(scu: &mut Scu, event: &glia::dimse::command::Command) {
    let (pc, _) = scu.pc(STORAGE_COMMITMENT_PUSH);
    let ack = CommandBuilder::response_to(field::N_EVENT_REPORT_RSP, event.message_id)
        .uid(tags::AFFECTED_SOP_CLASS_UID, STORAGE_COMMITMENT_PUSH)
        .us(tags::STATUS, 0)
        .encode();
    scu.send_command(pc, ack).await;
}

/// Commit MR instances `sops`; all must be committed.
async fn commit(scu: &mut Scu, sops: &[&str], message_id: u16) {
    let requested = sops
        .iter()
        .map(|s| item(uids::MR_IMAGE_STORAGE, s))
        .collect();
    let (event, _) = request_commitment(scu, &new_uid(), requested, message_id).await;
    assert_eq!(event.u16(tags::EVENT_TYPE_ID), Some(1), "all committed");
    acknowledge(scu, &event).await;
}

/// A committed study is complete: the AI pipeline gets it at once (trigger
/// `commitment`), not after `stable_age`, and only once.
async fn commitment_marks_study_complete(mut env: TestEnv) {
    env.config.ai.enabled = true;
    env.config.ai.stable_age = 3600;
    env.config.ai.scan_interval_ms = 100;
    let node = env.start().await;
    let mut scu = Scu::connect_with(
        node.dimse_addr,
        "GLIA",
        &[uids::MR_IMAGE_STORAGE, STORAGE_COMMITMENT_PUSH],
    )
    .await
    .unwrap();
    let a = Ids::new("COMMITAI");
    let data = encode_explicit_le(&mr_dataset(&a, 1, 8, 8));
    assert_eq!(scu.store(uids::MR_IMAGE_STORAGE, &a.sop, &data).await.0, 0);
    commit(&mut scu, &[&a.sop], 5).await;
    let jobs = node.state.jobs.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let job = loop {
        let list = jobs
            .list(Some("ai.segment"), None, Some(&a.study), 10)
            .await
            .unwrap();
        if let Some(j) = list.first().filter(|j| j.finished_at.is_some()) {
            assert_eq!(list.len(), 1);
            break j.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no AI job: {list:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(job.payload.contains("\"commitment\""), "{}", job.payload);
    // One MR series of one 8×8 slice: skipped with a reason, not failed.
    assert_eq!(job.state.as_str(), "skipped", "{job:?}");
    // Committing again changes nothing: the study was handled for its last instance.
    commit(&mut scu, &[&a.sop], 6).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let list = jobs
        .list(Some("ai.segment"), None, Some(&a.study), 10)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    scu.release().await;
    node.stop().await;
}
both_backends!(commitment_ai, commitment_marks_study_complete);
