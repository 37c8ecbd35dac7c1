"""The built-in shapes data with one class made rare: a dataset with uneven classes, for measuring
per-class score thresholds (test_net.py --threshold_rule) against one threshold for all.

    python -m tools.rare_class --rare star --keep 0.1 --out data/shapes_rare.yaml
    python trainval_net.py --dataset data/shapes_rare.yaml --net tiny ...
    python test_net.py --dataset data/shapes_rare.yaml --net tiny --checkepoch 4 --threshold_rule f1

Every split keeps only `keep` of the images that hold the rare class (drawn with --seed), so the
class is as rare in the val and test images as in training; `--val` of the trainval images
(drawn first, before thinning) become the val split, on which the thresholds are chosen. The
images and annotations are the shapes dataset's own: only the split lists (beside its own, as
ImageSets/Main/rare_<class>_<split>.txt) and a dataset YAML pointing at it are written, with the
built-in dataset's own scales and RPN settings as its `config:` (without them a dataset YAML trains
at PASCAL VOC's 600 px, 5.5 times the pixels of the built-in 256 px, for no gain on these images).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from frcnn.data.datasets.base import ImageRecord
from frcnn.data.datasets.factory import SHAPES_PROFILE
from frcnn.data.datasets.shapes import SHAPES_CLASSES, ShapesDataset


def thinned(records: Sequence[ImageRecord], label: int, keep: float, rng: np.random.Generator) -> list[str]:
    """The ids of `records` without (1 - keep) of those holding class `label`, drawn by `rng`."""
    holds = np.array([label in r.labels for r in records], bool)
    kept = ~holds | (rng.random(len(records)) < keep)
    return [str(r.id) for r, k in zip(records, kept) if k]


def write_rare_split(root: Path, out: Path, rare: str, keep: float, val: int, seed: int = 0) -> dict[str, list[str]]:
    """Writes root/ImageSets/Main/rare_<rare>_{train,val,test}.txt and the dataset YAML `out`
    naming them; returns the split lists."""
    if rare not in SHAPES_CLASSES:
        raise SystemExit(f"--rare is one of {list(SHAPES_CLASSES)}; got {rare!r}")
    label = SHAPES_CLASSES.index(rare) + 1
    rng = np.random.default_rng(seed)
    trainval = ShapesDataset("trainval", root).records
    order = rng.permutation(len(trainval))
    held = [trainval[i] for i in order[:val]]
    rest = [trainval[i] for i in sorted(order[val:])]
    test = ShapesDataset("test", root).records
    splits = {
        name: thinned(records, label, keep, rng) for name, records in (("train", rest), ("val", held), ("test", test))
    }
    names = {name: f"rare_{rare}_{name}" for name in splits}
    for name, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{names[name]}.txt").write_text("".join(f"{i}\n" for i in ids))
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = {"format": "voc", "root": str(root.resolve()), **names}  # train, val, test
    spec |= {"classes": list(SHAPES_CLASSES), "tiles": 0, "config": {k: SHAPES_PROFILE[k] for k in ("TRAIN", "TEST")}}
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return splits


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default="data/shapes", help="the shapes dataset (generated there if missing)")
    p.add_argument("--rare", default="star", help="the class made rare")
    p.add_argument("--keep", type=float, default=0.1, help="share of the rare class's images kept in every split")
    p.add_argument("--val", type=int, default=200, help="trainval images set apart as the val split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="data/shapes_rare.yaml", help="the dataset YAML written")
    args = p.parse_args(argv)
    splits = write_rare_split(Path(args.root), Path(args.out), args.rare, args.keep, args.val, args.seed)
    print(", ".join(f"{name} {len(ids)} images" for name, ids in splits.items()), f"-> {args.out}")


if __name__ == "__main__":
    main()
