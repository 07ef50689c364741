"""Reference A's 2-stage method, as its code ran it (one SGD optimiser for both stages, the model in train mode).

Stage 1: `stage1_steps` SGD steps (reference A: ONE), each on the next forget batch, minimising KL(u || p) with u
uniform (torch KLDivLoss, reduction batchmean). Stage 2, `epochs` passes over forget; each forget batch is paired
with the next batch of ONE retain iterator that persists across epochs, both cut to the smaller size:
  z_f = model(x_f); z_r = model(x_r); loss = l_con(z_f, z_r.detach(); tau) + CE(z_r, y_r).
Reference A runs a third forward, model(x_r).detach(), for l_con; with the same weights and no dropout it returns
exactly z_r's values, so the detached z_r is the same constant (for a BatchNorm model in train mode the only
difference is that A updates the running statistics twice per step).
Settings: reference A's code in every profile (../shared/reference/original-settings.md): SGD lr 1e-4, momentum
0.9, no weight decay, batch 64, 5 epochs, tau 1.15, one stage-1 step. BN: train mode, as A's code.
Cost: stage-1 step 3 x batch units; stage-2 step 3 x (forget batch + retain batch) units.
Schedule: fixed.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from common.methods._base import epoch_row, forward

KIND = "reference"
SOURCE = "reference A's code (../shared/reference/original-settings.md)"
SETTINGS = dict(augment="as_trained", lr=1e-4, epochs=5, batch_size=64, momentum=0.9, weight_decay=0.0, tau=1.15, stage1_steps=1)
PRESETS = {"smoke": dict(epochs=1, batch_size=32)}
SEARCH_SPACE = dict(lr=("log", 1e-5, 1e-2), epochs=("int", 1, 10), tau=("float", 0.5, 4.0))
SCHEDULE = "fixed"
BN = "train"


def units_per_step(s, ctx) -> int:  # a stage-2 step
    return 3 * 2 * min(s.batch_size, len(ctx.forget), len(ctx.retain))


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(u || softmax(logits)), u uniform over the classes (nats; 0 iff the output is uniform).
    This is torch's KLDivLoss(reduction="batchmean") of log_softmax against u, as reference A's stage 1."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return F.kl_div(logp, torch.full_like(logp, 1.0 / logp.shape[1]), reduction="batchmean")


def contrastive_loss(z_f: torch.Tensor, z_r: torch.Tensor, tau: float) -> torch.Tensor:
    """Reference A's l_con: S = z_f z_r^T / tau ([m_forget, m_retain] logit similarities); the loss is the mean
    over ALL entries of -log_softmax(S, dim=-1). Callers pass the retain logits detached (constants here, as in
    reference A), so the term moves only the forget outputs. float32: dot products of logits overflow bf16."""
    s = z_f.float() @ z_r.float().T / tau
    return -torch.log_softmax(s, dim=-1).mean()


def stage1(model, ctx, opt) -> int:
    """`stage1_steps` steps of KL(u || p) on forget batches; returns the number of optimiser steps taken."""
    steps = 0
    for x, _ in itertools.islice(ctx.endless(ctx.forget, ctx.s.batch_size), ctx.s.stage1_steps):
        if ctx.out_of_budget() or not ctx.step(opt, kl_to_uniform(forward(model, x, ctx))):
            break
        steps += 1
    return steps


def run(model, ctx) -> list[dict]:
    s = ctx.s
    opt = ctx.sgd(model.parameters())
    model.train()  # reference A
    history = [dict(stage=1, steps=stage1(model, ctx, opt))]
    retain_it = ctx.endless(ctx.retain, s.batch_size)
    per_epoch = ctx.steps_per_pass(ctx.forget, s.batch_size)
    for epoch in range(1, s.epochs + 1):
        if ctx.out_of_budget():
            break
        sums, n = dict(loss=0.0, con=0.0, ce=0.0), 0
        for xf, _ in ctx.loader(ctx.forget, s.batch_size):
            if ctx.out_of_budget():
                break
            xr, yr = next(retain_it)
            m = min(len(xf), len(xr))
            z_f, z_r = forward(model, xf[:m], ctx), forward(model, xr[:m], ctx)
            con, ce = contrastive_loss(z_f, z_r.detach(), s.tau), F.cross_entropy(z_r, yr[:m])
            if not ctx.step(opt, con + ce):
                break
            for k, v in (("loss", con + ce), ("con", con), ("ce", ce)):
                sums[k] += v.item()
            n += 1
        history.append(epoch_row(epoch, per_epoch, dict(steps=n, **{k: v / max(n, 1) for k, v in sums.items()}),
                                 stage=2))
    return history
