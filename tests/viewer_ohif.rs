//! The viewer at `/viewer`, CORS, and OHIF in a real browser.
//!
//! - `viewer_serving`: a small fake dist (built for `/` like OHIF's): rewritten
//!   `index.html`, webpack public path and CSS, generated `app-config.js`, client-side
//!   routes → `index.html`, missing assets → 404, path traversal refused, ETags.
//! - `cors_*`: preflight and simple requests on `/dicom-web`, `/wado`, `/api` for
//!   allowed, other and any origins; none on other paths or with an empty list.
//! - `ohif_viewer`: OHIF's real dist (`npm pack @ohif/app@3.13.2`, unpacked once into
//!   `target/ohif-dist/`), a synthetic two-series MR study stored by C-STORE, and
//!   `tests/peers/ohif_check.mjs` in headless Chromium (playwright-core): the study
//!   list shows the study, the viewer draws a non-blank image, no request fails. The
//!   screenshot is kept as `target/test-artifacts/ohif-viewer.png`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use common::gen::{encode_explicit_le, mr_dataset, set_pixels, set_str, Ids};
use common::scu::Scu;
use common::{require, Backend, TestEnv};
use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};

use common::ohif::{browser_available, ohif_dist, repo, OHIF_VERSION};

struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One HTTP/1.1 request (`Connection: close`), chunked bodies decoded.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = common::http::token_for(addr) {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 4 + size..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[]).await
}

