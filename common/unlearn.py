"""The one unlearning-method registry for both tracks: name -> function(model, ctx) -> history (list of dicts).

A method changes `model` in place. Every method of a run starts from the same `original` weights (the driver, 04
for the class-wise ViT track and 05 for the sample-wise ResNet track, reloads them), sees the same `Ctx`, and runs
under the same compute budget. Adding a method = one function in `common/methods.py` + one line in its METHODS
dict + its config fields in `common/config.py` (`UnlearnConfig`).

Compute budget: `budget` x gold's measured training time of the same track (seconds of wall time, unlearning
steps only, no evaluation). Methods express their work in epochs / steps; every loop asks `ctx.out_of_budget()`
before a step (the shared `run_epochs` does so), and a method stopped that way is recorded as `cut`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn as nn

from common.data import batches, num_batches
from common.io import PipelineError
from common.train import train_epoch


class Budget:
    """Wall-clock allowance for one method run: `seconds` (inf = no limit); `cut` records a stop for budget."""

    def __init__(self, seconds: float):
        self.seconds = seconds if seconds > 0 else math.inf
        self.t0 = time.perf_counter()
        self.cut = False

    def start(self) -> None:
        self.t0, self.cut = time.perf_counter(), False

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def exhausted(self) -> bool:
        if self.elapsed() >= self.seconds:
            self.cut = True
        return self.cut


@dataclass
class Ctx:
    """Everything a method may use. Train rows are indices into `images` / `labels` (uint8 train images on the
    device). `unseen` = (uint8 images, labels) of held-out rows no evaluation scores (stage 01's `test_unseen`):
    the only not-trained-on data a method may look at (the GANs' "real" distribution)."""
    track: str  # "vit" (class-wise) or "resnet" (sample-wise)
    images: torch.Tensor
    labels: torch.Tensor
    forget: torch.Tensor
    retain: torch.Tensor
    unseen: tuple[torch.Tensor, torch.Tensor]
    teacher: nn.Module  # frozen original (eval mode, no grad): the model every method starts from
    fresh_model: Callable[[], nn.Module]  # a freshly initialised model of the same architecture, on the device
    num_classes: int
    train_transform: Callable  # augmentation + normalisation of a uint8 batch (the track's training inputs)
    eval_transform: Callable  # normalisation only
    cfg: object  # the driver's UnlearnConfig subclass
    device: str
    gen: torch.Generator
    budget: Budget
    lr_override: float = 0.0  # set by the driver's --grid

    # ------------------------------------------------------------------------------------------- batches
    def loader(self, rows: torch.Tensor, batch_size: int | None = None, train: bool = True,
               drop_last: bool = False) -> Iterator:
        """One shuffled pass over `rows` (train transform by default)."""
        return batches(self.images, self.labels, rows, batch_size or self.cfg.batch_size,
                       self.train_transform if train else self.eval_transform, self.device, shuffle=True,
                       drop_last=drop_last and len(rows) >= (batch_size or self.cfg.batch_size), generator=self.gen)

    def endless(self, rows: torch.Tensor, batch_size: int | None = None, train: bool = True) -> Iterator:
        """Batches of `rows`, reshuffled on every pass, forever (a persistent iterator, as reference A's retain)."""
        while True:
            yield from self.loader(rows, batch_size, train)

    def n_batches(self, rows: torch.Tensor, batch_size: int | None = None) -> int:
        return num_batches(len(rows), batch_size or self.cfg.batch_size)

    # ------------------------------------------------------------------------------------------- optimiser
    def lr(self, method: str) -> float:
        """The method's learning rate: --grid value > `<method>_lr` field (0 = unset) > `lr`."""
        if self.lr_override > 0:
            return self.lr_override
        return getattr(self.cfg, f"{method}_lr", 0.0) or self.cfg.lr

    def sgd(self, params, method: str) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.lr(method), momentum=self.cfg.momentum,
                               weight_decay=self.cfg.weight_decay)

    def out_of_budget(self) -> bool:
        return self.budget.exhausted()


def run_epochs(model: nn.Module, ctx: Ctx, rows: torch.Tensor, loss_fn: Callable, epochs: int,
               opt: torch.optim.Optimizer, name: str) -> list[dict]:
    """`epochs` passes of `loss_fn(model, x, y) -> (loss, logits)` over `rows` (shared epoch loop of
    common.train), stopping early when the budget runs out."""
    history = []
    for epoch in range(1, epochs + 1):
        if ctx.out_of_budget():
            break
        stats = train_epoch(model, ctx.loader(rows), opt, loss_fn, ctx.device, ctx.cfg.amp,
                            total=ctx.n_batches(rows), desc=f"{name} {epoch}", stop=ctx.out_of_budget)
        history.append(dict(epoch=epoch, **stats))
    return history


def check_config(cfg, registry: dict) -> list[str]:
    """Validate an UnlearnConfig before anything is read or written; returns the chosen method names."""
    parse_grid(cfg.grid)
    for name in ("budget", "epochs", "stage1_steps", "gan_steps", "critic_warmup", "lambda_retain", "lambda_gp"):
        if getattr(cfg, name) < 0:
            raise PipelineError(f"--{name.replace('_', '-')} must be >= 0, not {getattr(cfg, name)}")
    for name in ("batch_size", "eval_batch_size", "gan_batch_size", "n_critic"):
        if getattr(cfg, name) < 1:
            raise PipelineError(f"--{name.replace('_', '-')} must be >= 1, not {getattr(cfg, name)}")
    return chosen_methods(cfg.methods, registry)


def chosen_methods(spec: str, registry: dict) -> list[str]:
    """`all` or a comma-separated list of registry names (one-line error for an unknown name)."""
    names = list(registry) if spec.strip() == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in names if m not in registry]
    if unknown or not names:
        raise PipelineError(f"unknown or no method(s) {unknown or spec!r} in --methods: use 'all' or names from "
                            f"{', '.join(registry)}")
    return names


