#!/usr/bin/env python3
"""Query/Retrieve benchmark: Glia versus Orthanc, and Glia's C-FIND on a 1M-instance index.

Part 1 (`--part peers`): Glia (`target/release/glia`, SQLite + local directory) and Orthanc
(Debian `orthanc`, its default SQLite index), both fresh and loaded by dcmtk `storescu` with
the same synthetic MR data set (the 10 x 4 x 40 set of store_bench.py, cached in
`$TMPDIR/glia-bench-cache`, with patient names rewritten so that some start with `MUE`):

  * C-FIND latency on one association per server (pynetdicom, Nagle off), interleaved
    Glia / Orthanc, `--queries` queries per kind: STUDY by PatientID, STUDY by wildcard
    PatientName `MUE*`, STUDY by StudyDate range, IMAGE level for one series (40 matches).
    Prints the medians and the Glia/Orthanc ratio (goal <= 0.25);
  * C-MOVE throughput of one study (160 instances) to a dcmtk `storescp`
    (`TCP_NODELAY=1`), `--moves` runs each, interleaved: instances/s.

Part 2 (`--part index`): a fresh SQLite index with Glia's schema (`glia migrate`) filled
directly from Python with 100k studies / ~1M instances with realistic distributions
(cached in the cache dir), then Glia's C-FIND medians on it: PatientID (goal <= 5 ms) and
wildcard PatientName (goal <= 20 ms), plus EXPLAIN QUERY PLAN of the statements Glia
issues (the same SQL as src/query/exec.rs builds) and of candidate fixes.

This is a benchmark, not a test: it never runs in CI. Everything binds to 127.0.0.1;
processes and temp dirs are removed at exit.

    python3 tests/bench/qr_bench.py                       # both parts
    python3 tests/bench/qr_bench.py --part peers --queries 100
    python3 tests/bench/qr_bench.py --part index --studies-1m 20000   # smaller index
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_bench as sb  # noqa: E402  (data set generation, process bookkeeping)

from pynetdicom import AE, transport  # noqa: E402
from pynetdicom.sop_class import (  # noqa: E402
    Verification,
    StudyRootQueryRetrieveInformationModelFind as FIND,
    StudyRootQueryRetrieveInformationModelMove as MOVE,
)
from pydicom.dataset import Dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STORESCU, STORESCP = sb.STORESCU, sb.STORESCP
CLEAN = sb.CLEAN
log = sb.log

# Patient names of the 10 studies of the peers data set (4 start with MUE).
NAMES = ["MUELLER^HANS", "SMITH^JOHN", "MUENCH^ANNA", "MEIER^PAUL", "SCHMIDT^EVA",
         "MUELLER^KARL", "WEBER^LISA", "BECKER^TOM", "MUERTE^JOSE", "KLEIN^SARA"]

# ------------------------------------------------------------------------------------
# Nagle off on every pynetdicom socket.
# ------------------------------------------------------------------------------------
_create_socket = transport.AssociationSocket._create_socket


def _nodelay(self, address):
    s = _create_socket(self, address)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


transport.AssociationSocket._create_socket = _nodelay


# ------------------------------------------------------------------------------------
# Servers
# ------------------------------------------------------------------------------------


def start_glia(glia: Path, db_url: str, peers: list[tuple[str, int]], max_matches=10000):
    tmp = CLEAN.tempdir("glia-qrbench-")
    dport, hport = sb.free_port(), sb.free_port()
    cfg = [
        "[dimse]", 'ae_title = "GLIA"', 'bind = "127.0.0.1"', f"port = {dport}",
        "[http]", 'bind = "127.0.0.1"', f"port = {hport}",
        "[database]", f'url = "{db_url or f"sqlite://{tmp}/glia.db"}"',
        "[storage]", f'url = "file://{tmp}/blobs"',
        "[ingest]", f'spool_dir = "{tmp}/spool"',
        "[query]", f"max_matches = {max_matches}",
        "[log]", 'level = "warn"',
    ]
    for ae, port in peers:
        cfg += ["[[dimse.peers]]", f'ae_title = "{ae}"', 'host = "127.0.0.1"', f"port = {port}"]
    (tmp / "glia.toml").write_text("\n".join(cfg) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIA__") and k != "RUST_LOG"}
    logf = open(tmp / "glia.log", "wb")
    p = CLEAN.spawn([str(glia), "--config", str(tmp / "glia.toml"), "serve"], stdout=logf,
                    stderr=subprocess.STDOUT, env=env, cwd=tmp)
    logf.close()
    sb.wait_port(hport, p, "glia (http)", timeout=120)
    sb.wait_port(dport, p, "glia (dimse)", timeout=60)
    return p, dport, hport, tmp


def orthanc_binary() -> str:
    for c in (shutil.which("Orthanc"), "/usr/sbin/Orthanc", "/usr/bin/Orthanc"):
        if c and os.access(c, os.X_OK):
            return c
    raise SystemExit("Orthanc missing (apt-get install orthanc)")


def start_orthanc(modalities: dict, extra: dict | None = None):
    """A fresh Orthanc on free loopback ports; `extra` is merged into its JSON config."""
    tmp = CLEAN.tempdir("orthanc-qrbench-")
    dport, hport = sb.free_port(), sb.free_port()
    cfg = {
        "Name": "qr-bench", "DicomAet": "ORTHANC", "DicomPort": dport, "HttpPort": hport,
        "StorageDirectory": str(tmp / "storage"), "IndexDirectory": str(tmp / "index"),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True, "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": False, "StorageCompression": False, "Plugins": [],
        "DicomModalities": modalities,
        **(extra or {}),
    }
    (tmp / "orthanc.json").write_text(json.dumps(cfg))
    env = sb.dcmtk_env()
    logf = open(tmp / "orthanc.log", "wb")
    p = CLEAN.spawn([orthanc_binary(), str(tmp / "orthanc.json")], stdout=logf,
                    stderr=subprocess.STDOUT, env=env)
    logf.close()
    sb.wait_port(hport, p, "Orthanc (http)", timeout=60)
    sb.wait_port(dport, p, "Orthanc (dicom)", timeout=60)
    return p, dport, hport, tmp


def peers_dataset(cache: Path, studies: int = 10, slices: int = 40, size: int = 256) -> Path:
    """The store_bench 10x4x40 set with PatientName rewritten per study (NAMES)."""
    root, files = sb.dataset(cache, studies, slices, size)
    out = cache / f"qr-mr-{studies}x4x{slices}-{size}"
    if (out / "COMPLETE").exists():
        return out / "all"
    import pydicom

    shutil.rmtree(out, ignore_errors=True)
    log(f"rewriting patient names into {out} ...")
    for f in files:
        rel = f.relative_to(root / "all")
        ds = pydicom.dcmread(f)
        si = int(rel.parts[0][2:])
        ds.PatientName = NAMES[si % len(NAMES)]
        dst = out / "all" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(dst, enforce_file_format=True)
    (out / "COMPLETE").write_text("ok\n")
    return out / "all"


def load(port: int, called: str, data: Path) -> float:
    t = time.monotonic()
    r = subprocess.run([STORESCU, "-aet", "BENCHSCU", "-aec", called, "+sd", "+r", "127.0.0.1", str(port),
                        str(data)], env=sb.dcmtk_env(), capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"storescu to {called}: {r.stderr.decode()[-2000:]}")
    return time.monotonic() - t


# ------------------------------------------------------------------------------------
# C-FIND / C-MOVE
# ------------------------------------------------------------------------------------


def associate(port: int, called: str, contexts):
    ae = AE(ae_title="QRBENCH")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.maximum_pdu_size = 0  # no limit
    for c in contexts:
        ae.add_requested_context(c)
    a = ae.associate("127.0.0.1", port, ae_title=called)
    if not a.is_established:
        raise RuntimeError(f"association with {called} on {port} failed")
    return a


def ident(level: str, **keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def timed_find(assoc, ds: Dataset) -> tuple[float, int, int]:
    t = time.perf_counter()
    n, final = 0, None
    for status, _ in assoc.send_c_find(ds, FIND):
        if status is None or "Status" not in status:
            raise RuntimeError("C-FIND: no response")
        if status.Status in (0xFF00, 0xFF01):
            n += 1
        else:
            final = status.Status
    return (time.perf_counter() - t) * 1000, n, final


class RawScu:
    """A minimal C-FIND SCU on a plain socket (Nagle off): pre-encoded requests, responses
    only counted (no data set decoding), so that the figures are the server's latency and
    not pynetdicom's per-message cost (~2.5 ms floor, ~0.5 ms per response)."""

    EXPLICIT_LE = "1.2.840.10008.1.2.1"

    def __init__(self, port: int, called: str, sop_class: str = FIND):
        import struct

        self.struct = struct
        self.sop_class = sop_class
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.msg_id = 0

        def item(t: int, body: bytes) -> bytes:
            return struct.pack(">BBH", t, 0, len(body)) + body

        def uid(u: str) -> bytes:
            return u.encode()

        pc = item(0x20, bytes([1, 0, 0, 0]) + item(0x30, uid(sop_class)) + item(0x40, uid(self.EXPLICIT_LE)))
        user = item(0x50, item(0x51, struct.pack(">I", 0)) + item(0x52, uid("1.2.826.0.1.3680043.10.1122.9")))
        body = (struct.pack(">HH", 1, 0) + called.ljust(16).encode() + b"RAWSCU".ljust(16) + bytes(32)
                + item(0x10, uid("1.2.840.10008.3.1.1.1")) + pc + user)
        self.sock.sendall(struct.pack(">BBI", 1, 0, len(body)) + body)
        t, _ = self._pdu()
        if t != 2:
            raise RuntimeError(f"association with {called} not accepted (PDU type {t})")

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("connection closed")
            buf += chunk
        return bytes(buf)

    def _pdu(self) -> tuple[int, bytes]:
        t, _, n = self.struct.unpack(">BBI", self._recv(6))
        return t, self._recv(n)

    def _command(self, elements: list[tuple[int, bytes]]) -> bytes:
        st = self.struct
        body = b"".join(st.pack("<HHI", 0, e, len(v)) + v for e, v in elements)
        return st.pack("<HHII", 0, 0, 4, len(body)) + body

    def find(self, ds: Dataset) -> tuple[int, int]:
        """One C-FIND; returns (pending responses, final status)."""
        from pynetdicom.dsutils import encode

        st = self.struct
        self.msg_id += 1
        cls = self.sop_class.encode()
        if len(cls) % 2:
            cls += b"\0"
        cmd = self._command([(0x0002, cls), (0x0100, st.pack("<H", 0x0020)), (0x0110, st.pack("<H", self.msg_id)),
                             (0x0700, st.pack("<H", 0)), (0x0800, st.pack("<H", 0x0102))])
        data = encode(ds, False, True)
        pdvs = st.pack(">IBB", len(cmd) + 2, 1, 0x03) + cmd + st.pack(">IBB", len(data) + 2, 1, 0x02) + data
        self.sock.sendall(st.pack(">BBI", 4, 0, len(pdvs)) + pdvs)
        pending = 0
        cmdbuf = b""
        while True:
            t, body = self._pdu()
            if t != 4:
                raise RuntimeError(f"unexpected PDU type {t}")
            off = 0
            while off < len(body):
                n, _, hdr = st.unpack(">IBB", body[off:off + 6])
                frag = body[off + 6:off + 4 + n]
                off += 4 + n
                if not hdr & 1:
                    continue  # a data set fragment
                cmdbuf += frag
                if not hdr & 2:
                    continue
                status, has_data, i = None, True, 0
                while i < len(cmdbuf):
                    g, e, ln = st.unpack("<HHI", cmdbuf[i:i + 8])
                    if (g, e) == (0, 0x0900):
                        status = st.unpack("<H", cmdbuf[i + 8:i + 10])[0]
                    if (g, e) == (0, 0x0800):
                        has_data = st.unpack("<H", cmdbuf[i + 8:i + 10])[0] != 0x0101
                    i += 8 + ln
                cmdbuf = b""
                if status in (0xFF00, 0xFF01):
                    pending += 1
                else:
                    return pending, status
                del has_data

    def release(self) -> None:
        self.sock.sendall(self.struct.pack(">BBI", 5, 0, 4) + bytes(4))
        try:
            self._pdu()
        finally:
            self.sock.close()


