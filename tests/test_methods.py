"""The unlearning registry (common/methods/, one file per method) and harness (common/unlearn.py) on tiny models of
BOTH tracks: the counted budget, the registry against the files, per-method settings as options, the budget curve,
reference A's 2-stage and reference B's GAN step counts, and the `paper` profile = the references' settings."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.config import (PrepareConfig, ResNetConfig, ResNetUnlearnConfig, ViTRefsConfig, ViTUnlearnConfig,
                           parse_config)
from common.data import resnet_transform, vit_transform
from common.io import PipelineError
from common.methods import METHODS, REQUIRED, _gan, gan_reference, methods_for, two_stage
from common.models import build_model
from common.unlearn import (Budget, Ctx, _run_once, chosen_methods, parse_budgets, run_methods, settings_of,
                            with_method_settings)

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


def config(track: str, **fields):
    """The driver's config class for `track` (every method's settings as fields), tiny batches and epochs."""
    cls = with_method_settings(TRACKS[track]["cfg"], track, METHODS)
    tiny = dict(device="cpu", precision="fp32", gan_steps=3, gan_batch_size=8, gan_critic_warmup=2, gan_n_critic=2,
                retain_only_steps=3, retain_only_batch_size=8,
                ssd_alpha=1.0)  # tiny models: at the official 10 (or 5) SSD selects no weight at all
    for name, mod in METHODS.items():
        for k in ("batch_size", "forget_batch_size"):
            if k in mod.SETTINGS and name not in ("gan", "retain_only"):
                tiny[f"{name}_{k}"] = 8
        if "epochs" in mod.SETTINGS:
            tiny[f"{name}_epochs"] = 2
    tiny.update(fields)
    return cls(**tiny)


def make_ctx(track: str, model: nn.Module, **cfg_fields) -> Ctx:
    spec = TRACKS[track]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N_FORGET + N_RETAIN, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, CLASSES, (N_FORGET + N_RETAIN,), generator=g)
    if track == "vit":  # class-wise: the forget rows are exactly class 0
        labels[:N_FORGET] = 0
        labels[N_FORGET:] = torch.arange(N_RETAIN) % (CLASSES - 1) + 1
    unseen = torch.randint(0, 256, (N_UNSEEN, 3, 32, 32), dtype=torch.uint8, generator=g)
    return Ctx(track=track, images=images, labels=labels, forget=torch.arange(N_FORGET),
               retain=torch.arange(N_FORGET, N_FORGET + N_RETAIN),
               unseen=(unseen, torch.randint(0, CLASSES, (N_UNSEEN,), generator=g)),
               teacher=model, fresh_model=spec["model"], num_classes=CLASSES, train_transform=spec["train_tf"],
               eval_transform=spec["eval_tf"], cfg=config(track, **cfg_fields), device="cpu",
               gen=torch.Generator().manual_seed(0))


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


def run(names, track, budget=0.1, gold_units=3000, **fields):
    """run_methods from the memorising original; returns (runs, curves, {name: saved logits})."""
    start = original(track)
    model = copy.deepcopy(start)
    ctx = make_ctx(track, copy.deepcopy(start).eval().requires_grad_(False), budget=budget, **fields)
    saved = {}
    runs, curves = run_methods(names, METHODS, model, ctx, gold_units,
                               evaluate=lambda m: {"train": logits_of(m, ctx, torch.arange(len(ctx.labels)))},
                               save=lambda n, m, lg: saved.update({n: (lg, copy.deepcopy(m.state_dict()))}),
                               log=_Log(), budgets=parse_budgets(ctx.cfg.budgets),
                               curve_point=lambda lg: {"train_mean": float(lg["train"].mean())})
    return runs, curves, saved, start, ctx


@pytest.mark.parametrize("track,name", [(t, n) for t in TRACKS for n in methods_for(t)])
def test_every_method_on_both_tracks(track, name):
    """From the same memorising original, under a counted budget: the weights change, the logits stay finite,
    forget accuracy does not rise, and the counted units stay within the budget (unless an indivisible pass is
    marked over budget)."""
    fields = dict(unsir_noise_steps=3) if name == "unsir" else {}  # 25 noise steps of 32 alone pass 2,000 units
    runs, _, saved, start, ctx = run([name], track, budget=0.5, gold_units=4000, **fields)
    r = runs[name]
    state = saved[name][1]
    assert any(not torch.equal(v, start.state_dict()[k]) for k, v in state.items()), f"{name} changed nothing"
    assert torch.isfinite(saved[name][0]["train"]).all()
    model = copy.deepcopy(start)
    model.load_state_dict(state)
    assert forget_acc(model, ctx) <= forget_acc(start, ctx)
    assert r["units"] <= 0.5 * 4000 or r["over_budget"]
    assert r["pct_of_gold"] == pytest.approx(100 * r["units"] / 4000)
    assert r["units"] > 0 and r["steps"] >= (0 if METHODS[name].SCHEDULE == "once" else 1)
    assert isinstance(r["history"], list) and all(isinstance(h, dict) for h in r["history"])
    assert r["settings"] == vars(settings_of(ctx.cfg, name, METHODS)) and r["source"] == METHODS[name].SOURCE


def test_budget_stops_before_the_step_that_would_pass_it():
    """finetune, batch 8 on 32 retain rows: a step costs 3 x 8 = 24 units; 2.5 steps' worth allows exactly 2."""
    runs, _, _, _, _ = run(["finetune"], "resnet", budget=2.5 * 24 / 1000, gold_units=1000, finetune_epochs=10)
    r = runs["finetune"]
    assert (r["steps"], r["units"], r["cut"], r["over_budget"]) == (2, 48, True, False)
    runs, _, _, _, _ = run(["finetune"], "resnet", budget=0, gold_units=1000, finetune_epochs=1)
    assert (runs["finetune"]["steps"], runs["finetune"]["units"], runs["finetune"]["cut"]) == (4, 96, False)


