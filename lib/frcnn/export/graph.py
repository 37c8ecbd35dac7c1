"""The detector's inference on one image as one traceable function: the resized image and its
scale in, final detections out, with no shape read back as a Python number, so that torch.export
keeps the image's height and width symbolic and ONNX export gets dynamic sizes.

It runs the model's own parts (normalisation, backbone, RegionProposalNetwork.propose_one,
RoIHeads.detect_one); for one image its detections equal FasterRCNN.forward's.

Shapes: (H, W) the resized image's size; D detections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.loader import SIZE_DIVISIBILITY
from ..modeling import FasterRCNN
from ..modeling.poolers.roi_pool import RoIPooler

ONNX_POOLING_MODES = ("pool", "align", "crop")  # deform's bin offsets have no ONNX operator


class DetectionGraph(nn.Module):
    """Args:
    model: the FasterRCNN, in eval mode; its pooling mode must be one of ONNX_POOLING_MODES.
    """

    def __init__(self, model: FasterRCNN) -> None:
        super().__init__()
        modes = sorted({m.mode for m in model.modules() if isinstance(m, RoIPooler)})
        unsupported = [mode for mode in modes if mode not in ONNX_POOLING_MODES]
        if unsupported:
            raise ValueError(
                f"POOLING_MODE {unsupported[0]} cannot be exported: ONNX has no operator for it "
                f"(exportable modes: {', '.join(ONNX_POOLING_MODES)})"
            )
        self.model = model.eval()
        self.eval()

    def forward(self, image: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """image (1, 3, H, W) float RGB in 0..255, resized as the model expects (see
        onnx_runtime.resize_for_model); scale (2,) the x and y factors it was resized by.

        Returns boxes (D, 4) BoxMode.XYXY in original-image pixels, scores (D,) and labels (D,)
        int64, best first.
        """
        model = self.model
        h, w = image.shape[-2:]
        sizes = torch.tensor([[h, w]], device=image.device)
        # Padded as the data loader pads a batch (and torchvision's transform its resized one).
        padded = F.pad(image, (0, (-w) % SIZE_DIVISIBILITY, 0, (-h) % SIZE_DIVISIBILITY))
        features = model.backbone(model.normalize(padded, sizes))
        input_size = (padded.shape[-2], padded.shape[-1])
        proposals = model.rpn.propose_one(features, sizes, scale[:1], input_size)
        boxes, scores, labels = model.roi_heads.detect_one(features, proposals, sizes)
        return model.convention.from_model(boxes / scale.repeat(2)), scores, labels
