"""The golden-fixture format the make_*_fixtures.py scripts share: <name>.json, a manifest of tensor
name -> shape and offset (in floats) into <name>.bin, the tensors as one little-endian float32 blob,
beside `settings`, the case's numbers. TestSupport's fixture reader loads it."""
import json

import torch


def write_fixture(folder, name, tensors, settings):
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"settings": settings, "tensors": {}}
    blob = bytearray()
    offset = 0
    for key, value in tensors.items():
        value = value.detach().to(torch.float32).contiguous()
        manifest["tensors"][key] = {"shape": list(value.shape), "offset": offset}
        blob += value.numpy().astype("<f4").tobytes()
        offset += value.numel()
    (folder / f"{name}.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (folder / f"{name}.bin").write_bytes(bytes(blob))