def parse_grid(spec: str) -> list[float]:
    """`--grid lr=a,b,c` -> [a, b, c]; empty -> [] (no grid). Only the learning rate is searched."""
    if not spec.strip():
        return []
    key, _, values = spec.partition("=")
    try:
        lrs = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        lrs = []
    if key.strip() != "lr" or not lrs or min(lrs) <= 0:
        raise PipelineError(f"--grid {spec!r} is not of the form lr=a,b,c with positive values: e.g. --grid lr=1e-3,1e-2")
    return lrs


def run_methods(names: list[str], registry: dict, model: nn.Module, ctx: Ctx, gold_seconds: float,
                evaluate: Callable[[nn.Module], dict], selection_gap: Callable[[dict], float], save: Callable,
                log) -> dict:
    """Run each method from the same starting weights (model's current state) under the same budget.

    `evaluate(model) -> logits` is the one evaluation pass (not timed); `save(name, model, logits)` writes the
    artefacts. With --grid, every lr candidate is run and the one with the smallest `selection_gap(logits)` (a
    gap to gold on validation rows, never on reported test rows) is kept. Returns per method: seconds (the
    method's own wall time, evaluation excluded), cut (stopped by the budget), lr, history, grid."""
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    limit = ctx.cfg.budget * gold_seconds
    results = {}
    for name in names:
        tried, best = [], None
        for lr in parse_grid(ctx.cfg.grid) or [0.0]:
            model.load_state_dict(initial)
            ctx.lr_override, ctx.gen, ctx.budget = lr, torch.Generator().manual_seed(ctx.cfg.seed), Budget(limit)
            torch.manual_seed(ctx.cfg.seed)  # augmentation / dropout / GP draws: the same stream for every method
            ctx.budget.start()
            history = registry[name](model, ctx)
            seconds = ctx.budget.elapsed()
            logits = evaluate(model)
            run = dict(lr=ctx.lr(name), seconds=round(seconds, 3), cut=ctx.budget.cut, history=history)
            if lr > 0:
                run["val_gap"] = selection_gap(logits)
                tried.append({k: run[k] for k in ("lr", "val_gap", "seconds", "cut")})
                log.log("grid", method=name, lr=run["lr"], val_gap=run["val_gap"], seconds=run["seconds"])
            if best is None or run.get("val_gap", 0) < best[0].get("val_gap", 0):
                best = (run, {k: v.detach().clone() for k, v in model.state_dict().items()}, logits)
        run, state, logits = best
        model.load_state_dict(state)
        save(name, model, logits)
        results[name] = dict(run, grid=tried, logits=logits)
        for h in run["history"]:
            log.log("step", echo=False, method=name, **h)
        log.log("unlearned", method=name, lr=run["lr"], seconds=run["seconds"], cut=run["cut"])
    return results
