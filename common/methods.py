"""Unlearning methods for both tracks, registered in METHODS (name -> function(model, ctx) -> history).

Each function changes `model` in place, starting from original's weights, and uses only what `common.unlearn.Ctx`
gives it: forget / retain rows, the frozen original (`ctx.teacher`), held-out `ctx.unseen` images, a factory for a
freshly initialised model, the track's transforms, the config, a seeded generator and the compute budget. It
returns a list of dicts (its history, logged by the driver). Settings are `UnlearnConfig` fields
(`<method>_<name>`); `ctx.lr(name)` is the method's learning rate.

References' methods (their settings are what the references' code ran: ../shared/reference/original-settings.md)
  finetune         reference A: cross-entropy on retain, `epochs` passes
  gradient_ascent  reference A: minimise -CE on forget, `epochs` passes
  two_stage        reference A's 2-stage: `stage1_steps` steps of KL(u || p) on forget batches, then `epochs` passes
                   over forget, each forget batch paired with the next batch of ONE persistent retain iterator:
                   loss = l_con(z_f, z_r.detach(); tau) + CE(retain)
  gan_reference    reference B exactly: WGAN-GP, generator (the classifier, TRAIN mode) vs a 10-64-32-1 critic on
                   sorted probabilities; real = original on ONE held-out batch of 64; 10 generator / 50 critic steps
  retain_only      control for `gan`: its retain cross-entropy steps alone (no critic), so the GAN's share shows
  gan              the project's WGAN-GP variant (eval-mode generator, retain CE, critic warm-up, Adam `gan_lr`; see `gan`)
Literature methods follow below the references' ones.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.models import autocast
from common.train import cross_entropy_loss
from common.unlearn import Ctx, run_epochs


# ------------------------------------------------------------------------------------------------ shared
def forward(model: nn.Module, x: torch.Tensor, ctx: Ctx) -> torch.Tensor:
    """Logits in float32 (bf16 autocast inside when `amp`)."""
    with autocast(ctx.device, ctx.cfg.amp):
        return model(x).float()


def sgd_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(u || softmax(logits)), u uniform over the classes (nats; 0 iff the output is uniform).
    This is torch's KLDivLoss(reduction="batchmean") of log_softmax against u, as reference A's stage 1."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return F.kl_div(logp, torch.full_like(logp, 1.0 / logp.shape[1]), reduction="batchmean")


def contrastive_loss(z_f: torch.Tensor, z_r: torch.Tensor, tau: float) -> torch.Tensor:
    """Reference A's l_con: S = z_f z_r^T / tau ([m_forget, m_retain] logit similarities); the loss is the mean
    over ALL entries of -log_softmax(S, dim=-1). Callers pass the retain logits detached (constants here, as in
    reference A), so the term moves only the forget outputs. float32: dot products of logits overflow bf16."""
    s = z_f.float() @ z_r.float().T / tau
    return -torch.log_softmax(s, dim=-1).mean()


# ---------------------------------------------------------------------------------- reference A's methods
def finetune(model: nn.Module, ctx: Ctx) -> list[dict]:
    """Fine-tune (reference A; Warnecke et al. / Golatkar et al.'s baseline): cross-entropy on retain only."""
    opt = ctx.sgd(model.parameters(), "finetune")
    return run_epochs(model, ctx, ctx.retain, cross_entropy_loss(), ctx.cfg.epochs, opt, "finetune")


def gradient_ascent(model: nn.Module, ctx: Ctx) -> list[dict]:
    """Gradient ascent (reference A; Thudi et al., EuroS&P 2022): minimise -CE on forget; `loss` logged is -CE."""

    def neg_ce(model, x, y):
        logits = model(x)
        return -F.cross_entropy(logits.float(), y), logits

    opt = ctx.sgd(model.parameters(), "gradient_ascent")
    return run_epochs(model, ctx, ctx.forget, neg_ce, ctx.cfg.epochs, opt, "gradient_ascent")


def two_stage_stage1(model: nn.Module, ctx: Ctx, opt: torch.optim.Optimizer) -> int:
    """Stage 1 of reference A's 2-stage: `stage1_steps` SGD steps (reference: ONE), each on the next forget batch,
    minimising KL(u || p). Returns the number of optimiser steps taken."""
    model.train()
    steps = 0
    for x, _ in itertools.islice(ctx.endless(ctx.forget), ctx.cfg.stage1_steps):
        if ctx.out_of_budget():
            break
        sgd_step(opt, kl_to_uniform(forward(model, x, ctx)))
        steps += 1
    return steps


def two_stage(model: nn.Module, ctx: Ctx) -> list[dict]:
    """Reference A's 2-stage method, as its code ran it (one SGD optimiser for both stages).
    Stage 2, per step: z_f = model(x_f); z_r = model(x_r); loss = l_con(z_f, z_r.detach()) + CE(z_r, y_r).
    Reference A runs a third forward, model(x_r).detach(), for l_con; with the same weights and no dropout it
    returns exactly z_r's values, so the detached z_r is the same constant (for a BatchNorm model in train mode
    the only difference is that A updates the running statistics twice per step). Retain batches come from ONE
    iterator that persists across epochs; both batches are cut to the smaller size."""
    opt = ctx.sgd(model.parameters(), "two_stage")
    history = [dict(stage=1, steps=two_stage_stage1(model, ctx, opt))]
    retain_it = ctx.endless(ctx.retain)
    model.train()
    for epoch in range(1, ctx.cfg.epochs + 1):
        sums, n = dict(loss=0.0, con=0.0, ce=0.0), 0
        for xf, _ in ctx.loader(ctx.forget):
            if ctx.out_of_budget():
                break
            xr, yr = next(retain_it)
            m = min(len(xf), len(xr))
            z_f, z_r = forward(model, xf[:m], ctx), forward(model, xr[:m], ctx)
            con, ce = contrastive_loss(z_f, z_r.detach(), ctx.cfg.tau), F.cross_entropy(z_r, yr[:m])
            sgd_step(opt, con + ce)
            for k, v in (("loss", con + ce), ("con", con), ("ce", ce)):
                sums[k] += v.item()
            n += 1
        history.append(dict(stage=2, epoch=epoch, steps=n, **{k: v / max(n, 1) for k, v in sums.items()}))
    return history


# ---------------------------------------------------------------------------------------- reference B's GAN
class Critic(nn.Module):
    """WGAN critic on sorted probability vectors: Linear-LeakyReLU(0.2) x2 -> one unbounded score (no BatchNorm,
    which would break the per-sample gradient penalty)."""

    def __init__(self, num_classes: int = 10, hidden: tuple[int, int] = (64, 32)):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_classes, hidden[0]), nn.LeakyReLU(0.2), nn.Linear(*hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden[1], 1))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.net(p).squeeze(1)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP term E[(||grad_x D(x)||_2 - 1)^2] at x = eps * real + (1 - eps) * fake, eps ~ U(0, 1) per row."""
    eps = torch.rand(len(real), 1, device=real.device, dtype=real.dtype)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def sorted_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax sorted descending: the critic judges confidence profiles, never which class (differentiable)."""
    return torch.softmax(logits.float(), dim=1).sort(dim=1, descending=True).values


