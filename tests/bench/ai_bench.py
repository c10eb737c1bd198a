#!/usr/bin/env python3
"""AI pipeline latency: from the last C-STORE-RSP of a four-series brain-MRI study to
its DICOM SEG being queryable (QIDO-RS), split into waiting (stable_age + pick-up),
selection, loading, assembly, inference, SEG encoding and storing.

Goal (issue "AI as studies arrive"): everything but waiting and inference under 3 s
for a 4 x 155-slice study. Run by hand on a release build; never part of CI.

    cargo build --release
    python3 tests/bench/ai_bench.py                 # BraTS-like 4 x 155 x 240 x 240
    python3 tests/bench/ai_bench.py --small         # 4 x 64 x 80 x 80 (quick)
"""

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import store_bench as sb  # noqa: E402  (bench_token: DICOMweb and the API need a token)

AUTH = {}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    with urllib.request.urlopen(urllib.request.Request(url, headers=AUTH), timeout=30) as r:
        body = r.read()
        return r.status, (json.loads(body) if body else None)


def parse_ts(s):
    return dt.datetime.fromisoformat(s).timestamp()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--glia", default="target/release/glia")
    ap.add_argument("--small", action="store_true", help="64x80x80 phantom study instead of BraTS-like")
    ap.add_argument("--stable-age", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    storescu = "/usr/bin/storescu"
    if not os.path.exists(a.glia) or not os.path.exists(storescu):
        sys.exit(f"needs {a.glia} (cargo build --release) and dcmtk's {storescu}")

    tmp = tempfile.mkdtemp(prefix="glia-ai-bench-")
    node = None
    try:
        study_dir = os.path.join(tmp, "study")
        args = [a.glia, "sample-data", "--out", study_dir, "--seed", str(a.seed)]
        if not a.small:
            args.append("--brats")
        t = time.time()
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        study_uid = [l.split()[1] for l in out.splitlines() if l.strip().startswith("study ")][0]
        files = sum(len(f) for _, _, f in os.walk(study_dir))
        print(f"sample study: {files} files in {time.time() - t:.1f} s")

        dimse, http = free_port(), free_port()
        sets = {
            "dimse.port": dimse, "http.port": http,
            "dimse.bind": '"127.0.0.1"', "http.bind": '"127.0.0.1"',
            "database.url": f'"sqlite://{tmp}/glia.db"',
            "storage.url": f'"file://{tmp}/blobs"',
            "ingest.spool_dir": f'"{tmp}/spool"',
            "ai.stable_age": a.stable_age, "ai.scan_interval_ms": 100,
            "ai.device": '"cpu"',
        }
        cmd = [a.glia, "--config", "/nonexistent.toml"]
        for k, v in sets.items():
            cmd += ["--set", f"{k}={v}"]
        node = subprocess.Popen(cmd + ["serve"], stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{http}"
        for _ in range(300):
            try:
                get(base + "/health")
                break
            except Exception:
                time.sleep(0.1)
        AUTH["Authorization"] = "Bearer " + sb.bench_token(cmd, None, http)

        env = dict(os.environ, TCP_NODELAY="1")
        subprocess.run([storescu, "-aec", "GLIA", "+sd", "+r", "127.0.0.1", str(dimse), study_dir],
                       check=True, env=env, capture_output=True)
        last_rsp = time.time()
        while True:
            status, series = get(f"{base}/dicom-web/studies/{study_uid}/series?Modality=SEG")
            if status == 200 and series:
                break
            _, jobs = get(f"{base}/api/ai/jobs?study_uid={study_uid}")
            if jobs and jobs[0]["state"] in ("failed", "skipped"):
                sys.exit(f"job ended {jobs[0]['state']}: {jobs[0]['reason']}")
            if time.time() - last_rsp > 3600:
                sys.exit("no SEG after an hour")
            time.sleep(0.05)
        queryable = time.time() - last_rsp
        _, jobs = get(f"{base}/api/ai/jobs?study_uid={study_uid}")
        _, results = get(f"{base}/api/ai/studies/{study_uid}/results")
        tm = results[0]["timings"]
        waiting = parse_ts(jobs[0]["started_at"]) - last_rsp
        rest = queryable - waiting - tm["inference"]
        rows = [
            ("waiting (stable_age + pick-up)", waiting),
            ("series selection", tm["select"]),
            ("loading the 4 series", tm["load"]),
            ("assembly (sort, check, resample)", tm["assemble"]),
            ("inference", tm["inference"]),
            ("SEG encoding (map back + encode)", tm["seg_encode"]),
            ("storing the SEG (ingest)", tm["store"]),
            ("SEG queryable after last C-STORE-RSP", queryable),
            ("everything but waiting and inference", rest),
        ]
        for name, v in rows:
            print(f"{name:40s} {v:8.2f} s")
        goal = rest < 3.0
        print(f"goal (everything but waiting and inference < 3 s): {'met' if goal else 'NOT met'}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({k: v for k, v in rows}, f, indent=1)
    finally:
        if node:
            node.terminate()
            node.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
