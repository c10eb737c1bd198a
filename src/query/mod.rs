//! The one query model. C-FIND identifiers (and QIDO-RS parameters) become a typed
//! `Query` (level, matching keys with their matching type, return keys, limit and
//! offset), executed by `exec` in one SQL statement whatever the result size, with the
//! same semantics on every surface.
//!
//! `catalog` maps DICOM keys to index columns, `matching` parses values into matchers,
//! `dimse` converts identifiers to queries and results back to identifiers.

pub mod catalog;
pub mod dimse;
pub mod exec;
pub mod matching;
pub mod scope;
pub mod sequence;

use dicom_core::Tag;

pub use catalog::{Attr, Kind};
pub use exec::{execute, instances, web_instances, ResultRow, WebInstance};
pub use matching::Matcher;
pub use scope::{StudyFilter, StudyScope};

/// Query/Retrieve level, ordered from the top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    /// Parse a QueryRetrieveLevel value.
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim_matches(|c: char| c == ' ' || c == '\0') {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" => Some(Level::Image),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }

    /// Table alias of the level in joined queries.
    pub fn alias(self) -> &'static str {
        match self {
            Level::Patient => "p",
            Level::Study => "st",
            Level::Series => "se",
            Level::Image => "i",
        }
    }
}

/// One matching key.
#[derive(Debug, Clone)]
pub struct Condition {
    pub attr: &'static Attr,
    pub matcher: Matcher,
}

/// Options of a query that come from the surface or the configuration.
#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// Person names match case-insensitively (default; `[query] person_name_case_insensitive`).
    pub case_insensitive_names: bool,
    /// StudyDate + StudyTime ranges combine into one date-time range (PS3.4 C.2.2.2.5.1).
    pub combined_datetime: bool,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            case_insensitive_names: true,
            combined_datetime: false,
        }
    }
}

/// A typed query.
#[derive(Debug, Clone)]
pub struct Query {
    pub level: Level,
    /// Keys with a non-universal matcher.
    pub conditions: Vec<Condition>,
    /// Supported keys to return (matching keys included), in request order.
    pub returns: Vec<&'static Attr>,
    /// Requested keys Glia does not support: returned empty.
    pub unsupported: Vec<(Tag, dicom_core::VR)>,
    /// Whether an unsupported key carried a matching value (C-FIND status 0xFF01).
    pub unsupported_matching: bool,
    /// Sequence keys (sequence matching, one level of items).
    pub sequences: Vec<sequence::SeqKey>,
    pub limit: Option<u64>,
    pub offset: u64,
    pub options: QueryOptions,
    /// Which studies the caller may see (authorisation; `All` by default).
    pub scope: StudyScope,
}

impl Query {
    pub fn new(level: Level) -> Self {
        Self {
            level,
            conditions: Vec::new(),
            returns: Vec::new(),
            unsupported: Vec::new(),
            unsupported_matching: false,
            sequences: Vec::new(),
            limit: None,
            offset: 0,
            options: QueryOptions::default(),
            scope: StudyScope::All,
        }
    }

    /// Add a key (matching or return-only).
    pub fn add(&mut self, attr: &'static Attr, matcher: Matcher) {
        if !self.returns.iter().any(|a| a.tag == attr.tag) {
            self.returns.push(attr);
        }
        if matcher != Matcher::Universal {
            self.conditions.push(Condition { attr, matcher });
        }
    }

    /// The condition on a key, if any.
    pub fn condition(&self, tag: Tag) -> Option<&Matcher> {
        self.conditions
            .iter()
            .find(|c| c.attr.tag == tag)
            .map(|c| &c.matcher)
    }
}

/// Why a query cannot run. Messages never echo values (they could be patient data).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("QueryRetrieveLevel is missing")]
    MissingLevel,
    #[error("QueryRetrieveLevel is not valid for this information model")]
    BadLevel,
    #[error("{keyword}: {reason}")]
    BadValue {
        keyword: &'static str,
        reason: String,
    },
    #[error("key {0} is below the query level")]
    KeyBelowLevel(&'static str),
    #[error("unique key {0} of a higher level is required (hierarchical query)")]
    MissingUniqueKey(&'static str),
    #[error("more than {0} matches; narrow the query")]
    TooManyMatches(u64),
    #[error("index failed: {0}")]
    Db(#[from] sea_orm::DbErr),
}

impl QueryError {
    /// A stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::MissingLevel => "missing_level",
            QueryError::BadLevel => "bad_level",
            QueryError::BadValue { .. } => "bad_value",
            QueryError::KeyBelowLevel(_) => "key_below_level",
            QueryError::MissingUniqueKey(_) => "missing_unique_key",
            QueryError::TooManyMatches(_) => "too_many_matches",
            QueryError::Db(_) => "index",
        }
    }
}
