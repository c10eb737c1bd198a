//! Unit tests of the render pipeline: window math, MONOCHROME1 inversion, viewport
//! sizing, and odd pixel layouts that must render (or fail cleanly), never panic.

use super::*;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;

/// A native explicit-VR-LE object with the given pixel module.
fn object(
    rows: u16,
    cols: u16,
    pi: &str,
    samples: u16,
    bits: (u16, u16, u16),
    signed: bool,
    pixels: PrimitiveValue,
) -> DefaultDicomObject {
    let mut o = InMemDicomObject::new_empty();
    let us = |o: &mut InMemDicomObject, t, v: u16| {
        o.put(DataElement::new(t, VR::US, PrimitiveValue::from(v)))
    };
    o.put(DataElement::new(
        tags::SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.7"),
    ));
    o.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("1.2.3.4"),
    ));
    o.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(pi),
    ));
    us(&mut o, tags::SAMPLES_PER_PIXEL, samples);
    us(&mut o, tags::ROWS, rows);
    us(&mut o, tags::COLUMNS, cols);
    us(&mut o, tags::BITS_ALLOCATED, bits.0);
    us(&mut o, tags::BITS_STORED, bits.1);
    us(&mut o, tags::HIGH_BIT, bits.2);
    us(&mut o, tags::PIXEL_REPRESENTATION, signed as u16);
    if samples > 1 {
        us(&mut o, tags::PLANAR_CONFIGURATION, 0);
    }
    let vr = if bits.0 > 8 { VR::OW } else { VR::OB };
    o.put(DataElement::new(tags::PIXEL_DATA, vr, pixels));
    o.with_exact_meta(
        FileMetaTableBuilder::new()
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
            .media_storage_sop_instance_uid("1.2.3.4")
            .transfer_syntax("1.2.840.10008.1.2.1")
            .implementation_class_uid("2.25.1")
            .build()
            .unwrap(),
    )
}

/// A 16-bit horizontal gradient 0..=4095 over `cols` columns.
fn gradient(rows: u16, cols: u16, pi: &str) -> DefaultDicomObject {
    let px: Vec<u16> = (0..rows as u32 * cols as u32)
        .map(|i| ((i % cols as u32) * 4095 / (cols as u32 - 1)) as u16)
        .collect();
    object(
        rows,
        cols,
        pi,
        1,
        (16, 12, 11),
        false,
        PrimitiveValue::U16(px.into()),
    )
}

fn gray(img: &DynamicImage) -> Vec<u8> {
    img.to_luma8().into_raw()
}

#[test]
fn linear_window_math() {
    let w = Window::linear(100.0, 51.0);
    // Bounds: c - 0.5 - (w-1)/2 = 74.5, c - 0.5 + (w-1)/2 = 124.5.
    assert_eq!(w.apply(74.5), 0);
    assert_eq!(w.apply(-1000.0), 0);
    assert_eq!(w.apply(125.0), 255);
    assert_eq!(w.apply(99.5), 128); // ((99.5-99.5)/50 + 0.5) * 255 = 127.5
    assert!(w.apply(90.0) < w.apply(110.0));
    // Width 1 is a threshold at the center.
    let t = Window::linear(10.0, 1.0);
    assert_eq!(t.apply(9.0), 0);
    assert_eq!(t.apply(10.0), 255);
}

#[test]
fn linear_exact_and_sigmoid() {
    let e = Window {
        center: 0.0,
        width: 100.0,
        function: VoiFunction::LinearExact,
    };
    assert_eq!(e.apply(-50.0), 0);
    assert_eq!(e.apply(51.0), 255);
    assert_eq!(e.apply(0.0), 128);
    let s = Window {
        center: 0.0,
        width: 100.0,
        function: VoiFunction::Sigmoid,
    };
    assert_eq!(s.apply(0.0), 128);
    assert!(s.apply(-1000.0) < 2 && s.apply(1000.0) > 253);
    assert!(s.apply(-10.0) < s.apply(10.0));
}

