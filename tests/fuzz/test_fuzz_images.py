"""Images, fuzzed: every kind the data check meets (JPEG, PNG of 8 and 16 bits, grey, palette,
alpha, CMYK, animated GIF, BMP, 1x1, a 0x0 header, a 20000x20000 header over a few bytes), whole,
truncated or with damaged bytes. The property: the check's verdict is a problem (the image is
skipped, with the reason) or none, and then the loader reads the image, RGB uint8, at the size
the check measured; nothing raises."""

from __future__ import annotations

import functools
import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from fuzzing import fast, mutated_bytes, read_cleanly, slow
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from frcnn.data.datasets.base import ImageRecord
from frcnn.data.loader import read_image
from frcnn.data.validate import check_records, inspect_image


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int, data: bytes = b"") -> bytes:
    """A PNG whose IHDR says width x height (8-bit RGB) over `data` as its pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")


@functools.cache
def originals() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    deep = Image.fromarray(rng.integers(0, 65536, (40, 56), dtype=np.uint16))
    frames = [rgb.convert("P"), rgb.rotate(90).convert("P")]
    turned = Image.Exif()
    turned[0x0112] = 6  # a phone's "rotate 90"
    return {
        "rgb.jpg": pil_bytes(rgb, "JPEG", quality=90),
        "progressive.jpg": pil_bytes(rgb, "JPEG", progressive=True),
        "cmyk.jpg": pil_bytes(rgb.convert("CMYK"), "JPEG"),
        "grey.jpg": pil_bytes(rgb.convert("L"), "JPEG"),
        "turned.jpg": pil_bytes(rgb, "JPEG", exif=turned),  # its EXIF block damaged too
        "rgb.png": pil_bytes(rgb, "PNG"),
        "alpha.png": pil_bytes(rgb.convert("RGBA"), "PNG"),
        "palette.png": pil_bytes(rgb.convert("P"), "PNG"),
        "deep.png": pil_bytes(deep, "PNG"),
        "one.png": pil_bytes(rgb.resize((1, 1)), "PNG"),
        "animated.gif": pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0),
        "rgb.bmp": pil_bytes(rgb, "BMP"),
        "empty.png": png_header_only(0, 0),
        "huge.png": png_header_only(20000, 20000, bytes(3 * 20000)),
    }


def cases():
    names = st.sampled_from(sorted(originals()))
    whole = names.map(lambda n: (n, originals()[n]))
    damaged = names.flatmap(lambda n: st.tuples(st.just(n), mutated_bytes(originals()[n])))
    return st.one_of(whole, damaged, damaged)


def check(case: tuple[str, bytes]) -> None:
    name, data = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        problem, width, height, *_ = inspect_image(str(path))
        if problem is None:
            image = read_image(str(path))
            assert image.dtype == np.uint8 and image.shape == (height, width, 3), (image.shape, width, height)
        record = ImageRecord(1, str(path), 56, 40, np.array([[5, 5, 20, 20]], np.float32), np.array([1]))
        report = read_cleanly(lambda: check_records("fuzz_test", [record], progress=False, num_classes=2), "fuzz_test")
        if not isinstance(report, Exception):
            assert problem is None and len(report.kept) == 1


@fast(500)
@given(cases())
def test_images(case):
    check(case)


@pytest.mark.slow
@slow()
@given(cases())
def test_images_many(case):
    check(case)
