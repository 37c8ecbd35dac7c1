"""Visual Genome as the bottom-up-attention preprocessing leaves it.

Layout (data_dir = data):
    genome/<version>/objects_vocab.txt   one class per line, synonyms after commas ("man,men")
    genome/<split>.txt                   "<image path> <xml path>" per line, relative to data/vg
                                         and data/genome; the XML's stem is the image id
    genome/xml/<id>.xml                  VOC-style XML, 0-based boxes
    vg/<image path>                      the images
The version (e.g. 1600-400-20: 1600 object classes) picks the vocabulary; every synonym maps to
its line's first name. Images with no object of the vocabulary are left out, as in the original.
"""

from __future__ import annotations

from pathlib import Path

from .base import DetectionDataset, ImageRecord
from .pascal_voc import read_or_skip

DEFAULT_VERSION = "1600-400-20"


def read_vocabulary(path: Path) -> tuple[list[str], dict[str, int]]:
    """Class names (first name of each line) and a map from every synonym to its label."""
    if not path.is_file():
        raise FileNotFoundError(f"Visual Genome vocabulary not found: {path}")
    classes, index = [], {}
    for line in path.read_text().splitlines():
        names = [n.strip().lower() for n in line.split(",") if n.strip()]
        if not names:
            continue
        classes.append(names[0])
        for name in names:
            index.setdefault(name, len(classes))
    return classes, index


class VisualGenome(DetectionDataset):
    """Args:
    split: train, val or test (genome/<split>.txt).
    version: vocabulary version (genome/<version>/objects_vocab.txt).
    data_dir: the folder holding genome/ and vg/.
    """

    def __init__(self, split: str, version: str = DEFAULT_VERSION, data_dir: str | Path = "data") -> None:
        self.data_dir = Path(data_dir)
        self.split = split
        self.version = version
        classes, self.synonyms = read_vocabulary(self.data_dir / "genome" / version / "objects_vocab.txt")
        super().__init__(f"vg_{version}_{split}", classes, metric="voc")

    def _load_records(self) -> list[ImageRecord]:
        split_file = self.data_dir / "genome" / f"{self.split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(f"{self.name}: split file not found: {split_file}")
        records = []
        for line in split_file.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            image_id = Path(parts[1]).stem
            xml = self.data_dir / "genome" / "xml" / f"{image_id}.xml"
            if not xml.is_file():  # images whose objects were all filtered out have no XML
                continue
            record = read_or_skip(
                self,
                self.data_dir,
                xml,
                image_id,
                self.data_dir / "vg" / parts[0],
                self.synonyms,
                one_based=False,
                lowercase=True,
            )
            if record is not None and len(record.labels):
                records.append(record)
        return records
