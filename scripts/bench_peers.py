"""The peers' side of `epicycle bench`: the same three workloads on the same models, batch sizes and threads,
in the frameworks a user would pick instead of Epicycle.

    python scripts/bench_peers.py --list-peers --workload training|distillation|inference
    python scripts/bench_peers.py --workload W --peer P --scratch DIR
        [--threads 2] [--warmup 3] [--repeats 7] [--steps 3]

`--list-peers` prints the workload's peers as JSON ([{"peer", "precision"}]). A measurement prints one
JSON object: the workload, peer, precision (fp32 or bf16), framework version and settings, batch size,
the images per second of every repeat (each repeat times `--steps` steps after `--warmup` untimed ones),
their median, the process's peak resident set size in MiB, and images per second of CPU time (all
threads) over the timed steps. Run one peer per process so that the peak RSS is that peer's. A peer that
is not installed or fails prints {"workload", "peer", "skipped": reason} instead and exits 0.

Peers (every workload unless stated):
- eager-channels_last, eager-nchw: PyTorch eager fp32 in either memory layout;
- autocast-bf16: PyTorch eager, channels-last, under torch.autocast("cpu", dtype=torch.bfloat16)
  (the backward pass outside it, as PyTorch recommends);
- compile (inference): torch.compile (inductor, default mode), channels-last, compiled before warm-up;
- onnxruntime (inference): the PyTorch twin exported to ONNX into --scratch (once: the first ONNX peer
  exports, in a child process so that torch is not in this one's peak RSS), CPU provider,
  intra-op threads = --threads, sequential execution;
- openvino-f32, openvino-bf16 (inference): that ONNX file compiled for the CPU with
  INFERENCE_PRECISION_HINT f32 / bf16, INFERENCE_NUM_THREADS = --threads and PERFORMANCE_HINT LATENCY
  (one stream, one synchronous request per batch, as the other peers run); the precision is read back
  from the compiled model, and a bf16 request the CPU cannot honour is skipped.

Workloads (synthetic batches, fixed seed; data preparation is not timed on either side):
- training: ResNet-20 (CIFAR, option A shortcuts), batch 128, cross-entropy, SGD (momentum 0.9,
  weight decay 5e-4): forward, backward, update.
- distillation: ResNet-56 teacher in eval mode without gradients + ResNet-20 student, batch 128;
  loss = cross-entropy + KL(T=4)·T² + MSE between a 1x1 conv + batch-norm regressor on the student's
  layer2 features and the teacher's layer2 features; SGD over the student and the regressor.
- inference: ResNet-20 in eval mode without gradients, batch 256.

Needs torch (the CPU wheel), onnx, onnxruntime and openvino (scripts/setup-python installs them);
scripts/torch_models.py defines the models.
"""
import argparse
import contextlib
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import time

BATCH = {"training": 128, "distillation": 128, "inference": 256}
TRAINING_PEERS = [("eager-channels_last", "fp32"), ("eager-nchw", "fp32"), ("autocast-bf16", "bf16")]
PEERS = {
    "training": TRAINING_PEERS,
    "distillation": TRAINING_PEERS,
    "inference": TRAINING_PEERS[:2] + [("compile", "fp32"), ("onnxruntime", "fp32"), ("openvino-f32", "fp32"),
                                       ("autocast-bf16", "bf16"), ("openvino-bf16", "bf16")],
}
ONNX_MODEL, ONNX_IMAGES = "resnet20.onnx", "resnet20-images.npy"


def torch_setup(threads):
    """Imports torch and the twins only for the peers that run them."""
    import torch
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    import torch_models
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return torch, torch_models


def synthetic_batch(torch, batch, layout):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (batch,), generator=generator)
    return images.contiguous(memory_format=layout), labels


def sgd(torch, parameters):
    return torch.optim.SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4)


