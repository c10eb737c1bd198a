//! OHIF in a real browser, shared by the viewer tests (`viewer_ohif.rs`,
//! `viewer_ohif_seg.rs`): the pinned release, its dist unpacked once from the tarball
//! `.ci/run` packs, and whether Chromium + Node + playwright-core are present.

use std::path::{Path, PathBuf};

/// The OHIF release the browser tests run (and `.ci/run` packs).
pub const OHIF_VERSION: &str = "3.13.2";

/// The repository root (where `target/` and `tests/peers/` are).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// OHIF's dist, unpacked once from the packed tarball `.ci/run` fetched
/// (`target/ohif-dist/ohif-app-VERSION.tgz`); `GLIA_OHIF_DIST` names a dist instead.
pub fn ohif_dist() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("GLIA_OHIF_DIST") {
        return Path::new(&d)
            .join("index.html")
            .is_file()
            .then(|| PathBuf::from(d));
    }
    let cache = repo().join("target/ohif-dist");
    let dist = cache.join(OHIF_VERSION).join("package/dist");
    if dist.join("index.html").is_file() {
        return Some(dist);
    }
    let tgz = cache.join(format!("ohif-app-{OHIF_VERSION}.tgz"));
    if !tgz.is_file() {
        return None;
    }
    // Unpack beside, then rename: a concurrent or interrupted run never sees half a dist.
    let tmp = cache.join(format!("{OHIF_VERSION}.tmp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).ok()?;
    let ok = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&tmp)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok || std::fs::rename(&tmp, cache.join(OHIF_VERSION)).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dist.join("index.html").is_file().then_some(dist)
}

/// Chromium (or `$CHROMIUM`), Node and playwright-core in `tests/peers/node_modules`.
pub fn browser_available() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    Path::new(&chromium).exists()
        && repo()
            .join("tests/peers/node_modules/playwright-core")
            .is_dir()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}
