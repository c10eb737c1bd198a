//! WADO-URI (PS3.18 §9): `GET /wado?requestType=WADO&studyUID=&seriesUID=&objectUID=`.
//!
//! `contentType=application/dicom` answers the stored Part 10 object byte for byte,
//! or re-encoded in explicit / implicit VR little endian when `transferSyntax` names
//! one of those (406 for any other syntax). `image/jpeg` (the default for objects
//! with pixel data; objects without answer `application/dicom`) and `image/png` go
//! through the WADO-RS render pipeline with `windowCenter` + `windowWidth`, `rows`,
//! `columns`, `region`, `frameNumber` and `imageQuality`. `anonymize` and
//! presentation states are not supported (400); `annotation` and `charset` are
//! ignored.

use poem::web::Data;
use poem::{handler, Body, Request, Response};

use super::media::{self, SyntaxChoice};
use super::render_image::{self, Format, Viewport, Window, DEFAULT_QUALITY, MAX_VIEWPORT};
use super::render_params::{
    check_width, param, parse_frame, parse_quality, parse_side, query_params,
};
use super::rendered;
use super::{check_uid_param, resolve, DicomWebError, WebResult};
use crate::app::AppState;
use crate::query::WebInstance;
use crate::store::BlobKey;

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Dicom,
    Image(Format),
    /// No contentType: an image if the object has pixel data, else the object.
    Default,
}

/// Parameters of an image request.
#[derive(Debug, Clone, PartialEq)]
struct ImageParams {
    frame: u32,
    window: Option<Window>,
    rows: Option<u32>,
    columns: Option<u32>,
    /// `x1,y1,x2,y2`, fractions of the image.
    region: Option<[f64; 4]>,
    quality: u8,
}

/// Parameters that only apply to images (PS3.18 §9.1.2: absent for application/dicom).
const IMAGE_ONLY: &[&str] = &[
    "annotation",
    "rows",
    "columns",
    "region",
    "windowCenter",
    "windowWidth",
    "frameNumber",
    "imageQuality",
    "presentationUID",
    "presentationSeriesUID",
];

fn required<'a>(params: &'a [(String, String)], name: &str) -> WebResult<&'a str> {
    match param(params, name) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim()),
        _ => Err(DicomWebError::param(name, "is required")),
    }
}

fn wanted(params: &[(String, String)]) -> WebResult<Wanted> {
    let Some(ct) = param(params, "contentType") else {
        return Ok(Wanted::Default);
    };
    for r in media::parse_accept(ct) {
        if r.essence == "application/dicom" {
            return Ok(Wanted::Dicom);
        }
        if r.admits("image/jpeg") {
            return Ok(Wanted::Image(Format::Jpeg));
        }
        if r.admits("image/png") {
            return Ok(Wanted::Image(Format::Png));
        }
    }
    Err(DicomWebError::NotAcceptable(
        "contentType must be application/dicom, image/jpeg or image/png".into(),
    ))
}

fn image_params(params: &[(String, String)]) -> WebResult<ImageParams> {
    for unsupported in ["presentationUID", "presentationSeriesUID"] {
        if param(params, unsupported).is_some() {
            return Err(DicomWebError::param(
                unsupported,
                "presentation states are not supported",
            ));
        }
    }
    let num = |name: &str| -> WebResult<Option<f64>> {
        param(params, name)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| DicomWebError::param(name, "is not a number"))
            })
            .transpose()
    };
    let window = match (num("windowCenter")?, num("windowWidth")?) {
        (Some(c), Some(w)) => {
            let win = Window::linear(c, w);
            check_width("windowWidth", w, win.function)?;
            Some(win)
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(DicomWebError::param(
                "windowWidth",
                "is required with windowCenter",
            ))
        }
        (None, Some(_)) => {
            return Err(DicomWebError::param(
                "windowCenter",
                "is required with windowWidth",
            ))
        }
    };
    let side = |name: &str| param(params, name).map(|v| parse_side(name, v)).transpose();
    let region = param(params, "region")
        .map(|v| {
            let bad = || {
                DicomWebError::param(
                    "region",
                    "expected x1,y1,x2,y2 in 0.0..=1.0, x1 < x2, y1 < y2",
                )
            };
            let p: Vec<f64> = v
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|x| (0.0..=1.0).contains(x))
                })
                .collect::<Option<_>>()
                .ok_or_else(bad)?;
            match p[..] {
                [x1, y1, x2, y2] if x1 < x2 && y1 < y2 => Ok([x1, y1, x2, y2]),
                _ => Err(bad()),
            }
        })
        .transpose()?;
    Ok(ImageParams {
        frame: param(params, "frameNumber")
            .map(|f| parse_frame("frameNumber", f))
            .transpose()?
            .unwrap_or(1)
            - 1,
        window,
        rows: side("rows")?,
        columns: side("columns")?,
        region,
        quality: param(params, "imageQuality")
            .map(|q| parse_quality("imageQuality", q))
            .transpose()?
            .unwrap_or(DEFAULT_QUALITY),
    })
}