def raw_latencies(targets: dict, kinds: dict, n: int) -> dict:
    res = {k: {t: [] for t in targets} for k in kinds}
    for k, ds in kinds.items():
        for t, a in targets.items():
            a.find(ds() if callable(ds) else ds)
        for _ in range(n):
            for t, a in targets.items():
                q = ds() if callable(ds) else ds
                t0 = time.perf_counter()
                m, st = a.find(q)
                res[k][t].append((time.perf_counter() - t0) * 1000)
                if st != 0:
                    raise RuntimeError(f"{t} {k}: final status {st:#06x}")
    return res


STUDY_KEYS = dict(StudyInstanceUID="", PatientName="", PatientID="", StudyDate="", StudyTime="",
                  AccessionNumber="", StudyDescription="", ModalitiesInStudy="",
                  NumberOfStudyRelatedInstances="")


def echo_latency(assoc, n: int, who: str = "") -> float:
    """Median C-ECHO round trip (ms): the client's and the transport's floor."""
    v = []
    for _ in range(n):
        t = time.perf_counter()
        rsp = assoc.send_c_echo()
        v.append((time.perf_counter() - t) * 1000)
        if rsp is None or rsp.get("Status") != 0:
            raise RuntimeError(f"C-ECHO to {who} failed (association established: {assoc.is_established})")
    return statistics.median(v)


