"""The small 4-block VGG that MMDC uses for digit-sized grey images, with the same two heads as the ResNet.

Each block is a 3x3 convolution (no bias), batch norm, ReLU and a 2x2 max-pool (paper, Section IV-A);
the authors' code uses 32, 64, 128 and 256 channels and a 32-px input, so the flattened features are
256 x 2 x 2 = 1,024 wide. Other input sizes (a multiple of 16) change only that width.
"""

from __future__ import annotations

from torch import nn

from photocluster.models.resnet_cifar import TwoHeadClusteringNet, init_weights_like_authors

#: channels of the four blocks in the authors' code
VGG_SMALL_CHANNELS = (32, 64, 128, 256)


def small_vgg(
    embedding_dim: int = 10, in_channels: int = 1, input_size: int = 32, width: float = 1.0
) -> TwoHeadClusteringNet:
    """Small VGG (4 conv-BN-ReLU-max-pool blocks) with a k-dim L2-normalised head and a rotation head.

    Parameters
    ----------
    embedding_dim:
        Output width of the clustering head (number of clusters).
    in_channels:
        1 for grey images, 3 for RGB.
    input_size:
        Side of the (square) network input; must be a multiple of 16 (four 2x2 pools).
    width:
        Multiplier on the channel counts (1.0 = the authors' 32/64/128/256). Below 1 is a documented CPU
        economy of the quick protocol, never the default.
    """
    if input_size % 16 != 0 or input_size < 16:
        raise ValueError(f"small_vgg needs an input side that is a multiple of 16, got {input_size}")
    channels = [max(4, int(round(c * width))) for c in VGG_SMALL_CHANNELS]
    layers: list[nn.Module] = []
    previous = in_channels
    for c in channels:
        layers += [
            nn.Conv2d(previous, c, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        ]
        previous = c
    layers.append(nn.Flatten(1))
    final_side = input_size // 16
    feature_dim = channels[-1] * final_side * final_side
    model = TwoHeadClusteringNet(nn.Sequential(*layers), feature_dim, embedding_dim)
    init_weights_like_authors(model)
    return model
