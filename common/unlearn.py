"""The unlearning harness shared by both tracks: the counted compute budget, what a method may use (`Ctx`), the
method settings as config fields, and the runner that gives every method the same start and the same budget.

Compute budget, in counted units (never seconds, so the same command gives the same numbers on any machine):
  - every image passed forward through a classifier network costs 1 unit: the model being unlearned, the frozen
    original used as a teacher, Bad Teacher's random teacher, the GANs' classifier passes;
  - every image passed backward through it costs 2 more (the usual FLOP ratio of backward to forward);
  - the GANs' critic (a 10-64-32-1 MLP on 10-number probability vectors, ~3k multiply-adds per row against ~0.56 G
    for one ResNet-18 image) is not counted: 50 critic steps with gradient penalty cost < 1e-4 of one unit;
  - gold's cost = its epochs x rows x 3 (stages 02 / 03 record it as `units`); `budget` is a fraction of it.
Counting is done by forward pre-hooks on the networks (`Budget.watch`): a forward with autograd on and trainable
weights is charged 3 units per image (it will be backpropagated), any other forward 1. A method's optimiser steps
go through `Ctx.step`, which commits the units charged since the last step and refuses (does not take) a step that
would go past the limit: a method stops before such a step and is marked `cut`. Work that cannot be split (SSD's
importance passes, SalUn's saliency pass, a GAN's reference outputs) is committed whole with `Budget.settle` and
marks the run `over_budget` when it goes past the limit; it is never silently truncated.
Wall time is still measured (RTE) but decides nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import torch
import torch.nn as nn

from common.data import batches
from common.io import PipelineError

BN_POLICIES = ("train", "eval")
AUGMENT = ("as_trained", "none")  # a method's `augment` setting (Ctx.train_inputs)


class Budget:
    """Counted compute of one method run: `limit` units (inf when <= 0), `spent` committed units, `pending` units
    charged since the last commit. `marks`: unit limits at which `on_mark(limit)` is called with the model state
    as it was before the first step that would pass them (checkpoints of one run at several budgets)."""

    def __init__(self, limit: float = 0.0, marks: list[float] | None = None, on_mark: Callable | None = None):
        self.limit = limit if limit > 0 else math.inf
        self.spent = self.pending = 0
        self.steps = 0
        self.cut = self.over = False
        self.marks = sorted(m for m in (marks or []) if m < self.limit)
        self.on_mark = on_mark
        self.schedule = None  # fit_phases: how the official schedule was laid over the budget
        self.model, self.buffers = None, {}
        self.t0 = time.perf_counter()

    def keep_buffers(self, model: nn.Module) -> None:
        """Track `model`'s buffers (BatchNorm statistics): a refused step's forward has already moved them, so the
        refusal puts back their values as of the last committed step (the refused step leaves no trace)."""
        self.model = model
        self._snapshot()

    def _snapshot(self) -> None:
        if self.model is not None:
            self.buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}

    def _restore(self) -> None:
        if self.model is not None:
            with torch.no_grad():
                for n, b in self.model.named_buffers():
                    b.copy_(self.buffers[n])

    def committed_state(self) -> dict:
        """The model's state_dict with its buffers as of the last committed step (a checkpoint at a mark)."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        state.update({k: v.clone() for k, v in self.buffers.items()})
        return state

    # --------------------------------------------------------------------------------------------- counting
    def charge(self, images: int, backward: bool) -> None:
        self.pending += images * (3 if backward else 1)

    def charge_backward(self, images: int, times: int = 1) -> None:
        """`times` more backward passes of `images` through a graph whose forward was charged once (2 units per image
        each): Fisher forgetting's one backward per class, a gradient taken with respect to the inputs (FGSM) of a
        frozen network, whose forward the hook charged 1."""
        self.pending += 2 * images * times

    def watch(self, module: nn.Module):
        """Charge every forward of `module` (returns the hook handle; remove it when the run ends)."""

        def hook(mod, args):
            x = args[0]
            grad = torch.is_grad_enabled() and any(p.requires_grad for p in mod.parameters())
            self.charge(x.shape[0], grad)

        return module.register_forward_pre_hook(hook)

    # --------------------------------------------------------------------------------------------- deciding
    def _pass_marks(self, total: float, indivisible: bool) -> None:
        while self.marks and total > self.marks[0]:
            mark = self.marks.pop(0)
            if self.on_mark is not None:
                self.on_mark(mark, indivisible, total)

    def commit(self) -> bool:
        """Before an optimiser step: True (units committed) when spent + pending fits the limit; else the step is
        not to be taken, the pending units are dropped and the run is marked `cut`."""
        total = self.spent + self.pending
        if self.cut or total > self.limit:  # not taken: its units are dropped, its forward's trace undone
            self.cut, self.pending = True, 0
            self._restore()
            return False
        self._pass_marks(total, False)
        self.spent, self.pending = total, 0
        self.steps += 1
        self._snapshot()
        return True

    def settle(self) -> None:
        """Commit indivisible work whole (no step follows it); past the limit it marks the run `over_budget`."""
        total = self.spent + self.pending
        self._pass_marks(total, True)
        self.spent, self.pending = total, 0
        self._snapshot()
        if self.spent > self.limit:
            self.over = True

    def left(self) -> float:
        return self.limit - self.spent

    def exhausted(self) -> bool:
        """Asked before a step: True once the limit is reached (the method is then `cut`: it wanted more)."""
        if self.spent >= self.limit:
            self.cut = True
        return self.cut

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


