"""Training-time variation of prepared slices: what differs between real scans, not what changes the finding.

Left-right flips (a bleed can be on either side), small rotations, shifts and zooms (head position and crop),
window contrast, brightness and gamma (scanners and exports differ), and a little noise.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional

MAX_ROTATION_DEGREES = 12.0
MAX_SHIFT = 0.06  # of the image side
ZOOM = (0.9, 1.1)
CONTRAST = (0.8, 1.25)
BRIGHTNESS = 0.08
GAMMA = (0.8, 1.25)
NOISE = 0.02


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A randomly varied copy of a batch of prepared slices (N, 3, S, S) in the same [-1, 1] scale."""
    count = batch.shape[0]
    grey = (batch[:, :1] + 1.0) / 2.0  # the three channels are equal
    angle = _uniform(count, -MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES, generator) * math.pi / 180
    zoom = _uniform(count, *ZOOM, generator)
    flip = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    shift = _uniform(2 * count, -2 * MAX_SHIFT, 2 * MAX_SHIFT, generator).view(count, 2)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], dim=1), torch.stack([sin * flip, cos, shift[:, 1]], dim=1)],
        dim=1,
    )
    grid = functional.affine_grid(theta, list(grey.shape), align_corners=False)
    grey = functional.grid_sample(grey, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gamma = _uniform(count, *GAMMA, generator).view(count, 1, 1, 1)
    contrast = _uniform(count, *CONTRAST, generator).view(count, 1, 1, 1)
    brightness = _uniform(count, -BRIGHTNESS, BRIGHTNESS, generator).view(count, 1, 1, 1)
    grey = (grey.clamp(0.0, 1.0) ** gamma - 0.5) * contrast + 0.5 + brightness
    grey = grey + NOISE * torch.randn(grey.shape, generator=generator)
    return (grey.clamp(0.0, 1.0) * 2.0 - 1.0).expand(-1, 3, -1, -1).contiguous()
