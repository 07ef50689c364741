"""SalUn (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image
Classification and Generation", ICLR 2024): random-label unlearning (`random_label`'s schedule) updating only the
`fraction` most salient weights.

Official defaults: OPTML-Group/Unlearn-Saliency, Classification/generate_mask.py (`save_gradient_ratio`) and
unlearn/RL.py with its README's CIFAR-10 example (mask with_0.5.pt, SGD lr 0.013, momentum 0.9, weight decay 5e-4,
10 epochs, batch 256). The mask: in eval mode, the gradient of the batch-mean forget CE summed over forget
batches (training inputs), |g| ranked globally over every weight (BatchNorm included); True for the top `fraction`.
Only True weights are updated: their gradients are masked, and since SGD's weight decay and momentum still move
zero-gradient weights, the others are put back and their momentum zeroed after every step (RL.py since its commit
"Fix weight decay (#33)").
Cost: the saliency pass 3 x |forget| units (indivisible: over budget if it alone exceeds it); steps as random_label
(units_per_step = a retain step, 3 x min(batch, |retain|)).
Schedule: budget (as random_label).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common.data import batches
from common.methods._base import forward
from common.methods.random_label import random_label_passes

KIND = "literature"
SOURCE = "official defaults: OPTML-Group/Unlearn-Saliency Classification/generate_mask.py, unlearn/RL.py, README"
SETTINGS = dict(augment="as_trained", lr=0.013, epochs=10, batch_size=256, momentum=0.9, weight_decay=5e-4, fraction=0.5, mixed=False)
PRESETS = {"smoke": dict(epochs=1, batch_size=32)}
SEARCH_SPACE = dict(lr=("log", 1e-3, 1e-1), epochs=("int", 1, 10), fraction=("float", 0.1, 0.9))
SCHEDULE = "budget"


def units_per_step(s, ctx) -> int:  # a retain step, as random_label
    return 3 * min(s.batch_size, len(ctx.retain))


def saliency_mask(model, ctx, fraction: float) -> dict[str, torch.Tensor]:
    """{parameter name: bool mask}: the int(fraction x #weights) weights of largest |summed forget-CE gradient|,
    computed in fp32 whatever the run's precision (a global top-k over gradients; the official code runs fp32)."""
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grad_sum = [torch.zeros_like(p) for _, p in named]
    for x, y in batches(ctx.images, ctx.labels, ctx.forget, ctx.s.batch_size, ctx.train_inputs(), ctx.device,
                        shuffle=True, generator=ctx.gen):
        grads = torch.autograd.grad(F.cross_entropy(forward(model, x, ctx, fp32=True), y), [p for _, p in named],
                                    allow_unused=True)
        for acc, g in zip(grad_sum, grads):
            if g is not None:
                acc += g
    ctx.budget.settle()  # one indivisible pass
    scores = torch.cat([g.abs().flatten() for g in grad_sum])
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[scores.topk(int(len(scores) * fraction)).indices] = True
    return {n: m.view_as(p) for (n, p), m in zip(named, keep.split([p.numel() for _, p in named]))}


def run(model, ctx) -> list[dict]:
    mask = saliency_mask(model, ctx, ctx.s.fraction)
    kept = sum(int(m.sum()) for m in mask.values()) / max(sum(m.numel() for m in mask.values()), 1)
    opt = ctx.sgd(model.parameters())
    masked = [(p, mask[n]) for n, p in model.named_parameters() if n in mask]
    hooks = [p.register_hook(lambda g, m=m: g * m) for p, m in masked]
    theta0 = [p.detach().clone() for p, _ in masked]

    @torch.no_grad()
    def restore():
        for (p, m), p0 in zip(masked, theta0):
            p.copy_(torch.where(m, p, p0))
            buf = opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(m)

    ctx.set_mode(model)
    try:
        return [dict(epoch=0, mask_fraction=kept)] + random_label_passes(model, ctx, opt, restore)
    finally:
        for h in hooks:
            h.remove()