@dataclass
class Ctx:
    """Everything a method may use. Train rows are indices into `images` / `labels` (uint8 train images on the
    device). `unseen` = (uint8 images, labels) of held-out rows no evaluation scores (stage 01's `test_unseen`):
    the only not-trained-on data a method may look at (the GANs' "real" distribution). `train_transform` is the
    input pipeline the original was trained with (augmentation only if it had it; normalisation from its
    checkpoint); `eval_transform` the same without augmentation."""
    track: str  # "vit" (class-wise) or "resnet" (sample-wise)
    images: torch.Tensor
    labels: torch.Tensor
    forget: torch.Tensor
    retain: torch.Tensor
    unseen: tuple[torch.Tensor, torch.Tensor]
    teacher: nn.Module  # frozen original (eval mode, no grad): the model every method starts from
    fresh_model: Callable[[], nn.Module]  # a freshly initialised model of the same architecture, on the device
    num_classes: int
    train_transform: Callable
    eval_transform: Callable
    cfg: object  # the driver's config (UnlearnConfig + every method's settings)
    device: str
    gen: torch.Generator
    budget: Budget = field(default_factory=Budget)
    s: SimpleNamespace = field(default_factory=SimpleNamespace)  # the running method's settings
    hooks: list = field(default_factory=list)

    # ------------------------------------------------------------------------------------------- batches
    def loader(self, rows: torch.Tensor, batch_size: int, train: bool = True) -> Iterator:
        """One shuffled pass over `rows`, the last partial batch included, as every official loader has it (torch
        DataLoader's drop_last=False). One exception: a last batch of a single row is left out, since BatchNorm cannot
        train on one image (torch raises); `steps_per_pass` counts the same batches. `train`: the method's training
        inputs (`augment` setting: the original's training transform, or none), else eval inputs."""
        rows = rows[:len(rows) - 1] if len(rows) > 1 and len(rows) % batch_size == 1 else rows
        tf = self.train_inputs() if train else self.eval_transform
        return batches(self.images, self.labels, rows, batch_size, tf, self.device, shuffle=True, generator=self.gen)

    def train_inputs(self) -> Callable:
        """The running method's training inputs by its `augment` setting: "as_trained" = the original's training
        transform (augmentation only if the original had it), "none" = eval inputs (the official code of SCRUB,
        NegGrad+ and Bad Teacher trains on un-augmented data)."""
        return self.train_transform if getattr(self.s, "augment", "as_trained") == "as_trained" else self.eval_transform

    def endless(self, rows: torch.Tensor, batch_size: int, train: bool = True) -> Iterator:
        """Batches of `rows`, reshuffled on every pass, forever (a persistent iterator, as reference A's retain)."""
        while True:
            yield from self.loader(rows, batch_size, train)

    def replay(self, rows: torch.Tensor, batch_size: int, train: bool = True) -> Iterator:
        """One shuffled pass over `rows`, then that same pass again and again: the batches of itertools.cycle over a
        loader (its first pass replayed, same rows in the same order; augmentation, if any, is drawn anew)."""
        rows = rows[:len(rows) - 1] if len(rows) > 1 and len(rows) % batch_size == 1 else rows
        order = rows[torch.randperm(len(rows), generator=self.gen).to(rows.device)]
        tf = self.train_inputs() if train else self.eval_transform
        while True:
            yield from batches(self.images, self.labels, order, batch_size, tf, self.device)

    def steps_per_pass(self, rows: torch.Tensor, batch_size: int) -> int:
        n = len(rows) - (1 if len(rows) > 1 and len(rows) % batch_size == 1 else 0)
        return max(math.ceil(n / batch_size), 1)

    def scan(self, rows: torch.Tensor, batch_size: int) -> Iterator:
        """Every row once, unshuffled, eval inputs, the last batch kept (importance and saliency passes)."""
        return batches(self.images, self.labels, rows, batch_size, self.eval_transform, self.device)

    # ------------------------------------------------------------------------------------------- training
    def sgd(self, params, s: SimpleNamespace | None = None) -> torch.optim.Optimizer:
        s = s or self.s
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)

    def set_mode(self, model: nn.Module) -> nn.Module:
        """The BatchNorm policy of gradient steps (`bn`; the reproductions set their reference's own mode)."""
        return model.train(self.cfg.bn == "train")

    def step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, force: bool = False) -> bool:
        """One optimiser step on `loss`, if the budget allows it (see `Budget.commit`); False = stop. `force`: a
        method's smallest unit of work, taken even past the limit (`Budget.settle`: marked over budget)."""
        if force:
            self.budget.settle()
            self.budget.steps += 1
        elif not self.budget.commit():
            return False
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return True

    def out_of_budget(self) -> bool:
        return self.budget.exhausted()

    def make_fresh(self) -> nn.Module:
        """`fresh_model()` with its forwards charged to the budget."""
        m = self.fresh_model()
        self.hooks.append(self.budget.watch(m))
        return m