def find_latencies(targets: dict, kinds: dict, n: int) -> dict:
    """targets: name -> association; kinds: name -> identifier. Interleaved."""
    res = {k: {t: [] for t in targets} for k in kinds}
    counts = {k: {} for k in kinds}
    for k, ds in kinds.items():
        for t, a in targets.items():  # warm-up
            timed_find(a, ds)
        for _ in range(n):
            for t, a in targets.items():
                ms, m, st = timed_find(a, ds)
                if st != 0:
                    raise RuntimeError(f"{t} {k}: final status {st:#06x}")
                res[k][t].append(ms)
                counts[k][t] = m
    return res, counts


def timed_move(port: int, called: str, study: str, dest: str, out: Path, expected: int) -> float:
    for f in out.iterdir():
        f.unlink()
    a = associate(port, called, [MOVE])
    t = time.perf_counter()
    final = None
    for status, _ in a.send_c_move(ident("STUDY", StudyInstanceUID=study), dest, MOVE):
        if status is None or "Status" not in status:
            raise RuntimeError("C-MOVE: no response")
        if status.Status != 0xFF00:
            final = status
    secs = time.perf_counter() - t
    a.release()
    got = sum(1 for _ in out.iterdir())
    if final is None or final.Status != 0 or got != expected:
        raise RuntimeError(f"C-MOVE from {called}: final {final}, {got} files (want {expected})")
    return secs


