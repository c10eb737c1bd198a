//! Sequence matching (PS3.4 C.2.2.2.6, one level of items) on the one query model:
//! C-FIND over a dicom-ul SCU and QIDO-RS over HTTP give the same matches, on both
//! backends. All matching item keys must hold in the same item.

mod common;

use common::gen::{encode_explicit_le, mr_dataset_with, Ids};
use common::scu::Scu;
use common::TestEnv;
use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use glia::dimse::sop::STUDY_ROOT_FIND;

fn item(keys: &[(Tag, VR, &str)]) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    for (t, vr, v) in keys {
        if v.is_empty() {
            o.put(DataElement::empty(*t, *vr));
        } else {
            o.put(DataElement::new(*t, *vr, PrimitiveValue::from(*v)));
        }
    }
    o
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    item(&[
        (tags::CODE_VALUE, VR::SH, value),
        (tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        (tags::CODE_MEANING, VR::LO, meaning),
    ])
}

fn find_id(level: &str, keys: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
    let mut o = item(&[(tags::QUERY_RETRIEVE_LEVEL, VR::CS, level)]);
    for k in keys {
        o.put(k);
    }
    o
}

async fn get(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let body = common::http_get(addr, path).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

async fn sequences(env: TestEnv) {
    let node = env.start().await;
    let mut scu = Scu::connect_with(
        node.dimse_addr,
        "GLIA",
        &[uids::MR_IMAGE_STORAGE, STUDY_ROOT_FIND],
    )
    .await
    .unwrap();
    // Study A: brain MR with two procedure codes; study B: knee; study C: none.
    let a = Ids::new("SEQ-A");
    let b = Ids::new("SEQ-B");
    let c = Ids::new("SEQ-C");
    let mut ds_a = mr_dataset_with(&a, 1, &[]);
    ds_a.put(seq(
        tags::PROCEDURE_CODE_SEQUENCE,
        vec![
            code("RPID4", "RADLEX", "MRI BRAIN WITH CONTRAST"),
            code("30657-1", "LN", "MR Head"),
        ],
    ));
    ds_a.put(seq(
        tags::REQUEST_ATTRIBUTES_SEQUENCE,
        vec![item(&[
            (tags::REQUESTED_PROCEDURE_ID, VR::SH, "RP-100"),
            (tags::SCHEDULED_PROCEDURE_STEP_ID, VR::SH, "SPS-1"),
        ])],
    ));
    let mut ds_b = mr_dataset_with(&b, 1, &[]);
    ds_b.put(seq(
        tags::PROCEDURE_CODE_SEQUENCE,
        vec![code("RPID77", "RADLEX", "MRI KNEE")],
    ));
    let ds_c = mr_dataset_with(&c, 1, &[]);
    for (ids, ds) in [(&a, &ds_a), (&b, &ds_b), (&c, &ds_c)] {
        let (st, cm) = scu
            .store(uids::MR_IMAGE_STORAGE, &ids.sop, &encode_explicit_le(ds))
            .await;
        assert_eq!(st, 0, "{cm:?}");
    }

    let study_uid = |m: &InMemDicomObject| {
        m.element(tags::STUDY_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    // Single value on an item key.
    let r = scu
        .find(
            STUDY_ROOT_FIND,
            &find_id(
                "STUDY",
                vec![
                    DataElement::empty(tags::STUDY_INSTANCE_UID, VR::UI),
                    seq(
                        tags::PROCEDURE_CODE_SEQUENCE,
                        vec![item(&[
                            (tags::CODE_VALUE, VR::SH, "RPID4"),
                            (tags::CODE_MEANING, VR::LO, ""),
                        ])],
                    ),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 0);
    assert_eq!(r.matches.len(), 1);
    assert_eq!(study_uid(&r.matches[0]), a.study);
    // The response carries the sequence with the requested item keys.
    let Value::Sequence(s) = r.matches[0]
        .element(tags::PROCEDURE_CODE_SEQUENCE)
        .unwrap()
        .value()
    else {
        panic!("not a sequence")
    };
    let meanings: Vec<String> = s
        .items()
        .iter()
        .map(|i| {
            i.element(tags::CODE_MEANING)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(meanings, ["MRI BRAIN WITH CONTRAST", "MR Head"]);

    // Wildcard on an item key: both MRI studies.
    let r = scu
        .find(
            STUDY_ROOT_FIND,
            &find_id(
                "STUDY",
                vec![
                    DataElement::empty(tags::STUDY_INSTANCE_UID, VR::UI),
                    seq(
                        tags::PROCEDURE_CODE_SEQUENCE,
                        vec![item(&[(tags::CODE_MEANING, VR::LO, "MRI*")])],
                    ),
                ],
            ),
        )
        .await;
    let mut got: Vec<String> = r.matches.iter().map(study_uid).collect();
    got.sort();
    let mut want = vec![a.study.clone(), b.study.clone()];
    want.sort();
    assert_eq!(got, want);

    // Two item keys that hold only in different items: no match.
    let r = scu
        .find(
            STUDY_ROOT_FIND,
            &find_id(
                "STUDY",
                vec![
                    DataElement::empty(tags::STUDY_INSTANCE_UID, VR::UI),
                    seq(
                        tags::PROCEDURE_CODE_SEQUENCE,
                        vec![item(&[
                            (tags::CODE_VALUE, VR::SH, "RPID4"),
                            (tags::CODING_SCHEME_DESIGNATOR, VR::SH, "LN"),
                        ])],
                    ),
                ],
            ),
        )
        .await;
    assert_eq!(r.matches.len(), 0, "item keys must match within one item");

    // Series level: RequestAttributesSequence (relational would not be needed: the
    // study's unique key is given).
    let r = scu
        .find(
            STUDY_ROOT_FIND,
            &find_id(
                "SERIES",
                vec![
                    DataElement::new(
                        tags::STUDY_INSTANCE_UID,
                        VR::UI,
                        PrimitiveValue::from(a.study.as_str()),
                    ),
                    DataElement::empty(tags::SERIES_INSTANCE_UID, VR::UI),
                    seq(
                        tags::REQUEST_ATTRIBUTES_SEQUENCE,
                        vec![item(&[(tags::REQUESTED_PROCEDURE_ID, VR::SH, "RP-100")])],
                    ),
                ],
            ),
        )
        .await;
    assert_eq!(r.matches.len(), 1);
    let r = scu
        .find(
            STUDY_ROOT_FIND,
            &find_id(
                "SERIES",
                vec![
                    DataElement::new(
                        tags::STUDY_INSTANCE_UID,
                        VR::UI,
                        PrimitiveValue::from(a.study.as_str()),
                    ),
                    seq(
                        tags::REQUEST_ATTRIBUTES_SEQUENCE,
                        vec![item(&[(tags::REQUESTED_PROCEDURE_ID, VR::SH, "RP-999")])],
                    ),
                ],
            ),
        )
        .await;
    assert_eq!(r.matches.len(), 0);
    scu.release().await;

    // QIDO-RS: the same matching through the same query model.
    let http = node.http_addr;
    let v = get(
        http,
        "/dicom-web/studies?ProcedureCodeSequence.CodeValue=RPID4",
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["0020000D"]["Value"][0], a.study.as_str());
    assert_eq!(v[0]["00081032"]["vr"], "SQ");
    assert_eq!(
        v[0]["00081032"]["Value"][1]["00080100"]["Value"][0],
        "30657-1"
    );
    let v = get(http, "/dicom-web/studies?00081032.00080104=MRI*").await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let v = get(
        http,
        "/dicom-web/studies?PatientID=SEQ-C&includefield=ProcedureCodeSequence",
    )
    .await;
    assert_eq!(
        v[0]["00081032"],
        serde_json::json!({"vr": "SQ"}),
        "no items"
    );
    let v = get(
        http,
        &format!(
            "/dicom-web/studies/{}/series?RequestAttributesSequence.RequestedProcedureID=RP-100",
            a.study
        ),
    )
    .await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(
        v[0]["00400275"]["Value"][0]["00401001"]["Value"][0],
        "RP-100"
    );
    node.stop().await;
}
both_backends!(sequences, sequences);