def _allocate(phases: list[tuple[int, float]], M: int) -> list[int]:
    """M steps over the phases, keeping the schedule's shape (see lay_out)."""
    nonempty = [i for i, (n, _) in enumerate(phases) if n]
    out = [0] * len(phases)
    if M >= len(nonempty):  # each phase its share M x steps / N (cumulative rounding), then at least one step each
        N, cum, done = sum(n for n, _ in phases), 0, 0
        for i in nonempty:
            cum += phases[i][0]
            upto = math.floor(M * cum / N + 0.5)
            out[i], done = upto - done, upto
        for i in nonempty:  # a phase rounded to 0 takes a step from the nearest phase that has more than one
            if not out[i]:
                donor = min((j for j in nonempty if out[j] > 1), key=lambda j: (abs(j - i), -j))
                out[donor] -= 1
                out[i] = 1
        return out
    owner = [i for i, (n, _) in enumerate(phases) for _ in range(n)]  # fewer steps than phases: even picks
    N = len(owner)
    for j in ([N - 1] if M == 1 else [round(k * (N - 1) / (M - 1)) for k in range(M)]):
        out[owner[j]] += 1
    return out


def lay_out(phases: list[tuple[int, float]], left: float) -> list[int]:
    """The steps of an official schedule that fit `left` units, keeping its shape. `phases` = [(steps, units per
    step)] in order. The whole schedule when it fits; otherwise the largest number M of steps whose units fit:
      - M >= the number of phases: each phase gets its share of the M steps (M x its steps / N, cumulative
        rounding: within one step of it) and at least one, in order, so the schedule ends on its last phase (SalUn
        and RL on a retain pass, SCRUB on a min pass) and a decay over it (l1-sparse's coefficient) reaches its
        last value;
      - M < the number of phases: M steps picked evenly along the schedule, both ends included (M = 1: its last
        step); the phases between get none (`phases_dropped`, marked in the metrics and the report's status).
    Returns the steps per phase."""
    total = sum(n * u for n, u in phases)
    if total <= left:
        return [n for n, _ in phases]
    N = sum(n for n, _ in phases)
    for M in range(N, 0, -1):
        out = _allocate(phases, M)
        if sum(k * u for k, (_, u) in zip(out, phases)) <= left:
            return out
    return [0] * len(phases)


