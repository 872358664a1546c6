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

import hashlib
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision
from torch import nn

from photocluster.config import weights_dir
from photocluster.errors import UsageError, WeightsUnavailable

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


def _alexnet_split(model: nn.Module) -> tuple[nn.Module, nn.Module, int]:
    # features = conv1..conv5 with pools (conv5 is features[10]); classifier = [Dropout, fc6, ReLU, Dropout,
    # fc7, ReLU, fc8]. Upper layers = conv5, fc6, fc7: the embedding is fc7 (4096), the classic "DeCAF" layer.
    lower = nn.Sequential(*list(model.features.children())[:10])
    upper = nn.Sequential(*list(model.features.children())[10:], model.avgpool, nn.Flatten(),
                          *list(model.classifier.children())[:6])
    return lower, upper, 4096


def _alexnet_trunk(model: nn.Module) -> tuple[nn.Module, int]:
    # conv1-conv5 without pool5, so the map stays 13x13 at 224 px (CCNN, Sec. III)
    return nn.Sequential(*list(model.features.children())[:-1]), 256


def _resnet_split(model: nn.Module) -> tuple[nn.Module, nn.Module, int]:
    # Upper layers = the last residual stage (layer4); the 1000-way fc is dropped.
    lower = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3)
    return lower, nn.Sequential(model.layer4, model.avgpool, nn.Flatten()), model.fc.in_features


def _resnet_trunk(model: nn.Module) -> tuple[nn.Module, int]:
    return nn.Sequential(*list(model.children())[:-2]), model.fc.in_features


def _features_split(upper_blocks: int, pool_norm: Callable[[nn.Module], list[nn.Module]] | None = None):
    """Split for nets whose convolutional part is ``model.features`` (MobileNets, EfficientNet, ConvNeXt): the
    last ``upper_blocks`` entries of ``features`` are the upper layers, then global average pooling (and, for
    ConvNeXt, its LayerNorm), giving the embedding."""

    def split(model: nn.Module) -> tuple[nn.Module, nn.Module, int]:
        blocks = list(model.features.children())
        extra = pool_norm(model) if pool_norm is not None else []
        upper = nn.Sequential(*blocks[-upper_blocks:], nn.AdaptiveAvgPool2d(1), *extra, nn.Flatten())
        return nn.Sequential(*blocks[:-upper_blocks]), upper, _features_channels(model)

    return split


def _features_trunk(model: nn.Module) -> tuple[nn.Module, int]:
    return model.features, _features_channels(model)


def _features_channels(model: nn.Module) -> int:
    last_conv = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)][-1]
    return int(last_conv.out_channels)


@dataclass(frozen=True)
class BackboneSpec:
    """One torchvision classification network as photocluster uses it.

    Attributes
    ----------
    name:
        The name used on the command line (``-p features=NAME``, ``-p backbone=NAME``).
    builder, weights_enum:
        torchvision's constructor and its weights enum (``DEFAULT`` is downloaded on first use).
    input_size:
        Side in pixels the network was trained on.
    feature_dim:
        Length of the embedding: the upper layers' output (global-average-pooled last map; AlexNet's fc7).
    split:
        ``model -> (lower, upper, feature_dim)``: the layers fine-tuning keeps frozen or slow (lower) and the
        "upper" layers it adapts, ending in the embedding.
    trunk:
        ``model -> (convolutional trunk, channels)``: the feature map CCNN puts its adaptation layers on.
    head:
        ``model -> module`` mapping an (un-normalised) embedding to the 1,000 ImageNet logits: the network's
        own classifier after the embedding (for suggested cluster names).
    recommended:
        "cpu", "gpu" or "": where this network is our recommended one for photos.
    note:
        One line for ``--list``.
    """

    name: str
    builder: Callable[..., nn.Module]
    weights_enum: type
    input_size: int
    feature_dim: int
    split: Callable[[nn.Module], tuple[nn.Module, nn.Module, int]]
    trunk: Callable[[nn.Module], tuple[nn.Module, int]]
    head: Callable[[nn.Module], nn.Module] = lambda model: model.classifier
    recommended: str = ""
    note: str = ""


