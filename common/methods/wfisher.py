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
One deviation in how, not what: the official code computes the retain sum in batches of 256 and then the first
N + 2 retain rows' gradients again, one row at a time. Here those per-row gradients are computed once, run through the
recursion in the closed form that o's parallelism gives (`woodfisher_pass`: the same k, up to float rounding) and
summed into the retain sum (the batch pass covers only the retain rows after them): the same sum (eval mode, so a
batch gradient x its size is the sum of its rows' gradients; up to float summation order), one pass fewer over
N + 2 rows (on the cpu profile's ResNet track, where n_r < N + 2, the whole batched retain pass; the saving is
measured in docs/cpu-profile.md). With an augmenting training transform the retain sum and the recursion then see
the same draws of those rows, where the official code draws them twice.
Cost: 3 units a row per gradient computed: 3 x (n_f + n_r), one indivisible pass (marked over budget when it exceeds
it, never truncated). Schedule: once.
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
    return 3 * (len(ctx.forget) + len(ctx.retain))


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


def woodfisher_pass(model, params, ctx, rows, n_hessian: int):
    """Wfisher.py's `woodfisher(v)` over the per-row gradients of `rows` (batch 1, in order), in one streaming pass
    that does not need v yet. As the official recursion has it, o = c g_0 and k = v + beta g_0 with beta linear in
    v: for each g after g_0 (t = c g_0.g, r = N / (N + t)): beta <- r beta - c / (N + t) (v.g), c <- r c. So
    beta = W.v with W <- r W - c / (N + t) g. Returns (g_0, W, the sum of the rows' gradients, their number): then
    woodfisher(v) = v + (W.v) g_0 (`apply_woodfisher`), and the sum serves the retain sum."""
    g0 = w = total = None
    c = 1.0
    for x, y in batches(ctx.images, ctx.labels, rows, 1, ctx.train_inputs(), ctx.device):
        g = flat_grad(model, params, x, y, ctx)
        with torch.no_grad():
            if g0 is None:
                g0, w, total = g.clone(), torch.zeros_like(g), g.clone()
            else:
                t = c * float(torch.dot(g0, g))
                r = n_hessian / (n_hessian + t)  # = 1 - t / (N + t): o's rescaling and W's are one factor
                w.mul_(r).add_(g, alpha=-c / (n_hessian + t))
                c *= r
                total += g
    return g0, w, total, len(rows)


def apply_woodfisher(v: torch.Tensor, g0: torch.Tensor | None, w: torch.Tensor | None) -> torch.Tensor:
    return v.clone() if g0 is None else v + torch.dot(w, v) * g0


def run(model, ctx) -> list[dict]:
    s = ctx.s
    model.eval()  # official: eval mode throughout (no step follows, so the BN policy does not apply)
    params = [p for p in model.parameters() if p.requires_grad]
    forget_sum, nf = summed_grad(model, params, ctx, ctx.forget)
    g0, w, retain_sum, nr = woodfisher_pass(model, params, ctx, ctx.retain[:s.n_hessian + 2], s.n_hessian)
    if len(ctx.retain) > nr:  # the retain rows after the recursion's: their sum in batches
        rest_sum, n_rest = summed_grad(model, params, ctx, ctx.retain[nr:])
        retain_sum, nr = retain_sum + rest_sum, nr + n_rest
    v = forget_sum / (nf + nr) - retain_sum * nf / ((nf + nr) * nr)
    k = apply_woodfisher(v, g0, w)
    ctx.budget.settle()  # one indivisible pass
    with torch.no_grad():
        offset = 0
        for p in params:
            p += s.alpha * k[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
    return [dict(v_norm=float(v.norm()), step_norm=float(s.alpha * k.norm()))]
