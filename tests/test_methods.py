"""The unlearning registry (common/methods.py, common/unlearn.py) on tiny models of BOTH tracks, reference A's
2-stage and reference B's GAN step counts, and the `paper` profile = the references' settings."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import methods
from common.config import (PrepareConfig, ResNetConfig, ResNetUnlearnConfig, UnlearnConfig, ViTRefsConfig,
                           ViTUnlearnConfig, parse_config)
from common.data import resnet_transform, vit_transform
from common.io import PipelineError
from common.models import build_model
from common.unlearn import Budget, Ctx, chosen_methods, parse_grid, run_methods

N_FORGET, N_RETAIN, N_UNSEEN, CLASSES = 16, 32, 16, 4


class TinyBNNet(nn.Module):
    """A stand-in for the ResNet track: conv + BatchNorm (so train/eval mode matters), 32 px inputs."""

    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))


def tiny_vit():
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=CLASSES, img_size=32, depth=1)


TRACKS = {
    "vit": dict(model=tiny_vit, cfg=ViTUnlearnConfig, train_tf=vit_transform(32), eval_tf=vit_transform(32)),
    "resnet": dict(model=TinyBNNet, cfg=ResNetUnlearnConfig, train_tf=resnet_transform(True),
                   eval_tf=resnet_transform(False)),
}


def make_ctx(track: str, model: nn.Module, budget: float = 0.0, **cfg_fields) -> Ctx:
    spec = TRACKS[track]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N_FORGET + N_RETAIN, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, CLASSES, (N_FORGET + N_RETAIN,), generator=g)
    if track == "vit":  # class-wise: the forget rows are exactly class 0
        labels[:N_FORGET] = 0
        labels[N_FORGET:] = torch.arange(N_RETAIN) % (CLASSES - 1) + 1
    unseen = torch.randint(0, 256, (N_UNSEEN, 3, 32, 32), dtype=torch.uint8, generator=g)
    fields = dict(device="cpu", amp=False, batch_size=8, epochs=2, lr=1e-2, budget=budget, gan_steps=3,
                  gan_batch_size=8, critic_warmup=2, n_critic=2)
    fields.update(cfg_fields)
    return Ctx(track=track, images=images, labels=labels, forget=torch.arange(N_FORGET),
               retain=torch.arange(N_FORGET, N_FORGET + N_RETAIN),
               unseen=(unseen, torch.randint(0, CLASSES, (N_UNSEEN,), generator=g)),
               teacher=model, fresh_model=spec["model"], num_classes=CLASSES, train_transform=spec["train_tf"],
               eval_transform=spec["eval_tf"], cfg=spec["cfg"](**fields), device="cpu",
               gen=torch.Generator().manual_seed(0), budget=Budget(0))


@torch.no_grad()
def logits_of(model: nn.Module, ctx: Ctx, rows: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(ctx.eval_transform(ctx.images[rows])).float()


def forget_acc(model, ctx) -> float:
    return (logits_of(model, ctx, ctx.forget).argmax(1) == ctx.labels[ctx.forget]).float().mean().item()


_ORIGINALS: dict = {}


def original(track: str) -> nn.Module:
    """A tiny model that has memorised every train row (so forget accuracy has room only to fall)."""
    if track not in _ORIGINALS:
        torch.manual_seed(0)
        model = TRACKS[track]["model"]()
        ctx = make_ctx(track, model)
        x, y = ctx.eval_transform(ctx.images), ctx.labels
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(150):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        assert forget_acc(model, ctx) == 1.0, "fixture: the tiny original did not memorise its forget rows"
        _ORIGINALS[track] = model
    return _ORIGINALS[track]


class _Log:
    def log(self, *args, **kwargs):
        pass


@pytest.mark.parametrize("track", list(TRACKS))
@pytest.mark.parametrize("name", list(methods.METHODS))
def test_every_method_on_both_tracks(track, name):
    """From the same memorising original: the weights change, the logits stay finite, forget accuracy does not
    rise, and the driver records seconds within the budget (plus one step of slack)."""
    import copy

    start = original(track)
    model = copy.deepcopy(start)
    ctx = make_ctx(track, copy.deepcopy(start).eval().requires_grad_(False))
    saved = {}
    gold_seconds, budget = 10.0, 0.2  # limit = 2 s of wall time
    ctx.cfg.budget = budget
    runs = run_methods([name], methods.METHODS, model, ctx, gold_seconds,
                       evaluate=lambda m: {"train": logits_of(m, ctx, torch.arange(len(ctx.labels)))},
                       selection_gap=lambda lg: 0.0, save=lambda n, m, lg: saved.update({n: lg}), log=_Log())
    run = runs[name]
    changed = any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), start.state_dict().values()))
    assert changed, f"{name} left the weights untouched"
    assert torch.isfinite(saved[name]["train"]).all()
    assert forget_acc(model, ctx) <= forget_acc(start, ctx)
    assert run["seconds"] <= budget * gold_seconds + 1.5
    assert isinstance(run["history"], list) and all(isinstance(h, dict) for h in run["history"])


def test_budget_cut_flag():
    import copy

    model = original("resnet")
    ctx = make_ctx("resnet", copy.deepcopy(model).eval(), budget=0.3, epochs=10_000)
    runs = run_methods(["finetune"], methods.METHODS, copy.deepcopy(model), ctx, gold_seconds=1.0,
                       evaluate=lambda m: {}, selection_gap=lambda lg: 0.0, save=lambda *a: None, log=_Log())
    assert runs["finetune"]["cut"] is True
    assert 0.3 <= runs["finetune"]["seconds"] < 0.3 + 1.0
    assert len(runs["finetune"]["history"]) < 10_000


def test_grid_picks_the_smallest_validation_gap():
    import copy

    model = original("vit")
    ctx = make_ctx("vit", copy.deepcopy(model).eval(), epochs=1, grid="lr=1e-3,1e-2,1e-1")
    gaps = iter([3.0, 1.0, 2.0])
    saved = {}
    runs = run_methods(["finetune"], methods.METHODS, copy.deepcopy(model), ctx, 10.0, evaluate=lambda m: {},
                       selection_gap=lambda lg: next(gaps), save=lambda n, m, lg: saved.update(n=n), log=_Log())
    assert runs["finetune"]["lr"] == 1e-2 and runs["finetune"]["val_gap"] == 1.0
    assert [g["lr"] for g in runs["finetune"]["grid"]] == [1e-3, 1e-2, 1e-1]


@pytest.mark.parametrize("stage", ["04_unlearn_vit.py", "05_unlearn_gan.py"])
@pytest.mark.parametrize("bad", [["--methods", "finetune,nope"], ["--grid", "lr=abc"], ["--budget", "-1"],
                                 ["--batch-size", "0"]])
def test_bad_unlearning_options_are_one_line_errors_before_any_write(run_stage, tmp_path, stage, bad):
    code, err = run_stage(stage, ["--profile", "smoke", "--results", str(tmp_path / "r"), *bad])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_chosen_methods_and_grid_parsing():
    assert chosen_methods("all", methods.METHODS) == list(methods.METHODS)
    assert chosen_methods("gan, finetune", methods.METHODS) == ["gan", "finetune"]
    for bad in ("finetune,nope", ""):
        with pytest.raises(PipelineError):
            chosen_methods(bad, methods.METHODS)
    assert parse_grid("lr=1e-3,1e-2") == [1e-3, 1e-2] and parse_grid("") == []
    for bad in ("wd=1", "lr=", "lr=a", "lr=-1"):
        with pytest.raises(PipelineError):
            parse_grid(bad)


# ------------------------------------------------------------------------------ reference A's 2-stage
def test_contrastive_loss_with_tau_hand_computed():
    # S = z_f z_r^T / tau = [[1/tau, 0]]; -log softmax = [log(1 + e^(1/tau)) - 1/tau, log(1 + e^(1/tau))]
    tau = 1.15
    z_f, z_r = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = 1 / tau
    expected = ((math.log(1 + math.exp(a)) - a) + math.log(1 + math.exp(a))) / 2  # mean over all entries
    assert methods.contrastive_loss(z_f, z_r, tau).item() == pytest.approx(expected, abs=1e-6)
    # two forget rows: S = [[2, 0], [0, 0]] / tau; the mean runs over all 4 entries
    z_f = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    b = 2 / tau
    row1 = (math.log(1 + math.exp(b)) - b) + math.log(1 + math.exp(b))
    row2 = 2 * math.log(2)
    assert methods.contrastive_loss(z_f, z_r, tau).item() == pytest.approx((row1 + row2) / 4, abs=1e-6)


def test_two_stage_retain_logits_are_constants_in_l_con():
    """l_con's gradient w.r.t. the retain logits is exactly zero (detached, as reference A), the forget side's not."""
    z_f = torch.randn(4, 10, requires_grad=True)
    z_r = torch.randn(6, 10, requires_grad=True)
    methods.contrastive_loss(z_f, z_r.detach(), 1.15).backward()
    assert z_r.grad is None or torch.count_nonzero(z_r.grad) == 0
    assert torch.count_nonzero(z_f.grad) > 0


@pytest.mark.parametrize("steps", [1, 3])
def test_two_stage_stage1_takes_exactly_stage1_steps(steps, monkeypatch):
    import copy

    model = copy.deepcopy(original("vit"))
    ctx = make_ctx("vit", model, stage1_steps=steps, epochs=0)
    opt = ctx.sgd(model.parameters(), "two_stage")
    calls = []
    monkeypatch.setattr(opt, "step", lambda *a, **k: calls.append(1))
    assert methods.two_stage_stage1(model, ctx, opt) == steps and len(calls) == steps
    history = methods.two_stage(copy.deepcopy(original("vit")), make_ctx("vit", model, stage1_steps=steps, epochs=2))
    assert history[0] == dict(stage=1, steps=steps)
    assert [h["stage"] for h in history] == [1, 2, 2]
    for h in history[1:]:  # each epoch: one step per forget batch (16 rows / batch 8)
        assert h["steps"] == 2 and h["loss"] == pytest.approx(h["con"] + h["ce"], rel=1e-5)


def test_kl_to_uniform_hand_computed():
    assert methods.kl_to_uniform(torch.zeros(3, 10)).item() == pytest.approx(0.0, abs=1e-7)
    p = torch.tensor([[0.5, 0.25, 0.25]])  # KL(u||p) = 1/3 (ln(2/3) + 2 ln(4/3))
    assert methods.kl_to_uniform(p.log()).item() == pytest.approx((math.log(2 / 3) + 2 * math.log(4 / 3)) / 3, abs=1e-6)


# ------------------------------------------------------------------------------------- reference B's GAN
def test_gan_reference_counts_generator_and_critic_steps(monkeypatch):
    import copy

    model = copy.deepcopy(original("resnet"))
    ctx = make_ctx("resnet", copy.deepcopy(model).eval())
    counts = {"critic": 0}
    real_step = methods.critic_step

    def counting(*a, **k):
        counts["critic"] += 1
        return real_step(*a, **k)

    monkeypatch.setattr(methods, "critic_step", counting)
    history = methods.gan_reference(model, ctx)
    assert len(history) == 10 and counts["critic"] == 50  # B: 10 epochs x 1 real batch, 5 critic steps each
    assert model.training  # B's generator stays in train mode
    g = methods.GAN_REFERENCE
    assert (g["batch_size"], g["generator_steps"], g["n_critic"], g["critic_hidden"], g["lambda_gp"]) == \
        (64, 10, 5, (64, 32), 10.0)
    assert UnlearnConfig().gan_reference_lr == 1e-3


def test_critic_is_10_64_32_1():
    critic = methods.Critic(10, (64, 32))
    shapes = [tuple(m.weight.shape) for m in critic.modules() if isinstance(m, nn.Linear)]
    assert shapes == [(64, 10), (32, 64), (1, 32)] and critic(torch.rand(5, 10)).shape == (5,)


# ------------------------------------------------------------------------- paper = the references' settings
@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_retain_only_control_uses_the_gans_learning_rate(profile):
    for cls in (ViTUnlearnConfig, ResNetUnlearnConfig):
        cfg = parse_config(cls, ["--profile", profile])
        assert cfg.retain_only_lr == cfg.gan_lr


def test_paper_profile_is_the_references_settings():
    prep = parse_config(PrepareConfig, ["--profile", "paper"])
    assert prep.forget_size == 64 and prep.forget_class == 0 and prep.test_fraction == 0.2
    b = parse_config(ResNetConfig, ["--profile", "paper"])
    assert (b.optimizer, b.lr, b.batch_size, b.epochs, b.weight_decay, b.label_smoothing, b.schedule, b.norm,
            b.augment) == ("adam", 1e-3, 64, 10, 0.0, 0.0, "none", "reference_b", True)
    a = parse_config(ViTRefsConfig, ["--profile", "paper"])
    assert (a.pretrained, a.img_size, a.epochs, a.lr, a.momentum, a.batch_size) == (True, 224, 3, 1e-4, 0.9, 64)
    u = parse_config(ViTUnlearnConfig, ["--profile", "paper"])
    assert (u.lr, u.momentum, u.batch_size, u.epochs, u.tau, u.stage1_steps, u.tsne_per_group, u.weight_decay) == \
        (1e-4, 0.9, 64, 5, 1.15, 1, 320, 0.0)
    assert parse_config(ResNetUnlearnConfig, ["--profile", "paper"]).gan_reference_lr == 1e-3


def test_pretrained_download_failure_is_one_line_error(monkeypatch):
    import timm

    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", no_network)
    with pytest.raises(PipelineError) as err:
        build_model("vit_tiny_patch16_224", num_classes=10, pretrained=True)
    assert "--weights-file" in str(err.value) and "--pretrained false" in str(err.value)
    assert "\n" not in str(err.value)
