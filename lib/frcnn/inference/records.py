"""Running a detector over a dataset split's records: in batches through the loader, and shared
out across processes."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..data.datasets.base import ImageRecord
from ..data.loader import RoidbDataset, collate, read_image
from ..runs import distributed
from ..runs.distributed import World
from .onnx_detector import OnnxDetector
from .slicing import detect_sliced, own_tiling
from .torch_detector import Detector, loader_resizes
from .tta import Augmented, parse_tta


@torch.no_grad()
def detect_records(
    detector: Detector | OnnxDetector,
    records: Sequence[ImageRecord],
    batch_size: int = 1,
    num_workers: int = 0,
    progress: bool = True,
    tile: int | None = None,
    overlap: float | None = None,
    tta: str | None = None,
) -> list[dict[str, np.ndarray]]:
    """Detections for every record of a dataset split, in record order. With tiles (`tile`, or
    with None the model's own: slicing.own_tiling), each whole image in overlapping tiles
    (slicing.detect_sliced, `batch_size` tiles per pass); with `tta` (tta.py) each image's
    augmented passes merged; an OnnxDetector, or augmented passes, take the images one at a time."""
    tile, overlap = own_tiling(detector, tile, overlap)
    if tta:
        detector = Augmented(detector, parse_tta(tta))
    if tile is not None or not isinstance(detector, Detector):
        bar = tqdm(records, desc="detect", unit="img", file=sys.stderr, disable=not progress, mininterval=30.0)
        if tile is None:
            return [detector.detect_arrays([read_image(str(record.path))])[0] for record in bar]
        return [detect_sliced(detector, read_image(str(r.path)), tile, overlap, batch_size=batch_size) for r in bar]
    cfg = detector.cfg.TEST
    dataset = RoidbDataset(records, cfg.SCALES, cfg.MAX_SIZE, resize=loader_resizes(detector))
    batches = [list(range(i, min(i + batch_size, len(records)))) for i in range(0, len(records), batch_size)]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=collate)
    results: list[dict[str, np.ndarray]] = []
    with tqdm(
        total=len(records),
        desc="detect",
        unit="img",
        file=sys.stderr,
        disable=not progress,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    ) as bar:
        for batch in loader:
            batch = batch.to(detector.device)
            outputs = detector.model(batch.images, batch.image_sizes, batch.image_scales)
            results += [{k: v.cpu().numpy() for k, v in out.items()} for out in outputs]
            bar.update(len(batch.indices))
    return results


def detect_sharded(
    detector: Detector | OnnxDetector,
    records: Sequence[ImageRecord],
    world: World,
    batch_size: int = 1,
    num_workers: int = 0,
    tile: int | None = None,
    overlap: float | None = None,
    tta: str | None = None,
) -> list[dict[str, np.ndarray]] | None:
    """detect_records across processes: each detects every world_size-th image; rank 0 gets them
    all, in record order, and the others None."""
    mine = list(range(world.rank, len(records), world.world_size))
    shard = [records[i] for i in mine]
    found = detect_records(detector, shard, batch_size, num_workers, world.is_main, tile, overlap, tta)
    gathered = distributed.gather_to_main(list(zip(mine, found)))
    return None if gathered is None else [det for _, det in sorted(gathered, key=lambda pair: pair[0])]
