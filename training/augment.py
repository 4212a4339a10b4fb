"""Training-time variation of slices: what differs between real scans and exports, not what changes the finding.

The display window of Hounsfield units (sites and viewers differ), left-right flips (a bleed can be on either
side), small rotations, shifts and zooms (head position and crop), contrast, brightness and gamma (exports
differ), and a little noise.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional

WINDOW_CENTER = (30.0, 50.0)  # HU; the service windows at 40
WINDOW_WIDTH = (70.0, 130.0)  # HU; the service uses 80, viewers' brain presets reach 120
MAX_ROTATION_DEGREES = 12.0
MAX_SHIFT = 0.06  # of the image side
ZOOM = (0.9, 1.1)
CONTRAST = (0.8, 1.25)
BRIGHTNESS = 0.08
GAMMA = (0.8, 1.25)
NOISE = 0.02


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def random_window(hu: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Grey levels in [0, 1] of Hounsfield units (N, S, S), each slice through its own brain-like window."""
    count = hu.shape[0]
    center = _uniform(count, *WINDOW_CENTER, generator).view(count, 1, 1)
    width = _uniform(count, *WINDOW_WIDTH, generator).view(count, 1, 1)
    return ((hu - center + width / 2) / width).clamp(0.0, 1.0)


def augment(grey: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Model input (N, 3, S, S) in [-1, 1]: a randomly varied copy of grey slices (N, S, S) in [0, 1]."""
    count = grey.shape[0]
    grey = grey[:, None]
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
