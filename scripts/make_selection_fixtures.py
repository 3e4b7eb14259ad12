"""Writes the PyTorch golden values the per-sample selection tests (cyclical data selection) compare against.

Run from the repository root with a Python that has torch (CPU wheel):
    python scripts/make_selection_fixtures.py
It writes Tests/EpicycleRuntimeTests/Fixtures/selection-<case>.json and .bin in the format of
scripts/make_distillation_fixtures.py (manifest of shapes and float offsets, little-endian float32 blob,
numeric `settings`).

Per case: logits [N, K], labels [N] (and partner_labels with a mix weight), the selected batch loss
`loss` [1], its gradient `grad/logits` [N, K] and the 0/1 `weights` [N]. Settings name the label loss
(temperature, label_smoothing; gamma for focal; gamma and xi for cyclical focal with γ_hc = 3) and the
selection (threshold, keep_fraction, clip); a setting that is absent is off. The selection is the one
common practice writes in PyTorch: per-sample losses with reduction="none", 0/1 weights computed
without gradient (loss <= threshold, and the ceil(keep_fraction * N) smallest by a stable sort, so ties
go to the lower index), then (w * clamp(l, max=clip)).sum() / w.sum().
"""
import math
import pathlib

import torch
import torch.nn.functional as F

from fixture_files import write_fixture

FIXTURES = pathlib.Path(__file__).parent.parent / "Tests" / "EpicycleRuntimeTests" / "Fixtures"


def write(name, tensors, settings):
    write_fixture(FIXTURES, f"selection-{name}", tensors, settings)


def per_sample_loss(logits, labels, s):
    """Each sample's label loss: cross-entropy, focal or cyclical focal at temperature T with smoothing ε."""
    t, eps = s["temperature"], s.get("label_smoothing", 0.0)
    if "gamma" not in s:
        return F.cross_entropy(logits / t, labels, label_smoothing=eps, reduction="none")
    log_p = F.log_softmax(logits / t, dim=1)
    p = log_p.exp()
    k = logits.shape[1]
    q = (1 - eps) * F.one_hot(labels, k).to(logits.dtype) + eps / k
    weight = (1 - p) ** s["gamma"]
    if "xi" in s:
        weight = s["xi"] * (1 + p) ** 3 + (1 - s["xi"]) * weight
    return -(q * weight * log_p).sum(dim=1)


def case(name, logits, labels, s, partner_labels=None):
    logits = logits.clone().requires_grad_()
    losses = per_sample_loss(logits, labels, s)
    if partner_labels is not None:
        lam = s["mix_weight"]
        losses = lam * losses + (1 - lam) * per_sample_loss(logits, partner_labels, s)
    with torch.no_grad():
        n = losses.shape[0]
        weights = torch.ones(n)
        if "threshold" in s:
            weights *= (losses <= s["threshold"]).float()
        if "keep_fraction" in s:
            kept = max(1, math.ceil(s["keep_fraction"] * n * (1 - 1e-12)))
            order = torch.sort(losses, stable=True).indices
            keep = torch.zeros(n)
            keep[order[:kept]] = 1
            weights *= keep
    clipped = torch.clamp(losses, max=s["clip"]) if "clip" in s else losses
    loss = (weights * clipped).sum() / weights.sum()
    loss.backward()
    tensors = {"logits": logits, "labels": labels, "loss": loss.reshape(1), "grad/logits": logits.grad, "weights": weights,
               "per_sample": losses}
    if partner_labels is not None:
        tensors["partner_labels"] = partner_labels
    write(name, tensors, s)


if __name__ == "__main__":
    torch.manual_seed(5)
    logits = torch.randn(10, 6) * 2
    labels = torch.randint(0, 6, (10,))
    case("threshold-ce", logits, labels, {"temperature": 0.5, "label_smoothing": 0.1, "threshold": 3.0})
    case("keep-focal", logits, labels, {"temperature": 2.0, "gamma": 2.0, "keep_fraction": 0.3})
    case("clip-cyclical-focal", logits, labels,
         {"temperature": 0.8, "label_smoothing": 0.2, "gamma": 2.0, "xi": 0.4, "clip": 4.5})
    case("all-three-ce", logits, labels,
         {"temperature": 1.5, "threshold": 2.5, "keep_fraction": 0.7, "clip": 1.2})
    # Ties: rows 1, 3 and 6 repeat row 0 with its label, so four samples share one loss; row 2 is the
    # easiest, rows 4, 5 and 7 are made hard, so the keep fraction's cut (ceil(0.5 * 8) = 4 kept) falls
    # among the tied four: rows 0, 1 and 3 are kept, row 6 is not.
    tied = torch.randn(8, 4)
    tied_labels = torch.randint(0, 4, (8,))
    for row in (4, 5, 7):
        tied[row, tied_labels[row]] -= 4
    tied[0] = torch.tensor([0.5, -0.2, 0.1, 0.3])
    tied_labels[0] = 2
    for row in (1, 3, 6):
        tied[row] = tied[0]
        tied_labels[row] = tied_labels[0]
    tied[2] = torch.tensor([0.0, 0.0, 3.0, 0.0])  # confident: the easiest
    tied_labels[2] = 2
    case("keep-ties-ce", tied, tied_labels, {"temperature": 1.0, "keep_fraction": 0.5})
    partners = torch.randint(0, 6, (10,))
    case("mixup-keep-ce", logits, labels, {"temperature": 1.0, "mix_weight": 0.3, "keep_fraction": 0.6}, partners)
    print(f"wrote selection fixtures to {FIXTURES}")