def part_peers(args) -> None:
    data = peers_dataset(args.cache)
    import pydicom

    first = sorted(data.rglob("*.dcm"))
    n = len(first)
    scp_dir = CLEAN.tempdir("qrbench-storescp-")
    scp_port = sb.free_port()
    scp = CLEAN.spawn([STORESCP, "-aet", "STORESCP", "-od", str(scp_dir), str(scp_port)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=sb.dcmtk_env())
    sb.wait_port(scp_port, scp, "storescp")
    time.sleep(0.2)
    g, gport, _, _ = start_glia(args.glia, "", [("STORESCP", scp_port)])
    o, oport, ohttp, _ = start_orthanc({"STORESCP": ["STORESCP", "127.0.0.1", scp_port]})
    log(f"loading {n} instances: glia {load(gport, 'GLIA', data):.1f} s, "
        f"orthanc {load(oport, 'ORTHANC', data):.1f} s")
    stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{ohttp}/statistics").read())
    if stats["CountInstances"] != n:
        raise RuntimeError(f"Orthanc holds {stats['CountInstances']} instances, want {n}")

    s0 = pydicom.dcmread(first[0], stop_before_pixels=True)
    study, series, pid = str(s0.StudyInstanceUID), str(s0.SeriesInstanceUID), str(s0.PatientID)
    kinds = {
        "STUDY by PatientID": ident("STUDY", **{**STUDY_KEYS, "PatientID": pid}),
        "STUDY by PatientName MUE*": ident("STUDY", **{**STUDY_KEYS, "PatientName": "MUE*"}),
        "STUDY by StudyDate range": ident("STUDY", **{**STUDY_KEYS, "StudyDate": "20260101-20260430"}),
        "IMAGE of one series (40)": ident("IMAGE", StudyInstanceUID=study, SeriesInstanceUID=series,
                                          SOPInstanceUID="", InstanceNumber="", SOPClassUID=""),
    }
    targets = {"glia": associate(gport, "GLIA", [FIND, Verification]),
               "orthanc": associate(oport, "ORTHANC", [FIND, Verification])}
    res, counts = find_latencies(targets, kinds, args.queries)
    echo = {}
    for t, a in targets.items():
        try:
            echo[t] = echo_latency(a, args.queries, t)
        except RuntimeError as e:
            log(f"warning: {e}")
            echo[t] = float("nan")
    for a in targets.values():
        a.release()

    raw = {"glia": RawScu(gport, "GLIA"), "orthanc": RawScu(oport, "ORTHANC")}
    rawres = raw_latencies(raw, kinds, args.queries)
    for a in raw.values():
        a.release()

    moves = {"glia": [], "orthanc": []}
    per_study = 4 * 40
    for r in range(args.moves):
        for t, port, called in (("glia", gport, "GLIA"), ("orthanc", oport, "ORTHANC")):
            secs = timed_move(port, called, study, "STORESCP", scp_dir, per_study)
            moves[t].append(per_study / secs)
            log(f"C-MOVE run {r + 1} {t}: {per_study / secs:.0f} inst/s")

    print()
    print(f"C-FIND latency, one association each, {args.queries} queries per kind (pynetdicom, Nagle off), "
          f"{n} instances loaded, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}")
    print(f"{'query':<28} {'matches':>7} {'glia ms':>8} {'orthanc ms':>10} {'ratio':>6}")
    print(f"{'C-ECHO (client/transport floor)':<36} {echo['glia']:8.2f} {echo['orthanc']:10.2f}"
          f" {echo['glia'] / echo['orthanc']:6.2f}")
    for k in kinds:
        gm, om = statistics.median(res[k]["glia"]), statistics.median(res[k]["orthanc"])
        mc = counts[k]["glia"] if counts[k]["glia"] == counts[k]["orthanc"] else \
            f"{counts[k]['glia']}/{counts[k]['orthanc']}"
        eg, eo = gm - echo["glia"], om - echo["orthanc"]
        print(f"{k:<28} {mc!s:>7} {gm:8.2f} {om:10.2f} {gm / om:6.2f}"
              f"   (above the C-ECHO floor: {eg:.2f} vs {eo:.2f} ms, ratio {eg / eo if eo > 0 else float('nan'):.2f})")
    print()
    print("Same queries with a minimal raw-socket SCU (responses counted, not decoded): server latency")
    print(f"{'query':<28} {'glia ms':>8} {'orthanc ms':>10} {'ratio':>6}")
    for k in kinds:
        gm, om = statistics.median(rawres[k]["glia"]), statistics.median(rawres[k]["orthanc"])
        print(f"{k:<28} {gm:8.2f} {om:10.2f} {gm / om:6.2f}")
    print()
    print(f"C-MOVE of one study ({per_study} instances, 133 kB each) to dcmtk storescp, {args.moves} runs:")
    for t in moves:
        v = moves[t]
        print(f"  {t:<8} {statistics.median(v):6.0f} inst/s (min {min(v):.0f}, max {max(v):.0f})")
    print(f"  ratio glia/orthanc: {statistics.median(moves['glia']) / statistics.median(moves['orthanc']):.2f}")
    CLEAN.stop(g)
    CLEAN.stop(o)
    CLEAN.stop(scp)


# ------------------------------------------------------------------------------------
# Part 2: 1M-instance index
# ------------------------------------------------------------------------------------

SURNAMES = ["SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
            "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR", "MOORE",
            "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ", "CLARK", "RAMIREZ",
            "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "TORRES", "NGUYEN",
            "HILL", "FLORES", "GREEN", "ADAMS", "NELSON", "BAKER", "HALL", "RIVERA", "CAMPBELL", "MITCHELL",
            "CARTER", "ROBERTS", "SCHMIDT", "SCHNEIDER", "FISCHER", "WEBER", "MEYER", "WAGNER", "BECKER",
            "SCHULZ", "HOFFMANN", "KOCH", "RICHTER", "KLEIN", "WOLF", "SCHROEDER", "NEUMANN", "SCHWARZ",
            "ZIMMERMANN", "BRAUN", "HOFMANN", "KRUEGER", "HARTMANN", "LANGE", "WERNER", "KRAUSE", "LEHMANN",
            "DUBOIS", "MOREAU", "LAURENT", "SIMON", "MICHEL", "LEFEBVRE", "ROSSI", "RUSSO", "FERRARI",
            "ESPOSITO", "BIANCHI", "ROMANO", "COLOMBO", "RICCI", "MARINO", "SILVA", "SANTOS", "OLIVEIRA",
            "SOUZA", "PEREIRA", "COSTA", "NOVAK", "KOWALSKI", "NOWAK", "JANSEN", "DE JONG", "DE VRIES"]
# Rare MUE* surnames: ~0.5 % of patients in all.
MUE = ["MUELLER", "MUENCH", "MUENSTER", "MUETZE"]
GIVEN = ["JAMES", "MARY", "JOHN", "PATRICIA", "ROBERT", "JENNIFER", "MICHAEL", "LINDA", "WILLIAM", "ELIZABETH",
         "DAVID", "BARBARA", "RICHARD", "SUSAN", "JOSEPH", "JESSICA", "THOMAS", "SARAH", "HANS", "ANNA",
         "KARL", "EVA", "PAUL", "LISA", "PIERRE", "MARIE", "LUCA", "GIULIA", "JOAO", "ANA", "PIOTR", "ZOFIA"]
# modality, weight, (series min, max), (instances per series min, max)
# (about 10.5 instances per study; 10 % of CT/MR series are 4x longer)
MODALITIES = [("CR", 0.30, (1, 2), (1, 2)), ("DX", 0.15, (1, 2), (1, 2)), ("CT", 0.18, (2, 4), (1, 10)),
              ("MR", 0.20, (3, 6), (1, 8)), ("US", 0.10, (1, 2), (1, 6)), ("MG", 0.07, (1, 1), (4, 4))]
SOP = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1", "CT": "1.2.840.10008.5.1.4.1.1.2",
       "MR": "1.2.840.10008.5.1.4.1.1.4", "US": "1.2.840.10008.5.1.4.1.1.6.1",
       "MG": "1.2.840.10008.5.1.4.1.1.1.2"}


