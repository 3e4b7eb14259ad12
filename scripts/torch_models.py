"""PyTorch twins of Epicycle's model zoo, with identical state_dict names and shapes.

Used by the golden-fixture script and the checkpoint interop script; never by Epicycle itself.
Models take NCHW input like any PyTorch model; Epicycle's activations are NHWC, so callers permute.

- ResNet for CIFAR, depth 6n+2 (He et al. 2016, "Deep Residual Learning", section 4.2): option A
  shortcuts subsample and zero-pad channels; option B uses a 1x1 convolution + batch norm.
  Width multiplier as in RepDistiller's resnet8x4/resnet32x4: stages 16W/32W/64W, stem max(16, 8W).
- Wide ResNet WRN-d-k (Zagoruyko & Komodakis 2016): pre-activation blocks, 1x1 shortcut convolution
  where the width changes.
- A small plain CNN: three conv-BN-ReLU stages (max-pooling after the first two), global average
  pooling and a linear head.
"""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F


def run_stages(model, x, features):
    """Runs layer1..layer3 block by block, recording each block's and each stage's output."""
    for name in ["layer1", "layer2", "layer3"]:
        for b, block in enumerate(getattr(model, name)):
            x = block(x)
            features[f"{name}.{b}"] = x
        features[name] = x
    return x


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, shortcut):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.in_planes, self.planes, self.kind = stride, in_planes, planes, shortcut
        self.projects = stride != 1 or in_planes != planes
        if self.projects and shortcut == "B":
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def shortcut(self, x):
        if not self.projects:
            return x
        if self.kind == "B":
            return self.downsample(x)
        x = x[:, :, ::self.stride, ::self.stride]
        extra = self.planes - self.in_planes
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    def __init__(self, depth, in_channels, num_classes, width=1, shortcut="A"):
        super().__init__()
        assert (depth - 2) % 6 == 0, "depth must be 6n+2"
        n = (depth - 2) // 6
        stem = max(16, 8 * width)
        widths = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        in_planes = stem
        for index, (planes, stride) in enumerate(zip(widths, [1, 2, 2])):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if b == 0 else 1, shortcut))
                in_planes = planes
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x, capture=()):
        features = {}
        x = F.relu(self.bn1(self.conv1(x)))
        features["stem"] = x
        x = run_stages(self, x, features).mean(dim=(2, 3))
        features["pool"] = x
        logits = self.fc(x)
        return (logits, {k: features[k] for k in capture}) if capture else logits


class WideBlock(nn.Module):
    def __init__(self, in_planes, planes, stride, dropout):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal = in_planes == planes and stride == 1
        if not self.equal:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        residual = x if self.equal else self.shortcut(activated)
        out = self.conv1(activated)
        out = F.relu(self.bn2(out))
        out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + residual


class WideResNet(nn.Module):
    def __init__(self, depth, widen, in_channels, num_classes, dropout=0.0):
        super().__init__()
        assert (depth - 4) % 6 == 0, "depth must be 6n+4"
        n = (depth - 4) // 6
        widths = [16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        in_planes = 16
        for index, (planes, stride) in enumerate(zip(widths, [1, 2, 2])):
            blocks = []
            for b in range(n):
                blocks.append(WideBlock(in_planes, planes, stride if b == 0 else 1, dropout))
                in_planes = planes
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x, capture=()):
        features = {}
        x = self.conv1(x)
        features["stem"] = x
        x = F.relu(self.bn(run_stages(self, x, features))).mean(dim=(2, 3))
        features["pool"] = x
        logits = self.fc(x)
        return (logits, {k: features[k] for k in capture}) if capture else logits


class ConvBNReLU(nn.Module):
    def __init__(self, in_planes, planes):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, planes, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(planes)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class PlainCNN(nn.Module):
    def __init__(self, in_channels, num_classes, width=1):
        super().__init__()
        widths = [32 * width, 64 * width, 128 * width]
        self.layer1 = ConvBNReLU(in_channels, widths[0])
        self.layer2 = ConvBNReLU(widths[0], widths[1])
        self.layer3 = ConvBNReLU(widths[1], widths[2])
        self.fc = nn.Linear(widths[2], num_classes)

    def forward(self, x, capture=()):
        features = {}
        x = F.max_pool2d(self.layer1(x), 2)
        features["layer1"] = x
        x = F.max_pool2d(self.layer2(x), 2)
        features["layer2"] = x
        x = self.layer3(x)
        features["layer3"] = x
        x = x.mean(dim=(2, 3))
        features["pool"] = x
        logits = self.fc(x)
        return (logits, {k: features[k] for k in capture}) if capture else logits


def build(architecture, in_channels, num_classes, shortcut="A", dropout=0.0):
    """Builds a model from an Epicycle architecture name: resnet20, resnet8x4, wrn-16-2, plain-cnn."""
    if m := re.fullmatch(r"resnet(\d+)(?:x(\d+))?", architecture):
        return ResNetCIFAR(int(m[1]), in_channels, num_classes, int(m[2] or 1), shortcut)
    if m := re.fullmatch(r"wrn-(\d+)-(\d+)", architecture):
        return WideResNet(int(m[1]), int(m[2]), in_channels, num_classes, dropout)
    if m := re.fullmatch(r"plain-cnn(?:x(\d+))?", architecture):
        return PlainCNN(in_channels, num_classes, int(m[1] or 1))
    raise ValueError(f"unknown architecture {architecture!r}")