/// A dist laid out like OHIF's: absolute references to `/`.
fn fake_dist(dir: &Path) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        r#"<!doctype html><html><head><script>window.PUBLIC_URL="/"</script><script src="/app-config.js"></script><link href="/app.bundle.css" rel="stylesheet"><link rel="icon" href="/assets/favicon.ico"></head><body><div id="root"></div><script defer src="/app.bundle.js"></script></body></html>"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("app-config.js"),
        "window.config = { routerBasename: null };",
    )
    .unwrap();
    std::fs::write(
        dir.join("app.bundle.js"),
        "(() => {\n__webpack_require__.p = \"/\";\n})();\n",
    )
    .unwrap();
    std::fs::write(dir.join("plain.js"), "console.log('as is');\n").unwrap();
    std::fs::write(dir.join("app.bundle.css"), "@font-face{src:url(/f.woff2)}").unwrap();
    std::fs::write(dir.join("codec.wasm"), [0u8, 97, 115, 109, 1, 0, 0, 0, 255]).unwrap();
    std::fs::write(dir.join("assets/favicon.ico"), [1u8, 2, 3]).unwrap();
    std::fs::write(dir.parent().unwrap().join("secret.txt"), "secret").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_serving() {
    let mut env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let dist = env.dir.path().join("www/dist");
    fake_dist(&dist);
    env.config.http.viewer_dir = dist.display().to_string();
    let node = env.start().await;
    let a = node.http_addr;

    for path in ["/viewer", "/viewer/", "/viewer/index.html"] {
        let r = get(a, path).await;
        assert_eq!(r.status, 200, "{path}");
        let t = r.text();
        assert!(t.contains(r#"window.PUBLIC_URL="/viewer/""#), "{path}: {t}");
        assert!(t.contains(r#"src="/viewer/app-config.js""#), "{t}");
        assert!(t.contains(r#"src="/viewer/app.bundle.js""#), "{t}");
        assert!(t.contains(r#"href="/viewer/app.bundle.css""#), "{t}");
        assert!(t.contains(r#"href="/viewer/assets/favicon.ico""#), "{t}");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    // Client-side routes of the single-page application.
    for path in [
        "/viewer/viewer?StudyInstanceUIDs=1.2.840.1.2.3",
        "/viewer/viewer/dicomweb?StudyInstanceUIDs=1.2.3",
        "/viewer/segmentation",
    ] {
        let r = get(a, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.text().contains(r#"window.PUBLIC_URL="/viewer/""#),
            "{path}"
        );
    }
    // The generated configuration, not the dist's own.
    let r = get(a, "/viewer/app-config.js").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().contains("javascript"));
    let t = r.text();
    assert!(
        t.contains("routerBasename: '/viewer'") && t.contains("origin + '/dicom-web'"),
        "{t}"
    );
    // Webpack public path and CSS rewritten; ETag revalidation.
    let r = get(a, "/viewer/app.bundle.js").await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("__webpack_require__.p = \"/viewer/\";"),
        "{}",
        r.text()
    );
    let etag = r.header("etag").expect("etag").to_string();
    let r = request(
        a,
        "GET",
        "/viewer/app.bundle.js",
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(r.status, 304);
    let r = get(a, "/viewer/app.bundle.css").await;
    assert_eq!(r.text(), "@font-face{src:url(/viewer/f.woff2)}");
    assert!(r.header("content-type").unwrap().starts_with("text/css"));
    // Files that need no rewrite come from the static-files endpoint, unchanged.
    assert_eq!(
        get(a, "/viewer/plain.js").await.text(),
        "console.log('as is');\n"
    );
    let r = get(a, "/viewer/codec.wasm").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, [0u8, 97, 115, 109, 1, 0, 0, 0, 255]);
    assert_eq!(get(a, "/viewer/assets/favicon.ico").await.body, [1u8, 2, 3]);
    // Missing assets are 404, not index.html.
    for path in [
        "/viewer/missing.bundle.js",
        "/viewer/assets/nope.png",
        "/viewer/x.wasm",
    ] {
        assert_eq!(get(a, path).await.status, 404, "{path}");
    }
    // Nothing outside the dist.
    for path in [
        "/viewer/../secret.txt",
        "/viewer/%2e%2e/secret.txt",
        "/viewer/assets/%2E%2E/%2E%2E/secret.txt",
    ] {
        let r = get(a, path).await;
        assert!(
            !r.text().contains("secret") || r.status != 200,
            "{path}: {}",
            r.status
        );
    }
    assert_eq!(
        request(a, "POST", "/viewer/index.html", &[("Content-Length", "0")])
            .await
            .status,
        405
    );
    // The node's own routes still answer.
    assert_eq!(get(a, "/health").await.status, 200);
    node.stop().await;

    // No viewer_dir: no viewer.
    let env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let node = env.start().await;
    assert_eq!(get(node.http_addr, "/viewer").await.status, 404);
    node.stop().await;
}

async fn node_with_cors(origins: &[&str]) -> (TestEnv, glia::app::RunningNode) {
    let mut env = TestEnv::new(Backend::Sqlite).await.unwrap();
    env.config.http.cors_origins = origins.iter().map(|s| s.to_string()).collect();
    let node = env.start().await;
    (env, node)
}

async fn preflight(a: SocketAddr, path: &str, origin: &str) -> Reply {
    request(
        a,
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "accept, authorization"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_listed_origins() {
    let (_env, node) = node_with_cors(&["http://viewer.example"]).await;
    let a = node.http_addr;
    let ok = "http://viewer.example";
    for path in [
        "/dicom-web/studies",
        "/wado?requestType=WADO",
        "/api/openapi.json",
    ] {
        let r = preflight(a, path, ok).await;
        assert!(r.status < 300, "{path}: preflight {}", r.status);
        assert_eq!(r.header("access-control-allow-origin"), Some(ok), "{path}");
        let methods = r
            .header("access-control-allow-methods")
            .unwrap_or("")
            .to_ascii_uppercase();
        for m in ["GET", "POST", "OPTIONS"] {
            assert!(methods.contains(m), "{path}: methods {methods}");
        }
        let hdrs = r
            .header("access-control-allow-headers")
            .unwrap_or("")
            .to_ascii_lowercase();
        assert!(
            hdrs.contains("accept") && hdrs.contains("authorization"),
            "{path}: {hdrs}"
        );
        // A disallowed origin gets no permission.
        let r = preflight(a, path, "http://evil.example").await;
        assert_ne!(
            r.header("access-control-allow-origin"),
            Some("http://evil.example")
        );
        assert_ne!(r.header("access-control-allow-origin"), Some("*"));
    }
    let r = request(a, "GET", "/api/openapi.json", &[("Origin", ok)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(ok));
    let expose = r
        .header("access-control-expose-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    for h in ["warning", "content-type", "content-length"] {
        assert!(expose.contains(h), "expose {expose}");
    }
    // DICOMweb answers carry the permission too.
    let r = request(
        a,
        "GET",
        "/dicom-web/studies",
        &[("Origin", ok), ("Accept", "application/dicom+json")],
    )
    .await;
    assert!(r.status == 200 || r.status == 204, "QIDO {}", r.status);
    assert_eq!(r.header("access-control-allow-origin"), Some(ok));
    // Other paths get no CORS.
    let r = request(a, "GET", "/health", &[("Origin", ok)]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_any_and_none() {
    let (_env, node) = node_with_cors(&["*"]).await;
    let r = preflight(
        node.http_addr,
        "/dicom-web/studies",
        "http://anywhere.example",
    )
    .await;
    assert!(r.status < 300, "preflight {}", r.status);
    let allow = r.header("access-control-allow-origin");
    assert!(
        allow == Some("*") || allow == Some("http://anywhere.example"),
        "{allow:?}"
    );
    node.stop().await;

    let (_env, node) = node_with_cors(&[]).await;
    let r = request(
        node.http_addr,
        "GET",
        "/api/openapi.json",
        &[("Origin", "http://x.example")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
    let r = preflight(node.http_addr, "/dicom-web/studies", "http://x.example").await;
    assert!(r.header("access-control-allow-origin").is_none());
    node.stop().await;
}

// ---- OHIF in Chromium -----------------------------------------------------------

/// Two MR series of 256×256 16-bit slices: rings around a moving centre on a
/// gradient (series 1), a checkerboard with a bright disc (series 2).
async fn store_study(node: &glia::app::RunningNode) -> Ids {
    let ids = Ids::new("OHIF-1");
    let mut scu = Scu::connect_with(node.dimse_addr, "GLIA", &[uids::MR_IMAGE_STORAGE])
        .await
        .unwrap();
    let mut series = ids.clone();
    for s in 0..2u32 {
        let mut inst = series.clone();
        for n in 0..4u32 {
            let mut ds = mr_dataset(&inst, n as i32 + 1, 8, 8);
            set_str(&mut ds, tags::PATIENT_NAME, VR::PN, "VIEWER^TEST");
            set_str(&mut ds, tags::SERIES_NUMBER, VR::IS, &(s + 1).to_string());
            set_str(
                &mut ds,
                tags::SERIES_DESCRIPTION,
                VR::LO,
                if s == 0 { "RINGS" } else { "CHECKER" },
            );
            set_str(&mut ds, tags::WINDOW_CENTER, VR::DS, "2048");
            set_str(&mut ds, tags::WINDOW_WIDTH, VR::DS, "4096");
            set_str(&mut ds, tags::PIXEL_SPACING, VR::DS, "1\\1");
            set_str(&mut ds, tags::SLICE_THICKNESS, VR::DS, "2");
            set_str(
                &mut ds,
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                &format!("0\\0\\{}", n * 2),
            );
            set_str(
                &mut ds,
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                "1\\0\\0\\0\\1\\0",
            );
            set_pixels(&mut ds, 256, 256, 1, |_, r, c| {
                let (y, x) = (r as f64, c as f64);
                if s == 0 {
                    let d = ((x - 128.0 - n as f64 * 8.0).powi(2) + (y - 128.0).powi(2)).sqrt();
                    let ring = if (d as u32 / 12).is_multiple_of(2) {
                        2600.0
                    } else {
                        600.0
                    };
                    (ring + x * 5.0).min(4095.0) as u16
                } else {
                    let disc = (x - 90.0).powi(2) + (y - 160.0).powi(2) < 40.0f64.powi(2);
                    let check = ((r / 32) + (c / 32)) % 2 == 0;
                    match (disc, check) {
                        (true, _) => 4000,
                        (false, true) => 1800 + (y * 4.0) as u16,
                        (false, false) => 300 + (x * 3.0) as u16,
                    }
                }
            });
            let (st, c) = scu
                .store(uids::MR_IMAGE_STORAGE, &inst.sop, &encode_explicit_le(&ds))
                .await;
            assert_eq!(st, 0, "{c:?}");
            inst = inst.next_instance();
        }
        series = series.next_series();
    }
    scu.release().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ohif_viewer() {
    if !require(
        "Chromium (/usr/bin/chromium), node and playwright-core in tests/peers/node_modules (.ci/run installs them)",
        browser_available(),
    ) {
        return;
    }
    let Some(dist) = ohif_dist() else {
        require(
            &format!("OHIF's dist (target/ohif-dist/ohif-app-{OHIF_VERSION}.tgz from `npm pack @ohif/app@{OHIF_VERSION}`; .ci/run fetches it)"),
            false,
        );
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("glia=info,warn")
        .with_test_writer()
        .try_init();
    let mut env = TestEnv::new(Backend::Sqlite).await.unwrap();
    env.config.http.viewer_dir = dist.display().to_string();
    let node = env.start().await;
    let ids = store_study(&node).await;
    let out = repo().join("target/test-artifacts/ohif-viewer.png");
    let base = format!("http://127.0.0.1:{}", node.http_addr.port());
    // The viewer is opened with a link token; Glia keeps it in a cookie for OHIF's
    // DICOMweb requests.
    let token = common::admin_link_token(&node).await;
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(400),
        tokio::process::Command::new("node")
            .arg(repo().join("tests/peers/ohif_check.mjs"))
            // OHIF shows "FAMILY, GIVEN" in its study list.
            .args(["--base", &base, "--study", &ids.study, "--token", &token])
            .args(["--list-text", "VIEWER, TEST", "--list-text", "BRAIN MRI"])
            .arg("--out")
            .arg(&out)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ohif_check.mjs finishes within 400 s")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{text}");
    println!("OHIF screenshot: {}", out.display());
    assert!(
        run.status.success(),
        "ohif_check.mjs failed ({}):\n{text}",
        run.status
    );
    node.stop().await;
}
