"""Training-time augmentation with torchvision.transforms.v2 (TRAIN.AUGMENT, a list of names).

    photometric  brightness, contrast, saturation, hue and channel order (RandomPhotometricDistort)
    zoom_out     the image on a canvas up to 3x its size, filled with the mean colour (RandomZoomOut)
    iou_crop     SSD's crop keeping some object at a sampled IoU (RandomIoUCrop), with the crop's
                 aspect ratio within 10% of the image's
    hflip        a random horizontal flip (TRAIN.USE_FLIPPED already adds a flipped copy of each image)
    vflip        a random vertical flip, and
    rot90        a turn by 0, 90, 180 or 270 degrees, one at random: for images seen from above
                 (aerial, microscopy), which have no up; a quarter turn swaps the image's sides

Every geometric step is v2's own, on tv_tensors.BoundingBoxes; no box geometry is written here.
Our boxes are BoxMode.XYXY (inclusive corners) and v2's "XYXY" is exclusive, so boxes convert
at this boundary in both directions (structures/boxes.py); after the geometric steps v2's
SanitizeBoundingBoxes drops the boxes (and their labels) that the crop left empty, with the same
rule for every transform. Zoom-out and the crop keep the image's aspect ratio (within 10%), so
the aspect-ratio grouping of the batches still pads little. Images without objects skip the crop
(it needs an object to aim at) and go through the rest. The randomness of each image comes from
its per-image seed (data/sampler.py image_seed), so a resumed run draws exactly the same.

Shapes: (h, w, 3) uint8 images, G boxes (G, 4), labels (G,).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..structures.boxes import BoxMode

AUGMENTATIONS = ("photometric", "zoom_out", "iou_crop", "hflip", "vflip", "rot90")
MEAN_COLOUR = (124, 116, 104)  # ImageNet's mean RGB: zoom-out's canvas adds no edge of its own
ASPECT_TOLERANCE = 1.1


class Augment:
    """Args:
    names: the transforms to apply, in this order, each from AUGMENTATIONS.
    """

    def __init__(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"TRAIN.AUGMENT: unknown {unknown}; choose from {list(AUGMENTATIONS)}")
        self.names = list(names)

    def __bool__(self) -> bool:
        return bool(self.names)

    def _steps(self, height: int, width: int, has_boxes: bool) -> v2.Compose:
        steps: list[v2.Transform] = []
        for name in self.names:
            if name == "photometric":
                steps.append(v2.RandomPhotometricDistort(p=0.5))
            elif name == "zoom_out":
                steps.append(v2.RandomZoomOut(fill=MEAN_COLOUR, side_range=(1.0, 3.0), p=0.5))
            elif name == "iou_crop" and has_boxes:
                aspect = width / height
                steps.append(
                    v2.RandomIoUCrop(
                        min_aspect_ratio=aspect / ASPECT_TOLERANCE, max_aspect_ratio=aspect * ASPECT_TOLERANCE
                    )
                )
            elif name == "hflip":
                steps.append(v2.RandomHorizontalFlip(p=0.5))
            elif name == "vflip":
                steps.append(v2.RandomVerticalFlip(p=0.5))
            elif name == "rot90":  # exact turns: v2 moves the pixels and boxes without interpolation
                turns = [v2.RandomRotation((angle, angle), expand=True) for angle in (90, 180, 270)]
                steps.append(v2.RandomChoice([v2.Identity(), *turns]))
        return v2.Compose([*steps, v2.SanitizeBoundingBoxes()])

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The augmented image, its boxes (BoxMode.XYXY, float32) and their labels."""
        height, width = image.shape[:2]
        exclusive = BoxMode.convert(
            torch.from_numpy(np.asarray(boxes, np.float32)), BoxMode.XYXY, BoxMode.XYXY_EXCLUSIVE
        )
        sample = {
            "image": tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)),
            "boxes": tv_tensors.BoundingBoxes(exclusive.reshape(-1, 4), format="XYXY", canvas_size=(height, width)),
            "labels": torch.from_numpy(np.asarray(labels, np.int64)),
        }
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self._steps(height, width, bool((sample["labels"] > 0).any()))(sample)  # objects, not ignore regions
        inclusive = BoxMode.convert(out["boxes"].as_subclass(torch.Tensor), BoxMode.XYXY_EXCLUSIVE, BoxMode.XYXY)
        return out["image"].permute(1, 2, 0).numpy(), inclusive.numpy().astype(np.float32), out["labels"].numpy()
