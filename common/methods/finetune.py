"""Fine-tune (FT): cross-entropy on the retain rows only (Warnecke et al. / Golatkar et al.'s baseline; reference A's
first method).

Official defaults: OPTML-Group/Unlearn-Sparse, unlearn/FT.py (`FT`, `FT_iter` without the l1 term) with its
arg_parser.py and README (CIFAR-10 ResNet-18: SGD lr 0.01, momentum 0.9, weight decay 5e-4, 10 epochs, batch 256).
Reference A (`paper` ViT run) ran it with its own settings: SGD lr 1e-4, momentum 0.9, no weight decay, 5 epochs,
batch 64 (../shared/reference/original-settings.md), kept as that profile's preset.
Cost: one step = one forward + backward of `batch_size` retain images = 3 x batch_size units.
Schedule: fixed (constant lr, epochs of retain passes; the budget only decides where it stops).
"""
from __future__ import annotations

from common.methods._base import ce_terms, epoch_passes

KIND = "reference"
SOURCE = "official defaults: OPTML-Group/Unlearn-Sparse unlearn/FT.py + arg_parser.py"
SETTINGS = dict(augment="as_trained", lr=0.01, epochs=10, batch_size=256, momentum=0.9, weight_decay=5e-4)
PRESETS = {
    "vit/paper": dict(lr=1e-4, epochs=5, batch_size=64, weight_decay=0.0),  # reference A's code
    "smoke": dict(epochs=1, batch_size=32),
}
SEARCH_SPACE = dict(lr=("log", 1e-4, 1e-1), epochs=("int", 1, 10))
SCHEDULE = "fixed"


def units_per_step(s, ctx) -> int:
    return 3 * min(s.batch_size, len(ctx.retain))


def run(model, ctx) -> list[dict]:
    s = ctx.s
    opt = ctx.sgd(model.parameters())
    ctx.set_mode(model)
    return epoch_passes(ctx, s.epochs, ctx.steps_per_pass(ctx.retain, s.batch_size),
                        lambda: ctx.loader(ctx.retain, s.batch_size), opt, ce_terms(model, ctx))