def build_index(glia: Path, path: Path, studies: int) -> dict:
    """Fill a fresh SQLite index with `studies` studies (~10 instances each)."""
    info_file = path.with_suffix(".json")
    if path.exists() and info_file.exists():
        return json.loads(info_file.read_text())
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    r = subprocess.run([str(glia), "--config", "/nonexistent", "--set", f'database.url="sqlite://{path}"',
                        "migrate"], capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"glia migrate: {r.stderr.decode()[-2000:]}")
    t0 = time.monotonic()
    rng = random.Random(1122)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    triggers = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for name, _ in triggers:
        db.execute(f"DROP TRIGGER {name}")
    now = "2026-11-22T10:00:00+00:00"
    n_patients = int(studies * 0.6)
    patients = []
    for i in range(n_patients):
        sur = rng.choice(MUE) if rng.random() < 0.005 else rng.choice(SURNAMES)
        name = f"{sur}^{rng.choice(GIVEN)}"
        pid = f"PID{i:08d}"
        birth = f"{rng.randint(1930, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        patients.append((i + 1, pid, "", name, name.upper(), birth, rng.choice("MF"), now, now))
    db.executemany("INSERT INTO patient (id, patient_id, issuer_of_patient_id, patient_name, patient_name_norm,"
                   " patient_birth_date, patient_sex, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)", patients)
    mods = [m for m in MODALITIES]
    weights = [m[1] for m in mods]
    study_rows, series_rows, inst_rows = [], [], []
    series_id = inst_id = 0
    sample_series = None
    # Patients get 1..n studies (skewed): the study's patient is drawn with a power law.
    for s in range(studies):
        sid = s + 1
        pfk = min(n_patients, int(n_patients * rng.random() ** 1.3) + 1) if s >= n_patients else s + 1
        mod, _, (smin, smax), (imin, imax) = rng.choices(mods, weights)[0]
        day = rng.randint(0, 10 * 365)
        date = time.strftime("%Y%m%d", time.gmtime(1419984000 + day * 86400))  # 2015..2024
        tm = f"{rng.randint(7, 19):02d}{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}"
        suid = f"1.2.826.0.1.3680043.10.1122.{sid}"
        nser = rng.randint(smin, smax)
        ninst_study = 0
        for k in range(nser):
            series_id += 1
            seuid = f"{suid}.{k + 1}"
            ni = rng.randint(imin, imax)
            if mod in ("CT", "MR") and rng.random() < 0.1:
                ni *= 4
            for j in range(ni):
                inst_id += 1
                inst_rows.append((inst_id, series_id, f"{seuid}.{j + 1}", SOP[mod], j + 1, date, tm, 512, 512, 1, 16,
                                  "MONOCHROME2", "1.2.840.10008.1.2.1", 500000, f"v1/x/{inst_id}.dcm", "MODALITY",
                                  now))
            series_rows.append((series_id, sid, seuid, mod, k + 1, f"{mod} SERIES {k + 1}", "HEAD", date, tm,
                                ni, now, now))
            if sample_series is None and ni >= 30:
                sample_series = (suid, seuid, ni)
            ninst_study += ni
        study_rows.append((sid, pfk, suid, date, tm, f"ACC{sid:09d}", str(sid), "REF^DOC", "REF^DOC",
                           f"{mod} STUDY", "SYNTHETIC HOSPITAL", mod, SOP[mod], nser, ninst_study, "ISO_IR 100",
                           now, now))
        if len(inst_rows) > 200000:
            db.executemany("INSERT INTO instance (id, series_fk, sop_instance_uid, sop_class_uid, instance_number,"
                           " content_date, content_time, rows, columns, number_of_frames, bits_allocated,"
                           " photometric_interpretation, transfer_syntax_uid, size_bytes, blob_key, source_ae,"
                           " received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", inst_rows)
            inst_rows = []
    db.executemany("INSERT INTO instance (id, series_fk, sop_instance_uid, sop_class_uid, instance_number,"
                   " content_date, content_time, rows, columns, number_of_frames, bits_allocated,"
                   " photometric_interpretation, transfer_syntax_uid, size_bytes, blob_key, source_ae,"
                   " received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", inst_rows)
    db.executemany("INSERT INTO series (id, study_fk, series_instance_uid, modality, series_number,"
                   " series_description, body_part_examined, series_date, series_time, num_instances, created_at,"
                   " last_received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", series_rows)
    db.executemany("INSERT INTO study (id, patient_fk, study_instance_uid, study_date, study_time, accession_number,"
                   " study_id, referring_physician_name, referring_physician_name_norm, study_description,"
                   " institution_name, modalities_in_study, sop_classes_in_study, num_series, num_instances,"
                   " specific_character_set, created_at, last_received_at) VALUES"
                   " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", study_rows)
    # Patient counters from the studies.
    db.execute("""UPDATE patient SET
        num_studies = (SELECT count(*) FROM study WHERE patient_fk = patient.id),
        num_series = (SELECT coalesce(sum(num_series), 0) FROM study WHERE patient_fk = patient.id),
        num_instances = (SELECT coalesce(sum(num_instances), 0) FROM study WHERE patient_fk = patient.id)""")
    for _, sql in triggers:
        db.execute(sql)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("patient", "study", "series",
                                                                                 "instance")}
    mue = db.execute("SELECT count(*) FROM patient p JOIN study st ON st.patient_fk = p.id"
                     " WHERE p.patient_name_norm LIKE 'MUE%'").fetchone()[0]
    db.close()
    info = {"counts": counts, "mue_studies": mue, "sample_series": sample_series,
            "build_s": round(time.monotonic() - t0, 1)}
    info_file.write_text(json.dumps(info))
    return info


