"""SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): student = the model, teacher =
the frozen original. Per epoch: during the first `msteps` epochs a max-pass over forget (minimise
-KL_T(teacher || student)), then every epoch a min-pass over retain minimising gamma x CE + alpha x KL_T. One SGD
optimiser for both; lr x 0.1 for each of the decay epochs (3, 5, 9) an epoch exceeds.

Official defaults: meghdadk/SCRUB, `train_distill` in thirdparty/repdistiller/helper/loops.py, settings of
large_scale_unlearning.ipynb (CIFAR-10 ResNet-18): SGD lr 5e-4, momentum 0.9, weight decay 5e-4, 3 epochs, msteps
2, kd_T 4, gamma 0.99, alpha 0.001, forget batch 512, retain batch 256; student in train mode, teacher in eval.
MIA_experiments.ipynb's values (5 epochs, msteps 3, gamma 1, alpha 0.5, batches 32 / 16) lie only partly inside
SEARCH_SPACE: epochs, msteps and alpha do; gamma (fixed at 0.99 here) and the batch sizes (fixed at 256 / 512) are
not searched.
Cost: 4 x batch units per step (student forward + backward, teacher forward), max- and min-steps alike.
Schedule: budget: the epochs' max- and min-passes are laid out evenly over the steps the budget allows, in their
official proportions and order, ending on a min-pass (`fit_phases`). The first max-step is its smallest unit of work:
when no step fits, it is taken anyway and the run is marked over budget.
"""
from __future__ import annotations

from common.methods._base import epoch_row, forward, kl_div_t, optimise, teacher_logits
from common.unlearn import fit_phases

import torch.nn.functional as F

KIND = "literature"
SOURCE = "official defaults: meghdadk/SCRUB large_scale_unlearning.ipynb + helper/loops.py train_distill"
# augment "none": official code: large_scale_unlearning.ipynb / MIA_experiments.ipynb load with augment=False (common.unlearn.Ctx.loader)
SETTINGS = dict(augment="none", lr=5e-4, epochs=3, msteps=2, batch_size=256, forget_batch_size=512, momentum=0.9,
                weight_decay=5e-4, temperature=4.0, gamma=0.99, alpha=0.001)
PRESETS = {"smoke": dict(batch_size=32, forget_batch_size=32)}
SEARCH_SPACE = dict(lr=("log", 1e-4, 1e-2), epochs=("int", 2, 10), msteps=("int", 1, 3),
                    temperature=("float", 1.0, 4.0), alpha=("log", 1e-3, 1.0))
SCHEDULE = "budget"
DECAY_EPOCHS = (3, 5, 9)  # helper/util.py adjust_learning_rate with the notebooks' lr_decay_epochs


def units_per_step(s, ctx) -> int:  # a min-step; a max-step is 4 x min(forget_batch_size, |forget|)
    return 4 * min(s.batch_size, len(ctx.retain))


def run(model, ctx) -> list[dict]:
    s = ctx.s
    opt = ctx.sgd(model.parameters())

    def max_terms(batch):  # move away from the original on forget
        x, _ = batch
        kl = kl_div_t(forward(model, x, ctx), teacher_logits(ctx, ctx.teacher, x), s.temperature)
        return dict(loss=-kl, kl=kl)

    def min_terms(batch):  # stay with the original (and the labels) on retain
        x, y = batch
        z = forward(model, x, ctx)
        ce, kl = F.cross_entropy(z, y), kl_div_t(z, teacher_logits(ctx, ctx.teacher, x), s.temperature)
        return dict(loss=s.gamma * ce + s.alpha * kl, ce=ce, kl=kl)

    nf = ctx.steps_per_pass(ctx.forget, s.forget_batch_size) if s.msteps else 0
    nr = ctx.steps_per_pass(ctx.retain, s.batch_size)
    uf = 4 * min(s.forget_batch_size, len(ctx.forget))
    phases = [(nf if e <= s.msteps else 0, uf) for e in range(1, s.epochs + 1)]
    phases = [p for e in range(s.epochs) for p in (phases[e], (nr, units_per_step(s, ctx)))]
    counts = fit_phases(ctx, phases, names=["max", "min"] * s.epochs)
    if not any(counts) and nf:  # not one step fits: the first max-step, the smallest unit of work, is taken anyway
        counts[0] = 1
    forget_it, retain_it = ctx.endless(ctx.forget, s.forget_batch_size), ctx.endless(ctx.retain, s.batch_size)
    ctx.set_mode(model)
    history = []
    for epoch in range(1, s.epochs + 1):
        for g in opt.param_groups:
            g["lr"] = s.lr * 0.1 ** sum(epoch > d for d in DECAY_EPOCHS)
        kf, kr = counts[2 * epoch - 2], counts[2 * epoch - 1]
        out, forced, planned = {}, 0, kf + kr
        if epoch == 1 and kf and ctx.budget.left() < uf:  # the first max-step does not fit: take it, over budget
            t = max_terms(next(forget_it))
            ctx.step(opt, t["loss"], force=True)
            forced, kf = 1, kf - 1
            out["max_forced_kl"] = t["kl"].item()
        if not ctx.out_of_budget():
            if kf:
                out.update({f"max_{k}": v for k, v in optimise(ctx, forget_it, kf, opt, max_terms).items()})
            out.update({f"min_{k}": v for k, v in optimise(ctx, retain_it, kr, opt, min_terms).items()})
        out["max_steps"] = out.get("max_steps", 0) + forced
        steps = out["max_steps"] + out.get("min_steps", 0)
        history.append(epoch_row(epoch, planned, dict(steps=steps), lr=opt.param_groups[0]["lr"], **out))
        if ctx.budget.cut:
            break
    return history
