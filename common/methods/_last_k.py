"""Shared by `eu_k` and `cf_k` (Goel et al., 2022): the last k blocks of a network and its classifier, trained on
retain with every other weight frozen; as xcadet/deepunlearn's munl/unlearning/{exact_unlearning_k,
catastrophic_forgetting_k}.py and munl/unlearning/scrub_utils.py `fk_finetune` run them.

Blocks, as deepunlearn's `select_last_k_blocks` counts them: the CIFAR ResNet-18's layer1 ... layer4 (its stem is
always frozen; k >= 4 trains every block), a timm ViT's transformer blocks; the classifier (ResNet `fc`; ViT final
`norm`, `fc_norm` where present, and `head`) is always trained. Another network: its top-level children with
weights, the last one as the classifier.
Training (fk_finetune): SGD with momentum 0 and no weight decay; loss CE + (anchor / 2) x sum ||theta - theta_0||^2
over the trained weights, theta_0 = the weights as training starts (after EU-k's re-initialisation); lr x 0.1 for
each milestone int(E x 0.5), int(E x 0.8), int(E x 0.9) the (1-based) epoch exceeds. deepunlearn trains in eval mode
(no BatchNorm statistics move); here the trained modules follow the harness BatchNorm policy (`--bn`, one for
every method) and the frozen ones stay in eval mode (frozen means their statistics do not move either).
Cost: 3 x batch units per step: every image still passes forward and is counted as backpropagated, although the
backward pass stops at the first trained block (the harness counts images, not layers; an over-count, never an
under-count).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.methods._base import epoch_row, forward, optimise

# deepunlearn's defaults and search space, shared by eu_k and cf_k (each adds its `augment`)
SETTINGS = dict(lr=0.01, epochs=10, batch_size=256, k=1, anchor=0.1)
PRESETS = {"smoke": dict(epochs=1, batch_size=32)}
SEARCH_SPACE = dict(lr=("log", 1e-5, 1e-1), epochs=("int", 1, 10), k=("int", 1, 4), anchor=("log", 1e-5, 1e-1))
DECAY = (0.5, 0.8, 0.9)  # milestones as fractions of the epochs (deepunlearn fk_finetune)
DECAY_RATE = 0.1  # deepunlearn's sgda_decay_rate default


def units_per_step(s, ctx) -> int:
    return 3 * min(s.batch_size, len(ctx.retain))


def blocks_and_classifier(model: nn.Module) -> tuple[list[str], list[str]]:
    """(block module names in order, classifier module names) of `model` (see the module docstring)."""
    names = dict(model.named_children())
    if all(f"layer{i}" in names for i in range(1, 5)) and "fc" in names:  # torchvision ResNet
        return [f"layer{i}" for i in range(1, 5)], ["fc"]
    if "blocks" in names and "head" in names:  # timm ViT
        head = [n for n in ("norm", "fc_norm", "head") if n in names and any(True for _ in names[n].parameters())]
        return [f"blocks.{i}" for i in range(len(model.blocks))], head
    with_weights = [n for n, m in names.items() if any(True for _ in m.parameters())]
    return with_weights[:-1], with_weights[-1:]


def trained_modules(model: nn.Module, k: int) -> list[str]:
    """The names of the modules EU-k / CF-k train: the last k blocks and the classifier."""
    blocks, classifier = blocks_and_classifier(model)
    return (blocks[-k:] if k > 0 else []) + classifier


def freeze_all_but(model: nn.Module, names: list[str]) -> list[nn.Parameter]:
    """requires_grad False everywhere except the modules `names`; returns their parameters."""
    model.requires_grad_(False)
    mods = [model.get_submodule(n) for n in names]
    for m in mods:
        m.requires_grad_(True)
    return [p for m in mods for p in m.parameters()]


def set_modes(model: nn.Module, ctx, names: list[str]) -> None:
    """Trained modules: the harness BatchNorm policy; every other module: eval (frozen)."""
    model.eval()
    for n in names:
        model.get_submodule(n).train(ctx.cfg.bn == "train")


def lr_at(lr: float, epoch: int, epochs: int) -> float:
    """fk_finetune's step decay: lr x DECAY_RATE^(number of milestones int(epochs x f) below the 1-based epoch)."""
    return lr * DECAY_RATE ** sum(epoch > int(epochs * f) for f in DECAY)


def finetune_last_k(model: nn.Module, ctx, names: list[str]) -> list[dict]:
    """fk_finetune over retain: `epochs` passes, CE + anchor / 2 x ||theta - theta_0||^2 on the trained weights."""
    s = ctx.s
    params = freeze_all_but(model, names)
    theta0 = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=s.lr, momentum=0.0, weight_decay=0.0)
    set_modes(model, ctx, names)
    per_epoch = ctx.steps_per_pass(ctx.retain, s.batch_size)

    def terms(batch):
        x, y = batch
        ce = F.cross_entropy(forward(model, x, ctx), y)
        l2 = sum((p - p0).square().sum() for p, p0 in zip(params, theta0))
        return dict(loss=ce + s.anchor / 2 * l2, ce=ce, l2=l2)

    history = []
    try:
        for epoch in range(1, s.epochs + 1):
            if ctx.out_of_budget():
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(s.lr, epoch, s.epochs)
            stats = optimise(ctx, ctx.loader(ctx.retain, s.batch_size), per_epoch, opt, terms)
            history.append(epoch_row(epoch, per_epoch, stats, lr=opt.param_groups[0]["lr"]))
    finally:
        model.requires_grad_(True)
    return history
