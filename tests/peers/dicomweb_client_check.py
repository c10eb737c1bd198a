#!/usr/bin/env python3
"""dicomweb-client (PyPI) as an independent DICOMweb client against a Glia node.

Reads the Part 10 files under --dir (a synthetic data set written by
tests/peer_dicomweb_client.rs), stores them with STOW-RS, then checks QIDO-RS at every
level, WADO-RS retrieve (study / series / instance, each instance equal to the file
sent: element by element, and the data set bytes identical), metadata (every
top-level non-binary attribute of the source present and equal; PixelData as a
BulkDataURI), frames (equal to pydicom's decoded frames), bulk data (equal to the
source PixelData bytes) and rendered (decodes as an image).

One line per check, then `N passed, N failed`; exit status 1 when any check failed.
No patient data is printed (UIDs are shortened, names never shown).
"""

import argparse
import io
import pathlib
import sys
import traceback
from collections import defaultdict

import numpy as np
import pydicom
from pydicom.filereader import read_preamble, _read_file_meta_info
from dicomweb_client.api import DICOMwebClient

BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
RESULTS = {"passed": 0, "failed": 0}


def check(name):
    """Decorator-free helper: run `fn`, print PASS/FAIL with the reason."""

    def run(fn, *args):
        try:
            detail = fn(*args)
            RESULTS["passed"] += 1
            print(f"PASS {name}" + (f" ({detail})" if detail else ""), flush=True)
        except AssertionError as e:
            RESULTS["failed"] += 1
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # an HTTP error or a decoding failure
            RESULTS["failed"] += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(limit=3, file=sys.stdout)

    return run


def short(uid):
    return "…" + uid[-8:]


