#!/usr/bin/env python3
"""DICOMweb benchmark: Glia versus Orthanc 1.10 + its DICOMweb plugin, in one run.

Both servers are started fresh on free loopback ports and loaded by dcmtk `storescu`
(`TCP_NODELAY=1`, one association) with the same data:

  * the synthetic MR set of qr_bench.py (store_bench's 10 studies x 4 series x 40 slices,
    256x256 16-bit, patient names rewritten so that 4 of 10 start with `MUE`), and
  * one extra study with a single `--big`-instance series (default 1000, 64x64), for
    series metadata at scale.

Glia: `target/release/glia` on SQLite + a local directory (`--backend sqlite-file`) or on
PostgreSQL (127.0.0.1:5432, trust auth, a fresh database) + a SeaweedFS S3 started here
(`--backend pg-s3`, as store_bench.py does). Orthanc: Debian `orthanc` with
`/usr/share/orthanc/plugins/libOrthancDicomWeb.so`, its default SQLite index.

Then, per operation, interleaved Glia / Orthanc on one keep-alive HTTP connection per
server (http.client, Nagle off, `Accept-Encoding: identity`), one validated warm-up
request each and `--runs` timed repetitions (medians):

  QIDO-RS  /studies?PatientID=, ?PatientName=MUE*, ?StudyDate=a-b, /studies/{s}/series,
           /studies/{s}/series/{se}/instances                    goal <= 0.25x Orthanc's time
  WADO-RS  /studies/{s}/series/{se}/metadata (40 instances)      goal <= 0.1x
           /studies/{s}/series/{se}, /studies/{s} (transfer-syntax=*): MB/s, goal >= 1.5x
           /studies/{s}/series/{se}/instances/{i}/frames/1       (no goal)
  STOW-RS  POST /studies, a fresh 40-instance series (new UIDs each repetition): instances/s,
           goal >= 3x (if Glia answers 404/405 the row says "glia: not available")
  metadata of the --big-instance series                          goal (Glia) < 100 ms

Every answer is checked once per server (status, media type, number of results / parts,
UIDs); wrong answers are listed at the end as request / expected / got. `--json FILE`
writes the raw figures. This is a benchmark, not a test: it never runs in CI. Processes,
temp dirs and databases are removed at exit, including on Ctrl-C.

    python3 tests/bench/dicomweb_bench.py                          # full run, 20 repetitions
    python3 tests/bench/dicomweb_bench.py --studies 1 --runs 1     # smoke run
    python3 tests/bench/dicomweb_bench.py --backend pg-s3 --json /tmp/dw-pg.json
"""

from __future__ import annotations

import argparse
import array
import http.client
import io
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_bench as sb  # noqa: E402  (data set, Cleanup, SeaweedFS, PostgreSQL helpers)
import qr_bench as qb  # noqa: E402  (MUE* data set, Orthanc start-up, storescu load)

REPO = Path(__file__).resolve().parents[2]
CLEAN = sb.CLEAN
log = sb.log
ORTHANC_DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
DICOM_JSON = "application/dicom+json"
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_FRAME = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
ACCEPT_FRAME_PLAIN = 'multipart/related; type="application/octet-stream"'
DATE_RANGE = ("20260101", "20260430")

# ------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------


