"""Test top-1 of an Epicycle checkpoint from what it stores alone (h5py, PyTorch and the IDX test files):
    python scripts/eval_checkpoint.py CKPT.h5 [DATASET_FOLDER]   (default /usr/share/datasets/<its dataset>)"""
import gzip, pathlib, sys
import h5py, numpy as np, torch
sys.path.insert(0, str(pathlib.Path(__file__).parent))
import torch_models  # noqa: E402  the PyTorch twins of Epicycle's models

with h5py.File(sys.argv[1], "r") as f:
    spec = dict(line.split(": ", 1) for line in f["model"].attrs["architecture"].decode().splitlines() if ": " in line)
    data = f["data"]
    mean, std, classes = data["mean"][:], data["std"][:], list(data["classes"][:])
    height, width, channels = (int(data.attrs[key]) for key in ("height", "width", "channels"))
    folder = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/datasets/" + data.attrs["dataset"].decode()
    state = {name: torch.from_numpy(np.array(d)) for group in ("parameters", "buffers") for name, d in f["model"][group].items()}
model = torch_models.build(spec["architecture"], channels, len(classes), spec.get("shortcut", "A").strip("'\""))
model.load_state_dict(state)
model.eval()
read = lambda name: gzip.open(f"{folder}/{name}.gz").read()  # noqa: E731
images = np.frombuffer(read("t10k-images-idx3-ubyte"), np.uint8, offset=16).reshape(-1, height, width, channels)
labels = np.frombuffer(read("t10k-labels-idx1-ubyte"), np.uint8, offset=8)
keep = np.isin(labels, classes)  # output i stands for the dataset's label classes[i]
targets = torch.tensor([classes.index(label) for label in labels[keep]])
# (pixel / 255 − mean) / std, in float32 in the order Epicycle's loader rounds it
x = torch.from_numpy((images[keep].astype(np.float32) - mean * 255) * (1 / (std * 255))).permute(0, 3, 1, 2)
with torch.no_grad():
    predicted = torch.cat([model(batch).argmax(1) for batch in x.split(500)])
print(f"{len(targets)} images, top-1 {100 * (predicted == targets).double().mean().item():.4f} %")
