//! C-FIND on the one query model, driven by a dicom-ul SCU, on both backends: every
//! matching type (single, universal, wildcard anywhere, UID list, date/time ranges,
//! combined date-time, case-insensitive names, UTF-8), hierarchical rules, computed
//! return keys, C-CANCEL, limits and bad identifiers. Exact result sets.

mod common;

use std::collections::BTreeSet;

use common::gen::{encode_explicit_le, identifier, mr_dataset_with, Ids};
use common::scu::Scu;
use common::TestEnv;
use dicom_core::header::HasLength;
use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use glia::dimse::sop::{PATIENT_ROOT_FIND, STUDY_ROOT_FIND};

/// Three patients, four studies, six series, twelve instances.
struct Data {
    mueller: Ids,
    muller_utf8: Ids,
    smith: Ids,
    smith_ct: Ids,
}

async fn load(node: &glia::app::RunningNode) -> Data {
    let mut scu = Scu::connect_with(node.dimse_addr, "GLIA", &[uids::MR_IMAGE_STORAGE])
        .await
        .unwrap();
    let mueller = Ids::new("P-MUE");
    let mut muller_utf8 = Ids::new("P-MUL");
    muller_utf8.patient_name = "Müller^Jürgen".into();
    let smith = Ids::new("P-SMI");
    let smith_ct = Ids {
        study: common::gen::new_uid(),
        series: common::gen::new_uid(),
        sop: common::gen::new_uid(),
        ..smith.clone()
    };
    let studies: [(&Ids, &str, &str, &str, &str); 4] = [
        (&mueller, "MUELLER^HANS", "20240105", "083000", "MR"),
        (&muller_utf8, "Müller^Jürgen", "20240210", "141500", "MR"),
        (&smith, "SMITH^JOHN", "20240210", "091500", "MR"),
        (&smith_ct, "SMITH^JOHN", "20230720", "170000", "CT"),
    ];
    for (ids, name, date, time, modality) in studies {
        let mut series = ids.clone();
        series.patient_name = name.into();
        for s in 0..(if modality == "CT" { 1 } else { 2 }) {
            let mut inst = series.clone();
            for n in 1..=2 {
                let ds = mr_dataset_with(
                    &inst,
                    n,
                    &[
                        (tags::PATIENT_NAME, VR::PN, name),
                        (tags::STUDY_DATE, VR::DA, date),
                        (tags::STUDY_TIME, VR::TM, time),
                        (tags::MODALITY, VR::CS, modality),
                        (tags::SERIES_NUMBER, VR::IS, &(s + 1).to_string()),
                        (
                            tags::SERIES_DESCRIPTION,
                            VR::LO,
                            if s == 0 { "T1 AX" } else { "FLAIR AX" },
                        ),
                    ],
                );
                let (st, c) = scu
                    .store(uids::MR_IMAGE_STORAGE, &inst.sop, &encode_explicit_le(&ds))
                    .await;
                assert_eq!(st, 0, "{c:?}");
                inst = inst.next_instance();
            }
            series = series.next_series();
        }
    }
    scu.release().await;
    Data {
        mueller,
        muller_utf8,
        smith,
        smith_ct,
    }
}

