"""ImageNet DET (ILSVRC 2015): 200 classes named by WordNet ids, VOC-style XML per image.

Layout under root (data/imagenet, the ILSVRC2015 folder):
    devkit/data/map_det.txt                  "<wnid> <index> <name>" per class, in label order
    ImageSets/DET/train_<k>.txt, val.txt     image lists ("<id> <1|-1>" / "<id> <n>")
    Annotations/DET/<split>/<id>.xml         boxes in 0-based pixels
    Data/DET/<split>/<id>.JPEG
The training list is every image listed as a positive (1) in train_1 .. train_200.txt, or
ImageSets/DET/train.txt when that file exists. Classes are the WordNet ids; `class_names` maps
them to readable names.
"""

from __future__ import annotations

from pathlib import Path

from .base import DetectionDataset, ImageRecord
from .pascal_voc import read_or_skip


def read_synsets(root: Path) -> list[tuple[str, str]]:
    """(wnid, readable name) per class, in the devkit's order."""
    path = root / "devkit" / "data" / "map_det.txt"
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet DET class map not found: {path}")
    rows = [line.split(maxsplit=2) for line in path.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: int(r[1]))
    return [(r[0].lower(), r[2] if len(r) > 2 else r[0]) for r in rows]


class ImageNetDET(DetectionDataset):
    """Args:
    split: train or val.
    root: the ILSVRC2015 folder (default data/imagenet).
    """

    def __init__(self, split: str, root: str | Path = "data/imagenet") -> None:
        self.root = Path(root)
        self.split = split
        synsets = read_synsets(self.root)
        super().__init__(f"imagenet_det_{split}", [wnid for wnid, _ in synsets], metric="voc")
        self.class_names = dict(synsets)

    def image_ids(self) -> list[str]:
        sets = self.root / "ImageSets" / "DET"
        if self.split == "train" and not (sets / "train.txt").is_file():
            ids: set[str] = set()
            for k in range(1, 201):
                path = sets / f"train_{k}.txt"
                if path.is_file():
                    ids.update(
                        p[0]
                        for p in (line.split() for line in path.read_text().splitlines())
                        if len(p) > 1 and p[1] == "1"
                    )
            if not ids:
                raise FileNotFoundError(f"{self.name}: no train_<k>.txt lists in {sets}")
            return sorted(ids)
        path = sets / f"{self.split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{self.name}: image list not found: {path}")
        return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]

    def _load_records(self) -> list[ImageRecord]:
        index = {wnid: i + 1 for i, wnid in enumerate(self.foreground_classes)}
        ann = self.root / "Annotations" / "DET" / self.split
        data = self.root / "Data" / "DET" / self.split
        records = []
        for image_id in self.image_ids():
            record = read_or_skip(
                self,
                self.root,
                ann / f"{image_id}.xml",
                image_id,
                data / f"{image_id}.JPEG",
                index,
                one_based=False,
                lowercase=True,
            )
            if record is not None:
                records.append(record)
        return records