def phases_dropped(phases: list[tuple[int, float]], counts: list[int]) -> int:
    """Phases of the official schedule with steps that the budget left without any."""
    return sum(1 for (n, _), k in zip(phases, counts) if n and not k)


def fit_phases(ctx: Ctx, phases: list[tuple[int, float]], names: list[str] | None = None) -> list[int]:
    """Lay a method's official schedule over what is left of the budget (`lay_out`) and record what was run in
    `ctx.budget.schedule` (the run's metrics: official and run steps, phases dropped, the phase sequence as
    [name, steps] runs when `names` gives each phase's name)."""
    counts = lay_out(phases, ctx.budget.left())
    dropped = phases_dropped(phases, counts)
    info = dict(official_steps=sum(n for n, _ in phases), planned_steps=sum(counts),
                phases=sum(1 for n, _ in phases if n), phases_dropped=dropped,
                shape="official" if counts == [n for n, _ in phases] else ("thinned" if not dropped else "phases dropped"))
    if names is not None:
        seq: list[list] = []
        for name, k in zip(names, counts):
            if k:
                if seq and seq[-1][0] == name:
                    seq[-1][1] += k
                else:
                    seq.append([name, k])
        info["sequence"] = seq
    ctx.budget.schedule = info
    if info["official_steps"] and not info["planned_steps"]:  # not one step fits: the budget stopped it at once
        ctx.budget.cut = True
    return counts


# ------------------------------------------------------------------------------------------------- settings
def settings_of(cfg, name: str, registry: dict) -> SimpleNamespace:
    """The resolved settings of method `name`: its config fields `<name>_<setting>`."""
    return SimpleNamespace(**{k: getattr(cfg, f"{name}_{k}") for k in registry[name].SETTINGS})


def check_config(cfg, registry: dict) -> list[str]:
    """Validate an UnlearnConfig before anything is read or written; returns the chosen method names."""
    if cfg.budget < 0:
        raise PipelineError(f"--budget must be >= 0, not {cfg.budget}")
    parse_budgets(cfg.budgets)
    if cfg.bn not in BN_POLICIES:
        raise PipelineError(f"--bn {cfg.bn!r}: use one of {', '.join(BN_POLICIES)}")
    if cfg.eval_batch_size < 1:
        raise PipelineError(f"--eval-batch-size must be >= 1, not {cfg.eval_batch_size}")
    names = chosen_methods(cfg.methods, registry)
    for name in registry:
        for k, v in vars(settings_of(cfg, name, registry)).items():
            if k == "augment" and v not in AUGMENT:
                raise PipelineError(f"--{name}-augment {v!r}: use one of {', '.join(AUGMENT)}".replace("_", "-", 1))
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise PipelineError(f"--{name}-{k}".replace("_", "-") + f" must be >= 0, not {v}")
            if (k == "batch_size" or k.endswith("_batch_size") or k.endswith("steps") and k != "stage1_steps") \
                    and isinstance(v, int) and v < 1 and k != "msteps":
                raise PipelineError(f"--{name}-{k}".replace("_", "-") + f" must be >= 1, not {v}")
    return names


