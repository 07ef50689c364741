"""EU-k, exact unlearning of the last k layers (Goel et al., 2022): re-initialise the last k blocks and the
classifier, then train them from scratch on retain with every other weight frozen (the frozen layers saw the forget
rows, the re-trained ones never do).

Official defaults: xcadet/deepunlearn munl/unlearning/exact_unlearning_k.py with scrub_utils.py `fk_finetune`:
k (num_blocks) 1, SGD lr 0.01, momentum 0, 10 epochs, batch 256, anchor (sgda_weight_decay; the anchor is the
re-initialised weights) 0.1, decay 0.1 at 50/80/90 % of the epochs, augmented retain loaders
(`augment` as_trained). Re-initialisation: deepunlearn draws fresh weights (kaiming / xavier, BatchNorm weight 1,
bias 0) and keeps the BatchNorm running statistics; here the weights come from a freshly initialised network of the
same architecture (`ctx.fresh_model`, the architecture's own initialisation), the running statistics are kept as
deepunlearn keeps them. meghdadk/SCRUB's notebook resets layer4 from the original's saved initialisation (not
stored by this pipeline) and trains 30 epochs. Blocks, modes and cost: common/methods/_last_k.py. Schedule: fixed.
"""
from __future__ import annotations

import torch

from common.methods import _last_k
from common.methods._last_k import finetune_last_k, trained_modules

KIND = "literature"
SOURCE = "official defaults: xcadet/deepunlearn munl/unlearning/exact_unlearning_k.py + scrub_utils.fk_finetune"
SETTINGS = dict(augment="as_trained", **_last_k.SETTINGS)
PRESETS, SEARCH_SPACE = _last_k.PRESETS, _last_k.SEARCH_SPACE
SCHEDULE = "fixed"

units_per_step = _last_k.units_per_step


@torch.no_grad()
def reinitialise(model, fresh, names: list[str]) -> int:
    """Copy the weights (parameters, not buffers: BatchNorm statistics are kept) of modules `names` from `fresh`."""
    n = 0
    for name in names:
        for p, q in zip(model.get_submodule(name).parameters(), fresh.get_submodule(name).parameters()):
            p.copy_(q.to(p.device, p.dtype))
            n += p.numel()
    return n


def run(model, ctx) -> list[dict]:
    names = trained_modules(model, ctx.s.k)
    fresh = ctx.fresh_model()  # never passed an image: nothing to charge
    reset = reinitialise(model, fresh, names)
    del fresh
    return [dict(epoch=0, epoch_fraction=1.0, reinitialised_weights=reset)] + finetune_last_k(model, ctx, names)