def test_budget_counts_forward_and_backward_images():
    b = Budget(0)
    net = nn.Linear(3, 2)
    b.watch(net)
    net(torch.zeros(5, 3))  # autograd on, trainable weights: it will be backpropagated
    with torch.no_grad():
        net(torch.zeros(4, 3))
    frozen = nn.Linear(3, 2).requires_grad_(False)
    b.watch(frozen)
    frozen(torch.zeros(2, 3))
    assert b.pending == 5 * 3 + 4 + 2
    assert b.commit() and b.spent == 21 and b.steps == 1


def test_indivisible_work_is_marked_over_budget_never_truncated():
    runs, _, saved, start, ctx = run(["ssd"], "resnet", budget=1e-3, gold_units=1000)
    r = runs["ssd"]
    assert r["over_budget"] and not r["cut"] and r["units"] == METHODS["ssd"].units_per_step(ctx.s, ctx)


def test_curve_checkpoints_equal_separate_runs_at_each_budget():
    """A fixed-schedule method is run once and evaluated at each budget mark: those weights are exactly what a
    separate run at that budget gives (same streams, the state before the first step past the mark)."""
    fields = dict(finetune_epochs=10, budgets="0.05,0.2")
    runs, curves, _, _, _ = run(["finetune"], "resnet", budget=0.2, gold_units=1000, **fields)
    points = {p["budget"]: p for p in curves["finetune"]}
    assert set(points) == {0.05, 0.2} and points[0.05]["units"] == 48 and points[0.2]["units"] == 192
    for fraction in (0.05, 0.2):
        _, _, saved, _, _ = run(["finetune"], "resnet", budget=fraction, gold_units=1000, finetune_epochs=10)
        mean = float(saved["finetune"][0]["train"].mean())
        assert points[fraction]["train_mean"] == mean and points[fraction]["cut"]
    # a budget-laid-out method runs once per budget; a once-only method reports its one pass at every budget
    _, curves, _, _, _ = run(["l1_sparse", "ssd"], "resnet", budget=0.2, gold_units=1000, budgets="0.05,0.2")
    assert [p["budget"] for p in curves["l1_sparse"]] == [0.05, 0.2]
    assert len({p["units"] for p in curves["ssd"]}) == 1  # 3 x (16 + 16 + 32) = 192 units at every budget
    assert [p["over_budget"] for p in curves["ssd"]] == [True, False]