def chosen_methods(spec: str, registry: dict) -> list[str]:
    """`all` or a comma-separated list of registry names (one-line error for an unknown name)."""
    names = list(registry) if spec.strip() == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in names if m not in registry]
    from common.methods import METHODS  # a method of another track only: say so, and why (its TRACK_NOTE)
    elsewhere = [m for m in unknown if m in METHODS]
    if elsewhere:
        why = getattr(METHODS[elsewhere[0]], "TRACK_NOTE", "")
        raise PipelineError(f"method {elsewhere[0]!r} does not run on this track ({why}): drop it from --methods, or "
                            f"use names from {', '.join(registry)}")
    if unknown or not names:
        raise PipelineError(f"unknown or no method(s) {unknown or spec!r} in --methods: use 'all' or names from "
                            f"{', '.join(registry)}")
    return names


def parse_budgets(spec: str) -> list[float]:
    """`--budgets 0.05,0.1,1` -> sorted fractions of gold's cost; empty -> [] (no curve)."""
    if not spec.strip():
        return []
    try:
        values = sorted({float(v) for v in spec.split(",") if v.strip()})
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise PipelineError(f"--budgets {spec!r} is not a comma-separated list of positive fractions of gold's "
                            "cost: e.g. --budgets 0.05,0.1,0.2,0.5,1")
    return values


# ------------------------------------------------------------------------------------------------- runner
def _run_once(name: str, registry: dict, model: nn.Module, initial: dict, ctx: Ctx, limit: float,
              marks: list[float], on_mark: Callable | None) -> dict:
    """One run of method `name` from `initial` weights under `limit` units. Every run draws the same random
    streams (batch order, augmentation, dropout, GP): the generator and torch's seed are reset first."""
    model.load_state_dict(initial)
    ctx.gen = torch.Generator().manual_seed(ctx.cfg.seed)
    torch.manual_seed(ctx.cfg.seed)
    ctx.budget = Budget(limit, marks, on_mark)
    ctx.s = settings_of(ctx.cfg, name, registry)
    ctx.hooks = [ctx.budget.watch(model), ctx.budget.watch(ctx.teacher)]
    ctx.budget.keep_buffers(model)
    try:
        history = registry[name].run(model, ctx)
        ctx.budget.settle()  # forwards after the last step (none for most methods) are part of the cost
    finally:
        for h in ctx.hooks:
            h.remove()
        ctx.hooks = []
    b = ctx.budget
    sched = b.schedule or {}
    return dict(units=int(b.spent), steps=b.steps, cut=b.cut, over_budget=b.over, seconds=round(b.elapsed(), 3),
                **({"schedule": sched, "phases_dropped": sched["phases_dropped"] > 0} if sched else {}),
                history=history)


