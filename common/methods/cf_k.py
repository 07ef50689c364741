"""CF-k, catastrophic forgetting of the last k layers (Goel et al., "Towards Adversarial Evaluation of Machine
Unlearning" / "Evaluating Inexact Unlearning Requires Revisiting Forgetting", 2022): fine-tune only the last k
blocks and the classifier on retain, every other weight frozen (what is not revisited is expected to be forgotten).

Official defaults: xcadet/deepunlearn munl/unlearning/catastrophic_forgetting_k.py with scrub_utils.py
`fk_finetune` and its defaults: k (num_blocks) 1, SGD lr 0.01, momentum 0 (its cfg.momentum is never used), 10
epochs, batch 256, anchor (sgda_weight_decay, the pull towards the starting weights) 0.1, decay 0.1 at 50/80/90 %
of the epochs, default loaders (no augmentation). meghdadk/SCRUB's notebook (small_scale_unlearning.ipynb) trains
ResNet-18's layer4 with the classifier frozen, batch 128, 10 epochs, lr 0.01: k 1 here with the classifier trained,
as deepunlearn. Blocks, modes and cost: common/methods/_last_k.py. Search space: deepunlearn's (lr log 1e-5 .. 0.1,
anchor log 1e-5 .. 0.1), epochs and k within this harness's ranges. Schedule: fixed.
"""
from __future__ import annotations

from common.methods import _last_k
from common.methods._last_k import finetune_last_k, trained_modules

KIND = "literature"
SOURCE = "official defaults: xcadet/deepunlearn munl/unlearning/catastrophic_forgetting_k.py + scrub_utils.fk_finetune"
# augment "none": deepunlearn's default_loaders (test transform) for CF-k
SETTINGS = dict(augment="none", **_last_k.SETTINGS)
PRESETS, SEARCH_SPACE = _last_k.PRESETS, _last_k.SEARCH_SPACE
SCHEDULE = "fixed"

units_per_step = _last_k.units_per_step


def run(model, ctx) -> list[dict]:
    names = trained_modules(model, ctx.s.k)
    return [dict(epoch=0, epoch_fraction=1.0, trained_modules=len(names))] + finetune_last_k(model, ctx, names)