def test_same_run_twice_gives_identical_units_and_weights():
    a = run(["scrub", "gan"], "resnet", budget=0.3, gold_units=2000)
    b = run(["scrub", "gan"], "resnet", budget=0.3, gold_units=2000)
    for name in ("scrub", "gan"):
        assert a[0][name]["units"] == b[0][name]["units"] and a[0][name]["steps"] == b[0][name]["steps"]
        assert all(torch.equal(a[2][name][1][k], b[2][name][1][k]) for k in a[2][name][1])


# ------------------------------------------------------------------------------------------ the registry
def test_registry_is_the_method_files():
    files = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "common" / "methods").glob("*.py")
                   if not p.stem.startswith("_"))
    assert sorted(METHODS) == files
    for name, mod in METHODS.items():
        assert all(hasattr(mod, a) for a in REQUIRED), name
        assert mod.KIND in ("reference", "literature", "control") and mod.SCHEDULE in ("fixed", "budget", "once")
        assert set(mod.SEARCH_SPACE) <= set(mod.SETTINGS), f"{name}: a search dimension that is not a setting"
        for key, spec in mod.SEARCH_SPACE.items():
            kind, *bounds = spec
            assert kind in ("log", "float", "int", "choice"), (name, key)
            if kind != "choice":
                low, high = bounds
                assert low < high and (low <= mod.SETTINGS[key] <= high or name == "gan_reference"), (name, key)
        assert mod.SOURCE and getattr(mod, "BN", "train") in ("train", "eval")
        for key in getattr(mod, "PRESETS", {}):
            assert key.split("/")[-1] in ("smoke", "cpu", "paper", "vit", "resnet") or key in ("vit", "resnet")


def test_method_settings_are_options(run_stage, tmp_path):
    cls = with_method_settings(ResNetUnlearnConfig, "resnet", METHODS)
    cfg = parse_config(cls, ["--profile", "cpu", "--scrub-msteps", "1", "--finetune-lr", "0.5"])
    assert cfg.scrub_msteps == 1 and cfg.finetune_lr == 0.5 and cfg.ssd_alpha == 10.0
    assert parse_config(with_method_settings(ViTUnlearnConfig, "vit", METHODS), ["--profile", "cpu"]).ssd_alpha == 5.0
    with pytest.raises(PipelineError):
        parse_config(cls, ["--finetune-nope", "1"])
    code, out = run_stage("05_unlearn_gan.py", ["--help"])
    assert code == 0


@pytest.mark.parametrize("stage", ["04_unlearn_vit.py", "05_unlearn_gan.py"])
@pytest.mark.parametrize("bad", [["--methods", "finetune,nope"], ["--budgets", "0.1,abc"], ["--budget", "-1"],
                                 ["--finetune-batch-size", "0"], ["--bn", "half"], ["--scrub-nope", "1"]])
def test_bad_unlearning_options_are_one_line_errors_before_any_write(run_stage, tmp_path, stage, bad):
    code, err = run_stage(stage, ["--profile", "smoke", "--results", str(tmp_path / "r"), *bad])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_chosen_methods_and_budget_parsing():
    assert chosen_methods("all", METHODS) == list(METHODS)
    assert chosen_methods("gan, finetune", METHODS) == ["gan", "finetune"]
    for bad in ("finetune,nope", ""):
        with pytest.raises(PipelineError):
            chosen_methods(bad, METHODS)
    assert parse_budgets("1,0.05, 0.1") == [0.05, 0.1, 1.0] and parse_budgets("") == []
    for bad in ("a", "0.1,-1", "0"):
        with pytest.raises(PipelineError):
            parse_budgets(bad)


