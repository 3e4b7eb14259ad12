"""Writes the PyTorch golden values the distillation-loss tests compare against.

Run from the repository root with a Python that has torch (CPU wheel):
    python scripts/make_distillation_fixtures.py
It writes Tests/EpicycleDistillationTests/Fixtures/<case>.json and <case>.bin in the format of
scripts/make_golden_fixtures.py: the manifest maps each tensor name to its shape and offset (in floats)
in the little-endian float32 blob, and `settings` holds the case's numbers (temperatures). Feature maps
are stored NHWC, as Epicycle's activations are; parameters keep PyTorch's layout.

Per case, with a fixed seed:
  student, teacher          the inputs (logits [N, K] or feature maps NHWC)
  loss                      the loss value, shape [1]
  grad/student              d loss / d student (NHWC for maps)
  grad/<parameter>          for the hint: d loss / d regressor parameter (conv.weight, bn.weight, bn.bias)
  <parameter>               for the hint: the regressor's parameters (batch-norm affine perturbed)
The formulas are the reference implementations the Swift doc comments cite: Hinton's KD as
`F.kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean") * T**2`; FitNets' hint as
`MSELoss(bn(conv1x1(s)), t)` in training mode; attention transfer as Zagoruyko's `at_loss`;
channel-wise distillation as Shu et al.'s `ChannelWiseDivergence` (sum over N·C rows · τ² / (N·C)).
"""
import pathlib

import torch
import torch.nn.functional as F

from fixture_files import write_fixture

FIXTURES = pathlib.Path(__file__).parent.parent / "Tests" / "EpicycleDistillationTests" / "Fixtures"


def nhwc(t):
    return t.permute(0, 2, 3, 1) if t.dim() == 4 else t


def write(name, tensors, settings):
    write_fixture(FIXTURES, name, tensors, settings)


def kd(name, temperature, batch=4, classes=7):
    torch.manual_seed(1)
    student = (torch.randn(batch, classes) * 2).requires_grad_()
    teacher = torch.randn(batch, classes) * 3
    loss = F.kl_div(F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1),
                    reduction="batchmean") * temperature ** 2
    loss.backward()
    write(name, {"student": student, "teacher": teacher, "loss": loss.reshape(1), "grad/student": student.grad},
          {"temperature": temperature})


def hint():
    torch.manual_seed(2)
    student = torch.randn(2, 4, 3, 5).requires_grad_()  # NCHW: 4 student channels, 3×5 maps
    teacher = torch.randn(2, 6, 3, 5)
    conv = torch.nn.Conv2d(4, 6, 1, bias=False)
    bn = torch.nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    bn.train()
    loss = F.mse_loss(bn(conv(student)), teacher)
    loss.backward()
    write("hint", {"student": nhwc(student), "teacher": nhwc(teacher), "conv.weight": conv.weight,
                   "bn.weight": bn.weight, "bn.bias": bn.bias, "loss": loss.reshape(1),
                   "grad/student": nhwc(student.grad), "grad/conv.weight": conv.weight.grad,
                   "grad/bn.weight": bn.weight.grad, "grad/bn.bias": bn.bias.grad}, {})


def attention():
    def at(x):
        return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))

    torch.manual_seed(3)
    student = torch.randn(3, 5, 4, 4).requires_grad_()  # 5 student channels, 4×4 maps
    teacher = torch.randn(3, 8, 4, 4) * 2
    loss = (at(student) - at(teacher)).pow(2).mean()
    loss.backward()
    write("attention", {"student": nhwc(student), "teacher": nhwc(teacher), "loss": loss.reshape(1),
                        "grad/student": nhwc(student.grad)}, {})


def spatial_softmax(name, tau):
    torch.manual_seed(4)
    student = (torch.randn(2, 3, 4, 5) * 2).requires_grad_()
    teacher = torch.randn(2, 3, 4, 5) * 3
    n, c, h, w = student.shape
    s = student.reshape(-1, h * w) / tau
    t = teacher.reshape(-1, h * w) / tau
    p_t = F.softmax(t, dim=1)
    loss = torch.sum(p_t * F.log_softmax(t, dim=1) - p_t * F.log_softmax(s, dim=1)) * tau ** 2 / (n * c)
    loss.backward()
    write(name, {"student": nhwc(student), "teacher": nhwc(teacher), "loss": loss.reshape(1),
                 "grad/student": nhwc(student.grad)}, {"temperature": tau})


if __name__ == "__main__":
    kd("kd-T4", 4.0)
    kd("kd-T0.5", 0.5)
    hint()
    attention()
    spatial_softmax("spatial-softmax-T1", 1.0)
    spatial_softmax("spatial-softmax-T4", 4.0)
    print(f"wrote fixtures to {FIXTURES}")
