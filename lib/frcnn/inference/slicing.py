"""Sliced inference for images much larger than the objects in them (orthomosaics, slides): the
image is cut into overlapping tiles (data/tiling.py), each tile is detected at the detector's own
input scale, the boxes are moved back into the image, and the detections of neighbouring tiles are
merged. It reproduces SAHI's `get_sliced_prediction` (tests/inference/test_slicing.py checks it
against SAHI 0.12.8): the same windows, the same optional whole-image pass, and SAHI's merges:

    greedy_nmm  (SAHI's GREEDYNMM, its default) in score order, each box not yet taken takes every
                later box of its class that matches it (IOS or IOU >= match_threshold); the group
                becomes one box: the union of the boxes, the highest score, the label of the best.
                Each taken box is checked again against the group's box as it grows, and dropped if
                it no longer matches (as SAHI does).
    nms         class-wise non-maximum suppression with the same match.

IOS is the intersection over the smaller box's area: a box cut by a tile's edge lies mostly
inside the whole one that the next tile sees, so IOS matches the two where IOU would not. SAHI
measures boxes with exclusive corners; here they are inclusive (BoxMode.XYXY), so they are
converted for the measure (width x2 - x1 + 1 either way) and back for the result. As in SAHI, the
grouping compares float32 measures and the re-check against a growing box float64 ones.

Any detector with `detect_arrays(list of RGB uint8 arrays) -> list of {boxes (D, 4) BoxMode.XYXY
in that array's pixels, scores (D,), labels (D,)}` works: both runtimes have it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
from tqdm import tqdm

from ..data.tiling import Window, tile_windows
from ..structures import BoxMode

MERGES = ("greedy_nmm", "nms")
MATCH_METRICS = ("ios", "iou")
PAIR_BUDGET = 1 << 22  # candidate pairs measured at once: bounds memory on crowded scenes


class ArrayDetector(Protocol):
    def detect_arrays(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]: ...


def detect_sliced(
    detector: ArrayDetector,
    image: np.ndarray,
    tile: int,
    overlap: float = 0.2,
    merge: str = "greedy_nmm",
    match_metric: str = "ios",
    match_threshold: float = 0.5,
    whole_image: bool = False,
    batch_size: int = 4,
    class_agnostic: bool = False,
    progress: bool = False,
    threshold: float = 0.0,
) -> dict[str, np.ndarray]:
    """Detections of an RGB uint8 image (h, w, 3) detected tile by tile.

    tile, overlap: square tiles of `tile` pixels overlapping by `int(overlap * tile)` (tile_windows).
    merge, match_metric, match_threshold, class_agnostic: how detections of overlapping tiles are
        merged (module docstring); class_agnostic merges across classes (the best box's label wins).
    whole_image: also detect the whole image, resized to the detector's input, and merge its boxes
        in (SAHI's perform_standard_pred; it finds objects larger than a tile); skipped when one
        tile covers the image.
    batch_size: tiles per detect_arrays call. progress: a tqdm bar of tiles on stderr.
    threshold: boxes scoring below it are dropped before merging (SAHI's confidence_threshold).

    Returns {boxes (D, 4) float32 BoxMode.XYXY in the image's pixels, scores (D,) float32 best
    first, labels (D,) int64}: what detect_arrays gives for one image.
    """
    merge, match_metric = _checked_merge(merge, match_metric, match_threshold)
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"sliced inference takes an RGB array (h, w, 3); got {getattr(image, 'shape', image)!r}")
    windows = tile_windows(image.shape[0], image.shape[1], tile, overlap)
    parts = tile_detections(detector, image, windows, batch_size, threshold, progress)
    if whole_image and len(windows) > 1:
        parts.append(_above(detector.detect_arrays([image])[0], threshold, (0, 0)))
    boxes = np.concatenate([p["boxes"] for p in parts]).reshape(-1, 4)
    scores = np.concatenate([p["scores"] for p in parts]).astype(np.float32)
    labels = np.concatenate([p["labels"] for p in parts]).astype(np.int64)
    return merge_detections(boxes, scores, labels, merge, match_metric, match_threshold, class_agnostic)


def _checked_merge(merge: str, match_metric: str, match_threshold: float) -> tuple[str, str]:
    """(merge, match_metric) lower-cased, or ValueError naming what is accepted."""
    merge, match_metric = str(merge).lower(), str(match_metric).lower()
    if merge not in MERGES:
        raise ValueError(f"merge is one of {', '.join(MERGES)}; got {merge!r}")
    if match_metric not in MATCH_METRICS:
        raise ValueError(f"match_metric is one of {', '.join(MATCH_METRICS)}; got {match_metric!r}")
    if not 0.0 < match_threshold <= 1.0:
        raise ValueError(f"match_threshold is in (0, 1]; got {match_threshold!r}")
    return merge, match_metric


def tile_detections(
    detector: ArrayDetector,
    image: np.ndarray,
    windows: Sequence[Window],
    batch_size: int = 4,
    threshold: float = 0.0,
    progress: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Each window's detections (score >= threshold) moved into the image's pixels: one dict per
    window, boxes (D, 4) float64 BoxMode.XYXY (x0, y0 added: exact in float64), scores, labels."""
    if batch_size < 1:
        raise ValueError(f"batch_size is at least 1; got {batch_size}")
    found = []
    with tqdm(total=len(windows), desc="tiles", unit="tile", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(windows), batch_size):
            batch = windows[start : start + batch_size]
            crops = [np.ascontiguousarray(image[y0:y1, x0:x1]) for x0, y0, x1, y1 in batch]
            for window, out in zip(batch, detector.detect_arrays(crops)):
                found.append(_above(out, threshold, window[:2]))
            bar.update(len(batch))
    return found


def _above(out: dict[str, np.ndarray], threshold: float, origin: Sequence[int]) -> dict[str, np.ndarray]:
    """A detect_arrays result with scores >= threshold only and boxes shifted by origin (x0, y0)."""
    keep = out["scores"] >= threshold
    shift = np.array([origin[0], origin[1], origin[0], origin[1]], np.float64)
    return {
        "boxes": np.asarray(out["boxes"], np.float64)[keep].reshape(-1, 4) + shift,
        "scores": out["scores"][keep],
        "labels": out["labels"][keep],
    }


def merge_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    merge: str = "greedy_nmm",
    match_metric: str = "ios",
    match_threshold: float = 0.5,
    class_agnostic: bool = False,
) -> dict[str, np.ndarray]:
    """Merge (greedy_nmm) or suppress (nms) matching detections, as SAHI does after slicing.

    boxes: (N, 4) BoxMode.XYXY; scores (N,); labels (N,). Returns {boxes (D, 4) float32,
    scores (D,) float32 best first, labels (D,) int64}.
    """
    merge, match_metric = _checked_merge(merge, match_metric, match_threshold)
    exclusive = BoxMode.convert(np.asarray(boxes, np.float64).reshape(-1, 4), BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE)
    scores, labels = np.asarray(scores, np.float32), np.asarray(labels, np.int64)
    measured = exclusive.astype(np.float32)  # SAHI groups on float32 boxes and scores
    order = np.lexsort((measured[:, 3], measured[:, 2], measured[:, 1], measured[:, 0], -scores))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    groups = None if class_agnostic else labels
    indptr, indices = match_graph(measured, groups, match_metric, match_threshold, rank)
    if merge == "nms":
        keep = suppress(indptr, indices, order)
        out = exclusive[keep], scores[keep], labels[keep]
    else:
        out = merge_groups(
            exclusive, scores, labels, greedy_groups(indptr, indices, order, rank), match_metric, match_threshold
        )
    best_first = np.argsort(-out[1], kind="stable")  # stable: SAHI's order breaks the ties
    inclusive = BoxMode.convert(out[0][best_first], BoxMode.XYXY_EXCLUSIVE, BoxMode.XYXY)
    return {"boxes": inclusive.astype(np.float32), "scores": out[1][best_first], "labels": out[2][best_first]}


def match_graph(
    boxes: np.ndarray, groups: np.ndarray | None, match_metric: str, match_threshold: float, rank: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which boxes match which: row i of the CSR (indptr (N + 1,), indices) lists the boxes j of
    i's group (all when groups is None) with measure(i, j) >= match_threshold, in `rank` order.

    boxes: (N, 4) float32 with exclusive corners (SAHI's); groups: (N,) labels or None.
    Only pairs overlapping along x are measured (a positive threshold needs an intersection), a
    bounded number at a time, so a scene of many tiles does not need an N x N matrix.
    """
    n = len(boxes)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for i, j in x_overlapping_pairs(boxes):
        if groups is not None:
            same = groups[i] == groups[j]
            i, j = i[same], j[same]
        matched = overlap_measure(boxes, areas, i, j, match_metric) >= match_threshold
        rows += [i[matched], j[matched]]
        cols += [j[matched], i[matched]]
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    by_row = np.lexsort((rank[cols], rows))
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols[by_row]


def x_overlapping_pairs(boxes: np.ndarray, budget: int = PAIR_BUDGET) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every pair (i, j) of the (N, 4) exclusive boxes whose x ranges intersect, once each, as
    index arrays of at most about `budget` pairs (a box's own pairs are never split)."""
    n = len(boxes)
    by_x = np.argsort(boxes[:, 0], kind="stable")
    starts = boxes[by_x, 0]
    # the boxes after position p in x order that start before box p ends
    ends = np.searchsorted(starts, boxes[by_x, 2], side="left")
    counts = np.maximum(ends - np.arange(1, n + 1), 0)
    total = np.concatenate([[0], np.cumsum(counts)])
    first = 0
    while first < n:
        last = min(max(int(np.searchsorted(total, total[first] + budget, side="right")) - 1, first + 1), n)
        count = counts[first:last]
        row = np.repeat(np.arange(first, last), count)
        col = row + 1 + np.arange(len(row)) - np.repeat(total[first:last] - total[first], count)
        yield by_x[row], by_x[col]
        first = last


def overlap_measure(
    boxes: np.ndarray, areas: np.ndarray, i: np.ndarray, j: np.ndarray, match_metric: str
) -> np.ndarray:
    """IOU or IOS of the exclusive boxes i[k] and j[k]: (K,) in the boxes' dtype, 0 where the
    denominator is 0. The same operations in the same order as SAHI's, so that the same pairs pass."""
    width = np.maximum(0, np.minimum(boxes[i, 2], boxes[j, 2]) - np.maximum(boxes[i, 0], boxes[j, 0]))
    height = np.maximum(0, np.minimum(boxes[i, 3], boxes[j, 3]) - np.maximum(boxes[i, 1], boxes[j, 1]))
    inter = width * height
    if match_metric == "iou":
        denominator = areas[i] + areas[j] - inter
    else:
        denominator = np.minimum(areas[i], areas[j])
    return np.divide(inter, denominator, out=np.zeros_like(inter), where=denominator > 0)


def suppress(indptr: np.ndarray, indices: np.ndarray, order: np.ndarray) -> np.ndarray:
    """NMS over a match graph: the indices kept, best first (`order`: best first)."""
    suppressed = np.zeros(len(order), bool)
    keep = []
    for idx in order.tolist():
        if not suppressed[idx]:
            keep.append(idx)
            suppressed[indices[indptr[idx] : indptr[idx + 1]]] = True
    return np.array(keep, np.int64)


def greedy_groups(
    indptr: np.ndarray, indices: np.ndarray, order: np.ndarray, rank: np.ndarray
) -> list[tuple[int, np.ndarray]]:
    """SAHI's greedy NMM grouping: in `order` (best first), each box not yet taken keeps and takes
    the later boxes it matches that are not yet taken. [(keeper, taken in order)], best first."""
    suppressed = np.zeros(len(order), bool)
    bounds = indptr.tolist()
    groups = []
    for position, idx in enumerate(order.tolist()):
        if suppressed[idx]:
            continue
        row = indices[bounds[idx] : bounds[idx + 1]]
        row = row[(rank[row] > position) & ~suppressed[row]]
        suppressed[row] = True
        groups.append((idx, row))
    return groups


def merge_groups(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    groups: list[tuple[int, np.ndarray]],
    match_metric: str,
    match_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One box per group, as SAHI merges a pair at a time: the union box, the higher score and the
    label of the higher score (the taken box's on a tie), for each taken box that still matches
    the grown box (float64). boxes: (N, 4) exclusive float64. Returns (G, 4), (G,), (G,)."""
    merged_boxes, merged_scores, merged_labels = [], [], []
    values, score_values, label_values = boxes.tolist(), scores.tolist(), labels.tolist()
    for keeper, taken in groups:
        box, score, label = values[keeper], score_values[keeper], label_values[keeper]
        for other in taken.tolist():
            if _matches(box, values[other], match_metric, match_threshold):
                label = label if score > score_values[other] else label_values[other]
                score = max(score, score_values[other])
                box = [min(box[0], values[other][0]), min(box[1], values[other][1])] + [
                    max(box[2], values[other][2]),
                    max(box[3], values[other][3]),
                ]
        merged_boxes.append(box)
        merged_scores.append(score)
        merged_labels.append(label)
    return (
        np.array(merged_boxes, np.float64).reshape(-1, 4),
        np.array(merged_scores, np.float32),
        np.array(merged_labels, np.int64),
    )


def _matches(a: list[float], b: list[float], match_metric: str, match_threshold: float) -> bool:
    """SAHI's has_match of two exclusive boxes, in float64 (Python floats)."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    denominator = area_a + area_b - inter if match_metric == "iou" else min(area_a, area_b)
    return denominator > 0 and inter / denominator >= match_threshold


def own_tiling(detector: object, tile: int | None, overlap: float | None) -> tuple[int | None, float]:
    """(tile size or None for whole images, overlap): as asked, or with tile=None the tiles the
    detector was trained on (its config's TILES; SIZE 0: none); tile=0 asks for whole images."""
    tiles = getattr(getattr(detector, "cfg", None), "TILES", None)
    if tile is None and tiles and isinstance(tiles.SIZE, int):  # `auto` unresolved: never trained
        tile, overlap = tiles.SIZE, tiles.OVERLAP if overlap is None else overlap
    return (tile or None), (0.2 if overlap is None else overlap)
