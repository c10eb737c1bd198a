#!/usr/bin/env python3
"""Generate the SegResNet parity fixtures (run once; outputs are committed).

MONAI SegResNet with seeded random weights -> tests/fixtures/segresnet/weights.safetensors
(tensor names = MONAI state-dict keys), and its float32 CPU output on seeded random
inputs at 4x32x32x32 and the non-cubic 4x48x40x24 -> case_*.safetensors (`input`, `output`).

Needs: torch, monai, safetensors, numpy (not needed by CI; the Rust test only reads
the committed files). Usage: python tests/scripts/make_segresnet_fixtures.py
"""
import json
import os

import torch
from monai.networks.nets import SegResNet
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "segresnet")
# The BraTS bundle layout, narrowed (8 filters, blocks_down [1,1,2,2]) to keep
# the committed weights small; every kind of layer and key is still present.
ARCH = dict(init_filters=8, in_channels=4, out_channels=3,
            blocks_down=[1, 1, 2, 2], blocks_up=[1, 1, 1])


def main():
    torch.manual_seed(20261122)
    torch.set_num_threads(1)
    net = SegResNet(spatial_dims=3, norm=("group", {"num_groups": 8}), **ARCH).eval()
    # Randomise the GroupNorm affine parameters and the final bias too, so that
    # loading them wrongly cannot go unnoticed.
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    os.makedirs(OUT, exist_ok=True)
    meta = {"arch": json.dumps(ARCH), "norm_groups": "8", "generator": "tests/scripts/make_segresnet_fixtures.py"}
    save_file(sd, os.path.join(OUT, "weights.safetensors"), metadata=meta)
    for name, shape in [("case_32x32x32", (1, 4, 32, 32, 32)), ("case_48x40x24", (1, 4, 48, 40, 24))]:
        g = torch.Generator().manual_seed(sum(shape))
        x = torch.randn(shape, generator=g)
        with torch.no_grad():
            y = net(x)
        save_file({"input": x.contiguous(), "output": y.contiguous()}, os.path.join(OUT, name + ".safetensors"))
        print(name, tuple(y.shape), float(y.abs().max()))
    print(len(sd), "tensors,", sum(v.numel() for v in sd.values()), "parameters")


if __name__ == "__main__":
    main()
