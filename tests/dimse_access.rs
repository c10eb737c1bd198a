//! DIMSE access control with real peers (dcmtk echoscu/storescu/findscu, pynetdicom):
//! with `require_known_peers` on, an unknown AE is rejected; a peer allowed
//! `["echo", "store"]` stores (its studies get its centre) but its C-FIND is refused;
//! a peer with `host_check` and a wrong host is rejected; a request for a service
//! the peer may not use on an accepted context is answered 0x0124. Every access leaves
//! one audit row with the AE title and IP. `"auto"` follows the node mode.

mod common;

use std::path::Path;

use common::gen::{write_series, Ids};
use common::{audit_rows, dcmtk, require, run_tool, which, Backend, TestEnv};
use glia::config::{Config, KnownPeers, NodeMode, PeerConfig};
use glia::dimse::access::AccessPolicy;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

const CENTRE: i64 = 5;

fn peers() -> Vec<PeerConfig> {
    vec![
        PeerConfig {
            ae_title: "STORER".into(),
            services: vec!["echo".into(), "store".into()],
            centre_id: Some(CENTRE),
            host_check: true,
            ..Default::default()
        },
        PeerConfig {
            ae_title: "HOSTED".into(),
            host: "10.255.0.9".into(),
            host_check: true,
            ..Default::default()
        },
        PeerConfig {
            ae_title: "GETTER".into(),
            services: vec!["get".into()],
            ..Default::default()
        },
        PeerConfig {
            ae_title: "VIEWER".into(),
            services: vec!["find".into(), "get".into()],
            ..Default::default()
        },
    ]
}

async fn env() -> TestEnv {
    env_on(Backend::Sqlite).await.unwrap()
}

async fn env_on(backend: Backend) -> Option<TestEnv> {
    let mut env = TestEnv::new(backend).await?;
    env.config.dimse.require_known_peers = KnownPeers::On;
    env.config.dimse.peers = peers();
    Some(env)
}

/// Send every file of `dir` with dcmtk storescu as `aet`; it must succeed.
async fn store_as(storescu: &Path, aet: &str, port: &str, dir: &Path) {
    let args = [
        "-aet",
        aet,
        "-aec",
        "GLIA",
        "+sd",
        "127.0.0.1",
        port,
        dir.to_str().unwrap(),
    ];
    let (ok, out) = run_tool(storescu, &args).await;
    assert!(ok, "storescu: {out}");
}

fn echo_args<'a>(aet: &'a str, port: &'a str) -> Vec<&'a str> {
    vec!["-aet", aet, "-aec", "GLIA", "127.0.0.1", port]
}

