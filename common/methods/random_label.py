"""Random labels (RL; Golatkar et al., CVPR 2020's baseline, as SalUn's code runs it): CE on forget rows relabelled
with random classes, together with CE on retain.

Official defaults: OPTML-Group/Unlearn-Saliency, Classification/unlearn/RL.py (CIFAR-10 branch) with arg_parser.py:
SGD lr 0.01, momentum 0.9, weight decay 5e-4, 10 epochs, batch 256, constant lr, train mode. Per epoch a full pass
over the forget rows with random labels, then a full pass over the retain rows, one optimiser (the authors confirm
the sequential updates in its issue #21); with `mixed`, one shuffled pass over forget + retain (RL.py's CIFAR-100
branch). Labels are drawn uniformly from ALL classes for every batch (torch.randint(0, C), so the true label comes up
with probability 1/C), as RL.py does.
Cost: 3 x min(batch, |forget|) units per forget step, 3 x min(batch, |retain|) per retain step (the value of
units_per_step), 3 x min(batch, |forget| + |retain|) per mixed step. Schedule: budget (the epochs' forget and retain passes are laid out over it).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from common.methods._base import epoch_row, forward, optimise
from common.unlearn import fit_phases

KIND = "literature"
SOURCE = "official defaults: OPTML-Group/Unlearn-Saliency Classification/unlearn/RL.py + arg_parser.py"
SETTINGS = dict(augment="as_trained", lr=0.01, epochs=10, batch_size=256, momentum=0.9, weight_decay=5e-4, mixed=False)
PRESETS = {"smoke": dict(epochs=1, batch_size=32)}
SEARCH_SPACE = dict(lr=("log", 1e-3, 1e-1), epochs=("int", 1, 10))
SCHEDULE = "budget"


def units_per_step(s, ctx) -> int:  # a retain step (the most frequent kind)
    return 3 * min(s.batch_size, len(ctx.retain))


def random_labels(y: torch.Tensor, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random class for every row, from all `num_classes` (RL.py: torch.randint(0, C, target.shape))."""
    return torch.randint(0, num_classes, y.shape, generator=gen).to(y.device)


def random_label_passes(model, ctx, opt, after_step=None) -> list[dict]:
    """The RL schedule (shared with `salun`): per epoch forget (random labels) then retain CE steps, the steps of
    every pass scaled by `fit_phases` when the whole schedule does not fit the budget."""
    s = ctx.s
    forget_flag = torch.zeros(len(ctx.labels), dtype=torch.bool, device=ctx.labels.device)
    forget_flag[ctx.forget.to(forget_flag.device)] = True

    def ce(batch):
        x, y = batch
        return dict(loss=F.cross_entropy(forward(model, x, ctx), y))

    def forget_terms(batch):  # fresh random labels for every forget batch
        x, y = batch
        return ce((x, random_labels(y, ctx.num_classes, ctx.gen)))

    history = []
    if s.mixed:  # one pass over forget + retain, forget rows relabelled (their labels swapped in per pass)
        rows = torch.cat([ctx.forget, ctx.retain])
        per_epoch = ctx.steps_per_pass(rows, s.batch_size)
        counts = fit_phases(ctx, [(per_epoch, 3 * min(s.batch_size, len(rows)))] * s.epochs,
                            names=["forget + retain"] * s.epochs)
        for epoch, n in enumerate(counts, start=1):
            if ctx.out_of_budget():
                break
            labels = ctx.labels.clone()
            labels[forget_flag] = random_labels(labels[forget_flag], ctx.num_classes, ctx.gen)
            relabelled = dataclasses.replace(ctx, labels=labels)  # shares the generator and the budget
            stats = optimise(ctx, relabelled.loader(rows, s.batch_size), n, opt, ce, after_step)
            history.append(epoch_row(epoch, n, stats))
        return history
    nf, nr = ctx.steps_per_pass(ctx.forget, s.batch_size), ctx.steps_per_pass(ctx.retain, s.batch_size)
    counts = fit_phases(ctx, [(nf, 3 * min(s.batch_size, len(ctx.forget))), (nr, units_per_step(s, ctx))] * s.epochs,
                        names=["forget", "retain"] * s.epochs)
    forget_it, retain_it = ctx.endless(ctx.forget, s.batch_size), ctx.endless(ctx.retain, s.batch_size)
    for epoch in range(1, s.epochs + 1):
        if ctx.out_of_budget():
            break
        kf, kr = counts[2 * epoch - 2], counts[2 * epoch - 1]
        f = optimise(ctx, forget_it, kf, opt, forget_terms, after_step)
        r = optimise(ctx, retain_it, kr, opt, ce, after_step)
        history.append(epoch_row(epoch, kf + kr, dict(steps=f["steps"] + r["steps"]), forget_loss=f.get("loss", 0.0),
                                 retain_loss=r.get("loss", 0.0)))
    return history


def run(model, ctx) -> list[dict]:
    opt = ctx.sgd(model.parameters())
    ctx.set_mode(model)
    return random_label_passes(model, ctx, opt)