#[test]
fn min_max_and_constant_images() {
    assert_eq!(to_gray8(&[10.0, 20.0, 30.0], None), vec![0, 128, 255]);
    assert_eq!(to_gray8(&[5.0, 5.0], None), vec![0, 0]);
    assert_eq!(to_gray8(&[], None), Vec::<u8>::new());
    let mut g = vec![0, 100, 255];
    invert(&mut g);
    assert_eq!(g, vec![255, 155, 0]);
}

#[test]
fn fit_sizes_preserve_aspect() {
    assert_eq!(fit_size(512, 256, 128, 128), (128, 64));
    assert_eq!(fit_size(256, 512, 128, 128), (64, 128));
    assert_eq!(fit_size(8, 8, 64, 32), (32, 32));
    assert_eq!(fit_size(1000, 1, 10, 10), (10, 1));
    assert_eq!(fit_size(1, 1000, 10, 10), (1, 10));
}

#[test]
fn gradient_renders_dark_to_bright_and_window_clips() {
    let obj = gradient(4, 64, "MONOCHROME2");
    let img = render_frame(&obj, 0, None).unwrap();
    let g = gray(&img);
    assert_eq!((img.width(), img.height()), (64, 4));
    assert_eq!(g[0], 0);
    assert_eq!(g[63], 255);
    assert!(g.windows(2).take(63).all(|p| p[0] <= p[1]));
    // A window over the upper half: the lower half is black.
    let win = Window::linear(3071.0, 2048.0);
    let g2 = gray(&render_frame(&obj, 0, Some(win)).unwrap());
    assert!(g2[..31].iter().all(|v| *v == 0), "{:?}", &g2[..32]);
    assert_eq!(g2[63], 255);
    // MONOCHROME1 of the same pixels is the inverse.
    let inv = gray(&render_frame(&gradient(4, 64, "MONOCHROME1"), 0, None).unwrap());
    assert!(g.iter().zip(&inv).all(|(a, b)| *a == 255 - *b));
}

#[test]
fn rescale_and_object_window_apply() {
    let mut obj = gradient(2, 16, "MONOCHROME2");
    obj.put(DataElement::new(
        tags::RESCALE_INTERCEPT,
        VR::DS,
        PrimitiveValue::from("-1024"),
    ));
    obj.put(DataElement::new(
        tags::RESCALE_SLOPE,
        VR::DS,
        PrimitiveValue::from("1"),
    ));
    // Window in rescaled units: everything below 0 HU (raw < 1024) is black.
    obj.put(DataElement::new(
        tags::WINDOW_CENTER,
        VR::DS,
        PrimitiveValue::from("1500"),
    ));
    obj.put(DataElement::new(
        tags::WINDOW_WIDTH,
        VR::DS,
        PrimitiveValue::from("3000"),
    ));
    let g = gray(&render_frame(&obj, 0, None).unwrap());
    // Column 3 has raw 819 → -205 HU: black; column 15 → 3071 HU: white.
    assert_eq!(g[3], 0);
    assert_eq!(g[15], 255);
}

#[test]
fn viewport_crops_flips_and_scales() {
    let obj = gradient(16, 64, "MONOCHROME2");
    let img = render_frame(&obj, 0, None).unwrap();
    let out = fit_viewport(
        img.clone(),
        Some(Viewport {
            width: 32,
            height: 32,
            region: None,
        }),
    )
    .unwrap();
    assert_eq!((out.width(), out.height()), (32, 8));
    // The right half, flipped: brightest on the left.
    let out = fit_viewport(
        img.clone(),
        Some(Viewport {
            width: 32,
            height: 16,
            region: Some(Region {
                x: 32,
                y: 0,
                width: -32,
                height: 16,
            }),
        }),
    )
    .unwrap();
    let g = gray(&out);
    assert_eq!((out.width(), out.height()), (32, 16));
    assert!(g[0] > g[31] && g[31] >= 128);
    // Outside the image.
    let err = fit_viewport(
        img,
        Some(Viewport {
            width: 8,
            height: 8,
            region: Some(Region {
                x: 100,
                y: 0,
                width: 8,
                height: 8,
            }),
        }),
    );
    assert!(matches!(err, Err(RenderError::EmptyRegion)));
}

