//! C-FIND / C-MOVE / C-GET identifiers ⇄ the query model (PS3.4 C.4.1.2, C.6).

use dicom_core::value::Value;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::catalog::{self, unique_key};
use super::{matching, Level, Query, QueryError, QueryOptions, ResultRow};

/// Query/Retrieve information model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InformationModel {
    PatientRoot,
    StudyRoot,
}

/// How an identifier is to be interpreted.
#[derive(Debug, Clone, Copy)]
pub struct IdentifierRules {
    pub model: InformationModel,
    /// Relational queries negotiated (extended negotiation byte 1).
    pub relational: bool,
    /// A C-MOVE/C-GET identifier: the unique key of the retrieve level is required
    /// (PS3.4 C.4.2.2.1) unless relational retrieval was negotiated.
    pub retrieve: bool,
    pub options: QueryOptions,
}

fn text_of(e: &DataElement<InMemDicomObject>) -> String {
    e.to_str().map(|s| s.to_string()).unwrap_or_default()
}

/// Parse a C-FIND (or retrieve) identifier into a query.
pub fn parse_identifier(
    obj: &InMemDicomObject,
    rules: IdentifierRules,
) -> Result<Query, QueryError> {
    let level_el = obj
        .get(tags::QUERY_RETRIEVE_LEVEL)
        .ok_or(QueryError::MissingLevel)?;
    let level = Level::parse(&text_of(level_el)).ok_or(QueryError::BadLevel)?;
    if rules.model == InformationModel::StudyRoot && level == Level::Patient {
        return Err(QueryError::BadLevel);
    }
    let mut query = Query::new(level);
    query.options = rules.options;
    for el in obj.iter() {
        let tag = el.header().tag;
        if tag == tags::QUERY_RETRIEVE_LEVEL
            || tag == tags::SPECIFIC_CHARACTER_SET
            || tag.group() == 0x0000
            || tag.element() == 0x0000
        {
            continue;
        }
        if tag == tags::RETRIEVE_AE_TITLE || tag == tags::INSTANCE_AVAILABILITY {
            // Answered by the renderer.
            query.unsupported.push((tag, el.header().vr));
            continue;
        }
        if let Some(seq) = super::sequence::by_tag(tag) {
            if seq.level > level {
                return Err(QueryError::KeyBelowLevel(seq.keyword));
            }
            let key = parse_sequence_key(seq, el, &mut query)?;
            query.sequences.push(key);
            continue;
        }
        match catalog::by_tag(tag) {
            Some(attr) => {
                // In the Study Root model patient keys are study-level keys.
                if attr.level > level {
                    return Err(QueryError::KeyBelowLevel(attr.keyword));
                }
                let matcher = match el.value() {
                    Value::Primitive(_) => matching::parse(attr, &text_of(el))?,
                    _ => {
                        return Err(QueryError::BadValue {
                            keyword: attr.keyword,
                            reason: "not a single value".into(),
                        })
                    }
                };
                query.add(attr, matcher);
            }
            None => {
                let has_value = match el.value() {
                    Value::Primitive(p) => !p.to_str().trim_matches([' ', '\0']).is_empty(),
                    Value::Sequence(s) => s.items().iter().any(|i| i.iter().next().is_some()),
                    Value::PixelSequence(_) => true,
                };
                query.unsupported_matching |= has_value;
                query.unsupported.push((tag, el.header().vr));
            }
        }
    }
    // The unique key of the query level is always returned.
    let own = unique_key(level);
    if !query.returns.iter().any(|a| a.tag == own.tag) {
        query.returns.push(own);
    }
    // Hierarchical (baseline) queries need a single unique key at each level above.
    let top = match rules.model {
        InformationModel::PatientRoot => Level::Patient,
        InformationModel::StudyRoot => Level::Study,
    };
    for upper in [Level::Patient, Level::Study, Level::Series] {
        if upper < top || upper >= level {
            continue;
        }
        let key = unique_key(upper);
        let single = matches!(query.condition(key.tag), Some(super::Matcher::Single(_)));
        if !single && !rules.relational {
            return Err(QueryError::MissingUniqueKey(key.keyword));
        }
        if !query.returns.iter().any(|a| a.tag == key.tag) {
            query.returns.push(key);
        }
    }
    if rules.retrieve && !rules.relational {
        let key = unique_key(level);
        if !matches!(
            query.condition(key.tag),
            Some(super::Matcher::Single(_) | super::Matcher::List(_))
        ) {
            return Err(QueryError::MissingUniqueKey(key.keyword));
        }
    }
    Ok(query)
}

