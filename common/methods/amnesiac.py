"""Amnesiac unlearning (Graves et al., "Amnesiac Machine Learning", AAAI 2021), as the unlearning benchmarks run
it: every forget row relabelled once with a random wrong class, then a few epochs of CE on the relabelled forget
rows together with all retain rows.

Official defaults: if-loops/selective-synaptic-dampening, src/forget_full_class_strategies.py and
src/forget_random_strategies.py `amnesiac` with src/unlearn.py `fit_one_unlearning_cycle` (the code of
vikram2000b/bad-teaching-unlearning's notebook, which has batch 256): Adam lr 1e-4 (no weight decay), 3 epochs,
batch 128, train mode, no augmentation (`transform_unlearning`); the relabelled forget rows and ALL retain rows in
one shuffled loader. The label: full class: random.choice over the classes without the forgotten one; random
(sample-wise): redrawn until it differs from the row's own label. Both are "uniform over the classes other than
the row's own label", drawn once per row (the relabelled set is built once, then reused every epoch).
What this is not: the paper's own "amnesiac" undo (lmgraves/AmnesiacML: subtract the summed parameter updates of
every training batch that held a forget row) needs those updates stored while the original trains; stage 02 / 03
do not store them, so only the relabelling method the benchmarks (and the paper's own "Unlearning" baseline) run
is here.
Cost: 3 x batch units per step. Schedule: fixed.
"""
from __future__ import annotations

import dataclasses

import torch

from common.methods._base import ce_terms, epoch_passes

KIND = "literature"
SOURCE = "official defaults: if-loops/selective-synaptic-dampening src/forget_*_strategies.py amnesiac + src/unlearn.py"
# augment "none": official code: transform_unlearning (ToTensor + Normalize; common.unlearn.Ctx.train_inputs)
SETTINGS = dict(augment="none", lr=1e-4, epochs=3, batch_size=128)
PRESETS = {"smoke": dict(epochs=1, batch_size=32)}
SEARCH_SPACE = dict(lr=("log", 1e-5, 1e-2), epochs=("int", 1, 10))
SCHEDULE = "fixed"


def units_per_step(s, ctx) -> int:
    return 3 * min(s.batch_size, len(ctx.forget) + len(ctx.retain))


def wrong_labels(y: torch.Tensor, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Per row a class drawn uniformly from the num_classes - 1 classes other than its own label."""
    shift = torch.randint(1, num_classes, y.shape, generator=gen).to(y.device)
    return (y + shift) % num_classes


def run(model, ctx) -> list[dict]:
    s = ctx.s
    labels = ctx.labels.clone()
    labels[ctx.forget] = wrong_labels(ctx.labels[ctx.forget], ctx.num_classes, ctx.gen)  # once, for every epoch
    relabelled = dataclasses.replace(ctx, labels=labels)  # shares the generator and the budget
    rows = torch.cat([ctx.forget, ctx.retain])
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    ctx.set_mode(model)
    return epoch_passes(ctx, s.epochs, ctx.steps_per_pass(rows, s.batch_size),
                        lambda: relabelled.loader(rows, s.batch_size), opt, ce_terms(model, ctx))
