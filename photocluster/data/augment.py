"""Batched random affine augmentation on the training device (DAC's augmentation).

One ``affine_grid`` + ``grid_sample`` call transforms a whole batch, so augmentation runs where the model
runs (GPU or CPU) instead of image by image in Python. Random parameters are drawn from a CPU
``torch.Generator`` (a few numbers per image) so that a seed gives the same augmentation on any device.

Presets (DAC authors' Keras ``ImageDataGenerator`` settings: rotation 10 degrees, shifts 10 %, zoom
0.95-1.05, horizontal flip except for digits):

* ``digits``  — rotation ±10°, shift ±10 %, zoom 0.95–1.05, **no flip** (a mirrored 2 is not a 2),
  empty pixels filled with 0 (the black background of digit images);
* ``objects`` — the same plus random horizontal flip; empty pixels 0 (grey objects on black, Fashion-MNIST);
* ``photos``  — the same plus random horizontal flip; empty pixels filled by reflection (no black borders
  on natural images);
* ``none``    — identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class AffinePreset:
    """Ranges of a random affine augmentation."""

    rotation_degrees: float = 10.0
    shift_fraction: float = 0.1
    zoom_range: tuple[float, float] = (0.95, 1.05)
    horizontal_flip: bool = True
    padding_mode: str = "zeros"  # "zeros", "border" or "reflection" (grid_sample's names)
    enabled: bool = True


PRESETS: dict[str, AffinePreset] = {
    "digits": AffinePreset(horizontal_flip=False, padding_mode="zeros"),
    "objects": AffinePreset(horizontal_flip=True, padding_mode="zeros"),
    "photos": AffinePreset(horizontal_flip=True, padding_mode="reflection"),
    "none": AffinePreset(enabled=False),
}


def preset_for_dataset(name: str) -> str:
    """The preset a data set gets under ``augment="auto"``: digits for digit sets, objects for
    Fashion-MNIST, photos otherwise."""
    lowered = name.lower()
    if "fashion" in lowered:
        return "objects"
    if lowered in ("mnist", "digits", "usps") or lowered.startswith(("mnist", "digits")):
        return "digits"
    return "photos"


def get_preset(name: str) -> AffinePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation preset {name!r}; choose one of {', '.join(PRESETS)} or auto") from None


def random_affine_matrices(batch_size: int, preset: AffinePreset, generator: torch.Generator) -> torch.Tensor:
    """Draw ``batch_size`` 2x3 matrices for :func:`torch.nn.functional.affine_grid` (on the CPU).

    The matrix maps output coordinates to input coordinates in [-1, 1] units, so a shift of 10 % of the
    image is 0.2 in these units.
    """
    uniform = torch.rand(batch_size, 5, generator=generator, dtype=torch.float64)
    angle = (uniform[:, 0] * 2 - 1) * math.radians(preset.rotation_degrees)
    low, high = preset.zoom_range
    zoom = low + uniform[:, 1] * (high - low)
    shift_x = (uniform[:, 2] * 2 - 1) * 2 * preset.shift_fraction
    shift_y = (uniform[:, 3] * 2 - 1) * 2 * preset.shift_fraction
    flip = torch.where(uniform[:, 4] < 0.5, -1.0, 1.0) if preset.horizontal_flip else torch.ones(batch_size, dtype=torch.float64)
    # sampling grid = R(angle) / zoom, then flip x of the output, plus the shift (inverse map: zoom > 1
    # samples a smaller region, i.e. enlarges the content)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.zeros(batch_size, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 0, 2] = shift_x
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    theta[:, 1, 2] = shift_y
    return theta.float()


def augment_batch(images: torch.Tensor, preset: AffinePreset, generator: torch.Generator) -> torch.Tensor:
    """Randomly transform a float batch (N, C, H, W) on its own device; returns a new tensor.

    Parameters
    ----------
    images:
        Float images, any device; values are interpolated bilinearly.
    preset:
        Ranges, see :data:`PRESETS`.
    generator:
        CPU generator the random parameters come from (determinism independent of the device).
    """
    if not preset.enabled or images.shape[0] == 0:
        return images
    return apply_affine(images, random_affine_matrices(images.shape[0], preset, generator), preset)


def apply_affine(images: torch.Tensor, theta: torch.Tensor, preset: AffinePreset) -> torch.Tensor:
    """Warp a float batch (N, C, H, W) by the matrices ``theta`` (N, 2, 3) from :func:`random_affine_matrices`.

    Split from :func:`augment_batch` so that the drawing (on the CPU, from a seeded generator) and the
    warping (on the device, capturable in a CUDA graph) can happen apart.
    """
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=preset.padding_mode, align_corners=False)