/// A sequence key: the item keys of its first item (all of them when it has none).
fn parse_sequence_key(
    seq: &'static super::sequence::SeqAttr,
    el: &DataElement<InMemDicomObject>,
    query: &mut Query,
) -> Result<super::sequence::SeqKey, QueryError> {
    let mut items = Vec::new();
    match el.value() {
        Value::Sequence(s) => {
            if let Some(first) = s.items().first() {
                for ie in first.iter() {
                    let t = ie.header().tag;
                    match seq.item(t) {
                        Some(a) => items.push((a, matching::parse(a, &text_of(ie))?)),
                        None => {
                            // An item key Glia does not keep: matches nothing it could
                            // check, so the query is answered as if it were universal.
                            query.unsupported_matching |= !text_of(ie).trim().is_empty();
                        }
                    }
                }
            }
        }
        Value::Primitive(p) if p.multiplicity() == 0 => {}
        _ => {
            return Err(QueryError::BadValue {
                keyword: seq.keyword,
                reason: "not a sequence".into(),
            })
        }
    }
    if items.is_empty() {
        items = seq
            .items
            .iter()
            .map(|a| (a, super::Matcher::Universal))
            .collect();
    }
    Ok(super::sequence::SeqKey { seq, items })
}

fn element(tag: Tag, vr: VR, value: Option<&str>) -> DataElement<InMemDicomObject> {
    match value {
        None => DataElement::empty(tag, vr),
        Some(v) => DataElement::new(tag, vr, PrimitiveValue::from(v)),
    }
}

/// Render one result as a response identifier (UTF-8, `ISO_IR 192`).
pub fn render(query: &Query, row: &ResultRow, retrieve_ae: &str) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(element(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        Some("ISO_IR 192"),
    ));
    obj.put(element(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        Some(query.level.as_str()),
    ));
    for attr in &query.returns {
        obj.put(element(attr.tag, attr.vr, row.get(attr)));
    }
    for key in &query.sequences {
        let stored = row.sequences.iter().find(|s| s.seq.tag == key.seq.tag);
        let items: Vec<InMemDicomObject> = stored
            .map(|s| s.items.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|values| {
                let mut item = InMemDicomObject::new_empty();
                for (attr, _) in &key.items {
                    let v = values
                        .iter()
                        .find(|(t, _)| *t == attr.tag)
                        .map(|(_, v)| v.as_str());
                    item.put(element(attr.tag, attr.vr, v));
                }
                item
            })
            .collect();
        obj.put(DataElement::new(
            key.seq.tag,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(items),
        ));
    }
    for (tag, vr) in &query.unsupported {
        let value = match *tag {
            t if t == tags::RETRIEVE_AE_TITLE => Some(retrieve_ae),
            t if t == tags::INSTANCE_AVAILABILITY => Some("ONLINE"),
            _ => None,
        };
        obj.put(element(*tag, *vr, value));
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(level: &str, keys: &[(Tag, VR, &str)]) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        o.put(element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, Some(level)));
        for (t, vr, v) in keys {
            o.put(element(*t, *vr, Some(v)));
        }
        o
    }

    const STUDY_ROOT: IdentifierRules = IdentifierRules {
        model: InformationModel::StudyRoot,
        relational: false,
        retrieve: false,
        options: QueryOptions {
            case_insensitive_names: true,
            combined_datetime: false,
        },
    };

    #[test]
    fn hierarchical_rules() {
        // Series level without the study's UID: refused unless relational.
        let id = ident("SERIES", &[(tags::MODALITY, VR::CS, "MR")]);
        assert!(matches!(
            parse_identifier(&id, STUDY_ROOT),
            Err(QueryError::MissingUniqueKey("StudyInstanceUID"))
        ));
        let rel = IdentifierRules {
            relational: true,
            ..STUDY_ROOT
        };
        assert!(parse_identifier(&id, rel).is_ok());
        // A key below the level is refused.
        let id = ident("STUDY", &[(tags::SOP_INSTANCE_UID, VR::UI, "")]);
        assert!(matches!(
            parse_identifier(&id, STUDY_ROOT),
            Err(QueryError::KeyBelowLevel(_))
        ));
        // PATIENT level does not exist in Study Root.
        assert!(matches!(
            parse_identifier(&ident("PATIENT", &[]), STUDY_ROOT),
            Err(QueryError::BadLevel)
        ));
        assert!(matches!(
            parse_identifier(&InMemDicomObject::new_empty(), STUDY_ROOT),
            Err(QueryError::MissingLevel)
        ));
        // A retrieve needs the unique key of its own level.
        let retrieve = IdentifierRules {
            retrieve: true,
            ..STUDY_ROOT
        };
        assert!(matches!(
            parse_identifier(&ident("STUDY", &[]), retrieve),
            Err(QueryError::MissingUniqueKey("StudyInstanceUID"))
        ));
        assert!(parse_identifier(
            &ident("STUDY", &[(tags::STUDY_INSTANCE_UID, VR::UI, "1.2\\1.3")]),
            retrieve
        )
        .is_ok());
        // Unsupported keys are returned empty; with a value they flag 0xFF01.
        let id = ident("STUDY", &[(tags::PATIENT_WEIGHT, VR::DS, "70")]);
        let q = parse_identifier(&id, STUDY_ROOT).unwrap();
        assert!(q.unsupported_matching);
        assert_eq!(q.returns.len(), 1); // StudyInstanceUID
    }
}
