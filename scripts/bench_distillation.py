"""PyTorch's speed on Epicycle's distillation benchmark step (DistillationBenchmark in
Tests/EpicycleDistillationTests/BenchmarkTests.swift), to run in the same sitting:
    python scripts/bench_distillation.py
ResNet-56 teacher in eval mode under no_grad, ResNet-20 student in train mode, batch 128 of 32x32x3,
cross-entropy + KD (T = 4) + one FitNets hint at layer2 (1x1 conv + BN regressor, MSE), SGD with
momentum over student and regressor. 2 warm-up steps, 10 timed.
"""
import pathlib
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import torch_models  # noqa: E402

torch.manual_seed(0)
teacher = torch_models.build("resnet56", 3, 10).eval()
student = torch_models.build("resnet20", 3, 10).train()
regressor = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 1, bias=False), torch.nn.BatchNorm2d(32))
parameters = list(student.parameters()) + list(regressor.parameters())
optimizer = torch.optim.SGD(parameters, lr=0.05, momentum=0.9, weight_decay=5e-4)
x = torch.randn(128, 3, 32, 32)
y = torch.randint(0, 10, (128,))
T = 4.0


def step():
    optimizer.zero_grad()
    with torch.no_grad():
        t_logits, t_features = teacher(x, capture=("layer2",))
    s_logits, s_features = student(x, capture=("layer2",))
    loss = F.cross_entropy(s_logits, y)
    loss = loss + F.kl_div(F.log_softmax(s_logits / T, 1), F.softmax(t_logits / T, 1), reduction="batchmean") * T * T
    loss = loss + F.mse_loss(regressor(s_features["layer2"]), t_features["layer2"])
    loss.backward()
    optimizer.step()


for _ in range(2):
    step()
start = time.perf_counter()
for _ in range(10):
    step()
seconds = time.perf_counter() - start
print(f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads): {10 * 128 / seconds:.0f} img/s")