def run_methods(names: list[str], registry: dict, model: nn.Module, ctx: Ctx, gold_units: int,
                evaluate: Callable[[nn.Module], dict], save: Callable, log, budgets: list[float] = (),
                curve_point: Callable[[dict], dict] | None = None) -> tuple[dict, dict]:
    """Run each method from the same starting weights (model's current state) under the same counted budget.

    `evaluate(model) -> logits` is the one evaluation pass (not counted); `save(name, model, logits)` writes the
    artefacts. With `budgets` (fractions of gold's cost), every method is also evaluated at each of them for the
    trade-off curve, with the same settings at every budget: a method whose schedule does not depend on the
    budget (`SCHEDULE = "fixed"`) runs once, at the largest budget, and its weights are evaluated at each budget
    mark it passes; one whose schedule is laid out over the budget (`"budget"`) runs once per budget.
    `curve_point(logits) -> figures` turns those logits into the curve's figures. The point at the default
    `budget` is the main run itself (not run twice).
    Returns ({name: run record with logits}, {name: [curve points]})."""
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    limit = ctx.cfg.budget * gold_units if ctx.cfg.budget > 0 else math.inf
    results, curves = {}, {}
    for name in names:
        module = registry[name]
        run = _run_once(name, registry, model, initial, ctx, limit, [], None)
        logits = evaluate(model)
        save(name, model, logits)
        run.update(pct_of_gold=100.0 * run["units"] / gold_units, budget_units=limit if math.isfinite(limit) else None,
                   settings=vars(ctx.s).copy(), source=module.SOURCE, bn=bn_of(module, ctx.cfg),
                   epochs=epochs_done(run["history"]))
        results[name] = dict(run, logits=logits)
        for h in run["history"]:
            log.log("step", echo=False, method=name, **h)
        log.log("unlearned", method=name, units=run["units"], pct_of_gold=round(run["pct_of_gold"], 2),
                steps=run["steps"], cut=run["cut"], over_budget=run["over_budget"], seconds=run["seconds"])
        if budgets and curve_point is not None:
            curves[name] = budget_curve(name, registry, model, initial, ctx, gold_units, budgets, evaluate,
                                        curve_point, (run, logits))
            model.load_state_dict(initial)
    return results, curves


def budget_curve(name, registry, model, initial, ctx, gold_units, budgets, evaluate, curve_point, main) -> list[dict]:
    """The method's figures at each budget fraction (see run_methods); `main` = (run record, logits) of the run at
    the default budget, reused by a method whose result does not depend on the budget (`SCHEDULE = "once"`)."""
    points = []

    def point(fraction, units, cut, over, logits=None):
        figs = curve_point(logits if logits is not None else evaluate(model))
        points.append(dict(budget=fraction, units=int(units), pct_of_gold=100.0 * units / gold_units, cut=bool(cut),
                           over_budget=bool(over), **figs))

    run, logits = main
    schedule = registry[name].SCHEDULE
    if schedule == "once":  # one indivisible pass: the same result at every budget
        for fraction in budgets:
            point(fraction, run["units"], False, run["units"] > fraction * gold_units, logits)
        return points
    for fraction in budgets:  # the run at the default budget is that budget's point: not repeated
        if math.isclose(fraction, ctx.cfg.budget):
            point(fraction, run["units"], run["cut"], run["over_budget"], logits)
    others = [b for b in budgets if not math.isclose(b, ctx.cfg.budget)]
    if schedule == "fixed" and others:
        limits = {b * gold_units: b for b in others}
        top = max(limits)
        saved = {}

        def on_mark(mark, indivisible, total):  # the state before the first step past `mark`, evaluated later
            units = total if indivisible else ctx.budget.spent  # indivisible work is done whole at that budget
            state = ({k: v.detach().clone() for k, v in model.state_dict().items()} if indivisible
                     else ctx.budget.committed_state())  # a step's forward has already moved BN statistics
            saved[mark] = (state, units, indivisible)

        run = _run_once(name, registry, model, initial, ctx, top, list(limits), on_mark)
        final = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for mark, fraction in sorted(limits.items()):
            if mark in saved:
                state, units, indivisible = saved[mark]
                model.load_state_dict(state)
                # a mark passed inside indivisible set-up work: that budget runs the set-up whole and no step
                point(fraction, units, not indivisible, indivisible)
            else:  # finished (or stopped) within this budget: the final weights
                model.load_state_dict(final)
                point(fraction, run["units"], run["cut"], run["over_budget"])
    elif schedule == "budget":
        for fraction in others:
            run = _run_once(name, registry, model, initial, ctx, fraction * gold_units, [], None)
            point(fraction, run["units"], run["cut"], run["over_budget"])
    points.sort(key=lambda p: p["budget"])
    return points


