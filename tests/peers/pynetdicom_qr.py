#!/usr/bin/env python3
"""Query/Retrieve against Glia with pynetdicom, an independent DIMSE implementation.

Driven by tests/peer_pynetdicom.rs, which starts a node, loads a small known data set
by C-STORE and passes what it stored as JSON (--expect). This script then checks, with
exact result sets:

  * C-FIND at STUDY / SERIES / IMAGE (Study Root) and PATIENT (Patient Root): universal,
    single value, wildcards (`*`, `?`, case-insensitive PatientName, UTF-8), UID lists,
    date ranges, time ranges, combined date-time (SOP class extended negotiation);
  * C-CANCEL during a C-FIND (0xFE00, or 0x0000 when every match was already sent);
  * C-MOVE to a pynetdicom storage SCP started here (--dest-port, AE --dest-ae): every
    received data set equal to what was sent (all elements, pixel data byte for byte);
  * C-GET with SCP/SCU role selection (instances received over the same association)
    and without it (every sub-operation fails: 0xA702 and a Failed SOP Instance UID List),
    after which the node keeps serving.

Exit status 0 when every check passed, 1 otherwise; a summary is printed either way.
Nagle's algorithm is disabled on every pynetdicom socket.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt, transport
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import (
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

STUDY_FIND = StudyRootQueryRetrieveInformationModelFind
PATIENT_FIND = PatientRootQueryRetrieveInformationModelFind
STUDY_MOVE = StudyRootQueryRetrieveInformationModelMove
STUDY_GET = StudyRootQueryRetrieveInformationModelGet


# ------------------------------------------------------------------------------------
# Nagle off on every socket pynetdicom creates or accepts.
# ------------------------------------------------------------------------------------

_create_socket = transport.AssociationSocket._create_socket


def _nodelay_create_socket(self, address):
    sock = _create_socket(self, address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


transport.AssociationSocket._create_socket = _nodelay_create_socket

_get_request = transport.AssociationServer.get_request


def _nodelay_get_request(self):
    sock, addr = _get_request(self)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, addr


transport.AssociationServer.get_request = _nodelay_get_request


# ------------------------------------------------------------------------------------
# Bookkeeping
# ------------------------------------------------------------------------------------

PASSED: list[str] = []
FAILED: list[str] = []


def check(name: str, cond: bool, detail: str = "") -> bool:
    if cond:
        PASSED.append(name)
        print(f"ok   {name}", flush=True)
    else:
        FAILED.append(name)
        print(f"FAIL {name}: {detail}", flush=True)
    return cond


def text(v) -> str:
    if v is None:
        return ""
    return str(v).rstrip("\0 ")


def ident(level: str, **keys) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def find(assoc, model, ds: Dataset) -> tuple[int, list[Dataset], list[int]]:
    """One C-FIND: (final status, matches, pending statuses)."""
    matches, pending = [], []
    final = None
    for status, identifier in assoc.send_c_find(ds, model):
        if status is None or "Status" not in status:
            raise RuntimeError("C-FIND: no response (association aborted or timed out)")
        st = status.Status
        if st in (0xFF00, 0xFF01):
            pending.append(st)
            matches.append(identifier)
        else:
            final = st
    return final, matches, pending


def col(matches: list[Dataset], keyword: str) -> set[str]:
    return {text(m.get(keyword)) for m in matches}


def check_find(assoc, name: str, model, ds: Dataset, keyword: str, expected, status=0x0000):
    try:
        st, matches, _ = find(assoc, model, ds)
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        return check(name, False, f"exception {e!r}")
    got = col(matches, keyword)
    expected = set(expected)
    ok = st == status and got == expected and len(matches) == len(expected)
    return check(
        name,
        ok,
        f"status {st:#06x} (want {status:#06x}), {keyword} {sorted(got)} ({len(matches)} matches), "
        f"want {sorted(expected)}",
    ) and matches


# ------------------------------------------------------------------------------------
# Storage SCP (C-MOVE destination) and C-GET receiver
# ------------------------------------------------------------------------------------


class Received:
    def __init__(self):
        self.lock = threading.Lock()
        self.datasets: dict[str, Dataset] = {}

    def handler(self, event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self.lock:
            self.datasets[text(ds.SOPInstanceUID)] = ds
        return 0x0000

    def take(self) -> dict[str, Dataset]:
        with self.lock:
            out, self.datasets = self.datasets, {}
        return out


def same_dataset(sent: Dataset, got: Dataset) -> str:
    """'' when `got` holds exactly the elements of `sent` (file meta aside) with equal
    values; pixel data compared byte for byte. Otherwise the first difference."""

    def keep(tag) -> bool:
        return tag.group != 0x0002 and tag.element != 0x0000 and tag != 0xFFFCFFFC

    a = {e.tag: e for e in sent if keep(e.tag)}
    b = {e.tag: e for e in got if keep(e.tag)}
    if set(a) != set(b):
        return f"tags differ: missing {sorted(set(a) - set(b))}, extra {sorted(set(b) - set(a))}"
    for tag, e in a.items():
        f = b[tag]
        if tag == 0x7FE00010:
            if bytes(e.value) != bytes(f.value):
                return "pixel data bytes differ"
            continue
        if e.VR != f.VR and not {e.VR, f.VR} <= {"OW", "OB", "OB or OW"}:
            return f"VR of {tag}: {e.VR} vs {f.VR}"
        if e.value != f.value:
            return f"value of {tag} ({e.keyword}): {e.value!r} vs {f.value!r}"
    return ""


def check_received(name: str, received: dict[str, Dataset], expected: set[str], sent_dir: Path) -> None:
    check(f"{name}: received SOP Instance UIDs", set(received) == expected,
          f"got {sorted(received)}, want {sorted(expected)}")
    for sop, ds in sorted(received.items()):
        path = sent_dir / f"{sop}.dcm"
        if not path.exists():
            check(f"{name}: {sop} was sent", False, "unknown instance received")
            continue
        diff = same_dataset(pydicom.dcmread(path), ds)
        check(f"{name}: {sop[-12:]} equals what was sent", diff == "", diff)


# ------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------


def associate(ae: AE, args, **kw):
    assoc = ae.associate("127.0.0.1", args.port, ae_title=args.called_ae, **kw)
    if not assoc.is_established:
        raise SystemExit(f"association with {args.called_ae} on port {args.port} refused or failed")
    return assoc


def finds(args, x) -> None:
    st, se, sops = x["studies"], x["series"], x["sops"]
    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(STUDY_FIND)
    ae.add_requested_context(PATIENT_FIND)
    assoc = associate(ae, args)
    uid = "StudyInstanceUID"
    all4 = [st["mueller"], st["muller"], st["smith"], st["smith_ct"]]

    # STUDY level.
    m = check_find(assoc, "STUDY universal", STUDY_FIND,
                   ident("STUDY", StudyInstanceUID="", ModalitiesInStudy="",
                         NumberOfStudyRelatedInstances=""), uid, all4)
    if m:
        check("STUDY universal: ModalitiesInStudy", col(m, "ModalitiesInStudy") == {"MR", "CT"},
              str(col(m, "ModalitiesInStudy")))
        check("STUDY universal: NumberOfStudyRelatedInstances",
              col(m, "NumberOfStudyRelatedInstances") == {"2", "4"},
              str(col(m, "NumberOfStudyRelatedInstances")))
    check_find(assoc, "STUDY single PatientID", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", PatientID="P-SMI"), uid, [st["smith"], st["smith_ct"]])
    check_find(assoc, "STUDY single PatientID is case-sensitive", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", PatientID="p-smi"), uid, [])
    check_find(assoc, "STUDY wildcard MUE*", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", PatientName="MUE*"), uid, [st["mueller"]])
    check_find(assoc, "STUDY wildcard mueller* (case-insensitive)", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", PatientName="mueller*"), uid, [st["mueller"]])
    check_find(assoc, "STUDY wildcard *JOHN", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", PatientName="*JOHN"), uid, [st["smith"], st["smith_ct"]])
    check_find(assoc, "STUDY wildcard SM?TH^J*", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", PatientName="SM?TH^J*"), uid, [st["smith"], st["smith_ct"]])
    m = check_find(assoc, "STUDY wildcard M?LLER* (? is one character: Ü)", STUDY_FIND,
                   ident("STUDY", StudyInstanceUID="", PatientName="M?LLER*"), uid, [st["muller"]])
    if m:
        check("STUDY UTF-8 PatientName round-trips", col(m, "PatientName") == {"Müller^Jürgen"},
              str(col(m, "PatientName")))
    check_find(assoc, "STUDY wildcard müller* (UTF-8, case-insensitive)", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", PatientName="müller*"), uid, [st["muller"]])
    check_find(assoc, "STUDY single PatientName (exact, case-insensitive)", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", PatientName="smith^john"), uid, [st["smith"], st["smith_ct"]])
    check_find(assoc, "STUDY UID list", STUDY_FIND,
               ident("STUDY", StudyInstanceUID=[st["mueller"], st["smith_ct"]]), uid,
               [st["mueller"], st["smith_ct"]])
    check_find(assoc, "STUDY single UID", STUDY_FIND,
               ident("STUDY", StudyInstanceUID=st["smith"]), uid, [st["smith"]])
    check_find(assoc, "STUDY date range closed", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", StudyDate="20240101-20240131"), uid, [st["mueller"]])
    check_find(assoc, "STUDY date range open below", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", StudyDate="-20231231"), uid, [st["smith_ct"]])
    check_find(assoc, "STUDY date range open above", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", StudyDate="20240201-"), uid, [st["muller"], st["smith"]])
    check_find(assoc, "STUDY single date", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", StudyDate="20240210"), uid, [st["muller"], st["smith"]])
    check_find(assoc, "STUDY time range", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", StudyTime="08-10"), uid, [st["mueller"], st["smith"]])
    check_find(assoc, "STUDY time range open above", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", StudyTime="1400-"), uid, [st["muller"], st["smith_ct"]])
    check_find(assoc, "STUDY date + time matched separately (no extended negotiation)", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", StudyDate="20240105-20240210", StudyTime="1400-0930"),
               uid, [])
    check_find(assoc, "STUDY ModalitiesInStudy CT", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", ModalitiesInStudy="CT"), uid, [st["smith_ct"]])

    # SERIES level.
    m = check_find(assoc, "SERIES wildcard SeriesDescription in one study", STUDY_FIND,
                   ident("SERIES", StudyInstanceUID=st["smith"], SeriesInstanceUID="",
                         SeriesDescription="FLAIR*", NumberOfSeriesRelatedInstances=""),
                   "SeriesInstanceUID", [se["smith"][1]])
    if m:
        check("SERIES NumberOfSeriesRelatedInstances", col(m, "NumberOfSeriesRelatedInstances") == {"2"},
              str(col(m, "NumberOfSeriesRelatedInstances")))
    check_find(assoc, "SERIES universal in one study", STUDY_FIND,
               ident("SERIES", StudyInstanceUID=st["mueller"], SeriesInstanceUID="", Modality=""),
               "SeriesInstanceUID", se["mueller"])
    check_find(assoc, "SERIES single Modality", STUDY_FIND,
               ident("SERIES", StudyInstanceUID=st["smith_ct"], SeriesInstanceUID="", Modality="CT"),
               "SeriesInstanceUID", se["smith_ct"])
    check_find(assoc, "SERIES wildcard ?? Modality, *AX description", STUDY_FIND,
               ident("SERIES", StudyInstanceUID=st["muller"], SeriesInstanceUID="", Modality="??",
                     SeriesDescription="*AX"),
               "SeriesInstanceUID", se["muller"])
    check_find(assoc, "SERIES UID list", STUDY_FIND,
               ident("SERIES", StudyInstanceUID=st["mueller"],
                     SeriesInstanceUID=[se["mueller"][1], se["smith"][0]]),
               "SeriesInstanceUID", [se["mueller"][1]])
    check_find(assoc, "SERIES without the study's UID is refused (hierarchical)", STUDY_FIND,
               ident("SERIES", SeriesInstanceUID="", Modality="MR"), "SeriesInstanceUID", [], status=0xA900)

    # IMAGE level.
    s0 = se["mueller"][0]
    m = check_find(assoc, "IMAGE universal in one series", STUDY_FIND,
                   ident("IMAGE", StudyInstanceUID=st["mueller"], SeriesInstanceUID=s0,
                         SOPInstanceUID="", InstanceNumber=""),
                   "SOPInstanceUID", sops[s0])
    if m:
        check("IMAGE InstanceNumber returned", col(m, "InstanceNumber") == {"1", "2"}, str(col(m, "InstanceNumber")))
    check_find(assoc, "IMAGE single InstanceNumber", STUDY_FIND,
               ident("IMAGE", StudyInstanceUID=st["mueller"], SeriesInstanceUID=s0,
                     SOPInstanceUID="", InstanceNumber="2"),
               "SOPInstanceUID", [sops[s0][1]])
    check_find(assoc, "IMAGE single SOP Instance UID", STUDY_FIND,
               ident("IMAGE", StudyInstanceUID=st["mueller"], SeriesInstanceUID=s0, SOPInstanceUID=sops[s0][0]),
               "SOPInstanceUID", [sops[s0][0]])
    check_find(assoc, "IMAGE SOP Instance UID list", STUDY_FIND,
               ident("IMAGE", StudyInstanceUID=st["mueller"], SeriesInstanceUID=s0,
                     SOPInstanceUID=[sops[s0][0], sops[s0][1], sops[se["smith"][0]][0]]),
               "SOPInstanceUID", sops[s0])
    check_find(assoc, "IMAGE SOPClassUID single", STUDY_FIND,
               ident("IMAGE", StudyInstanceUID=st["mueller"], SeriesInstanceUID=s0,
                     SOPInstanceUID="", SOPClassUID=MRImageStorage),
               "SOPInstanceUID", sops[s0])

    # PATIENT level (Patient Root).
    m = check_find(assoc, "PATIENT wildcard smith* (Patient Root)", PATIENT_FIND,
                   ident("PATIENT", PatientID="", PatientName="smith*", NumberOfPatientRelatedStudies=""),
                   "PatientID", ["P-SMI"])
    if m:
        check("PATIENT NumberOfPatientRelatedStudies", col(m, "NumberOfPatientRelatedStudies") == {"2"},
              str(col(m, "NumberOfPatientRelatedStudies")))

    # C-CANCEL: pynetdicom sends the C-FIND-RQ when the generator is first advanced, so
    # the cancel goes out after the first response. With only four matches the SCP may
    # already have sent them all, in which case 0000 after four matches is the right
    # answer; otherwise the matches stop with 0xFE00. (tests/query_find.rs proves the
    # cancel path strictly, with 150 matches.)
    responses = assoc.send_c_find(
        ident("STUDY", StudyInstanceUID="", PatientName=""), STUDY_FIND, msg_id=77)
    pending, final = 0, None
    first = next(responses)
    if first[0] is not None and first[0].Status in (0xFF00, 0xFF01):
        pending += 1
    assoc.send_c_cancel(77, query_model=STUDY_FIND)
    for status, _ in responses:
        if status is None or "Status" not in status:
            break
        if status.Status in (0xFF00, 0xFF01):
            pending += 1
        else:
            final = status.Status
    check("C-CANCEL during C-FIND: cancelled (0xFE00) or already complete (0x0000 after all 4)",
          (final == 0xFE00 and pending < 4) or (final == 0x0000 and pending == 4),
          f"final {final!r}, {pending} pending responses")
    check_find(assoc, "C-FIND after C-CANCEL on the same association", STUDY_FIND,
               ident("STUDY", StudyInstanceUID=st["smith"]), uid, [st["smith"]])
    assoc.release()

    # Combined date-time matching: extended negotiation, byte 2 (and relational, byte 1).
    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(STUDY_FIND)
    item = SOPClassExtendedNegotiation()
    item.sop_class_uid = STUDY_FIND
    item.service_class_application_information = b"\x01\x01"
    assoc = associate(ae, args, ext_neg=[item])
    check_find(assoc, "STUDY combined date-time range (extended negotiation)", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", StudyDate="20240105-20240210", StudyTime="1400-0930"),
               uid, [st["smith"]])
    check_find(assoc, "STUDY combined date-time, open above", STUDY_FIND,
               ident("STUDY", StudyInstanceUID="", StudyDate="20240210-", StudyTime="1000-"),
               uid, [st["muller"]])
    check_find(assoc, "SERIES relational (no study UID, extended negotiation)", STUDY_FIND,
               ident("SERIES", SeriesInstanceUID="", Modality="CT"), "SeriesInstanceUID", se["smith_ct"])
    assoc.release()


def retrieves(args, x, received: Received) -> None:
    st, se, sops = x["studies"], x["series"], x["sops"]
    sent_dir = Path(x["sent_dir"])

    def study_sops(name: str) -> set[str]:
        return {s for series in se[name] for s in sops[series]}

    # C-MOVE to the storage SCP started by main().
    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(STUDY_MOVE)
    ae.add_requested_context(STUDY_FIND)
    assoc = associate(ae, args)
    final = None
    for status, identifier in assoc.send_c_move(
            ident("STUDY", StudyInstanceUID=st["mueller"]), args.dest_ae, STUDY_MOVE):
        if status is None or "Status" not in status:
            break
        if status.Status != 0xFF00:
            final = status
    check("C-MOVE study: final status 0x0000", final is not None and final.Status == 0,
          f"{final}")
    if final is not None:
        check("C-MOVE study: 4 completed, 0 failed",
              final.get("NumberOfCompletedSuboperations") == 4
              and final.get("NumberOfFailedSuboperations", 0) == 0, f"{final}")
    check_received("C-MOVE study", received.take(), study_sops("mueller"), sent_dir)
    # Series level.
    final = None
    for status, _ in assoc.send_c_move(
            ident("SERIES", StudyInstanceUID=st["smith"], SeriesInstanceUID=se["smith"][1]),
            args.dest_ae, STUDY_MOVE):
        if status is not None and "Status" in status and status.Status != 0xFF00:
            final = status.Status
    check("C-MOVE series: final status 0x0000", final == 0, f"{final!r}")
    check_received("C-MOVE series", received.take(), set(sops[se["smith"][1]]), sent_dir)
    # Unknown destination.
    final = None
    for status, _ in assoc.send_c_move(ident("STUDY", StudyInstanceUID=st["mueller"]), "NOBODY", STUDY_MOVE):
        if status is not None and "Status" in status and status.Status != 0xFF00:
            final = status.Status
    check("C-MOVE unknown destination: 0xA801", final == 0xA801, f"{final!r}")
    assoc.release()

    # C-GET with role selection: the SCU takes the SCP role for MR Image Storage.
    got = Received()
    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(STUDY_GET)
    ae.add_requested_context(MRImageStorage)
    assoc = associate(ae, args, ext_neg=[build_role(MRImageStorage, scp_role=True)],
                      evt_handlers=[(evt.EVT_C_STORE, got.handler)])
    final = None
    for status, identifier in assoc.send_c_get(ident("STUDY", StudyInstanceUID=st["smith"]), STUDY_GET):
        if status is None or "Status" not in status:
            break
        if status.Status != 0xFF00:
            final = status
    check("C-GET with role selection: final status 0x0000", final is not None and final.Status == 0, f"{final}")
    check_received("C-GET with role selection", got.take(), study_sops("smith"), sent_dir)
    assoc.release()

    # C-GET without role selection: nothing may be sent; every sub-operation fails.
    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(STUDY_GET)
    ae.add_requested_context(STUDY_FIND)
    ae.add_requested_context(MRImageStorage)
    assoc = associate(ae, args, evt_handlers=[(evt.EVT_C_STORE, got.handler)])
    final, final_ident = None, None
    for status, identifier in assoc.send_c_get(ident("STUDY", StudyInstanceUID=st["smith_ct"]), STUDY_GET):
        if status is None or "Status" not in status:
            break
        if status.Status != 0xFF00:
            final, final_ident = status, identifier
    want = study_sops("smith_ct")
    check("C-GET without role selection: final status 0xA702",
          final is not None and final.Status == 0xA702, f"{final}")
    if final is not None:
        check("C-GET without role selection: counts",
              final.get("NumberOfFailedSuboperations") == len(want)
              and final.get("NumberOfCompletedSuboperations", 0) == 0, f"{final}")
    failed = set()
    if final_ident is not None and "FailedSOPInstanceUIDList" in final_ident:
        v = final_ident.FailedSOPInstanceUIDList
        failed = {text(u) for u in (v if isinstance(v, (list, pydicom.multival.MultiValue)) else [v])}
    check("C-GET without role selection: Failed SOP Instance UID List", failed == want,
          f"got {sorted(failed)}, want {sorted(want)}")
    check("C-GET without role selection: nothing received", not got.take(), "instances were sent")
    check_find(assoc, "C-FIND on the same association after the failed C-GET", STUDY_FIND,
               ident("STUDY", StudyInstanceUID=st["smith_ct"]), "StudyInstanceUID", [st["smith_ct"]])
    assoc.release()

    # The node keeps serving new associations.
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(Verification)
    assoc = associate(ae, args)
    rsp = assoc.send_c_echo()
    check("C-ECHO on a new association afterwards", rsp is not None and rsp.get("Status") == 0, f"{rsp}")
    assoc.release()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="Glia's DICOM port on 127.0.0.1")
    ap.add_argument("--called-ae", default="GLIA")
    ap.add_argument("--dest-port", type=int, required=True, help="port of the storage SCP started here")
    ap.add_argument("--dest-ae", default="PYSCP", help="its AE title (Glia's [[dimse.peers]] entry)")
    ap.add_argument("--expect", required=True, help="JSON: studies, series, sops, sent_dir (or @FILE)")
    args = ap.parse_args()
    raw = Path(args.expect[1:]).read_text() if args.expect.startswith("@") else args.expect
    x = json.loads(raw)

    received = Received()
    scp = AE(ae_title=args.dest_ae)
    scp.add_supported_context(MRImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    server = scp.start_server(("127.0.0.1", args.dest_port), block=False,
                              evt_handlers=[(evt.EVT_C_STORE, received.handler)])
    t0 = time.monotonic()
    try:
        finds(args, x)
        retrieves(args, x, received)
    except Exception as e:  # noqa: BLE001
        FAILED.append(f"exception: {e!r}")
        print(f"FAIL exception: {e!r}", flush=True)
    finally:
        server.shutdown()
    print(f"\npynetdicom Q/R against Glia: {len(PASSED)} checks ok, {len(FAILED)} not ok "
          f"({time.monotonic() - t0:.1f} s)")
    for f in FAILED:
        print(f"  not ok: {f}")
    return 0 if not FAILED and PASSED else 1


if __name__ == "__main__":
    sys.exit(main())
