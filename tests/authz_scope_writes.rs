//! The edges of the study scopes that the role matrix does not cover: a restricted
//! user may create studies but not add instances to an existing study it cannot see
//! (another centre's), and the patient-level counts it can request count only the
//! studies it sees. Both backends (the counts are computed in SQL).

mod common;

use common::gen::Ids;
use common::world::{call, stow_instance, world};
use common::{Backend, TestEnv};

/// FailureReason (0008,1197): Refused, not authorized.
const NOT_AUTHORIZED: u64 = 0x0124;

fn instances_of(body: &serde_json::Value) -> Vec<String> {
    body.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["00080018"]["Value"][0].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn foreign_study_refused(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let node = env.start().await;
    let w = world(&node).await;
    let (b_study, b_series, _) = w.b.clone();
    let b_instances = format!("/dicom-web/studies/{b_study}/instances");
    let before = instances_of(
        &call(w.addr, "GET", &b_instances, w.token("admin"))
            .await
            .json(),
    );
    assert_eq!(before.len(), 1);

    // Technician A adds a series to centre B's study: refused, nothing stored.
    let mut ids = Ids::new("PAT-B");
    ids.study = b_study.clone();
    let r = stow_instance(w.addr, w.token("tech-a"), &ids, "Other^Doctor").await;
    assert_eq!(r.status, 409, "all parts failed: {}", r.text());
    let body = r.json();
    let failed = &body["00081198"]["Value"];
    assert_eq!(failed.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(
        failed[0]["00081197"]["Value"][0].as_u64(),
        Some(NOT_AUTHORIZED)
    );
    assert_eq!(
        failed[0]["00081155"]["Value"][0].as_str(),
        Some(ids.sop.as_str()),
        "the failed instance is named"
    );
    // The same into B's existing series.
    let mut same_series = ids.next_instance();
    same_series.series = b_series.clone();
    let r = stow_instance(w.addr, w.token("tech-a"), &same_series, "Other^Doctor").await;
    assert_eq!(r.status, 409, "{}", r.text());
    let after = instances_of(
        &call(w.addr, "GET", &b_instances, w.token("admin"))
            .await
            .json(),
    );
    assert_eq!(after, before, "B's study is unchanged");
    env.assert_spool_empty(&node).await;

    // Technician B may add to its own centre's study; technician A to its own.
    let mut own = Ids::new("PAT-B");
    own.study = b_study.clone();
    let r = stow_instance(w.addr, w.token("tech-b"), &own, "Other^Doctor").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut own_a = Ids::new("PAT-A");
    own_a.study = w.a.0.clone();
    let r = stow_instance(w.addr, w.token("tech-a"), &own_a, "DOE^JOHN").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = instances_of(
        &call(w.addr, "GET", &b_instances, w.token("admin"))
            .await
            .json(),
    );
    assert_eq!(after.len(), 2);
    assert!(after.contains(&own.sop));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stow_into_another_centres_study_is_refused_sqlite() {
    foreign_study_refused(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stow_into_another_centres_study_is_refused_postgres() {
    foreign_study_refused(Backend::PgS3).await;
}

async fn patient_counts_are_scoped(backend: Backend) {
    let Some(env) = TestEnv::new(backend).await else {
        return;
    };
    let node = env.start().await;
    let w = world(&node).await;
    // One patient with a study in each centre (and a second series in B's).
    let shared = Ids::new("PAT-SHARED");
    assert_eq!(
        stow_instance(w.addr, w.token("tech-a"), &shared, "Doe^John")
            .await
            .status,
        200
    );
    let in_b = Ids::new("PAT-SHARED");
    assert_eq!(
        stow_instance(w.addr, w.token("tech-b"), &in_b, "Other^Doctor")
            .await
            .status,
        200
    );
    let mut in_b2 = in_b.next_series();
    in_b2.study = in_b.study.clone();
    assert_eq!(
        stow_instance(w.addr, w.token("tech-b"), &in_b2, "Other^Doctor")
            .await
            .status,
        200
    );
    let path = format!(
        "/dicom-web/studies?PatientID={}&includefield=NumberOfPatientRelatedStudies\
         &includefield=NumberOfPatientRelatedSeries&includefield=NumberOfPatientRelatedInstances",
        shared.patient_id
    );
    let counts = |body: &serde_json::Value| -> Vec<(u64, u64, u64)> {
        let mut v: Vec<_> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let n = |tag: &str| s[tag]["Value"][0].as_u64().unwrap_or(u64::MAX);
                (n("00201200"), n("00201202"), n("00201204"))
            })
            .collect();
        v.sort();
        v
    };
    let admin = call(w.addr, "GET", &path, w.token("admin")).await;
    assert_eq!(admin.status, 200, "{}", admin.text());
    assert_eq!(
        counts(&admin.json()),
        vec![(2, 3, 3), (2, 3, 3)],
        "admin: all"
    );
    let a = call(w.addr, "GET", &path, w.token("tech-a")).await;
    assert_eq!(counts(&a.json()), vec![(1, 1, 1)], "tech A: its study only");
    let b = call(w.addr, "GET", &path, w.token("tech-b")).await;
    assert_eq!(counts(&b.json()), vec![(1, 2, 2)], "tech B: its study only");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_level_counts_count_visible_studies_only_sqlite() {
    patient_counts_are_scoped(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_level_counts_count_visible_studies_only_postgres() {
    patient_counts_are_scoped(Backend::PgS3).await;
}