STUDY_COLS = ("p.patient_name, p.patient_id, p.issuer_of_patient_id, p.patient_birth_date, p.patient_sex,"
              " p.num_studies, p.num_series, p.num_instances, st.study_instance_uid, st.study_date, st.study_time,"
              " st.accession_number, st.study_id, st.referring_physician_name, st.study_description,"
              " st.institution_name, st.modalities_in_study, st.sop_classes_in_study, st.num_series,"
              " st.num_instances")


def study_sql(where: str) -> str:
    """What src/query/exec.rs `build` issues at STUDY level (columns abridged)."""
    return (f"SELECT {STUDY_COLS} FROM patient AS p JOIN study AS st ON st.patient_fk = p.id"
            f" WHERE {where} ORDER BY st.id ASC LIMIT 10001")


def explain(path: Path, label: str, sql: str, params=()) -> None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.execute("PRAGMA case_sensitive_like = ON")  # as Glia's connections (src/db/mod.rs)
    plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
    t = time.perf_counter()
    runs = 5
    for _ in range(runs):
        rows = db.execute(sql, params).fetchall()
    ms = (time.perf_counter() - t) / runs * 1000
    db.close()
    print(f"  {label}: {len(rows)} rows, {ms:.1f} ms in sqlite3 directly")
    for p in plan:
        print(f"      {p}")


