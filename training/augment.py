"""Training-time variation of slices: what differs between real scans and exports, not what changes the finding.

The display window of Hounsfield units (sites and viewers differ), left-right flips (a bleed can be on either
side), rotations, shifts and zooms (head position and crop), contrast, brightness and gamma (exports differ),
and a little noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional


@dataclass(frozen=True)
class Augmentation:
    """How far each variation reaches; every slice draws its own values uniformly within these ranges."""

    window_center: tuple[float, float] = (30.0, 50.0)  # HU; the service windows at 35
    window_width: tuple[float, float] = (70.0, 130.0)  # HU; the service uses 80, viewers' brain presets reach 120
    max_rotation_degrees: float = 20.0
    max_shift: float = 0.08  # of the image side
    zoom: tuple[float, float] = (0.85, 1.2)
    contrast: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.08
    gamma: tuple[float, float] = (0.8, 1.25)
    noise: float = 0.03


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def random_window(hu: torch.Tensor, generator: torch.Generator, reach: Augmentation) -> torch.Tensor:
    """Grey levels in [0, 1] of Hounsfield units (N, S, S), each slice through its own brain-like window."""
    count = hu.shape[0]
    center = _uniform(count, *reach.window_center, generator).view(count, 1, 1)
    width = _uniform(count, *reach.window_width, generator).view(count, 1, 1)
    return ((hu - center + width / 2) / width).clamp(0.0, 1.0)


def augment(grey: torch.Tensor, generator: torch.Generator, reach: Augmentation) -> torch.Tensor:
    """Model input (N, 3, S, S) in [-1, 1]: a randomly varied copy of grey slices (N, S, S) in [0, 1]."""
    count = grey.shape[0]
    grey = grey[:, None]
    angle = _uniform(count, -reach.max_rotation_degrees, reach.max_rotation_degrees, generator) * math.pi / 180
    zoom = _uniform(count, *reach.zoom, generator)
    flip = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    shift = _uniform(2 * count, -2 * reach.max_shift, 2 * reach.max_shift, generator).view(count, 2)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], dim=1), torch.stack([sin * flip, cos, shift[:, 1]], dim=1)],
        dim=1,
    )
    grid = functional.affine_grid(theta, list(grey.shape), align_corners=False)
    grey = functional.grid_sample(grey, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gamma = _uniform(count, *reach.gamma, generator).view(count, 1, 1, 1)
    contrast = _uniform(count, *reach.contrast, generator).view(count, 1, 1, 1)
    brightness = _uniform(count, -reach.brightness, reach.brightness, generator).view(count, 1, 1, 1)
    grey = (grey.clamp(0.0, 1.0) ** gamma - 0.5) * contrast + 0.5 + brightness
    grey = grey + reach.noise * torch.randn(grey.shape, generator=generator)
    return (grey.clamp(0.0, 1.0) * 2.0 - 1.0).expand(-1, 3, -1, -1).contiguous()
