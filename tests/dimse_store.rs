//! C-ECHO and C-STORE against an in-process node, driven by a dicom-ul SCU, on both
//! backends (SQLite + local directory; PostgreSQL + SeaweedFS S3): success paths,
//! duplicates, and every kind of bad input, each leaving nothing partial behind.

mod common;

use common::gen::{encode_explicit_le, mr_dataset, Ids};
use common::scu::Scu;
use common::{health, Backend, TestEnv};
use dicom_dictionary_std::{tags, uids};
use glia::dimse::status;
use glia::store::BlobKey;

async fn echo_works(env: TestEnv) {
    let node = env.start().await;
    let mut scu = Scu::connect(node.dimse_addr).await.unwrap();
    let rsp = scu.echo().await;
    assert_eq!(rsp.field, glia::dimse::command::field::C_ECHO_RSP);
    assert_eq!(rsp.u16(tags::STATUS), Some(status::SUCCESS));
    assert_eq!(rsp.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO), Some(2));
    // a second echo on the same association answers its own message id
    let rsp = scu.echo().await;
    assert_eq!(rsp.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO), Some(3));
    scu.release().await;
    node.stop().await;
}
both_backends!(echo, echo_works);

async fn store_indexes_and_keeps_bytes(env: TestEnv) {
    let node = env.start().await;
    let mut scu = Scu::connect(node.dimse_addr).await.unwrap();
    let ids = Ids::new("PAT1");
    let mut sent = Vec::new();
    for (i, id) in [ids.clone(), ids.next_instance(), ids.next_series()]
        .iter()
        .enumerate()
    {
        let data = encode_explicit_le(&mr_dataset(id, i as i32 + 1, 32, 32));
        let (st, comment) = scu.store(uids::MR_IMAGE_STORAGE, &id.sop, &data).await;
        assert_eq!(st, status::SUCCESS, "{comment:?}");
        sent.push((id.clone(), data));
    }
    scu.release().await;

    let h = health(node.http_addr).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["patients"], 1);
    assert_eq!(h["studies"], 1);
    assert_eq!(h["series"], 2);
    assert_eq!(h["instances"], 3);

    // The blob is the data set exactly as sent, behind a Part 10 header naming the
    // negotiated transfer syntax.
    let repo = &node.state.repo;
    for (id, data) in &sent {
        let row = repo.find_instance(&id.sop).await.unwrap().expect("indexed");
        assert_eq!(row.transfer_syntax_uid, common::scu::EXPLICIT_LE);
        assert!(!row.blob_key.contains(&id.sop), "no raw UID in keys");
        let blob = node
            .state
            .store
            .get(&BlobKey(row.blob_key.clone()))
            .await
            .unwrap();
        assert_eq!(&blob[128..132], b"DICM");
        assert!(blob.ends_with(data), "data set bytes untouched");
        assert_eq!(row.size_bytes as usize, blob.len());
        let obj = dicom_object::OpenFileOptions::new()
            .from_reader(&blob[128..])
            .unwrap();
        assert_eq!(
            obj.meta().transfer_syntax().trim_end_matches('\0'),
            common::scu::EXPLICIT_LE
        );
        assert_eq!(
            obj.meta()
                .source_application_entity_title()
                .map(|s| s.trim()),
            Some("TESTSCU")
        );
    }
    env.assert_spool_empty(&node).await;
    let metrics = common::http_get(node.http_addr, "/metrics").await;
    assert!(
        metrics.contains("glia_instances_stored_total 3"),
        "{metrics}"
    );
    assert!(metrics.contains("glia_ingest_seconds_count 3"));
    node.stop().await;
}
both_backends!(store_indexes_and_keeps_bytes, store_indexes_and_keeps_bytes);

