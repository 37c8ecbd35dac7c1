"""How far a trained POOLING_MODE deform model moves its bins, on the test split's images.

    python -m tools.deform_offsets --load_name models/tiny/shapes/faster_rcnn_1_4_600.pth [--images 100]

Prints the mean size of the normalised offsets (fractions of the RoI's width and height, before
gamma) and of the shifts they make in input pixels (gamma x offset x RoI size), over every bin of
every RoI the detector pools at test time.
"""

from __future__ import annotations

import argparse

import torch

from frcnn.data.datasets.factory import dataset_spec
from frcnn.inference.records import detect_records
from frcnn.inference.torch_detector import load_detector
from frcnn.modeling.poolers.deform_roi_pool import roi_extent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--load_name", required=True)
    p.add_argument("--dataset", default="shapes")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--images", type=int, default=100)
    args = p.parse_args()
    detector = load_detector(args.load_name)
    deform = detector.model.roi_heads.pooler.deform
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(module, inputs, output):  # the RoIs and the offsets of each forward
        seen.append((inputs[1].detach(), module.last_offsets))

    deform.register_forward_hook(record)
    records = dataset_spec(args.dataset, args.data_dir).test().records[: args.images]
    detect_records(detector, records, progress=False)
    normalised = torch.cat([o.abs().flatten() for _, o in seen])
    pixels = []
    for rois, offsets in seen:
        _, size = roi_extent(rois.float(), deform.spatial_scale)  # feature cells, (x, y)
        shift = deform.gamma * offsets * size[:, :, None, None] / deform.spatial_scale
        pixels.append(shift.norm(dim=1).flatten())
    pixels_all = torch.cat(pixels)
    print(f"{len(records)} images, {sum(len(r) for r, _ in seen)} RoIs, {pixels_all.numel()} bins")
    zero = bool((normalised == 0).all())
    print(f"mean |normalised offset| {normalised.mean():.4f} (max {normalised.max():.3f}); all zero: {zero}")
    median, top = pixels_all.median(), pixels_all.quantile(0.95)
    print(f"mean shift {pixels_all.mean():.2f} px (median {median:.2f}, 95th percentile {top:.2f})")


if __name__ == "__main__":
    main()
