//! Association-level behaviour: garbage and HTTP on the DICOM port, wrong called AE,
//! unknown calling AE with the allow-list on, the association limit (transient
//! rejection), PDU size cap. The node keeps serving after each.

mod common;

use std::time::Duration;

use common::scu::Scu;
use common::{Backend, TestEnv};
use dicom_dictionary_std::{tags, uids};
use glia::dimse::status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn env() -> TestEnv {
    TestEnv::new(Backend::Sqlite).await.unwrap()
}

/// Send raw bytes and read whatever comes back until the node closes the connection.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    out
}

async fn still_serving(addr: std::net::SocketAddr) {
    let mut scu = Scu::connect(addr)
        .await
        .expect("node still accepts associations");
    assert_eq!(scu.echo().await.u16(tags::STATUS), Some(status::SUCCESS));
    scu.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_http_are_refused_and_node_keeps_serving() {
    let env = env().await;
    let node = env.start().await;
    // HTTP request on the DICOM port: closed (the "length" is absurd), nothing served.
    let out = raw_exchange(node.dimse_addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        !out.starts_with(b"HTTP"),
        "no HTTP answer on the DICOM port"
    );
    // Garbage with a plausible header: an unknown PDU type gets an A-ABORT (type 7).
    let out = raw_exchange(node.dimse_addr, &[0x55, 0, 0, 0, 0, 4, 1, 2, 3, 4]).await;
    assert_eq!(out.first(), Some(&0x07), "A-ABORT for an unknown PDU");
    // P-DATA before any association: aborted.
    let out = raw_exchange(node.dimse_addr, &[0x04, 0, 0, 0, 0, 6, 0, 0, 0, 2, 1, 3]).await;
    assert_eq!(out.first(), Some(&0x07));
    // A PDU claiming 1 GiB: connection dropped without buffering it.
    let out = raw_exchange(node.dimse_addr, &[0x04, 0, 0x40, 0, 0, 0, 0, 0]).await;
    assert!(out.is_empty() || out[0] == 0x07);
    still_serving(node.dimse_addr).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_called_ae_is_rejected() {
    let env = env().await;
    let node = env.start().await;
    let err = Scu::connect_with(node.dimse_addr, "NOTGLIA", &[uids::VERIFICATION])
        .await
        .err()
        .expect("rejected");
    let msg = format!("{err:?}");
    assert!(msg.contains("CalledAETitleNotRecognized"), "{msg}");
    still_serving(node.dimse_addr).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_calling_ae_rejected_when_allow_list_is_on() {
    let mut env = env().await;
    env.config.dimse.require_known_peers = glia::config::KnownPeers::On;
    env.config.dimse.peers = vec![glia::config::PeerConfig {
        ae_title: "OTHER".into(),
        host: "127.0.0.1".into(),
        port: 104,
        services: vec!["echo".into()],
        ..Default::default()
    }];
    let node = env.start().await;
    let err = Scu::connect(node.dimse_addr).await.err().expect("rejected");
    assert!(format!("{err:?}").contains("CallingAETitleNotRecognized"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn association_limit_gives_transient_rejection() {
    let mut env = env().await;
    env.config.dimse.max_associations = 2;
    let node = env.start().await;
    let a = Scu::connect(node.dimse_addr).await.unwrap();
    let b = Scu::connect(node.dimse_addr).await.unwrap();
    let err = Scu::connect(node.dimse_addr)
        .await
        .err()
        .expect("third is rejected");
    let msg = format!("{err:?}");
    assert!(
        msg.contains("Transient") && msg.contains("LocalLimitExceeded"),
        "{msg}"
    );
    a.release().await;
    b.release().await;
    // Slots are freed once associations end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    still_serving(node.dimse_addr).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_abstract_syntax_is_not_accepted() {
    let env = env().await;
    let node = env.start().await;
    // Modality Worklist FIND is not served: its context is refused, the rest accepted.
    let scu = Scu::connect_with(
        node.dimse_addr,
        "GLIA",
        &[uids::VERIFICATION, "1.2.840.10008.5.1.4.31"],
    )
    .await
    .unwrap();
    let pcs = scu.assoc.presentation_contexts();
    let find = pcs
        .iter()
        .find(|p| p.abstract_syntax == "1.2.840.10008.5.1.4.31");
    assert!(find
        .map(|p| p.reason != dicom_ul::pdu::PresentationContextResultReason::Acceptance)
        .unwrap_or(true));
    scu.release().await;
    node.stop().await;
}
