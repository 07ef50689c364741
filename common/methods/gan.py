"""The project's WGAN-GP unlearning: reference B's idea with these measured deviations.

  - real = original's sorted softmax on ALL held-out `ctx.unseen` rows (a fresh random batch per critic step)
    instead of one batch of 64; in the class-wise track this makes forget outputs as confident as outputs on
    unseen images, not as confused as on an unseen class (gold's outputs on the forgotten class);
  - generator loss -D(fake) + lambda_retain * CE(retain batch): without it (reference B) the classifier collapsed
    to chance on the real subset (measured, real subset, cpu profile, 40 generator steps, forget / retain / test
    accuracy %: lambda_retain 0 -> 10.2 / 10.3 / 11.7, 0.3 -> 50.8 / 55.2 / 53.5, 1 -> 57.8 / 60.7 / 58.7; original
    64.1 / 64.3 / 61.4); Adam betas (0.5, 0.9) as WGAN-GP practice;
  - `critic_warmup` critic steps on original's forget outputs before the first generator step;
  - `steps` generator steps over cycled forget batches (eval inputs) and retain batches (training inputs);
  - BatchNorm: the harness policy (`--bn`), as every literature method (it ran in eval mode before).
Cost: setup = |unseen| units (original's reference outputs) + one forget batch (no grad); per generator step
3 x batch (forget) + 3 x batch (retain) units. The critic is not counted (common.unlearn).
Schedule: fixed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from common.methods._base import forward
from common.methods._gan import Critic, critic_step, sorted_softmax

KIND = "literature"
SOURCE = "the project's variant of reference B (measured deviations in common/methods/gan.py)"
SETTINGS = dict(augment="as_trained", lr=1e-4, lr_d=1e-3, steps=40, batch_size=128, n_critic=5, critic_warmup=100, lambda_gp=10.0,
                lambda_retain=1.0, critic_hidden=64)
PRESETS = {"smoke": dict(steps=2, batch_size=16, critic_warmup=5, n_critic=2)}
SEARCH_SPACE = dict(lr=("log", 1e-5, 1e-3), steps=("int", 10, 200), lambda_retain=("float", 0.0, 2.0))
SCHEDULE = "fixed"


def units_per_step(s, ctx) -> int:
    b = min(s.batch_size, len(ctx.forget))
    return 3 * b + 3 * min(s.batch_size, len(ctx.retain)) if s.lambda_retain > 0 else 3 * b


def run(model, ctx) -> list[dict]:
    s = ctx.s
    ux, _ = ctx.unseen
    with torch.no_grad():
        real = torch.cat([sorted_softmax(forward(ctx.teacher, ctx.eval_transform(ux[i:i + 256]), ctx))
                          for i in range(0, len(ux), 256)])
    critic = Critic(ctx.num_classes, (s.critic_hidden, s.critic_hidden)).to(ctx.device)
    opt_g = torch.optim.Adam(model.parameters(), lr=s.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr=s.lr_d, betas=(0.5, 0.9))
    forget_it = ctx.endless(ctx.forget, s.batch_size, train=False)
    retain_it = ctx.endless(ctx.retain, s.batch_size)

    def real_batch(n):
        return real[torch.randint(len(real), (n,), generator=ctx.gen).to(real.device)]

    ctx.set_mode(model)
    with torch.no_grad():
        start = sorted_softmax(forward(model, next(forget_it)[0], ctx))
    ctx.budget.settle()  # reference outputs and the warm-up batch: indivisible set-up
    w0 = [critic_step(critic, opt_d, real_batch(len(start)), start, s.lambda_gp) for _ in range(s.critic_warmup)]
    history = [dict(step=0, critic_warmup=len(w0), wasserstein=sum(w0) / max(len(w0), 1))]
    for step in range(1, s.steps + 1):
        if ctx.out_of_budget():
            break
        fake = sorted_softmax(forward(model, next(forget_it)[0], ctx))  # one forward serves the critic steps too
        w = [critic_step(critic, opt_d, real_batch(len(fake)), fake, s.lambda_gp) for _ in range(s.n_critic)]
        adv = -critic(fake).mean()
        loss, ce = adv, torch.zeros(())
        if s.lambda_retain > 0:
            xr, yr = next(retain_it)
            ce = F.cross_entropy(forward(model, xr, ctx), yr)
            loss = adv + s.lambda_retain * ce
        if not ctx.step(opt_g, loss):
            break
        history.append(dict(step=step, wasserstein=sum(w) / len(w), adv_loss=adv.item(), retain_ce=ce.item()))
    return history
