//! Unit tests for weight loading failures: missing, corrupt, wrong architecture, non-finite.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use super::volume::write_tensors;
use super::{AiConfig, AiError, Engine, SegResNet, SegResNetConfig};

fn tiny() -> SegResNetConfig {
    SegResNetConfig {
        init_filters: 8,
        in_channels: 4,
        out_channels: 3,
        blocks_down: vec![1, 2],
        blocks_up: vec![1],
        norm_groups: 8,
    }
}

fn tensors(cfg: SegResNetConfig) -> Vec<(String, Tensor)> {
    let vm = VarMap::new();
    SegResNet::init_trainable(cfg, &vm, &Device::Cpu).unwrap();
    let data = vm.data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

fn bytes(t: &[(String, Tensor)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    write_tensors(&p, t, None).unwrap();
    std::fs::read(p).unwrap()
}

#[test]
fn roundtrip_infers_architecture() {
    let b = bytes(&tensors(tiny()));
    let m = SegResNet::from_safetensors_bytes(&b, &Device::Cpu).unwrap();
    assert_eq!(m.config(), &tiny());
}

#[test]
fn infers_brats_bundle_layout_from_shapes() {
    let t = tensors(SegResNetConfig::brats());
    assert_eq!(t.len(), 83);
    let params: usize = t.iter().map(|(_, v)| v.elem_count()).sum();
    assert_eq!(params, 4_702_227);
    let shapes: HashMap<String, Vec<usize>> = t
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    assert_eq!(
        SegResNetConfig::infer(&shapes, None).unwrap(),
        SegResNetConfig::brats()
    );
}

#[test]
fn missing_weights_file() {
    let cfg = AiConfig {
        weights: "/nonexistent/w.safetensors".into(),
        device: "cpu".into(),
        ..AiConfig::default()
    };
    assert!(matches!(Engine::load(&cfg), Err(AiError::Weights(_))));
}

#[test]
fn corrupt_weights() {
    let mut b = bytes(&tensors(tiny()));
    assert!(matches!(
        SegResNet::from_safetensors_bytes(&b[..b.len() / 2], &Device::Cpu),
        Err(AiError::Weights(_))
    ));
    b[3] ^= 0x55;
    assert!(SegResNet::from_safetensors_bytes(&b, &Device::Cpu).is_err());
    assert!(matches!(
        SegResNet::from_safetensors_bytes(b"garbage", &Device::Cpu),
        Err(AiError::Weights(_))
    ));
}

#[test]
fn wrong_architecture() {
    // Not a SegResNet at all.
    let other = vec![(
        "fc.weight".to_string(),
        Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap(),
    )];
    assert!(matches!(
        SegResNet::from_safetensors_bytes(&bytes(&other), &Device::Cpu),
        Err(AiError::Architecture(_))
    ));
    // A SegResNet with one conv of the wrong shape.
    let mut t = tensors(tiny());
    for (k, v) in t.iter_mut() {
        if k == "down_layers.1.2.conv1.conv.weight" {
            *v = Tensor::zeros((16, 8, 3, 3, 3), DType::F32, &Device::Cpu).unwrap();
        }
    }
    assert!(matches!(
        SegResNet::from_safetensors_bytes(&bytes(&t), &Device::Cpu),
        Err(AiError::Architecture(_))
    ));
    // A SegResNet with a missing tensor.
    let t: Vec<_> = tensors(tiny())
        .into_iter()
        .filter(|(k, _)| k != "up_layers.0.0.norm2.bias")
        .collect();
    assert!(matches!(
        SegResNet::from_safetensors_bytes(&bytes(&t), &Device::Cpu),
        Err(AiError::Architecture(_))
    ));
}

#[test]
fn non_finite_weights() {
    let mut t = tensors(tiny());
    t[0].1 = (t[0].1.clone() * f64::NAN).unwrap();
    assert!(
        matches!(SegResNet::from_safetensors_bytes(&bytes(&t), &Device::Cpu), Err(AiError::Weights(m)) if m.contains("NaN"))
    );
}

#[test]
fn forward_rejects_bad_shapes() {
    let m = SegResNet::from_safetensors_bytes(&bytes(&tensors(tiny())), &Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 3, 8, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(m.forward(&x), Err(AiError::Input(_))));
    let x = Tensor::zeros((1, 4, 8, 7, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(m.forward(&x), Err(AiError::Input(_))));
    let x = Tensor::zeros((4, 8, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(m.forward(&x), Err(AiError::Input(_))));
}

#[test]
fn bad_device_string() {
    assert!(matches!(
        super::parse_device("gpu7"),
        Err(AiError::Config(_))
    ));
    assert!(super::parse_device("cpu").is_ok());
}

#[test]
fn ai_config_defaults_and_partial_override() {
    let c: AiConfig =
        serde_json::from_str(r#"{"device": "cuda:1", "overlap": 0.25, "blend": "gaussian"}"#)
            .unwrap();
    assert_eq!(c.device, "cuda:1");
    assert_eq!(c.overlap, 0.25);
    assert_eq!(c.blend, super::BlendMode::Gaussian);
    assert_eq!(c.roi, [160, 240, 240]);
    assert_eq!(c.max_concurrent, 1);
    assert!(serde_json::from_str::<AiConfig>(r#"{"blend": "median"}"#).is_err());
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_without_cuda_build_is_a_clear_error() {
    assert!(
        matches!(super::parse_device("cuda:0"), Err(AiError::Config(m)) if m.contains("cuda:0"))
    );
    // "auto" falls back to the CPU.
    assert!(super::parse_device("auto").unwrap().is_cpu());
}
