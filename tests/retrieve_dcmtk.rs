//! Query/Retrieve against real dcmtk peers on both backends: findscu (Patient and
//! Study Root, all four levels, exact result sets), movescu to storescp and to itself,
//! getscu, and the failure cases (unknown, unreachable and aborting destinations).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::gen::{write_series, Ids};
use common::{assert_same_dataset, dcmtk, free_port, require, wait_for_port, TestEnv};
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use glia::store::BlobKey;

fn tool(name: &str) -> Option<PathBuf> {
    let t = dcmtk(name);
    require(&format!("dcmtk {name}"), t.is_some()).then(|| t.unwrap())
}

async fn run(tool: &Path, args: &[String]) -> (bool, String) {
    let out = tokio::process::Command::new(tool)
        .args(args)
        .env("TCP_NODELAY", "1")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Two studies of one patient: A (2 series × 3), B (1 series × 2); all stored via storescu.
struct Data {
    a: Ids,
    a2: Ids,
    b: Ids,
    sops_a: BTreeSet<String>,
}

async fn load(env: &TestEnv, node: &glia::app::RunningNode) -> Data {
    let dir = env.dir.path().join("src");
    let a = Ids::new("QR1");
    let a2 = a.next_series();
    let b = Ids {
        study: common::gen::new_uid(),
        ..a.next_series()
    };
    let mut sops_a = BTreeSet::new();
    for (ids, n, sub) in [(&a, 3, "a"), (&a2, 3, "a2"), (&b, 2, "b")] {
        for i in write_series(&dir.join(sub), ids, n, 16, 16) {
            if sub != "b" {
                sops_a.insert(i.sop);
            }
        }
    }
    let storescu = tool("storescu").unwrap();
    let port = node.dimse_addr.port().to_string();
    let (ok, out) = run(
        &storescu,
        &args(&[
            "-aec",
            "GLIA",
            "+sd",
            "+r",
            "127.0.0.1",
            &port,
            &dir.display().to_string(),
        ]),
    )
    .await;
    assert!(ok, "{out}");
    Data { a, a2, b, sops_a }
}

/// findscu with `--extract`: the response identifiers, read back.
async fn findscu(
    env: &TestEnv,
    port: u16,
    model: &str,
    keys: &[&str],
) -> Vec<dicom_object::DefaultDicomObject> {
    let out_dir = env
        .dir
        .path()
        .join(format!("find-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut a = args(&[
        model,
        "-aec",
        "GLIA",
        "-X",
        "-od",
        &out_dir.display().to_string(),
    ]);
    for k in keys {
        a.push("-k".into());
        a.push(k.to_string());
    }
    a.push("127.0.0.1".into());
    a.push(port.to_string());
    let (ok, out) = run(&tool("findscu").unwrap(), &a).await;
    assert!(ok, "findscu: {out}");
    let mut files: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| OpenFileOptions::new().open_file(f).unwrap())
        .collect()
}

