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
//! through [`super::render_image`] on a blocking thread.

use futures::stream::{self, StreamExt};
use poem::web::{Data, Path};
use poem::{handler, Body, Request, Response};

use super::media::{self, MediaRange};
use super::multipart::{self, Part, PartBody};
use super::render_image::{
    self, Format, Region, RenderError, RenderOptions, Viewport, VoiFunction, Window,
    DEFAULT_QUALITY, MAX_VIEWPORT,
};
use super::{resolve, DicomWebError, WebResult};
use crate::app::AppState;
use crate::query::WebInstance;
use crate::store::BlobKey;

/// The bounding box of a thumbnail without `viewport`.
pub const THUMBNAIL_SIZE: u32 = 128;
/// Instances rendered concurrently for a study or series.
const PARALLEL: usize = 4;

/// The query parameters of a rendered or thumbnail request, in request order
/// (the first occurrence of a name counts).
pub fn query_params(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The first value of `name`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn number(name: &str, s: &str) -> WebResult<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| DicomWebError::param(name, format!("{s:?} is not a number")))
}

/// Check a window width for its VOI function (PS3.3 C.11.2.1.2: ≥ 1 for LINEAR,
/// > 0 otherwise).
pub fn check_width(name: &str, width: f64, function: VoiFunction) -> WebResult<()> {
    let ok = match function {
        VoiFunction::Linear => width >= 1.0,
        _ => width > 0.0,
    };
    if ok {
        Ok(())
    } else {
        Err(DicomWebError::param(
            name,
            "window width must be at least 1 (LINEAR) or greater than 0",
        ))
    }
}

/// `window=center,width[,function]`.
pub fn parse_window(s: &str) -> WebResult<Window> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(DicomWebError::param(
            "window",
            "expected center,width[,linear|linear-exact|sigmoid]",
        ));
    }
    let center = number("window", parts[0])?;
    let width = number("window", parts[1])?;
    let function = match parts.get(2).map(|f| f.to_ascii_lowercase()) {
        None => VoiFunction::Linear,
        Some(f) => match f.as_str() {
            "linear" => VoiFunction::Linear,
            "linear-exact" | "linear_exact" => VoiFunction::LinearExact,
            "sigmoid" => VoiFunction::Sigmoid,
            _ => {
                return Err(DicomWebError::param(
                    "window",
                    "function must be linear, linear-exact or sigmoid",
                ))
            }
        },
    };
    check_width("window", width, function)?;
    Ok(Window {
        center,
        width,
        function,
    })
}

/// A viewport or output side in pixels: 1..=MAX_VIEWPORT.
pub fn parse_side(name: &str, s: &str) -> WebResult<u32> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|v| (1..=MAX_VIEWPORT).contains(v))
        .ok_or_else(|| {
            DicomWebError::param(
                name,
                format!("{s:?} is not a whole number of pixels in 1..={MAX_VIEWPORT}"),
            )
        })
}

/// `viewport=vw,vh` or `viewport=vw,vh,sx,sy,sw,sh` (source region in pixels; a
/// negative sw or sh flips). An empty vw or vh leaves that side unbounded.
pub fn parse_viewport(s: &str) -> WebResult<Viewport> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 2 && parts.len() != 6 {
        return Err(DicomWebError::param(
            "viewport",
            "expected vw,vh or vw,vh,sx,sy,sw,sh",
        ));
    }
    let side = |p: &str| -> WebResult<Option<u32>> {
        if p.is_empty() {
            Ok(None)
        } else {
            parse_side("viewport", p).map(Some)
        }
    };
    let (width, height) = match (side(parts[0])?, side(parts[1])?) {
        (None, None) => {
            return Err(DicomWebError::param(
                "viewport",
                "at least one of vw and vh is required",
            ))
        }
        (w, h) => (w.unwrap_or(MAX_VIEWPORT), h.unwrap_or(MAX_VIEWPORT)),
    };
    let region = if parts.len() == 6 {
        let int = |p: &str| -> WebResult<i64> {
            p.parse::<i64>()
                .ok()
                .filter(|v| v.abs() <= u32::MAX as i64)
                .ok_or_else(|| {
                    DicomWebError::param("viewport", format!("{p:?} is not a whole number"))
                })
        };
        let (x, y) = (int(parts[2])?, int(parts[3])?);
        let (w, h) = (int(parts[4])?, int(parts[5])?);
        if x < 0 || y < 0 || w == 0 || h == 0 {
            return Err(DicomWebError::param(
                "viewport",
                "sx and sy must be ≥ 0 and sw, sh non-zero",
            ));
        }
        Some(Region {
            x: x as u32,
            y: y as u32,
            width: w,
            height: h,
        })
    } else {
        None
    };
    Ok(Viewport {
        width,
        height,
        region,
    })
}

/// A JPEG quality 1..=100 (`quality`, WADO-URI `imageQuality`).
pub fn parse_quality(name: &str, s: &str) -> WebResult<u8> {
    s.trim()
        .parse::<u8>()
        .ok()
        .filter(|q| (1..=100).contains(q))
        .ok_or_else(|| DicomWebError::param(name, "must be a whole number in 1..=100"))
}

