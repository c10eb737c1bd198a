//! Executing a `Query` against the index: one SELECT over patient ⋈ study ⋈ series ⋈
//! instance (joined down to the query level), whatever the number of results.

use sea_orm::sea_query::{
    Alias, Cond, Expr, JoinType, LikeExpr, Order, SelectStatement, SimpleExpr,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult};

use super::catalog::{Kind, CATALOG};
use super::sequence::SeqValue;
use super::{Attr, Level, Matcher, Query, QueryError};
use crate::db::repo::StoredInstance;

/// One matching entity: the value of every catalogue attribute at or above the
/// query level (as strings; `None` when empty), and where the object lives
/// (image level only).
#[derive(Debug, Clone)]
pub struct ResultRow {
    values: Vec<(&'static Attr, Option<String>)>,
    pub instance: Option<StoredInstance>,
    /// Row ids of the result's study and series (only read when a query returns
    /// sequences, which are looked up by them).
    owner_ids: [Option<i64>; 2],
    /// Returned sequences (one per sequence key of the query).
    pub sequences: Vec<SeqValue>,
}

impl ResultRow {
    /// The row id of the result's study or series, when it was read.
    pub fn owner_id(&self, level: Level) -> Option<i64> {
        match level {
            Level::Study => self.owner_ids[0],
            Level::Series => self.owner_ids[1],
            _ => None,
        }
    }

