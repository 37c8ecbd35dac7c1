"""VOC XML annotations and ImageSets lists, fuzzed: read, checked and evaluated, or one clean
error naming the file."""

from __future__ import annotations

import copy
import functools
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import good_image
from fuzzing import (
    NASTY,
    environment_unchanged,
    fast,
    files_under,
    mutated_bytes,
    read_check_evaluate,
    slow,
)
from hypothesis import given
from hypothesis import strategies as st

from frcnn.data.datasets.pascal_voc import VOCFormatDataset

CLASSES = ("circle", "square")
IDS = ("a", "b", "c")
VALID_XML = """<annotation><filename>a.jpg</filename>
<size><width>80</width><height>60</height><depth>3</depth></size>
<object><name>circle</name><difficult>0</difficult>
<bndbox><xmin>11</xmin><ymin>11</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>
<object><name>square</name><difficult>1</difficult>
<bndbox><xmin>41.5</xmin><ymin>21</ymin><xmax>70</xmax><ymax>50</ymax></bndbox></object>
<object><name>square</name><pose>Left</pose><truncated>1</truncated>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>80</xmax><ymax>60</ymax></bndbox></object>
</annotation>"""
# A billion laughs: expat refuses the expansion rather than filling the memory.
BOMB = (
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
    + "]><annotation><object><name>&i;</name></object></annotation>"
)
TEXTS = tuple(str(v) for v in NASTY if isinstance(v, (str, int, float)) and "\ud800" not in str(v))


@functools.cache
def dataset_folder() -> Path:
    root = Path(tempfile.mkdtemp(prefix="fuzz_voc_")) / "VOC"
    (root / "JPEGImages").mkdir(parents=True)
    for image_id in IDS:
        good_image(root / "JPEGImages" / f"{image_id}.jpg")
    good_image(root.parent / "outside.jpg")
    return root


@st.composite
def mutated_xml(draw: st.DrawFn) -> bytes:
    """VALID_XML with elements deleted, duplicated, renamed or given nasty text."""
    tree = ET.fromstring(VALID_XML)
    for _ in range(draw(st.integers(1, 4))):
        elements = list(tree.iter())
        element = draw(st.sampled_from(elements))
        operation = draw(st.sampled_from(("text", "text", "delete", "duplicate", "rename")))
        parent = next((p for p in elements if element in list(p)), None)
        if operation == "text":
            element.text = draw(st.sampled_from(TEXTS))
        elif operation == "delete" and parent is not None:
            parent.remove(element)
        elif operation == "duplicate" and parent is not None:
            parent.append(copy.deepcopy(element))
        elif operation == "rename":
            element.tag = draw(st.sampled_from(("object", "name", "bndbox", "size", "xmin", "difficult", "junk")))
    return ET.tostring(tree)


def split_files():
    names = st.sampled_from((*IDS, "../../outside", "../JPEGImages/a", "missing", "a\x00b", "x" * 300, "é", " "))
    lines = st.lists(names, min_size=0, max_size=6).map(lambda ids: ("\n".join(ids) + "\n").encode())
    return st.one_of(lines, lines, mutated_bytes("\n".join(IDS).encode()))


def cases():
    xml = st.one_of(mutated_xml(), mutated_xml(), mutated_bytes(VALID_XML.encode()), st.just(BOMB.encode()))
    valid_split = st.just("\n".join(IDS).encode())
    return st.tuples(xml, st.sampled_from(IDS), st.one_of(valid_split, valid_split, valid_split, split_files()))


def check(case: tuple[bytes, str, bytes]) -> None:
    xml, which, split = case
    images = dataset_folder()
    before = files_under(images.parent)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "VOC"
        shutil.copytree(images, root, symlinks=True)
        (root / "Annotations").mkdir()
        for image_id in IDS:
            (root / "Annotations" / f"{image_id}.xml").write_text(VALID_XML)
        (root / "Annotations" / f"{which}.xml").write_bytes(xml)
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "test.txt").write_bytes(split)
        dataset = VOCFormatDataset("fuzz_test", root, "test", CLASSES)
        read_check_evaluate(dataset, [root / "ImageSets"], ("voc", "voc07", "coco"))
    environment_unchanged(images.parent, before)


@fast(250)
@given(cases())
def test_voc_xml(case):
    check(case)


@pytest.mark.slow
@slow()
@given(cases())
def test_voc_xml_many(case):
    check(case)
