//! WADO-RS rendered / thumbnail resources and WADO-URI against a running node:
//! images decode to the requested size, gradients keep their direction, windows
//! clip, MONOCHROME1 inverts, lossless corpus variants render identically, bad
//! parameters are named in 400s, and the node keeps serving afterwards.

mod common;
#[path = "dicomweb_rendered/support.rs"]
mod support;

use common::gen::{as_file, mr_dataset, Ids};
use common::{Backend, TestEnv};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use support::{
    assert_bad_param, get, gradient, ingest_obj, ingest_path, inst_path, luma, mean,
    multipart_parts, put_str,
};

#[tokio::test(flavor = "multi_thread")]
async fn instance_and_frame_rendering() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let node = env.start().await;
    let dir = env.dir.path().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    let a = Ids::new("RENDER");
    let b = a.next_instance();
    ingest_obj(
        &node,
        &dir,
        as_file(gradient(&a, 1, 32, 64, "MONOCHROME2", 1, 0)),
    )
    .await;
    ingest_obj(
        &node,
        &dir,
        as_file(gradient(&b, 2, 32, 64, "MONOCHROME1", 1, 0)),
    )
    .await;
    let http = node.http_addr;
    let png = [("Accept", "image/png")];

    // Default: JPEG, full size, dark on the left, bright on the right.
    let r = get(http, &format!("{}/rendered", inst_path(&a)), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    let g = luma(&r.image());
    assert_eq!(g.dimensions(), (64, 32));
    assert!(g.get_pixel(1, 16).0[0] < 20 && g.get_pixel(62, 16).0[0] > 235);
    // */* is JPEG too.
    let r = get(
        http,
        &format!("{}/rendered", inst_path(&a)),
        &[("Accept", "*/*")],
    )
    .await;
    assert_eq!(r.header("content-type"), Some("image/jpeg"));

    // PNG is lossless: exact min/max mapping, monotonic left to right.
    let r = get(http, &format!("{}/rendered", inst_path(&a)), &png).await;
    assert_eq!(r.header("content-type"), Some("image/png"));
    let m2 = luma(&r.image());
    assert_eq!(
        (m2.get_pixel(0, 0).0[0], m2.get_pixel(63, 0).0[0]),
        (0, 255)
    );
    assert!((1..64).all(|x| m2.get_pixel(x - 1, 5).0[0] <= m2.get_pixel(x, 5).0[0]));
    // The accept query parameter works too.
    let r = get(
        http,
        &format!("{}/rendered?accept=image/png", inst_path(&a)),
        &[],
    )
    .await;
    assert_eq!(r.header("content-type"), Some("image/png"));

    // An explicit window over the upper half: everything below it is black.
    let r = get(
        http,
        &format!("{}/rendered?window=3071,2048", inst_path(&a)),
        &png,
    )
    .await;
    let w = luma(&r.image());
    assert!((0..31).all(|x| w.get_pixel(x, 3).0[0] == 0));
    assert_eq!(w.get_pixel(63, 3).0[0], 255);
    assert!(w.get_pixel(48, 3).0[0] > 60 && w.get_pixel(48, 3).0[0] < 200);

    // MONOCHROME1 of the same pixels comes out inverted.
    let r = get(http, &format!("{}/rendered", inst_path(&b)), &png).await;
    let m1 = luma(&r.image());
    assert!(m1
        .pixels()
        .zip(m2.pixels())
        .all(|(p, q)| p.0[0] == 255 - q.0[0]));

    // Viewport: fitted, aspect kept; crop form.
    let r = get(
        http,
        &format!("{}/rendered?viewport=32,32", inst_path(&a)),
        &png,
    )
    .await;
    assert_eq!(r.image().width(), 32);
    assert_eq!(r.image().height(), 16);
    let r = get(
        http,
        &format!("{}/rendered?viewport=100,100,32,0,32,32", inst_path(&a)),
        &png,
    )
    .await;
    let c = luma(&r.image());
    assert_eq!(c.dimensions(), (100, 100));
    assert!(c.get_pixel(0, 50).0[0] >= 120, "right half only");
    // Quality changes the JPEG.
    let lo = get(http, &format!("{}/rendered?quality=5", inst_path(&a)), &[]).await;
    let hi = get(
        http,
        &format!("{}/rendered?quality=100", inst_path(&a)),
        &[],
    )
    .await;
    assert!(lo.body.len() < hi.body.len());

    // Frame-level: frame 1 exists, 2 does not.
    let r = get(http, &format!("{}/frames/1/rendered", inst_path(&a)), &png).await;
    assert_eq!(luma(&r.image()), m2);
    let r = get(http, &format!("{}/frames/2/rendered", inst_path(&a)), &[]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    for (path, param) in [
        ("frames/0/rendered", "frames"),
        ("frames/x/rendered", "frames"),
        ("frames/1,2/rendered", "frames"),
        ("rendered?window=abc", "window"),
        ("rendered?window=40,0", "window"),
        ("rendered?viewport=0,10", "viewport"),
        ("rendered?viewport=10,10,500,500,8,8", "viewport"),
        ("rendered?quality=0", "quality"),
        ("thumbnail?viewport=a,b", "viewport"),
    ] {
        let r = get(http, &format!("{}/{path}", inst_path(&a)), &[]).await;
        assert_bad_param(&r, param, path);
    }
    let r = get(
        http,
        &format!("{}/rendered", inst_path(&a)),
        &[("Accept", "image/gif")],
    )
    .await;
    assert_eq!(r.status, 406, "{}", r.text());
    let r = get(
        http,
        &format!("{}/rendered", inst_path(&a.next_instance())),
        &[],
    )
    .await;
    assert_eq!(r.status, 404);
    let r = get(
        http,
        &format!("/dicom-web/studies/{}/rendered", Ids::new("OTHER").study),
        &[],
    )
    .await;
    assert_eq!(r.status, 404);

    // Thumbnail: 128 on the long side, or the viewport.
    let r = get(http, &format!("{}/thumbnail", inst_path(&a)), &[]).await;
    assert_eq!(r.image().width(), 128);
    assert_eq!(r.image().height(), 64);
    let r = get(
        http,
        &format!("{}/frames/1/thumbnail?viewport=20,20", inst_path(&a)),
        &[],
    )
    .await;
    assert_eq!((r.image().width(), r.image().height()), (20, 10));

    // Still serving.
    assert_eq!(common::health(http).await["status"], "ok");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn thumbnails_and_multipart() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let node = env.start().await;
    let dir = env.dir.path().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    let http = node.http_addr;
    // Series 1: three instances; the middle one is 16 × 32, the others 8 × 8.
    let s1 = Ids::new("THUMB");
    let ids = [s1.clone(), s1.next_instance(), s1.next_instance()];
    for (i, id) in ids.iter().enumerate() {
        let (r, c) = if i == 1 { (16, 32) } else { (8, 8) };
        ingest_obj(
            &node,
            &dir,
            as_file(gradient(id, i as i32 + 1, r, c, "MONOCHROME2", 1, 0)),
        )
        .await;
    }
    // Series 2: one 3-frame instance, frames of increasing brightness, and one
    // instance without pixel data.
    let mf = s1.next_series();
    let mut obj = gradient(&mf, 1, 10, 20, "MONOCHROME2", 3, 1000);
    put_str(&mut obj, tags::WINDOW_CENTER, VR::DS, "1050");
    put_str(&mut obj, tags::WINDOW_WIDTH, VR::DS, "2200");
    ingest_obj(&node, &dir, as_file(obj)).await;
    let nopix = mf.next_instance();
    let mut obj = mr_dataset(&nopix, 2, 4, 4);
    obj.remove_element(tags::PIXEL_DATA);
    ingest_obj(&node, &dir, as_file(obj)).await;

    let series1 = format!("/dicom-web/studies/{}/series/{}", s1.study, s1.series);
    let r = get(http, &format!("{series1}/thumbnail"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.image().width(), r.image().height()),
        (128, 64),
        "middle instance"
    );
    let r = get(
        http,
        &format!("/dicom-web/studies/{}/thumbnail?viewport=64,64", s1.study),
        &[],
    )
    .await;
    assert_eq!(
        (r.image().width(), r.image().height()),
        (64, 32),
        "first series' middle"
    );

    // Multi-frame: frames render by number; the thumbnail is the middle frame.
    let mfp = inst_path(&mf);
    let means: Vec<f64> = {
        let mut v = Vec::new();
        for f in 1..=3 {
            let r = get(
                http,
                &format!("{mfp}/frames/{f}/rendered"),
                &[("Accept", "image/png")],
            )
            .await;
            v.push(mean(&luma(&r.image())));
        }
        v
    };
    assert!(means[0] < means[1] && means[1] < means[2], "{means:?}");
    let r = get(
        http,
        &format!("{mfp}/thumbnail?viewport=20,10"),
        &[("Accept", "image/png")],
    )
    .await;
    assert!((mean(&luma(&r.image())) - means[1]).abs() < 3.0);
    let r = get(http, &format!("{mfp}/frames/4/rendered"), &[]).await;
    assert_eq!(r.status, 404);

    // No pixel data: a clear 406.
    let r = get(http, &format!("{}/rendered", inst_path(&nopix)), &[]).await;
    assert_eq!(r.status, 406, "{}", r.text());
    assert!(r.text().contains("pixel data"));

    // Series rendered: one image part per instance, in order.
    let r = get(http, &format!("{series1}/rendered"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("multipart/related"));
    assert!(r.header("content-type").unwrap().contains("image/jpeg"));
    let parts = multipart_parts(&r);
    let sizes: Vec<(u32, u32)> = parts
        .iter()
        .map(|(ct, b)| {
            assert_eq!(ct, "image/jpeg");
            let i = image::load_from_memory(b).unwrap();
            (i.width(), i.height())
        })
        .collect();
    assert_eq!(sizes, vec![(8, 8), (32, 16), (8, 8)]);
    // Study rendered as PNG: the 4 images (the instance without pixels left out).
    let r = get(
        http,
        &format!("/dicom-web/studies/{}/rendered?viewport=16,16", s1.study),
        &[("Accept", "multipart/related; type=\"image/png\"")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let parts = multipart_parts(&r);
    assert_eq!(parts.len(), 4);
    for (ct, b) in &parts {
        assert_eq!(ct, "image/png");
        let i = image::load_from_memory(b).unwrap();
        assert_eq!(i.width().max(i.height()), 16);
    }
    // A series of non-images only: 406.
    let sr = s1.next_series();
    let mut obj = mr_dataset(&sr, 1, 4, 4);
    obj.remove_element(tags::PIXEL_DATA);
    ingest_obj(&node, &dir, as_file(obj)).await;
    let r = get(
        http,
        &format!(
            "/dicom-web/studies/{}/series/{}/rendered",
            sr.study, sr.series
        ),
        &[],
    )
    .await;
    assert_eq!(r.status, 406, "{}", r.text());
    // Bad parameters are a 400 before any part is sent.
    let r = get(http, &format!("{series1}/rendered?window=1"), &[]).await;
    assert_bad_param(&r, "window", "series window");
    assert_eq!(common::health(http).await["status"], "ok");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pydicom_corpus_renders() {
    let Some(corpus) = common::pydicom_test_files() else {
        common::require("pydicom's test files", false);
        return;
    };
    let mut env = TestEnv::new(Backend::Sqlite).await.unwrap();
    // Many corpus files share a SOP Instance UID (MR_small in five encodings):
    // each one replaces the last and is rendered right after it is stored.
    env.config.ingest.duplicate_policy = glia::config::DuplicatePolicy::Replace;
    let node = env.start().await;
    let http = node.http_addr;
    // Each renders at its own rows × columns.
    let files = [
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "CT_small.dcm",
        "JPEG2000.dcm",
        "693_J2KI.dcm",
        "SC_rgb_rle.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_rgb_small_odd.dcm",
        "SC_rgb_rle_2frame.dcm",
        "ExplVR_BigEnd.dcm",
        "examples_ybr_color.dcm",
        "liver_1frame.dcm",
        "SC_rgb_rle_16bit.dcm",
    ];
    let mut mr_variants = Vec::new();
    for f in files {
        let path = corpus.join(f);
        ingest_path(&node, &path).await;
        let obj = dicom_object::open_file(&path).unwrap();
        let s = |t| obj.element(t).unwrap().to_str().unwrap().trim().to_string();
        let (rows, cols) = (
            obj.element(tags::ROWS).unwrap().to_int::<u32>().unwrap(),
            obj.element(tags::COLUMNS).unwrap().to_int::<u32>().unwrap(),
        );
        let url = format!(
            "/dicom-web/studies/{}/series/{}/instances/{}/rendered",
            s(tags::STUDY_INSTANCE_UID),
            s(tags::SERIES_INSTANCE_UID),
            s(tags::SOP_INSTANCE_UID)
        );
        let r = get(http, &url, &[("Accept", "image/png")]).await;
        assert_eq!(r.status, 200, "{f}: {}", r.text());
        let img = r.image();
        assert_eq!((img.width(), img.height()), (cols, rows), "{f}");
        if f.starts_with("MR_small") {
            mr_variants.push((f, luma(&img)));
        }
        if f == "SC_rgb_rle.dcm" || f == "SC_rgb_jpeg_dcmtk.dcm" {
            // pydicom's SC_rgb bands: red at row 5, green at 25, blue at 45.
            let rgb = img.to_rgb8();
            for (row, want) in [(5, [255, 0, 0]), (25, [0, 255, 0]), (45, [0, 0, 255])] {
                let got = rgb.get_pixel(50, row).0;
                assert!(
                    got.iter()
                        .zip(want)
                        .all(|(g, w)| (*g as i32 - w).abs() < 16),
                    "{f} row {row}: {got:?}"
                );
            }
        }
    }
    // What this node cannot decode (JPEG-LS: no CharLS; 32-bit RLE: dicom-pixeldata's
    // RLE decoder) is a clear 406, and the node goes on.
    for f in ["MR_small_jpeg_ls_lossless.dcm", "SC_rgb_rle_32bit.dcm"] {
        let path = corpus.join(f);
        ingest_path(&node, &path).await;
        let obj = dicom_object::open_file(&path).unwrap();
        let s = |t| obj.element(t).unwrap().to_str().unwrap().trim().to_string();
        let url = format!(
            "/dicom-web/studies/{}/series/{}/instances/{}/rendered",
            s(tags::STUDY_INSTANCE_UID),
            s(tags::SERIES_INSTANCE_UID),
            s(tags::SOP_INSTANCE_UID)
        );
        let r = get(http, &url, &[]).await;
        assert_eq!(r.status, 406, "{f}: {}", r.text());
    }
    assert_eq!(common::health(http).await["status"], "ok");
    // Lossless encodings of the same image render identically.
    let (_, first) = &mr_variants[0];
    for (f, img) in &mr_variants[1..] {
        assert_eq!(img, first, "{f} differs from MR_small.dcm");
    }
    // JPEG output of a compressed source also works, with a thumbnail.
    let obj = dicom_object::open_file(corpus.join("JPEG2000.dcm")).unwrap();
    let s = |t| obj.element(t).unwrap().to_str().unwrap().trim().to_string();
    let url = format!(
        "/dicom-web/studies/{}/series/{}/thumbnail",
        s(tags::STUDY_INSTANCE_UID),
        s(tags::SERIES_INSTANCE_UID)
    );
    let r = get(http, &url, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.image().width().max(r.image().height()), 128);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wado_uri() {
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let node = env.start().await;
    let dir = env.dir.path().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    let http = node.http_addr;
    let a = Ids::new("WADOURI");
    let sent = gradient(&a, 1, 32, 64, "MONOCHROME2", 1, 0);
    ingest_obj(&node, &dir, as_file(sent.clone())).await;
    let q = format!(
        "/wado?requestType=WADO&studyUID={}&seriesUID={}&objectUID={}",
        a.study, a.series, a.sop
    );

    // application/dicom: the stored blob, byte for byte.
    // Resolved as Glia itself (outside a request nothing is visible).
    let found = glia::auth::context::run_as(
        glia::auth::context::Caller::system(),
        glia::dicomweb::resolve(
            &node.state,
            &a.study,
            Some(&a.series),
            Some(&a.sop),
            false,
            false,
        ),
    )
    .await
    .unwrap();
    let blob = node
        .state
        .store
        .get(&glia::store::BlobKey(found[0].stored.blob_key.clone()))
        .await
        .unwrap();
    let r = get(http, &format!("{q}&contentType=application/dicom"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/dicom"));
    assert_eq!(r.body, blob.to_vec());
    // Re-encoded in implicit VR little endian: same pixels, new meta.
    let r = get(
        http,
        &format!("{q}&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(&r.body[128..])
        .unwrap();
    assert_eq!(
        obj.meta().transfer_syntax().trim_end_matches('\0'),
        "1.2.840.10008.1.2"
    );
    assert_eq!(
        obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap(),
        sent.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap()
    );
    let r = get(
        http,
        &format!("{q}&contentType=application/dicom&transferSyntax=1.2.840.10008.1.2.4.50"),
        &[],
    )
    .await;
    assert_eq!(r.status, 406, "{}", r.text());

    // Images: JPEG by default; PNG with size and window.
    let r = get(http, &q, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!((r.image().width(), r.image().height()), (64, 32));
    let r = get(http, &format!("{q}&contentType=image/png&columns=32"), &[]).await;
    assert_eq!((r.image().width(), r.image().height()), (32, 16));
    let r = get(
        http,
        &format!("{q}&contentType=image/png&rows=64&columns=64"),
        &[],
    )
    .await;
    assert_eq!((r.image().width(), r.image().height()), (64, 32));
    let r = get(
        http,
        &format!("{q}&contentType=image/png&windowCenter=3071&windowWidth=2048"),
        &[],
    )
    .await;
    let w = luma(&r.image());
    assert!((0..31).all(|x| w.get_pixel(x, 0).0[0] == 0));
    assert_eq!(w.get_pixel(63, 0).0[0], 255);
    let r = get(
        http,
        &format!("{q}&contentType=image/png&region=0.5,0,1,1"),
        &[],
    )
    .await;
    let c = luma(&r.image());
    assert_eq!(c.dimensions(), (32, 32));
    assert!(c.get_pixel(0, 0).0[0] >= 120);
    let r = get(http, &format!("{q}&frameNumber=1&imageQuality=50"), &[]).await;
    assert_eq!(r.status, 200);
    let r = get(http, &format!("{q}&frameNumber=2"), &[]).await;
    assert_eq!(r.status, 404);

    // Bad requests name their parameter.
    let base = format!(
        "studyUID={}&seriesUID={}&objectUID={}",
        a.study, a.series, a.sop
    );
    for (query, param) in [
        (base.clone(), "requestType"),
        (format!("requestType=WADOX&{base}"), "requestType"),
        (
            format!(
                "requestType=WADO&studyUID={}&seriesUID={}",
                a.study, a.series
            ),
            "objectUID",
        ),
        (
            format!(
                "requestType=WADO&studyUID=abc&seriesUID={}&objectUID={}",
                a.series, a.sop
            ),
            "studyUID",
        ),
        (
            format!("requestType=WADO&{base}&windowCenter=10"),
            "windowWidth",
        ),
        (
            format!("requestType=WADO&{base}&imageQuality=0"),
            "imageQuality",
        ),
        (format!("requestType=WADO&{base}&rows=-3"), "rows"),
        (
            format!("requestType=WADO&{base}&frameNumber=x"),
            "frameNumber",
        ),
        (
            format!("requestType=WADO&{base}&contentType=application/dicom&rows=10"),
            "rows",
        ),
        (
            format!("requestType=WADO&{base}&transferSyntax=1..2"),
            "transferSyntax",
        ),
    ] {
        let r = get(http, &format!("/wado?{query}"), &[]).await;
        assert_bad_param(&r, param, &query);
    }
    let r = get(http, &format!("{q}&contentType=text/html"), &[]).await;
    assert_eq!(r.status, 406);
    // Unknown object: 404.
    let other = a.next_instance();
    let r = get(
        http,
        &format!(
            "/wado?requestType=WADO&studyUID={}&seriesUID={}&objectUID={}",
            a.study, a.series, other.sop
        ),
        &[],
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());

    // An object without pixel data answers itself when no contentType is named.
    let nopix = a.next_instance();
    let mut obj = mr_dataset(&nopix, 2, 4, 4);
    obj.remove_element(tags::PIXEL_DATA);
    ingest_obj(&node, &dir, as_file(obj)).await;
    let r = get(
        http,
        &format!(
            "/wado?requestType=WADO&studyUID={}&seriesUID={}&objectUID={}",
            a.study, a.series, nopix.sop
        ),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/dicom"));
    assert_eq!(common::health(http).await["status"], "ok");
    node.stop().await;
}
