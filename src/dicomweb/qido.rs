//! QIDO-RS (PS3.18 §10.6): searches for studies, series and instances, parsed into the
//! one query model (`crate::query`) and executed by it, so matching is the same as
//! C-FIND's. Parameters: attributes by keyword or tag (`PatientID=X`, `00100020=X`),
//! `includefield` (list or `all`), `fuzzymatching`, `limit`, `offset`. Responses are
//! `application/dicom+json`; a response cut short carries `Warning: 299`.

use dicom_core::dictionary::DataDictionary;
use dicom_core::Tag;
use dicom_dictionary_std::{tags, StandardDataDictionary};
use poem::http::header;
use poem::web::{Data, Path};
use poem::{handler, Body, Request, Response};

use super::{check_uid_param, DicomWebError, WebResult};
use crate::app::AppState;
use crate::dicom_json::write_text_attribute;
use crate::query::catalog::{self, Kind, CATALOG};
use crate::query::sequence::{self, SeqAttr, SeqKey};
use crate::query::{matching, Attr, Level, Matcher, Query, QueryOptions, ResultRow};

/// Attributes returned by default at each level (PS3.18 Table 10.6.3-3/4/5).
const STUDY_DEFAULTS: &[&str] = &[
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
];
const SERIES_DEFAULTS: &[&str] = &[
    "Modality",
    "SeriesDescription",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "PerformedProcedureStepStartDate",
    "NumberOfSeriesRelatedInstances",
];
const INSTANCE_DEFAULTS: &[&str] = &[
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
];

/// What a search is scoped to by its path.
struct Scope<'a> {
    level: Level,
    study: Option<&'a str>,
    series: Option<&'a str>,
}

#[handler]
pub async fn studies(req: &Request, Data(state): Data<&AppState>) -> WebResult<Response> {
    let scope = Scope {
        level: Level::Study,
        study: None,
        series: None,
    };
    search(req, state, scope).await
}

#[handler]
pub async fn all_series(req: &Request, Data(state): Data<&AppState>) -> WebResult<Response> {
    let scope = Scope {
        level: Level::Series,
        study: None,
        series: None,
    };
    search(req, state, scope).await
}

#[handler]
pub async fn all_instances(req: &Request, Data(state): Data<&AppState>) -> WebResult<Response> {
    let scope = Scope {
        level: Level::Image,
        study: None,
        series: None,
    };
    search(req, state, scope).await
}

#[handler]
pub async fn study_series(
    req: &Request,
    Path(study): Path<String>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let scope = Scope {
        level: Level::Series,
        study: Some(&study),
        series: None,
    };
    search(req, state, scope).await
}

#[handler]
pub async fn study_instances(
    req: &Request,
    Path(study): Path<String>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let scope = Scope {
        level: Level::Image,
        study: Some(&study),
        series: None,
    };
    search(req, state, scope).await
}

#[handler]
pub async fn series_instances(
    req: &Request,
    Path((study, series)): Path<(String, String)>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let scope = Scope {
        level: Level::Image,
        study: Some(&study),
        series: Some(&series),
    };
    search(req, state, scope).await
}

/// A parsed QIDO-RS request.
pub struct QidoRequest {
    pub query: Query,
    /// Warnings for the `Warning: 299` header (unsupported keys, reduced limit).
    pub warnings: Vec<String>,
}

fn keyword_attr(name: &str) -> WebResult<Result<&'static Attr, Tag>> {
    // `00100020` or `PatientID`; nested paths (`00081111.00081150`) are not supported.
    let tag = if name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        let n = u32::from_str_radix(name, 16).map_err(|_| DicomWebError::param(name, "bad tag"))?;
        Tag((n >> 16) as u16, (n & 0xFFFF) as u16)
    } else if let Some(a) = catalog::by_keyword(name) {
        return Ok(Ok(a));
    } else if let Some(e) = StandardDataDictionary.by_name(name) {
        e.tag.inner()
    } else {
        return Err(DicomWebError::param(
            name,
            "not a known attribute keyword, tag or QIDO-RS parameter",
        ));
    };
    Ok(catalog::by_tag(tag).ok_or(tag))
}