fn col(rs: &[dicom_object::DefaultDicomObject], tag: dicom_core::Tag) -> BTreeSet<String> {
    rs.iter()
        .map(|r| {
            r.element(tag)
                .map(|e| {
                    e.to_str()
                        .unwrap()
                        .trim_end_matches(['\0', ' '])
                        .to_string()
                })
                .unwrap_or_default()
        })
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn findscu_all_levels(env: TestEnv) {
    if tool("findscu").is_none() {
        return;
    }
    let node = env.start().await;
    let d = load(&env, &node).await;
    let port = node.dimse_addr.port();
    // Patient Root: PATIENT, STUDY, SERIES, IMAGE.
    let r = findscu(
        &env,
        port,
        "-P",
        &[
            "QueryRetrieveLevel=PATIENT",
            "PatientID=QR1",
            "PatientName",
            "NumberOfPatientRelatedStudies",
        ],
    )
    .await;
    assert_eq!(col(&r, tags::PATIENT_ID), set(&["QR1"]));
    assert_eq!(
        col(&r, tags::NUMBER_OF_PATIENT_RELATED_STUDIES),
        set(&["2"])
    );
    let r = findscu(
        &env,
        port,
        "-P",
        &[
            "QueryRetrieveLevel=STUDY",
            "PatientID=QR1",
            "StudyInstanceUID",
        ],
    )
    .await;
    assert_eq!(
        col(&r, tags::STUDY_INSTANCE_UID),
        set(&[&d.a.study, &d.b.study])
    );
    let r = findscu(
        &env,
        port,
        "-P",
        &[
            "QueryRetrieveLevel=SERIES",
            "PatientID=QR1",
            &format!("StudyInstanceUID={}", d.a.study),
            "SeriesInstanceUID",
            "NumberOfSeriesRelatedInstances",
        ],
    )
    .await;
    assert_eq!(
        col(&r, tags::SERIES_INSTANCE_UID),
        set(&[&d.a.series, &d.a2.series])
    );
    assert_eq!(
        col(&r, tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
        set(&["3"])
    );
    let r = findscu(
        &env,
        port,
        "-P",
        &[
            "QueryRetrieveLevel=IMAGE",
            "PatientID=QR1",
            &format!("StudyInstanceUID={}", d.a.study),
            &format!("SeriesInstanceUID={}", d.a.series),
            "SOPInstanceUID",
        ],
    )
    .await;
    assert_eq!(r.len(), 3);
    // Study Root: STUDY, SERIES, IMAGE.
    let r = findscu(
        &env,
        port,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "PatientName=TEST*",
            "StudyInstanceUID",
            "ModalitiesInStudy",
        ],
    )
    .await;
    assert_eq!(
        col(&r, tags::STUDY_INSTANCE_UID),
        set(&[&d.a.study, &d.b.study])
    );
    let r = findscu(
        &env,
        port,
        "-S",
        &[
            "QueryRetrieveLevel=SERIES",
            &format!("StudyInstanceUID={}", d.b.study),
            "SeriesInstanceUID",
        ],
    )
    .await;
    assert_eq!(col(&r, tags::SERIES_INSTANCE_UID), set(&[&d.b.series]));
    let r = findscu(
        &env,
        port,
        "-S",
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("StudyInstanceUID={}", d.a.study),
            &format!("SeriesInstanceUID={}", d.a2.series),
            "SOPInstanceUID",
            "InstanceNumber",
        ],
    )
    .await;
    assert_eq!(col(&r, tags::INSTANCE_NUMBER), set(&["1", "2", "3"]));
    node.stop().await;
}
both_backends!(findscu_all_levels, findscu_all_levels);

/// Start dcmtk storescp on a free port writing into `dir`; extra flags appended.
/// A child process killed when dropped (also when a test panics).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn storescp(dir: &Path, extra: &[&str]) -> (Killed, u16) {
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let child = Command::new(tool("storescp").unwrap())
        .args(["+xa", "-od"])
        .arg(dir)
        .args(extra)
        .arg(port.to_string())
        .env("TCP_NODELAY", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, std::time::Duration::from_secs(10));
    (Killed(child), port)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// Every received file equals Glia's stored object; returns the SOP Instance UIDs.
async fn check_received(node: &glia::app::RunningNode, dir: &Path) -> BTreeSet<String> {
    let mut sops = BTreeSet::new();
    for f in files_in(dir) {
        let got = OpenFileOptions::new().open_file(&f).unwrap();
        let sop = got
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        let row = node
            .state
            .repo
            .find_instance(&sop)
            .await
            .unwrap()
            .expect("known instance");
        let blob = node.state.store.get(&BlobKey(row.blob_key)).await.unwrap();
        let stored = OpenFileOptions::new().from_reader(&blob[128..]).unwrap();
        assert_same_dataset(&stored, &got, &sop);
        sops.insert(sop);
    }
    sops
}

