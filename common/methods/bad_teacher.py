"""Bad Teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using an
Incompetent Teacher", AAAI 2023): one shuffled pass per epoch over forget + a seeded `retain_fraction` of retain,
minimising KL(target || student) at temperature T, where the target is a randomly initialised model (frozen, eval
mode) on forget rows and the original on retain rows.

Official defaults: vikram2000b/bad-teaching-unlearning, unlearn.py `blindspot_unlearner` as its notebook
CIFARSuper20_Rocket_Unlearn.ipynb runs it: Adam lr 1e-4 (no weight decay), 1 epoch, batch 256, T 1, 30 % of the
retain rows; the KL is F.kl_div's default reduction (mean over rows x classes), no T^2 factor; student in train
mode, both teachers in eval. xcadet/deepunlearn's values (Adam 0.01, 10 epochs, all retain rows) lie in SEARCH_SPACE.
Cost: 3 x batch (student) + 1 x batch (each row through the one teacher that gives its target) = 4 units a row per
step. The official code runs both teachers on every row and picks per row (5 units a row); the harness runs each
row through the teacher whose output it uses, which gives the same targets for 4: counted is what is computed here.
Schedule: fixed.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from common.methods._base import epoch_passes, forward, subsample, teacher_logits

KIND = "literature"
SOURCE = "official defaults: vikram2000b/bad-teaching-unlearning unlearn.py + CIFARSuper20_Rocket_Unlearn.ipynb"
# augment "none": official code: bad-teaching-unlearning's transform_train has no augmentation (common.unlearn.Ctx.loader)
SETTINGS = dict(augment="none", lr=1e-4, epochs=1, batch_size=256, temperature=1.0, retain_fraction=0.3)
PRESETS = {"smoke": dict(batch_size=32)}
SEARCH_SPACE = dict(lr=("log", 1e-5, 1e-2), epochs=("int", 1, 10), temperature=("float", 1.0, 4.0),
                    retain_fraction=("float", 0.1, 1.0))
SCHEDULE = "fixed"


def units_per_step(s, ctx) -> int:
    return 4 * min(s.batch_size, len(ctx.forget) + round(s.retain_fraction * len(ctx.retain)))


def official_kl(student_logits: torch.Tensor, target_logits: torch.Tensor, T: float) -> torch.Tensor:
    """The official loss: F.kl_div(log_softmax(student / T), softmax(target / T)) with torch's default
    reduction="mean", i.e. averaged over rows x classes (1 / num_classes of the per-row KL), no T^2."""
    log_p = torch.log_softmax(student_logits.float() / T, dim=1)
    kl = F.kl_div(log_p, torch.softmax(target_logits.float() / T, dim=1), reduction="sum")
    return kl / log_p.numel()  # = reduction "mean" (torch warns that it will change that default's meaning)


def run(model, ctx) -> list[dict]:
    s = ctx.s
    rows = torch.cat([ctx.forget, subsample(ctx.retain, s.retain_fraction, ctx.gen)])
    is_forget = torch.zeros_like(ctx.labels)
    is_forget[ctx.forget.to(is_forget.device)] = 1
    flagged = dataclasses.replace(ctx, labels=is_forget)  # batches carry the forget flag as the official data set
    incompetent = ctx.make_fresh().eval().requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)

    def terms(batch):
        x, is_f = batch
        f = is_f.bool()
        target = torch.empty(len(x), ctx.num_classes, device=x.device)
        if f.any():
            target[f] = teacher_logits(ctx, incompetent, x[f])
        if (~f).any():
            target[~f] = teacher_logits(ctx, ctx.teacher, x[~f])
        return dict(loss=official_kl(forward(model, x, ctx), target, s.temperature))

    ctx.set_mode(model)
    return epoch_passes(ctx, s.epochs, ctx.steps_per_pass(rows, s.batch_size),
                        lambda: flagged.loader(rows, s.batch_size), opt, terms)