/// `GET /wado`
#[handler]
pub async fn wado(req: &Request, Data(state): Data<&AppState>) -> WebResult<Response> {
    let params = query_params(req);
    match param(&params, "requestType") {
        Some("WADO") => {}
        Some(_) => return Err(DicomWebError::param("requestType", "must be WADO")),
        None => return Err(DicomWebError::param("requestType", "is required")),
    }
    let study = required(&params, "studyUID")?;
    let series = required(&params, "seriesUID")?;
    let object = required(&params, "objectUID")?;
    check_uid_param("studyUID", study)?;
    check_uid_param("seriesUID", series)?;
    check_uid_param("objectUID", object)?;
    if param(&params, "anonymize").is_some() {
        return Err(DicomWebError::param("anonymize", "is not supported"));
    }
    let wanted = wanted(&params)?;
    // Validate every parameter before touching the index or the store.
    let image = match wanted {
        Wanted::Dicom => {
            if let Some(p) = IMAGE_ONLY.iter().find(|p| param(&params, p).is_some()) {
                return Err(DicomWebError::param(
                    *p,
                    "does not apply to contentType=application/dicom",
                ));
            }
            None
        }
        _ => Some(image_params(&params)?),
    };
    let transfer_syntax = param(&params, "transferSyntax").map(str::trim);
    if let Some(ts) = transfer_syntax {
        check_uid_param("transferSyntax", ts)?;
    }
    let inst = resolve(state, study, Some(series), Some(object), false, false)
        .await?
        .pop()
        .ok_or(DicomWebError::NotFound("object"))?;
    match (wanted, image) {
        (Wanted::Dicom, _) => dicom(state, &inst, transfer_syntax).await,
        (Wanted::Image(format), Some(p)) => image_response(state, &inst, format, p).await,
        (_, Some(p)) => match image_response(state, &inst, Format::Jpeg, p).await {
            // No contentType and not an image: the object itself.
            Err(DicomWebError::NotAcceptable(_)) => dicom(state, &inst, transfer_syntax).await,
            other => other,
        },
        (_, None) => Err(DicomWebError::Internal("image parameters missing".into())),
    }
}

async fn dicom(
    state: &AppState,
    inst: &WebInstance,
    transfer_syntax: Option<&str>,
) -> WebResult<Response> {
    let stored_ts = inst.stored.transfer_syntax_uid.as_str();
    let choice = media::choose_syntax(stored_ts, transfer_syntax).ok_or_else(|| {
        DicomWebError::NotAcceptable(
            "transferSyntax can be the stored one, explicit or implicit VR little endian".into(),
        )
    })?;
    let bytes = state
        .store
        .get(&BlobKey(inst.stored.blob_key.clone()))
        .await?;
    let body = match choice {
        SyntaxChoice::AsStored => bytes.to_vec(),
        SyntaxChoice::Uncompressed(ts) => {
            tokio::task::spawn_blocking(move || crate::transcode::to_part10(&bytes, ts))
                .await
                .map_err(|e| DicomWebError::Internal(e.to_string()))?
                .map_err(|e| DicomWebError::Internal(format!("transcoding failed: {e}")))?
        }
    };
    Ok(Response::builder()
        .content_type("application/dicom")
        .body(Body::from_vec(body)))
}