def big_series(cache: Path, n: int, size: int, template: Path) -> Path:
    """One study with one n-instance MR series (size x size), cached; returns its folder."""
    import pydicom
    from pydicom.uid import generate_uid

    root = cache / f"dw-big-{n}-{size}"
    if (root / "COMPLETE").exists() and len(list((root / "series").glob("*.dcm"))) == n:
        return root / "series"
    shutil.rmtree(root, ignore_errors=True)
    (root / "series").mkdir(parents=True)
    log(f"generating a {n}-instance series ({size}x{size}) into {root} ...")
    rng = random.Random(1000)
    pool = array.array("H", (rng.randrange(300, 2000) for _ in range(70000)))
    if sys.byteorder != "little":
        pool.byteswap()
    ds = pydicom.dcmread(template)
    study = generate_uid(entropy_srcs=["glia-dicomweb-bench", "big-study", str(n)])
    series = generate_uid(entropy_srcs=["glia-dicomweb-bench", "big-series", str(n)])
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID, ds.AccessionNumber = "BIG^SERIES", "BIGSERIES", "ACCBIG"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "19990101"
    ds.StudyDescription, ds.SeriesDescription, ds.SeriesNumber = "BIG SERIES", f"BIG {n}", 1
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [round(240.0 / size, 6)] * 2
    for k in range(n):
        sop = generate_uid(entropy_srcs=["glia-dicomweb-bench", "big-sop", str(n), str(k)])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = k + 1
        z = round(-0.5 * n + k * 0.5, 3)
        ds.ImagePositionPatient = [-120.0, -120.0, z]
        ds.SliceLocation = z
        off = rng.randrange(len(pool) - size * size)
        ds.PixelData = pool[off:off + size * size].tobytes()
        ds["PixelData"].VR = "OW"
        ds.save_as(root / "series" / f"im{k + 1:05d}.dcm", enforce_file_format=True)
    (root / "COMPLETE").write_text("ok\n")
    return root / "series"


def describe(data: Path) -> dict:
    """UIDs and expected answers, read from the files (first file of each series)."""
    import pydicom

    studies: dict[str, dict] = {}
    for sdir in sorted(p for p in data.iterdir() if p.is_dir()):
        for sedir in sorted(p for p in sdir.iterdir() if p.is_dir()):
            files = sorted(sedir.glob("*.dcm"))
            ds = pydicom.dcmread(files[0], stop_before_pixels=True)
            st = studies.setdefault(str(ds.StudyInstanceUID), {
                "pid": str(ds.PatientID), "name": str(ds.PatientName), "date": str(ds.StudyDate),
                "series": {}, "dir": sdir})
            st["series"][str(ds.SeriesInstanceUID)] = files
    return studies


def sop_uids(files: list[Path]) -> set[str]:
    import pydicom

    return {str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
            for f in files}


# ------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection (http.client sets TCP_NODELAY)."""

    def __init__(self, name: str, port: int, timeout: float = 300.0, token: str | None = None):
        self.name, self.port = name, port
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.reconnects = 0
        self.stale = 0
        self._sock = None

    def call(self, method: str, path: str, headers: dict, body: bytes | None = None):
        """-> (status, headers with lower-case names, body, seconds to the last byte)."""
        for attempt in (1, 2):
            t0 = time.perf_counter()
            try:
                self.conn.request(method, "/dicom-web" + path, body=body, headers={**self.auth, **headers})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (and closed) before reading the whole body
            try:
                r = self.conn.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError):
                # A kept-alive connection the server had closed while idle: nothing was
                # processed; retry once on a new connection (timed from the retry).
                self.conn.close()
                self.stale += 1
                if attempt == 2:
                    raise
        data = r.read()
        secs = time.perf_counter() - t0
        if self._sock is not None and self.conn.sock is not self._sock:
            self.reconnects += 1  # the server closed the previous connection
        self._sock = self.conn.sock
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data, secs

    def close(self) -> None:
        self.conn.close()


def parse_multipart(ctype: str, body: bytes) -> list[tuple[dict, bytes]]:
    m = re.search(r'boundary="?([^";]+)"?', ctype or "")
    if not m:
        raise ValueError(f"no boundary in Content-Type {ctype!r}")
    delim = b"--" + m.group(1).encode()
    parts = []
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("part without a header/body separator")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        hdrs = {}
        for line in head.split(b"\r\n"):
            k, _, v = line.decode("latin-1").partition(":")
            if k:
                hdrs[k.strip().lower()] = v.strip()
        parts.append((hdrs, data))
    return parts


def json_uids(body: bytes, tag: str) -> list[str]:
    items = json.loads(body) if body else []
    return [it.get(tag, {}).get("Value", [None])[0] for it in items]


# ------------------------------------------------------------------------------------
# Servers
# ------------------------------------------------------------------------------------