async fn duplicates_follow_policy(mut env: TestEnv) {
    let ids = Ids::new("PAT2");
    let first = encode_explicit_le(&mr_dataset(&ids, 1, 16, 16));
    let second = encode_explicit_le(&mr_dataset(&ids, 2, 16, 16)); // same UID, other content

    // keep (default): success, nothing stored, the first object stays.
    let node = env.start().await;
    let mut scu = Scu::connect(node.dimse_addr).await.unwrap();
    assert_eq!(
        scu.store(uids::MR_IMAGE_STORAGE, &ids.sop, &first).await.0,
        status::SUCCESS
    );
    let key1 = node
        .state
        .repo
        .find_instance(&ids.sop)
        .await
        .unwrap()
        .unwrap()
        .blob_key;
    assert_eq!(
        scu.store(uids::MR_IMAGE_STORAGE, &ids.sop, &second).await.0,
        status::SUCCESS
    );
    let row = node
        .state
        .repo
        .find_instance(&ids.sop)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.blob_key, key1);
    assert!(node
        .state
        .store
        .get(&BlobKey(key1.clone()))
        .await
        .unwrap()
        .ends_with(&first));
    assert_eq!(health(node.http_addr).await["instances"], 1);
    scu.release().await;
    node.stop().await;

    // replace: the new object replaces the old, whose blob is deleted.
    env.config.ingest.duplicate_policy = glia::config::DuplicatePolicy::Replace;
    let node = env.start().await;
    let mut scu = Scu::connect(node.dimse_addr).await.unwrap();
    assert_eq!(
        scu.store(uids::MR_IMAGE_STORAGE, &ids.sop, &second).await.0,
        status::SUCCESS
    );
    let row = node
        .state
        .repo
        .find_instance(&ids.sop)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(row.blob_key, key1);
    assert!(node
        .state
        .store
        .get(&BlobKey(row.blob_key))
        .await
        .unwrap()
        .ends_with(&second));
    assert!(!node.state.store.exists(&BlobKey(key1)).await.unwrap());
    let h = health(node.http_addr).await;
    assert_eq!(
        (h["instances"].as_u64(), h["series"].as_u64()),
        (Some(1), Some(1))
    );
    scu.release().await;
    node.stop().await;
}
both_backends!(duplicates_follow_policy, duplicates_follow_policy);

/// Each bad object gets its status, the association stays usable, nothing is stored.
async fn bad_objects_are_refused(mut env: TestEnv) {
    env.config.dimse.max_object_bytes = 64 * 1024;
    let node = env.start().await;
    let mut scu = Scu::connect(node.dimse_addr).await.unwrap();
    let ids = Ids::new("PAT3");
    let good = mr_dataset(&ids, 1, 16, 16);

    // Truncated data set: the last element's value is cut short.
    let mut data = encode_explicit_le(&good);
    data.truncate(data.len() - 100);
    let (st, c) = scu.store(uids::MR_IMAGE_STORAGE, &ids.sop, &data).await;
    assert_eq!(st, status::CANNOT_UNDERSTAND, "truncated: {c:?}");
    assert!(c.is_some());

    // SOP Instance UID `../../etc/passwd` in request and data set.
    let mut evil = good.clone();
    evil.put_str(
        tags::SOP_INSTANCE_UID,
        dicom_core::VR::UI,
        "../../etc/passwd",
    );
    let (st, _) = scu
        .store(
            uids::MR_IMAGE_STORAGE,
            "../../etc/passwd",
            &encode_explicit_le(&evil),
        )
        .await;
    assert_eq!(st, status::CANNOT_UNDERSTAND);

    // 65-character UID in the data set (request names a valid one).
    let long = format!("1.{}", "2".repeat(63));
    let mut bad = good.clone();
    bad.put_str(tags::STUDY_INSTANCE_UID, dicom_core::VR::UI, &long);
    let (st, c) = scu
        .store(uids::MR_IMAGE_STORAGE, &ids.sop, &encode_explicit_le(&bad))
        .await;
    assert_eq!(st, status::CANNOT_UNDERSTAND);
    let c = c.unwrap();
    assert!(c.contains("Study Instance UID"), "{c}");
    assert!(
        !c.contains(&long[..20]),
        "error comments do not echo UID values"
    );

    // Missing SOP Instance UID.
    let mut missing = good.clone();
    missing.remove_element(tags::SOP_INSTANCE_UID);
    let (st, _) = scu
        .store(
            uids::MR_IMAGE_STORAGE,
            &ids.sop,
            &encode_explicit_le(&missing),
        )
        .await;
    assert_eq!(st, status::CANNOT_UNDERSTAND);

    // Data set says CT, request says MR.
    let mut ct = good.clone();
    ct.put_str(
        tags::SOP_CLASS_UID,
        dicom_core::VR::UI,
        uids::CT_IMAGE_STORAGE,
    );
    let (st, _) = scu
        .store(uids::MR_IMAGE_STORAGE, &ids.sop, &encode_explicit_le(&ct))
        .await;
    assert_eq!(st, status::DATA_SET_DOES_NOT_MATCH_SOP_CLASS);

    // Request's instance UID differs from the data set's.
    let (st, _) = scu
        .store(
            uids::MR_IMAGE_STORAGE,
            &common::gen::new_uid(),
            &encode_explicit_le(&good),
        )
        .await;
    assert_eq!(st, status::CANNOT_UNDERSTAND);

    // Over the size cap (64 KiB): 256×256×2 bytes of pixels.
    let big = mr_dataset(&ids, 1, 256, 256);
    let (st, c) = scu
        .store(uids::MR_IMAGE_STORAGE, &ids.sop, &encode_explicit_le(&big))
        .await;
    assert_eq!(st, status::OUT_OF_RESOURCES, "{c:?}");

    // Garbage bytes as a data set.
    let (st, _) = scu
        .store(
            uids::MR_IMAGE_STORAGE,
            &ids.sop,
            &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3],
        )
        .await;
    assert_eq!(st, status::CANNOT_UNDERSTAND);

    // Nothing of the above was stored; the association still works.
    assert_eq!(health(node.http_addr).await["instances"], 0);
    env.assert_spool_empty(&node).await;
    let (st, _) = scu
        .store(uids::MR_IMAGE_STORAGE, &ids.sop, &encode_explicit_le(&good))
        .await;
    assert_eq!(st, status::SUCCESS);
    assert_eq!(health(node.http_addr).await["instances"], 1);
    let metrics = common::http_get(node.http_addr, "/metrics").await;
    assert!(
        metrics.contains("glia_dimse_failures_total{status=\"C000\"} 6"),
        "{metrics}"
    );
    assert!(metrics.contains("glia_dimse_failures_total{status=\"A900\"} 1"));
    assert!(metrics.contains("glia_dimse_failures_total{status=\"A700\"} 1"));
    scu.release().await;
    node.stop().await;
}
both_backends!(bad_objects_are_refused, bad_objects_are_refused);