def part_index(args) -> None:
    path = args.cache / f"index-v2-{args.studies_1m}-studies.db"
    log(f"index: {path}")
    info = build_index(args.glia, path, args.studies_1m)
    log(f"index: {info}")
    g, gport, _, _ = start_glia(args.glia, f"sqlite://{path}", [])
    rng = random.Random(7)
    n_pat = info["counts"]["patient"]
    assoc = associate(gport, "GLIA", [FIND])
    kinds = {
        "STUDY by PatientID": lambda: ident("STUDY", **{**STUDY_KEYS,
                                                        "PatientID": f"PID{rng.randrange(n_pat):08d}"}),
        "STUDY by PatientName MUE*": lambda: ident("STUDY", **{**STUDY_KEYS, "PatientName": "MUE*"}),
        "STUDY by PatientName MUELLER^HA*": lambda: ident("STUDY", **{**STUDY_KEYS,
                                                                      "PatientName": "MUELLER^HA*"}),
        "STUDY by StudyDate (one day)": lambda: ident("STUDY", **{**STUDY_KEYS, "StudyDate": "20200302"}),
        "STUDY by AccessionNumber": lambda: ident("STUDY", **{**STUDY_KEYS,
                                                              "AccessionNumber": f"ACC{rng.randrange(1, 10000):09d}"}),
    }
    se = info.get("sample_series")
    if se:
        kinds[f"IMAGE of one series ({se[2]})"] = lambda: ident(
            "IMAGE", StudyInstanceUID=se[0], SeriesInstanceUID=se[1], SOPInstanceUID="", InstanceNumber="")
    results = {}
    for k, mk in kinds.items():
        timed_find(assoc, mk())
        v, m = [], 0
        for _ in range(args.queries):
            ms, n, st = timed_find(assoc, mk())
            if st != 0:
                raise RuntimeError(f"{k}: final status {st:#06x}")
            v.append(ms)
            m = max(m, n)
        results[k] = (statistics.median(v), min(v), max(v), m)
    assoc.release()
    rawscu = RawScu(gport, "GLIA")
    rawres = raw_latencies({"glia": rawscu}, {k: mk for k, mk in kinds.items()}, args.queries)
    rawscu.release()
    CLEAN.stop(g)
    c = info["counts"]
    print()
    print(f"Glia C-FIND on a {c['instance']:,}-instance index ({c['patient']:,} patients, {c['study']:,} studies,"
          f" {c['series']:,} series; SQLite, no ANALYZE), {args.queries} queries each, one association:")
    print(f"{'query':<36} {'matches':>7} {'median ms':>9} {'min':>7} {'max':>7} {'raw SCU median':>14}")
    for k, (med, lo, hi, m) in results.items():
        print(f"{k:<36} {m:>7} {med:9.2f} {lo:7.2f} {hi:7.2f} {statistics.median(rawres[k]['glia']):14.2f}")
    print("  (median ms with pynetdicom, and with the minimal raw-socket SCU: the server's latency)")
    print("  goals: PatientID <= 5 ms, wildcard name <= 20 ms")
    print()
    print("EXPLAIN QUERY PLAN of the statements Glia builds (src/query/exec.rs), with case_sensitive_like = ON:")
    explain(path, "PatientID (as issued)", study_sql("p.patient_id = ?"), ("PID00001234",))
    explain(path, "PatientName MUE* (as issued)", study_sql("p.patient_name_norm LIKE ? ESCAPE '\\'"), ("MUE%",))
    # The LIKE optimisation needs case_sensitive_like (Glia sets it) or a NOCASE index; an explicit
    # prefix range is what PostgreSQL (non-C collation, no text_pattern_ops index) would need.
    explain(path, "PatientName MUE* + explicit prefix range",
            study_sql("p.patient_name_norm >= ? AND p.patient_name_norm < ? AND p.patient_name_norm LIKE ? ESCAPE '\\'"),
            ("MUE", "MUF", "MUE%"))
    explain(path, "StudyDate one day (as issued)", study_sql("st.study_date = ?"), ("20200302",))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["peers", "index", "all"], default="all")
    ap.add_argument("--queries", type=int, default=50, help="C-FIND queries per kind and server")
    ap.add_argument("--moves", type=int, default=3, help="C-MOVE runs per server")
    ap.add_argument("--studies-1m", type=int, default=100000, help="studies in the index bench (~10 inst each)")
    ap.add_argument("--glia", type=Path, default=REPO / "target" / "release" / "glia")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "glia-bench-cache")
    args = ap.parse_args()
    for tool in (STORESCU, STORESCP):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} missing (apt-get install dcmtk)")
    if not os.access(args.glia, os.X_OK):
        raise SystemExit(f"{args.glia} missing: cargo build --release")
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.part in ("peers", "all"):
        part_peers(args)
    if args.part in ("index", "all"):
        part_index(args)
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