/// `Seq.Item` (keywords or tags) naming an item key of a kept sequence; `None` for a
/// valid but unsupported path.
fn sequence_item(name: &str) -> WebResult<Option<(&'static SeqAttr, &'static Attr)>> {
    let (s, i) = name.split_once('.').unwrap_or((name, ""));
    if i.contains('.') {
        return Ok(None); // deeper nesting: not kept
    }
    let seq = sequence::by_keyword(s).or_else(|| tag_of(s).ok().and_then(sequence::by_tag));
    let Some(seq) = seq else {
        tag_of(s)?;
        return Ok(None);
    };
    let item = seq
        .item_by_keyword(i)
        .or_else(|| tag_of(i).ok().and_then(|t| seq.item(t)));
    match item {
        Some(a) => Ok(Some((seq, a))),
        None => {
            tag_of(i)?;
            Ok(None)
        }
    }
}

/// The tag named by a keyword or eight hex digits (400 when neither).
fn tag_of(name: &str) -> WebResult<Tag> {
    match keyword_attr(name)? {
        Ok(a) => Ok(a.tag),
        Err(t) => Ok(t),
    }
}

fn attrs_named<'a>(names: &'a [&'a str]) -> impl Iterator<Item = &'static Attr> + 'a {
    names.iter().filter_map(|n| catalog::by_keyword(n))
}