fn values(res: &common::scu::FindResult, tag: dicom_core::Tag) -> BTreeSet<String> {
    res.matches
        .iter()
        .map(|m| {
            m.element(tag)
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

async fn study_root(
    scu: &mut Scu,
    keys: &[(dicom_core::Tag, VR, &str)],
) -> common::scu::FindResult {
    scu.find(STUDY_ROOT_FIND, &identifier("STUDY", keys)).await
}

async fn matching_types(env: TestEnv) {
    let node = env.start().await;
    let d = load(&node).await;
    let mut scu = Scu::connect_with(
        node.dimse_addr,
        "GLIA",
        &[STUDY_ROOT_FIND, PATIENT_ROOT_FIND],
    )
    .await
    .unwrap();
    let uid = tags::STUDY_INSTANCE_UID;

    // Universal: every study; computed keys returned.
    let r = study_root(
        &mut scu,
        &[
            (uid, VR::UI, ""),
            (tags::MODALITIES_IN_STUDY, VR::CS, ""),
            (tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
        ],
    )
    .await;
    assert_eq!(r.status, 0);
    assert_eq!(
        values(&r, uid),
        set(&[
            &d.mueller.study,
            &d.muller_utf8.study,
            &d.smith.study,
            &d.smith_ct.study
        ])
    );
    assert_eq!(values(&r, tags::MODALITIES_IN_STUDY), set(&["CT", "MR"]));
    assert_eq!(
        values(&r, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        set(&["2", "4"])
    );
    assert!(r.matches.iter().all(|m| m
        .element(tags::SPECIFIC_CHARACTER_SET)
        .unwrap()
        .to_str()
        .unwrap()
        .trim()
        == "ISO_IR 192"));

    // Single value.
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::PATIENT_ID, VR::LO, "P-SMI")],
    )
    .await;
    assert_eq!(values(&r, uid), set(&[&d.smith.study, &d.smith_ct.study]));

    // Wildcards, case-insensitive person names, anywhere in the value.
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::PATIENT_NAME, VR::PN, "MUE*")],
    )
    .await;
    assert_eq!(values(&r, uid), set(&[&d.mueller.study]));
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::PATIENT_NAME, VR::PN, "mueller*")],
    )
    .await;
    assert_eq!(values(&r, uid), set(&[&d.mueller.study]));
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::PATIENT_NAME, VR::PN, "*JOHN")],
    )
    .await;
    assert_eq!(values(&r, uid), set(&[&d.smith.study, &d.smith_ct.study]));
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::PATIENT_NAME, VR::PN, "M?LLER*")],
    )
    .await;
    assert_eq!(
        values(&r, uid),
        set(&[&d.muller_utf8.study]),
        "? is one character (Ü), MUELLER has two"
    );
    // UTF-8 names round-trip and match.
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::PATIENT_NAME, VR::PN, "müller*")],
    )
    .await;
    assert_eq!(values(&r, uid), set(&[&d.muller_utf8.study]));
    assert_eq!(values(&r, tags::PATIENT_NAME), set(&["Müller^Jürgen"]));
    // Case-sensitive for other VRs.
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::PATIENT_ID, VR::LO, "p-smi")],
    )
    .await;
    assert!(r.matches.is_empty());

    // UID list.
    let list = format!("{}\\{}", d.mueller.study, d.smith_ct.study);
    let r = study_root(&mut scu, &[(uid, VR::UI, &list)]).await;
    assert_eq!(values(&r, uid), set(&[&d.mueller.study, &d.smith_ct.study]));

    // Date ranges: closed, open below, open above.
    let r = study_root(
        &mut scu,
        &[
            (uid, VR::UI, ""),
            (tags::STUDY_DATE, VR::DA, "20240101-20240131"),
        ],
    )
    .await;
    assert_eq!(values(&r, uid), set(&[&d.mueller.study]));
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::STUDY_DATE, VR::DA, "-20231231")],
    )
    .await;
    assert_eq!(values(&r, uid), set(&[&d.smith_ct.study]));
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::STUDY_DATE, VR::DA, "20240201-")],
    )
    .await;
    assert_eq!(
        values(&r, uid),
        set(&[&d.muller_utf8.study, &d.smith.study])
    );
    // Time range (independent of date without combined matching).
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::STUDY_TIME, VR::TM, "08-10")],
    )
    .await;
    assert_eq!(values(&r, uid), set(&[&d.mueller.study, &d.smith.study]));
    // Modalities in study (list column).
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::MODALITIES_IN_STUDY, VR::CS, "CT")],
    )
    .await;
    assert_eq!(values(&r, uid), set(&[&d.smith_ct.study]));

    // Series level needs the study UID (hierarchical); returns exact series.
    let r = scu
        .find(
            STUDY_ROOT_FIND,
            &identifier(
                "SERIES",
                &[
                    (uid, VR::UI, &d.smith.study),
                    (tags::SERIES_INSTANCE_UID, VR::UI, ""),
                    (tags::SERIES_DESCRIPTION, VR::LO, "FLAIR*"),
                    (tags::NUMBER_OF_SERIES_RELATED_INSTANCES, VR::IS, ""),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 0);
    assert_eq!(r.matches.len(), 1);
    assert_eq!(
        values(&r, tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
        set(&["2"])
    );
    let r = scu
        .find(
            STUDY_ROOT_FIND,
            &identifier("SERIES", &[(tags::MODALITY, VR::CS, "MR")]),
        )
        .await;
    assert_eq!(r.status, 0xA900, "missing unique key of the study level");
    // Image level under Patient Root: PatientID + study + series UIDs.
    let r = scu
        .find(
            PATIENT_ROOT_FIND,
            &identifier(
                "IMAGE",
                &[
                    (tags::PATIENT_ID, VR::LO, "P-MUE"),
                    (uid, VR::UI, &d.mueller.study),
                    (tags::SERIES_INSTANCE_UID, VR::UI, &d.mueller.series),
                    (tags::SOP_INSTANCE_UID, VR::UI, ""),
                    (tags::INSTANCE_NUMBER, VR::IS, ""),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 0);
    assert_eq!(values(&r, tags::INSTANCE_NUMBER), set(&["1", "2"]));
    assert!(values(&r, tags::SOP_INSTANCE_UID).contains(&d.mueller.sop));
    // Patient level with computed counts.
    let r = scu
        .find(
            PATIENT_ROOT_FIND,
            &identifier(
                "PATIENT",
                &[
                    (tags::PATIENT_ID, VR::LO, "P-SMI"),
                    (tags::NUMBER_OF_PATIENT_RELATED_STUDIES, VR::IS, ""),
                    (tags::NUMBER_OF_PATIENT_RELATED_INSTANCES, VR::IS, ""),
                ],
            ),
        )
        .await;
    assert_eq!(
        values(&r, tags::NUMBER_OF_PATIENT_RELATED_STUDIES),
        set(&["2"])
    );
    assert_eq!(
        values(&r, tags::NUMBER_OF_PATIENT_RELATED_INSTANCES),
        set(&["6"])
    );
    scu.release().await;

    // Combined date-time matching (extended negotiation byte 2) and relational queries
    // (byte 1): StudyDate 20240105-20240210 with StudyTime 1400-0930 is one range from
    // 2024-01-05 14:00 to 2024-02-10 09:30 (only SMITH's 09:15 study); matched
    // separately, 1400-0930 would match nothing.
    let keys = [
        (uid, VR::UI, ""),
        (tags::STUDY_DATE, VR::DA, "20240105-20240210"),
        (tags::STUDY_TIME, VR::TM, "1400-0930"),
    ];
    let mut plain = Scu::connect_with(node.dimse_addr, "GLIA", &[STUDY_ROOT_FIND])
        .await
        .unwrap();
    assert_eq!(values(&study_root(&mut plain, &keys).await, uid), set(&[]));
    plain.release().await;
    let mut ext = Scu::connect_ext(
        node.dimse_addr,
        "GLIA",
        &[STUDY_ROOT_FIND],
        &[(STUDY_ROOT_FIND, &[1, 1])],
    )
    .await
    .unwrap();
    assert_eq!(
        values(&study_root(&mut ext, &keys).await, uid),
        set(&[&d.smith.study])
    );
    // Relational: series across studies without the study's UID.
    let r = ext
        .find(
            STUDY_ROOT_FIND,
            &identifier(
                "SERIES",
                &[
                    (tags::SERIES_INSTANCE_UID, VR::UI, ""),
                    (tags::MODALITY, VR::CS, "CT"),
                ],
            ),
        )
        .await;
    assert_eq!(
        (r.status, values(&r, tags::SERIES_INSTANCE_UID)),
        (0, set(&[&d.smith_ct.series]))
    );
    ext.release().await;
    node.stop().await;
}
both_backends!(matching_types, matching_types);

async fn bad_identifiers_and_limits(mut env: TestEnv) {
    env.config.query.max_matches = 3;
    let node = env.start().await;
    let d = load(&node).await;
    let mut scu = Scu::connect_with(node.dimse_addr, "GLIA", &[STUDY_ROOT_FIND])
        .await
        .unwrap();
    let uid = tags::STUDY_INSTANCE_UID;
    // Missing level, wrong level, key below level.
    let mut no_level = identifier("STUDY", &[(uid, VR::UI, "")]);
    no_level.remove_element(tags::QUERY_RETRIEVE_LEVEL);
    assert_eq!(scu.find(STUDY_ROOT_FIND, &no_level).await.status, 0xA900);
    assert_eq!(
        scu.find(STUDY_ROOT_FIND, &identifier("PATIENT", &[]))
            .await
            .status,
        0xA900
    );
    assert_eq!(
        scu.find(
            STUDY_ROOT_FIND,
            &identifier("STUDY", &[(tags::SOP_INSTANCE_UID, VR::UI, "")])
        )
        .await
        .status,
        0xA900
    );
    // Malformed range; SQL-looking strings match nothing and break nothing.
    let r = study_root(&mut scu, &[(tags::STUDY_DATE, VR::DA, "2024-13-45")]).await;
    assert_eq!(r.status, 0xC000);
    assert!(r.comment.unwrap().contains("StudyDate"));
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::PATIENT_ID, VR::LO, "' OR 1=1 --")],
    )
    .await;
    assert_eq!((r.status, r.matches.len()), (0, 0));
    let r = study_root(
        &mut scu,
        &[(uid, VR::UI, ""), (tags::PATIENT_NAME, VR::PN, "%")],
    )
    .await;
    assert_eq!(
        (r.status, r.matches.len()),
        (0, 0),
        "% is a literal, not a wildcard"
    );
    // Wildcard storm: * at every level → more than max_matches → refused, not flooded.
    let r = study_root(
        &mut scu,
        &[
            (uid, VR::UI, "*"),
            (tags::PATIENT_NAME, VR::PN, "*"),
            (tags::PATIENT_ID, VR::LO, "*"),
        ],
    )
    .await;
    assert_eq!(r.status, 0xA700);
    assert!(r.matches.is_empty());
    // Unsupported optional key with a value: matches continue with 0xFF01.
    let r = study_root(
        &mut scu,
        &[
            (uid, VR::UI, &d.mueller.study),
            (tags::PATIENT_WEIGHT, VR::DS, "70"),
        ],
    )
    .await;
    assert_eq!(r.status, 0);
    assert_eq!(r.pending_statuses, vec![0xFF01]);
    assert!(r.matches[0]
        .element(tags::PATIENT_WEIGHT)
        .unwrap()
        .is_empty());
    // A C-MOVE sent on the FIND context is refused (no service through another's context).
    let (pc, _) = scu.pc(STUDY_ROOT_FIND);
    let cmd = glia::dimse::command::CommandBuilder::new(glia::dimse::command::field::C_MOVE_RQ)
        .uid(
            tags::AFFECTED_SOP_CLASS_UID,
            glia::dimse::sop::STUDY_ROOT_MOVE,
        )
        .us(tags::MESSAGE_ID, 999)
        .us(tags::PRIORITY, 0)
        .us(
            tags::COMMAND_DATA_SET_TYPE,
            glia::dimse::command::DATA_SET_PRESENT,
        )
        .ae(tags::MOVE_DESTINATION, "ANYWHERE")
        .encode();
    scu.send_command(pc, cmd).await;
    scu.send_data(
        pc,
        &encode_explicit_le(&identifier("STUDY", &[(uid, VR::UI, &d.mueller.study)])),
        true,
    )
    .await;
    let (rsp, _) = scu.response_with_data(STUDY_ROOT_FIND).await;
    assert_eq!(rsp.u16(tags::STATUS), Some(0x0122));
    // The association still works.
    let r = study_root(&mut scu, &[(uid, VR::UI, &d.smith.study)]).await;
    assert_eq!(r.matches.len(), 1);
    scu.release().await;
    node.stop().await;
}
both_backends!(bad_identifiers_and_limits, bad_identifiers_and_limits);

async fn cancel_stops_responses(env: TestEnv) {
    let node = env.start().await;
    // 150 studies, so the cancel is read long before the last match could be sent.
    let mut scu = Scu::connect_with(
        node.dimse_addr,
        "GLIA",
        &[uids::MR_IMAGE_STORAGE, STUDY_ROOT_FIND],
    )
    .await
    .unwrap();
    for i in 0..150 {
        let ids = Ids::new(&format!("CANCEL{i}"));
        let ds = mr_dataset_with(&ids, 1, &[]);
        assert_eq!(
            scu.store(uids::MR_IMAGE_STORAGE, &ids.sop, &encode_explicit_le(&ds))
                .await
                .0,
            0
        );
    }
    // The cancel follows the request at once; the SCP checks for it between responses.
    let id = scu
        .find_request(
            STUDY_ROOT_FIND,
            &identifier("STUDY", &[(tags::STUDY_INSTANCE_UID, VR::UI, "")]),
        )
        .await;
    scu.cancel(STUDY_ROOT_FIND, id).await;
    let mut pending = 0;
    let final_status = loop {
        let (cmd, _) = scu.response_with_data(STUDY_ROOT_FIND).await;
        match cmd.u16(tags::STATUS).unwrap() {
            0xFF00 => pending += 1,
            st => break st,
        }
    };
    assert_eq!(final_status, 0xFE00, "cancelled");
    assert!(pending < 150, "not every match was sent ({pending})");
    // The association carries on.
    let r = study_root(
        &mut scu,
        &[
            (tags::STUDY_INSTANCE_UID, VR::UI, ""),
            (tags::PATIENT_ID, VR::LO, "CANCEL7"),
        ],
    )
    .await;
    assert_eq!(r.matches.len(), 1);
    scu.release().await;
    node.stop().await;
}
both_backends!(cancel_stops_responses, cancel_stops_responses);