def critic_step(critic, opt_d, real: torch.Tensor, fake: torch.Tensor, lambda_gp: float) -> float:
    """One critic update on (real, fake.detach()); returns the Wasserstein estimate D(real) - D(fake) before it."""
    fake = fake.detach()
    n = min(len(real), len(fake))
    real, fake = real[:n], fake[:n]
    d_real, d_fake = critic(real).mean(), critic(fake).mean()
    sgd_step(opt_d, d_fake - d_real + lambda_gp * gradient_penalty(critic, real, fake))
    return (d_real - d_fake).item()


# Reference B's GAN, exactly as its code ran (original-settings.md); not config fields, since changing any of
# them makes it not reference B (the project's variant `gan` has the knobs).
GAN_REFERENCE = dict(batch_size=64, generator_steps=10, n_critic=5, critic_hidden=(64, 32), lambda_gp=10.0)


def gan_reference(model: nn.Module, ctx: Ctx) -> list[dict]:
    """Reference B's WGAN-GP unlearning (its code): generator = the classifier in TRAIN mode (BatchNorm uses the
    forget batch's statistics and its running averages move); real = original's sorted softmax on ONE held-out
    batch of 64 (`ctx.unseen`); fake = the generator's sorted softmax on a forget batch of 64; critic 10-64-32-1;
    per generator step 5 critic steps (loss D(fake) - D(real) + 10 GP) then generator loss -D(fake) only (no
    retain term); Adam lr 1e-3 (`gan_reference_lr`), default betas, for both; 10 generator and 50 critic steps in total.
    Both batches carry one fixed draw of the track's training transform, since B saved augmented tensors once.
    B's forget set is one batch; with more forget rows (class-wise) each generator step takes the next batch."""
    g = GAN_REFERENCE
    ux, uy = ctx.unseen
    pick = torch.randperm(len(uy), generator=ctx.gen)[:g["batch_size"]]
    x_real = ctx.train_transform(ux[pick.to(ux.device)])
    with torch.no_grad():
        real = sorted_softmax(forward(ctx.teacher, x_real, ctx))
    critic = Critic(ctx.num_classes, g["critic_hidden"]).to(ctx.device)
    opt_g = torch.optim.Adam(model.parameters(), lr=ctx.lr("gan_reference"))  # B: 1e-3 (config default)
    opt_d = torch.optim.Adam(critic.parameters(), lr=ctx.lr("gan_reference"))
    forget_batches = [x for x, _ in ctx.loader(ctx.forget, g["batch_size"])]  # one fixed augmented draw
    model.train()
    history = []
    for step in range(g["generator_steps"]):
        if ctx.out_of_budget():
            break
        x_fake = forget_batches[step % len(forget_batches)]
        with torch.no_grad():  # the critic's fake batch (train mode: this forward also moves BN statistics)
            fake = sorted_softmax(forward(model, x_fake, ctx))
        w = [critic_step(critic, opt_d, real, fake, g["lambda_gp"]) for _ in range(g["n_critic"])]
        adv = -critic(sorted_softmax(forward(model, x_fake, ctx))).mean()
        sgd_step(opt_g, adv)
        history.append(dict(step=step + 1, critic_steps=len(w), wasserstein=sum(w) / len(w), adv_loss=adv.item()))
    return history


