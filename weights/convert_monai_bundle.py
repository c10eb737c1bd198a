#!/usr/bin/env python3
"""Convert a MONAI bundle SegResNet checkpoint (e.g. brats_mri_segmentation's
models/model.pt) to a Glia safetensors file.

    python weights/convert_monai_bundle.py model.pt brats-segresnet.safetensors

Accepts a bare state dict or one wrapped as {"model": ...} / {"state_dict": ...};
strips DataParallel "module." prefixes; keeps MONAI's key names (Glia loads them
as-is and infers the architecture from the shapes); stores float32 tensors;
records provenance and the sha256 of the source file as metadata.
Needs torch and safetensors (not monai).
"""
import hashlib
import sys

import torch
from safetensors.torch import save_file


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    ck = torch.load(src, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "network"):
        if isinstance(ck, dict) and key in ck and isinstance(ck[key], dict):
            ck = ck[key]
    sd = {}
    for k, v in ck.items():
        if not torch.is_tensor(v):
            continue
        k = k[len("module."):] if k.startswith("module.") else k
        sd[k] = v.detach().to(torch.float32).contiguous()
    if "convInit.conv.weight" not in sd:
        sys.exit("not a MONAI SegResNet state dict (no convInit.conv.weight)")
    sha = hashlib.sha256(open(src, "rb").read()).hexdigest()
    meta = {
        "format": "pt",
        "norm_groups": "8",
        "glia.channels": "T1ce,T1,T2,FLAIR",
        "glia.outputs": "TC,WT,ET (logits)",
        "glia.spacing_mm": "1,1,1",
        "glia.provenance": f"converted from {src} (sha256 {sha}) by weights/convert_monai_bundle.py",
    }
    save_file(sd, dst, metadata=meta)
    n = sum(v.numel() for v in sd.values())
    print(f"{len(sd)} tensors, {n} parameters -> {dst}")
    print("sha256", hashlib.sha256(open(dst, "rb").read()).hexdigest())


if __name__ == "__main__":
    main()
