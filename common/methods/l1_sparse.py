"""l1-sparse MU (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023): fine-tune on retain
minimising CE + gamma_e x ||theta||_1 over all weights (BatchNorm and biases included), gamma_e constant within an
epoch and decaying linearly over the run.

Official defaults: OPTML-Group/Unlearn-Sparse, unlearn/FT.py (`FT_l1` = `FT_iter(with_l1=True)`), arg_parser.py and
README (`--unlearn FT_prune`): SGD lr 0.01, momentum 0.9, weight decay 5e-4, 10 epochs, batch 256, constant lr,
no l1-free epochs, train mode; gamma_e = alpha x (1 - e / epochs) for 0-based epoch e.
`alpha`: the README leaves it as ${alpha} and arg_parser's default (0.2) is a flag shared with Fisher forgetting;
1e-4 is what CIFAR-10 scripts built on this code run (e.g. JingWu321/Scissorhands Classification/sh/
main_0.2_cifar10.sh: --alpha 0.0001 --unlearn_lr 0.01). Not verified against the paper; SEARCH_SPACE spans it.
Cost: 3 x batch units per step (the l1 norm's cost is not counted: no image passes).
Schedule: budget: the epochs' steps are laid out evenly over the steps the budget allows, so the coefficient
follows the official decay and reaches its last epoch's value at the budget (`fit_phases`; `schedule.last_l1_coef`
in the metrics).
"""
from __future__ import annotations

import torch.nn.functional as F

from common.methods._base import epoch_row, forward, optimise
from common.unlearn import fit_phases

KIND = "literature"
SOURCE = "official defaults: OPTML-Group/Unlearn-Sparse unlearn/FT.py FT_l1 + README (alpha: see file)"
SETTINGS = dict(augment="as_trained", lr=0.01, epochs=10, batch_size=256, momentum=0.9, weight_decay=5e-4, alpha=1e-4)
PRESETS = {"smoke": dict(epochs=1, batch_size=32)}
SEARCH_SPACE = dict(lr=("log", 1e-3, 1e-1), epochs=("int", 1, 10), alpha=("log", 1e-6, 1e-3))
SCHEDULE = "budget"


def units_per_step(s, ctx) -> int:
    return 3 * min(s.batch_size, len(ctx.retain))


def l1_coefficient(alpha: float, epoch: int, epochs: int) -> float:
    """The official l1 weight for 0-based `epoch` of `epochs` (FT_iter with no l1-free epochs):
    alpha x (1 - epoch / epochs): alpha in the first epoch, falling linearly by alpha / epochs per epoch."""
    return alpha * (1 - epoch / epochs)


def run(model, ctx) -> list[dict]:
    s = ctx.s
    params = [p for p in model.parameters() if p.requires_grad]
    opt = ctx.sgd(params)
    per_epoch = ctx.steps_per_pass(ctx.retain, s.batch_size)
    counts = fit_phases(ctx, [(per_epoch, units_per_step(s, ctx))] * s.epochs,
                        names=[f"epoch {e}" for e in range(1, s.epochs + 1)])
    retain_it = ctx.endless(ctx.retain, s.batch_size)
    ctx.set_mode(model)
    history = []
    for epoch, n in enumerate(counts, start=1):
        if ctx.out_of_budget():
            break
        if not n:  # an epoch the budget left without steps (the schedule is thinned evenly, fit_phases)
            continue
        coef = l1_coefficient(s.alpha, epoch - 1, s.epochs)
        ctx.budget.schedule["last_l1_coef"] = coef  # the coefficient of the last epoch with steps

        def terms(batch):
            x, y = batch
            ce, l1 = F.cross_entropy(forward(model, x, ctx), y), sum(p.abs().sum() for p in params)
            return dict(loss=ce + coef * l1, ce=ce, l1_norm=l1)

        history.append(epoch_row(epoch, n, optimise(ctx, retain_it, n, opt, terms), l1_coef=coef))
    return history
