"""Networks that ``tlfwr`` fine-tunes on its reliable images: an ImageNet backbone with a new k-way head,
or a small AlexNet-shaped network for digit-sized images.

The transfer-learning paper (seed 002) fine-tunes an ImageNet pre-trained AlexNet (Caffe) and re-labels the
rest of the images with it; its features are taken from a fully connected layer ("getblob", eq. 12).
:class:`TransferNet` gives every backbone the same three parts so the method never needs to know which one
it has:

* ``features(x)`` — the feature blob used to measure distances to cluster centres (AlexNet: fc7, 4096-d;
  ResNet: the pooled features; the digit net: its fc7, 128-d);
* ``head`` — a new linear layer to the k clusters (softmax on top, trained with cross-entropy as Caffe's
  fine-tuning recipe does);
* parameter groups ``lower`` / ``upper`` / ``head`` so the method can fine-tune only the upper layers
  (the paper's fine-tuning), everything, or only the head (the authors' later MATLAB code, whose frozen
  features never change — offered only to show that flaw).

Images arrive as uint8 (N, H, W, C) arrays; :meth:`TransferNet.to_input` turns them into the normalised
float tensors the backbone expects (grey → three channels for ImageNet backbones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from photocluster.errors import UsageError

from photocluster.features.pretrained import BACKBONE_CHOICES

#: backbones tlfwr understands: every ImageNet one of features.pretrained.BACKBONES (their ``split`` says which
#: layers are "upper"), plus the digit-sized net.
TRANSFER_BACKBONES = (*BACKBONE_CHOICES, "digit")


class DigitNet(nn.Module):
    """A small AlexNet-shaped network for 28×28-ish grey images (the "simplified" network for MNIST).

    AlexNet's 224-px input and 61 M parameters are far too slow for a 2-core CPU and pointless for 28-px
    digits; this keeps AlexNet's shape — convolutions, then fc6/fc7 and a classifier — at digit scale:

    conv1 5×5×16 → pool → conv2 3×3×32 → pool → conv3 3×3×32 → fc6 256 → fc7 128 → fc8 k.

    ``lower`` = conv1, conv2 (kept fixed when only the upper layers are fine-tuned); ``upper`` = conv3,
    fc6, fc7. Images are resized to 28×28, so any digit-sized input works.
    """

    input_size = 28

    def __init__(self, n_clusters: int, in_channels: int = 1) -> None:
        super().__init__()
        self.lower = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 14×14
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 7×7
        )
        self.upper = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
        )
        self.feature_dim = 128
        self.head = nn.Linear(128, n_clusters)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.upper(self.lower(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TransferNet(nn.Module):
    """A backbone cut at its feature blob, with a new k-way head.

    Build it with :func:`build_transfer_net`. ``lower`` and ``upper`` are the backbone's modules split at the
    point where fine-tuning starts; ``features = upper(lower(x))``.
    """

    def __init__(
        self,
        lower: nn.Module,
        upper: nn.Module,
        feature_dim: int,
        n_clusters: int,
        input_size: int,
        grey_input: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        super().__init__()
        self.lower = lower
        self.upper = upper
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, n_clusters)
        self.input_size = input_size
        #: the digit net takes one grey channel; ImageNet backbones take RGB (grey repeated)
        self.grey_input = grey_input
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature blob (eq. 12 of the paper): distances to cluster centres are measured here."""
        return self.upper(self.lower(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the k clusters."""
        return self.head(self.features(x))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "lower": list(self.lower.parameters()),
            "upper": list(self.upper.parameters()),
            "head": list(self.head.parameters()),
        }

    def to_input(self, images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 (N, H, W, C) images → normalised float (N, C', S, S) on ``device``.

        Grey images are repeated to three channels for ImageNet backbones; RGB images are averaged to grey
        for the digit net (it is built for one channel).
        """
        array = np.asarray(images)
        if array.ndim == 3:
            array = array[..., None]
        # a copy: memmap slices are read-only and torch wants writable memory
        tensor = torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).to(device)
        tensor = tensor.permute(0, 3, 1, 2).float().div_(255.0)
        if self.grey_input and tensor.shape[1] == 3:
            tensor = tensor.mean(dim=1, keepdim=True)
        elif not self.grey_input and tensor.shape[1] == 1:
            tensor = tensor.expand(-1, 3, -1, -1)
        if tuple(tensor.shape[-2:]) != (self.input_size, self.input_size):
            tensor = nn.functional.interpolate(
                tensor, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        return (tensor - self.mean) / self.std


def build_transfer_net(
    backbone: str,
    n_clusters: int,
    weights: str | Path | None = "default",
    input_size: int = 0,
    progress: bool = True,
) -> TransferNet:
    """Build the network tlfwr fine-tunes.

    Parameters
    ----------
    backbone:
        A name of :data:`photocluster.features.pretrained.BACKBONES` — "alexnet" (the paper's),
        "mobilenet_v2" (our CPU choice), "resnet18", … — built with ImageNet weights by
        :func:`~photocluster.features.pretrained.build_backbone` and cut by the registry's ``split`` into
        lower / upper layers (upper ending in the embedding), or "digit" (:class:`DigitNet`, no pre-trained
        weights exist for it).
    n_clusters:
        Size of the new head.
    weights:
        For ImageNet backbones: "default", a local state-dict path or "none" (see ``build_backbone``).
        For "digit": "none" (random init) or a path to a state dict of a :class:`TransferNet` built with
        the digit backbone (head excluded or of the same size).
    input_size:
        Side the images are resized to; 0 = the backbone's own (224 for ImageNet nets, 28 for digits).
    progress:
        Progress bar while downloading weights.

    Raises
    ------
    UsageError
        Unknown backbone, or weights that cannot be had (see ``build_backbone``).
    """
    name = str(backbone).lower()
    if name == "digit":
        digit = DigitNet(n_clusters)
        net = TransferNet(digit.lower, digit.upper, digit.feature_dim, n_clusters, input_size or DigitNet.input_size,
                          grey_input=True, mean=(0.5,), std=(0.5,))
        if weights is None or str(weights).lower() == "none":
            return net
        if str(weights).lower() == "default":
            raise UsageError(
                "the digit network has no pre-trained weights: use --weights none (random init) or --weights PATH "
                "to a state dict of a digit TransferNet"
            )
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UsageError(f"weights file {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("head.") for k in missing):
            raise UsageError(
                f"weights {path} do not fit the digit network (missing {missing}, unexpected {unexpected})"
            )
        return net

    from photocluster.features.pretrained import BACKBONES, build_backbone, preprocess_for

    if name not in TRANSFER_BACKBONES:
        raise UsageError(f"unknown backbone {backbone!r}; choose one of {', '.join(TRANSFER_BACKBONES)}")
    model = build_backbone(name, weights, progress=progress)
    lower, upper, dim = BACKBONES[name].split(model)
    pre = preprocess_for(name)
    return TransferNet(lower, upper, dim, n_clusters, input_size or pre.input_size, grey_input=False,
                       mean=tuple(pre.mean), std=tuple(pre.std))
