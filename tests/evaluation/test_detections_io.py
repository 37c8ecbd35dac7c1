"""test_net.py --detections FILE: a results file is read into detections per record, or refused
in one line that names the file and the entry."""

import json

import pytest

from frcnn.data.datasets.base import ImageRecord
from frcnn.evaluation.detections_io import DetectionsFileError, from_results, load_results

RECORDS = [ImageRecord(1, "a.jpg", 80, 60), ImageRecord(2, "b.jpg", 80, 60)]
LABELS = {"circle": 1, "square": 2}.get
GOOD = {"image_id": 2, "category_id": "square", "bbox": [10, 20, 30, 40], "score": 0.75}


def test_a_results_file_reads_into_detections_per_record(tmp_path):
    (tmp_path / "dets.json").write_text(json.dumps([GOOD]))
    first, second = from_results(load_results(tmp_path / "dets.json"), RECORDS, LABELS, source=tmp_path / "dets.json")
    assert len(first["boxes"]) == 0
    assert second["boxes"].tolist() == [[10, 20, 39, 59]] and second["labels"].tolist() == [2]
    assert second["scores"].tolist() == pytest.approx([0.75])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_id": [2]}, "image_id should be a number or a name; got [2]"),  # was TypeError: unhashable
        ({"category_id": {"a": 1}}, "category_id should be a number or a name"),
        ({"bbox": [float("nan"), 20, 30, 40]}, "bbox should be 4 finite numbers"),  # was accepted
        ({"score": float("nan")}, "score a finite number"),  # was accepted
        ({"score": float("inf")}, "score a finite number"),
        ({"bbox": [10, 20, -30, 40]}, "w, h >= 0"),
        ({"bbox": [10**400, 20, 30, 40]}, "bbox should be 4 finite numbers"),
        ({"bbox": [10, 20, 30]}, "bbox should be 4 finite numbers"),
        ({"image_id": 9}, "image_id 9 is not in the dataset"),
    ],
)
def test_an_entry_of_the_wrong_form_is_one_line_naming_the_file(tmp_path, change, message):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([GOOD, {**GOOD, **change}]))  # NaN and Infinity as JSON tools write them
    with pytest.raises(DetectionsFileError, match="detection 1") as info:
        from_results(load_results(path), RECORDS, LABELS, source=path)
    assert message in str(info.value) and str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe\x00garbage", b"[" * 100000, b'{"a": 1}'])
def test_a_file_that_is_no_json_list_is_one_line(tmp_path, data):
    (tmp_path / "dets.json").write_bytes(data)
    with pytest.raises(DetectionsFileError) as info:
        load_results(tmp_path / "dets.json")
    assert str(info.value).startswith(str(tmp_path / "dets.json")) and "\n" not in str(info.value)
