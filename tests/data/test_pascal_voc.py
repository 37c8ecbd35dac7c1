from pathlib import Path

import cv2
import numpy as np

from frcnn.data.datasets.pascal_voc import VOCFormatDataset, write_voc_annotation


def make_voc(root: Path, annotations: dict[str, str], size=(40, 60)) -> None:
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, xml in annotations.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), np.zeros((*size, 3), np.uint8))
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(annotations) + "\n")


WILD_XML = """<annotation>
  <size><width>60</width><height>40</height></size>
  <object><name>dog</name><difficult/><bndbox><xmin>1.5</xmin><ymin>1</ymin><xmax>30.7</xmax><ymax>20</ymax></bndbox></object>
  <object><name>cat</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></object>
  <object><name>unicorn</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
  <object><name> cat </name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>12</xmax><ymax>12</ymax></bndbox></object>
</annotation>"""


def test_voc_xml_in_the_wild(tmp_path):
    make_voc(tmp_path, {"a": WILD_XML})
    ds = VOCFormatDataset("t", tmp_path, "trainval", ("cat", "dog"))
    (record,) = ds.records
    assert (record.width, record.height) == (60, 40)
    # 1-based inclusive -> 0-based; floats kept; a 1 coordinate becomes 0, not 65535
    assert record.boxes.tolist() == [
        [0.5, 0.0, 29.700000762939453, 19.0],
        [0.0, 1.0, 59.0, 39.0],
        [9.0, 9.0, 11.0, 11.0],
    ]
    assert record.boxes.dtype == np.float32
    assert record.labels.tolist() == [2, 1, 1]  # unknown class skipped, names stripped
    assert record.difficult.tolist() == [False, True, False]  # empty <difficult/> is 0


def test_missing_size_is_read_from_the_image(tmp_path):
    make_voc(
        tmp_path,
        {
            "b": "<annotation><object><name>cat</name>"
            "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>"
        },
        size=(33, 44),
    )
    (record,) = VOCFormatDataset("t", tmp_path, "trainval", ("cat",)).records
    assert (record.width, record.height) == (44, 33)


def test_written_annotation_reads_back(tmp_path):
    make_voc(tmp_path, {"c": ""})
    write_voc_annotation(
        tmp_path / "Annotations" / "c.xml",
        "c.jpg",
        60,
        40,
        [("cat", [0, 0, 59, 39], False), ("dog", [3, 4, 10, 12], True)],
    )
    (record,) = VOCFormatDataset("t", tmp_path, "trainval", ("cat", "dog")).records
    assert record.boxes.tolist() == [[0, 0, 59, 39], [3, 4, 10, 12]]
    assert record.difficult.tolist() == [False, True]
