//! Numerical parity of Glia's SegResNet with MONAI's: the committed fixtures
//! (tests/fixtures/segresnet, made by tests/scripts/make_segresnet_fixtures.py)
//! hold seeded random MONAI weights, inputs and MONAI's float32 outputs; the
//! `glia model run` binary must reproduce them within 1e-4.

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::SafeTensors;

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/segresnet")
        .join(name)
}

fn f32_tensor(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<f32>) {
    let st = SafeTensors::deserialize(bytes).expect("fixture is safetensors");
    let t = st.tensor(name).expect("tensor present");
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

fn check_case(case: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let status = Command::new(env!("CARGO_BIN_EXE_glia"))
        .args(["model", "run", "--device", "cpu", "--weights"])
        .arg(fixture("weights.safetensors"))
        .arg("--input")
        .arg(fixture(case))
        .arg("--output")
        .arg(&out)
        .status()
        .expect("run glia");
    assert!(status.success(), "glia model run failed for {case}");
    let want_bytes = std::fs::read(fixture(case)).unwrap();
    let got_bytes = std::fs::read(&out).unwrap();
    let (want_shape, want) = f32_tensor(&want_bytes, "output");
    let (got_shape, got) = f32_tensor(&got_bytes, "output");
    assert_eq!(got_shape, want_shape, "{case}: output shape");
    let max_err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let max_ref = want.iter().map(|v| v.abs()).fold(0f32, f32::max);
    eprintln!("{case}: max abs error {max_err:.3e} (max |ref| {max_ref:.3})");
    assert!(max_ref > 0.1, "{case}: reference output is degenerate");
    assert!(
        max_err <= TOLERANCE,
        "{case}: max abs error {max_err} > {TOLERANCE}"
    );
}

#[test]
fn parity_cubic_32() {
    check_case("case_32x32x32.safetensors");
}

#[test]
fn parity_non_cubic_48x40x24() {
    check_case("case_48x40x24.safetensors");
}
