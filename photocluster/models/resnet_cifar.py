"""CIFAR-style ResNet-18 with MMDC's two heads (clustering embedding and rotation prediction).

Built from torchvision's ``resnet18`` builder, adapted for small images the way MMDC (Shiran & Weinshall,
ICPR 2020) and most CIFAR work do: the 7x7 stride-2 stem becomes a 3x3 stride-1 convolution and the stem's
max-pool is removed, so a 32-px image keeps a 4x4 map before the global average pool.

The authors' code keeps a 2x2 max-pool after the 3x3 stem; ``stem_pool=True`` offers that variant (it
quarters the compute and is the cheaper choice on a CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ROTATION_CLASSES = 4


class TwoHeadClusteringNet(nn.Module):
    """A backbone followed by MMDC's two linear heads.

    ``forward(x)`` returns the L2-normalised k-dim embedding (the clustering head), ``forward(x,
    head="rotation")`` the 4 rotation logits, ``forward(x, head="features")`` the penultimate features.

    Parameters
    ----------
    backbone:
        Maps an image batch (N, C, H, W) to flat features (N, feature_dim).
    feature_dim:
        Width of the backbone output.
    embedding_dim:
        Width of the clustering head (MMDC: the number of clusters k, with one-hot Gaussian means).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, embedding_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.cluster_head = nn.Linear(feature_dim, embedding_dim)
        self.rotation_head = nn.Linear(feature_dim, ROTATION_CLASSES)
        self.feature_dim = feature_dim
        self.embedding_dim = embedding_dim

    def forward(self, x: torch.Tensor, head: str = "cluster") -> torch.Tensor:
        features = self.backbone(x)
        if head == "cluster":
            # The paper's network output lives on the unit sphere, like its targets; the epsilon keeps
            # the gradient finite for an all-zero output (possible right after initialisation).
            return F.normalize(self.cluster_head(features), dim=1, eps=1e-8)
        if head == "rotation":
            return self.rotation_head(features)
        if head == "features":
            return features
        raise ValueError(f"unknown head {head!r}; choose cluster, rotation or features")


def init_weights_like_authors(module: nn.Module) -> None:
    """Initialise as the MMDC authors' code does: He-normal (fan-in) convolutions, BN weight 1 / bias 0,
    linear layers N(0, 0.01) with zero bias (a small head keeps the initial outputs close together)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def cifar_resnet18(
    embedding_dim: int = 10, in_channels: int = 3, stem_pool: bool = False, width: int = 64
) -> TwoHeadClusteringNet:
    """CIFAR-style ResNet-18 with a k-dim L2-normalised head and a 4-way rotation head.

    Parameters
    ----------
    embedding_dim:
        Output width of the clustering head (number of clusters).
    in_channels:
        1 for grey images, 3 for RGB.
    stem_pool:
        Keep a 2x2 max-pool after the stem (the authors' code); False follows the CIFAR ResNet the paper
        names (no pooling in the stem).
    width:
        Channels of the first stage (64 in ResNet-18; the later stages double it). Smaller widths are a
        documented CPU economy, never the default.
    """
    # imported here: torchvision takes seconds to import, and the VGG path (digits) never needs it
    from torchvision.models import resnet18

    if width == 64:
        net = resnet18(weights=None)
    else:
        # torchvision's builder has no width knob; rebuild the same BasicBlock layout at another width.
        net = _resnet18_at_width(width)
    net.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.MaxPool2d(kernel_size=2, stride=2, padding=1) if stem_pool else nn.Identity()
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()  # torchvision's forward flattens after the average pool already
    model = TwoHeadClusteringNet(net, feature_dim, embedding_dim)
    init_weights_like_authors(model)
    return model


def _resnet18_at_width(width: int) -> nn.Module:
    from torchvision.models.resnet import BasicBlock, ResNet

    class _NarrowResNet(ResNet):
        def __init__(self) -> None:
            super().__init__(BasicBlock, [2, 2, 2, 2])
            self.inplanes = width
            self.bn1 = nn.BatchNorm2d(width)
            self.layer1 = self._make_layer(BasicBlock, width, 2)
            self.layer2 = self._make_layer(BasicBlock, width * 2, 2, stride=2)
            self.layer3 = self._make_layer(BasicBlock, width * 4, 2, stride=2)
            self.layer4 = self._make_layer(BasicBlock, width * 8, 2, stride=2)
            self.fc = nn.Linear(width * 8, 1000)

    return _NarrowResNet()
