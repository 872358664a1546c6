"""Which method a person should use for their photos, and how the methods are grouped for choosing.

The recommended path for photos is k-means on a pre-trained ImageNet network's embeddings: on real photo
collections these features roughly double the accuracy of handcrafted ones (docs/methods/classic.md), they
need no training, and they run in minutes on a laptop CPU. The network is the one recommended for the device
(:func:`photocluster.features.pretrained.recommended_backbone`). When no pre-trained weights can be had, the
best method that needs none is k-means on HOG + colour features (the only method trained from scratch that
sorts a photo folder in minutes on a CPU).

Every driver — the folder mode, the app — asks this module, so the recommendation is made in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photocluster.errors import UsageError


@dataclass(frozen=True)
class MethodChoice:
    """One entry of the method picker: what a person reads, and the method and parameters it runs."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


@dataclass(frozen=True)
class MethodGroup:
    title: str
    summary: str
    choices: tuple[MethodChoice, ...]


#: The method used when pre-trained weights cannot be had: the best that needs none, in minutes on a CPU.
NO_WEIGHTS_CHOICE = MethodChoice(
    "k-means on handcrafted features", "kmeans", {"features": "hog-color"},
    "no download needed; groups by colour and texture, not by what is in the photos")


def recommended_choice(device: str = "auto", weights: str | Path | None = None) -> MethodChoice:
    """The recommended method for photos on ``device``.

    ``weights`` is the ``--weights`` value: a file (its network is recognised from its keys and shapes, so
    ``--weights FILE`` alone is enough), "default" / None (torchvision's weights for the device's recommended
    network, downloaded once), or "none" (no pre-trained weights: :data:`NO_WEIGHTS_CHOICE`).
    """
    from photocluster.features.pretrained import backbone_of_weights_file, recommended_backbone

    if weights is not None and str(weights).lower() == "none":
        return NO_WEIGHTS_CHOICE
    if weights is not None and str(weights).lower() != "default":
        backbone = backbone_of_weights_file(weights)
        params: dict[str, Any] = {"features": backbone, "weights": str(weights)}
    else:
        backbone = recommended_backbone(_device_kind(device))
        params = {"features": backbone, "weights": "default"}
    return MethodChoice(f"Photo features ({backbone}) + k-means", "kmeans", params,
                        "recommended: groups by what is in the photos, using a network trained on ImageNet")


def _device_kind(device: str) -> str:
    """"cpu" or the accelerator "auto" would pick ("cuda", "mps")."""
    from photocluster.devices import resolve_device

    try:
        return resolve_device(device or "auto").type
    except ValueError:  # asked for a device this machine lacks: recommend for what it has
        return resolve_device("auto").type


def method_groups(device: str = "auto") -> list[MethodGroup]:
    """The method picker's groups, in the order shown, each entry with one line on when to use it."""
    from photocluster.features.pretrained import recommended_backbone

    return [
        MethodGroup("Recommended", "pre-trained ImageNet features: the best grouping of everyday photos", (
            recommended_choice(device),
        )),
        # Measured on the 200 shared photos from the same ImageNet weights (docs/methods/tlfwr.md, ccnn.md):
        # tlfwr booted from the embeddings 0.538 ± 0.039 and CCNN 0.268 ± 0.045 against 0.532 ± 0.030 for
        # the recommended k-means, so they are offered as the papers' methods, not recommended.
        MethodGroup("Paper methods on a pre-trained network", "the papers' fine-tuning methods: slower, and in "
                    "our measurements not better than the recommended one on photos", (
            MethodChoice("Transfer learning (tlfwr)", "tlfwr",
                         {"backbone": recommended_backbone(_device_kind(device)),
                          "boot": f"{recommended_backbone(_device_kind(device))}+kmeans"},
                         "fine-tunes the network on the photos it is surest about, starting from the recommended grouping"),
            MethodChoice("CCNN", "ccnn", {"backbone": recommended_backbone(_device_kind(device))},
                         "fine-tunes the network while clustering, with drift compensation"),
        )),
        MethodGroup("Paper methods trained from scratch", "learn features from your photos alone: slow on a CPU", (
            MethodChoice("MMDC", "mmdc", {}, "multi-modal deep clustering (ICPR 2020); hours on a CPU"),
            MethodChoice("DAC", "dac", {}, "deep adaptive clustering (ICCV 2017); hours on a CPU"),
            MethodChoice("DAC*", "dac-star", {}, "DAC on all pairs with one annealed threshold"),
        )),
        MethodGroup("Classical", "handcrafted colour and texture features: fast, no download", (
            NO_WEIGHTS_CHOICE,
            MethodChoice("Gaussian mixture", "gmm", {"features": "hog-color"}, "soft clusters of different sizes"),
            MethodChoice("Agglomerative", "agglomerative", {"features": "hog-color"}, "merges nearest groups"),
            MethodChoice("Spectral", "spectral", {"features": "hog-color"}, "finds non-round groups"),
            MethodChoice("NMF", "nmf", {"features": "hog-color"}, "parts-based factorisation"),
        )),
    ]


def ensure_weights(choice: MethodChoice) -> None:
    """Make sure the weights a choice needs are on disk (downloading torchvision's once), so that a missing
    download is known before any slow work. Raises :class:`~photocluster.errors.WeightsUnavailable`."""
    from photocluster.features.pretrained import BACKBONES, cached_weights_path, ensure_default_weights

    backbone = choice.params.get("features") or choice.params.get("backbone")
    if backbone not in BACKBONES or str(choice.params.get("weights", "default")).lower() != "default":
        return
    if not cached_weights_path(backbone).exists():
        ensure_default_weights(backbone)


def check_method_name(name: str) -> str:
    from photocluster.methods.base import list_methods, method_class

    try:
        return method_class(name).name
    except ValueError:
        raise UsageError(f"unknown method {name!r}; available: {', '.join(list_methods()) or 'none'}") from None
