"""tools/detection_agreement: the score and box distance between two detections files, by hand."""

from __future__ import annotations

import json
import math

from tools.detection_agreement import agreement, main


def det(image, box, score, category="tree"):
    return {"image_id": image, "category_id": category, "bbox": box, "score": score}


REFERENCE = [
    det("a", [0, 0, 10, 10], 0.9),  # matched exactly, score 0.8: difference 0.1
    det("a", [20, 0, 10, 10], 0.5),  # best match shifted by 5 px: IoU 50/150 = 1/3 < 0.5, lost: 0.5
    det("b", [0, 0, 10, 10], 0.6),  # only a detection of another class there: lost, 0.6
    det("b", [50, 50, 10, 10], 0.2),  # under min_score: not compared
]
OTHER = [
    det("a", [0, 0, 10, 10], 0.8),
    det("a", [25, 0, 10, 10], 0.5),
    det("b", [0, 0, 10, 10], 0.6, category="bush"),
]


def test_hand_computed_distances():
    a = agreement(REFERENCE, OTHER, min_score=0.3, iou=0.5)
    assert a["detections"] == 3
    assert math.isclose(a["mean_score_difference"], (0.1 + 0.5 + 0.6) / 3)
    assert math.isclose(a["median_iou"], 1 / 3)  # IoUs 1, 1/3 and 0 (no candidate)
    assert math.isclose(a["iou_above_0.9"], 1 / 3)


def test_a_file_against_itself_is_at_distance_zero(tmp_path, capsys):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(REFERENCE))
    main([str(path), str(path)])
    assert (
        capsys.readouterr().out.strip()
        == "3 detections: mean score difference 0.0000, median IoU 1.000, IoU above 0.9 for 100.0%"
    )
