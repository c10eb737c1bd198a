"""Independent check of a Glia DICOM SEG with highdicom (tests/ai_seg.rs).

Usage: seg_check.py SEG.dcm EXPECTED.json LABELS.u8

EXPECTED.json: {"source_uids": [SOPInstanceUID per reference slice, in slice
order], "rows": R, "cols": C, "frames": N, "labels": [1, 2, 4]}; LABELS.u8:
the reference-grid labels, slices x rows x cols, one byte each. Prints one
JSON object: what highdicom read (segments and codes, frame count, voxels
per segment) and whether its decoded mask equals the expected one.
"""

import json
import sys

import highdicom as hd
import numpy as np


def main():
    seg_path, expected_path, labels_path = sys.argv[1:4]
    with open(expected_path) as f:
        exp = json.load(f)
    uids = exp["source_uids"]
    labels = np.fromfile(labels_path, dtype=np.uint8).reshape(len(uids), exp["rows"], exp["cols"])

    seg = hd.seg.segread(seg_path)
    segments = []
    for item in seg.SegmentSequence:
        cat = item.SegmentedPropertyCategoryCodeSequence[0]
        typ = item.SegmentedPropertyTypeCodeSequence[0]
        segments.append(
            {
                "number": int(item.SegmentNumber),
                "label": str(item.SegmentLabel),
                "category": [str(cat.CodeValue), str(cat.CodingSchemeDesignator)],
                "type": [str(typ.CodeValue), str(typ.CodingSchemeDesignator), str(typ.CodeMeaning)],
                "algorithm_type": str(item.SegmentAlgorithmType),
            }
        )
    numbers = [s["number"] for s in segments]
    mask = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=numbers,
        assert_missing_frames_are_empty=True,
    )
    # mask: (slices, rows, cols, segments)
    voxels = [int(mask[..., i].astype(bool).sum()) for i in range(len(numbers))]
    expected_voxels = [int((labels == v).sum()) for v in exp["labels"]]
    equal = all(
        np.array_equal(mask[..., i].astype(bool), labels == v) for i, v in enumerate(exp["labels"])
    )
    out = {
        "sop_class": str(seg.SOPClassUID),
        "segmentation_type": str(seg.SegmentationType),
        "frames": int(seg.NumberOfFrames),
        "segments": segments,
        "voxels": voxels,
        "expected_voxels": expected_voxels,
        "mask_equal": bool(equal),
        "referenced_series": [str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
