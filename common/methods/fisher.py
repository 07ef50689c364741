"""Fisher forgetting (Golatkar et al., "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks",
CVPR 2020): add Gaussian noise to every weight, with a variance that falls where the retain rows' Fisher information
is high (weights the retain rows need are kept, the others are scrubbed). No optimiser, no gradient step.

Official defaults: OPTML-Group/Unlearn-Sparse, unlearn/fisher.py `fisher_new` (the README's FF command, `--unlearn
fisher_new`), its `hessian` and `get_mean_var`, with arg_parser.py: alpha 0.2 (the README leaves ${alpha} open;
0.2 is arg_parser's default and xcadet/deepunlearn's ORIGINAL_ALPHA), num_classes 10. Procedure, as that code has it:
  - the model in eval mode; the retain rows in dataset order (unshuffled), batch 32, the training inputs (the
    repository's retain set keeps its train transform: `augment` as_trained);
  - per batch, for every class c: the batch-mean CE with every row labelled c, backward, and
    F += mean(p_c over the batch) x grad^2 (a batch gradient, not per-sample); F /= number of batches;
  - var = clamp(1 / (F + 1e-8), max 1e3), clamp max 1e2 for tensors with num_classes rows (the classifier); var x=
    alpha; mean over dim 1 for tensors of >1 dims (conv: over input channels, linear: per output row);
  - class-wise forgetting only (the official rule fires for a full forgotten class of CIFAR-10): the forgotten
    class's classifier row gets mu 0 and var 1e-4;
  - var x 10 for the classifier tensors and for 1-d tensors (BatchNorm, biases); the new weights are
    mu + sqrt(var) x N(0, 1), mu = the original weights, once.
The older `fisher` of the same file (per-sample log-likelihood gradients, std clamped at 1e-3) and meghdadk/SCRUB's
(per-sample expected Fisher, batch 1, alpha 1e-7) are other estimates; the README's FF is this one.
Precision: the Fisher pass runs in fp32 whatever the run's precision (it ranks weights by their information).
Cost: one forward (1 unit) and one backward per class (2 units each) per retain row: (1 + 2 x classes) x
|retain| x retain_fraction units, one indivisible pass (marked over budget when it exceeds it, never truncated).
Schedule: once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common.data import batches
from common.methods._base import forward, subsample

KIND = "literature"
SOURCE = "official defaults: OPTML-Group/Unlearn-Sparse unlearn/fisher.py fisher_new + arg_parser.py (alpha: see file)"
SETTINGS = dict(augment="as_trained", alpha=0.2, batch_size=32, retain_fraction=1.0)
# The smoke and cpu profiles estimate the diagonal on a quarter of the retain rows (the batches' mean over fewer
# batches: the same estimate, noisier). Why cpu: at retain_fraction 1 the pass is 21 units a retain row, 175 % / 117 %
# of gold's cost, and it took 99 s (ViT) + 114 s (ResNet) of the 27-min cpu `make all` at fp32 (2-core AMD EPYC,
# commit 38ce7ce), the one part of the run over its 25-minute target; its effect on the results: docs/cpu-profile.md.
PRESETS = {"smoke": dict(retain_fraction=0.25), "cpu": dict(retain_fraction=0.25)}
SEARCH_SPACE = dict(alpha=("log", 1e-8, 1.0))
SCHEDULE = "once"
EPS, VAR_MAX, VAR_MAX_CLASSIFIER, FORGOTTEN_VAR = 1e-8, 1e3, 1e2, 1e-4  # fisher.py get_mean_var's constants


def units_per_step(s, ctx) -> int:  # the whole pass (no step)
    return (1 + 2 * ctx.num_classes) * round(s.retain_fraction * len(ctx.retain))


def fisher_diagonal(model, ctx, rows: torch.Tensor) -> list[torch.Tensor]:
    """fisher_new's `hessian`: per parameter, sum over classes c of mean_batch(p_c) x (grad of the batch-mean CE
    with label c)^2, summed over batches and divided by their number; in fp32, eval mode."""
    params = [p for p in model.parameters() if p.requires_grad]
    acc = [torch.zeros_like(p) for p in params]
    n = 0
    for x, _ in batches(ctx.images, ctx.labels, rows, ctx.s.batch_size, ctx.train_inputs(), ctx.device):
        z = forward(model, x, ctx, fp32=True)  # charged 3 units a row: the forward and the first backward
        prob = torch.softmax(z, dim=1).detach()
        for c in range(ctx.num_classes):
            target = torch.full((len(x),), c, dtype=torch.long, device=z.device)
            grads = torch.autograd.grad(F.cross_entropy(z, target), params, retain_graph=c < ctx.num_classes - 1,
                                        allow_unused=True)
            for a, g in zip(acc, grads):
                if g is not None:
                    a += prob[:, c].mean() * g.square()
        ctx.budget.charge_backward(len(x), ctx.num_classes - 1)  # the other classes' backward passes
        n += 1
    return [a / max(n, 1) for a in acc]


@torch.no_grad()
def mean_var(p: torch.Tensor, fisher: torch.Tensor, alpha: float, num_classes: int,
             forget_class: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """fisher_new's get_mean_var: the noise's mean and variance for weight tensor `p` (see the module docstring)."""
    var = (1.0 / (fisher + EPS)).clamp(max=VAR_MAX)
    classifier = p.shape[0] == num_classes
    if classifier:
        var = var.clamp(max=VAR_MAX_CLASSIFIER)
    var = alpha * var
    if p.ndim > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
    mu = p.detach().clone()
    if classifier and forget_class is not None:
        mu[forget_class] = 0
        var[forget_class] = FORGOTTEN_VAR
    if classifier or p.ndim == 1:
        var = var * 10
    return mu, var


def run(model, ctx) -> list[dict]:
    s = ctx.s
    model.eval()  # official: `hessian` in eval mode (no step follows, so the BN policy does not apply)
    fisher = fisher_diagonal(model, ctx, subsample(ctx.retain, s.retain_fraction, ctx.gen))
    ctx.budget.settle()  # one indivisible pass
    forget_class = int(ctx.labels[ctx.forget[0]]) if ctx.track == "vit" else None  # class-wise: the full class
    params = [p for p in model.parameters() if p.requires_grad]
    stds = []
    with torch.no_grad():
        for p, f in zip(params, fisher):
            mu, var = mean_var(p, f, s.alpha, ctx.num_classes, forget_class)
            noise = torch.randn(p.shape, generator=ctx.gen).to(p.device, p.dtype)
            p.copy_(mu + var.sqrt() * noise)
            stds.append(float(var.sqrt().mean()))
    return [dict(noise_std_mean=sum(stds) / max(len(stds), 1), noise_std_max=max(stds, default=0.0))]
