"""Reference for Epicycle's image fitting (Sources/EpicycleData/ImageResizing.swift): torchvision's
Resize(size) + CenterCrop(size), with the resize done by torch's antialiased bilinear interpolation
(what torchvision.transforms.v2.functional.resize does on tensors, and PIL's BILINEAR filter in float).

    python resize_reference.py PIXELS.bin HEIGHT WIDTH CHANNELS SIZE   # prints the fitted bytes as JSON

PIXELS.bin holds HEIGHT × WIDTH × CHANNELS bytes, rows top down, channels interleaved.
"""
import json
import sys

import torch

path, height, width, channels, size = sys.argv[1], *map(int, sys.argv[2:6])
with open(path, "rb") as file:
    pixels = torch.frombuffer(bytearray(file.read()), dtype=torch.uint8).reshape(height, width, channels)
image = pixels.permute(2, 0, 1)[None].float()  # [1, C, H, W]
# torchvision's Resize(int): the shorter side becomes size, the longer int(size * longer / shorter).
if width <= height:
    resized = (int(size * height / width), size)
else:
    resized = (size, int(size * width / height))
scaled = torch.nn.functional.interpolate(image, size=resized, mode="bilinear", antialias=True, align_corners=False)
# torchvision's CenterCrop: offsets round half to even.
top, left = round((resized[0] - size) / 2.0), round((resized[1] - size) / 2.0)
cropped = scaled[0, :, top:top + size, left:left + size].permute(1, 2, 0)
print(json.dumps(cropped.round().clamp(0, 255).to(torch.uint8).flatten().tolist()))