/// An association that aborts in the middle of an object stores nothing.
async fn abort_mid_object_stores_nothing(env: TestEnv) {
    let node = env.start().await;
    let ids = Ids::new("PAT4");
    let data = encode_explicit_le(&mr_dataset(&ids, 1, 128, 128));
    let mut scu = Scu::connect(node.dimse_addr).await.unwrap();
    let pc = scu.store_command(uids::MR_IMAGE_STORAGE, &ids.sop).await;
    scu.send_data(pc, &data[..data.len() / 2], false).await;
    scu.abort().await;

    // The node keeps serving; the half object left no trace.
    let mut scu = Scu::connect(node.dimse_addr).await.unwrap();
    assert_eq!(scu.echo().await.u16(tags::STATUS), Some(status::SUCCESS));
    scu.release().await;
    assert_eq!(health(node.http_addr).await["instances"], 0);
    assert!(node
        .state
        .repo
        .find_instance(&ids.sop)
        .await
        .unwrap()
        .is_none());
    env.assert_spool_empty(&node).await;
    node.stop().await;
}
both_backends!(
    abort_mid_object_stores_nothing,
    abort_mid_object_stores_nothing
);

/// The same with the object spooled to a file (over the memory spool's limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_mid_object_disk_spool() {
    if let Some(env) = TestEnv::new(Backend::Sqlite).await {
        abort_mid_object_stores_nothing(env.disk_spool()).await
    }
}

/// Four associations storing into one study at once (new series racing, the counter
/// triggers locking the same rows): every store succeeds and the counts are exact.
async fn concurrent_stores_into_one_study(env: TestEnv) {
    let node = env.start().await;
    let base = Ids::new("RACE");
    let other = base.next_series();
    let mut tasks = Vec::new();
    for k in 0..4 {
        let addr = node.dimse_addr;
        // Two associations share each of two new series; all share the new study.
        let series = if k < 2 { base.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            let mut scu = Scu::connect(addr).await.unwrap();
            let mut ids = series.next_instance();
            for n in 0..15 {
                let data = encode_explicit_le(&mr_dataset(&ids, n, 8, 8));
                let (st, c) = scu.store(uids::MR_IMAGE_STORAGE, &ids.sop, &data).await;
                assert_eq!(st, status::SUCCESS, "{c:?}");
                ids = ids.next_instance();
            }
            scu.release().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let h = health(node.http_addr).await;
    assert_eq!(
        (h["studies"].as_u64(), h["instances"].as_u64()),
        (Some(1), Some(60))
    );
    assert_eq!(h["series"], 2);
    let r = node.state.repo.connection();
    use sea_orm::{ConnectionTrait, Statement};
    let row = r
        .query_one(Statement::from_string(
            r.get_database_backend(),
            "SELECT num_instances, num_series FROM study",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "num_instances").unwrap(), 60);
    assert_eq!(row.try_get::<i64>("", "num_series").unwrap(), 2);
    node.stop().await;
}
both_backends!(
    concurrent_stores_into_one_study,
    concurrent_stores_into_one_study
);
