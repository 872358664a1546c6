"""ImageNet pre-trained backbones (torchvision) that load offline, with clear messages when they cannot.

CCNN (seed 004) and tlfwr (seed 002) both start from an ImageNet pre-trained AlexNet; ResNet-18/50 are
offered as stronger options. Three ways to get the weights (the ``--weights`` option):

* ``"default"`` — torchvision's ``<Model>_Weights.DEFAULT``. The file is downloaded once (with a
  progress bar) into :func:`photocluster.config.weights_dir`, torch.hub's cache is pointed there, and later
  runs load the cached file without network. With no network and no cached file a :class:`UsageError`
  says which URL to fetch, where to put the file, and that ``--weights PATH`` or ``--weights none`` work.
* a path — a local state dict, loaded with ``torch.load(weights_only=True)`` (never pickled objects).
* ``"none"`` — random initialisation, only when the user asks for it (weak features; tests and CPU
  smoke runs where nothing can be downloaded).
"""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision
from torch import nn

from photocluster.config import weights_dir
from photocluster.errors import UsageError

#: ImageNet normalisation used by every torchvision classification model.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How images must look before they enter a backbone.

    Parameters
    ----------
    input_size:
        Side in pixels the network was trained on (images are resized to input_size × input_size).
    mean, std:
        Per-channel normalisation of [0, 1] RGB values.
    """

    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class _BackboneInfo:
    builder: Callable[..., nn.Module]
    weights_enum: type
    input_size: int


BACKBONES: dict[str, _BackboneInfo] = {
    "alexnet": _BackboneInfo(torchvision.models.alexnet, torchvision.models.AlexNet_Weights, 224),
    "resnet18": _BackboneInfo(torchvision.models.resnet18, torchvision.models.ResNet18_Weights, 224),
    "resnet50": _BackboneInfo(torchvision.models.resnet50, torchvision.models.ResNet50_Weights, 224),
}
BACKBONE_CHOICES = tuple(BACKBONES)


def _info(name: str) -> _BackboneInfo:
    try:
        return BACKBONES[name.lower()]
    except KeyError:
        raise UsageError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_CHOICES)}") from None


def default_weights_url(name: str) -> str:
    """Download address of torchvision's DEFAULT ImageNet weights for backbone ``name``."""
    return _info(name).weights_enum.DEFAULT.url


def cached_weights_path(name: str) -> Path:
    """Where the DEFAULT weights of ``name`` live once downloaded (torch.hub's layout under weights_dir)."""
    filename = default_weights_url(name).rsplit("/", 1)[-1]
    return weights_dir() / "checkpoints" / filename


def _offline_message(name: str, reason: object) -> str:
    url = default_weights_url(name)
    target = cached_weights_path(name)
    return (
        f"cannot get the pre-trained {name} weights ({reason}): download {url} and put it at {target}, "
        f"or pass --weights PATH to a local state dict, or --weights none for random initialisation"
    )


def _download_default(name: str, progress: bool) -> dict[str, torch.Tensor]:
    """Return the DEFAULT state dict of ``name``, downloading it into the cache on first use."""
    target = cached_weights_path(name)
    if not target.exists():
        # torch.hub's own cache is pointed at our folder so that other torch code finds the file too.
        torch.hub.set_dir(str(weights_dir()))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".partial")
        try:
            torch.hub.download_url_to_file(default_weights_url(name), str(partial), progress=progress)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            partial.unlink(missing_ok=True)
            raise UsageError(_offline_message(name, f"no network: {exc}")) from None
        partial.replace(target)
    return load_state_dict_file(target)


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled object, wrong format: all a user mistake here
        raise UsageError(f"cannot read weights file {path} as a state dict: {exc}") from None
    if not isinstance(state, dict):
        raise UsageError(f"weights file {path} does not hold a state dict (found {type(state).__name__})")
    # Some checkpoints wrap the weights: accept {"state_dict": {...}} too.
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def build_backbone(name: str = "alexnet", weights: str | Path | None = "default", progress: bool = True) -> nn.Module:
    """Build a torchvision classification network with ImageNet weights.

    Parameters
    ----------
    name:
        "alexnet" (both papers' choice), "resnet18" or "resnet50".
    weights:
        "default" (torchvision's DEFAULT weights, downloaded once into the cache), a path to a local state
        dict, or "none" / None for random initialisation.
    progress:
        Show a progress bar while downloading.

    Returns
    -------
    torch.nn.Module
        The full torchvision model (1000-class head included) in eval mode, on the CPU.

    Raises
    ------
    UsageError
        Unknown backbone; weights that cannot be downloaded and are not cached; a local file that is
        missing, unreadable or whose keys do not fit the network.
    """
    info = _info(name)
    model = info.builder(weights=None)
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return model.eval()
    if isinstance(weights, str) and weights.lower() == "default":
        state = _download_default(name, progress)
    else:
        state = load_state_dict_file(Path(weights).expanduser())
    load_fitting_state(model, state, f"weights {weights} do not fit backbone {name}")
    return model.eval()


def load_fitting_state(module: nn.Module, state: dict[str, torch.Tensor], misfit: str) -> None:
    """``module.load_state_dict(state, strict=True)``, with a mismatch reported as ``misfit: <first line>``.

    Raises
    ------
    UsageError
        Missing, unexpected or wrongly shaped keys (a file for another network is a user mistake).
    """
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "keys do not match"
        raise UsageError(f"{misfit}: {first_line}") from None


def preprocess_for(name: str) -> Preprocess:
    """Input size and ImageNet mean/std the backbone ``name`` expects."""
    return Preprocess(input_size=_info(name).input_size)


def images_to_tensor(
    images: np.ndarray,
    preprocess: Preprocess | None = None,
    size: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Turn a uint8 NHWC batch (grey or RGB) into a normalised float NCHW tensor for a backbone.

    Parameters
    ----------
    images:
        uint8 array (N, H, W, C) with C = 1 or 3, or (N, H, W) grey. A numpy.memmap slice is fine.
    preprocess:
        Normalisation (and default size); None means ImageNet mean/std and no resizing.
    size:
        Output side in pixels; overrides ``preprocess.input_size``. None with ``preprocess`` None keeps
        the images' own size.
    device:
        Where the tensor is built (resizing on a GPU is much faster).

    Returns
    -------
    torch.Tensor
        float32 (N, 3, size, size): grey images are repeated to three channels, values normalised.
    """
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W, 1|3) uint8, got shape {array.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    tensor = tensor.permute(0, 3, 1, 2).float().div_(255.0)
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    target = size if size is not None else (preprocess.input_size if preprocess is not None else None)
    if target is not None and tuple(tensor.shape[-2:]) != (target, target):
        tensor = torch.nn.functional.interpolate(tensor, size=(target, target), mode="bilinear", align_corners=False)
    mean = torch.tensor(preprocess.mean if preprocess else IMAGENET_MEAN, device=tensor.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std if preprocess else IMAGENET_STD, device=tensor.device).view(1, 3, 1, 1)
    return (tensor - mean) / std