#[test]
fn auto_is_on_in_production_and_off_in_dev() {
    let load = |mode: &str| {
        Config::load(
            Path::new("/nonexistent.toml"),
            &[format!("node.mode=\"{mode}\"")],
        )
        .unwrap()
    };
    let prod = load("production");
    assert_eq!(prod.dimse.require_known_peers, KnownPeers::Auto);
    assert!(AccessPolicy::new(&prod.dimse, prod.node.mode).require_known_peers());
    let dev = load("dev");
    assert!(!AccessPolicy::new(&dev.dimse, dev.node.mode).require_known_peers());
    // Explicit values win over the mode.
    let off = Config::load(
        Path::new("/nonexistent.toml"),
        &[
            "node.mode=\"production\"".into(),
            "dimse.require_known_peers=false".into(),
        ],
    )
    .unwrap();
    assert!(!AccessPolicy::new(&off.dimse, NodeMode::Production).require_known_peers());
    let bad = Config::load(
        Path::new("/nonexistent.toml"),
        &["dimse.require_known_peers=\"maybe\"".into()],
    );
    assert!(bad.is_err(), "only true, false or \"auto\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_wrong_host_peers_are_rejected_and_audited() {
    let Some(echoscu) = dcmtk("echoscu") else {
        require("dcmtk echoscu", false);
        return;
    };
    let env = env().await;
    let node = env.start().await;
    let port = node.dimse_addr.port().to_string();

    let (ok, out) = run_tool(&echoscu, &echo_args("STRANGER", &port)).await;
    assert!(!ok, "unknown AE must be rejected: {out}");
    assert!(
        out.contains("Rejected") || out.contains("rejected"),
        "{out}"
    );

    let (ok, out) = run_tool(&echoscu, &echo_args("HOSTED", &port)).await;
    assert!(!ok, "peer from the wrong host must be rejected: {out}");

    // A listed peer from its host is accepted.
    let (ok, out) = run_tool(&echoscu, &echo_args("STORER", &port)).await;
    assert!(ok, "STORER echo: {out}");

    let rows = audit_rows(&node.state, "STRANGER").await;
    assert_eq!(rows.len(), 1, "one row per rejection: {rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r.surface.as_str(), r.action.as_str(), r.outcome.as_str()),
        ("dimse", "associate", "denied")
    );
    assert_eq!(r.actor_kind, "ae");
    assert_eq!(r.remote_ip.as_deref(), Some("127.0.0.1"));
    assert!(r.detail.as_deref().unwrap_or("").contains("not listed"));

    let rows = audit_rows(&node.state, "HOSTED").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].outcome, "denied");
    assert!(rows[0].detail.as_deref().unwrap_or("").contains("host"));
    // C-ECHO touches no patient data: no row for the accepted echo.
    assert!(audit_rows(&node.state, "STORER").await.is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_allowed_find_refused_centre_assigned_sqlite() {
    store_allowed_find_refused_centre_assigned(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_allowed_find_refused_centre_assigned_pg_s3() {
    store_allowed_find_refused_centre_assigned(Backend::PgS3).await;
}

async fn store_allowed_find_refused_centre_assigned(backend: Backend) {
    let (Some(storescu), Some(findscu)) = (dcmtk("storescu"), dcmtk("findscu")) else {
        require("dcmtk storescu and findscu", false);
        return;
    };
    let Some(env) = env_on(backend).await else {
        return;
    };
    let node = env.start().await;
    let port = node.dimse_addr.port().to_string();
    let dir = env.dir.path().join("series");
    let sent = write_series(&dir, &Ids::new("ACCESS1"), 3, 16, 16);

    store_as(&storescu, "STORER", &port, &dir).await;

    let (ok, out) = run_tool(
        &findscu,
        &[
            "-v",
            "-S",
            "-aet",
            "STORER",
            "-aec",
            "GLIA",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "StudyInstanceUID",
            "127.0.0.1",
            &port,
        ],
    )
    .await;
    assert!(!ok, "C-FIND must be refused for a store-only peer: {out}");
    assert!(
        out.to_lowercase().contains("presentation context"),
        "refusal names the presentation context: {out}"
    );

    // The study belongs to the peer's centre.
    use glia::db::entities::study;
    let row = study::Entity::find()
        .filter(study::Column::StudyInstanceUid.eq(sent[0].study.as_str()))
        .one(node.state.repo.connection())
        .await
        .unwrap()
        .expect("study indexed");
    assert_eq!(row.centre_id, Some(CENTRE));
    assert_eq!(row.num_instances, 3);

    // One audit row per stored instance and one for the refused find.
    let rows = audit_rows(&node.state, "STORER").await;
    let stores: Vec<_> = rows.iter().filter(|r| r.action == "store").collect();
    assert_eq!(stores.len(), 3, "{rows:?}");
    for (r, ids) in stores.iter().zip(&sent) {
        assert_eq!(r.outcome, "success");
        assert_eq!(r.status, Some(0));
        assert_eq!(r.study_uid.as_deref(), Some(ids.study.as_str()));
        assert_eq!(r.series_uid.as_deref(), Some(ids.series.as_str()));
        assert!(sent
            .iter()
            .any(|i| Some(i.sop.as_str()) == r.sop_uid.as_deref()));
        assert_eq!(r.remote_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(r.centre_id, Some(CENTRE));
    }
    let finds: Vec<_> = rows.iter().filter(|r| r.action == "find").collect();
    assert_eq!(finds.len(), 1, "{rows:?}");
    assert_eq!(finds[0].outcome, "denied");
    assert_eq!(rows.len(), 4, "nothing else: {rows:?}");
    // No patient name in any detail.
    assert!(rows
        .iter()
        .all(|r| !r.detail.as_deref().unwrap_or("").contains("ACCESS1")));
    node.stop().await;
}

/// pynetdicom: a peer allowed only `get` has its storage context accepted (it takes the
/// SCP role, for C-GET results) but a C-STORE it sends on it is refused with 0x0124.
const STORE_AS_GETTER: &str = r#"
import sys
from pydicom import dcmread
from pynetdicom import AE, build_role
from pynetdicom.sop_class import MRImageStorage, StudyRootQueryRetrieveInformationModelGet
ae = AE(ae_title="GETTER")
ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
ae.add_requested_context(MRImageStorage)
role = build_role(MRImageStorage, scu_role=True, scp_role=True)
assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title="GLIA", ext_neg=[role])
if not assoc.is_established:
    print("NOT ESTABLISHED")
    sys.exit(2)
st = assoc.send_c_store(dcmread(sys.argv[2]))
print("STATUS=0x%04X" % st.Status)
print("COMMENT=%s" % st.get("ErrorComment", ""))
assoc.release()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_a_get_only_association_is_not_authorized() {
    let python = which("python3");
    let have = match &python {
        Some(p) => std::process::Command::new(p)
            .args(["-c", "import pynetdicom"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false),
        None => false,
    };
    if !require("python3 with pynetdicom", have) {
        return;
    }
    let env = env().await;
    let node = env.start().await;
    let dir = env.dir.path().join("one");
    let sent = write_series(&dir, &Ids::new("ACCESS2"), 1, 8, 8);
    let file = dir.join(format!("{}.dcm", sent[0].sop));
    let port = node.dimse_addr.port().to_string();
    let (ok, out) = run_tool(
        python.as_ref().unwrap(),
        &["-c", STORE_AS_GETTER, &port, file.to_str().unwrap()],
    )
    .await;
    assert!(ok, "pynetdicom: {out}");
    assert!(out.contains("STATUS=0x0124"), "{out}");
    assert!(out.contains("not authorized"), "{out}");
    assert_eq!(node.state.repo.counts().await.unwrap().instances, 0);
    let rows = audit_rows(&node.state, "GETTER").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].action.as_str(), rows[0].outcome.as_str()),
        ("store", "denied")
    );
    assert_eq!(rows[0].status, Some(0x0124));
    assert_eq!(rows[0].sop_uid.as_deref(), Some(sent[0].sop.as_str()));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_and_get_are_audited_once_per_request() {
    let (Some(storescu), Some(findscu), Some(getscu)) =
        (dcmtk("storescu"), dcmtk("findscu"), dcmtk("getscu"))
    else {
        require("dcmtk storescu, findscu and getscu", false);
        return;
    };
    let env = env().await;
    let node = env.start().await;
    let port = node.dimse_addr.port().to_string();
    let dir = env.dir.path().join("series");
    let sent = write_series(&dir, &Ids::new("ACCESS3"), 2, 8, 8);
    store_as(&storescu, "STORER", &port, &dir).await;
    let study = format!("StudyInstanceUID={}", sent[0].study);
    let (ok, out) = run_tool(
        &findscu,
        &[
            "-S",
            "-aet",
            "VIEWER",
            "-aec",
            "GLIA",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "PatientName",
            "-k",
            "StudyInstanceUID",
            "127.0.0.1",
            &port,
        ],
    )
    .await;
    assert!(ok, "findscu: {out}");
    let od = env.dir.path().join("got");
    std::fs::create_dir_all(&od).unwrap();
    let (ok, out) = run_tool(
        &getscu,
        &[
            "-S",
            "-aet",
            "VIEWER",
            "-aec",
            "GLIA",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &study,
            "-od",
            od.to_str().unwrap(),
            "127.0.0.1",
            &port,
        ],
    )
    .await;
    assert!(ok, "getscu: {out}");
    assert_eq!(std::fs::read_dir(&od).unwrap().count(), 2, "both retrieved");

    let rows = audit_rows(&node.state, "VIEWER").await;
    assert_eq!(rows.len(), 2, "one find, one get: {rows:?}");
    let find = &rows[0];
    assert_eq!(
        (find.action.as_str(), find.outcome.as_str()),
        ("find", "success")
    );
    let detail = find.detail.as_deref().unwrap_or("");
    assert!(
        detail.contains("level=STUDY") && detail.contains("matches=1"),
        "{detail}"
    );
    assert!(!detail.contains("ACCESS3"), "no patient data in the detail");
    let get = &rows[1];
    assert_eq!(
        (get.action.as_str(), get.outcome.as_str()),
        ("get", "success")
    );
    assert_eq!(get.study_uid.as_deref(), Some(sent[0].study.as_str()));
    assert!(
        get.detail.as_deref().unwrap_or("").contains("completed=2"),
        "{get:?}"
    );
    assert_eq!(get.remote_ip.as_deref(), Some("127.0.0.1"));
    node.stop().await;
}
