//! Orthanc as a real peer (SQLite + local directory): Orthanc queries Glia through its
//! REST API (`POST /modalities/GLIA/query`, Patient, Study and Series levels; exact
//! answers) and retrieves a study from it (`/queries/{id}/retrieve`: a C-MOVE to
//! Orthanc itself), then Glia moves another study to Orthanc on dcmtk `movescu`'s
//! request. Every instance arriving at Orthanc is compared element by element (pixel
//! data byte for byte) with what Glia stored and with what was sent to Glia.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::gen::{as_file, encode_explicit_le, mr_dataset, Ids};
use common::scu::Scu;
use common::{assert_same_dataset, dcmtk, free_port, require, wait_for_port, TestEnv};
use dicom_dictionary_std::{tags, uids};
use dicom_object::OpenFileOptions;
use glia::store::BlobKey;
use serde_json::{json, Value};

fn orthanc_binary() -> Option<PathBuf> {
    common::which("Orthanc").or_else(|| {
        ["/usr/sbin/Orthanc", "/usr/bin/Orthanc"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    })
}

/// An Orthanc process on free loopback ports with its storage in a temp dir.
struct Orthanc {
    child: Child,
    http: u16,
    dicom: u16,
    dir: tempfile::TempDir,
}

impl Orthanc {
    /// Start Orthanc as AE `ORTHANC`, knowing Glia as modality `GLIA` on `glia_port`.
    fn start(bin: &Path, dicom: u16, glia_port: u16) -> Orthanc {
        let dir = tempfile::tempdir().unwrap();
        let http = free_port();
        let config = json!({
            "Name": "glia-peer-test",
            "DicomAet": "ORTHANC",
            "DicomPort": dicom,
            "HttpPort": http,
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomAlwaysAllowFind": true,
            "DicomAlwaysAllowMove": true,
            "DicomAlwaysAllowStore": true,
            "DicomCheckCalledAet": false,
            "StorageCompression": false,
            "Plugins": [],
            "DicomModalities": { "GLIA": ["GLIA", "127.0.0.1", glia_port] },
        });
        let cfg = dir.path().join("orthanc.json");
        std::fs::write(&cfg, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg(&cfg)
            .env("TCP_NODELAY", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn Orthanc");
        let o = Orthanc {
            child,
            http,
            dicom,
            dir,
        };
        wait_for_port(http, Duration::from_secs(60));
        wait_for_port(dicom, Duration::from_secs(30));
        o
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orthanc.log")).unwrap_or_default()
    }

    /// One HTTP/1.0 exchange with Orthanc's REST API (blocking, on a blocking thread).
    async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Vec<u8>) {
        let port = self.http;
        let (method, path) = (method.to_string(), path.to_string());
        tokio::task::spawn_blocking(move || {
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
            write!(
                s,
                "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).unwrap();
            let split = out
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("HTTP response head");
            let head = String::from_utf8_lossy(&out[..split]).to_string();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("HTTP status");
            (status, out[split + 4..].to_vec())
        })
        .await
        .unwrap()
    }

    async fn json(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, bytes) = self.http(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "Orthanc {method} {path}: HTTP {status}: {}\n--- Orthanc log ---\n{}",
            String::from_utf8_lossy(&bytes),
            self.log()
        );
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "Orthanc {method} {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    /// `POST /modalities/GLIA/query`; returns the query id and the answers (simplified).
    async fn query_glia(&self, level: &str, query: Value) -> (String, Vec<Value>) {
        let r = self
            .json(
                "POST",
                "/modalities/GLIA/query",
                Some(json!({ "Level": level, "Query": query })),
            )
            .await;
        let id = r["ID"].as_str().expect("query ID").to_string();
        let answers = self
            .json("GET", &format!("/queries/{id}/answers"), None)
            .await;
        let mut out = Vec::new();
        for a in answers.as_array().unwrap() {
            let a = a.as_str().unwrap();
            out.push(
                self.json(
                    "GET",
                    &format!("/queries/{id}/answers/{a}/content?simplify"),
                    None,
                )
                .await,
            );
        }
        (id, out)
    }

    /// Every instance Orthanc holds: SOP Instance UID → Part 10 bytes.
    async fn instances(&self) -> BTreeMap<String, Vec<u8>> {
        let ids = self.json("GET", "/instances", None).await;
        let mut out = BTreeMap::new();
        for id in ids.as_array().unwrap() {
            let id = id.as_str().unwrap();
            let (status, file) = self
                .http("GET", &format!("/instances/{id}/file"), None)
                .await;
            assert_eq!(status, 200, "GET /instances/{id}/file");
            let obj = OpenFileOptions::new().from_reader(&file[128..]).unwrap();
            let sop = obj
                .element(tags::SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0')
                .to_string();
            out.insert(sop, file);
        }
        out
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn field(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

fn column(answers: &[Value], key: &str) -> BTreeSet<String> {
    answers.iter().map(|a| field(a, key)).collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Store `series` (ids, instance count) through Glia's C-STORE SCP; every data set sent
/// is written to `sent` as `<SOP>.dcm`. Returns the SOP Instance UIDs.
async fn load(
    node: &glia::app::RunningNode,
    sent: &Path,
    series: &[(&Ids, usize)],
) -> BTreeSet<String> {
    std::fs::create_dir_all(sent).unwrap();
    let mut scu = Scu::connect_with(node.dimse_addr, "GLIA", &[uids::MR_IMAGE_STORAGE])
        .await
        .unwrap();
    let mut sops = BTreeSet::new();
    for (ids, n) in series {
        let mut cur = (*ids).clone();
        for i in 0..*n {
            let ds = mr_dataset(&cur, i as i32 + 1, 64, 64);
            let (st, c) = scu
                .store(uids::MR_IMAGE_STORAGE, &cur.sop, &encode_explicit_le(&ds))
                .await;
            assert_eq!(st, 0, "{c:?}");
            as_file(ds)
                .write_to_file(sent.join(format!("{}.dcm", cur.sop)))
                .unwrap();
            sops.insert(cur.sop.clone());
            cur = cur.next_instance();
        }
    }
    scu.release().await;
    sops
}

/// Each file Orthanc holds equals Glia's stored object and the data set sent to Glia.
async fn check_same(node: &glia::app::RunningNode, sent: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (sop, file) in files {
        let at_orthanc = OpenFileOptions::new().from_reader(&file[128..]).unwrap();
        let row = node
            .state
            .repo
            .find_instance(sop)
            .await
            .unwrap()
            .expect("known instance");
        let blob = node.state.store.get(&BlobKey(row.blob_key)).await.unwrap();
        let stored = OpenFileOptions::new().from_reader(&blob[128..]).unwrap();
        assert_same_dataset(&stored, &at_orthanc, &format!("{sop} (Glia → Orthanc)"));
        let original = OpenFileOptions::new()
            .open_file(sent.join(format!("{sop}.dcm")))
            .unwrap();
        assert_same_dataset(&original, &at_orthanc, &format!("{sop} (sent → Orthanc)"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orthanc_queries_and_retrieves() {
    let bin = orthanc_binary();
    if !require("Orthanc (Debian package orthanc)", bin.is_some()) {
        return;
    }
    let movescu = dcmtk("movescu");
    if !require("dcmtk movescu", movescu.is_some()) {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter("glia=debug,info")
        .with_test_writer()
        .try_init();
    let Some(mut env) = TestEnv::new(common::Backend::Sqlite).await else {
        return;
    };
    let orthanc_dicom = free_port();
    env.config.dimse.peers = vec![glia::config::PeerConfig {
        ae_title: "ORTHANC".into(),
        host: "127.0.0.1".into(),
        port: orthanc_dicom,
        services: vec!["echo".into(), "store".into(), "find".into(), "move".into()],
        ..Default::default()
    }];
    let node = env.start().await;
    let glia_port = node.dimse_addr.port();
    let sent = env.dir.path().join("sent");
    // Study A: patient ORTH1, two series of 3; study B: patient ORTH2, one series of 2.
    let a = Ids::new("ORTH1");
    let a2 = a.next_series();
    let b = Ids::new("ORTH2");
    let sops_a = load(&node, &sent, &[(&a, 3), (&a2, 3)]).await;
    let sops_b = load(&node, &sent, &[(&b, 2)]).await;
    let orthanc = Orthanc::start(bin.as_deref().unwrap(), orthanc_dicom, glia_port);

    // Orthanc's C-ECHO to Glia.
    let (st, body) = orthanc
        .http("POST", "/modalities/GLIA/echo", Some(json!({})))
        .await;
    assert_eq!(st, 200, "echo: {}", String::from_utf8_lossy(&body));

    // (a) Orthanc queries Glia: Patient, Study and Series levels, exact answers.
    let (_, r) = orthanc
        .query_glia(
            "Patient",
            json!({ "PatientID": "ORTH*", "PatientName": "", "NumberOfPatientRelatedStudies": "" }),
        )
        .await;
    assert_eq!(column(&r, "PatientID"), set(&["ORTH1", "ORTH2"]), "{r:?}");
    assert_eq!(
        column(&r, "PatientName"),
        set(&["TEST^ORTH1", "TEST^ORTH2"])
    );
    let (_, r) = orthanc
        .query_glia(
            "Study",
            json!({
                "PatientID": "ORTH*",
                "StudyInstanceUID": "",
                "StudyDate": "20261101-20261130",
                "NumberOfStudyRelatedInstances": "",
                "ModalitiesInStudy": "",
            }),
        )
        .await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(
        column(&r, "StudyInstanceUID"),
        set(&[&a.study, &b.study]),
        "{r:?}"
    );
    let counts: BTreeMap<String, String> = r
        .iter()
        .map(|x| {
            (
                field(x, "StudyInstanceUID"),
                field(x, "NumberOfStudyRelatedInstances"),
            )
        })
        .collect();
    assert_eq!(counts[&a.study], "6");
    assert_eq!(counts[&b.study], "2");
    assert_eq!(column(&r, "ModalitiesInStudy"), set(&["MR"]));
    let (_, r) = orthanc
        .query_glia(
            "Series",
            json!({ "StudyInstanceUID": a.study, "SeriesInstanceUID": "", "Modality": "" }),
        )
        .await;
    assert_eq!(
        column(&r, "SeriesInstanceUID"),
        set(&[&a.series, &a2.series])
    );
    // Nothing for a non-matching query.
    let (_, r) = orthanc
        .query_glia(
            "Study",
            json!({ "PatientID": "NOBODY", "StudyInstanceUID": "" }),
        )
        .await;
    assert!(r.is_empty(), "{r:?}");

    // ... and retrieves study A: Orthanc sends C-MOVE (destination ORTHANC) to Glia.
    let (qid, r) = orthanc
        .query_glia(
            "Study",
            json!({ "PatientID": "ORTH1", "StudyInstanceUID": "" }),
        )
        .await;
    assert_eq!(column(&r, "StudyInstanceUID"), set(&[&a.study]));
    let (st, body) = orthanc
        .http(
            "POST",
            &format!("/queries/{qid}/retrieve"),
            Some(json!({ "TargetAet": "ORTHANC", "Synchronous": true })),
        )
        .await;
    assert_eq!(
        st,
        200,
        "retrieve: {}\n--- Orthanc log ---\n{}",
        String::from_utf8_lossy(&body),
        orthanc.log()
    );
    let files = orthanc.instances().await;
    assert_eq!(
        files.keys().cloned().collect::<BTreeSet<_>>(),
        sops_a,
        "Orthanc holds exactly study A after its retrieve"
    );
    check_same(&node, &sent, &files).await;

    // (b) Glia moves study B to Orthanc (C-MOVE requested by dcmtk movescu).
    let out = tokio::process::Command::new(movescu.unwrap())
        .env("TCP_NODELAY", "1")
        .args(["-S", "-aet", "MOVESCU", "-aec", "GLIA", "-aem", "ORTHANC"])
        .args(["-k", "QueryRetrieveLevel=STUDY"])
        .arg("-k")
        .arg(format!("StudyInstanceUID={}", b.study))
        .args(["127.0.0.1", &glia_port.to_string()])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "movescu: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let files = orthanc.instances().await;
    let all: BTreeSet<String> = sops_a.union(&sops_b).cloned().collect();
    assert_eq!(files.keys().cloned().collect::<BTreeSet<_>>(), all);
    check_same(&node, &sent, &files).await;
    // Orthanc sees the study as Glia does.
    let studies = orthanc.json("GET", "/studies?expand", None).await;
    let uids: BTreeSet<String> = studies
        .as_array()
        .unwrap()
        .iter()
        .map(|s| field(&s["MainDicomTags"], "StudyInstanceUID"))
        .collect();
    assert_eq!(uids, set(&[&a.study, &b.study]));
    let _ = orthanc.dicom;
    drop(orthanc);
    node.stop().await;
}
