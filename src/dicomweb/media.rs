//! Content negotiation for DICOMweb (PS3.18 §8.7): the `Accept` header (or the
//! `accept` query parameter, which wins) parsed into media ranges, and the choice of
//! a transfer syntax for `application/dicom` parts.

use poem::Request;

use super::{DicomWebError, WebResult};
use crate::transcode::{EXPLICIT_VR_LE, IMPLICIT_VR_LE};

/// One media range of an Accept header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    /// `type/subtype`, lower-cased (`*/*`, `multipart/related`, ...).
    pub essence: String,
    /// Parameters, names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
    pub q: f32,
}

impl MediaRange {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Does this range admit `essence` (`type/subtype`)?
    pub fn admits(&self, essence: &str) -> bool {
        if self.essence == "*/*" || self.essence == essence {
            return true;
        }
        match self.essence.strip_suffix("/*") {
            Some(t) => essence.split('/').next() == Some(t),
            None => false,
        }
    }
}

/// Split on `sep` outside double quotes.
fn split_quoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// Parse an Accept header value (or a Content-Type, as one range).
pub fn parse_accept(value: &str) -> Vec<MediaRange> {
    let mut out: Vec<MediaRange> = split_quoted(value, ',')
        .into_iter()
        .filter_map(|part| {
            let mut pieces = split_quoted(part, ';').into_iter();
            let essence = pieces.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let mut params = Vec::new();
            let mut q = 1.0;
            for p in pieces {
                let Some((n, v)) = p.split_once('=') else {
                    continue;
                };
                let n = n.trim().to_ascii_lowercase();
                let v = v.trim().trim_matches('"').to_string();
                if n == "q" {
                    q = v.parse().unwrap_or(1.0);
                } else {
                    params.push((n, v));
                }
            }
            Some(MediaRange { essence, params, q })
        })
        .filter(|m| m.q > 0.0)
        .collect();
    out.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    out
}

/// The media ranges a request accepts: the `accept` query parameter if present, else
/// the Accept header, else `*/*`.
pub fn accepted(req: &Request) -> Vec<MediaRange> {
    let from_query = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "accept")
            .map(|(_, v)| v.into_owned())
    });
    let raw = from_query.or_else(|| {
        req.headers()
            .get(poem::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let ranges = raw.map(|r| parse_accept(&r)).unwrap_or_default();
    if ranges.is_empty() {
        parse_accept("*/*")
    } else {
        ranges
    }
}

/// What to send an instance as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxChoice {
    /// As stored (`transfer-syntax=*`, or the requested syntax is the stored one).
    AsStored,
    /// Re-encoded (decompressed when needed) in this uncompressed syntax.
    Uncompressed(&'static str),
}

/// The transfer syntax the client wants for `application/dicom`, as a request-wide
/// answer: `None` = as stored (`*`), `Some(uid)` otherwise. PS3.18 §8.7.3.5.2: with
/// no `transfer-syntax` parameter the default is Explicit VR Little Endian.
pub fn dicom_transfer_syntax(ranges: &[MediaRange]) -> WebResult<Option<String>> {
    for r in ranges {
        let ok = match r.essence.as_str() {
            "multipart/related" => r
                .param("type")
                .map(|t| t.eq_ignore_ascii_case("application/dicom"))
                .unwrap_or(true),
            "application/dicom" | "*/*" | "multipart/*" | "application/*" => true,
            _ => false,
        };
        if !ok {
            continue;
        }
        return Ok(match r.param("transfer-syntax") {
            Some("*") => None,
            Some(ts) => Some(ts.to_string()),
            None => Some(EXPLICIT_VR_LE.to_string()),
        });
    }
    Err(DicomWebError::NotAcceptable(
        "this resource is available as multipart/related; type=\"application/dicom\"".into(),
    ))
}

/// How to send one instance stored in `stored_ts` when the client asked for `wanted`
/// (`None` = as stored). `None` when it cannot be produced.
pub fn choose_syntax(stored_ts: &str, wanted: Option<&str>) -> Option<SyntaxChoice> {
    match wanted {
        None => Some(SyntaxChoice::AsStored),
        Some(w) if w == stored_ts => Some(SyntaxChoice::AsStored),
        Some(EXPLICIT_VR_LE) => Some(SyntaxChoice::Uncompressed(EXPLICIT_VR_LE)),
        Some(IMPLICIT_VR_LE) => Some(SyntaxChoice::Uncompressed(IMPLICIT_VR_LE)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        let r = parse_accept(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*, application/json;q=0.5",
        );
        assert_eq!(r[0].essence, "multipart/related");
        assert_eq!(r[0].param("type"), Some("application/dicom"));
        assert_eq!(dicom_transfer_syntax(&r).unwrap(), None);
        let r = parse_accept("multipart/related; type=application/dicom");
        assert_eq!(
            dicom_transfer_syntax(&r).unwrap().as_deref(),
            Some(EXPLICIT_VR_LE)
        );
        let r = parse_accept("image/png");
        assert!(dicom_transfer_syntax(&r).is_err());
        assert!(parse_accept("image/*")[0].admits("image/jpeg"));
        assert_eq!(
            choose_syntax("1.2.840.10008.1.2.4.50", Some(EXPLICIT_VR_LE)),
            Some(SyntaxChoice::Uncompressed(EXPLICIT_VR_LE))
        );
        assert_eq!(
            choose_syntax(EXPLICIT_VR_LE, Some("1.2.840.10008.1.2.4.50")),
            None
        );
    }
}
