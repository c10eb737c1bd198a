//! Query parameters of the rendered resources (PS3.18 §8.3.5.1) and their WADO-URI
//! counterparts (§9.1.2), parsed and validated: `window`, `viewport`, `quality`, frame
//! numbers, and the image media type from Accept. Every error names its parameter.

use poem::Request;

use super::media::{self, MediaRange};
use super::render_image::{Format, Region, Viewport, VoiFunction, Window, MAX_VIEWPORT};
use super::{DicomWebError, WebResult};

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
