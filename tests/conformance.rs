//! The DICOM Conformance Statement (`dicom-conformance/conformance-statement.md`) is
//! checked against the code: its machine-readable lists of SOP classes
//! (` ```sop-classes `, ` ```storage-sop-classes `) and transfer syntaxes
//! (` ```transfer-syntaxes `) must be exactly what the listener negotiates, proven by
//! proposing every SOP class and every transfer syntax dicom-rs knows to
//! `glia::dimse::association::negotiate` with the default `[dimse]` configuration; its
//! table of supported C-FIND keys must be the query catalogue; and the implementation
//! identification it quotes must be the one Glia sends.

#![allow(deprecated)] // retired UIDs are deprecated constants in dicom-dictionary-std

use std::collections::BTreeSet;

use dicom_dictionary_std::uids;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{
    AssociationRQ, PresentationContextProposed, PresentationContextResultReason, UserVariableItem,
};
use glia::config::DimseConfig;
use glia::dimse::association::negotiate;
use glia::ingest::spool::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

const STATEMENT: &str = include_str!("../dicom-conformance/conformance-statement.md");

const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
const DICOM_ROOT: &str = "1.2.840.10008.";

mod conformance_data;
use conformance_data::{DICTIONARY_SOP_CLASSES, DICTIONARY_TRANSFER_SYNTAXES};

/// The lines of the fenced block tagged `tag`, split into whitespace-separated fields
/// (the last field of a line runs to its end); blank lines and `#` comments skipped.
fn block(tag: &str) -> Vec<(String, Vec<String>)> {
    let fence = format!("```{tag}\n");
    let start = STATEMENT
        .find(&fence)
        .unwrap_or_else(|| panic!("the statement has no ```{tag} block"))
        + fence.len();
    assert!(
        !STATEMENT[start..].contains(&fence),
        "the statement has two ```{tag} blocks"
    );
    let end = start + STATEMENT[start..].find("```").expect("block is closed");
    STATEMENT[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            let first = it.next().unwrap().to_string();
            (first, it.map(str::to_string).collect())
        })
        .collect()
}

/// A syntactically valid UID (PS3.5 §9.1).
fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

/// The storage rule of the statement (` ```storage-sop-classes `): UIDs, `ROOT.*`
/// prefixes, and `private` (any valid UID outside `1.2.840.10008.`).
struct StorageRule(Vec<String>);

impl StorageRule {
    fn from_statement() -> Self {
        let lines = block("storage-sop-classes");
        for (uid, rest) in &lines {
            assert_eq!(rest.first().map(String::as_str), Some("SCP"), "{uid}: role");
        }
        Self(lines.into_iter().map(|(uid, _)| uid).collect())
    }

    fn matches(&self, uid: &str) -> bool {
        self.0.iter().any(|r| match r.strip_suffix('*') {
            Some(prefix) => uid.starts_with(prefix),
            None if r == "private" => !uid.starts_with(DICOM_ROOT) && valid_uid(uid),
            None => r == uid,
        })
    }
}

/// The non-storage SOP classes of the statement (` ```sop-classes `), all SCP.
fn listed_sop_classes() -> BTreeSet<String> {
    let lines = block("sop-classes");
    let mut set = BTreeSet::new();
    for (uid, rest) in lines {
        assert_eq!(rest.first().map(String::as_str), Some("SCP"), "{uid}: role");
        assert!(rest.len() > 1, "{uid}: a name follows the role");
        assert!(set.insert(uid.clone()), "{uid} listed twice");
    }
    set
}

/// Propose `abstract_syntax` in `transfer_syntax` alone; the accepted transfer
/// syntax, or `None` when the context is refused.
fn negotiated(abstract_syntax: &str, transfer_syntax: &str) -> Option<String> {
    let rq = AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "CONFORMANCE".into(),
        called_ae_title: "GLIA".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![PresentationContextProposed {
            id: 1,
            abstract_syntax: abstract_syntax.into(),
            transfer_syntaxes: vec![transfer_syntax.into()],
        }],
        user_variables: vec![UserVariableItem::MaxLength(16_384)],
    };
    let (ac, negotiated) = negotiate(&rq, &DimseConfig::default())
        .unwrap_or_else(|rj| panic!("association rejected: {rj:?}"));
    assert_eq!(ac.presentation_contexts.len(), 1);
    let result = &ac.presentation_contexts[0];
    assert_eq!(result.id, 1);
    match result.reason {
        PresentationContextResultReason::Acceptance => {
            assert_eq!(negotiated.contexts.len(), 1);
            Some(result.transfer_syntax.clone())
        }
        _ => {
            assert!(negotiated.contexts.is_empty());
            None
        }
    }
}

fn accepted(abstract_syntax: &str) -> bool {
    negotiated(abstract_syntax, uids::EXPLICIT_VR_LITTLE_ENDIAN).is_some()
}

