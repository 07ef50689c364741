"""Influence unlearning with a WoodFisher inverse Hessian (IU; Izzo et al., AISTATS 2021; Jia et al., "Model
Sparsity Can Simplify Machine Unlearning", NeurIPS 2023, whose code this is): one Newton-like step
theta <- theta + alpha x H^-1 v, v = the forget rows' share of the loss gradient, H^-1 from a WoodFisher recursion
over retain gradients. No optimiser, no gradient step.

Official defaults: OPTML-Group/Unlearn-Sparse, unlearn/Wfisher.py `Wfisher` (the file's second, effective
definitions of `woodfisher`, `sam_grad`, `apply_perturb`) with arg_parser.py: alpha 0.2 (the README leaves ${alpha}
open; arg_parser's default, xcadet/deepunlearn's ORIGINAL_ALPHA), batch 256, N = 1000. As that code has it:
  - eval mode; the forget and retain rows in dataset order, batch 256, the training inputs (`augment` as_trained);
  - sums of per-row gradients from batch-mean CE gradients x batch size (exact: eval mode), over forget (n_f rows)
    and retain (n_r rows); v = sum_f / (n_f + n_r) - sum_r x n_f / ((n_f + n_r) n_r);
  - `woodfisher(v)`: the first N + 2 retain rows in order, batch 1: the first gradient g_0 sets o = g_0; for each
    next g: t = o.g, k <- k - (k.g / (N + t)) o, o <- o - (t / (N + t)) o (k starts at v);
  - theta += alpha x k, once. Note: as written, o is only ever rescaled, so it stays parallel to g_0 and k is v
    plus a multiple of g_0 (the official recursion, kept as it is: a faithful copy of what its results came from).
Precision: every gradient in fp32 (dot products of gradients; the official code runs fp32).
Cost: 3 units a row for each gradient pass: 3 x (n_f + n_r + min(n_r, N + 2)), one indivisible pass (marked over
budget when it exceeds it, never truncated). Schedule: once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common.data import batches
from common.methods._base import forward

KIND = "literature"
SOURCE = "official defaults: OPTML-Group/Unlearn-Sparse unlearn/Wfisher.py + arg_parser.py (alpha: see file)"
SETTINGS = dict(augment="as_trained", alpha=0.2, batch_size=256, n_hessian=1000)
PRESETS = {"smoke": dict(n_hessian=100)}  # the tests' tiny runs: 102 batch-1 gradients instead of 1002
SEARCH_SPACE = dict(alpha=("log", 1e-3, 1e2))
SCHEDULE = "once"


def units_per_step(s, ctx) -> int:  # the whole pass (no step)
    return 3 * (len(ctx.forget) + len(ctx.retain) + min(len(ctx.retain), s.n_hessian + 2))


def flat_grad(model, params, x, y, ctx) -> torch.Tensor:
    """sam_grad: the batch-mean CE gradient, flattened over `params` (fp32)."""
    grads = torch.autograd.grad(F.cross_entropy(forward(model, x, ctx, fp32=True), y), params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def summed_grad(model, params, ctx, rows) -> tuple[torch.Tensor, int]:
    """Sum over `rows` of the per-row CE gradients (batch-mean gradient x batch size, batch `batch_size`)."""
    total, n = None, 0
    for x, y in batches(ctx.images, ctx.labels, rows, ctx.s.batch_size, ctx.train_inputs(), ctx.device):
        g = flat_grad(model, params, x, y, ctx) * len(x)
        total, n = (g if total is None else total + g), n + len(x)
    return total, n


def woodfisher(model, params, ctx, v: torch.Tensor, n_hessian: int) -> torch.Tensor:
    """Wfisher.py's `woodfisher(v)` (see the module docstring), over the first n_hessian + 2 retain rows."""
    k, o = v.clone(), None
    rows = ctx.retain[:n_hessian + 2]
    for x, y in batches(ctx.images, ctx.labels, rows, 1, ctx.train_inputs(), ctx.device):
        g = flat_grad(model, params, x, y, ctx)
        with torch.no_grad():
            if o is None:
                o = g.clone()
            else:
                t = torch.dot(o, g)
                k -= (torch.dot(k, g) / (n_hessian + t)) * o
                o -= (t / (n_hessian + t)) * o
    return k


def run(model, ctx) -> list[dict]:
    s = ctx.s
    model.eval()  # official: eval mode throughout (no step follows, so the BN policy does not apply)
    params = [p for p in model.parameters() if p.requires_grad]
    forget_sum, nf = summed_grad(model, params, ctx, ctx.forget)
    retain_sum, nr = summed_grad(model, params, ctx, ctx.retain)
    v = forget_sum / (nf + nr) - retain_sum * nf / ((nf + nr) * nr)
    k = woodfisher(model, params, ctx, v, s.n_hessian)
    ctx.budget.settle()  # one indivisible pass
    with torch.no_grad():
        offset = 0
        for p in params:
            p += s.alpha * k[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
    return [dict(v_norm=float(v.norm()), step_norm=float(s.alpha * k.norm()))]
