"""Gradient ascent (GA; Thudi et al., EuroS&P 2022; reference A's second method): minimise -CE on the forget rows.

Official defaults: OPTML-Group/Unlearn-Sparse, unlearn/GA.py with arg_parser.py / README (CIFAR-10 ResNet-18: SGD
lr 1e-4, momentum 0.9, weight decay 5e-4, 5 epochs (README), batch 256; xcadet/deepunlearn runs lr 0.01 for 10 epochs,
within SEARCH_SPACE). Reference A (`paper` ViT run): SGD lr 1e-4,
momentum 0.9, no weight decay, 5 epochs, batch 64, kept as that profile's preset.
Cost: one step = forward + backward of `batch_size` forget images = 3 x batch_size units.
Schedule: fixed. The logged `loss` is -CE.
"""
from __future__ import annotations

import torch.nn.functional as F

from common.methods._base import epoch_passes, forward

KIND = "reference"
SOURCE = "official defaults: OPTML-Group/Unlearn-Sparse unlearn/GA.py + arg_parser.py"
SETTINGS = dict(augment="as_trained", lr=1e-4, epochs=5, batch_size=256, momentum=0.9, weight_decay=5e-4)
PRESETS = {
    "vit/paper": dict(lr=1e-4, epochs=5, batch_size=64, weight_decay=0.0),  # reference A's code
    "smoke": dict(epochs=1, batch_size=32),
}
SEARCH_SPACE = dict(lr=("log", 1e-5, 1e-2), epochs=("int", 1, 10))
SCHEDULE = "fixed"


def units_per_step(s, ctx) -> int:
    return 3 * min(s.batch_size, len(ctx.forget))


def run(model, ctx) -> list[dict]:
    s = ctx.s
    opt = ctx.sgd(model.parameters())
    ctx.set_mode(model)

    def neg_ce(batch):
        x, y = batch
        return dict(loss=-F.cross_entropy(forward(model, x, ctx), y))

    return epoch_passes(ctx, s.epochs, ctx.steps_per_pass(ctx.forget, s.batch_size),
                        lambda: ctx.loader(ctx.forget, s.batch_size), opt, neg_ce)
