"""Mixed precision (--amp): bfloat16 autocast where the device supports it, else float16 with a
gradient scaler. Box decoding, losses and NMS cast to float32 themselves (box_coder, rpn,
roi_heads), so only the convolutions and matrix products run in half precision.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass
class Precision:
    """How a step runs: dtype None is full float32."""

    device_type: str
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def for_device(cls, device: torch.device, amp: bool) -> Precision:
        if not amp:
            return cls(device.type)
        if device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                return cls("cuda", torch.bfloat16)
            return cls("cuda", torch.float16, torch.amp.GradScaler("cuda"))
        return cls(device.type, torch.bfloat16)  # CPU autocast runs in bfloat16

    def describe(self) -> str:
        if self.dtype is None:
            return "float32"
        return f"{str(self.dtype).removeprefix('torch.')} autocast on {self.device_type}" + (
            " with gradient scaling" if self.scaler else ""
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