/// A one-based frame number (path segment `frames`, WADO-URI `frameNumber`).
pub fn parse_frame(name: &str, s: &str) -> WebResult<u32> {
    if s.contains(',') {
        return Err(DicomWebError::param(
            name,
            "only one frame can be rendered per request",
        ));
    }
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| DicomWebError::param(name, "must be a frame number, 1 or greater"))
}

/// The image format the client accepts: JPEG for `*/*`, `image/*`, `image/jpeg`, or a
/// multipart/related whose `type` admits it; PNG when only that is acceptable.
pub fn choose_format(ranges: &[MediaRange]) -> WebResult<Format> {
    for r in ranges {
        let single = if r.essence == "multipart/related" {
            match r.param("type") {
                Some(t) => media::parse_accept(t).into_iter().next(),
                None => Some(r.clone()),
            }
        } else {
            Some(r.clone())
        };
        let Some(single) = single else { continue };
        if single.admits("image/jpeg") {
            return Ok(Format::Jpeg);
        }
        if single.admits("image/png") {
            return Ok(Format::Png);
        }
    }
    Err(DicomWebError::NotAcceptable(
        "rendered images are available as image/jpeg or image/png".into(),
    ))
}

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

/// `GET /studies/{study}/rendered`
#[handler]
pub async fn study_rendered(
    req: &Request,
    Path(study): Path<String>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let found = resolve(state, &study, None, None, false, false).await?;
    multipart_rendered(req, state, found).await
}

/// `GET /studies/{study}/series/{series}/rendered`
#[handler]
pub async fn series_rendered(
    req: &Request,
    Path((study, series)): Path<(String, String)>,
    Data(state): Data<&AppState>,
) -> WebResult<Response> {
    let found = resolve(state, &study, Some(&series), None, false, false).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_param(r: WebResult<impl std::fmt::Debug>, name: &str) {
        match r {
            Err(DicomWebError::BadParam { param, .. }) => assert_eq!(param, name),
            other => panic!("expected a bad {name}, got {other:?}"),
        }
    }

    #[test]
    fn windows() {
        assert_eq!(parse_window("40,400").unwrap(), Window::linear(40.0, 400.0));
        let w = parse_window(" -600 , 1500 , SIGMOID").unwrap();
        assert_eq!(w.function, VoiFunction::Sigmoid);
        assert_eq!(w.center, -600.0);
        assert_eq!(
            parse_window("1,0.5,linear-exact").unwrap().function,
            VoiFunction::LinearExact
        );
        for bad in [
            "",
            "40",
            "40,400,cubic",
            "a,400",
            "40,0",
            "40,0.5",
            "1,2,3,4",
            "NaN,1",
        ] {
            bad_param(parse_window(bad), "window");
        }
    }

    #[test]
    fn viewports() {
        let v = parse_viewport("256,128").unwrap();
        assert_eq!((v.width, v.height, v.region), (256, 128, None));
        let v = parse_viewport("64,64,10,20,-30,40").unwrap();
        assert_eq!(
            v.region,
            Some(Region {
                x: 10,
                y: 20,
                width: -30,
                height: 40
            })
        );
        assert_eq!(parse_viewport(",100").unwrap().width, MAX_VIEWPORT);
        for bad in [
            "",
            "0,10",
            "10",
            "10,x",
            "99999,10",
            "10,10,1,1,0,5",
            "10,10,-1,0,5,5",
            ",",
        ] {
            bad_param(parse_viewport(bad), "viewport");
        }
    }

    #[test]
    fn quality_and_frames() {
        assert_eq!(parse_quality("quality", "1").unwrap(), 1);
        assert_eq!(parse_quality("quality", "100").unwrap(), 100);
        for bad in ["0", "101", "x", "-5", ""] {
            bad_param(parse_quality("quality", bad), "quality");
        }
        assert_eq!(parse_frame("frames", "3").unwrap(), 3);
        for bad in ["0", "x", "1,2", "-1", ""] {
            bad_param(parse_frame("frames", bad), "frames");
        }
    }

    #[test]
    fn formats() {
        let f = |s: &str| choose_format(&media::parse_accept(s));
        assert_eq!(f("*/*").unwrap(), Format::Jpeg);
        assert_eq!(f("image/png").unwrap(), Format::Png);
        assert_eq!(f("image/png, image/jpeg;q=0.5").unwrap(), Format::Png);
        assert_eq!(f("image/*").unwrap(), Format::Jpeg);
        assert_eq!(
            f("multipart/related; type=\"image/png\"").unwrap(),
            Format::Png
        );
        assert!(matches!(
            f("application/dicom"),
            Err(DicomWebError::NotAcceptable(_))
        ));
        assert!(matches!(
            f("image/gif"),
            Err(DicomWebError::NotAcceptable(_))
        ));
    }
}
