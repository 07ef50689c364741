"""Selective Synaptic Dampening (Foster et al., "Fast Machine Unlearning Without Retraining Through Selective
Synaptic Dampening", AAAI 2024): importances over the forget rows and over all training rows (forget + retain),
then every weight whose forget importance exceeds alpha x its all-rows importance is multiplied by
min(lambda x all-rows / forget importance, 1). No optimiser, no gradient step.

Official defaults: if-loops/selective-synaptic-dampening, src/ssd.py (`calc_importance`, `modify_weight`) and the
forget_*_main.py scripts: alpha = selection_weighting 10 x model_size_scaler (ResNet-18: 1; a ViT forgetting a full
class: 0.5, so 5 on the class-wise ViT track), lambda = dampening_constant 1, exponent 1, lower bound 1; loaders of
batch 128 without augmentation; the model in eval mode. Importance = per parameter the mean over batches of the
squared gradient of the batch-mean CE (squared batch gradients, not per-sample Fisher values).
Cost: 3 x (|forget| + |forget| + |retain| x retain_fraction) units, one indivisible pass: at a smaller budget it
still runs in full and is marked over budget (never truncated).
Schedule: once (the same result at every budget).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common.methods._base import forward, subsample

KIND = "literature"
SOURCE = "official defaults: if-loops/selective-synaptic-dampening src/ssd.py + forget_*_main.py"
SETTINGS = dict(alpha=10.0, lam=1.0, batch_size=128, retain_fraction=1.0)
PRESETS = {"vit": dict(alpha=5.0)}  # model_size_scaler 0.5 for a ViT forgetting a full class (official)
SEARCH_SPACE = dict(alpha=("log", 1.0, 100.0), lam=("log", 0.1, 5.0))
SCHEDULE = "once"


def units_per_step(s, ctx) -> int:  # the whole pass (SSD takes no step)
    return 3 * (2 * len(ctx.forget) + round(s.retain_fraction * len(ctx.retain)))


def importances(model, ctx, rows: torch.Tensor) -> list[torch.Tensor]:
    """Per parameter (model.parameters() order): the mean over batches of the squared batch-mean-CE gradient, in
    fp32 whatever the run's precision (the ratio test compares them; the official code runs fp32)."""
    params = [p for p in model.parameters() if p.requires_grad]
    imp = [torch.zeros_like(p) for p in params]
    n = 0
    for x, y in ctx.scan(rows, ctx.s.batch_size):
        grads = torch.autograd.grad(F.cross_entropy(forward(model, x, ctx, fp32=True), y), params, allow_unused=True)
        for i, g in zip(imp, grads):
            if g is not None:
                i += g.square()
        n += 1
    return [i / max(n, 1) for i in imp]


@torch.no_grad()
def dampen(params: list[torch.Tensor], imp_forget: list[torch.Tensor], imp_all: list[torch.Tensor],
           alpha: float, lam: float) -> int:
    """SSD's update (ssd.py modify_weight, exponent 1, bound 1), in place: where imp_forget > alpha * imp_all,
    multiply the weight by beta = min(lam * imp_all / imp_forget, 1); all other weights stay exactly as they are.
    Returns the number of weights selected."""
    selected_total = 0
    for p, f, a in zip(params, imp_forget, imp_all):
        selected = f > alpha * a  # implies f > 0, so the division below is finite where it is used
        p.mul_(torch.where(selected, (lam * a / f).clamp(max=1.0), torch.ones_like(p)))
        selected_total += int(selected.sum())
    return selected_total


def run(model, ctx) -> list[dict]:
    s = ctx.s
    model.eval()  # official: importances in eval mode (no step follows, so the BN policy does not apply)
    imp_forget = importances(model, ctx, ctx.forget)
    imp_all = importances(model, ctx, torch.cat([ctx.forget, subsample(ctx.retain, s.retain_fraction, ctx.gen)]))
    ctx.budget.settle()  # one indivisible pass: marked over budget when it exceeds it
    params = [p for p in model.parameters() if p.requires_grad]
    selected = dampen(params, imp_forget, imp_all, s.alpha, s.lam)
    return [dict(dampened=selected, dampened_fraction=selected / max(sum(p.numel() for p in params), 1))]
