"""Named augmentation presets of MMDC (Shiran & Weinshall, ICPR 2020), applied batched on the training device.

Every random image transformation of the paper is done for a whole mini-batch in a few tensor operations,
on the device the network trains on, so that augmentation never dominates a training step:

* random crop (+ resize to the network input), random rotation and horizontal flip are one affine warp per
  image, sampled together with ``torch.nn.functional.grid_sample`` (bilinear, zero fill like the
  authors' ``RandomRotation(fill=0)``); crop offsets are whole pixels, as in ``RandomCrop``;
* colour jitter (brightness, contrast, saturation 0.4, hue 0.125) and random grayscale (p = 0.2) with
  per-image factors. torchvision's ``ColorJitter`` draws a new order of the four adjustments per image;
  here one random order is drawn per batch (the factors are still per image);
* evaluation uses the centre crop resized to the network input.

No mean/std normalisation, as in the paper's code. Randomness comes from a CPU ``torch.Generator`` so a
seed gives the same augmentations on every device; only the small per-image parameters are moved.

Presets (crop sides are fractions of the image side, so they carry over to any image size):

========  ===================================  =====  ====  ======  ========
preset    crops (fraction of side)             input  flip  colour  rotation
========  ===================================  =====  ====  ======  ========
digits    24, 20 or 16 of 28 px, one at random  32    no    no      ±25°
cifar     20 of 32 px                           32    yes   yes     none
stl       64 of 96 px                           64    yes   yes     none
shift     26 of 28 px (±1 px shifts)            32    no    no      none
========  ===================================  =====  ====  ======  ========

(``shift`` is ours, for smoke runs. The digits preset is the authors' MNIST command: ``--crop_size 24 20 16 --input_size 32 --rot_degree 25``;
its "small crops / shifts" are these crops, placed at random. CIFAR and STL are their other commands.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

#: ITU-R 601 luma weights, as torchvision's rgb_to_grayscale
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentPreset:
    """One named set of training/evaluation transformations.

    Parameters
    ----------
    name:
        Preset name (``digits``, ``cifar``, ``stl``).
    crop_fractions:
        Random-crop sides as fractions of the image side; one is picked at random per image. The first is
        also the evaluation centre crop (as in the authors' code).
    input_size:
        Side of the network input; crops are resized to it.
    flip:
        Random horizontal flip with probability 0.5.
    color_jitter:
        Colour jitter (0.4, 0.4, 0.4, 0.125) and random grayscale 0.2 (RGB images only).
    rotation_degrees:
        Random rotation in [-d, d] degrees (0 = none).
    """

    name: str
    crop_fractions: tuple[float, ...]
    input_size: int
    flip: bool
    color_jitter: bool
    rotation_degrees: float = 0.0
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.125
    grayscale_probability: float = 0.2


PRESETS: dict[str, AugmentPreset] = {
    "digits": AugmentPreset("digits", (24 / 28, 20 / 28, 16 / 28), 32, flip=False, color_jitter=False,
                            rotation_degrees=25.0),
    # Small shifts only (±1 px at 28 px): for tiny data sets and smoke runs where a 16-of-28 crop could
    # cut away what tells the images apart; not one of the paper's presets.
    "shift": AugmentPreset("shift", (26 / 28,), 32, flip=False, color_jitter=False),
    "cifar": AugmentPreset("cifar", (20 / 32,), 32, flip=True, color_jitter=True),
    "stl": AugmentPreset("stl", (64 / 96,), 64, flip=True, color_jitter=True),
}


def preset_for_images(height: int, width: int, channels: int) -> str:
    """The preset the paper would use for images of this shape: grey → digits, RGB ≤ 48 px → cifar,
    larger RGB → stl."""
    if channels == 1:
        return "digits"
    return "cifar" if min(height, width) <= 48 else "stl"


def get_preset(name: str, input_size: int | None = None) -> AugmentPreset:
    """Look up a preset by name, optionally overriding its network input side."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    if input_size:
        preset = replace(preset, input_size=int(input_size))
    return preset


def to_float_nchw(images_uint8: torch.Tensor) -> torch.Tensor:
    """(N, H, W, C) uint8 → (N, C, H, W) float32 in [0, 1] (no mean/std normalisation, as in the paper)."""
    return images_uint8.permute(0, 3, 1, 2).float().div_(255.0)


class BatchAugmenter:
    """Applies an :class:`AugmentPreset` to whole batches on their device.

    Parameters
    ----------
    preset:
        The transformations.
    generator:
        CPU generator all random draws come from (determinism under a seed, on any device).
    """

    def __init__(self, preset: AugmentPreset, generator: torch.Generator) -> None:
        self.preset = preset
        self.generator = generator

    # -- geometry -------------------------------------------------------------------------------
    def _crop_theta(self, n: int, height: int, width: int, *, train: bool, geometric: bool = True) -> torch.Tensor:
        """Affine matrices (n, 2, 3) mapping output coordinates to input coordinates (normalised)."""
        p = self.preset
        g = self.generator
        fractions = torch.tensor(p.crop_fractions, dtype=torch.float64)
        if train:
            choice = torch.randint(len(fractions), (n,), generator=g)
            frac = fractions[choice]
        else:
            frac = fractions[:1].expand(n)
        crop_h = torch.clamp(torch.round(frac * height), 1, height)
        crop_w = torch.clamp(torch.round(frac * width), 1, width)
        if train:
            # whole-pixel offsets like RandomCrop: offset ∈ {0, ..., side − crop}
            off_y = torch.floor(torch.rand(n, generator=g, dtype=torch.float64) * (height - crop_h + 1))
            off_x = torch.floor(torch.rand(n, generator=g, dtype=torch.float64) * (width - crop_w + 1))
        else:
            # CenterCrop's rounding
            off_y = torch.round((height - crop_h) / 2.0)
            off_x = torch.round((width - crop_w) / 2.0)
        centre_y = (off_y + crop_h / 2.0) / height * 2.0 - 1.0
        centre_x = (off_x + crop_w / 2.0) / width * 2.0 - 1.0
        scale_y = crop_h / height
        scale_x = crop_w / width
        angle = torch.zeros(n, dtype=torch.float64)
        flip = torch.ones(n, dtype=torch.float64)
        if train and geometric:
            if p.rotation_degrees > 0:
                angle = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * math.radians(p.rotation_degrees)
            if p.flip:
                flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).double()
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(n, 2, 3, dtype=torch.float64)
        # output (x, y) → rotate → flip x → scale to the crop → move to the crop centre
        theta[:, 0, 0] = scale_x * cos * flip
        theta[:, 0, 1] = -scale_x * sin
        theta[:, 0, 2] = centre_x
        theta[:, 1, 0] = scale_y * sin * flip
        theta[:, 1, 1] = scale_y * cos
        theta[:, 1, 2] = centre_y
        return theta.float()

    def _warp(self, images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        n, c = images.shape[:2]
        size = self.preset.input_size
        grid = F.affine_grid(theta.to(images.device), [n, c, size, size], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # -- public ---------------------------------------------------------------------------------
    def centre_view(self, images: torch.Tensor) -> torch.Tensor:
        """The evaluation view: centre crop resized to the network input. ``images``: float (N, C, H, W)."""
        n, _, h, w = images.shape
        return self._warp(images, self._crop_theta(n, h, w, train=False))

    def train_view(self, images: torch.Tensor) -> torch.Tensor:
        """A random view g(x): crop (+resize), rotation, flip, then colour jitter and grayscale."""
        n, c, h, w = images.shape
        out = self._warp(images, self._crop_theta(n, h, w, train=True))
        if self.preset.color_jitter and c == 3:
            out = self._colour_jitter(out)
        return out

    def crop_view(self, images: torch.Tensor) -> torch.Tensor:
        """Random crop (+resize) only: the view the authors' code feeds to the rotation task."""
        n, _, h, w = images.shape
        return self._warp(images, self._crop_theta(n, h, w, train=True, geometric=False))

    # -- colour ---------------------------------------------------------------------------------
    def _factors(self, n: int, spread: float, device: torch.device) -> torch.Tensor:
        low, high = max(0.0, 1.0 - spread), 1.0 + spread
        return (low + (high - low) * torch.rand(n, generator=self.generator)).to(device).view(n, 1, 1, 1)

    def _colour_jitter(self, x: torch.Tensor) -> torch.Tensor:
        p = self.preset
        n, device = x.shape[0], x.device
        order = torch.randperm(4, generator=self.generator).tolist()
        brightness = self._factors(n, p.brightness, device)
        contrast = self._factors(n, p.contrast, device)
        saturation = self._factors(n, p.saturation, device)
        hue = ((torch.rand(n, generator=self.generator) * 2 - 1) * p.hue).to(device).view(n, 1, 1)
        grey_mask = (torch.rand(n, generator=self.generator) < p.grayscale_probability).to(device).view(n, 1, 1, 1)
        for step in order:
            if step == 0:
                x = (x * brightness).clamp_(0, 1)
            elif step == 1:
                mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
                x = (contrast * x + (1 - contrast) * mean).clamp_(0, 1)
            elif step == 2:
                x = (saturation * x + (1 - saturation) * grayscale(x)).clamp_(0, 1)
            else:
                x = shift_hue(x, hue)
        return torch.where(grey_mask, grayscale(x).expand_as(x), x)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of an RGB batch (N, 3, H, W) → (N, 1, H, W)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b


def shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each image of an RGB batch by ``shift`` (N, 1, 1) turns (HSV, as torchvision)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)
    ) / 6.0
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    hue = (hue + shift) % 1.0
    value = maxc
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    # HSV → RGB with the standard piecewise-linear formula, vectorised
    k = torch.stack([(5 + hue * 6) % 6, (3 + hue * 6) % 6, (1 + hue * 6) % 6], dim=1)
    return value.unsqueeze(1) - value.unsqueeze(1) * sat.unsqueeze(1) * torch.clamp(
        torch.minimum(k, 4 - k), 0, 1
    )


def rotate_quarter_turns(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of each image for the RotNet task.

    Returns ``(rotated, labels)``: ``rotated`` is (4N, C, H, W) — image i rotated by k·90°
    counter-clockwise (``torch.rot90`` with k quarter turns) sits at row 4i + k — and ``labels`` (4N,)
    holds k ∈ {0, 1, 2, 3}. Images must be square.
    """
    n = images.shape[0]
    if images.shape[-1] != images.shape[-2]:
        raise ValueError("rotation needs square images")
    rotated = torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in range(4)], dim=1)
    labels = torch.arange(4, device=images.device).repeat(n)
    return rotated.reshape(n * 4, *images.shape[1:]), labels
