"""Moves models between Epicycle checkpoints and PyTorch, with h5py; no Epicycle code involved.

    python scripts/checkpoint_interop.py logits CKPT.h5 [--input X.f32 --shape N,H,W,C] [--output Y.f32]
        Loads an Epicycle checkpoint into the equivalent PyTorch model (scripts/torch_models.py), runs
        it in eval mode on a batch and prints (or writes) the logits. Without --input it uses a random
        batch from a fixed seed.
    python scripts/checkpoint_interop.py export STATE_DICT.pt OUT.h5 --architecture resnet56
            [--input-channels 3] [--num-classes 10] [--shortcut A]
        Writes a PyTorch state_dict (a ResNet-CIFAR / WRN / plain CNN with matching names, e.g. a
        teacher trained elsewhere) as an Epicycle checkpoint that `epicycle distill --teacher` accepts.

Batches in .f32 files are raw little-endian float32, NHWC (Epicycle's activation layout); the script
permutes to NCHW for PyTorch. Needs torch, h5py and numpy.
"""
import argparse
import datetime
import os
import pathlib
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import torch_models  # noqa: E402

FORMAT = "epicycle-checkpoint"
FORMAT_VERSION = 1


def parse_spec(text):
    """Reads the model spec Epicycle stores as YAML text: flat `key: value` lines."""
    spec = {}
    for line in text.splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            key, value = line.split(":", 1)
            spec[key.strip()] = value.strip().strip("'\"")
    return spec


def attribute_text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def text(value):
    """Text attributes as Epicycle writes them: fixed-length UTF-8, covered by HDF5's checksums."""
    return np.bytes_(value.encode())


def load_epicycle(path):
    with h5py.File(path, "r") as f:
        if attribute_text(f.attrs.get("format", "")) != FORMAT:
            sys.exit(f"{path}: not an Epicycle checkpoint (format attribute is {f.attrs.get('format')!r})")
        spec = parse_spec(attribute_text(f["model"].attrs["architecture"]))
        state = {}
        for group in ("parameters", "buffers"):
            for name, dataset in f["model"][group].items():
                state[name] = torch.from_numpy(np.array(dataset))
    model = torch_models.build(spec["architecture"], int(spec["input_channels"]), int(spec["num_classes"]),
                               shortcut=spec.get("shortcut", "A"), dropout=float(spec.get("dropout", 0)))
    model.load_state_dict(state, strict=True)
    return model.eval(), spec


def logits_command(args):
    model, spec = load_epicycle(args.checkpoint)
    if args.input:
        shape = [int(v) for v in args.shape.split(",")]
        batch = np.fromfile(args.input, dtype="<f4").reshape(shape)
    else:
        batch = np.random.default_rng(0).standard_normal((4, 32, 32, int(spec["input_channels"]))).astype("f4")
    with torch.no_grad():
        logits = model(torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()).numpy()
    if args.output:
        logits.astype("<f4").tofile(args.output)
    else:
        np.set_printoptions(precision=5, suppress=True)
        print(logits)


def export_command(args):
    state = torch.load(args.state_dict, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        state = state.state_dict()
    reference = torch_models.build(args.architecture, args.input_channels, args.num_classes, shortcut=args.shortcut)
    reference.load_state_dict(state, strict=True)  # names and shapes must be those of Epicycle's model
    spec_text = (f"architecture: {args.architecture}\ninput_channels: {args.input_channels}\n"
                 f"num_classes: {args.num_classes}\nshortcut: {args.shortcut}\ndropout: 0\n")
    parameter_names = {name for name, _ in reference.named_parameters()}
    out = pathlib.Path(args.output)
    # Write beside the target and rename, so a failed export never leaves a half-written checkpoint.
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    os.close(handle)
    try:
        with h5py.File(temporary, "w", track_order=True) as f:
            f.attrs["format"] = text(FORMAT)
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["created"] = text(datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
            f.attrs["software_version"] = text(f"checkpoint_interop.py (torch {torch.__version__})")
            model = f.create_group("model", track_order=True)
            model.attrs["architecture"] = text(spec_text)
            model.attrs["num_classes"] = np.int64(args.num_classes)
            parameters = model.create_group("parameters", track_order=True)
            buffers = model.create_group("buffers", track_order=True)
            for name, tensor in reference.state_dict().items():
                group = parameters if name in parameter_names else buffers
                array = tensor.detach().numpy()
                group.create_dataset(name, data=array.astype("<i8" if array.dtype == np.int64 else "<f4"))
        os.replace(temporary, out)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    print(f"wrote {out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    logits = commands.add_parser("logits", help="PyTorch logits of an Epicycle checkpoint")
    logits.add_argument("checkpoint")
    logits.add_argument("--input", help="raw little-endian float32 NHWC batch")
    logits.add_argument("--shape", help="N,H,W,C of --input")
    logits.add_argument("--output", help="write logits as raw float32 instead of printing")
    logits.set_defaults(run=logits_command)
    export = commands.add_parser("export", help="PyTorch state_dict to an Epicycle checkpoint")
    export.add_argument("state_dict")
    export.add_argument("output")
    export.add_argument("--architecture", required=True)
    export.add_argument("--input-channels", type=int, default=3)
    export.add_argument("--num-classes", type=int, default=10)
    export.add_argument("--shortcut", default="A", choices=["A", "B"])
    export.set_defaults(run=export_command)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
