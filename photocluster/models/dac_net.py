"""The ConvNets of Deep Adaptive Clustering (Chang et al., ICCV 2017) and its restraint layer.

The authors used one "ALL-ConvNet" pattern per input size (paper, supplementary material and their Keras
code, summarised in ../shared/PAPERS.md):

* **96 px** (STL-10, ImageNet-10/-Dog): three blocks of three unpadded 3x3 convolutions (64, 128, 256
  channels), each convolution followed by batch norm and ReLU, each block ending in a 2x2 max-pool;
* **32 px** (CIFAR): the same with two blocks (64, 128);
* **28 px** (MNIST): two blocks like the 32 px net, plus a batch norm after every pooling layer — both
  max-pools and the final average pool (as in the authors' ``mnistNetwork``, MNIST/mnist.py of their
  repository: ``AveragePooling2D`` over the 2x2 map, then ``BatchNormalization``, then ``Flatten``).

Every variant then has a 1x1 convolution to ``k`` channels, batch norm, ReLU, global average pooling, two
``k -> k`` dense layers initialised to the identity (each followed by batch norm and ReLU) and the
restraint layer, whose output is the *label feature* (non-negative, unit L2 norm).

Inputs of other sizes are resized to a supported size by :func:`network_input_size`: at most 28 px (e.g.
scikit-learn's 8x8 digits) is upsampled to 28, up to 32 px goes to 32, anything larger is resized to 96.
:func:`frame_to_network` is the alternative for small grey images: MNIST's own format, the image scaled
into a 20x20 box centred on a 28x28 black frame.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: input sizes the authors designed a network for
SUPPORTED_SIZES = (28, 32, 96)
#: MNIST's format: each digit was size-normalised into a 20x20 box and centred in the 28x28 image
MNIST_BOX = 20


def network_input_size(height: int, width: int) -> int:
    """The side length images of ``height`` x ``width`` are resized to before entering :class:`DACNet`.

    The smallest supported size that is at least the image's larger side, or 96 for anything larger
    (upsampling small images keeps the unpadded convolutions from running out of pixels; downsampling
    large photos to 96 px is what the authors did for STL-10 and ImageNet subsets).
    """
    side = max(int(height), int(width))
    for size in SUPPORTED_SIZES:
        if side <= size:
            return size
    return SUPPORTED_SIZES[-1]


class RestraintLayer(nn.Module):
    """The paper's Eq. (9): ``exp(x - max x)`` then L2 normalisation.

    The output is non-negative with unit norm, so the inner product of two outputs lies in [0, 1] and can be
    read as the probability that two images belong to the same cluster. Subtracting the maximum keeps the
    exponential from overflowing and makes the largest entry of the unnormalised vector exactly 1, so the
    norm is never below 1 (no division by a tiny number).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = torch.exp(x - x.max(dim=1, keepdim=True).values)
        return shifted / shifted.norm(dim=1, keepdim=True)


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    # bias=False: the batch norm that follows has its own shift, a conv bias would be redundant
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=0, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class _IdentityDense(nn.Linear):
    """A k -> k dense layer initialised to the identity (the authors' ``init='identity'``)."""

    def __init__(self, size: int) -> None:
        super().__init__(size, size)
        with torch.no_grad():
            self.weight.copy_(torch.eye(size))
            self.bias.zero_()


class DACNet(nn.Module):
    """DAC's all-convolutional network for one of :data:`SUPPORTED_SIZES`.

    Parameters
    ----------
    in_channels:
        1 for grey images, 3 for colour.
    n_clusters:
        ``k``, the length of the label feature.
    input_size:
        28, 32 or 96: picks the variant (see the module docstring). Inputs must already have this size.

    ``forward`` returns the label features (N, k); ``forward_features`` also returns the penultimate
    activations (the output of the second dense block, before the restraint layer).
    """

    def __init__(self, in_channels: int, n_clusters: int, input_size: int) -> None:
        super().__init__()
        if input_size not in SUPPORTED_SIZES:
            raise ValueError(f"DACNet input_size must be one of {SUPPORTED_SIZES}, got {input_size}")
        if n_clusters < 2:
            raise ValueError(f"n_clusters must be at least 2, got {n_clusters}")
        self.input_size = input_size
        self.in_channels = in_channels
        self.n_clusters = n_clusters
        widths = (64, 128, 256) if input_size == 96 else (64, 128)
        bn_after_pool = input_size == 28
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(3):
                layers += _conv_bn_relu(channels, width)
                channels = width
            layers.append(nn.MaxPool2d(2))
            if bn_after_pool:
                layers.append(nn.BatchNorm2d(channels))
        layers += [
            nn.Conv2d(channels, n_clusters, kernel_size=1, bias=False),
            nn.BatchNorm2d(n_clusters),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        ]
        if bn_after_pool:
            # the authors' MNIST net normalises the pooled k-vector too; appended last so that the other
            # layers keep the indices (and checkpoint keys) they had before this layer was added
            layers.append(nn.BatchNorm1d(n_clusters))
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(
            _IdentityDense(n_clusters),
            nn.BatchNorm1d(n_clusters),
            nn.ReLU(inplace=True),
            _IdentityDense(n_clusters),
            nn.BatchNorm1d(n_clusters),
            nn.ReLU(inplace=True),
        )
        self.restraint = RestraintLayer()
        for module in self.trunk.modules():
            if isinstance(module, nn.Conv2d):
                # the authors' he_normal initialisation
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(label_features, penultimate)``; label features are computed in float32."""
        penultimate = self.head(self.trunk(x))
        return self.restraint(penultimate.float()), penultimate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


def resize_to_network(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a float batch (N, C, H, W) to ``size`` x ``size`` (bilinear; antialiased when shrinking)."""
    if x.shape[-2:] == (size, size):
        return x
    shrinking = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def frame_to_network(x: torch.Tensor, size: int, box: int = MNIST_BOX) -> torch.Tensor:
    """Scale a float batch (N, C, H, W) so that its larger side is ``box`` px and centre it on a black
    ``size`` x ``size`` frame — the format of MNIST, for which the 28-px network was built (bilinear;
    antialiased when shrinking; the aspect ratio is kept).

    Why: the network's first convolutions are unpadded, so pixels at the frame's edge feed few of their
    windows, and the ±10 % shifts of the augmentation push strokes that touch the edge out of view. An
    8x8 digit upsampled to fill the whole frame has strokes on the edge; MNIST's digits have a 4-px margin.
    """
    height, width = x.shape[-2:]
    scale = box / max(height, width)
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    if (new_height, new_width) != (height, width):
        shrinking = new_height < height or new_width < width
        x = F.interpolate(x, size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=shrinking)
    top, left = (size - new_height) // 2, (size - new_width) // 2
    return F.pad(x, (left, size - new_width - left, top, size - new_height - top))