def reproduce(cfg, registry: dict, model: nn.Module, ctx: Ctx, gold_units: int, evaluate: Callable,
              figures: Callable[[dict], dict], log) -> dict:
    """The references' methods named in `--reproduce`, run with no budget as the references ran them (the paper
    profile); {name: figures, units, pct_of_gold, steps, seconds}. The comparison table uses the budgeted runs."""
    names = chosen_methods(cfg.reproduce, registry) if cfg.reproduce.strip() else []
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {}
    for name in names:
        run = _run_once(name, registry, model, initial, ctx, math.inf, [], None)
        out[name] = dict(figures(evaluate(model)), units=run["units"], pct_of_gold=100.0 * run["units"] / gold_units,
                         steps=run["steps"], seconds=run["seconds"], settings=vars(ctx.s).copy())
        log.log("reproduced", method=name, units=run["units"], steps=run["steps"], seconds=run["seconds"])
    model.load_state_dict(initial)
    return out


def bn_of(module, cfg) -> str:
    """The BatchNorm mode of the method's gradient steps: its reference's own mode, or the harness policy."""
    return getattr(module, "BN", None) or cfg.bn


def epochs_done(history: list[dict]) -> float:
    """Epochs of the method's own schedule that it ran (fractional when cut): the last history row's `epoch`
    scaled by the share of that epoch's steps taken, when the method records it; else the number of epoch rows."""
    rows = [h for h in history if "epoch" in h]
    if not rows:
        return 0.0
    last = rows[-1]
    frac = last.get("epoch_fraction", 1.0)
    return float(last["epoch"] - 1 + frac)


# ------------------------------------------------------------------------------------------------- config
def with_method_settings(base: type, track: str, registry: dict) -> type:
    """`base` (an UnlearnConfig dataclass) extended by every method's settings as fields `<method>_<setting>`
    (so `--<method>-<setting> value` overrides work, unknown names are errors and --help lists them). The
    class's `preset(profile)` merges the base presets with each method file's PRESETS for this track:
    keys "<track>", "<profile>" and "<track>/<profile>", later ones winning."""
    from common.config import PRESETS

    fields = [(f"{name}_{k}", type(v), dataclasses.field(default=v))
              for name, mod in registry.items() for k, v in mod.SETTINGS.items()]
    cls = dataclasses.make_dataclass(base.__name__, fields, bases=(base,))
    cls.__module__ = base.__module__

    def preset(profile: str) -> dict:
        values = dict(PRESETS.get(base, {}).get(profile, {}))
        for name, mod in registry.items():
            presets = getattr(mod, "PRESETS", {})
            for key in (track, profile, f"{track}/{profile}"):
                values.update({f"{name}_{k}": v for k, v in presets.get(key, {}).items()})
        return values

    cls.preset = staticmethod(preset)
    cls.track = track
    return cls


# ------------------------------------------------------------------------------------------- tuned settings
REPO = Path(__file__).resolve().parents[1]


def method_file_hash(name: str) -> str:
    """sha256 (16 hex) of common/methods/<name>.py: tuned settings are current only for the file they were tuned with."""
    return hashlib.sha256((REPO / "common" / "methods" / f"{name}.py").read_bytes()).hexdigest()[:16]


def tuned_file(tuned_dir: str, profile: str):
    path = Path(tuned_dir)
    return (path if path.is_absolute() else REPO / path) / f"{profile}.json"


def _cast(value, like):
    return type(like)(value) if isinstance(like, (int, float)) and not isinstance(like, bool) else value


