"""Reference B's WGAN-GP unlearning, exactly as its code ran (../shared/reference/original-settings.md).

Generator = the classifier in TRAIN mode (BatchNorm uses the forget batch's statistics and its running averages
move); real = original's sorted softmax on ONE held-out batch of 64 (`ctx.unseen`); fake = the generator's sorted
softmax on a forget batch of 64; critic 10-64-32-1; per generator step 5 critic steps (loss D(fake) - D(real) +
10 GP) then generator loss -D(fake) only (no retain term); Adam lr 1e-3, default betas, for both; 10 generator
and 50 critic steps in total. Both batches carry one fixed draw of the track's training transform, since B saved
augmented tensors once. B's forget set is one batch; with more forget rows each generator step takes the next batch.
The constants below are not settings: changing any of them makes it not reference B (`gan` has the knobs).
Cost: setup 64 units (original on the real batch); per generator step 64 (the critic's fake batch, no grad) +
3 x 64 (the generator loss) = 256 units.
Schedule: fixed.
"""
from __future__ import annotations

import torch

from common.methods._base import forward
from common.methods._gan import Critic, critic_step, sorted_softmax

KIND = "reference"
SOURCE = "reference B's code (../shared/reference/original-settings.md)"
SETTINGS = dict(lr=1e-3)  # B: Adam 1e-3 for generator and critic
SEARCH_SPACE = dict(lr=("log", 1e-5, 1e-2))
SCHEDULE = "fixed"
BN = "train"
GAN_REFERENCE = dict(batch_size=64, generator_steps=10, n_critic=5, critic_hidden=(64, 32), lambda_gp=10.0)


def units_per_step(s, ctx) -> int:
    return 4 * min(GAN_REFERENCE["batch_size"], len(ctx.forget))


def run(model, ctx) -> list[dict]:
    g = GAN_REFERENCE
    ux, _ = ctx.unseen
    pick = torch.randperm(len(ux), generator=ctx.gen)[:g["batch_size"]]
    x_real = ctx.train_transform(ux[pick.to(ux.device)])
    with torch.no_grad():
        real = sorted_softmax(forward(ctx.teacher, x_real, ctx))
    ctx.budget.settle()  # the reference outputs: one indivisible pass
    critic = Critic(ctx.num_classes, g["critic_hidden"]).to(ctx.device)
    opt_g = torch.optim.Adam(model.parameters(), lr=ctx.s.lr)
    opt_d = torch.optim.Adam(critic.parameters(), lr=ctx.s.lr)
    forget_batches = [x for x, _ in ctx.loader(ctx.forget, g["batch_size"])]  # one fixed augmented draw
    model.train()  # reference B
    history = []
    for step in range(g["generator_steps"]):
        if ctx.out_of_budget():
            break
        x_fake = forget_batches[step % len(forget_batches)]
        with torch.no_grad():  # the critic's fake batch (train mode: this forward also moves BN statistics)
            fake = sorted_softmax(forward(model, x_fake, ctx))
        w = [critic_step(critic, opt_d, real, fake, g["lambda_gp"]) for _ in range(g["n_critic"])]
        adv = -critic(sorted_softmax(forward(model, x_fake, ctx))).mean()
        if not ctx.step(opt_g, adv):
            break
        history.append(dict(step=step + 1, critic_steps=len(w), wasserstein=sum(w) / len(w), adv_loss=adv.item()))
    return history