def val(js, keyword):
    """First value of `keyword` in a DICOM JSON object (or None)."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    el = js.get(f"{tag:08X}")
    if not el or "Value" not in el or not el["Value"]:
        return None
    return el["Value"][0]


def values(js, keyword):
    tag = pydicom.datadict.tag_for_keyword(keyword)
    el = js.get(f"{tag:08X}") or {}
    return el.get("Value", [])


def uids(results, keyword):
    return sorted(val(r, keyword) for r in results)


def dataset_bytes(part10):
    """The bytes after the file meta group of a Part 10 stream."""
    fp = io.BytesIO(part10)
    read_preamble(fp, False)
    _read_file_meta_info(fp)
    return part10[fp.tell():]


def compare_datasets(sent, got, what):
    """Every element outside group 0002 equal (tag set, VR, value)."""
    a = {e.tag for e in sent if e.tag.group != 0x0002 and e.tag.element != 0}
    b = {e.tag for e in got if e.tag.group != 0x0002 and e.tag.element != 0}
    assert a == b, f"{what}: missing {sorted(a - b)}, extra {sorted(b - a)}"
    for tag in sorted(a):
        x, y = sent[tag], got[tag]
        assert x.VR == y.VR, f"{what}: VR of {tag} {x.VR} != {y.VR}"
        assert x.value == y.value, f"{what}: value of {tag} differs"


class Data:
    """The files sent, indexed by study / series / SOP Instance UID."""

    def __init__(self, root):
        self.files = {}  # sop -> path
        self.ds = {}  # sop -> Dataset
        self.studies = defaultdict(lambda: defaultdict(list))  # study -> series -> [sop]
        for p in sorted(pathlib.Path(root).rglob("*.dcm")):
            ds = pydicom.dcmread(p)
            sop = ds.SOPInstanceUID
            self.files[sop] = p
            self.ds[sop] = ds
            self.studies[ds.StudyInstanceUID][ds.SeriesInstanceUID].append(sop)
        assert len(self.studies) >= 2, "need at least two studies"

    def study_of_patient(self, pid):
        return [s for s, se in self.studies.items() if self.first(s).PatientID == pid]

    def first(self, study, series=None):
        series = series or next(iter(self.studies[study]))
        return self.ds[self.studies[study][series][0]]

    def sops(self, study, series=None):
        if series:
            return sorted(self.studies[study][series])
        return sorted(s for se in self.studies[study].values() for s in se)

    def multiframe(self):
        for sop, ds in self.ds.items():
            if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
                return sop
        raise AssertionError("no multi-frame instance in the data set")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="http://HOST:PORT/dicom-web")
    ap.add_argument("--dir", required=True, help="folder of the Part 10 files to send")
    ap.add_argument("--stored", action="store_true",
                    help="the files were already stored (glia import): skip STOW-RS")
    ap.add_argument("--token", default="", help="bearer token sent with every request")
    args = ap.parse_args()
    data = Data(args.dir)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    client = DICOMwebClient(args.url, timeout=60, headers=headers)
    # dicomweb-client 0.61.2 sets its own `Host` header from the URL's host name
    # *without the port*, so a server that builds BulkDataURIs from Host (as it should)
    # answers port-80 URIs. Give it the port (this attribute only feeds that header).
    if f":{client.port}" in args.url:
        client.host = f"{client.host}:{client.port}"
    studies = sorted(data.studies)
    # Study "A" has the most series (with the multi-frame instance), "B" is the other.
    a = max(studies, key=lambda s: len(data.studies[s]))
    b = next(s for s in studies if s != a)
    first_a, first_b = data.first(a), data.first(b)
    series_a = sorted(data.studies[a])
    print(f"data: {len(studies)} studies, {len(data.ds)} instances; A={short(a)} B={short(b)}")

    # ---- STOW-RS ----------------------------------------------------------------
    def stow(study, with_uid):
        sops = data.sops(study)
        datasets = [pydicom.dcmread(data.files[s]) for s in sops]
        resp = client.store_instances(datasets, study_instance_uid=study if with_uid else None)
        failed = getattr(resp, "FailedSOPSequence", None)
        assert not failed, f"FailedSOPSequence has {len(failed)} items"
        ref = sorted(i.ReferencedSOPInstanceUID for i in resp.ReferencedSOPSequence)
        assert ref == sops, f"ReferencedSOPSequence {len(ref)} items, expected {len(sops)}"
        return f"{len(sops)} instances"

    if args.stored:
        print("STOW-RS skipped: the data set was stored by glia import (--stored)")
    else:
        check("STOW-RS POST /studies (study A)")(stow, a, False)
        check("STOW-RS POST /studies/{study} (study B)")(stow, b, True)

    # ---- QIDO-RS: studies -------------------------------------------------------
    def q_studies(expect, **kw):
        res = client.search_for_studies(**kw)
        got = uids(res, "StudyInstanceUID")
        assert got == sorted(expect), f"got {len(got)} studies {list(map(short, got))}, expected {list(map(short, sorted(expect)))}"
        return res

    check("QIDO studies: all")(lambda: q_studies(studies) and None)
    check("QIDO studies: PatientID (keyword)")(
        lambda: q_studies([a], search_filters={"PatientID": first_a.PatientID}) and None)
    check("QIDO studies: PatientID (tag 00100020)")(
        lambda: q_studies([b], search_filters={"00100020": first_b.PatientID}) and None)
    name_a = str(first_a.PatientName)
    check("QIDO studies: wildcard PatientName 'X*'")(
        lambda: q_studies([a], search_filters={"PatientName": name_a[:3] + "*"}) and None)
    check("QIDO studies: wildcard PatientName 'X?X*'")(
        lambda: q_studies([a], search_filters={"PatientName": name_a[0] + "?" + name_a[2:5] + "*"}) and None)

    def date_range():
        da, db = first_a.StudyDate, first_b.StudyDate
        assert da != db
        lo, hi = (a, b) if da < db else (b, a)
        q_studies([lo], search_filters={"StudyDate": f"-{min(da, db)}"})
        q_studies([hi], search_filters={"StudyDate": f"{max(da, db)}-"})
        q_studies([a], search_filters={"StudyDate": f"{da}-{da}"})
        q_studies(studies, search_filters={"StudyDate": f"{min(da, db)}-{max(da, db)}"})
        return "open, closed and single-day ranges"

    check("QIDO studies: StudyDate range")(date_range)

    def study_attrs():
        (r,) = q_studies([a], search_filters={"StudyInstanceUID": a})
        n_series = len(data.studies[a])
        n_inst = len(data.sops(a))
        assert val(r, "NumberOfStudyRelatedSeries") == n_series, f"NumberOfStudyRelatedSeries {val(r, 'NumberOfStudyRelatedSeries')} != {n_series}"
        assert val(r, "NumberOfStudyRelatedInstances") == n_inst, f"NumberOfStudyRelatedInstances {val(r, 'NumberOfStudyRelatedInstances')} != {n_inst}"
        mods = sorted({data.ds[s].Modality for s in data.sops(a)})
        assert sorted(values(r, "ModalitiesInStudy")) == mods, f"ModalitiesInStudy {values(r, 'ModalitiesInStudy')} != {mods}"
        for kw in ["PatientID", "StudyDate", "AccessionNumber", "StudyID"]:
            assert val(r, kw) == getattr(first_a, kw), f"{kw} differs"
        assert val(r, "PatientName") == {"Alphabetic": name_a}, "PatientName differs"

    check("QIDO studies: default attributes and counts")(study_attrs)

    def includefield():
        fields = ["PatientBirthDate", "PatientSex", "00081030"]
        (r,) = q_studies([a], search_filters={"PatientID": first_a.PatientID}, fields=fields)
        for kw in ["PatientBirthDate", "PatientSex", "StudyDescription"]:
            assert val(r, kw) == getattr(first_a, kw), f"includefield {kw}: got {val(r, kw)!r}"
        return "keywords and a tag"

    check("QIDO studies: includefield (fields=[...])")(includefield)

    def fuzzy():
        # Fuzzy matching may widen a match, never narrow it: the exact name matches.
        res = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": name_a})
        got = uids(res, "StudyInstanceUID")
        assert a in got, f"study A not found with fuzzymatching=true ({len(got)} results)"
        # Names match case-insensitively on this node anyway; fuzzy keeps that.
        res = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": name_a.lower()})
        got = uids(res, "StudyInstanceUID")
        assert a in got, "fuzzymatching=true with the lower-case name did not match study A"
        return f"{len(got)} result(s)"

    check("QIDO studies: fuzzymatching=true")(fuzzy)

    def paging():
        p1 = uids(client.search_for_studies(limit=1, offset=0), "StudyInstanceUID")
        p2 = uids(client.search_for_studies(limit=1, offset=1), "StudyInstanceUID")
        p3 = uids(client.search_for_studies(limit=1, offset=len(studies)), "StudyInstanceUID")
        assert len(p1) == 1 and len(p2) == 1, f"page sizes {len(p1)}, {len(p2)}"
        assert sorted(p1 + p2) == studies, "pages overlap or miss a study"
        assert p3 == [], f"offset past the end gave {len(p3)} results"

    check("QIDO studies: limit/offset")(paging)

    # ---- QIDO-RS: series --------------------------------------------------------
    def q_series(expect, **kw):
        res = client.search_for_series(**kw)
        got = uids(res, "SeriesInstanceUID")
        assert got == sorted(expect), f"got {len(got)} series, expected {len(expect)}"
        return res

    def series_of_study():
        res = q_series(series_a, study_instance_uid=a)
        for r in res:
            se = val(r, "SeriesInstanceUID")
            ds = data.ds[data.studies[a][se][0]]
            assert val(r, "Modality") == ds.Modality, "Modality differs"
            assert val(r, "SeriesNumber") == int(ds.SeriesNumber), "SeriesNumber differs"
            n = len(data.studies[a][se])
            assert val(r, "NumberOfSeriesRelatedInstances") == n, f"NumberOfSeriesRelatedInstances {val(r, 'NumberOfSeriesRelatedInstances')} != {n}"
        return f"{len(res)} series"

    check("QIDO /studies/{study}/series")(series_of_study)
    mr_a = sorted(se for se in series_a if data.ds[data.studies[a][se][0]].Modality == "MR")
    check("QIDO /studies/{study}/series: Modality=MR")(
        lambda: q_series(mr_a, study_instance_uid=a, search_filters={"Modality": "MR"}) and None)
    check("QIDO /series: PatientID filter")(
        lambda: q_series(sorted(data.studies[b]), search_filters={"PatientID": first_b.PatientID}) and None)
    check("QIDO /series: SeriesInstanceUID")(
        lambda: q_series([series_a[0]], search_filters={"SeriesInstanceUID": series_a[0]}) and None)

    def series_fields():
        se = mr_a[0]
        (r,) = q_series([se], study_instance_uid=a, search_filters={"SeriesInstanceUID": se},
                        fields=["SeriesDescription", "BodyPartExamined"])
        assert val(r, "SeriesDescription") == data.ds[data.studies[a][se][0]].SeriesDescription

    check("QIDO /series: includefield SeriesDescription")(series_fields)

    def series_paging():
        p = [uids(client.search_for_series(study_instance_uid=a, limit=2, offset=o), "SeriesInstanceUID")
             for o in range(0, len(series_a), 2)]
        flat = sorted(x for page in p for x in page)
        assert flat == series_a, f"pages {list(map(len, p))} do not cover the {len(series_a)} series"

    check("QIDO /studies/{study}/series: limit/offset")(series_paging)

    # ---- QIDO-RS: instances -----------------------------------------------------
    def q_inst(expect, **kw):
        res = client.search_for_instances(**kw)
        got = uids(res, "SOPInstanceUID")
        assert got == sorted(expect), f"got {len(got)} instances, expected {len(expect)}"
        return res

    def inst_of_series():
        se = mr_a[0]
        res = q_inst(data.sops(a, se), study_instance_uid=a, series_instance_uid=se)
        for r in res:
            ds = data.ds[val(r, "SOPInstanceUID")]
            assert val(r, "SOPClassUID") == ds.SOPClassUID, "SOPClassUID differs"
            assert val(r, "InstanceNumber") == int(ds.InstanceNumber), "InstanceNumber differs"
            assert val(r, "Rows") in (None, ds.Rows), "Rows differs"
        return f"{len(res)} instances"

    check("QIDO /studies/{study}/series/{series}/instances")(inst_of_series)
    check("QIDO /studies/{study}/instances")(
        lambda: q_inst(data.sops(a), study_instance_uid=a) and None)
    check("QIDO /instances: all")(
        lambda: q_inst(sorted(data.ds), limit=1000) and None)
    check("QIDO /instances: PatientID and wildcard PatientName")(
        lambda: q_inst(data.sops(b), search_filters={"PatientID": first_b.PatientID,
                                                      "PatientName": str(first_b.PatientName)[:2] + "*"}) and None)
    one = data.sops(a, mr_a[0])[0]
    check("QIDO /instances: SOPInstanceUID")(
        lambda: q_inst([one], search_filters={"SOPInstanceUID": one}) and None)

    def inst_paging():
        sops = data.sops(a)
        pages = [uids(client.search_for_instances(study_instance_uid=a, limit=3, offset=o), "SOPInstanceUID")
                 for o in range(0, len(sops), 3)]
        flat = sorted(x for p in pages for x in p)
        assert flat == sops, f"pages {list(map(len, pages))} do not cover the {len(sops)} instances"

    check("QIDO /studies/{study}/instances: limit/offset")(inst_paging)

    # ---- WADO-RS: retrieve -----------------------------------------------------
    def same_as_sent(ds_list, expect_sops, what):
        got = sorted(d.SOPInstanceUID for d in ds_list)
        assert got == sorted(expect_sops), f"{what}: got {len(got)} instances, expected {len(expect_sops)}"
        for d in ds_list:
            compare_datasets(data.ds[d.SOPInstanceUID], d, f"{what} {short(d.SOPInstanceUID)}")
        return f"{len(got)} instances equal element by element"

    check("WADO-RS retrieve_study")(
        lambda: same_as_sent(client.retrieve_study(a), data.sops(a), "study"))
    check("WADO-RS retrieve_series")(
        lambda: same_as_sent(client.retrieve_series(a, mr_a[0]), data.sops(a, mr_a[0]), "series"))
    check("WADO-RS retrieve_instance")(
        lambda: same_as_sent([client.retrieve_instance(a, mr_a[0], one)], [one], "instance"))
    check("WADO-RS retrieve_series (transfer-syntax=*)")(
        lambda: same_as_sent(client.retrieve_series(b, sorted(data.studies[b])[0], media_types=(("application/dicom", "*"),)),
                             data.sops(b, sorted(data.studies[b])[0]), "series"))

    def bytes_identical():
        url = f"{args.url}/studies/{a}/series/{mr_a[0]}/instances/{one}"
        resp = client._http_get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        parts = [p for p in client._decode_multipart_message(resp, stream=False)]
        assert len(parts) == 1, f"{len(parts)} parts"
        got = dataset_bytes(parts[0])
        if args.stored:
            sent = dataset_bytes(data.files[one].read_bytes())
        else:
            # What STOW-RS sent: dicomweb-client encodes each data set with dcmwrite.
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, pydicom.dcmread(data.files[one]))
            sent = dataset_bytes(buf.getvalue())
        assert got == sent, f"data set bytes differ ({len(got)} vs {len(sent)} bytes)"
        return f"{len(got)} bytes"

    check("WADO-RS instance data set byte-identical to the file sent")(bytes_identical)

    # ---- WADO-RS: metadata -----------------------------------------------------
    def compare_metadata(js, what):
        src = data.ds[val(js, "SOPInstanceUID")]
        got = pydicom.Dataset.from_json(js, bulk_data_uri_handler=lambda tag, vr, uri: b"")
        for el in src:
            if el.tag.group == 0x0002 or el.tag.element == 0 or el.VR in BINARY_VRS:
                continue
            assert el.tag in got, f"{what}: {el.tag} ({el.keyword}) missing"
            assert got[el.tag].VR == el.VR, f"{what}: VR of {el.tag} {got[el.tag].VR} != {el.VR}"
            assert got[el.tag].value == el.value, f"{what}: value of {el.tag} ({el.keyword}) differs"
        pd = js.get("7FE00010")
        assert pd is not None, f"{what}: PixelData missing"
        assert "BulkDataURI" in pd, f"{what}: PixelData has no BulkDataURI ({sorted(pd)})"
        assert "InlineBinary" not in pd, f"{what}: PixelData inline"
        return pd["BulkDataURI"]

    def series_metadata():
        se = mr_a[0]
        md = client.retrieve_series_metadata(a, se)
        got = sorted(val(m, "SOPInstanceUID") for m in md)
        assert got == data.sops(a, se), f"{len(got)} objects, expected {len(data.sops(a, se))}"
        for m in md:
            compare_metadata(m, "series metadata")
        return f"{len(md)} instances"

    check("WADO-RS retrieve_series_metadata")(series_metadata)
    bulk = {}

    def instance_metadata():
        mf = data.multiframe()
        ds = data.ds[mf]
        for sop in (one, mf):
            d = data.ds[sop]
            md = client.retrieve_instance_metadata(d.StudyInstanceUID, d.SeriesInstanceUID, sop)
            bulk[sop] = compare_metadata(md, "instance metadata")
        return f"{len(bulk)} instances, NumberOfFrames {ds.NumberOfFrames}"

    check("WADO-RS retrieve_instance_metadata")(instance_metadata)

    def study_metadata():
        md = client.retrieve_study_metadata(a)
        got = sorted(val(m, "SOPInstanceUID") for m in md)
        assert got == data.sops(a), f"{len(got)} objects, expected {len(data.sops(a))}"

    check("WADO-RS retrieve_study_metadata")(study_metadata)

    # ---- WADO-RS: frames and bulk data -----------------------------------------
    def frames_equal(sop, numbers):
        d = data.ds[sop]
        arr = d.pixel_array
        if arr.ndim == 2:
            arr = arr[np.newaxis]
        frames = client.retrieve_instance_frames(d.StudyInstanceUID, d.SeriesInstanceUID, sop, frame_numbers=numbers)
        assert len(frames) == len(numbers), f"{len(frames)} frames, expected {len(numbers)}"
        dtype = arr.dtype.newbyteorder("<")
        for n, f in zip(numbers, frames):
            got = np.frombuffer(f, dtype=dtype)
            assert got.size == arr[n - 1].size, f"frame {n}: {len(f)} bytes"
            assert np.array_equal(got.reshape(arr[n - 1].shape), arr[n - 1]), f"frame {n} pixels differ"
        return f"frames {numbers} of {arr.shape[0]}"

    check("WADO-RS retrieve_instance_frames (single frame)")(lambda: frames_equal(one, [1]))
    check("WADO-RS retrieve_instance_frames /frames/1,3")(lambda: frames_equal(data.multiframe(), [1, 3]))

    def frame_out_of_range():
        d = data.ds[one]
        try:
            client.retrieve_instance_frames(d.StudyInstanceUID, d.SeriesInstanceUID, one, frame_numbers=[2])
        except Exception as e:  # requests.HTTPError
            status = getattr(getattr(e, "response", None), "status_code", None)
            assert status in (400, 404), f"status {status}"
            return f"HTTP {status}"
        raise AssertionError("frame 2 of a single-frame instance was served")

    check("WADO-RS frames: frame number past the end is an error")(frame_out_of_range)

    def bulkdata():
        assert bulk, "no BulkDataURI collected (metadata check failed)"
        for sop, uri in bulk.items():
            want = f"{args.url}/studies/"
            assert uri.startswith(want), f"BulkDataURI does not start with {want}: {uri.split('/studies/')[0]}/studies/…"
            parts = client.retrieve_bulkdata(uri)
            assert len(parts) == 1, f"{len(parts)} parts"
            src = data.ds[sop].PixelData
            assert parts[0] == src, f"{short(sop)}: {len(parts[0])} bytes vs {len(src)} sent"
        return f"{len(bulk)} PixelData values"

    check("WADO-RS retrieve_bulkdata (PixelData BulkDataURI)")(bulkdata)

    # ---- WADO-RS: rendered -----------------------------------------------------
    def rendered(media_type):
        from PIL import Image
        d = data.ds[one]
        mt = (media_type,) if media_type else None
        img = client.retrieve_instance_rendered(d.StudyInstanceUID, d.SeriesInstanceUID, one, media_types=mt)
        im = Image.open(io.BytesIO(img))
        im.load()
        assert im.size == (d.Columns, d.Rows), f"size {im.size}, expected {(d.Columns, d.Rows)}"
        px = np.asarray(im.convert("L"))
        assert len(np.unique(px)) > 8, f"only {len(np.unique(px))} grey levels"
        return f"{im.format} {im.size[0]}x{im.size[1]}"

    check("WADO-RS retrieve_instance_rendered (default)")(lambda: rendered(None))
    check("WADO-RS retrieve_instance_rendered (image/png)")(lambda: rendered("image/png"))

    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
