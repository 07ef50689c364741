"""Helpers the method files share (a file whose name starts with `_` is not a method).

Every method file of this package defines:
  KIND          "reference" (a reference's method, run as its code ran it), "literature" or "control"
  SOURCE        the paper and the official file its defaults come from
  SETTINGS      {setting: official default}; config fields `<method>_<setting>`, `--<method>-<setting>` overrides
  PRESETS       optional {"<track>" | "<profile>" | "<track>/<profile>": {setting: value}} (why, in a comment)
  SEARCH_SPACE  {setting: ("log" | "float" | "int", low, high) or ("choice", [values])} for the tuning stage
  SCHEDULE      "fixed" (its steps do not depend on the budget: one run gives every budget's checkpoint),
                "budget" (its schedule is laid out over the budget: one run per budget) or "once" (one
                indivisible pass: the same result at every budget)
  BN            optional: the BatchNorm mode its reference ran ("train"); absent = the harness policy `--bn`
  units_per_step(s, ctx) -> units of one optimiser step (its cost accounting; a test checks it against the
                counted units)
  run(model, ctx) -> history (list of dicts); `ctx.s` holds its settings
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.models import autocast
from common.unlearn import Ctx


def forward(model: nn.Module, x: torch.Tensor, ctx: Ctx, fp32: bool = False) -> torch.Tensor:
    """Logits in float32 (bf16 autocast inside when the run's precision is bf16, unless `fp32`: passes whose
    gradients are compared or ranked, as SSD's importances and SalUn's saliency, run in fp32 as their official code)."""
    with autocast(ctx.device, ctx.cfg.amp and not fp32):
        return model(x).float()


def teacher_logits(ctx: Ctx, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return forward(model, x, ctx)


def kl_div_t(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """Distillation loss: mean over rows of KL(softmax(teacher / T) || softmax(student / T)) x T^2 (nats). The T^2
    keeps the gradient scale independent of T (Hinton et al.); this is SCRUB's DistillKL (sum / rows x T^2)."""
    log_p_student = torch.log_softmax(student_logits.float() / T, dim=1)
    p_teacher = torch.softmax(teacher_logits.float() / T, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * T * T


def optimise(ctx: Ctx, batch_iter: Iterable, n_steps: int, opt: torch.optim.Optimizer, terms: Callable,
             after_step: Callable | None = None) -> dict:
    """Up to `n_steps` optimiser steps on the next batches of `batch_iter`, each allowed by the budget
    (`ctx.step`). `terms(batch)` returns a dict of scalar tensors whose "loss" entry is minimised (the others are
    only logged); `after_step()` runs after each step. Returns `steps` and each entry's mean over the steps."""
    sums, steps = {}, 0
    for batch in itertools.islice(batch_iter, n_steps):
        if ctx.out_of_budget():
            break
        t = terms(batch)
        if not ctx.step(opt, t["loss"]):
            break
        if after_step is not None:
            after_step()
        for k, v in t.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        steps += 1
    return dict(steps=steps, **{k: v / max(steps, 1) for k, v in sums.items()})


def epoch_passes(ctx: Ctx, epochs: int, per_epoch: int, one_pass: Callable[[], Iterable], opt: torch.optim.Optimizer,
                 terms: Callable) -> list[dict]:
    """`epochs` passes of `per_epoch` steps on the batches of `one_pass()` (a fresh shuffled pass each epoch), no
    further epoch once the budget is spent; one history row per epoch."""
    history = []
    for epoch in range(1, epochs + 1):
        if ctx.out_of_budget():
            break
        history.append(epoch_row(epoch, per_epoch, optimise(ctx, one_pass(), per_epoch, opt, terms)))
    return history


def epoch_row(epoch: int, planned: int, stats: dict, **extra) -> dict:
    """A history row; `epoch_fraction` = share of the epoch's planned steps taken (common.unlearn.epochs_done)."""
    return dict(epoch=epoch, epoch_fraction=stats["steps"] / max(planned, 1), **extra, **stats)


def subsample(rows: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """A seeded random `fraction` of `rows` (all rows, in order, when fraction >= 1)."""
    if fraction >= 1:
        return rows
    pick = torch.randperm(len(rows), generator=gen)[:round(fraction * len(rows))]
    return rows[pick.to(rows.device)]


def ce_terms(model: nn.Module, ctx: Ctx) -> Callable:
    def terms(batch):
        x, y = batch
        return dict(loss=F.cross_entropy(forward(model, x, ctx), y))

    return terms