    /// The value of an attribute (`None` when empty or not at this level).
    pub fn get(&self, attr: &Attr) -> Option<&str> {
        self.values
            .iter()
            .find(|(a, _)| a.tag == attr.tag)
            .and_then(|(_, v)| v.as_deref())
    }
}

pub(super) fn col(column: &str) -> Expr {
    let (t, c) = column.split_once('.').expect("alias.column");
    Expr::col((Alias::new(t), Alias::new(c)))
}

fn join(q: &mut SelectStatement, table: &str, alias: &str, fk: &str, parent: &str) {
    q.join_as(
        JoinType::InnerJoin,
        Alias::new(table),
        Alias::new(alias),
        Expr::col((Alias::new(alias), Alias::new(fk)))
            .equals((Alias::new(parent), Alias::new("id"))),
    );
}

/// Escape a literal for a LIKE with `!` as escape character.
fn like_literal(v: &str) -> String {
    v.replace('!', "!!").replace('%', "!%").replace('_', "!_")
}

/// The SQL condition of one matcher on `column` (a key's own column, or an item
/// value column of `sequence_item`).
pub(super) fn condition_on(column: &str, attr: &Attr, m: &Matcher) -> SimpleExpr {
    condition_impl(column, false, attr, m)
}

fn condition(attr: &Attr, m: &Matcher, case_insensitive_names: bool) -> SimpleExpr {
    if let (Matcher::Fuzzy(words), Kind::PersonName { fuzzy_column, .. }) = (m, attr.kind) {
        let mut all = Cond::all();
        for w in words {
            let p = format!("% {}%", like_literal(w));
            all = all.add(col(fuzzy_column).like(LikeExpr::new(p).escape('!')));
        }
        return all.into();
    }
    let (column, upper) = match attr.kind {
        Kind::PersonName { norm_column, .. } if case_insensitive_names => (norm_column, true),
        _ => (attr.column, false),
    };
    condition_impl(column, upper, attr, m)
}

fn condition_impl(column: &str, upper: bool, attr: &Attr, m: &Matcher) -> SimpleExpr {
    let norm = |v: &str| {
        if upper {
            v.to_uppercase()
        } else {
            v.to_string()
        }
    };
    match m {
        Matcher::Universal => Expr::value(true),
        // Only person names have folded words; elsewhere a fuzzy value matches nothing.
        Matcher::Fuzzy(_) => Expr::value(false),
        Matcher::Single(v) => col(column).eq(norm(v)),
        Matcher::Wildcard(p) => col(column).like(LikeExpr::new(norm(p)).escape('\\')),
        Matcher::Int(n) => col(column).eq(*n),
        Matcher::List(items) if attr.kind == Kind::List => {
            let mut any = Cond::any();
            for item in items {
                // The item alone, first, last or in the middle of the list.
                let lit = like_literal(item);
                for p in [
                    lit.clone(),
                    format!("{lit}\\%"),
                    format!("%\\{lit}"),
                    format!("%\\{lit}\\%"),
                ] {
                    any = any.add(col(column).like(LikeExpr::new(p).escape('!')));
                }
            }
            any.into()
        }
        Matcher::List(items) => col(column).is_in(items.iter().map(|s| norm(s))),
        Matcher::Range { from, to } => {
            let mut all = Cond::all();
            if let Some(f) = from {
                all = all.add(col(column).gte(f.clone()));
            }
            if let Some(t) = to {
                all = all.add(col(column).lte(t.clone()));
            }
            all.into()
        }
    }
}

/// StudyDate + StudyTime as one date-time range (PS3.4 C.2.2.2.5.1).
fn combined_datetime(query: &Query) -> Option<SimpleExpr> {
    use dicom_dictionary_std::tags;
    let (Some(Matcher::Range { from: df, to: dt }), Some(Matcher::Range { from: tf, to: tt })) = (
        query.condition(tags::STUDY_DATE),
        query.condition(tags::STUDY_TIME),
    ) else {
        return None;
    };
    let (d, t) = (col("st.study_date"), col("st.study_time"));
    let mut all = Cond::all();
    if let Some(df) = df {
        let tf = tf.clone().unwrap_or_else(|| "000000".into());
        all = all.add(
            Cond::any().add(d.clone().gt(df.clone())).add(
                Cond::all()
                    .add(d.clone().eq(df.clone()))
                    .add(t.clone().gte(tf)),
            ),
        );
    }
    if let Some(dt) = dt {
        let tt = tt.clone().unwrap_or_else(|| "235959.999999".into());
        all = all.add(
            Cond::any()
                .add(d.clone().lt(dt.clone()))
                .add(Cond::all().add(d.eq(dt.clone())).add(t.lte(tt))),
        );
    }
    Some(all.into())
}

/// Attributes selected for a level: the catalogue at or above it.
fn selected(level: Level) -> impl Iterator<Item = (usize, &'static Attr)> {
    CATALOG
        .iter()
        .enumerate()
        .filter(move |(_, a)| a.level <= level)
}

/// Build the SELECT for a query (exposed for tests and EXPLAIN).
pub fn build(query: &Query, max_rows: Option<u64>) -> SelectStatement {
    let mut q = SelectStatement::new();
    q.from_as(Alias::new("patient"), Alias::new("p"));
    if query.level >= Level::Study {
        join(&mut q, "study", "st", "patient_fk", "p");
    }
    if query.level >= Level::Series {
        join(&mut q, "series", "se", "study_fk", "st");
    }
    if query.level >= Level::Image {
        join(&mut q, "instance", "i", "series_fk", "se");
    }
    for (i, a) in selected(query.level) {
        let scoped = (a.kind == Kind::Count && a.level == Level::Patient)
            .then(|| super::scope::patient_count(&query.scope, a.column))
            .flatten();
        q.expr_as(
            scoped.unwrap_or_else(|| col(a.column).into()),
            Alias::new(format!("c{i}")),
        );
    }
    if query.level == Level::Image {
        q.expr_as(col("i.blob_key"), Alias::new("blob_key"));
        q.expr_as(col("i.size_bytes"), Alias::new("size_bytes"));
    }
    if !query.sequences.is_empty() {
        q.expr_as(col("st.id"), Alias::new("owner_study"));
        if query.level >= Level::Series {
            q.expr_as(col("se.id"), Alias::new("owner_series"));
        }
    }
    for key in &query.sequences {
        if let Some(e) = super::sequence::condition(key) {
            q.and_where(e);
        }
    }
    let combined = if query.options.combined_datetime {
        combined_datetime(query)
    } else {
        None
    };
    for c in &query.conditions {
        if combined.is_some()
            && (c.attr.tag == dicom_dictionary_std::tags::STUDY_DATE
                || c.attr.tag == dicom_dictionary_std::tags::STUDY_TIME)
        {
            continue;
        }
        q.and_where(condition(
            c.attr,
            &c.matcher,
            query.options.case_insensitive_names,
        ));
    }
    if let Some(e) = combined {
        q.and_where(e);
    }
    if let Some(e) = super::scope::predicate(&query.scope, query.level) {
        q.and_where(e);
    }
    q.order_by(
        (Alias::new(query.level.alias()), Alias::new("id")),
        Order::Asc,
    );
    let limit = match (query.limit, max_rows) {
        (Some(l), Some(m)) => Some(l.min(m)),
        (l, m) => l.or(m),
    };
    if let Some(l) = limit {
        q.limit(l);
    }
    if query.offset > 0 {
        q.offset(query.offset);
    }
    q
}

fn read_row(row: &QueryResult, level: Level, owners: bool) -> Result<ResultRow, QueryError> {
    let mut values = Vec::new();
    for (i, a) in selected(level) {
        let name = format!("c{i}");
        let v = match a.kind {
            Kind::Int => row
                .try_get::<Option<i32>>("", &name)?
                .map(|n| n.to_string()),
            Kind::Count => row
                .try_get::<Option<i64>>("", &name)?
                .map(|n| n.to_string()),
            _ => row.try_get::<Option<String>>("", &name)?,
        };
        values.push((a, v.filter(|s| !s.is_empty())));
    }
    let instance = if level == Level::Image {
        let get = |kw: &str| {
            values
                .iter()
                .find(|(a, _)| a.keyword == kw)
                .and_then(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Some(StoredInstance {
            sop_instance_uid: get("SOPInstanceUID"),
            sop_class_uid: get("SOPClassUID"),
            transfer_syntax_uid: get("AvailableTransferSyntaxUID"),
            blob_key: row.try_get::<String>("", "blob_key")?,
            size_bytes: row.try_get::<i64>("", "size_bytes")?,
        })
    } else {
        None
    };
    let owner_ids = if owners {
        [
            row.try_get::<Option<i64>>("", "owner_study")?,
            if level >= Level::Series {
                row.try_get::<Option<i64>>("", "owner_series")?
            } else {
                None
            },
        ]
    } else {
        [None, None]
    };
    Ok(ResultRow {
        values,
        instance,
        owner_ids,
        sequences: Vec::new(),
    })
}

/// The instances a retrieve (C-MOVE, C-GET, WADO) addresses: the query's conditions at
/// IMAGE level, selecting only where each object lives. One statement.
pub async fn instances(
    db: &DatabaseConnection,
    query: &Query,
    max_matches: Option<u64>,
) -> Result<Vec<StoredInstance>, QueryError> {
    let mut q = query.clone();
    q.level = Level::Image;
    let mut stmt = build(&q, max_matches.map(|m| m + 1));
    stmt.clear_selects();
    for c in [
        "i.sop_instance_uid",
        "i.sop_class_uid",
        "i.transfer_syntax_uid",
        "i.blob_key",
        "i.size_bytes",
    ] {
        stmt.expr_as(col(c), Alias::new(c.trim_start_matches("i.")));
    }
    let rows = db.query_all(db.get_database_backend().build(&stmt)).await?;
    if let Some(m) = max_matches {
        if rows.len() as u64 > m {
            return Err(QueryError::TooManyMatches(m));
        }
    }
    rows.iter()
        .map(|r| {
            Ok(StoredInstance {
                sop_instance_uid: r.try_get("", "sop_instance_uid")?,
                sop_class_uid: r.try_get("", "sop_class_uid")?,
                transfer_syntax_uid: r.try_get("", "transfer_syntax_uid")?,
                blob_key: r.try_get("", "blob_key")?,
                size_bytes: r.try_get("", "size_bytes")?,
            })
        })
        .collect()
}

/// An instance as the DICOMweb retrieve paths need it: where it lives, its place in
/// the hierarchy, and (when asked for) its precomputed metadata and byte layout.
#[derive(Debug, Clone)]
pub struct WebInstance {
    pub stored: StoredInstance,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub number_of_frames: Option<i32>,
    /// DICOM JSON with the base marker (`crate::dicom_json`); `None` for instances
    /// indexed before it was precomputed.
    pub metadata: Option<String>,
    /// `crate::ingest::layout::Layout` as JSON.
    pub layout: Option<String>,
}

/// The instances a DICOMweb retrieve addresses (the query's conditions at IMAGE
/// level), ordered by series then instance number. One statement.
pub async fn web_instances(
    db: &DatabaseConnection,
    query: &Query,
    with_metadata: bool,
    with_layout: bool,
) -> Result<Vec<WebInstance>, QueryError> {
    let mut q = query.clone();
    q.level = Level::Image;
    let mut stmt = build(&q, None);
    stmt.clear_selects();
    stmt.clear_order_by();
    let mut cols = vec![
        "i.sop_instance_uid",
        "i.sop_class_uid",
        "i.transfer_syntax_uid",
        "i.blob_key",
        "i.size_bytes",
        "i.number_of_frames",
        "st.study_instance_uid",
        "se.series_instance_uid",
    ];
    if with_metadata {
        cols.push("i.metadata");
    }
    if with_layout {
        cols.push("i.layout");
    }
    for c in &cols {
        let (_, name) = c.split_once('.').expect("alias.column");
        stmt.expr_as(col(c), Alias::new(name));
    }
    stmt.order_by((Alias::new("se"), Alias::new("id")), Order::Asc);
    stmt.order_by((Alias::new("i"), Alias::new("instance_number")), Order::Asc);
    stmt.order_by((Alias::new("i"), Alias::new("id")), Order::Asc);
    let rows = db.query_all(db.get_database_backend().build(&stmt)).await?;
    rows.iter()
        .map(|r| {
            Ok(WebInstance {
                stored: StoredInstance {
                    sop_instance_uid: r.try_get("", "sop_instance_uid")?,
                    sop_class_uid: r.try_get("", "sop_class_uid")?,
                    transfer_syntax_uid: r.try_get("", "transfer_syntax_uid")?,
                    blob_key: r.try_get("", "blob_key")?,
                    size_bytes: r.try_get("", "size_bytes")?,
                },
                study_instance_uid: r.try_get("", "study_instance_uid")?,
                series_instance_uid: r.try_get("", "series_instance_uid")?,
                number_of_frames: r.try_get("", "number_of_frames")?,
                metadata: if with_metadata {
                    r.try_get("", "metadata")?
                } else {
                    None
                },
                layout: if with_layout {
                    r.try_get("", "layout")?
                } else {
                    None
                },
            })
        })
        .collect()
}

/// Run a query. With `max_matches`, more matches than that is an error
/// (`TooManyMatches`) rather than a flood.
pub async fn execute(
    db: &DatabaseConnection,
    query: &Query,
    max_matches: Option<u64>,
) -> Result<Vec<ResultRow>, QueryError> {
    let stmt = build(query, max_matches.map(|m| m + 1));
    let rows = db.query_all(db.get_database_backend().build(&stmt)).await?;
    if let Some(m) = max_matches {
        if rows.len() as u64 > m {
            return Err(QueryError::TooManyMatches(m));
        }
    }
    let owners = !query.sequences.is_empty();
    let mut rows = rows
        .iter()
        .map(|r| read_row(r, query.level, owners))
        .collect::<Result<Vec<_>, _>>()?;
    super::sequence::fill(db, &query.sequences, &mut rows).await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::catalog::by_keyword;

    #[test]
    fn list_column_values_are_bound() {
        let mut q = Query::new(Level::Study);
        q.add(
            by_keyword("ModalitiesInStudy").unwrap(),
            Matcher::List(vec!["CT".into()]),
        );
        let (sql, values) = build(&q, None).build(sea_orm::sea_query::SqliteQueryBuilder);
        assert!(sql.contains("LIKE ? ESCAPE '!'"), "{sql}");
        assert_eq!(values.0.len(), 4, "{sql}");
    }
}