/// Parse the query string of a search scoped by `scope` into the query model.
fn parse(state: &AppState, raw_query: &str, scope: &Scope<'_>) -> WebResult<QidoRequest> {
    let cfg = &state.config.dicomweb;
    let mut query = Query::new(scope.level);
    query.scope = crate::auth::context::scope();
    query.options = QueryOptions {
        case_insensitive_names: state.config.query.person_name_case_insensitive,
        combined_datetime: false,
    };
    let mut warnings = Vec::new();
    let mut includes: Vec<&'static Attr> = Vec::new();
    let mut include_all = false;
    let mut fuzzy = false;
    let mut limit: Option<u64> = None;
    let mut matches: Vec<(&'static Attr, String)> = Vec::new();
    let mut unsupported: Vec<String> = Vec::new();
    let mut seq_matches: Vec<(&'static SeqAttr, &'static Attr, String)> = Vec::new();
    let mut seq_includes: Vec<&'static SeqAttr> = Vec::new();

    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        match k.as_ref() {
            "includefield" => {
                for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if name == "all" {
                        include_all = true;
                        continue;
                    }
                    let bad = |_| {
                        DicomWebError::param("includefield", "not a known attribute keyword or tag")
                    };
                    match keyword_attr(name).map_err(bad)? {
                        Ok(a) => includes.push(a),
                        Err(t) => match sequence::by_tag(t) {
                            Some(seq) => seq_includes.push(seq),
                            None => unsupported.push(name.to_string()),
                        },
                    }
                }
            }
            "fuzzymatching" => {
                fuzzy = match v.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(DicomWebError::param(
                            "fuzzymatching",
                            "must be true or false",
                        ))
                    }
                }
            }
            "limit" => {
                limit = Some(
                    v.parse()
                        .map_err(|_| DicomWebError::param("limit", "not a non-negative integer"))?,
                )
            }
            "offset" => {
                query.offset = v
                    .parse()
                    .map_err(|_| DicomWebError::param("offset", "not a non-negative integer"))?
            }
            // Content negotiation, handled elsewhere.
            "accept" | "charset" => {}
            name if name.contains('.') => match sequence_item(name)? {
                Some((seq, item)) => seq_matches.push((seq, item, v.into_owned())),
                None => unsupported.push(name.to_string()),
            },
            name => match keyword_attr(name)? {
                Ok(a) => matches.push((a, v.into_owned())),
                Err(_) => match sequence::by_tag(tag_of(name)?) {
                    Some(seq) => seq_includes.push(seq),
                    None => unsupported.push(name.to_string()),
                },
            },
        }
    }

    for (attr, value) in matches {
        if attr.level > scope.level {
            return Err(DicomWebError::param(
                attr.keyword,
                "attribute is below the level searched",
            ));
        }
        let value = if attr.vr == dicom_core::VR::UI {
            value.replace(',', "\\")
        } else {
            value
        };
        let matcher = if fuzzy && matches!(attr.kind, Kind::PersonName { .. }) {
            matching::fuzzy(&value).unwrap_or(Matcher::Universal)
        } else {
            matching::parse(attr, &value).map_err(|e| match e {
                crate::query::QueryError::BadValue { keyword, reason } => {
                    DicomWebError::param(keyword, reason)
                }
                other => other.into(),
            })?
        };
        query.add(attr, matcher);
    }
    // Sequence keys: matching item keys (`Seq.Item=value`) and whole sequences to return.
    for (seq, attr, value) in seq_matches {
        if seq.level > scope.level {
            return Err(DicomWebError::param(
                seq.keyword,
                "attribute is below the level searched",
            ));
        }
        let m = matching::parse(attr, &value).map_err(|e| match e {
            crate::query::QueryError::BadValue { reason, .. } => {
                DicomWebError::param(format!("{}.{}", seq.keyword, attr.keyword), reason)
            }
            other => other.into(),
        })?;
        match query.sequences.iter_mut().find(|k| k.seq.tag == seq.tag) {
            Some(k) => k.items.push((attr, m)),
            None => query.sequences.push(SeqKey {
                seq,
                items: vec![(attr, m)],
            }),
        }
    }
    if include_all {
        seq_includes.extend(sequence::SEQUENCES.iter());
    }
    for seq in seq_includes {
        if seq.level > scope.level {
            continue;
        }
        let key = match query.sequences.iter_mut().find(|k| k.seq.tag == seq.tag) {
            Some(k) => k,
            None => {
                query.sequences.push(SeqKey {
                    seq,
                    items: Vec::new(),
                });
                query.sequences.last_mut().expect("just pushed")
            }
        };
        for a in seq.items {
            if !key.items.iter().any(|(b, _)| b.tag == a.tag) {
                key.items.push((a, Matcher::Universal));
            }
        }
    }
    let uid = |tag| catalog::by_tag(tag).expect("unique keys are in the catalogue");
    if let Some(s) = scope.study {
        check_uid_param("StudyInstanceUID", s)?;
        query.add(uid(tags::STUDY_INSTANCE_UID), Matcher::Single(s.into()));
    }
    if let Some(s) = scope.series {
        check_uid_param("SeriesInstanceUID", s)?;
        query.add(uid(tags::SERIES_INSTANCE_UID), Matcher::Single(s.into()));
    }

    // Return keys: the level's defaults, those of the levels above when the search is
    // not scoped to them, includefield, and the matching keys (already added).
    let mut defaults: Vec<&'static Attr> = Vec::new();
    match scope.level {
        Level::Study | Level::Patient => defaults.extend(attrs_named(STUDY_DEFAULTS)),
        Level::Series => {
            if scope.study.is_none() {
                defaults.extend(attrs_named(STUDY_DEFAULTS));
            }
            defaults.extend(attrs_named(SERIES_DEFAULTS));
        }
        Level::Image => {
            if scope.study.is_none() {
                defaults.extend(attrs_named(STUDY_DEFAULTS));
            }
            if scope.series.is_none() {
                defaults.extend(attrs_named(SERIES_DEFAULTS));
            }
            defaults.extend(attrs_named(INSTANCE_DEFAULTS));
        }
    }
    if include_all {
        defaults.extend(CATALOG.iter().filter(|a| a.level <= scope.level));
    }
    for a in defaults.into_iter().chain(includes) {
        if a.level <= scope.level && !query.returns.iter().any(|r| r.tag == a.tag) {
            query.returns.push(a);
        }
    }

    if !unsupported.is_empty() {
        warnings.push(format!(
            "The following attributes are not supported and were ignored: {}",
            unsupported.join(", ")
        ));
    }
    let wanted = limit.unwrap_or(cfg.qido_default_limit);
    if wanted > cfg.qido_max_limit {
        warnings.push(format!(
            "limit reduced to the maximum of {}",
            cfg.qido_max_limit
        ));
    }
    query.limit = Some(wanted.min(cfg.qido_max_limit));
    Ok(QidoRequest { query, warnings })
}

