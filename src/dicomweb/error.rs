//! DICOMweb errors, mapped at the edge to HTTP status codes and one JSON error shape:
//! `{"code": "<stable machine-readable code>", "message": "<human text>", "detail": ...}`.
//! Messages never carry patient data; UIDs are named by their attribute, not echoed.

use poem::error::ResponseError;
use poem::http::StatusCode;
use poem::{Body, Response};

use crate::db::DbError;
use crate::ingest::IngestError;
use crate::query::QueryError;
use crate::store::StoreError;

/// Everything a DICOMweb handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DicomWebError {
    /// An addressed study, series, instance, frame or attribute does not exist (or may
    /// not be seen: the answer is the same, so UIDs cannot be probed).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A query parameter or path segment is malformed.
    #[error("parameter {param}: {reason}")]
    BadParam { param: String, reason: String },
    /// The request is malformed in another way.
    #[error("{0}")]
    BadRequest(String),
    /// None of the media types the client accepts can be produced.
    #[error("cannot produce an acceptable representation: {0}")]
    NotAcceptable(String),
    /// The request body's media type is not supported here.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The request body is larger than allowed.
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(u64),
    /// A byte range past the end of the value.
    #[error("requested range not satisfiable (value has {size} bytes)")]
    RangeNotSatisfiable { size: u64 },
    /// The client may not use DICOMweb from where it is.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("index failed")]
    Db(#[from] DbError),
    #[error("blob store failed")]
    Store(#[from] StoreError),
    #[error("ingest failed: {0}")]
    Ingest(#[from] IngestError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DicomWebError {
    /// A bad parameter, named.
    pub fn param(param: impl Into<String>, reason: impl Into<String>) -> Self {
        DicomWebError::BadParam {
            param: param.into(),
            reason: reason.into(),
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DicomWebError::NotFound(_) => "not_found",
            DicomWebError::BadParam { .. } => "bad_parameter",
            DicomWebError::BadRequest(_) => "bad_request",
            DicomWebError::NotAcceptable(_) => "not_acceptable",
            DicomWebError::UnsupportedMediaType(_) => "unsupported_media_type",
            DicomWebError::PayloadTooLarge(_) => "payload_too_large",
            DicomWebError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            DicomWebError::Forbidden(_) => "forbidden",
            DicomWebError::Query(q) => q.code(),
            DicomWebError::Db(_) => "index",
            DicomWebError::Store(_) => "store",
            DicomWebError::Ingest(e) => e.code(),
            DicomWebError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for DicomWebError {
    fn status(&self) -> StatusCode {
        match self {
            DicomWebError::NotFound(_) => StatusCode::NOT_FOUND,
            DicomWebError::BadParam { .. } | DicomWebError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            DicomWebError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            DicomWebError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            DicomWebError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            DicomWebError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            DicomWebError::Forbidden(_) => StatusCode::FORBIDDEN,
            DicomWebError::Query(QueryError::Db(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            DicomWebError::Query(_) => StatusCode::BAD_REQUEST,
            DicomWebError::Ingest(e) if e.is_rejection() => StatusCode::BAD_REQUEST,
            DicomWebError::Db(_)
            | DicomWebError::Store(_)
            | DicomWebError::Ingest(_)
            | DicomWebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = ?self, "DICOMweb request failed");
        }
        let message = self.to_string();
        let body = serde_json::json!({
            "code": self.code(),
            "message": message,
            "detail": message,
        });
        let mut resp = Response::builder()
            .status(status)
            .content_type("application/json")
            .body(Body::from_string(body.to_string()));
        if let DicomWebError::RangeNotSatisfiable { size } = self {
            if let Ok(v) = format!("bytes */{size}").parse() {
                resp.headers_mut()
                    .insert(poem::http::header::CONTENT_RANGE, v);
            }
        }
        resp
    }
}

/// The result type of DICOMweb handlers.
pub type WebResult<T> = Result<T, DicomWebError>;
