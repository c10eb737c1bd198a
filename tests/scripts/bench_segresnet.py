#!/usr/bin/env python3
"""Benchmark: Glia (candle, CPU) vs PyTorch MONAI SegResNet (CPU), same weights,
same input, same thread count. Not a test; run by hand (needs torch + monai):

    CARGO_TARGET_DIR=... cargo build --release
    python tests/scripts/bench_segresnet.py --glia target/release/glia --threads 2

For each size it prints forward seconds (model load excluded), peak RSS of the
whole process (MiB) and the Glia/PyTorch ratios. Each side runs in its own
child process; peak RSS comes from wait4().

Recorded run (2026-12-04, 2 vCPUs of an Intel Xeon with AVX-512, --threads 2,
torch 2.4.1 CPU (oneDNN), MONAI 1.5.2, BraTS-size SegResNet init_filters 16, random
weights; Glia's direct AVX-512 conv3d kernel, src/ai/cpu_conv.rs):

    128x128x128: pytorch 3.72 s 1224 MiB | glia 2.34 s 493 MiB   | time 0.63x, RSS 0.40x
    240x240x160: pytorch 21.48 s 3628 MiB | glia 11.46 s 1952 MiB | time 0.53x, RSS 0.54x

(Before the direct kernel, with im2col + GEMM, on 2 AMD EPYC vCPUs on 2026-11-22:
240x240x160 took 33.57 s against PyTorch's 23.67 s, 1.42x.)
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

TORCH_CHILD = r"""
import sys, time, torch
from monai.networks.nets import SegResNet
from safetensors.torch import load_file
torch.set_num_threads(int(sys.argv[3]))
net = SegResNet(init_filters=16, in_channels=4, out_channels=3, blocks_down=[1,2,2,4], blocks_up=[1,1,1]).eval()
net.load_state_dict(load_file(sys.argv[1]))
x = load_file(sys.argv[2])["input"]
with torch.inference_mode():
    t = time.perf_counter(); y = net(x); dt = time.perf_counter() - t
print(f"FORWARD {dt:.3f}")
"""


def run(cmd, env=None):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out}")
    return out, ru.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--glia", default="target/release/glia")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="128x128x128,240x240x160")
    a = ap.parse_args()
    import torch
    from monai.networks.nets import SegResNet
    from safetensors.torch import save_file

    tmp = tempfile.mkdtemp()
    torch.manual_seed(0)
    net = SegResNet(init_filters=16, in_channels=4, out_channels=3, blocks_down=[1, 2, 2, 4], blocks_up=[1, 1, 1])
    w = os.path.join(tmp, "w.safetensors")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, w)
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    print(f"threads={a.threads}")
    for size in a.sizes.split(","):
        shape = [1, 4] + [int(s) for s in size.split("x")]
        x = os.path.join(tmp, f"x_{size}.safetensors")
        save_file({"input": torch.randn(shape, generator=torch.Generator().manual_seed(1))}, x)
        out, t_rss = run([sys.executable, "-c", TORCH_CHILD, w, x, str(a.threads)], env)
        t_s = float(re.search(r"FORWARD ([\d.]+)", out).group(1))
        y = os.path.join(tmp, "y.safetensors")
        out, g_rss = run([a.glia, "model", "run", "--device", "cpu", "--weights", w, "--input", x, "--output", y], env)
        m = re.search(r"in ([\d.]+)(ms|s)", out)
        g_s = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
        print(f"{size}: pytorch {t_s:.2f} s {t_rss:.0f} MiB | glia {g_s:.2f} s {g_rss:.0f} MiB | "
              f"time ratio glia/pytorch {g_s / t_s:.2f}, RSS ratio {g_rss / t_rss:.2f}", flush=True)


if __name__ == "__main__":
    main()
