"""Control for `gan` (not an unlearning method of its own): exactly `gan`'s retain part, i.e. `steps` steps of
lambda_retain x CE on retain batches of `batch_size` (training inputs), Adam lr betas (0.5, 0.9), the harness
BatchNorm policy, and no adversarial term. `gan` minus `retain_only` is what the GAN itself contributes.
Settings: `gan`'s (keep them equal; a test checks the defaults).
Cost: 3 x batch units per step. Schedule: fixed.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from common.methods import gan
from common.methods._base import forward

KIND = "control"
SOURCE = "control: gan's retain steps alone (gan's settings)"
SETTINGS = {k: gan.SETTINGS[k] for k in ("augment", "lr", "steps", "batch_size", "lambda_retain")}
PRESETS = {"smoke": {k: v for k, v in gan.PRESETS["smoke"].items() if k in SETTINGS}}
SEARCH_SPACE = {k: v for k, v in gan.SEARCH_SPACE.items() if k in SETTINGS}
SCHEDULE = "fixed"


def units_per_step(s, ctx) -> int:
    return 3 * min(s.batch_size, len(ctx.retain))


def run(model, ctx) -> list[dict]:
    s = ctx.s
    opt = torch.optim.Adam(model.parameters(), lr=s.lr, betas=(0.5, 0.9))
    ctx.set_mode(model)
    history = []
    for step, (xr, yr) in enumerate(itertools.islice(ctx.endless(ctx.retain, s.batch_size), s.steps), start=1):
        if ctx.out_of_budget():
            break
        ce = F.cross_entropy(forward(model, xr, ctx), yr)
        if not ctx.step(opt, s.lambda_retain * ce):
            break
        history.append(dict(step=step, retain_ce=ce.item()))
    return history