def training_step(torch, torch_models, layout, precision):
    import torch.nn.functional as F
    model = torch_models.build("resnet20", 3, 10).to(memory_format=layout).train()
    optimizer = sgd(torch, model.parameters())
    images, labels = synthetic_batch(torch, BATCH["training"], layout)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with precision():
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
    return step


def distillation_step(torch, torch_models, layout, precision, temperature=4.0):
    import torch.nn as nn
    import torch.nn.functional as F
    teacher = torch_models.build("resnet56", 3, 10).to(memory_format=layout).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    student = torch_models.build("resnet20", 3, 10).to(memory_format=layout).train()
    regressor = nn.Sequential(nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32)).to(memory_format=layout).train()
    optimizer = sgd(torch, list(student.parameters()) + list(regressor.parameters()))
    images, labels = synthetic_batch(torch, BATCH["distillation"], layout)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with precision():
            with torch.no_grad():
                teacher_logits, teacher_features = teacher(images, capture=("layer2",))
            logits, features = student(images, capture=("layer2",))
            kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), F.softmax(teacher_logits / temperature, dim=1),
                          reduction="batchmean") * temperature ** 2
            hint = F.mse_loss(regressor(features["layer2"]), teacher_features["layer2"])
            loss = F.cross_entropy(logits, labels) + kd + hint
        loss.backward()
        optimizer.step()
    return step


def inference_step(torch, torch_models, layout, precision, compiled=False):
    model = torch_models.build("resnet20", 3, 10).to(memory_format=layout).eval()
    images, _ = synthetic_batch(torch, BATCH["inference"], layout)
    if compiled:
        model = torch.compile(model)

    def step():
        with torch.no_grad(), precision():
            model(images)
    if compiled:
        step()  # compiles, so that --warmup 0 does not time the compiler
    return step


def torch_peer(args):
    """PyTorch eager (either layout), autocast bf16, or torch.compile: (step, version, settings)."""
    torch, torch_models = torch_setup(args.threads)
    layout_name = "nchw" if args.peer == "eager-nchw" else "channels_last"
    layout = torch.contiguous_format if layout_name == "nchw" else torch.channels_last
    if args.peer == "autocast-bf16":
        precision, mode = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)), "torch.autocast(cpu, bfloat16)"
    else:
        precision, mode = contextlib.nullcontext, "fp32"
    make = {"training": training_step, "distillation": distillation_step, "inference": inference_step}[args.workload]
    if args.peer == "compile":
        step = make(torch, torch_models, layout, precision, compiled=True)
        mode = "torch.compile (inductor, default mode), fp32"
    else:
        step = make(torch, torch_models, layout, precision)
    kind = "compiled" if args.peer == "compile" else "eager"
    return step, f"PyTorch {torch.__version__}", f"{kind}, {layout_name}, {mode}, torch threads {torch.get_num_threads()}"


def export_onnx(scratch):
    """Writes the ResNet-20 twin (seed 0, eval mode) and the inference batch into `scratch`."""
    import numpy
    torch, torch_models = torch_setup(1)
    model = torch_models.build("resnet20", 3, 10).eval()
    images, _ = synthetic_batch(torch, BATCH["inference"], torch.contiguous_format)
    # The TorchScript exporter: the dynamo one needs onnxscript, which the venv does not carry.
    torch.onnx.export(model, (images,), str(scratch / ONNX_MODEL), dynamo=False,
                      input_names=["images"], output_names=["logits"])
    numpy.save(scratch / ONNX_IMAGES, images.numpy())


def onnx_inputs(args):
    """The exported model's path and the batch, exporting them on first use."""
    import numpy
    scratch = pathlib.Path(args.scratch)
    if not (scratch / ONNX_MODEL).exists() or not (scratch / ONNX_IMAGES).exists():
        result = subprocess.run([sys.executable, __file__, "--export-onnx", str(scratch)], capture_output=True, text=True)
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()] or ["no message"]
            raise RuntimeError(f"exporting the PyTorch twin to ONNX failed: {lines[-1].strip()}")
    return str(scratch / ONNX_MODEL), numpy.load(scratch / ONNX_IMAGES)