def test_a_method_of_one_track_is_left_out_of_the_other_with_its_reason(monkeypatch):
    """TRACKS = ("vit",): methods_for("resnet") leaves it out, not_on says why, and naming it on that track is a
    one-line error that gives the reason (not "unknown method")."""
    import common.methods as M

    mod, before = M.METHODS["finetune"], list(M.methods_for("resnet"))
    monkeypatch.setattr(mod, "TRACKS", ("vit",), raising=False)
    monkeypatch.setattr(mod, "TRACK_NOTE", "class-wise only: test", raising=False)
    assert "finetune" in M.methods_for("vit") and "finetune" not in M.methods_for("resnet")
    assert M.not_on("resnet")["finetune"] == "class-wise only: test" and "finetune" not in M.not_on("vit")
    assert list(M.methods_for("resnet")) == [n for n in before if n != "finetune"]  # registry order kept
    with pytest.raises(PipelineError, match="'finetune' does not run on this track .class-wise only: test."):
        chosen_methods("finetune", M.methods_for("resnet"))
    assert chosen_methods("all", M.methods_for("resnet")) == [n for n in before if n != "finetune"]


# ------------------------------------------------------------------------------ reference A's 2-stage
def test_contrastive_loss_with_tau_hand_computed():
    # S = z_f z_r^T / tau = [[1/tau, 0]]; -log softmax = [log(1 + e^(1/tau)) - 1/tau, log(1 + e^(1/tau))]
    tau = 1.15
    z_f, z_r = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = 1 / tau
    expected = ((math.log(1 + math.exp(a)) - a) + math.log(1 + math.exp(a))) / 2  # mean over all entries
    assert two_stage.contrastive_loss(z_f, z_r, tau).item() == pytest.approx(expected, abs=1e-6)
    # two forget rows: S = [[2, 0], [0, 0]] / tau; the mean runs over all 4 entries
    z_f = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    b = 2 / tau
    row1 = (math.log(1 + math.exp(b)) - b) + math.log(1 + math.exp(b))
    row2 = 2 * math.log(2)
    assert two_stage.contrastive_loss(z_f, z_r, tau).item() == pytest.approx((row1 + row2) / 4, abs=1e-6)


def test_two_stage_retain_logits_are_constants_in_l_con():
    """l_con's gradient w.r.t. the retain logits is exactly zero (detached, as reference A), the forget side's not."""
    z_f = torch.randn(4, 10, requires_grad=True)
    z_r = torch.randn(6, 10, requires_grad=True)
    two_stage.contrastive_loss(z_f, z_r.detach(), 1.15).backward()
    assert z_r.grad is None or torch.count_nonzero(z_r.grad) == 0
    assert torch.count_nonzero(z_f.grad) > 0


@pytest.mark.parametrize("steps", [1, 3])
def test_two_stage_stage1_takes_exactly_stage1_steps(steps, monkeypatch):
    model = copy.deepcopy(original("vit"))
    ctx = make_ctx("vit", model, two_stage_stage1_steps=steps, two_stage_epochs=0)
    ctx.s = settings_of(ctx.cfg, "two_stage", METHODS)
    opt = ctx.sgd(model.parameters())
    calls = []
    monkeypatch.setattr(opt, "step", lambda *a, **k: calls.append(1))
    assert two_stage.stage1(model, ctx, opt) == steps and len(calls) == steps
    ctx = make_ctx("vit", model, two_stage_stage1_steps=steps, two_stage_epochs=2)
    r = _run_once("two_stage", METHODS, copy.deepcopy(original("vit")), original("vit").state_dict(), ctx, 0, [], None)
    history = r["history"]
    assert history[0] == dict(stage=1, steps=steps)
    assert [h["stage"] for h in history] == [1, 2, 2]
    for h in history[1:]:  # each epoch: one step per forget batch (16 rows / batch 8)
        assert h["steps"] == 2 and h["loss"] == pytest.approx(h["con"] + h["ce"], rel=1e-5)


def test_kl_to_uniform_hand_computed():
    assert two_stage.kl_to_uniform(torch.zeros(3, 10)).item() == pytest.approx(0.0, abs=1e-7)
    p = torch.tensor([[0.5, 0.25, 0.25]])  # KL(u||p) = 1/3 (ln(2/3) + 2 ln(4/3))
    assert two_stage.kl_to_uniform(p.log()).item() == pytest.approx((math.log(2 / 3) + 2 * math.log(4 / 3)) / 3, abs=1e-6)


