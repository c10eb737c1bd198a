//! DICOMweb (PS3.18) on poem, under `/dicom-web` (and WADO-URI at `/wado`): a thin
//! surface over the one ingest path (STOW-RS), the one query model (QIDO-RS, and the
//! instance resolution of every retrieve) and the blob store (WADO-RS, WADO-URI).
//!
//! One file per service: `qido`, `retrieve` (instances as multipart/related),
//! `metadata`, `frames` + `bulkdata` (ranged reads by the layout recorded at ingest),
//! `stow`, `rendered` (pipeline in `render_image`, parameters in `render_params`),
//! `wado_uri`; `multipart` and `media` are shared helpers, `error`
//! maps failures to HTTP. Access is decided in one place, the HTTP authorisation
//! middleware (`crate::http::authz`): every search and retrieve resolves through the
//! query model with the caller's study scope (`crate::auth::context::scope`).

pub mod bulkdata;
pub mod error;
pub mod frames;
pub mod media;
pub mod metadata;
pub mod multipart;
pub mod qido;
pub mod render_image;
pub mod render_params;
pub mod rendered;
pub mod retrieve;
pub mod stow;
pub mod wado_uri;

use dicom_dictionary_std::tags;
use poem::web::Data;
use poem::{get, Endpoint, Request, Route};

use crate::app::AppState;
use crate::query::{catalog, Level, Matcher, Query, WebInstance};
pub use error::{DicomWebError, WebResult};

/// The `/dicom-web` route table.
pub fn routes() -> impl Endpoint {
    let r = Route::new()
        .at("/studies", get(qido::studies).post(stow::store))
        .at("/series", get(qido::all_series))
        .at("/instances", get(qido::all_instances))
        .at(
            "/studies/:study",
            get(retrieve::retrieve).post(stow::store_in_study),
        )
        .at("/studies/:study/metadata", get(metadata::metadata))
        .at("/studies/:study/series", get(qido::study_series))
        .at("/studies/:study/instances", get(qido::study_instances))
        .at("/studies/:study/series/:series", get(retrieve::retrieve))
        .at(
            "/studies/:study/series/:series/metadata",
            get(metadata::metadata),
        )
        .at(
            "/studies/:study/series/:series/instances",
            get(qido::series_instances),
        )
        .at(
            "/studies/:study/series/:series/instances/:instance",
            get(retrieve::retrieve),
        )
        .at(
            "/studies/:study/series/:series/instances/:instance/metadata",
            get(metadata::metadata),
        )
        .at(
            "/studies/:study/series/:series/instances/:instance/frames/:frames",
            get(frames::get_frames),
        )
        .at(
            "/studies/:study/series/:series/instances/:instance/bulkdata/:tag",
            get(bulkdata::get_bulkdata),
        );
    rendered_routes(r)
}

/// The rendered and thumbnail resources (`rendered.rs`).
fn rendered_routes(r: Route) -> Route {
    const I: &str = "/studies/:study/series/:series/instances/:instance";
    r.at(
        "/studies/:study/rendered",
        get(rendered::study_or_series_rendered),
    )
    .at("/studies/:study/thumbnail", get(rendered::study_thumbnail))
    .at(
        "/studies/:study/series/:series/rendered",
        get(rendered::study_or_series_rendered),
    )
    .at(
        "/studies/:study/series/:series/thumbnail",
        get(rendered::series_thumbnail),
    )
    .at(format!("{I}/rendered"), get(rendered::instance_rendered))
    .at(format!("{I}/thumbnail"), get(rendered::instance_thumbnail))
    .at(
        format!("{I}/frames/:frames/rendered"),
        get(rendered::frame_rendered),
    )
    .at(
        format!("{I}/frames/:frames/thumbnail"),
        get(rendered::frame_thumbnail),
    )
}

/// The DICOMweb base URL as the client addressed it (`http://host:port/dicom-web`),
/// for RetrieveURL and BulkDataURI values.
pub fn base_url(req: &Request) -> String {
    let headers = req.headers();
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(poem::http::header::HOST))
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '"']))
        .map(str::to_string)
        .unwrap_or_else(|| {
            req.local_addr()
                .as_socket_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "localhost".into())
        });
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}/dicom-web")
}

/// Check a UID path segment (PS3.5 §9.1) before it reaches the index.
pub fn check_uid_param(name: &str, value: &str) -> WebResult<()> {
    crate::ingest::uid::check_uid(value)
        .map_err(|p| DicomWebError::param(name, format!("not a valid UID: {p}")))
}

/// The instances of a study, a series or one instance, resolved through the query
/// model. An empty result is a 404 naming the addressed level.
pub async fn resolve(
    state: &AppState,
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
    with_metadata: bool,
    with_layout: bool,
) -> WebResult<Vec<WebInstance>> {
    check_uid_param("StudyInstanceUID", study)?;
    let mut q = Query::new(Level::Image);
    q.scope = crate::auth::context::scope();
    let uid = |tag| catalog::by_tag(tag).expect("unique keys are in the catalogue");
    q.add(uid(tags::STUDY_INSTANCE_UID), Matcher::Single(study.into()));
    if let Some(s) = series {
        check_uid_param("SeriesInstanceUID", s)?;
        q.add(uid(tags::SERIES_INSTANCE_UID), Matcher::Single(s.into()));
    }
    if let Some(i) = instance {
        check_uid_param("SOPInstanceUID", i)?;
        q.add(uid(tags::SOP_INSTANCE_UID), Matcher::Single(i.into()));
    }
    let found =
        crate::query::web_instances(state.repo.connection(), &q, with_metadata, with_layout)
            .await?;
    if found.is_empty() {
        return Err(DicomWebError::NotFound(match (series, instance) {
            (_, Some(_)) => "instance",
            (Some(_), None) => "series",
            _ => "study",
        }));
    }
    Ok(found)
}

/// The study, series and instance a request's path addresses (`:study`, `:series`,
/// `:instance`), so one handler serves the study, series and instance routes.
#[derive(Debug, Clone)]
pub struct Target {
    pub study: String,
    pub series: Option<String>,
    pub instance: Option<String>,
}

impl<'a> poem::FromRequest<'a> for Target {
    async fn from_request(req: &'a Request, _body: &mut poem::RequestBody) -> poem::Result<Self> {
        let param = |n: &str| req.raw_path_param(n).map(str::to_string);
        Ok(Target {
            study: param("study").unwrap_or_default(),
            series: param("series"),
            instance: param("instance"),
        })
    }
}

/// The shared state of a request (mounted by `http::routes`).
pub type State<'a> = Data<&'a AppState>;