def onnxruntime_peer(args):
    import onnxruntime
    path, images = onnx_inputs(args)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: images}
    settings = (f"ONNX from the PyTorch twin, NCHW, {session.get_providers()[0]}, intra-op threads {args.threads}, "
                "inter-op 1, sequential, all graph optimizations, fp32")
    return (lambda: session.run(None, feed)), f"ONNX Runtime {onnxruntime.__version__}", settings


def openvino_peer(args):
    import openvino
    path, images = onnx_inputs(args)
    requested = "bf16" if args.peer == "openvino-bf16" else "f32"
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {
        "INFERENCE_PRECISION_HINT": requested, "INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"})
    effective = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if effective != requested:
        raise RuntimeError(f"OpenVINO compiled the model at {effective}, not the requested {requested} "
                           "(this CPU lacks the instructions)")
    request = compiled.create_infer_request()
    settings = (f"ONNX from the PyTorch twin, NCHW, CPU plugin, INFERENCE_PRECISION_HINT {effective}, "
                f"INFERENCE_NUM_THREADS {compiled.get_property('INFERENCE_NUM_THREADS')}, PERFORMANCE_HINT LATENCY, "
                f"NUM_STREAMS {compiled.get_property('NUM_STREAMS')}, synchronous requests")
    version = openvino.get_version().split("-")[0]
    return (lambda: request.infer({0: images})), f"OpenVINO {version}", settings


def measure(args, precision):
    """Builds the peer's step, then times it; any failure becomes a one-line skip reason."""
    peer = {"onnxruntime": onnxruntime_peer, "openvino-f32": openvino_peer, "openvino-bf16": openvino_peer}.get(args.peer, torch_peer)
    try:
        step, version, settings = peer(args)
        for _ in range(args.warmup):
            step()
        rates = []
        cpu_start = time.process_time()
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates.append(BATCH[args.workload] * args.steps / (time.perf_counter() - start))
        cpu_seconds = time.process_time() - cpu_start
    except Exception as error:  # noqa: BLE001 - a peer that fails is reported and skipped, never fatal
        reason = (str(error).strip().splitlines() or [""])[0]
        return {"workload": args.workload, "peer": args.peer, "skipped": f"{type(error).__name__}: {reason}"[:300]}
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "workload": args.workload, "peer": args.peer, "precision": precision, "version": version, "settings": settings,
        "batch": BATCH[args.workload], "threads": args.threads,
        "images_per_second": statistics.median(rates), "samples": rates, "peak_rss_mib": peak,
        "images_per_cpu_second": BATCH[args.workload] * args.steps * args.repeats / cpu_seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(BATCH))
    parser.add_argument("--peer", default="eager-channels_last",
                        choices=sorted({name for peers in PEERS.values() for name, _ in peers}))
    parser.add_argument("--list-peers", action="store_true", help="print the workload's peers as JSON")
    parser.add_argument("--scratch", default=".", help="folder for the ONNX export (ONNX peers only)")
    parser.add_argument("--export-onnx", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if args.export_onnx:
        export_onnx(pathlib.Path(args.export_onnx))
        return
    if args.workload is None:
        parser.error("--workload is required")
    if args.list_peers:
        print(json.dumps([{"peer": name, "precision": precision} for name, precision in PEERS[args.workload]]))
        return
    precision = dict(PEERS[args.workload]).get(args.peer)
    if precision is None:
        parser.error(f"--peer {args.peer} does not run --workload {args.workload}: "
                     f"use one of {', '.join(name for name, _ in PEERS[args.workload])}")
    if not (1 <= args.threads <= 1024 and 0 <= args.warmup <= 1000 and 1 <= args.repeats <= 1000 and 1 <= args.steps <= 1000):
        parser.error("--threads is 1…1024, --warmup 0…1000, --repeats and --steps 1…1000")
    print(json.dumps(measure(args, precision)))


if __name__ == "__main__":
    main()