#[test]
fn sop_classes_are_exactly_those_negotiated() {
    let listed = listed_sop_classes();
    let storage = StorageRule::from_statement();
    let dictionary: BTreeSet<&str> = DICTIONARY_SOP_CLASSES.iter().copied().collect();

    // The listed classes are standard SOP classes, not storage ones, and accepted.
    for uid in &listed {
        assert!(
            dictionary.contains(uid.as_str()),
            "{uid} is not a SOP class"
        );
        assert!(!storage.matches(uid), "{uid} is listed and also storage");
        assert!(accepted(uid), "{uid} is listed but refused");
    }
    // The storage rule names real classes.
    for r in &storage.0 {
        if !r.ends_with('*') && r != "private" {
            assert!(dictionary.contains(r.as_str()), "{r} is not a SOP class");
        }
    }

    // Every SOP class of the dictionary: accepted ⇔ listed or storage by the rule.
    let mut wrong = Vec::new();
    let mut accepted_non_storage = BTreeSet::new();
    for uid in &dictionary {
        let is_accepted = accepted(uid);
        let expected = listed.contains(*uid) || storage.matches(uid);
        if is_accepted != expected {
            wrong.push(format!(
                "{uid}: negotiated {is_accepted}, statement says {expected}"
            ));
        }
        if is_accepted && !storage.matches(uid) {
            accepted_non_storage.insert(uid.to_string());
        }
    }
    assert!(
        wrong.is_empty(),
        "statement ≠ negotiation:\n{}",
        wrong.join("\n")
    );
    assert_eq!(accepted_non_storage, listed);

    // Private classes: any valid UID outside the DICOM root; nothing else.
    for uid in [
        "1.3.46.670589.11.0.0.12.1",
        "1.2.276.0.7230010.3.1.0.1",
        "2.25.1234567890",
    ] {
        assert!(storage.matches(uid) && accepted(uid), "{uid}");
    }
    for uid in [
        "1.2.840.10008.5.1.4.1.2.9.9",
        "1.2.840.10008.999",
        "1.2.3.04",
        "1..2",
        "not.a.uid",
    ] {
        assert!(!storage.matches(uid) && !accepted(uid), "{uid}");
    }
}

#[test]
fn transfer_syntaxes_are_exactly_those_negotiated() {
    let listed: BTreeSet<String> = block("transfer-syntaxes")
        .into_iter()
        .map(|(uid, _)| uid)
        .collect();
    let mut candidates: BTreeSet<String> = TransferSyntaxRegistry
        .iter()
        .map(|ts| ts.uid().to_string())
        .collect();
    candidates.extend(DICTIONARY_TRANSFER_SYNTAXES.iter().map(|s| s.to_string()));
    candidates.insert("1.2.826.0.1.3680043.10.1.1".into()); // a private syntax
    for uid in &listed {
        assert!(
            candidates.contains(uid),
            "{uid} is not a known transfer syntax"
        );
    }
    let mut wrong = Vec::new();
    for uid in &candidates {
        let got = negotiated(MR_IMAGE_STORAGE, uid);
        if let Some(ts) = &got {
            assert_eq!(ts, uid, "the one proposed syntax is the one accepted");
        }
        if got.is_some() != listed.contains(uid) {
            wrong.push(format!(
                "{uid}: negotiated {}, listed {}",
                got.is_some(),
                listed.contains(uid)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "statement ≠ negotiation:\n{}",
        wrong.join("\n")
    );
}

/// Every table row of the statement naming `item`, by its backquoted value.
fn quoted_values(item: &str) -> Vec<&'static str> {
    let prefix = format!("| {item} |");
    STATEMENT
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|rest| {
            let v = rest.trim().trim_end_matches('|').trim();
            v.strip_prefix('`')
                .and_then(|v| v.strip_suffix('`'))
                .unwrap_or_else(|| panic!("{item}: value not in backquotes: {v}"))
        })
        .collect()
}

#[test]
fn implementation_identification_is_the_one_sent() {
    let class = quoted_values("Implementation Class UID");
    let version = quoted_values("Implementation Version Name");
    assert!(!class.is_empty() && !version.is_empty());
    assert!(
        class.iter().all(|v| *v == IMPLEMENTATION_CLASS_UID),
        "{class:?}"
    );
    assert!(
        version.iter().all(|v| *v == IMPLEMENTATION_VERSION_NAME),
        "{version:?}"
    );
}

/// The supported-keys table of the Q/R SCP (rows `| LEVEL | Keyword | (gggg,eeee) | VR
/// | matching |`) lists exactly the query catalogue, with return-only keys and unique
/// keys marked as such.
#[test]
fn query_keys_are_the_catalogue() {
    use glia::query::catalog::{unique_key, CATALOG};
    use glia::query::{Kind, Level};
    let mut rows = BTreeSet::new();
    for line in STATEMENT.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() != 7 || !["PATIENT", "STUDY", "SERIES", "IMAGE"].contains(&cells[1]) {
            continue;
        }
        let matching = cells[5];
        assert!(
            rows.insert((
                cells[1].to_string(),
                cells[2].to_string(),
                cells[3].to_string(),
                cells[4].to_string(),
                matching == "return",
                matching.contains("(unique key)"),
            )),
            "{line}"
        );
    }
    let catalogue: BTreeSet<_> = CATALOG
        .iter()
        .map(|a| {
            let level = match a.level {
                Level::Patient => "PATIENT",
                Level::Study => "STUDY",
                Level::Series => "SERIES",
                Level::Image => "IMAGE",
            };
            (
                level.to_string(),
                a.keyword.to_string(),
                format!("({:04X},{:04X})", a.tag.group(), a.tag.element()),
                String::from(a.vr.to_string()),
                a.kind == Kind::Count,
                unique_key(a.level).tag == a.tag,
            )
        })
        .collect();
    assert_eq!(rows, catalogue);
}