def apply_tuned(cfg, track: str, registry: dict, prep: dict, splits: dict) -> dict:
    """Set each method's settings to what `make tune` chose for this profile and track (<tuned_dir>/<profile>.json,
    written by common.tune), where the entry is current: tuned with this method file, this profile and this data
    (stage 01's data_hash). A stale entry is reported (`status` "stale", with why) and not used; settings given on
    the command line win. Raises when the reported problem is the tuning problem (same forget class, or sample-wise
    forget rows shared with the tuning forget set): the tuned numbers would be scored on their own tuning data.
    Returns {method: provenance} for the metrics and the report."""
    if cfg.settings not in ("tuned", "official"):
        raise PipelineError(f"--settings {cfg.settings!r}: use tuned or official")
    out = {n: dict(status="official", why="--settings official") for n in registry}
    if cfg.settings == "official":
        return out
    path = tuned_file(cfg.tuned_dir, cfg.profile)
    if not path.is_file():
        return {n: dict(status="official", why=f"no tuned settings for profile {cfg.profile} ({path.name}; make tune)")
                for n in registry}
    try:
        entries = json.loads(path.read_text())["tracks"].get(track, {})
    except (ValueError, KeyError, TypeError):
        raise PipelineError(f"{path} is not a tuned-settings file of common.tune: re-run make tune, or pass "
                            "--settings official") from None
    problem = entries.get("problem", {})
    # the overlap checks guard entries that would be used: tuned on this data (stage 01's data_hash). Entries of
    # other data are all stale below (official defaults run), and their row ids name other rows.
    if any(e.get("tuned_for", {}).get("data") == prep.get("data_hash") for e in entries.get("methods", {}).values()):
        if track == "vit" and problem.get("forget_class") == prep["forget_class"]:
            raise PipelineError(f"the reported forget class {prep['forget_class']} is the class the settings in {path} "
                                "were tuned on: report another class, re-tune with another TUNE_FORGET_CLASS, or pass "
                                "--settings official")
        shared = set(problem.get("forget_rows", [])) & set(splits["sample_forget"].tolist()) if track == "resnet" else ()
        if shared:
            raise PipelineError(f"the reported forget set shares {len(shared)} rows with the tuning problem's forget set "
                                f"of {path}: re-tune for this SPLIT_SEED (make tune) or pass --settings official")
    for name in registry:
        entry = entries.get("methods", {}).get(name)
        if entry is None:
            out[name] = dict(status="official", why=f"not tuned for the {track} track in {path.name}")
            continue
        now = dict(method_file=method_file_hash(name), profile=cfg.profile, data=prep.get("data_hash"))
        changed = [k for k, v in now.items() if entry["tuned_for"].get(k) != v]
        summary = {k: entry["study"][k] for k in ("trials", "objective", "default_objective", "best_trial",
                                                   "cost_pct_of_gold", "tuning", "command") if k in entry["study"]}
        if changed:
            out[name] = dict(status="stale", why=f"tuned for another {' and '.join(changed)} ({path.name}); "
                                                 "official defaults used: re-run make tune", **summary)
            print(f"WARNING: the tuned settings of {name} ({track}) are stale: {out[name]['why']}", flush=True)
            continue
        overridden = [k for k in entry["settings"] if f"{name}_{k}" in getattr(cfg, "cli_fields", ())]
        for k, v in entry["settings"].items():
            if k not in overridden:
                setattr(cfg, f"{name}_{k}", _cast(v, getattr(cfg, f"{name}_{k}")))
        # tuned in another precision: still used (the settings are the same search's best), and the report says so
        tuned_in = entry.get("precision")
        precision = dict(tuned_precision=tuned_in, precision_differs=tuned_in is not None and tuned_in != cfg.precision)
        out[name] = dict(status="tuned", settings=entry["settings"], overridden=overridden, **precision, **summary)
        print(f"tuned settings of {name} ({track}, {path.name}): " + ", ".join(
            f"{k}={getattr(cfg, f'{name}_{k}')!r}" for k in entry["settings"])
            + (f" (tuned in {tuned_in}, this run is {cfg.precision})" if precision["precision_differs"] else ""),
            flush=True)
    return out