# ------------------------------------------------------------------------------------- reference B's GAN
def test_gan_reference_counts_generator_and_critic_steps(monkeypatch):
    model = copy.deepcopy(original("resnet"))
    ctx = make_ctx("resnet", copy.deepcopy(model).eval())
    counts = {"critic": 0}
    real_step = _gan.critic_step

    def counting(*a, **k):
        counts["critic"] += 1
        return real_step(*a, **k)

    monkeypatch.setattr(gan_reference, "critic_step", counting)
    r = _run_once("gan_reference", METHODS, model, copy.deepcopy(model.state_dict()), ctx, 0, [], None)
    assert len(r["history"]) == 10 and counts["critic"] == 50  # B: 10 epochs x 1 real batch, 5 critic steps each
    assert model.training  # B's generator stays in train mode, whatever the harness policy
    g = gan_reference.GAN_REFERENCE
    assert (g["batch_size"], g["generator_steps"], g["n_critic"], g["critic_hidden"], g["lambda_gp"]) == \
        (64, 10, 5, (64, 32), 10.0)
    assert gan_reference.SETTINGS == dict(lr=1e-3) and gan_reference.BN == "train"


def test_critic_is_10_64_32_1():
    critic = _gan.Critic(10, (64, 32))
    shapes = [tuple(m.weight.shape) for m in critic.modules() if isinstance(m, nn.Linear)]
    assert shapes == [(64, 10), (32, 64), (1, 32)] and critic(torch.rand(5, 10)).shape == (5,)


def test_bn_policy_is_one_for_every_literature_method(monkeypatch):
    """--bn decides the mode of every literature method's gradient steps (gan and retain_only included); the
    reproductions keep their reference's train mode."""
    for policy in ("train", "eval"):
        for name in ("finetune", "neggrad_plus", "gan", "retain_only", "scrub", "l1_sparse"):
            model = copy.deepcopy(original("resnet"))
            ctx = make_ctx("resnet", copy.deepcopy(model).eval(), bn=policy)
            modes = []
            real = ctx.step
            monkeypatch.setattr(ctx, "step", lambda opt, loss, force=False: modes.append(model.training) or
                                real(opt, loss, force))
            _run_once(name, METHODS, model, copy.deepcopy(model.state_dict()), ctx, 0, [], None)
            assert modes and set(modes) == {policy == "train"}, (name, policy)


# ------------------------------------------------------------------------- paper = the references' settings
@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_retain_only_control_uses_the_gans_settings(profile):
    for cls, track in ((ViTUnlearnConfig, "vit"), (ResNetUnlearnConfig, "resnet")):
        cfg = parse_config(with_method_settings(cls, track, METHODS), ["--profile", profile])
        for k in METHODS["retain_only"].SETTINGS:
            assert getattr(cfg, f"retain_only_{k}") == getattr(cfg, f"gan_{k}"), (profile, k)