async fn movescu_and_getscu(mut env: TestEnv) {
    let (Some(movescu), Some(getscu)) = (tool("movescu"), tool("getscu")) else {
        return;
    };
    let recv = env.dir.path().join("storescp");
    let (_scp, scp_port) = storescp(&recv, &[]);
    let self_port = free_port();
    let closed_port = free_port();
    let aborting_dir = env.dir.path().join("aborting");
    let (_aborting, aborting_port) = storescp(&aborting_dir, &["--abort-after"]);
    env.config.dimse.peers = vec![
        glia::config::PeerConfig {
            ae_title: "STORESCP".into(),
            host: "127.0.0.1".into(),
            port: scp_port,
            services: vec!["store".into()],
            ..Default::default()
        },
        glia::config::PeerConfig {
            ae_title: "MOVESCU".into(),
            host: "127.0.0.1".into(),
            port: self_port,
            services: vec!["move".into(), "find".into()],
            ..Default::default()
        },
        glia::config::PeerConfig {
            ae_title: "GONE".into(),
            host: "127.0.0.1".into(),
            port: closed_port,
            services: vec![],
            ..Default::default()
        },
        glia::config::PeerConfig {
            ae_title: "ABORTER".into(),
            host: "127.0.0.1".into(),
            port: aborting_port,
            services: vec![],
            ..Default::default()
        },
    ];
    let node = env.start().await;
    let d = load(&env, &node).await;
    let port = node.dimse_addr.port().to_string();
    let study_a = format!("StudyInstanceUID={}", d.a.study);

    // C-MOVE of study A to storescp: all six instances, byte-identical.
    let (ok, out) = run(
        &movescu,
        &args(&[
            "-S",
            "-aec",
            "GLIA",
            "-aem",
            "STORESCP",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &study_a,
            "127.0.0.1",
            &port,
        ]),
    )
    .await;
    assert!(ok, "movescu: {out}");
    assert_eq!(check_received(&node, &recv).await, d.sops_a);

    // C-MOVE to movescu itself (--port), series level, Patient Root.
    let self_dir = env.dir.path().join("self");
    std::fs::create_dir_all(&self_dir).unwrap();
    let (ok, out) = run(
        &movescu,
        &args(&[
            "-P",
            "-aet",
            "MOVESCU",
            "-aec",
            "GLIA",
            "-aem",
            "MOVESCU",
            "+P",
            &self_port.to_string(),
            "-od",
            &self_dir.display().to_string(),
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            "PatientID=QR1",
            "-k",
            &study_a,
            "-k",
            &format!("SeriesInstanceUID={}", d.a2.series),
            "127.0.0.1",
            &port,
        ]),
    )
    .await;
    assert!(ok, "movescu --port: {out}");
    assert_eq!(check_received(&node, &self_dir).await.len(), 3);

    // C-GET of study B over the same association.
    let get_dir = env.dir.path().join("get");
    std::fs::create_dir_all(&get_dir).unwrap();
    let (ok, out) = run(
        &getscu,
        &args(&[
            "-S",
            "-aec",
            "GLIA",
            "-od",
            &get_dir.display().to_string(),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &format!("StudyInstanceUID={}", d.b.study),
            "127.0.0.1",
            &port,
        ]),
    )
    .await;
    assert!(ok, "getscu: {out}");
    assert_eq!(check_received(&node, &get_dir).await.len(), 2);

    // Unknown destination → A801; unreachable → A702; aborting → failures reported.
    let (_, out) = run(
        &movescu,
        &args(&[
            "-v",
            "-S",
            "-aec",
            "GLIA",
            "-aem",
            "NOBODY",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &study_a,
            "127.0.0.1",
            &port,
        ]),
    )
    .await;
    assert!(out.contains("Refused: MoveDestinationUnknown"), "{out}");
    let (_, out) = run(
        &movescu,
        &args(&[
            "-v",
            "-S",
            "-aec",
            "GLIA",
            "-aem",
            "GONE",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &study_a,
            "127.0.0.1",
            &port,
        ]),
    )
    .await;
    assert!(
        out.contains("Final Move Response (Refused: OutOfResourcesSubOperations)"),
        "{out}"
    );
    let (_, out) = run(
        &movescu,
        &args(&[
            "-v",
            "-S",
            "-aec",
            "GLIA",
            "-aem",
            "ABORTER",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &study_a,
            "127.0.0.1",
            &port,
        ]),
    )
    .await;
    assert!(
        out.contains("Final Move Response (Refused: OutOfResourcesSubOperations)"),
        "{out}"
    );
    // The node keeps serving.
    let r = findscu(
        &env,
        node.dimse_addr.port(),
        "-S",
        &["QueryRetrieveLevel=STUDY", &study_a],
    )
    .await;
    assert_eq!(r.len(), 1);
    node.stop().await;
}
both_backends!(movescu_and_getscu, movescu_and_getscu);