class Glia:
    def __init__(self, args, weed):
        self.tmp = CLEAN.tempdir("glia-dwbench-")
        self.dport, self.hport = sb.free_port(), sb.free_port()
        sets = [f"dimse.port={self.dport}", f"http.port={self.hport}", "dimse.bind=127.0.0.1",
                "http.bind=127.0.0.1", "dimse.ae_title=GLIA", f"ingest.spool_dir={self.tmp}/spool",
                "log.level=warn"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLIA__") and k != "RUST_LOG"}
        self.dbname = None
        if weed is None:
            sets += [f"database.url=sqlite://{self.tmp}/glia.db", f"storage.url=file://{self.tmp}/blobs"]
        else:
            self.dbname = f"glia_dwbench_{os.getpid()}"
            sb.psql(f'CREATE DATABASE "{self.dbname}"')
            CLEAN.databases.append(self.dbname)
            sets += [f"database.url=postgres://postgres@127.0.0.1:5432/{self.dbname}",
                     f"storage.url=s3://{weed.bucket}/{self.dbname}", f"storage.s3.endpoint={weed.endpoint}",
                     "storage.s3.allow_http=true", "storage.s3.region=us-east-1"]
            env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
        cmd = [str(args.glia), "--config", "/dev/null"]
        for s in sets:
            cmd += ["--set", s]
        logf = open(self.tmp / "glia.log", "wb")
        self.proc = CLEAN.spawn(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
        logf.close()
        sb.wait_port(self.hport, self.proc, "glia (http)", timeout=120)
        sb.wait_port(self.dport, self.proc, "glia (dimse)", timeout=60)
        self.token = sb.bench_token(cmd, env, self.hport)

    def count(self) -> int:
        return json.loads(sb.http_get(f"http://127.0.0.1:{self.hport}/health")).get("instances")

    def log_tail(self) -> str:
        return (self.tmp / "glia.log").read_text(errors="replace")[-3000:]


class Orthanc:
    def __init__(self):
        if not os.path.exists(ORTHANC_DICOMWEB):
            raise SystemExit(f"{ORTHANC_DICOMWEB} missing (apt-get install orthanc orthanc-dicomweb)")
        extra = {"Plugins": [ORTHANC_DICOMWEB], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
                 "KeepAlive": True, "KeepAliveTimeout": 60, "TcpNoDelay": True}
        self.proc, self.dport, self.hport, self.tmp = qb.start_orthanc({}, extra)

    def count(self) -> int:
        return json.loads(sb.http_get(f"http://127.0.0.1:{self.hport}/statistics"))["CountInstances"]


def version_of(pkg: str) -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return r.stdout.strip() or "?"


# ------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------


class Problems:
    def __init__(self):
        self.items: list[dict] = []

    def add(self, target: str, request: str, expected: str, got: str) -> None:
        p = {"target": target, "request": request, "expected": expected, "got": got}
        if p not in self.items:
            self.items.append(p)
            log(f"PROBLEM {target}: {request}\n  expected: {expected}\n  got:      {got}")


def check_response(kind: str, status: int, hdrs: dict, body: bytes, expect) -> str | None:
    """None if the answer is right, else what was wrong."""
    ctype = hdrs.get("content-type", "")
    if kind in ("qido", "metadata"):
        if status == 204 and expect[1] == set():
            return None
        if status != 200:
            return f"HTTP {status} {body[:300]!r}"
        if not ctype.startswith(DICOM_JSON):
            return f"Content-Type {ctype!r}"
        tag, want = expect
        try:
            got = json_uids(body, tag)
        except ValueError as e:
            return f"invalid JSON: {e}"
        if sorted(got, key=str) != sorted(want):
            return (f"{len(got)} results, {len(set(got) & want)} of the expected {len(want)} UIDs "
                    f"({tag}); first: {got[:2]}")
        if kind == "metadata":
            items = json.loads(body)
            missing = [t for t in ("0020000D", "0020000E", "00080016", "00280010", "7FE00010") if t not in items[0]]
            if missing:
                return f"instance metadata lacks {missing}"
        return None
    if status != 200:
        return f"HTTP {status} {body[:300]!r}"
    if not ctype.startswith("multipart/related"):
        return f"Content-Type {ctype!r}"
    try:
        parts = parse_multipart(ctype, body)
    except ValueError as e:
        return str(e)
    if kind == "retrieve":
        import pydicom

        got = set()
        for h, data in parts:
            if not h.get("content-type", "").startswith("application/dicom"):
                return f"part Content-Type {h.get('content-type')!r}"
            got.add(str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID))
        if got != expect or len(parts) != len(expect):
            return f"{len(parts)} parts, {len(got & expect)} of the expected {len(expect)} SOP Instance UIDs"
        return None
    if kind == "frame":
        if len(parts) != 1:
            return f"{len(parts)} parts, expected 1"
        if len(parts[0][1]) != expect:
            return f"frame of {len(parts[0][1])} bytes, expected {expect}"
        return None
    raise AssertionError(kind)


def measure(clients: dict, op: dict, runs: int, problems: Problems, reps: dict | None = None) -> dict:
    """Validated warm-up per server, then `runs` interleaved repetitions."""
    res = {}
    for name, c in clients.items():
        accept = None
        for acc in op["accept"]:
            st, h, body, secs = c.call("GET", op["path"], {"Accept": acc})
            err = check_response(op["kind"], st, h, body, op["expect"])
            accept = acc
            if err is None or st not in (400, 406):
                break  # else try the next Accept alternative
        res[name] = {"accept": accept, "first_s": secs, "status": st, "bytes": len(body),
                     "content_encoding": h.get("content-encoding", ""),
                     "transfer_encoding": h.get("transfer-encoding", ""), "error": err, "seconds": []}
        if err:
            problems.add(name, f"GET /dicom-web{op['path']}  Accept: {accept}", op["expected_text"], err)
        if accept != op["accept"][0]:
            log(f"note: {name} refused Accept {op['accept'][0]!r}; measured with {accept!r}")
    for r in range(runs):
        for name, c in clients.items():
            if reps and r >= reps.get(name, runs):
                continue
            st, h, body, secs = c.call("GET", op["path"], {"Accept": res[name]["accept"]})
            if st != res[name]["status"] or (len(body) != res[name]["bytes"] and op["kind"] != "qido"):
                problems.add(name, f"GET /dicom-web{op['path']}", f"the warm-up answer (HTTP {res[name]['status']},"
                             f" {res[name]['bytes']} bytes)", f"HTTP {st}, {len(body)} bytes")
            res[name]["seconds"].append(secs)
    for name in clients:
        v = res[name]["seconds"]
        res[name]["median_s"] = statistics.median(v) if v else res[name]["first_s"]
        res[name]["mb_s"] = res[name]["bytes"] / res[name]["median_s"] / 1e6
    return res


def stow_bodies(template_files: list[Path], reps: int) -> list[tuple[str, str, set[str], bytes, str]]:
    """reps multipart bodies, each a fresh series (and study) with new UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    templates = [pydicom.dcmread(f) for f in template_files]
    out = []
    for r in range(reps):
        study, series = generate_uid(), generate_uid()
        boundary = f"stow-{uuid.uuid4().hex}"
        chunks, sops = [], set()
        for ds in templates:
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            sop = generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.PatientName, ds.PatientID, ds.AccessionNumber = "STOW^BENCH", "STOWBENCH", f"STOW{r}"
            ds.StudyDate = ds.SeriesDate = "20000101"
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            sops.add(sop)
            chunks.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + buf.getvalue()
                          + b"\r\n")
        body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
        out.append((study, series, sops, body, boundary))
    return out


def measure_stow(clients: dict, template_files: list[Path], runs: int, problems: Problems) -> dict:
    bodies = stow_bodies(template_files, runs + 1)
    n = len(template_files)
    res = {name: {"seconds": [], "available": True, "error": None} for name in clients}
    for name, c in clients.items():  # is STOW-RS there at all? (an empty multipart body)
        st, _, rbody, _ = c.call("POST", "/studies", {
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=probe',
            "Accept": DICOM_JSON}, b"--probe--\r\n")
        log(f"STOW-RS probe (empty multipart body): {name} HTTP {st} {rbody[:120]!r}")
        if st in (404, 405, 501):
            res[name].update(available=False, error=f"HTTP {st} to POST /dicom-web/studies")
    for r, (study, series, sops, body, boundary) in enumerate(bodies):
        for name, c in clients.items():
            if not res[name]["available"]:
                continue
            hdrs = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                    "Accept": DICOM_JSON}
            st, h, rbody, secs = c.call("POST", "/studies", hdrs, body)
            req = f"POST /dicom-web/studies ({n} instances, {len(body)} bytes)"
            if st != 200:
                problems.add(name, req, "HTTP 200", f"HTTP {st} {rbody[:300]!r}")
            else:
                try:
                    doc = json.loads(rbody)
                    ref = doc.get("00081199", {}).get("Value", [])
                    failed = doc.get("00081198", {}).get("Value", [])
                    if len(ref) != n or failed:
                        problems.add(name, req, f"{n} items in ReferencedSOPSequence, no FailedSOPSequence",
                                     f"{len(ref)} referenced, {len(failed)} failed")
                except (ValueError, AttributeError) as e:
                    problems.add(name, req, "a DICOM JSON response", f"{e}: {rbody[:200]!r}")
            # Outside the timing: the new series must be queryable with all its instances.
            qst, qh, qbody, _ = c.call("GET", f"/studies/{study}/series/{series}/instances", {"Accept": DICOM_JSON})
            got = set(json_uids(qbody, "00080018")) if qst == 200 else set()
            if got != sops:
                problems.add(name, f"GET /dicom-web/studies/{{s}}/series/{{se}}/instances after STOW",
                             f"the {n} stored instances", f"HTTP {qst}, {len(got & sops)} of them")
            if r > 0:  # the first repetition is the warm-up
                res[name]["seconds"].append(secs)
    for name in clients:
        v = res[name]["seconds"]
        res[name]["median_s"] = statistics.median(v) if v else float("nan")
        res[name]["inst_s"] = n / res[name]["median_s"] if v else float("nan")
        res[name]["bytes"] = len(bodies[0][3])
    return res


# ------------------------------------------------------------------------------------


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=10)
    ap.add_argument("--slices", type=int, default=40, help="slices per series (4 series per study)")
    ap.add_argument("--size", type=int, default=256, help="rows = columns")
    ap.add_argument("--big", type=int, default=1000, help="instances of the big series (0: skip)")
    ap.add_argument("--big-size", type=int, default=64)
    ap.add_argument("--runs", type=int, default=20, help="timed repetitions per operation and server")
    ap.add_argument("--big-runs-slow", type=int, default=3,
                    help="repetitions of the big-series metadata for a server whose first answer took > 2 s")
    ap.add_argument("--backend", choices=["sqlite-file", "pg-s3"], default="sqlite-file")
    ap.add_argument("--glia", type=Path, default=REPO / "target" / "release" / "glia")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "glia-bench-cache")
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    args = ap.parse_args()
    if not os.access(sb.STORESCU, os.X_OK):
        raise SystemExit(f"{sb.STORESCU} missing (apt-get install dcmtk)")
    if not os.access(args.glia, os.X_OK):
        raise SystemExit(f"{args.glia} missing: cargo build --release")
    qb.orthanc_binary()
    args.cache.mkdir(parents=True, exist_ok=True)

    data = qb.peers_dataset(args.cache, args.studies, args.slices, args.size)
    studies = describe(data)
    n = sum(len(f) for st in studies.values() for f in st["series"].values())
    first_study = next(iter(studies))
    st0 = studies[first_study]
    first_series = next(iter(st0["series"]))
    files0 = st0["series"][first_series]
    big_dir = big_series(args.cache, args.big, args.big_size, files0[0]) if args.big else None

    weed = sb.SeaweedFS() if args.backend == "pg-s3" else None
    glia, orthanc = Glia(args, weed), Orthanc()
    loads = {}
    for name, port, called in (("glia", glia.dport, "GLIA"), ("orthanc", orthanc.dport, "ORTHANC")):
        loads[name] = qb.load(port, called, data)
        if big_dir:
            loads[name + "_big"] = qb.load(port, called, big_dir)
    want = n + args.big
    counts = {"glia": glia.count(), "orthanc": orthanc.count()}
    log(f"loaded {n} + {args.big} instances: glia {loads['glia']:.1f} s, orthanc {loads['orthanc']:.1f} s; "
        f"counts {counts}")
    for k, v in counts.items():
        if v != want:
            raise RuntimeError(f"{k} holds {v} instances, want {want}")

    import pydicom

    ds0 = pydicom.dcmread(files0[0], stop_before_pixels=True)
    frame_bytes = ds0.Rows * ds0.Columns * ds0.SamplesPerPixel * (ds0.BitsAllocated // 8)
    sop0 = str(ds0.SOPInstanceUID)
    series_sops = sop_uids(files0)
    study_sops = set().union(*(sop_uids(f) for f in st0["series"].values()))
    mue = {s for s, v in studies.items() if v["name"].upper().startswith("MUE")}
    in_range = {s for s, v in studies.items() if DATE_RANGE[0] <= v["date"] <= DATE_RANGE[1]}
    by_pid = {s for s, v in studies.items() if v["pid"] == st0["pid"]}
    s, se = first_study, first_series
    sz_series = sum(f.stat().st_size for f in files0) / 1e6
    sz_study = sum(f.stat().st_size for fs in st0["series"].values() for f in fs) / 1e6
    ops = [
        dict(key="qido_pid", label=f"QIDO studies by PatientID ({len(by_pid)})", kind="qido",
             path=f"/studies?PatientID={st0['pid']}", expect=("0020000D", by_pid), goal=("time", 0.25)),
        dict(key="qido_name", label=f"QIDO studies PatientName=MUE* ({len(mue)})", kind="qido",
             path="/studies?PatientName=MUE*", expect=("0020000D", mue), goal=("time", 0.25)),
        dict(key="qido_date", label=f"QIDO studies by StudyDate range ({len(in_range)})", kind="qido",
             path=f"/studies?StudyDate={DATE_RANGE[0]}-{DATE_RANGE[1]}", expect=("0020000D", in_range),
             goal=("time", 0.25)),
        dict(key="qido_series", label=f"QIDO series of one study ({len(st0['series'])})", kind="qido",
             path=f"/studies/{s}/series", expect=("0020000E", set(st0["series"])), goal=("time", 0.25)),
        dict(key="qido_instances", label=f"QIDO instances of one series ({len(series_sops)})", kind="qido",
             path=f"/studies/{s}/series/{se}/instances", expect=("00080018", series_sops), goal=("time", 0.25)),
        dict(key="metadata", label=f"series metadata ({len(series_sops)} instances)", kind="metadata",
             path=f"/studies/{s}/series/{se}/metadata", expect=("00080018", series_sops), goal=("time", 0.1)),
        dict(key="wado_series", label=f"WADO-RS series ({len(series_sops)} inst, {sz_series:.1f} MB)",
             kind="retrieve", path=f"/studies/{s}/series/{se}", expect=series_sops, goal=("mbs", 1.5)),
        dict(key="wado_study", label=f"WADO-RS study ({len(study_sops)} inst, {sz_study:.1f} MB)",
             kind="retrieve", path=f"/studies/{s}", expect=study_sops, goal=("mbs", 1.5)),
        dict(key="frame", label=f"WADO-RS one frame ({frame_bytes // 1024} KiB)", kind="frame",
             path=f"/studies/{s}/series/{se}/instances/{sop0}/frames/1", expect=frame_bytes, goal=None),
    ]
    for op in ops:
        op["accept"] = {"qido": [DICOM_JSON], "metadata": [DICOM_JSON], "retrieve": [ACCEPT_DICOM],
                        "frame": [ACCEPT_FRAME, ACCEPT_FRAME_PLAIN]}[op["kind"]]
        op["expected_text"] = {
            "qido": f"HTTP 200 {DICOM_JSON}, exactly the {len(op['expect'][1]) if op['kind'] == 'qido' else 0}"
                    f" expected {op['expect'][0] if op['kind'] == 'qido' else ''} UIDs",
            "metadata": f"HTTP 200 {DICOM_JSON}, one object per instance ({len(series_sops)})",
            "retrieve": "HTTP 200 multipart/related, one application/dicom part per instance",
            "frame": f"HTTP 200 multipart/related, one part of {frame_bytes} bytes",
        }[op["kind"]]

    clients = {"glia": Client("glia", glia.hport, token=glia.token), "orthanc": Client("orthanc", orthanc.hport)}
    problems = Problems()
    up_before = uptime()
    log(f"measuring, {args.runs} repetitions each; {up_before}")
    results = {}
    for op in ops:
        results[op["key"]] = measure(clients, op, args.runs, problems)
        r = results[op["key"]]
        log(f"  {op['label']}: glia {r['glia']['median_s'] * 1000:.2f} ms, "
            f"orthanc {r['orthanc']['median_s'] * 1000:.2f} ms")
    big = None
    if big_dir:
        big_files = sorted(big_dir.glob("*.dcm"))
        b0 = pydicom.dcmread(big_files[0], stop_before_pixels=True)
        op = dict(key="big_metadata", label=f"series metadata, {args.big}-instance series", kind="metadata",
                  path=f"/studies/{b0.StudyInstanceUID}/series/{b0.SeriesInstanceUID}/metadata",
                  expect=("00080018", sop_uids(big_files)), accept=[DICOM_JSON],
                  expected_text=f"HTTP 200 {DICOM_JSON}, one object per instance ({args.big})")
        # A warm-up first, to learn whether a server is slow (then fewer repetitions).
        probe = {}
        for name, c in clients.items():
            st, h, body, secs = c.call("GET", op["path"], {"Accept": DICOM_JSON})
            probe[name] = secs
            log(f"  big metadata, first request: {name} {secs * 1000:.0f} ms (HTTP {st}, {len(body)} bytes)")
        reps = {k: (args.runs if v <= 2.0 else min(args.runs, args.big_runs_slow)) for k, v in probe.items()}
        big = measure(clients, op, args.runs, problems, reps)
        for name in clients:
            big[name]["cold_s"] = probe[name]
        results["big_metadata"] = big
        ops.append({**op, "goal": ("abs_ms", 100)})
    stow = measure_stow(clients, files0, args.runs, problems)
    results["stow"] = stow
    up_after = uptime()
    reconnects = {k: f"{c.reconnects} (stale {c.stale})" for k, c in clients.items()}
    for c in clients.values():
        c.close()
    rss = {"glia": sb.proc_status(glia.proc.pid, "VmHWM") / 1024,
           "orthanc": sb.proc_status(orthanc.proc.pid, "VmHWM") / 1024}

    # ---------------------------------------------------------------------------- report
    print()
    print(f"DICOMweb benchmark: Glia ({args.backend}) vs Orthanc {version_of('orthanc')} + DICOMweb plugin "
          f"{version_of('orthanc-dicomweb')}; {n} + {args.big} instances loaded; {args.runs} repetitions, "
          f"medians; one keep-alive connection each; {os.cpu_count()} CPUs")
    print(f"uptime before: {up_before}")
    print(f"uptime after:  {up_after}")
    print(f"{'operation':<44} {'glia':>14} {'orthanc':>14} {'ratio':>7}  {'goal':<22} met")
    rows = []

    def row(label, g, o, unit, goal):
        ratio = g / o if o else float("nan")
        if goal is None:
            gtxt, met = "-", "-"
        elif goal[0] == "time":
            gtxt, met = f"<= {goal[1]}x orthanc time", ratio <= goal[1]
        elif goal[0] in ("mbs", "rate"):
            gtxt, met = f">= {goal[1]}x orthanc {unit}", ratio >= goal[1]
        else:
            gtxt, met = f"glia < {goal[1]} ms", g < goal[1]
        met = met if isinstance(met, str) else ("yes" if met else "NO")
        fmt = (lambda v: f"{v:10.2f} {unit}") if unit == "ms" else (lambda v: f"{v:8.0f} {unit}")
        print(f"{label:<44} {fmt(g):>14} {fmt(o):>14} {ratio:7.3f}  {gtxt:<22} {met}")
        rows.append({"operation": label, "glia": g, "orthanc": o, "unit": unit, "ratio": ratio, "goal": gtxt,
                     "met": met})

    for op in ops:
        r = results[op["key"]]
        label = op["label"] + (" *" if r["glia"]["error"] or r["orthanc"]["error"] else "")
        if op["goal"] and op["goal"][0] == "mbs":
            row(label, r["glia"]["mb_s"], r["orthanc"]["mb_s"], "MB/s", op["goal"])
        else:
            row(label, r["glia"]["median_s"] * 1000, r["orthanc"]["median_s"] * 1000, "ms", op["goal"])
    label = f"STOW-RS fresh series ({len(files0)} inst, {stow['glia']['bytes'] / 1e6:.1f} MB)"
    if stow["glia"]["available"]:
        row(label, stow["glia"]["inst_s"], stow["orthanc"]["inst_s"], "inst/s", ("rate", 3))
    else:
        print(f"{label:<44} {'n/a':>14} {stow['orthanc']['inst_s']:8.0f} inst/s {'':>7}  {'>= 3x orthanc':<22} -"
              f"   (glia: not available, {stow['glia']['error']})")
        rows.append({"operation": label, "glia": None, "orthanc": stow["orthanc"]["inst_s"], "unit": "inst/s",
                     "goal": ">= 3x", "met": "glia: not available"})
    if problems.items:
        print("  * = a server answered wrongly (see below)")
    print()
    print("details (median / min / max ms, response bytes, encodings):")
    for op in ops:
        r = results[op["key"]]
        for name in clients:
            x = r[name]
            v = x["seconds"] or [x["first_s"]]
            enc = ",".join(e for e in (x["transfer_encoding"], x["content_encoding"]) if e) or "-"
            extra = f", first request {x['cold_s'] * 1000:.0f} ms" if "cold_s" in x else ""
            print(f"  {op['key']:<15} {name:<8} {x['median_s'] * 1000:9.2f} {min(v) * 1000:9.2f} "
                  f"{max(v) * 1000:9.2f}  {x['bytes']:>10} B  {enc}  n={len(x['seconds'])}{extra}")
    for name in clients:
        x = stow[name]
        if x["seconds"]:
            print(f"  {'stow':<15} {name:<8} {x['median_s'] * 1000:9.2f} {min(x['seconds']) * 1000:9.2f} "
                  f"{max(x['seconds']) * 1000:9.2f}  {x['bytes']:>10} B sent  n={len(x['seconds'])}")
    print(f"  load: storescu {n} instances: glia {loads['glia']:.1f} s, orthanc {loads['orthanc']:.1f} s"
          + (f"; big series: glia {loads['glia_big']:.1f} s, orthanc {loads['orthanc_big']:.1f} s" if big else ""))
    print(f"  peak RSS (VmHWM): glia {rss['glia']:.0f} MB, orthanc {rss['orthanc']:.0f} MB; "
          f"server-side connection closes: {reconnects}")
    print()
    if problems.items:
        print(f"wrong answers ({len(problems.items)}):")
        for p in problems.items:
            print(f"  [{p['target']}] {p['request']}\n      expected: {p['expected']}\n      got:      {p['got']}")
    else:
        print("wrong answers: none (every answer checked: status, media type, result / part count, UIDs)")
    if args.json:
        args.json.write_text(json.dumps({
            "backend": args.backend, "instances": n, "big": args.big, "runs": args.runs,
            "orthanc": version_of("orthanc"), "orthanc_dicomweb": version_of("orthanc-dicomweb"),
            "uptime_before": up_before, "uptime_after": up_after, "loads": loads, "rss_mb": rss,
            "table": rows, "results": results, "problems": problems.items,
        }, indent=2, default=str))
    CLEAN.stop(glia.proc, timeout=30)
    CLEAN.stop(orthanc.proc)
    if weed:
        weed.close()
    return 0


if __name__ == "__main__":
    for _sig in (sb.signal.SIGINT, sb.signal.SIGTERM, sb.signal.SIGHUP):
        sb.signal.signal(_sig, sb._on_signal)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        sys.exit(130)
    finally:
        CLEAN.all()
