"""PyTorch's side of `epicycle bench`: the same three workloads on the same models, batch sizes and threads.

    python scripts/bench_pytorch.py --workload training|distillation|inference
        [--layout channels_last|nchw] [--threads 2] [--warmup 3] [--repeats 7] [--steps 3]

Prints one JSON object: the workload, layout, batch size, the images per second of every repeat
(each repeat times `--steps` steps after `--warmup` untimed ones), their median, the process's
peak resident set size in MiB, and images per second of CPU time (all threads) over the timed steps. Run one workload per process so that the peak RSS is that workload's.

Workloads (synthetic batches, fixed seed; data preparation is not timed on either side):
- training: ResNet-20 (CIFAR, option A shortcuts), batch 128, cross-entropy, SGD (momentum 0.9,
  weight decay 5e-4): forward, backward, update.
- distillation: ResNet-56 teacher in eval mode without gradients + ResNet-20 student, batch 128;
  loss = cross-entropy + KL(T=4)·T² + MSE between a 1x1 conv + batch-norm regressor on the student's
  layer2 features and the teacher's layer2 features; SGD over the student and the regressor.
- inference: ResNet-20 in eval mode without gradients, batch 256.

Needs torch (the CPU wheel); scripts/torch_models.py defines the models.
"""
import argparse
import json
import pathlib
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import torch_models  # noqa: E402

BATCH = {"training": 128, "distillation": 128, "inference": 256}


def synthetic_batch(batch, layout):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (batch,), generator=generator)
    return images.contiguous(memory_format=layout), labels


def sgd(parameters):
    return torch.optim.SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4)


def training_step(layout):
    model = torch_models.build("resnet20", 3, 10).to(memory_format=layout).train()
    optimizer = sgd(model.parameters())
    images, labels = synthetic_batch(BATCH["training"], layout)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return step


def distillation_step(layout, temperature=4.0):
    teacher = torch_models.build("resnet56", 3, 10).to(memory_format=layout).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    student = torch_models.build("resnet20", 3, 10).to(memory_format=layout).train()
    regressor = nn.Sequential(nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32)).to(memory_format=layout).train()
    optimizer = sgd(list(student.parameters()) + list(regressor.parameters()))
    images, labels = synthetic_batch(BATCH["distillation"], layout)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            teacher_logits, teacher_features = teacher(images, capture=("layer2",))
        logits, features = student(images, capture=("layer2",))
        kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), F.softmax(teacher_logits / temperature, dim=1),
                      reduction="batchmean") * temperature ** 2
        hint = F.mse_loss(regressor(features["layer2"]), teacher_features["layer2"])
        (F.cross_entropy(logits, labels) + kd + hint).backward()
        optimizer.step()
    return step


def inference_step(layout):
    model = torch_models.build("resnet20", 3, 10).to(memory_format=layout).eval()
    images, _ = synthetic_batch(BATCH["inference"], layout)

    def step():
        with torch.no_grad():
            model(images)
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(BATCH), required=True)
    parser.add_argument("--layout", choices=["channels_last", "nchw"], default="channels_last")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layout = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    step = {"training": training_step, "distillation": distillation_step, "inference": inference_step}[args.workload](layout)
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
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "workload": args.workload, "layout": args.layout, "batch": BATCH[args.workload], "threads": args.threads,
        "images_per_second": statistics.median(rates), "samples": rates, "peak_rss_mib": peak,
        "images_per_cpu_second": BATCH[args.workload] * args.steps * args.repeats / cpu_seconds,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
