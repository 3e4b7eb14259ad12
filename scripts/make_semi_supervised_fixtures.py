"""Writes the PyTorch golden values the unlabeled-data loss tests compare against.

Run from the repository root with a Python that has torch (CPU wheel):
    python scripts/make_semi_supervised_fixtures.py
It writes Tests/EpicycleRuntimeTests/Fixtures/<case>.json and <case>.bin in the format of
scripts/make_distillation_fixtures.py (manifest: tensor name -> shape and offset in floats of the
little-endian float32 blob; `settings`: the case's numbers).

Per case, with a fixed seed:
  weak, strong         FixMatch: the model's logits on the weak and the strong view [N, K]
  teacher, student     soft targets: the teacher's and the student's logits [N, K]
  mask                 1 where the target's max probability (T = 1) reaches the threshold, else 0
  loss                 the loss value, shape [1]
  grad/strong, grad/student   d loss / d the student's logits
The formulas are the papers': FixMatch (Sohn et al. 2020) as
`(F.cross_entropy(strong, argmax softmax(weak), reduction="none") * mask).mean()` with the weak view
detached; soft targets as `(F.kl_div(log_softmax(s/T), softmax(t/T), reduction="none").sum(1) * mask).mean() * T**2`.
"""
import pathlib

import torch
import torch.nn.functional as F

from fixture_files import write_fixture

FIXTURES = pathlib.Path(__file__).parent.parent / "Tests" / "EpicycleRuntimeTests" / "Fixtures"


def write(name, tensors, settings):
    write_fixture(FIXTURES, name, tensors, settings)


def confidence_mask(logits, threshold):
    probabilities = torch.softmax(logits.detach(), dim=1)
    confidence, labels = probabilities.max(dim=1)
    return confidence.ge(threshold).float(), labels


def fixmatch(name, threshold, batch=8, classes=5):
    torch.manual_seed(3)
    weak = torch.randn(batch, classes) * 3
    strong = (torch.randn(batch, classes) * 2).requires_grad_()
    mask, labels = confidence_mask(weak, threshold)
    if 0 < threshold:
        assert 0 < mask.sum() < batch, "the case must keep some rows and drop others"
    loss = (F.cross_entropy(strong, labels, reduction="none") * mask).mean()
    loss.backward()
    write(name, {"weak": weak, "strong": strong, "mask": mask, "labels": labels.float(), "loss": loss.reshape(1),
                 "grad/strong": strong.grad}, {"threshold": threshold})


def soft_targets(name, temperature, threshold, batch=8, classes=5):
    torch.manual_seed(4)
    teacher = torch.randn(batch, classes) * 3
    student = (torch.randn(batch, classes) * 2).requires_grad_()
    mask, labels = confidence_mask(teacher, threshold)
    if 0 < threshold:
        assert 0 < mask.sum() < batch, "the case must keep some rows and drop others"
    divergence = F.kl_div(F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1),
                          reduction="none").sum(dim=1)
    loss = (divergence * mask).mean() * temperature ** 2
    loss.backward()
    write(name, {"teacher": teacher, "student": student, "mask": mask, "labels": labels.float(), "loss": loss.reshape(1),
                 "grad/student": student.grad}, {"temperature": temperature, "threshold": threshold})


if __name__ == "__main__":
    fixmatch("fixmatch-tau0.8", 0.8)
    fixmatch("fixmatch-tau0", 0.0)
    soft_targets("soft-targets-T2-tau0.6", 2.0, 0.6)
    soft_targets("soft-targets-T1-tau0", 1.0, 0.0)