#[test]
fn odd_layouts_render_or_fail_cleanly() {
    // Signed 16-bit, 12 stored: -2048..2047 sign-extended.
    let px: Vec<u16> = vec![0x0800, 0x0FFF, 0x0000, 0x07FF]; // -2048, -1, 0, 2047
    let obj = object(
        2,
        2,
        "MONOCHROME2",
        1,
        (16, 12, 11),
        true,
        PrimitiveValue::U16(px.into()),
    );
    assert_eq!(
        gray(&render_frame(&obj, 0, None).unwrap()),
        vec![0, 127, 128, 255]
    );
    // 8-bit odd dimensions.
    let obj = object(
        3,
        5,
        "MONOCHROME2",
        1,
        (8, 8, 7),
        false,
        PrimitiveValue::U8((0..16).collect()),
    );
    let img = render_frame(&obj, 0, None).unwrap();
    assert_eq!((img.width(), img.height()), (5, 3));
    // 1-bit (8 pixels in one byte, LSB first).
    let obj = object(
        1,
        8,
        "MONOCHROME2",
        1,
        (1, 1, 0),
        false,
        PrimitiveValue::U8(vec![0b0000_0101, 0].into()),
    );
    assert_eq!(
        gray(&render_frame(&obj, 0, None).unwrap()),
        vec![255, 0, 255, 0, 0, 0, 0, 0]
    );
    // RGB, planar configuration 1 (all R, then all G, then all B).
    let mut obj = object(
        1,
        2,
        "RGB",
        3,
        (8, 8, 7),
        false,
        PrimitiveValue::U8(vec![255, 0, 0, 255, 10, 20].into()),
    );
    obj.put(DataElement::new(
        tags::PLANAR_CONFIGURATION,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    let rgb = render_frame(&obj, 0, None).unwrap().to_rgb8().into_raw();
    assert_eq!(rgb, vec![255, 0, 10, 0, 255, 20]);
    // Native YBR_FULL: converted (grey Y=128 stays grey).
    let obj = object(
        1,
        1,
        "YBR_FULL",
        3,
        (8, 8, 7),
        false,
        PrimitiveValue::U8(vec![128, 128, 128, 0].into()),
    );
    assert_eq!(
        render_frame(&obj, 0, None).unwrap().to_rgb8().into_raw(),
        vec![128, 128, 128]
    );
    // Truncated pixel data: an error, not a panic.
    let obj = object(
        4,
        4,
        "MONOCHROME2",
        1,
        (16, 16, 15),
        false,
        PrimitiveValue::U16(vec![1, 2].into()),
    );
    assert!(render_frame(&obj, 0, None).is_err());
    // Frame past the end.
    let obj = gradient(2, 2, "MONOCHROME2");
    assert!(matches!(
        render_frame(&obj, 1, None),
        Err(RenderError::FrameOutOfRange {
            frame: 2,
            frames: 1
        })
    ));
    // No pixel data.
    let mut obj = gradient(2, 2, "MONOCHROME2");
    obj.remove_element(tags::PIXEL_DATA);
    assert!(matches!(
        render_frame(&obj, 0, None),
        Err(RenderError::NoPixelData)
    ));
    // Palette colour is refused clearly.
    let obj = object(
        1,
        2,
        "PALETTE COLOR",
        1,
        (8, 8, 7),
        false,
        PrimitiveValue::U8(vec![1, 2].into()),
    );
    assert!(matches!(
        render_frame(&obj, 0, None),
        Err(RenderError::Unsupported(_))
    ));
}

#[test]
fn encodes_jpeg_and_png_of_the_viewport_size() {
    let obj = gradient(10, 20, "MONOCHROME2");
    for format in [Format::Jpeg, Format::Png] {
        let bytes = render(
            &obj,
            &RenderOptions {
                viewport: Some(Viewport {
                    width: 40,
                    height: 40,
                    region: None,
                }),
                format,
                quality: 50,
                ..Default::default()
            },
        )
        .unwrap();
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (40, 20), "{format:?}");
    }
}
