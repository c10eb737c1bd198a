//! Sequence matching (PS3.4 C.2.2.2.6) for one level of items: the sequences the index
//! keeps (`SEQUENCES`, each with its item keys), the keys of a query that name them,
//! the SQL that matches them (an `EXISTS` over `sequence_item`, one self-join per
//! matching item key so that all of them must hold in the same item), the values
//! the ingest path extracts, and the items returned with each result (one extra
//! statement per query, whatever the number of results).

use std::collections::HashMap;

use dicom_core::value::Value;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use sea_orm::sea_query::{Alias, Cond, Expr, JoinType, Order, SelectStatement, SimpleExpr};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::catalog::{Attr, Kind};
use super::exec::{col, condition_on, ResultRow};
use super::{Level, Matcher, QueryError};
use crate::db::record::SequenceValue;

/// A sequence the index keeps, with the item attributes it can match and return.
#[derive(Debug)]
pub struct SeqAttr {
    pub tag: Tag,
    pub keyword: &'static str,
    pub level: Level,
    pub items: &'static [Attr],
}

const fn item(tag: Tag, keyword: &'static str, vr: VR, level: Level, kind: Kind) -> Attr {
    Attr {
        tag,
        keyword,
        vr,
        level,
        column: "x.value",
        kind,
    }
}

static CODE_ITEMS: &[Attr] = &[
    item(
        tags::CODE_VALUE,
        "CodeValue",
        VR::SH,
        Level::Study,
        Kind::Text,
    ),
    item(
        tags::CODING_SCHEME_DESIGNATOR,
        "CodingSchemeDesignator",
        VR::SH,
        Level::Study,
        Kind::Text,
    ),
    item(
        tags::CODING_SCHEME_VERSION,
        "CodingSchemeVersion",
        VR::SH,
        Level::Study,
        Kind::Text,
    ),
    item(
        tags::CODE_MEANING,
        "CodeMeaning",
        VR::LO,
        Level::Study,
        Kind::Text,
    ),
];

static REQUEST_ITEMS: &[Attr] = &[
    item(
        tags::REQUESTED_PROCEDURE_ID,
        "RequestedProcedureID",
        VR::SH,
        Level::Series,
        Kind::Text,
    ),
    item(
        tags::SCHEDULED_PROCEDURE_STEP_ID,
        "ScheduledProcedureStepID",
        VR::SH,
        Level::Series,
        Kind::Text,
    ),
    item(
        tags::ACCESSION_NUMBER,
        "AccessionNumber",
        VR::SH,
        Level::Series,
        Kind::Text,
    ),
    item(
        tags::REQUESTED_PROCEDURE_DESCRIPTION,
        "RequestedProcedureDescription",
        VR::LO,
        Level::Series,
        Kind::Text,
    ),
    item(
        tags::SCHEDULED_PROCEDURE_STEP_DESCRIPTION,
        "ScheduledProcedureStepDescription",
        VR::LO,
        Level::Series,
        Kind::Text,
    ),
];

/// Every sequence Glia can match and return.
pub static SEQUENCES: &[SeqAttr] = &[
    SeqAttr {
        tag: tags::PROCEDURE_CODE_SEQUENCE,
        keyword: "ProcedureCodeSequence",
        level: Level::Study,
        items: CODE_ITEMS,
    },
    SeqAttr {
        tag: tags::REQUEST_ATTRIBUTES_SEQUENCE,
        keyword: "RequestAttributesSequence",
        level: Level::Series,
        items: REQUEST_ITEMS,
    },
];

/// Look a sequence up by tag.
pub fn by_tag(tag: Tag) -> Option<&'static SeqAttr> {
    SEQUENCES.iter().find(|s| s.tag == tag)
}

/// Look a sequence up by keyword.
pub fn by_keyword(kw: &str) -> Option<&'static SeqAttr> {
    SEQUENCES.iter().find(|s| s.keyword == kw)
}

impl SeqAttr {
    /// An item key of this sequence.
    pub fn item(&self, tag: Tag) -> Option<&'static Attr> {
        self.items.iter().find(|a| a.tag == tag)
    }

    /// An item key by keyword.
    pub fn item_by_keyword(&self, kw: &str) -> Option<&'static Attr> {
        self.items.iter().find(|a| a.keyword == kw)
    }

    fn level_code(&self) -> i16 {
        level_code(self.level)
    }
}

fn level_code(level: Level) -> i16 {
    match level {
        Level::Patient => 1,
        Level::Study => 2,
        Level::Series => 3,
        Level::Image => 4,
    }
}