tv = torchvision.models
BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    BackboneSpec("mobilenet_v2", tv.mobilenet_v2, tv.MobileNet_V2_Weights, 224, 1280,
                 _features_split(5), _features_trunk, recommended="cpu",
                 note="3.5 M parameters, 0.3 GFLOPs: fast on a laptop CPU"),
    BackboneSpec("mobilenet_v3_large", tv.mobilenet_v3_large, tv.MobileNet_V3_Large_Weights, 224, 960,
                 _features_split(4), _features_trunk, note="5.5 M parameters, 0.22 GFLOPs"),
    BackboneSpec("efficientnet_b0", tv.efficientnet_b0, tv.EfficientNet_B0_Weights, 224, 1280,
                 _features_split(3), _features_trunk, note="5.3 M parameters, 0.39 GFLOPs"),
    BackboneSpec("convnext_tiny", tv.convnext_tiny, tv.ConvNeXt_Tiny_Weights, 224, 768,
                 _features_split(2, lambda m: [m.classifier[0]]), _features_trunk,
                 head=lambda m: m.classifier[2], recommended="gpu",
                 note="28 M parameters, 4.5 GFLOPs: the strongest ImageNet features here, for a GPU"),
    BackboneSpec("resnet50", tv.resnet50, tv.ResNet50_Weights, 224, 2048, _resnet_split, _resnet_trunk,
                 head=lambda m: m.fc,
                 note="25.6 M parameters, 4.1 GFLOPs (IMAGENET1K_V2 weights)"),
    BackboneSpec("resnet18", tv.resnet18, tv.ResNet18_Weights, 224, 512, _resnet_split, _resnet_trunk,
                 head=lambda m: m.fc,
                 note="11.7 M parameters, 1.8 GFLOPs"),
    BackboneSpec("alexnet", tv.alexnet, tv.AlexNet_Weights, 224, 4096, _alexnet_split, _alexnet_trunk,
                 head=lambda m: m.classifier[6],
                 note="the CCNN and tlfwr papers' network (61 M parameters)"),
)}
BACKBONE_CHOICES = tuple(BACKBONES)


def recommended_backbone(device: str = "cpu") -> str:
    """Our recommended backbone for photos on a ``device`` ("cpu", "cuda", "mps")."""
    want = "cpu" if device == "cpu" else "gpu"
    return next(spec.name for spec in BACKBONES.values() if spec.recommended == want)


def _info(name: str) -> BackboneSpec:
    try:
        return BACKBONES[str(name).lower()]
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


def ensure_default_weights(name: str, progress: bool = True) -> Path:
    """The DEFAULT weights file of ``name``, downloaded into the cache on first use.

    Raises :class:`~photocluster.errors.WeightsUnavailable` when it is not cached and cannot be downloaded.
    """
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
            raise WeightsUnavailable(_offline_message(name, f"no network: {exc}"), backbone=name,
                                     url=default_weights_url(name), target=str(target), reason=str(exc)) from None
        partial.replace(target)
    return target


def _download_default(name: str, progress: bool) -> dict[str, torch.Tensor]:
    """Return the DEFAULT state dict of ``name``, downloading it into the cache on first use."""
    return load_state_dict_file(ensure_default_weights(name, progress), expected=name)


def load_state_dict_file(path: Path, expected: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict read with ``torch.load(weights_only=True)`` (never a pickled object).

    Raises a one-line :class:`UsageError` — naming the ``expected`` backbone when given — for a missing,
    truncated or foreign file.
    """
    wanted = f" (expected torchvision {expected} weights)" if expected else ""
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist{wanted}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or truncated file, pickled object, wrong format: all a user mistake here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot read weights file {path} as a state dict{wanted}: {reason}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # some checkpoints wrap the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"weights file {path} does not hold a state dict of tensors{wanted}")
    return state


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items() if not key.endswith("num_batches_tracked")}


def _reference_shapes(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # no memory, no time: only the layout
        return _shapes(_info(name).builder(weights=None).state_dict())


def identify_backbone(state: dict[str, torch.Tensor]) -> str | None:
    """The registered backbone whose parameter names and shapes the state dict has exactly, or None."""
    shapes = _shapes(state)
    return next((name for name in BACKBONES if _reference_shapes(name) == shapes), None)


def backbone_of_weights_file(path: str | Path) -> str:
    """The backbone a weights file is for, recognised from its keys and shapes (one-line error if none)."""
    path = Path(path).expanduser()
    name = identify_backbone(load_state_dict_file(path))
    if name is None:
        raise UsageError(f"weights file {path} fits none of the backbones ({', '.join(BACKBONE_CHOICES)}); "
                         "give -p features=NAME or -p backbone=NAME with weights made for it")
    return name


def weights_fingerprint(name: str, weights: str | Path | None) -> str | None:
    """A short id of the exact weights ``build_backbone(name, weights)`` would load (sha256 of the file), or
    None for random initialisation or for DEFAULT weights not downloaded yet — nothing worth caching by."""
    if weights is None or str(weights).lower() == "none":
        return None
    path = cached_weights_path(name) if str(weights).lower() == "default" else Path(weights).expanduser()
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def build_backbone(name: str = "alexnet", weights: str | Path | None = "default", progress: bool = True) -> nn.Module:
    """Build a torchvision classification network with ImageNet weights.

    Parameters
    ----------
    name:
        A name of :data:`BACKBONES` ("alexnet" is both papers' choice; "mobilenet_v2" our CPU recommendation).
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
        state = load_state_dict_file(Path(weights).expanduser(), expected=info.name)
        if _shapes(state) != _shapes(model.state_dict()):
            other = identify_backbone(state)
            looks = f"they are {other} weights" if other else "they fit none of the known backbones"
            raise UsageError(f"weights {weights} do not fit backbone {info.name}: {looks}")
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