def test_paper_profile_is_the_references_settings():
    prep = parse_config(PrepareConfig, ["--profile", "paper"])
    assert prep.forget_size == 64 and prep.forget_class == 0 and prep.test_fraction == 0.2
    b = parse_config(ResNetConfig, ["--profile", "paper"])
    assert (b.optimizer, b.lr, b.batch_size, b.epochs, b.weight_decay, b.label_smoothing, b.schedule, b.norm,
            b.augment) == ("adam", 1e-3, 64, 10, 0.0, 0.0, "none", "reference_b", True)
    a = parse_config(ViTRefsConfig, ["--profile", "paper"])
    assert (a.pretrained, a.img_size, a.epochs, a.lr, a.momentum, a.batch_size) == (True, 224, 3, 1e-4, 0.9, 64)
    vit = with_method_settings(ViTUnlearnConfig, "vit", METHODS)
    u = parse_config(vit, ["--profile", "paper"])
    for m in ("finetune", "gradient_ascent"):  # reference A's settings in the paper ViT run
        assert (getattr(u, f"{m}_lr"), getattr(u, f"{m}_momentum"), getattr(u, f"{m}_batch_size"),
                getattr(u, f"{m}_epochs"), getattr(u, f"{m}_weight_decay")) == (1e-4, 0.9, 64, 5, 0.0)
    assert u.reproduce == "finetune,gradient_ascent,two_stage" and u.tsne_per_group == 320
    assert parse_config(with_method_settings(ResNetUnlearnConfig, "resnet", METHODS),
                        ["--profile", "paper"]).reproduce == "gan_reference"
    for profile in ("smoke", "cpu", "paper"):  # 2-stage as A ran it, in every profile (smoke: smaller batches)
        c = parse_config(vit, ["--profile", profile])
        assert (c.two_stage_lr, c.two_stage_momentum, c.two_stage_tau, c.two_stage_stage1_steps,
                c.two_stage_weight_decay) == (1e-4, 0.9, 1.15, 1, 0.0)
        if profile != "smoke":
            assert (c.two_stage_batch_size, c.two_stage_epochs) == (64, 5)


def test_official_settings_outside_the_paper_vit_run():
    """Each literature method starts from its own official code's settings (common/methods/<name>.py)."""
    c = parse_config(with_method_settings(ResNetUnlearnConfig, "resnet", METHODS), ["--profile", "cpu"])
    assert (c.finetune_lr, c.finetune_epochs, c.finetune_batch_size) == (0.01, 10, 256)  # OPTML FT
    assert (c.gradient_ascent_lr, c.gradient_ascent_epochs) == (1e-4, 5)  # OPTML GA README
    assert (c.scrub_lr, c.scrub_epochs, c.scrub_msteps, c.scrub_batch_size, c.scrub_forget_batch_size) == \
        (5e-4, 3, 2, 256, 512)
    assert (c.neggrad_plus_lr, c.neggrad_plus_beta, c.neggrad_plus_momentum, c.neggrad_plus_batch_size) == \
        (0.01, 0.9999, 0.0, 32)
    assert (c.bad_teacher_lr, c.bad_teacher_epochs, c.bad_teacher_batch_size, c.bad_teacher_retain_fraction) == \
        (1e-4, 1, 256, 0.3)
    assert (c.salun_lr, c.salun_fraction, c.random_label_lr, c.l1_sparse_lr) == (0.013, 0.5, 0.01, 0.01)
    assert (c.ssd_alpha, c.ssd_lam, c.ssd_batch_size) == (10.0, 1.0, 128)


def test_pretrained_download_failure_is_one_line_error(monkeypatch):
    import timm

    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", no_network)
    with pytest.raises(PipelineError) as err:
        build_model("vit_tiny_patch16_224", num_classes=10, pretrained=True)
    assert "--weights-file" in str(err.value) and "--pretrained false" in str(err.value)
    assert "\n" not in str(err.value)


def test_reproduce_runs_the_named_methods_without_a_budget():
    """--reproduce (the paper profile): the references' methods run with no budget, from the same start, and the
    model is left at its starting weights for the budgeted runs."""
    from common.unlearn import reproduce

    start = original("vit")
    model = copy.deepcopy(start)
    ctx = make_ctx("vit", copy.deepcopy(start).eval().requires_grad_(False), budget=1e-6, reproduce="finetune",
                   finetune_epochs=3)
    out = reproduce(ctx.cfg, METHODS, model, ctx, 1000,
                    evaluate=lambda m: {"train": logits_of(m, ctx, torch.arange(len(ctx.labels)))},
                    figures=lambda lg: {"mean": float(lg["train"].mean())}, log=_Log())
    assert list(out) == ["finetune"] and out["finetune"]["steps"] == 3 * 4  # 3 epochs x 32 retain / 8, no cut
    assert out["finetune"]["units"] == 12 * 24 and out["finetune"]["pct_of_gold"] == pytest.approx(28.8)
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in model.state_dict().items())
    ctx.cfg.reproduce = ""
    assert reproduce(ctx.cfg, METHODS, model, ctx, 1000, None, None, _Log()) == {}