async fn search(req: &Request, state: &AppState, scope: Scope<'_>) -> WebResult<Response> {
    let QidoRequest {
        mut query,
        mut warnings,
    } = parse(state, req.uri().query().unwrap_or(""), &scope)?;
    let limit = query.limit.unwrap_or(0);
    // One more than asked tells whether the results were cut short.
    query.limit = Some(limit + 1);
    let mut rows = crate::query::execute(state.repo.connection(), &query, None).await?;
    if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        warnings.push("There are additional results that can be requested".into());
    }
    if rows.is_empty() && query.offset == 0 && (scope.study.is_some() || scope.series.is_some()) {
        // A search inside a study or series that does not exist: 404, as retrieves.
        super::resolve(
            state,
            scope.study.unwrap_or(""),
            scope.series,
            None,
            false,
            false,
        )
        .await?;
    }
    let base = super::base_url(req);
    let mut json = String::with_capacity(64 + rows.len() * 1024);
    json.push('[');
    for (n, row) in rows.iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        render(&mut json, &query, row, &base);
    }
    json.push(']');
    let mut resp = Response::builder().content_type("application/dicom+json");
    for w in &warnings {
        resp = resp.header(header::WARNING, format!("299 glia \"{w}\""));
    }
    Ok(resp.body(Body::from_string(json)))
}

/// One result as a DICOM JSON object, attributes in tag order.
fn render(out: &mut String, query: &Query, row: &ResultRow, base: &str) {
    let uid = |kw| {
        row.get(catalog::by_keyword(kw).expect("unique keys are in the catalogue"))
            .unwrap_or("")
            .to_string()
    };
    let mut url = format!("{base}/studies/{}", uid("StudyInstanceUID"));
    if query.level >= Level::Series {
        url.push_str(&format!("/series/{}", uid("SeriesInstanceUID")));
    }
    if query.level >= Level::Image {
        url.push_str(&format!("/instances/{}", uid("SOPInstanceUID")));
    }
    let mut attrs: Vec<(Tag, dicom_core::VR, Option<String>)> = query
        .returns
        .iter()
        .map(|a| (a.tag, a.vr, row.get(a).map(str::to_string)))
        .collect();
    for key in &query.sequences {
        attrs.push((key.seq.tag, dicom_core::VR::SQ, None));
    }
    attrs.push((
        tags::SPECIFIC_CHARACTER_SET,
        dicom_core::VR::CS,
        Some("ISO_IR 192".into()),
    ));
    attrs.push((
        tags::INSTANCE_AVAILABILITY,
        dicom_core::VR::CS,
        Some("ONLINE".into()),
    ));
    attrs.push((tags::RETRIEVE_URL, dicom_core::VR::UR, Some(url)));
    attrs.sort_by_key(|(t, _, _)| *t);
    attrs.dedup_by_key(|(t, _, _)| *t);
    out.push('{');
    for (n, (tag, vr, value)) in attrs.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        if *vr == dicom_core::VR::SQ {
            write_sequence(out, query, row, *tag);
        } else {
            write_text_attribute(out, *tag, *vr, value.as_deref());
        }
    }
    out.push('}');
}

/// A returned sequence: its stored items with the key's item attributes.
fn write_sequence(out: &mut String, query: &Query, row: &ResultRow, tag: Tag) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "\"{:04X}{:04X}\":{{\"vr\":\"SQ\"",
        tag.group(),
        tag.element()
    );
    let key = query.sequences.iter().find(|k| k.seq.tag == tag);
    let stored = row.sequences.iter().find(|s| s.seq.tag == tag);
    if let (Some(key), Some(stored)) = (key, stored) {
        if !stored.items.is_empty() {
            out.push_str(",\"Value\":[");
            for (n, values) in stored.items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push('{');
                let mut attrs: Vec<_> = key.items.iter().map(|(a, _)| *a).collect();
                attrs.sort_by_key(|a| a.tag);
                for (m, a) in attrs.iter().enumerate() {
                    if m > 0 {
                        out.push(',');
                    }
                    let v = values
                        .iter()
                        .find(|(t, _)| *t == a.tag)
                        .map(|(_, v)| v.as_str());
                    write_text_attribute(out, a.tag, a.vr, v);
                }
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
}
