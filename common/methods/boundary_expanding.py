"""Boundary expanding (Chen et al., CVPR 2023): widen the classifier by one "shadow" class, fine-tune on the forget
rows labelled with it (the forget rows' region moves to the shadow class), then prune the shadow class.

Official defaults: OPTML-Group/Unlearn-Saliency, Classification/unlearn/boundary_ex.py `expand_model` and
`boundary_expanding_iter`, unlearn/impl.py, arg_parser.py: forget rows only, label = num_classes (the new class);
SGD lr 0.01, momentum 0.9, weight decay 5e-4 (the shadow row included), 10 epochs, batch 256, train mode, the
training inputs (`augment` as_trained). The widened head: the old rows copied, the shadow row in torch's default
nn.Linear initialisation. Pruning: the authors' code (TY-LEE-KR/Boundary-Unlearning-Code `boundary_expanding`)
keeps rows 0 .. num_classes - 1 of the widened head; Unlearn-Saliency's saves and scores the widened model (argmax
over num_classes + 1 outputs). Here the shadow class is pruned, as the authors do: the model keeps the original's
architecture, and every method is scored on the same num_classes outputs. The authors run lr 1e-5, no weight decay,
batch 64 and a xavier-initialised shadow row: SEARCH_SPACE spans that lr.
Sample-wise: Unlearn-Saliency runs it on random forget sets too (its paper's random-forgetting tables list BE).
The shadow row lives beside the classifier (a forward hook appends its logit), so the model's own state keeps its
shape at every step (budget marks save and restore it).
Cost: 3 x batch units per step. Schedule: fixed.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.methods._base import epoch_passes, forward

KIND = "literature"
SOURCE = "official defaults: OPTML-Group/Unlearn-Saliency Classification/unlearn/boundary_ex.py + impl.py + arg_parser.py"
SETTINGS = dict(augment="as_trained", lr=0.01, epochs=10, batch_size=256, momentum=0.9, weight_decay=5e-4)
PRESETS = {"smoke": dict(epochs=1, batch_size=32)}
SEARCH_SPACE = dict(lr=("log", 1e-5, 1e-1), epochs=("int", 1, 10))
SCHEDULE = "fixed"


def units_per_step(s, ctx) -> int:
    return 3 * min(s.batch_size, len(ctx.forget))


def classifier(model: nn.Module, num_classes: int) -> nn.Linear:
    """The last nn.Linear with num_classes outputs (boundary_ex.py's expand_model takes the last Linear)."""
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not found:
        raise ValueError(f"boundary_expanding: no {num_classes}-output nn.Linear classifier in the model")
    return found[-1]


def shadow_row(head: nn.Linear) -> tuple[nn.Parameter, nn.Parameter]:
    """The (num_classes + 1)-th row of `expand_model`'s widened head: the last row of a default-initialised
    nn.Linear(in_features, num_classes + 1) (torch's global generator, seeded by the runner), as there."""
    wide = nn.Linear(head.in_features, head.out_features + 1)
    w = nn.Parameter(wide.weight.detach()[-1:].clone().to(head.weight.device, head.weight.dtype))
    b = nn.Parameter(wide.bias.detach()[-1:].clone().to(head.weight.device, head.weight.dtype))
    return w, b


def run(model, ctx) -> list[dict]:
    s = ctx.s
    head = classifier(model, ctx.num_classes)
    w, b = shadow_row(head)
    hook = head.register_forward_hook(lambda m, args, out: torch.cat([out, F.linear(args[0], w, b).to(out.dtype)], -1))
    opt = torch.optim.SGD([*model.parameters(), w, b], lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    ctx.set_mode(model)

    def terms(batch):
        x, _ = batch
        shadow = torch.full((len(x),), ctx.num_classes, dtype=torch.long, device=x.device)
        z = forward(model, x, ctx)
        return dict(loss=F.cross_entropy(z, shadow), shadow_prob=z.softmax(1)[:, -1].mean())

    try:
        return epoch_passes(ctx, s.epochs, ctx.steps_per_pass(ctx.forget, s.batch_size),
                            lambda: ctx.loader(ctx.forget, s.batch_size), opt, terms)
    finally:
        hook.remove()  # pruned: rows 0 .. num_classes - 1 are the model's own head