async fn image_response(
    state: &AppState,
    inst: &WebInstance,
    format: Format,
    p: ImageParams,
) -> WebResult<Response> {
    let frames = inst.number_of_frames.unwrap_or(1).max(1) as u32;
    if p.frame >= frames {
        return Err(DicomWebError::NotFound("frame"));
    }
    let bytes = rendered::with_object(state, inst, move |obj| {
        let img = render_image::render_frame(obj, p.frame, p.window)?;
        let (w, h) = (img.width() as f64, img.height() as f64);
        let region = p.region.map(|[x1, y1, x2, y2]| render_image::Region {
            x: (x1 * w).floor() as u32,
            y: (y1 * h).floor() as u32,
            width: (((x2 - x1) * w).round() as i64).max(1),
            height: (((y2 - y1) * h).round() as i64).max(1),
        });
        let viewport = if p.rows.is_none() && p.columns.is_none() {
            // A region alone keeps its own size.
            region.map(|r| Viewport {
                width: r.width.unsigned_abs().min(MAX_VIEWPORT as u64) as u32,
                height: r.height.unsigned_abs().min(MAX_VIEWPORT as u64) as u32,
                region: Some(r),
            })
        } else {
            // One of rows/columns alone: the other follows the aspect ratio.
            Some(Viewport {
                width: p.columns.unwrap_or(MAX_VIEWPORT),
                height: p.rows.unwrap_or(MAX_VIEWPORT),
                region,
            })
        };
        let img = render_image::fit_viewport(img, viewport)?;
        render_image::encode(&img, format, p.quality)
    })
    .await
    .map_err(|e| match e {
        // The only parameter a render can reject late: the region.
        DicomWebError::BadParam { .. } => DicomWebError::param("region", "lies outside the image"),
        e => e,
    })?;
    Ok(Response::builder()
        .content_type(format.media_type())
        .body(Body::from_vec(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn bad(r: WebResult<impl std::fmt::Debug>, name: &str) {
        match r {
            Err(DicomWebError::BadParam { param, .. }) => assert_eq!(param, name),
            other => panic!("expected a bad {name}, got {other:?}"),
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(wanted(&params("")).unwrap(), Wanted::Default);
        assert_eq!(
            wanted(&params("contentType=application%2Fdicom")).unwrap(),
            Wanted::Dicom
        );
        assert_eq!(
            wanted(&params("contentType=image/png")).unwrap(),
            Wanted::Image(Format::Png)
        );
        assert_eq!(
            wanted(&params("contentType=image/gif,image/jpeg")).unwrap(),
            Wanted::Image(Format::Jpeg)
        );
        assert!(matches!(
            wanted(&params("contentType=text/html")),
            Err(DicomWebError::NotAcceptable(_))
        ));
    }

    #[test]
    fn image_parameters() {
        let p = image_params(&params(
            "windowCenter=40&windowWidth=400&rows=64&frameNumber=2&imageQuality=70&region=0,0,0.5,1",
        ))
        .unwrap();
        assert_eq!(p.window, Some(Window::linear(40.0, 400.0)));
        assert_eq!(
            (p.rows, p.columns, p.frame, p.quality),
            (Some(64), None, 1, 70)
        );
        assert_eq!(p.region, Some([0.0, 0.0, 0.5, 1.0]));
        bad(image_params(&params("windowCenter=40")), "windowWidth");
        bad(image_params(&params("windowWidth=40")), "windowCenter");
        bad(
            image_params(&params("windowCenter=x&windowWidth=1")),
            "windowCenter",
        );
        bad(
            image_params(&params("windowCenter=1&windowWidth=0")),
            "windowWidth",
        );
        bad(image_params(&params("rows=0")), "rows");
        bad(image_params(&params("columns=abc")), "columns");
        bad(image_params(&params("frameNumber=0")), "frameNumber");
        bad(image_params(&params("imageQuality=101")), "imageQuality");
        bad(image_params(&params("region=0.5,0,0.2,1")), "region");
        bad(image_params(&params("region=0,0,1")), "region");
        bad(
            image_params(&params("presentationUID=1.2.3")),
            "presentationUID",
        );
    }
}
