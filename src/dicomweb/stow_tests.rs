//! Unit tests of STOW-RS: media types, status rules, failure reasons, response JSON.

use super::*;

#[test]
fn media_type_parameters_quoted_or_not() {
    let m = parse_media_type("Multipart/Related; type=\"application/dicom\"; boundary=\"a;b=c\"")
        .unwrap();
    assert_eq!(m.essence, "multipart/related");
    assert_eq!(m.param("type"), Some("application/dicom"));
    assert_eq!(m.param("boundary"), Some("a;b=c"));
    let m = parse_media_type("multipart/related; TYPE=application/dicom; boundary=XyZ").unwrap();
    assert_eq!(m.param("type"), Some("application/dicom"));
    assert_eq!(
        m.param("boundary"),
        Some("XyZ"),
        "boundaries keep their case"
    );
}

#[test]
fn statuses_follow_the_counts() {
    let s = |stored, failed| {
        Summary {
            stored,
            duplicates: 0,
            failed,
        }
        .status()
    };
    assert_eq!(s(3, 0), StatusCode::OK);
    assert_eq!(s(2, 1), StatusCode::ACCEPTED);
    assert_eq!(s(0, 2), StatusCode::CONFLICT);
}

#[test]
fn failure_reasons_are_named() {
    assert_eq!(
        failure_reason_for(&IngestError::StudyMismatch),
        failure_reason::PROCESSING_FAILURE
    );
    assert_eq!(
        failure_reason_for(&IngestError::Unreadable("x".into())),
        failure_reason::CANNOT_UNDERSTAND
    );
    assert_eq!(
        failure_reason_for(&IngestError::TooLarge { limit: 1 }),
        failure_reason::OUT_OF_RESOURCES
    );
    assert_eq!(
        failure_reason_for(&IngestError::MetaMismatch),
        failure_reason::DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    );
}

#[test]
fn response_lists_stored_and_failed() {
    let id = Identity {
        sop_class: Some("1.2.840.10008.5.1.4.1.1.4".into()),
        sop_instance: Some("1.2.3.4".into()),
        study: Some("1.2.3".into()),
        series: Some("1.2.3.9".into()),
    };
    let outcomes = vec![
        Outcome::Stored {
            id,
            duplicate: false,
        },
        Outcome::Failed {
            id: Identity::default(),
            reason: failure_reason::CANNOT_UNDERSTAND,
        },
    ];
    let ds = response_dataset("http://h/dicom-web", None, &outcomes);
    let json: serde_json::Value =
        serde_json::from_str(&crate::dicom_json::dataset_to_string(&ds)).unwrap();
    assert_eq!(
        json["00081190"]["Value"][0],
        "http://h/dicom-web/studies/1.2.3"
    );
    let item = &json["00081199"]["Value"][0];
    assert_eq!(item["00081155"]["Value"][0], "1.2.3.4");
    assert_eq!(
        item["00081190"]["Value"][0],
        "http://h/dicom-web/studies/1.2.3/series/1.2.3.9/instances/1.2.3.4"
    );
    assert_eq!(
        json["00081198"]["Value"][0]["00081197"]["Value"][0],
        failure_reason::CANNOT_UNDERSTAND
    );
}
