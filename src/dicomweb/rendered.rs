//! WADO-RS rendered and thumbnail resources (PS3.18 §8.3.5, §10.4.1.1.3, §10.4.1.1.4):
//! `.../rendered` at study, series, instance and frame level, `.../thumbnail` at the
//! same levels, as `image/jpeg` (the default) or `image/png`.
//!
//! An instance or frame answers one image. A study or series answers the first frame
//! of each of its instances as `multipart/related; type="image/jpeg"` (or png),
//! skipping instances without pixel data. A thumbnail is one image fitted into
//! 128 × 128 (`viewport` overrides): a series' middle instance, a study's first
//! series' middle instance, the middle frame of a multi-frame instance.
//!
//! Query parameters: `window=center,width[,linear|linear-exact|sigmoid]`,
//! `viewport=vw,vh[,sx,sy,sw,sh]`, `quality=1..100`, `accept=`. The pixels go
//! through [`super::render_image`] on a blocking thread; they are parsed in
//! [`super::render_params`].

use futures::stream::{self, StreamExt};
use poem::web::{Data, Path};
use poem::{handler, Body, Request, Response};

use super::media;
use super::multipart::{self, Part, PartBody};
use super::render_image::{self, Format, RenderError, RenderOptions, Viewport, DEFAULT_QUALITY};
use super::render_params::{
    choose_format, param, parse_frame, parse_quality, parse_viewport, parse_window, query_params,
};
use super::{resolve, DicomWebError, Target, WebResult};
use crate::app::AppState;
use crate::query::WebInstance;
use crate::store::BlobKey;

/// The bounding box of a thumbnail without `viewport`.
pub const THUMBNAIL_SIZE: u32 = 128;
/// Instances rendered concurrently for a study or series.
const PARALLEL: usize = 4;

/// Render options from the `window`, `viewport`, `quality` parameters and the
/// Accept header (or `accept` parameter).
pub fn options(req: &Request, default_viewport: Option<Viewport>) -> WebResult<RenderOptions> {
    let params = query_params(req);
    let format = choose_format(&media::accepted(req))?;
    let window = param(&params, "window").map(parse_window).transpose()?;
    let viewport = match param(&params, "viewport") {
        Some(v) => Some(parse_viewport(v)?),
        None => default_viewport,
    };
    let quality = param(&params, "quality")
        .map(|q| parse_quality("quality", q))
        .transpose()?
        .unwrap_or(DEFAULT_QUALITY);
    Ok(RenderOptions {
        frame: 0,
        window,
        viewport,
        format,
        quality,
    })
}

/// Map a render failure to the DICOMweb error a client sees.
pub fn render_error(e: RenderError) -> DicomWebError {
    match e {
        RenderError::FrameOutOfRange { .. } => DicomWebError::NotFound("frame"),
        // A stored object whose pixels this node's codecs cannot decode (e.g. 32-bit
        // RLE) is not renderable rather than a server fault.
        RenderError::NoPixelData | RenderError::Unsupported(_) | RenderError::Decode(_) => {
            DicomWebError::NotAcceptable(e.to_string())
        }
        RenderError::EmptyRegion => DicomWebError::param("viewport", e.to_string()),
        RenderError::Encode(_) => DicomWebError::Internal(e.to_string()),
    }
}

/// Load an instance's blob and run `f` on the parsed object on a blocking thread.
pub async fn with_object<T, F>(state: &AppState, inst: &WebInstance, f: F) -> WebResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dicom_object::DefaultDicomObject) -> Result<T, RenderError> + Send + 'static,
{
    let bytes = state
        .store
        .get(&BlobKey(inst.stored.blob_key.clone()))
        .await?;
    tokio::task::spawn_blocking(move || {
        let obj = crate::transcode::parse(&bytes)
            .map_err(|e| DicomWebError::Internal(format!("stored object unreadable: {e}")))?;
        f(&obj).map_err(render_error)
    })
    .await
    .map_err(|e| DicomWebError::Internal(format!("render task failed: {e}")))?
}

/// Render one frame (zero-based `opts.frame`) of an instance to encoded bytes.
pub async fn render_instance(
    state: &AppState,
    inst: &WebInstance,
    opts: RenderOptions,
) -> WebResult<Vec<u8>> {
    let frames = inst.number_of_frames.unwrap_or(1).max(1) as u32;
    if opts.frame >= frames {
        return Err(DicomWebError::NotFound("frame"));
    }
    with_object(state, inst, move |obj| render_image::render(obj, &opts)).await
}

fn image_response(format: Format, bytes: Vec<u8>) -> Response {
    Response::builder()
        .content_type(format.media_type())
        .body(Body::from_vec(bytes))
}

fn thumbnail_viewport() -> Option<Viewport> {
    Some(Viewport {
        width: THUMBNAIL_SIZE,
        height: THUMBNAIL_SIZE,
        region: None,
    })
}

/// The representative frame (zero-based) of an instance: its middle one.
fn middle_frame(inst: &WebInstance) -> u32 {
    (inst.number_of_frames.unwrap_or(1).max(1) as u32 - 1) / 2
}