/// A sequence key of a query: its item keys, each with its matcher (universal ones
/// are only returned).
#[derive(Debug, Clone)]
pub struct SeqKey {
    pub seq: &'static SeqAttr,
    pub items: Vec<(&'static Attr, Matcher)>,
}

/// The returned items of one sequence of one result.
#[derive(Debug, Clone)]
pub struct SeqValue {
    pub seq: &'static SeqAttr,
    pub items: Vec<Vec<(Tag, String)>>,
}

/// An item's number and attributes, as read back.
type NumberedItem = (i32, Vec<(Tag, String)>);

/// `EXISTS (...)` matching `key` against the items of the level's row, or `None` when
/// the key has no matching item key (it is then only returned).
pub fn condition(key: &SeqKey) -> Option<SimpleExpr> {
    let conds: Vec<_> = key
        .items
        .iter()
        .filter(|(_, m)| *m != Matcher::Universal)
        .collect();
    if conds.is_empty() {
        return None;
    }
    let owner = key.seq.level.alias();
    let mut sub = SelectStatement::new();
    sub.expr(Expr::val(1))
        .from_as(Alias::new("sequence_item"), Alias::new("q0"));
    for (n, (attr, m)) in conds.iter().enumerate() {
        let a = format!("q{n}");
        if n > 0 {
            sub.join_as(
                JoinType::InnerJoin,
                Alias::new("sequence_item"),
                Alias::new(&a),
                Cond::all()
                    .add(col(&format!("{a}.level")).equals((Alias::new("q0"), Alias::new("level"))))
                    .add(
                        col(&format!("{a}.owner_fk"))
                            .equals((Alias::new("q0"), Alias::new("owner_fk"))),
                    )
                    .add(
                        col(&format!("{a}.sequence_tag"))
                            .equals((Alias::new("q0"), Alias::new("sequence_tag"))),
                    )
                    .add(col(&format!("{a}.item")).equals((Alias::new("q0"), Alias::new("item")))),
            );
        }
        sub.and_where(
            col(&format!("{a}.attr_tag")).eq(i64::from(attr.tag.0) << 16 | i64::from(attr.tag.1)),
        );
        sub.and_where(condition_on(&format!("{a}.value"), attr, m));
    }
    sub.and_where(col("q0.level").eq(key.seq.level_code()));
    sub.and_where(col("q0.sequence_tag").eq(tag_code(key.seq.tag)));
    sub.and_where(col("q0.owner_fk").equals((Alias::new(owner), Alias::new("id"))));
    Some(Expr::exists(sub))
}

fn tag_code(t: Tag) -> i64 {
    (i64::from(t.0) << 16) | i64::from(t.1)
}

/// Fill the sequence values of `rows` (one statement). `owner_ids[level]` of a row is
/// the row id of its study / series.
pub async fn fill(
    db: &DatabaseConnection,
    keys: &[SeqKey],
    rows: &mut [ResultRow],
) -> Result<(), QueryError> {
    if keys.is_empty() || rows.is_empty() {
        return Ok(());
    }
    let mut by_level: HashMap<i16, Vec<i64>> = HashMap::new();
    for r in rows.iter() {
        for k in keys {
            if let Some(id) = r.owner_id(k.seq.level) {
                by_level.entry(k.seq.level_code()).or_default().push(id);
            }
        }
    }
    let mut q = SelectStatement::new();
    q.from(Alias::new("sequence_item"));
    for c in [
        "level",
        "owner_fk",
        "sequence_tag",
        "item",
        "attr_tag",
        "value",
    ] {
        q.column(Alias::new(c));
    }
    let mut any = Cond::any();
    for (level, mut ids) in by_level {
        ids.sort_unstable();
        ids.dedup();
        any = any.add(
            Cond::all()
                .add(col("sequence_item.level").eq(level))
                .add(col("sequence_item.owner_fk").is_in(ids)),
        );
    }
    q.cond_where(any);
    q.and_where(col("sequence_item.sequence_tag").is_in(keys.iter().map(|k| tag_code(k.seq.tag))));
    q.order_by(Alias::new("item"), Order::Asc);
    q.order_by(Alias::new("id"), Order::Asc);
    let found = db.query_all(db.get_database_backend().build(&q)).await?;
    // (level, owner, sequence) → item number → attributes.
    let mut items: HashMap<(i16, i64, i64), Vec<NumberedItem>> = HashMap::new();
    for f in &found {
        let level: i16 = f.try_get("", "level")?;
        let owner: i64 = f.try_get("", "owner_fk")?;
        let seq: i64 = f.try_get("", "sequence_tag")?;
        let item: i32 = f.try_get("", "item")?;
        let attr: i64 = f.try_get("", "attr_tag")?;
        let value: String = f.try_get("", "value")?;
        let list = items.entry((level, owner, seq)).or_default();
        let tag = Tag((attr >> 16) as u16, (attr & 0xFFFF) as u16);
        match list.last_mut() {
            Some((n, attrs)) if *n == item => attrs.push((tag, value)),
            _ => list.push((item, vec![(tag, value)])),
        }
    }
    for r in rows.iter_mut() {
        for k in keys {
            let got = r
                .owner_id(k.seq.level)
                .and_then(|id| items.get(&(k.seq.level_code(), id, tag_code(k.seq.tag))))
                .map(|v| v.iter().map(|(_, a)| a.clone()).collect())
                .unwrap_or_default();
            r.sequences.push(SeqValue {
                seq: k.seq,
                items: got,
            });
        }
    }
    Ok(())
}

/// The values of the kept sequences of a data set, for the index.
pub fn extract(obj: &InMemDicomObject) -> Vec<SequenceValue> {
    let mut out = Vec::new();
    for seq in SEQUENCES {
        let Some(el) = obj.get(seq.tag) else {
            continue;
        };
        let Value::Sequence(s) = el.value() else {
            continue;
        };
        for (n, it) in s.items().iter().enumerate() {
            for attr in seq.items {
                let Some(v) = it.get(attr.tag) else {
                    continue;
                };
                let Ok(text) = v.to_str() else { continue };
                let text = text.trim_matches([' ', '\0']);
                if text.is_empty() {
                    continue;
                }
                out.push(SequenceValue {
                    level: level_code(seq.level),
                    sequence_tag: tag_code(seq.tag),
                    item: n as i32,
                    attr_tag: tag_code(attr.tag),
                    value: text.to_string(),
                });
            }
        }
    }
    out
}
