//! Matching values (PS3.4 C.2.2.2): parsing a key's value into the kind of matching it
//! asks for (universal, single value, wildcard, UID list, range), validated per VR.

use super::catalog::{Attr, Kind};
use super::QueryError;

/// The matching a key asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Empty value: matches everything; the key is only returned.
    Universal,
    /// Single value matching.
    Single(String),
    /// Wildcard matching (`*` and `?` anywhere), as a SQL LIKE pattern with `\` escapes.
    Wildcard(String),
    /// List of UIDs (or of list-column values).
    List(Vec<String>),
    /// Inclusive range; bounds already normalised for string comparison.
    Range {
        from: Option<String>,
        to: Option<String>,
    },
    /// Integer equality (IS / US keys).
    Int(i64),
    /// Fuzzy person-name matching (QIDO-RS `fuzzymatching=true`): every folded word
    /// (see `db::record::fold_word`) is a prefix of some word of the name.
    Fuzzy(Vec<String>),
}

/// A fuzzy matcher for a person-name value: its words, folded; wildcards dropped.
/// `None` for a value with no word (universal).
pub fn fuzzy(value: &str) -> Option<Matcher> {
    let words: Vec<String> = value
        .split(['^', '=', ' ', '-', ',', '.', '*', '?'])
        .filter(|w| !w.is_empty())
        .map(crate::db::record::fold_word)
        .collect();
    (!words.is_empty()).then_some(Matcher::Fuzzy(words))
}

/// Turn a DICOM wildcard value into a LIKE pattern (escape char `\`).
pub fn like_pattern(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn valid_date(d: &str) -> bool {
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let m: u32 = d[4..6].parse().unwrap_or(0);
    let day: u32 = d[6..8].parse().unwrap_or(0);
    (1..=12).contains(&m) && (1..=31).contains(&day)
}

/// Validate a TM value and return it padded as a lower or an upper bound.
fn time_bound(t: &str, upper: bool) -> Option<String> {
    let (main, frac) = match t.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (t, None),
    };
    if !matches!(main.len(), 2 | 4 | 6) || !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hh: u32 = main[0..2].parse().ok()?;
    if hh > 23 {
        return None;
    }
    if main.len() >= 4 && main[2..4].parse::<u32>().ok()? > 59 {
        return None;
    }
    if main.len() == 6 && main[4..6].parse::<u32>().ok()? > 60 {
        return None;
    }
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) || main.len() != 6
        {
            return None;
        }
    }
    let mut out = main.to_string();
    let pad = if upper { "595959" } else { "000000" };
    out.push_str(&pad[..6 - main.len()]);
    match frac {
        Some(f) => {
            out.push('.');
            out.push_str(f);
            let fill = if upper { '9' } else { '0' };
            out.extend(std::iter::repeat_n(fill, 6 - f.len()));
        }
        None if upper => out.push_str(".999999"),
        None => {}
    }
    Some(out)
}

fn bad(attr: &Attr, reason: &str) -> QueryError {
    QueryError::BadValue {
        keyword: attr.keyword,
        reason: reason.to_string(),
    }
}