/// Render the instances of a study or series as one multipart/related response.
/// The first renderable instance is rendered before the response starts, so
/// parameter errors and "nothing renderable" come back as a status code.
async fn multipart_rendered(
    req: &Request,
    state: &AppState,
    found: Vec<WebInstance>,
) -> WebResult<Response> {
    let opts = options(req, None)?;
    let format = opts.format;
    let base = super::base_url(req);
    let st = state.clone();
    let mut parts = stream::iter(found)
        .map(move |inst| {
            let (st, opts, base) = (st.clone(), opts.clone(), base.clone());
            async move {
                let location = format!(
                    "{base}/studies/{}/series/{}/instances/{}/rendered",
                    inst.study_instance_uid, inst.series_instance_uid, inst.stored.sop_instance_uid
                );
                match render_instance(&st, &inst, opts).await {
                    Ok(bytes) => Some(Ok(Part {
                        content_type: format.media_type().to_string(),
                        location: Some(location),
                        body: PartBody::Bytes(bytes.into()),
                    })),
                    // Instances that are not renderable images (SR, ...) are left out.
                    Err(DicomWebError::NotAcceptable(why)) => {
                        tracing::debug!(%why, "instance left out of a rendered response");
                        None
                    }
                    Err(e) => Some(Err(e)),
                }
            }
        })
        .buffered(PARALLEL)
        .filter_map(futures::future::ready)
        .boxed();
    let first = match parts.next().await {
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(DicomWebError::NotAcceptable(
                "none of the addressed instances has renderable pixel data".into(),
            ))
        }
    };
    let all = stream::once(futures::future::ready(Ok(first)))
        .chain(parts)
        .boxed();
    Ok(multipart::response(
        all,
        format.media_type(),
        multipart::new_boundary(),
    ))
}

/// One image of one instance's frame (`frame`: zero-based).
async fn single(
    req: &Request,
    state: &AppState,
    inst: &WebInstance,
    frame: u32,
    default_viewport: Option<Viewport>,
) -> WebResult<Response> {
    let mut opts = options(req, default_viewport)?;
    opts.frame = frame;
    let format = opts.format;
    Ok(image_response(
        format,
        render_instance(state, inst, opts).await?,
    ))
}

fn only(mut found: Vec<WebInstance>) -> WebResult<WebInstance> {
    found.pop().ok_or(DicomWebError::NotFound("instance"))
}

/// `GET /studies/{study}/rendered` and `GET /studies/{study}/series/{series}/rendered`
#[handler]
pub async fn study_or_series_rendered(
    req: &Request,
    target: Target,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let found = resolve(
        state,
        &target.study,
        target.series.as_deref(),
        None,
        false,
        false,
    )
    .await?;
    multipart_rendered(req, state, found).await
}

/// `GET /studies/{study}/series/{series}/instances/{instance}/rendered`
#[handler]
pub async fn instance_rendered(
    req: &Request,
    Path((study, series, instance)): Path<(String, String, String)>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let inst = only(resolve(state, &study, Some(&series), Some(&instance), false, false).await?)?;
    single(req, state, &inst, 0, None).await
}

/// `GET /studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered`
#[handler]
pub async fn frame_rendered(
    req: &Request,
    Path((study, series, instance, frames)): Path<(String, String, String, String)>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let n = parse_frame("frames", &frames)?;
    let inst = only(resolve(state, &study, Some(&series), Some(&instance), false, false).await?)?;
    single(req, state, &inst, n - 1, None).await
}

/// `GET /studies/{study}/thumbnail`: the middle instance of the first series.
#[handler]
pub async fn study_thumbnail(
    req: &Request,
    Path(study): Path<String>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let found = resolve(state, &study, None, None, false, false).await?;
    let first_series = found
        .first()
        .map(|i| i.series_instance_uid.clone())
        .unwrap_or_default();
    let series: Vec<WebInstance> = found
        .into_iter()
        .filter(|i| i.series_instance_uid == first_series)
        .collect();
    thumbnail_of_middle(req, state, series).await
}

/// `GET /studies/{study}/series/{series}/thumbnail`: the middle instance.
#[handler]
pub async fn series_thumbnail(
    req: &Request,
    Path((study, series)): Path<(String, String)>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let found = resolve(state, &study, Some(&series), None, false, false).await?;
    thumbnail_of_middle(req, state, found).await
}

async fn thumbnail_of_middle(
    req: &Request,
    state: &AppState,
    mut found: Vec<WebInstance>,
) -> WebResult<Response> {
    if found.is_empty() {
        return Err(DicomWebError::NotFound("series"));
    }
    let inst = found.swap_remove(found.len() / 2);
    single(req, state, &inst, middle_frame(&inst), thumbnail_viewport()).await
}

/// `GET /studies/{study}/series/{series}/instances/{instance}/thumbnail`
#[handler]
pub async fn instance_thumbnail(
    req: &Request,
    Path((study, series, instance)): Path<(String, String, String)>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let inst = only(resolve(state, &study, Some(&series), Some(&instance), false, false).await?)?;
    single(req, state, &inst, middle_frame(&inst), thumbnail_viewport()).await
}

/// `GET /studies/{study}/series/{series}/instances/{instance}/frames/{frame}/thumbnail`
#[handler]
pub async fn frame_thumbnail(
    req: &Request,
    Path((study, series, instance, frames)): Path<(String, String, String, String)>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let n = parse_frame("frames", &frames)?;
    let inst = only(resolve(state, &study, Some(&series), Some(&instance), false, false).await?)?;
    single(req, state, &inst, n - 1, thumbnail_viewport()).await
}