def gan(model: nn.Module, ctx: Ctx) -> list[dict]:
    """The project's WGAN-GP unlearning, reference B's idea with these measured deviations:
      - generator in EVAL mode (BatchNorm frozen), so the critic judges the outputs an attacker would query;
      - real = original's sorted softmax on ALL held-out `ctx.unseen` rows (a fresh random batch per critic step)
        instead of one batch of 64; in the class-wise track this makes forget outputs as confident as outputs on
        unseen images, not as confused as on an unseen class (gold's outputs on the forgotten class);
      - generator loss -D(fake) + lambda_retain * CE(retain batch): without it (reference B) the classifier
        collapsed to chance on the real subset (config comment); Adam betas (0.5, 0.9) as WGAN-GP practice;
      - `critic_warmup` critic steps on original's forget outputs before the first generator step;
      - `gan_steps` generator steps over cycled forget batches of `gan_batch_size`, augmented retain batches.
    """
    cfg = ctx.cfg
    ux, _ = ctx.unseen
    with torch.no_grad():
        real = torch.cat([sorted_softmax(forward(ctx.teacher, ctx.eval_transform(ux[i:i + 256]), ctx))
                          for i in range(0, len(ux), 256)])
    critic = Critic(ctx.num_classes, (cfg.critic_hidden, cfg.critic_hidden)).to(ctx.device)
    opt_g = torch.optim.Adam(model.parameters(), lr=ctx.lr("gan"), betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(critic.parameters(), lr=cfg.lr_d, betas=(0.5, 0.9))
    forget_it = ctx.endless(ctx.forget, cfg.gan_batch_size, train=False)
    retain_it = ctx.endless(ctx.retain, cfg.gan_batch_size)

    def real_batch(n):
        return real[torch.randint(len(real), (n,), generator=ctx.gen).to(real.device)]

    model.eval()
    with torch.no_grad():
        x0 = next(forget_it)[0]
        start = sorted_softmax(forward(model, x0, ctx))
    w0 = [critic_step(critic, opt_d, real_batch(len(start)), start, cfg.lambda_gp) for _ in range(cfg.critic_warmup)]
    history = [dict(step=0, critic_warmup=len(w0), wasserstein=sum(w0) / max(len(w0), 1))]
    for step in range(1, cfg.gan_steps + 1):
        if ctx.out_of_budget():
            break
        xf = next(forget_it)[0]
        fake = sorted_softmax(forward(model, xf, ctx))  # eval mode, no augmentation: one forward serves all steps
        w = [critic_step(critic, opt_d, real_batch(len(fake)), fake, cfg.lambda_gp) for _ in range(cfg.n_critic)]
        adv = -critic(fake).mean()
        loss, ce = adv, torch.zeros(())
        if cfg.lambda_retain > 0:
            xr, yr = next(retain_it)
            ce = F.cross_entropy(forward(model, xr, ctx), yr)
            loss = adv + cfg.lambda_retain * ce
        sgd_step(opt_g, loss)
        history.append(dict(step=step, wasserstein=sum(w) / len(w), adv_loss=adv.item(), retain_ce=ce.item()))
    return history


def retain_only(model: nn.Module, ctx: Ctx) -> list[dict]:
    """Control for `gan` (not an unlearning method of its own): exactly `gan`'s retain part, i.e. `gan_steps` steps
    of lambda_retain * CE on augmented retain batches of `gan_batch_size`, Adam `gan_lr` betas (0.5, 0.9), eval
    mode, and no adversarial term. `gan` minus `retain_only` is what the GAN itself contributes."""
    cfg = ctx.cfg
    opt = torch.optim.Adam(model.parameters(), lr=ctx.lr("retain_only"), betas=(0.5, 0.9))  # = gan_lr
    retain_it = ctx.endless(ctx.retain, cfg.gan_batch_size)
    model.eval()  # as `gan`: BatchNorm statistics frozen
    history = []
    for step in range(1, cfg.gan_steps + 1):
        if ctx.out_of_budget():
            break
        xr, yr = next(retain_it)
        ce = F.cross_entropy(forward(model, xr, ctx), yr)
        sgd_step(opt, cfg.lambda_retain * ce)
        history.append(dict(step=step, retain_ce=ce.item()))
    return history


# ---------------------------------------------------------------------------------------- literature methods
# ---- (literature methods go here) ----
# NegGrad+, random labels, SalUn, l1-sparse, SCRUB, Bad Teacher and SSD. Each docstring cites the paper and the
# official code its defaults come from (fields `<method>_<setting>` of common.config.UnlearnConfig). All of them
# use the project's SGD (`ctx.sgd`) and batches (`ctx.loader`: the track's training transform unless noted).
import dataclasses  # noqa: E402  (imported here, not at the top: this section is the literature methods' own)
from typing import Callable  # noqa: E402


def kl_div_t(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """Distillation loss: mean over rows of KL(softmax(teacher / T) || softmax(student / T)) x T^2 (nats). The T^2
    keeps the gradient scale independent of T (Hinton et al.); this is SCRUB's DistillKL (sum / rows x T^2)."""
    log_p_student = torch.log_softmax(student_logits.float() / T, dim=1)
    p_teacher = torch.softmax(teacher_logits.float() / T, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * T * T


def optimise(ctx: Ctx, batch_iter, opt: torch.optim.Optimizer, terms: Callable, after_step: Callable | None = None
             ) -> dict:
    """One pass of optimiser steps over `batch_iter`, asking the budget before each. `terms(batch)` returns a dict of
    scalar tensors whose "loss" entry is minimised (the others are only logged); `after_step()` runs after each
    step. Returns `steps` and each entry's mean over the steps taken."""
    sums, steps = {}, 0
    for batch in batch_iter:
        if ctx.out_of_budget():
            break
        t = terms(batch)
        sgd_step(opt, t["loss"])
        if after_step is not None:
            after_step()
        for k, v in t.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        steps += 1
    return dict(steps=steps, **{k: v / max(steps, 1) for k, v in sums.items()})


def for_epochs(ctx: Ctx, epochs: int, one_epoch: Callable[[int], dict]) -> list[dict]:
    """History of `one_epoch(epoch)` for epoch = 1..epochs; no further epoch once the budget has run out."""
    history = []
    for epoch in range(1, epochs + 1):
        if ctx.out_of_budget():
            break
        history.append(dict(epoch=epoch, **one_epoch(epoch)))
    return history


def subsample(rows: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """A seeded random `fraction` of `rows` (all rows, in order, when fraction >= 1)."""
    if fraction >= 1:
        return rows
    pick = torch.randperm(len(rows), generator=gen)[:round(fraction * len(rows))]
    return rows[pick.to(rows.device)]


# ------------------------------------------------------------------------------------------------ NegGrad+
def neggrad_plus_terms(z_r: torch.Tensor, y_r: torch.Tensor, z_f: torch.Tensor, y_f: torch.Tensor,
                       beta: float) -> dict:
    """NegGrad+'s objective on one retain / forget batch pair: beta CE(retain) - (1 - beta) CE(forget) (nats)."""
    ce_r, ce_f = F.cross_entropy(z_r.float(), y_r), F.cross_entropy(z_f.float(), y_f)
    return dict(loss=beta * ce_r - (1 - beta) * ce_f, retain_ce=ce_r, forget_ce=ce_f)


def neggrad_plus(model: nn.Module, ctx: Ctx) -> list[dict]:
    """NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): minimise
    beta * CE(retain) - (1 - beta) * CE(forget) on paired batches. As the official `train_negrad` (meghdadk/SCRUB,
    thirdparty/repdistiller/helper/loops.py): train mode, an epoch is one pass over retain, each retain batch
    paired with the next batch of a forget iterator that cycles (here reshuffled on every cycle)."""
    beta = ctx.cfg.neggrad_plus_beta
    opt = ctx.sgd(model.parameters(), "neggrad_plus")
    forget_it = ctx.endless(ctx.forget)

    def terms(batch):
        (xr, yr), (xf, yf) = batch
        return neggrad_plus_terms(forward(model, xr, ctx), yr, forward(model, xf, ctx), yf, beta)

    model.train()
    return for_epochs(ctx, ctx.cfg.epochs,
                      lambda epoch: optimise(ctx, zip(ctx.loader(ctx.retain), forget_it), opt, terms))


# ------------------------------------------------------------------------------------- random labels, SalUn
def wrong_labels(y: torch.Tensor, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """A uniformly random label other than y for every row: (y + U{1, ..., C-1}) mod C."""
    shift = torch.randint(1, num_classes, y.shape, generator=gen).to(y.device)
    return (y + shift) % num_classes


def relabel_forget(ctx: Ctx) -> Ctx:
    """A copy of `ctx` (sharing everything else: generator, budget) whose forget rows carry fresh wrong labels."""
    labels = ctx.labels.clone()
    labels[ctx.forget] = wrong_labels(ctx.labels[ctx.forget], ctx.num_classes, ctx.gen)
    return dataclasses.replace(ctx, labels=labels)


def random_label_passes(model: nn.Module, ctx: Ctx, name: str, mask: dict | None = None) -> list[dict]:
    """SalUn's RL (OPTML-Group/Unlearn-Saliency, Classification/unlearn/RL.py), shared by `random_label` and
    `salun`: per epoch the forget rows get fresh random labels, never the true one (RL.py draws from all C classes,
    keeping the true label for 1/C of them), then CE steps over the forget rows and then over the retain rows with
    one optimiser (RL.py's CIFAR-10 branch; the authors confirm the sequential updates in its issue #21), or with
    `<name>_mixed` one shuffled pass over forget + retain (RL.py's CIFAR-100 branch).
    `mask` ({parameter name: bool tensor}): only True weights are updated. Their gradients are masked; since SGD's
    weight decay and momentum still move zero-gradient weights, the others are put back after every step (as RL.py
    does since its commit "Fix weight decay")."""
    opt = ctx.sgd(model.parameters(), name)
    masked = [(p, mask[n]) for n, p in model.named_parameters() if mask is not None and n in mask]
    hooks = [p.register_hook(lambda g, m=m: g * m) for p, m in masked]
    theta0 = [p.detach().clone() for p, _ in masked]

    def restore():
        with torch.no_grad():
            for (p, m), p0 in zip(masked, theta0):
                p.copy_(torch.where(m, p, p0))

    def ce(batch):
        x, y = batch
        return dict(loss=F.cross_entropy(forward(model, x, ctx), y))

    def one_epoch(epoch):
        rl, after = relabel_forget(ctx), (restore if masked else None)
        if getattr(ctx.cfg, f"{name}_mixed"):
            return optimise(rl, rl.loader(torch.cat([ctx.forget, ctx.retain])), opt, ce, after)
        f = optimise(rl, rl.loader(ctx.forget), opt, ce, after)
        r = optimise(rl, rl.loader(ctx.retain), opt, ce, after)
        return dict(steps=f["steps"] + r["steps"], forget_loss=f.get("loss", 0.0), retain_loss=r.get("loss", 0.0))

    model.train()
    try:
        return for_epochs(ctx, ctx.cfg.epochs, one_epoch)
    finally:
        for h in hooks:
            h.remove()


def random_label(model: nn.Module, ctx: Ctx) -> list[dict]:
    """Random labels (RL; Golatkar et al., CVPR 2020's baseline, as SalUn's code runs it): CE on forget rows
    relabelled with random wrong classes, together with CE on retain (see `random_label_passes`)."""
    return random_label_passes(model, ctx, "random_label")


def saliency_mask(model: nn.Module, ctx: Ctx, fraction: float) -> dict[str, torch.Tensor]:
    """SalUn's hard weight-saliency mask (Unlearn-Saliency, Classification/generate_mask.py): g = gradient of the
    forget CE summed over forget batches (eval mode, eval inputs: BatchNorm statistics untouched), computed once;
    True for the int(fraction x #weights) weights of largest |g| over the whole model (one global threshold)."""
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grad_sum = [torch.zeros_like(p) for _, p in named]
    for x, y in ctx.loader(ctx.forget, train=False):
        if ctx.out_of_budget():
            break
        grads = torch.autograd.grad(F.cross_entropy(forward(model, x, ctx), y), [p for _, p in named],
                                    allow_unused=True)
        for s, g in zip(grad_sum, grads):
            if g is not None:
                s += g
    scores = torch.cat([s.abs().flatten() for s in grad_sum])
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[scores.topk(int(len(scores) * fraction)).indices] = True
    return {n: m.view_as(p) for (n, p), m in zip(named, keep.split([p.numel() for _, p in named]))}


def salun(model: nn.Module, ctx: Ctx) -> list[dict]:
    """SalUn (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image
    Classification and Generation", ICLR 2024): random-label unlearning (min CE(forget, wrong labels) + CE(retain))
    updating only the `salun_fraction` most salient weights (|gradient of the forget loss|, `saliency_mask`).
    The first history row records the share of weights the mask keeps."""
    mask = saliency_mask(model, ctx, ctx.cfg.salun_fraction)
    kept = sum(int(m.sum()) for m in mask.values()) / max(sum(m.numel() for m in mask.values()), 1)
    return [dict(epoch=0, mask_fraction=kept)] + random_label_passes(model, ctx, "salun", mask)


# ------------------------------------------------------------------------------------------------ l1-sparse
def l1_coefficient(alpha: float, epoch: int, epochs: int) -> float:
    """The official l1 weight for 0-based `epoch` of `epochs` (FT_iter in OPTML-Group/Unlearn-Sparse unlearn/FT.py
    with no l1-free epochs): alpha * (1 - epoch / epochs), alpha in the first epoch, falling linearly by
    alpha / epochs per epoch to 0 at epoch = epochs (the end of the run)."""
    return alpha * (1 - epoch / epochs)


def l1_sparse(model: nn.Module, ctx: Ctx) -> list[dict]:
    """l1-sparse MU (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023; official FT_l1 in
    Unlearn-Sparse unlearn/FT.py): fine-tune on retain minimising CE + gamma_e * ||theta||_1 over all weights,
    gamma_e = `l1_coefficient` (constant within an epoch, linear decay over the run)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = ctx.sgd(params, "l1_sparse")

    def one_epoch(epoch):
        coef = l1_coefficient(ctx.cfg.l1_sparse_alpha, epoch - 1, ctx.cfg.epochs)

        def terms(batch):
            x, y = batch
            ce, l1 = F.cross_entropy(forward(model, x, ctx), y), sum(p.abs().sum() for p in params)
            return dict(loss=ce + coef * l1, ce=ce, l1_norm=l1)

        return dict(l1_coef=coef, **optimise(ctx, ctx.loader(ctx.retain), opt, terms))

    model.train()
    return for_epochs(ctx, ctx.cfg.epochs, one_epoch)


# ---------------------------------------------------------------------------------------------------- SCRUB
def scrub(model: nn.Module, ctx: Ctx) -> list[dict]:
    """SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023; official meghdadk/SCRUB,
    `train_distill` in thirdparty/repdistiller/helper/loops.py, settings of large_scale_unlearning.ipynb): student =
    `model`, teacher = the frozen original. Per epoch: during the first `scrub_msteps` epochs a max-pass over forget
    (minimise -KL_T(teacher || student)), then every epoch a min-pass over retain minimising
    gamma * CE + alpha * KL_T(teacher || student). One SGD optimiser for both; student in train mode."""
    cfg = ctx.cfg
    opt = ctx.sgd(model.parameters(), "scrub")

    def teacher_logits(x):
        with torch.no_grad():
            return forward(ctx.teacher, x, ctx)

    def max_terms(batch):  # move away from the original on forget
        x, _ = batch
        kl = kl_div_t(forward(model, x, ctx), teacher_logits(x), cfg.scrub_temperature)
        return dict(loss=-kl, kl=kl)

    def min_terms(batch):  # stay with the original (and the labels) on retain
        x, y = batch
        z = forward(model, x, ctx)
        ce, kl = F.cross_entropy(z, y), kl_div_t(z, teacher_logits(x), cfg.scrub_temperature)
        return dict(loss=cfg.scrub_gamma * ce + cfg.scrub_alpha * kl, ce=ce, kl=kl)

    def one_epoch(epoch):
        out = {}
        if epoch <= cfg.scrub_msteps:
            forget = ctx.loader(ctx.forget, cfg.scrub_forget_batch_size)
            out.update({f"max_{k}": v for k, v in optimise(ctx, forget, opt, max_terms).items()})
        out.update({f"min_{k}": v for k, v in optimise(ctx, ctx.loader(ctx.retain), opt, min_terms).items()})
        return out

    model.train()
    return for_epochs(ctx, cfg.epochs, one_epoch)


# ---------------------------------------------------------------------------------------------- Bad Teacher
def bad_teacher(model: nn.Module, ctx: Ctx) -> list[dict]:
    """Bad Teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using an
    Incompetent Teacher", AAAI 2023; official vikram2000b/bad-teaching-unlearning, unlearn.py `blindspot_unlearner`
    and its notebook's settings): one shuffled pass per epoch over forget + a seeded `bad_teacher_retain_fraction`
    of retain, minimising KL_T(teacher_row || student), where teacher_row is a randomly initialised model
    (`ctx.fresh_model()`, frozen, eval mode) on forget rows and the original on retain rows.
    Differences from the official code: SGD (`ctx.sgd`) instead of Adam, and the KL is the per-row mean
    (`kl_div_t`) where the official F.kl_div default averages over rows x classes (1 / num_classes of it, a scale
    Adam ignores but SGD would not)."""
    cfg = ctx.cfg
    rows = torch.cat([ctx.forget, subsample(ctx.retain, cfg.bad_teacher_retain_fraction, ctx.gen)])
    is_forget = torch.zeros_like(ctx.labels)
    is_forget[ctx.forget] = 1
    flagged = dataclasses.replace(ctx, labels=is_forget)  # batches carry the forget flag as the official data set
    incompetent = ctx.fresh_model().eval().requires_grad_(False)
    opt = ctx.sgd(model.parameters(), "bad_teacher")

    def terms(batch):
        x, is_f = batch
        with torch.no_grad():
            target = torch.where(is_f.bool()[:, None], forward(incompetent, x, ctx), forward(ctx.teacher, x, ctx))
        return dict(loss=kl_div_t(forward(model, x, ctx), target, cfg.bad_teacher_temperature))

    model.train()
    return for_epochs(ctx, cfg.bad_teacher_epochs, lambda epoch: optimise(ctx, flagged.loader(rows), opt, terms))


# ------------------------------------------------------------------------------------------------------ SSD
def ssd_importances(model: nn.Module, ctx: Ctx, rows: torch.Tensor) -> tuple[list[torch.Tensor], int]:
    """SSD's diagonal-Fisher importances (ParameterPerturber.calc_importance in if-loops/selective-synaptic-
    dampening src/ssd.py): per parameter, the mean over batches of the squared gradient of the batch-mean CE, in
    the model's current mode, on eval inputs. Stops when the budget runs out (the mean over the batches seen, of a
    shuffled pass); returns (importances in `model.parameters()` order, batches used)."""
    params = [p for p in model.parameters() if p.requires_grad]
    imp = [torch.zeros_like(p) for p in params]
    n = 0
    for x, y in ctx.loader(rows, train=False):
        if ctx.out_of_budget():
            break
        grads = torch.autograd.grad(F.cross_entropy(forward(model, x, ctx), y), params, allow_unused=True)
        for i, g in zip(imp, grads):
            if g is not None:
                i += g.square()
        n += 1
    return [i / max(n, 1) for i in imp], n


@torch.no_grad()
def ssd_dampen(params: list[torch.Tensor], imp_forget: list[torch.Tensor], imp_all: list[torch.Tensor],
               alpha: float, lam: float) -> int:
    """SSD's update (ssd.py modify_weight, exponent 1, bound 1), in place: where imp_forget > alpha * imp_all,
    multiply the weight by beta = min(lam * imp_all / imp_forget, 1); all other weights stay exactly as they are.
    Returns the number of weights selected."""
    selected_total = 0
    for p, f, a in zip(params, imp_forget, imp_all):
        selected = f > alpha * a  # implies f > 0, so the division below is finite where it is used
        p.mul_(torch.where(selected, (lam * a / f).clamp(max=1.0), torch.ones_like(p)))
        selected_total += int(selected.sum())
    return selected_total


def ssd(model: nn.Module, ctx: Ctx) -> list[dict]:
    """Selective Synaptic Dampening (Foster et al., "Fast Machine Unlearning Without Retraining Through Selective
    Synaptic Dampening", AAAI 2024; official `ssd_tuning` in if-loops/selective-synaptic-dampening): importances
    over forget rows and over all training rows (forget + a seeded `ssd_retain_fraction` of retain; 1 = all, as
    the official code), both in eval mode (BatchNorm statistics untouched, no dropout), then `ssd_dampen` with
    `ssd_alpha` / `ssd_lambda`. No optimiser, no gradient step: the only change is the dampening."""
    cfg = ctx.cfg
    model.eval()
    imp_forget, n_forget = ssd_importances(model, ctx, ctx.forget)
    all_rows = torch.cat([ctx.forget, subsample(ctx.retain, cfg.ssd_retain_fraction, ctx.gen)])
    imp_all, n_all = ssd_importances(model, ctx, all_rows)
    params = [p for p in model.parameters() if p.requires_grad]
    # A pass with no batch (budget gone) leaves zeros: comparing against them would zero weights, so change nothing.
    selected = ssd_dampen(params, imp_forget, imp_all, cfg.ssd_alpha, cfg.ssd_lambda) if n_forget and n_all else 0
    return [dict(forget_batches=n_forget, all_batches=n_all, dampened=selected,
                 dampened_fraction=selected / max(sum(p.numel() for p in params), 1))]


METHODS = {
    "finetune": finetune,
    "gradient_ascent": gradient_ascent,
    "two_stage": two_stage,
    "gan_reference": gan_reference,
    "gan": gan,
    "retain_only": retain_only,
    "neggrad_plus": neggrad_plus,
    "random_label": random_label,
    "salun": salun,
    "l1_sparse": l1_sparse,
    "scrub": scrub,
    "bad_teacher": bad_teacher,
    "ssd": ssd,
}
