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
- VGG-8/11/13 with batch norm as RepDistiller trains it on CIFAR (Simonyan & Zisserman 2015; stage
  widths of configurations S, A, B): five stages of conv3x3 (with bias)-BN-ReLU, max-pooling after the
  first three, global average pooling, one linear layer. Width multiplier scales every stage.
- MobileNetV2 for CIFAR (Sandler et al. 2018) as RepDistiller's mobilenetv2_T_w with T = 6: stride-2
  stem, inverted residual blocks with ReLU, a 1x1 convolution to 1280 channels, average pooling, a
  linear classifier in a one-element Sequential. Width multiplier as `int(c * width)`.
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


VGG_STAGES = {
    8: [[64], [128], [256], [512], [512]],
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
}


def conv_bn_relu(in_planes, planes, kernel=3, stride=1, groups=1, bias=False):
    """Indices 0, 1, 2 of an nn.Sequential: the state_dict names RepDistiller's models use."""
    return [nn.Conv2d(in_planes, planes, kernel, stride, kernel // 2, groups=groups, bias=bias),
            nn.BatchNorm2d(planes), nn.ReLU()]


class VGG(nn.Module):
    def __init__(self, depth, in_channels, num_classes, width=1.0):
        super().__init__()
        planes = in_channels
        for index, widths in enumerate(VGG_STAGES[depth]):
            layers = []
            for w in widths:
                layers += conv_bn_relu(planes, int(w * width), bias=True)
                planes = int(w * width)
            setattr(self, f"block{index}", nn.Sequential(*layers))
        self.classifier = nn.Linear(planes, num_classes)

    def forward(self, x, capture=()):
        features = {}
        for index in range(5):
            x = getattr(self, f"block{index}")(x)
            features[f"block{index}"] = x
            if index < 3:
                x = F.max_pool2d(x, 2)
        x = x.mean(dim=(2, 3))
        features["pool"] = x
        logits = self.classifier(x)
        return (logits, {k: features[k] for k in capture}) if capture else logits


class InvertedResidual(nn.Module):
    def __init__(self, in_planes, planes, stride, expansion):
        super().__init__()
        hidden = in_planes * expansion
        self.conv = nn.Sequential(
            *conv_bn_relu(in_planes, hidden, kernel=1),
            *conv_bn_relu(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, planes, 1, bias=False), nn.BatchNorm2d(planes))
        self.residual = stride == 1 and in_planes == planes

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


MOBILENETV2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                      (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    def __init__(self, in_channels, num_classes, width=1.0):
        super().__init__()
        planes = int(32 * width)
        self.conv1 = nn.Sequential(*conv_bn_relu(in_channels, planes, stride=2))
        self.blocks = nn.ModuleList()
        for expansion, channels, count, stride in MOBILENETV2_STAGES:
            blocks = []
            for b in range(count):
                blocks.append(InvertedResidual(planes, int(channels * width), stride if b == 0 else 1, expansion))
                planes = int(channels * width)
            self.blocks.append(nn.Sequential(*blocks))
        last = int(1280 * width) if width > 1 else 1280
        self.conv2 = nn.Sequential(*conv_bn_relu(planes, last, kernel=1))
        self.classifier = nn.Sequential(nn.Linear(last, num_classes))

    def forward(self, x, capture=()):
        x = self.conv1(x)
        features = {"stem": x}
        for s, stage in enumerate(self.blocks):
            for b, block in enumerate(stage):
                x = block(x)
                features[f"blocks.{s}.{b}"] = x
            features[f"blocks.{s}"] = x
        x = self.conv2(x).mean(dim=(2, 3))
        features["pool"] = x
        logits = self.classifier(x)
        return (logits, {k: features[k] for k in capture}) if capture else logits


def build(architecture, in_channels, num_classes, shortcut="A", dropout=0.0):
    """Builds a model from an Epicycle architecture name: resnet20, resnet8x4, wrn-16-2, plain-cnn, vgg13,
    mobilenetv2x0.5."""
    if m := re.fullmatch(r"resnet(\d+)(?:x(\d+))?", architecture):
        return ResNetCIFAR(int(m[1]), in_channels, num_classes, int(m[2] or 1), shortcut)
    if m := re.fullmatch(r"wrn-(\d+)-(\d+)", architecture):
        return WideResNet(int(m[1]), int(m[2]), in_channels, num_classes, dropout)
    if m := re.fullmatch(r"plain-cnn(?:x(\d+))?", architecture):
        return PlainCNN(in_channels, num_classes, int(m[1] or 1))
    if m := re.fullmatch(r"vgg(\d+)(?:x([\d.]+))?", architecture):
        return VGG(int(m[1]), in_channels, num_classes, float(m[2] or 1))
    if m := re.fullmatch(r"mobilenetv2(?:x([\d.]+))?", architecture):
        return MobileNetV2(in_channels, num_classes, float(m[1] or 1))
    raise ValueError(f"unknown architecture {architecture!r}")
