"""UNSIR (Tarun et al., "Fast Yet Effective Machine Unlearning", IEEE TNNLS 2023): learn an error-maximising noise
for the forgotten class, then "impair" (one epoch on the noise, labelled with the forgotten class, mixed with retain
rows) and "repair" (one epoch on the retain rows).

Official defaults: if-loops/selective-synaptic-dampening, src/forget_full_class_strategies.py `UNSIR` with
src/unlearn.py `UNSIR_noise`, `UNSIR_noise_train`, `UNSIR_create_noisy_loader`, `fit_one_unlearning_cycle` (the
implementation of vikram2000b/Fast-Machine-Unlearning):
  - noise: a batch of 32 standard-normal images in network-input space (normalised, never clamped), trained by
    Adam lr 0.1 for 25 steps, each on the whole noise batch, minimising
    -CE(model(noise), forgotten class) + 0.1 x mean over images of sum(noise^2) (lam; a squared L2 norm, no sqrt);
  - retain rows: the first 500 of every other class (`num_samples`), no augmentation;
  - impair: the noisy loader holds noise images 0, 1, 2 repeated 80 times each (`UNSIR_create_noisy_loader` loops
    over `batch[0].size(0)`, the channel count 3, not the 32 images: `noise_images` 3, kept as the official code
    runs) labelled with the forgotten class, plus the retain rows; one shuffled epoch, batch 32, Adam lr 1e-4;
  - repair: the retain rows, one shuffled epoch, batch 128, a fresh Adam lr 1e-4;
  - the model in train mode throughout (here: the harness BatchNorm policy for every step; the noise's forward
    too, as the official code leaves the model in train mode).
Not copied: the official noise training zeroes only the noise optimiser's gradients, so the model's gradients from
the 25 noise steps are still in `.grad` at the first impair step; here every step starts from zero gradients.
Class-wise only: the official code has no sample-wise UNSIR (forget_random_strategies.py defines none; the
`-method UNSIR` line of its cifar10_random_exps.sh stops at argparse), and the noise is defined by the forgotten
class, which a random forget set does not have. It is not run on the ResNet track (TRACKS).
Cost: the noise steps 3 x noise_batch units each (forward and backward through the model; committed whole as
set-up, like SalUn's saliency pass); impair steps 3 x batch (the value of units_per_step), repair steps 3 x
repair_batch. Schedule: fixed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common.methods._base import epoch_row, forward, optimise

KIND = "literature"
SOURCE = "official defaults: if-loops/selective-synaptic-dampening src/forget_full_class_strategies.py UNSIR + src/unlearn.py"
TRACKS = ("vit",)
TRACK_NOTE = ("class-wise only: UNSIR's noise maximises the loss of the forgotten class, and its official code has "
              "no sample-wise variant")
# augment "none": official code: transform_unlearning (no augmentation) for the retain rows
SETTINGS = dict(augment="none", noise_batch_size=32, noise_steps=25, noise_lr=0.1, lam=0.1, noise_images=3,
                noise_repeats=80, retain_per_class=500, lr=1e-4, batch_size=32, repair_lr=1e-4,
                repair_batch_size=128)
PRESETS = {"smoke": dict(noise_steps=3, noise_repeats=8, retain_per_class=20)}
SEARCH_SPACE = dict(noise_steps=("int", 5, 50), lam=("log", 0.01, 1.0), lr=("log", 1e-5, 1e-2),
                    repair_lr=("log", 1e-5, 1e-2))
SCHEDULE = "fixed"


def units_per_step(s, ctx) -> int:  # an impair step; a repair step is 3 x min(repair_batch_size, |retain rows|)
    return 3 * min(s.batch_size, s.noise_images * s.noise_repeats + len(retain_rows(ctx, s.retain_per_class)))


def retain_rows(ctx, per_class: int) -> torch.Tensor:
    """The first `per_class` retain rows of every class, in retain order (get_classwise_ds + num_samples)."""
    y = ctx.labels[ctx.retain]
    keep = torch.cat([ctx.retain[(y == c).nonzero().flatten()[:per_class]] for c in torch.unique(y).tolist()])
    return keep.sort().values if len(keep) else keep


def learn_noise(model, ctx, forget_class: int, shape: tuple) -> torch.Tensor:
    """UNSIR_noise_train: Adam on the noise only, each step on the whole noise batch."""
    s = ctx.s
    noise = torch.randn((s.noise_batch_size, *shape), generator=ctx.gen).to(ctx.device).requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=s.noise_lr)
    target = torch.full((s.noise_batch_size,), forget_class, dtype=torch.long, device=ctx.device)
    for _ in range(s.noise_steps):
        loss = -F.cross_entropy(forward(model, noise, ctx), target) + s.lam * noise.square().sum((1, 2, 3)).mean()
        opt.zero_grad(set_to_none=True)
        noise.grad, = torch.autograd.grad(loss, [noise])  # the model's own gradients are not touched
        opt.step()
    return noise.detach()


def noisy_batches(ctx, noise: torch.Tensor, rows: torch.Tensor, forget_class: int, batch_size: int):
    """One shuffled pass over the noise rows (images 0 .. noise_images - 1, noise_repeats times each, labelled the
    forgotten class) and the retain `rows` (their inputs by `augment`, their own labels)."""
    s, tf = ctx.s, ctx.train_inputs()
    n_noise = s.noise_images * s.noise_repeats
    order = torch.randperm(n_noise + len(rows), generator=ctx.gen)
    if len(order) > 1 and len(order) % batch_size == 1:  # as Ctx.loader: BatchNorm cannot train on one image
        order = order[:-1]
    for start in range(0, len(order), batch_size):
        b = order[start:start + batch_size]
        is_noise = b < n_noise
        parts_x, parts_y = [], []
        if is_noise.any():
            k = int(is_noise.sum())
            parts_x.append(noise[(b[is_noise] // s.noise_repeats).to(noise.device)])
            parts_y.append(torch.full((k,), forget_class, dtype=torch.long, device=ctx.device))
        if (~is_noise).any():
            r = rows[(b[~is_noise] - n_noise).to(rows.device)]
            parts_x.append(tf(ctx.images[r.to(ctx.images.device)].to(ctx.device)).to(noise.dtype))
            parts_y.append(ctx.labels[r.to(ctx.labels.device)].to(ctx.device))
        yield torch.cat(parts_x), torch.cat(parts_y)


def run(model, ctx) -> list[dict]:
    s = ctx.s
    forget_class = int(ctx.labels[ctx.forget[0]])
    rows = retain_rows(ctx, s.retain_per_class)
    shape = tuple(ctx.eval_transform(ctx.images[:1].to(ctx.device)).shape[1:])
    ctx.set_mode(model)
    noise = learn_noise(model, ctx, forget_class, shape)
    ctx.budget.settle()  # the noise is set-up work, done whole (over budget when it alone exceeds the budget)

    def ce(batch):
        x, y = batch
        return dict(loss=F.cross_entropy(forward(model, x, ctx), y))

    n_impair = ctx.steps_per_pass(torch.arange(s.noise_images * s.noise_repeats + len(rows)), s.batch_size)
    n_repair = ctx.steps_per_pass(rows, s.repair_batch_size)
    history = [dict(epoch=0, noise_norm=float(noise.square().sum((1, 2, 3)).sqrt().mean()))]
    if ctx.out_of_budget():
        return history
    impair = optimise(ctx, noisy_batches(ctx, noise, rows, forget_class, s.batch_size), n_impair,
                      torch.optim.Adam(model.parameters(), lr=s.lr), ce)
    history.append(epoch_row(1, n_impair, impair))  # epoch 1: impair
    if ctx.out_of_budget() or impair["steps"] < n_impair:
        return history
    repair = optimise(ctx, ctx.loader(rows, s.repair_batch_size), n_repair,
                      torch.optim.Adam(model.parameters(), lr=s.repair_lr), ce)
    history.append(epoch_row(2, n_repair, repair))  # epoch 2: repair
    return history
