//! SIGTERM: the listener stops accepting, an in-flight association may finish its
//! work, and the process exits once it is done (bounded by the grace period).

mod common;

use std::time::{Duration, Instant};

use common::gen::{encode_explicit_le, mr_dataset, Ids};
use common::scu::Scu;
use common::{free_port, spawn_glia, Backend, TestEnv};
use dicom_dictionary_std::uids;
use glia::dimse::status;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_associations() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let (dimse_port, http_port) = (free_port(), free_port());
    let mut node = spawn_glia(&env, dimse_port, http_port);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], dimse_port).into();

    let mut scu = Scu::connect(addr).await.unwrap();
    let ids = Ids::new("TERM");
    let data = encode_explicit_le(&mr_dataset(&ids, 1, 16, 16));
    assert_eq!(
        scu.store(uids::MR_IMAGE_STORAGE, &ids.sop, &data).await.0,
        status::SUCCESS
    );

    unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new associations...
    assert!(
        Scu::connect(addr).await.is_err(),
        "listener closed after SIGTERM"
    );
    // ...but the open one finishes its work.
    let next = ids.next_instance();
    let data = encode_explicit_le(&mr_dataset(&next, 2, 16, 16));
    assert_eq!(
        scu.store(uids::MR_IMAGE_STORAGE, &next.sop, &data).await.0,
        status::SUCCESS
    );
    scu.release().await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(st) = node.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "node did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "clean exit: {exit:?}");

    let node = env.start().await;
    assert_eq!(common::health(node.http_addr).await["instances"], 2);
    // Both stores are in the audit trail: the events still queued when the last
    // association ended were committed before the process exited.
    let stores = glia::db::audit::list(
        node.state.repo.connection(),
        &glia::db::audit::AuditFilter {
            action: Some("store".into()),
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(stores.len(), 2, "{stores:?}");
    assert!(stores.iter().all(|r| r.outcome == "success"), "{stores:?}");
    node.stop().await;
}
