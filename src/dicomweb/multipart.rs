//! Streamed `multipart/related` response bodies (RFC 2387, PS3.18 §8.7.3.2): parts are
//! written as they are produced, so a study goes out without being held in memory.

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use poem::{Body, Response};

use super::WebResult;

/// The body of one part.
pub enum PartBody {
    Bytes(Bytes),
    Stream(BoxStream<'static, std::io::Result<Bytes>>),
}

/// One part of a multipart/related response.
pub struct Part {
    /// The part's Content-Type (e.g. `application/dicom; transfer-syntax=...`).
    pub content_type: String,
    /// Optional Content-Location (e.g. the frame's or instance's URL).
    pub location: Option<String>,
    pub body: PartBody,
}

/// A fresh random boundary.
pub fn new_boundary() -> String {
    format!("glia-{}", uuid::Uuid::new_v4().simple())
}

fn header(boundary: &str, part: &Part) -> Bytes {
    let mut h = format!("--{boundary}\r\nContent-Type: {}\r\n", part.content_type);
    if let Some(loc) = &part.location {
        h.push_str(&format!("Content-Location: {loc}\r\n"));
    }
    h.push_str("\r\n");
    Bytes::from(h)
}

/// A streamed multipart/related response whose parts are of media type `part_type`.
/// A part that fails after the response has started aborts the body (the client sees
/// a truncated message rather than a wrong one).
pub fn response(
    parts: BoxStream<'static, WebResult<Part>>,
    part_type: &str,
    boundary: String,
) -> Response {
    let end = Bytes::from(format!("--{boundary}--\r\n"));
    let b = boundary.clone();
    let body = parts
        .flat_map(move |p| -> BoxStream<'static, std::io::Result<Bytes>> {
            match p {
                Ok(part) => {
                    let head = stream::once(futures::future::ready(Ok(header(&b, &part))));
                    let tail =
                        stream::once(futures::future::ready(Ok(Bytes::from_static(b"\r\n"))));
                    let body: BoxStream<'static, std::io::Result<Bytes>> = match part.body {
                        PartBody::Bytes(bytes) => {
                            stream::once(futures::future::ready(Ok(bytes))).boxed()
                        }
                        PartBody::Stream(s) => s,
                    };
                    head.chain(body).chain(tail).boxed()
                }
                Err(e) => {
                    tracing::warn!(code = e.code(), error = %e, "multipart response aborted");
                    stream::once(futures::future::ready(Err(std::io::Error::other(
                        e.to_string(),
                    ))))
                    .boxed()
                }
            }
        })
        .chain(stream::once(futures::future::ready(Ok(end))));
    Response::builder()
        .content_type(format!(
            "multipart/related; type=\"{part_type}\"; boundary={boundary}"
        ))
        .body(Body::from_bytes_stream(body))
}
