"""NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): minimise
beta x CE(retain) - (1 - beta) x CE(forget) on paired batches.

Official defaults: meghdadk/SCRUB, `train_negrad` in thirdparty/repdistiller/helper/loops.py, run by
MIA_experiments.ipynb (`negative_grad`, its CIFAR-10 ResNet-18 experiment): SGD lr 0.01, no momentum, no weight
decay, 5 epochs, beta (its `alpha`) 0.9999, retain batch 32, forget batch 16, train mode. An epoch is one pass over
retain, each retain batch paired with the next batch of a forget iterator that cycles: `itertools.cycle` over the
forget loader replays its first shuffled pass, the same batches in the same order, for the whole run (`Ctx.replay`).
The repository's other variant (small_scale_unlearning.ipynb: beta 0.95, 10 epochs, eval-mode BatchNorm, which
xcadet/deepunlearn copies) lies inside SEARCH_SPACE.
Cost: 3 x (retain batch + forget batch) units per step. Schedule: fixed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common.methods._base import epoch_passes, forward

KIND = "literature"
SOURCE = "official defaults: meghdadk/SCRUB MIA_experiments.ipynb + helper/loops.py train_negrad"
# augment "none": official code: SCRUB's MIA_experiments.ipynb loads with augment=False (common.unlearn.Ctx.loader)
SETTINGS = dict(augment="none", lr=0.01, epochs=5, batch_size=32, forget_batch_size=16, momentum=0.0, weight_decay=0.0,
                beta=0.9999)
PRESETS = {"smoke": dict(epochs=1)}
SEARCH_SPACE = dict(lr=("log", 1e-4, 1e-1), epochs=("int", 1, 10), beta=("float", 0.9, 0.9999))
SCHEDULE = "fixed"


def units_per_step(s, ctx) -> int:
    return 3 * (min(s.batch_size, len(ctx.retain)) + min(s.forget_batch_size, len(ctx.forget)))


def neggrad_plus_terms(z_r: torch.Tensor, y_r: torch.Tensor, z_f: torch.Tensor, y_f: torch.Tensor,
                       beta: float) -> dict:
    """NegGrad+'s objective on one retain / forget batch pair: beta CE(retain) - (1 - beta) CE(forget) (nats)."""
    ce_r, ce_f = F.cross_entropy(z_r.float(), y_r), F.cross_entropy(z_f.float(), y_f)
    return dict(loss=beta * ce_r - (1 - beta) * ce_f, retain_ce=ce_r, forget_ce=ce_f)


def run(model, ctx) -> list[dict]:
    s = ctx.s
    opt = ctx.sgd(model.parameters())
    forget_it = ctx.replay(ctx.forget, s.forget_batch_size)  # itertools.cycle: the first pass, replayed

    def terms(batch):
        (xr, yr), (xf, yf) = batch
        return neggrad_plus_terms(forward(model, xr, ctx), yr, forward(model, xf, ctx), yf, s.beta)

    ctx.set_mode(model)
    return epoch_passes(ctx, s.epochs, ctx.steps_per_pass(ctx.retain, s.batch_size),
                        lambda: zip(ctx.loader(ctx.retain, s.batch_size), forget_it), opt, terms)
