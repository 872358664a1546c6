"""The CCNN network (Hsu & Lin, IEEE TMM 2017, seed 004) and its simplified variant for digit-sized images.

Full CCNN (Sec. III and Table V of the paper)::

    AlexNet conv1–conv5 (ImageNet pre-trained; pool5 dropped so the map stays 13×13 at 224 px)
    → adaptation layer: conv6 3×3 (6144) → conv7 3×3 (2048) → conv8 3×3 (k)      [ReLU after each]
    → global max-pool over the map (k values: "local salient features")
    → FC9 (k → k, ReLU): the feature h used for clustering
    → "Softmax" layer (k → k) + softmax: the prediction trained against the one-hot pseudo label.

Conv1–5 can be swapped for the convolutional trunk of any backbone of
:data:`photocluster.features.pretrained.BACKBONES` (its ``trunk``: mobilenet_v2's ``features``, ResNet up to
``layer4``, …), as the paper allows ("Conv1–5 may be swapped for another backbone").

Simplified CCNN for digits (Fig. 4: "removing some convolution layers to fit the data type"; the figure's
exact widths are not in the text, so this is our reading): two 5×5 conv + max-pool stages instead of
AlexNet conv1–5, a two-conv adaptation layer (128 channels, then k), the same global max-pool, FC9 and
softmax head. It is trained from scratch (no ImageNet weights exist for it), like the paper's MNIST run, unless
a local state dict of its trunk is given (``scripts/pretrain_digit_trunk.py`` makes one from Fashion-MNIST).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn



class CCNNNet(nn.Module):
    """Trunk + adaptation convs + global max-pool + FC9 + softmax layer.

    Parameters
    ----------
    trunk:
        Convolutional feature extractor returning a (B, C, H, W) map.
    trunk_channels:
        C of the trunk's output.
    n_clusters:
        k: channels of the last adaptation conv, width of FC9 and of the softmax layer.
    adapt_channels:
        Widths of the adaptation convs before the final k-channel conv (paper: 6144, 2048).
    """

    def __init__(self, trunk: nn.Module, trunk_channels: int, n_clusters: int, adapt_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.trunk = trunk
        layers: list[nn.Module] = []
        channels = trunk_channels
        for width in (*adapt_channels, n_clusters):
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = width
        self.adaptation = nn.Sequential(*layers)
        self.fc9 = nn.Linear(n_clusters, n_clusters)
        self.softmax_layer = nn.Linear(n_clusters, n_clusters)
        self.n_clusters = n_clusters
        #: L2-normalise h (an option, not in the paper: see photocluster.methods.ccnn)
        self.normalize_features = False
        _init_new_layers(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """FC9 output h (B, k): what CCNN clusters."""
        return self.features_from_map(self.trunk(x))

    def features_from_map(self, maps: torch.Tensor) -> torch.Tensor:
        """FC9 output h from the trunk's output (a frozen trunk's maps can be computed once and kept)."""
        salient = torch.amax(self.adaptation(maps), dim=(2, 3))  # global max-pool
        h = torch.relu(self.fc9(salient))
        if self.normalize_features:
            h = torch.nn.functional.normalize(h, dim=1, eps=1e-12)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (B, k)."""
        return torch.softmax(self.softmax_layer(self.features(x)), dim=1)

    def forward_from_map(self, maps: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (B, k) from the trunk's output."""
        return torch.softmax(self.softmax_layer(self.features_from_map(maps)), dim=1)

    def head_parameter_names(self) -> list[str]:
        """Parameters after the feature h (they do not change h, so drift compensation ignores them)."""
        return [f"softmax_layer.{name}" for name, _ in self.softmax_layer.named_parameters()]


def _init_new_layers(net: CCNNNet) -> None:
    """Initialise the layers CCNN adds (the paper does not say how).

    He-normal (fan-out) convs keep the activations' spread through the ReLU stack; PyTorch's default
    (uniform, a = √5) shrinks it so much that random-init features all but coincide. FC9 starts as the
    identity: its input is non-negative (ReLU, then max-pool), so h starts equal to the salient features and
    no clustering dimension is dead from the start, which a random FC9 + ReLU would do to about half of them.
    """
    for module in net.adaptation.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    with torch.no_grad():
        net.fc9.weight.copy_(torch.eye(net.n_clusters))
        net.fc9.bias.zero_()


def _digit_trunk(in_channels: int) -> nn.Sequential:
    trunk = nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )
    for module in trunk.modules():
        if isinstance(module, nn.Conv2d):  # trained from scratch: He init, as for the adaptation convs
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return trunk


def _digit_trunk_with_weights(in_channels: int, weights: str | Path | None) -> nn.Sequential:
    """The digit trunk, from scratch unless ``weights`` names a local state dict of it.

    No published weights exist for this trunk, so "default" and "none" both mean random init. A file lets
    the CCNN protocol (trunk pre-trained on another labelled data set, then clustering a new one) be run
    offline: ``scripts/pretrain_digit_trunk.py`` writes one from Fashion-MNIST.
    """
    trunk = _digit_trunk(in_channels)
    if weights is None or (isinstance(weights, str) and weights.lower() in ("none", "default")):
        return trunk
    from photocluster.features.pretrained import load_fitting_state, load_state_dict_file

    state = load_state_dict_file(Path(weights).expanduser())
    load_fitting_state(trunk, state, f"weights {weights} do not fit the digit CCNN trunk")
    return trunk


def build_ccnn_net(
    n_clusters: int,
    network: str = "ccnn",
    backbone: str = "alexnet",
    weights: str | Path | None = "default",
    in_channels: int = 3,
    adapt_channels: tuple[int, ...] = (6144, 2048),
    progress: bool = True,
) -> CCNNNet:
    """Build a CCNN network.

    Parameters
    ----------
    n_clusters:
        k.
    network:
        "ccnn" (pre-trained trunk, 224 px input) or "digits" (simplified CCNN, native resolution,
        random init, ``in_channels`` input channels).
    backbone:
        Trunk of the full network: a name of :data:`photocluster.features.pretrained.BACKBONES` ("alexnet" is
        the paper's; its trunk is conv1–conv5 without pool5), cut by the registry's ``trunk``.
    weights:
        Trunk weights, as :func:`photocluster.features.pretrained.build_backbone` takes them; for "digits"
        only a local state dict of the digit trunk counts ("default" = "none" = random init).
    in_channels:
        Input channels of the digit network (the full network always takes RGB).
    adapt_channels:
        Adaptation conv widths before the k-channel conv: (6144, 2048) for "ccnn" in the paper; the digit
        network uses (128,) unless told otherwise.
    progress:
        Progress bar while downloading weights.
    """
    if n_clusters < 2:
        raise ValueError("n_clusters must be at least 2")
    if network == "digits":
        return CCNNNet(_digit_trunk_with_weights(in_channels, weights), 64, n_clusters, tuple(adapt_channels))
    if network != "ccnn":
        raise ValueError(f"unknown CCNN network {network!r}; choose ccnn or digits")
    # Imported here: torchvision takes seconds to import, and the digit network does not need it.
    from photocluster.features.pretrained import BACKBONES, build_backbone

    model = build_backbone(backbone, weights=weights, progress=progress)  # unknown names: a one-line UsageError
    trunk, channels = BACKBONES[str(backbone).lower()].trunk(model)
    return CCNNNet(trunk, channels, n_clusters, tuple(adapt_channels))