/// Parse a key's value into its matcher.
pub fn parse(attr: &Attr, raw: &str) -> Result<Matcher, QueryError> {
    let v = raw.trim_matches(|c: char| c == ' ' || c == '\0');
    if v.is_empty() || v == "*" {
        return Ok(Matcher::Universal);
    }
    if v.len() > 1024 {
        return Err(bad(attr, "value too long"));
    }
    match attr.kind {
        Kind::Count => Ok(Matcher::Universal),
        Kind::Uid | Kind::List => {
            let items: Vec<String> = v
                .split('\\')
                .map(|s| s.trim_matches(|c: char| c == ' ' || c == '\0').to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if attr.kind == Kind::Uid {
                for u in &items {
                    if crate::ingest::uid::check_uid(u).is_err() {
                        return Err(bad(attr, "not a valid UID"));
                    }
                }
            }
            if items.len() == 1 && attr.kind == Kind::Uid {
                Ok(Matcher::Single(
                    items.into_iter().next().unwrap_or_default(),
                ))
            } else {
                Ok(Matcher::List(items))
            }
        }
        Kind::Date => {
            if let Some((a, b)) = v.split_once('-') {
                if b.contains('-') {
                    return Err(bad(attr, "malformed date range"));
                }
                let from = (!a.is_empty()).then(|| a.to_string());
                let to = (!b.is_empty()).then(|| b.to_string());
                for d in from.iter().chain(to.iter()) {
                    if !valid_date(d) {
                        return Err(bad(attr, "malformed date range"));
                    }
                }
                if from.is_none() && to.is_none() {
                    return Err(bad(attr, "empty date range"));
                }
                Ok(Matcher::Range { from, to })
            } else if valid_date(v) {
                Ok(Matcher::Single(v.to_string()))
            } else {
                Err(bad(attr, "malformed date"))
            }
        }
        Kind::Time => {
            let (a, b) = match v.split_once('-') {
                Some((a, b)) => (a, b),
                None => (v, v),
            };
            let from = if a.is_empty() {
                None
            } else {
                Some(time_bound(a, false).ok_or_else(|| bad(attr, "malformed time"))?)
            };
            let to = if b.is_empty() {
                None
            } else {
                Some(time_bound(b, true).ok_or_else(|| bad(attr, "malformed time"))?)
            };
            Ok(Matcher::Range { from, to })
        }
        Kind::Int => v
            .trim()
            .parse::<i64>()
            .map(Matcher::Int)
            .map_err(|_| bad(attr, "not an integer")),
        Kind::Text | Kind::PersonName { .. } => {
            if v.contains('*') || v.contains('?') {
                Ok(Matcher::Wildcard(like_pattern(v)))
            } else {
                Ok(Matcher::Single(v.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::catalog::by_keyword;

    fn p(kw: &str, v: &str) -> Result<Matcher, QueryError> {
        parse(by_keyword(kw).unwrap(), v)
    }

    #[test]
    fn kinds_of_matching() {
        assert_eq!(p("PatientName", "").unwrap(), Matcher::Universal);
        assert_eq!(p("PatientName", "*").unwrap(), Matcher::Universal);
        assert_eq!(
            p("PatientName", "MUE*").unwrap(),
            Matcher::Wildcard("MUE%".into())
        );
        assert_eq!(
            p("PatientID", "A?C*").unwrap(),
            Matcher::Wildcard("A_C%".into())
        );
        assert_eq!(
            p("PatientID", "50%_off").unwrap(),
            Matcher::Single("50%_off".into())
        );
        assert_eq!(
            p("PatientID", "5%*").unwrap(),
            Matcher::Wildcard("5\\%%".into())
        );
        assert_eq!(
            p("StudyInstanceUID", "1.2.3\\1.2.4").unwrap(),
            Matcher::List(vec!["1.2.3".into(), "1.2.4".into()])
        );
        assert!(p("StudyInstanceUID", "1.2.x").is_err());
        assert_eq!(
            p("StudyDate", "20240101-20241231").unwrap(),
            Matcher::Range {
                from: Some("20240101".into()),
                to: Some("20241231".into())
            }
        );
        assert_eq!(
            p("StudyDate", "-20240101").unwrap(),
            Matcher::Range {
                from: None,
                to: Some("20240101".into())
            }
        );
        assert!(p("StudyDate", "2024-13-45").is_err());
        assert!(p("StudyDate", "20241345").is_err());
        assert!(p("StudyDate", "'; DROP TABLE study; --").is_err());
        assert_eq!(
            p("StudyTime", "10-1130").unwrap(),
            Matcher::Range {
                from: Some("100000".into()),
                to: Some("113059.999999".into())
            }
        );
        assert_eq!(
            p("StudyTime", "1015").unwrap(),
            Matcher::Range {
                from: Some("101500".into()),
                to: Some("101559.999999".into())
            }
        );
        assert!(p("StudyTime", "2561").is_err());
        assert_eq!(p("SeriesNumber", "3").unwrap(), Matcher::Int(3));
        assert!(p("SeriesNumber", "x").is_err());
        assert_eq!(
            p("ModalitiesInStudy", "MR\\CT").unwrap(),
            Matcher::List(vec!["MR".into(), "CT".into()])
        );
    }
}
