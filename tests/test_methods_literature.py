"""The unlearning methods of common/methods/ (one file per method) on tiny hand-made models and 8x8 random images:
the parts that can be checked exactly (SalUn's mask, frozen weights and momentum, random labels, SSD's selection
and dampening factor, the l1 schedule, the NegGrad+ loss, SCRUB's and Bad Teacher's losses and schedules,
`fit_phases`), every method's declared cost (`units_per_step`) against the counted units, every method running on
both tracks' kinds of model, and stopping before the step that would pass the budget."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_pre_hook

import common.unlearn as U
from common.config import UnlearnConfig
from common.methods import METHODS
from common.methods import _base, bad_teacher, l1_sparse, neggrad_plus, random_label, salun, ssd
from common.unlearn import Budget, Ctx, _run_once, fit_phases, settings_of, with_method_settings

C = 3  # classes
N, N_FORGET = 24, 6  # rows; the first N_FORGET are the forget rows (forget 6 < retain 18)
Config = with_method_settings(UnlearnConfig, "resnet", METHODS)
# Bad Teacher's official loss is F.kl_div's default reduction "mean" on purpose (torch warns about it)
pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")


class TinyConvNet(nn.Module):
    """Conv + BatchNorm + linear head: the ResNet track's kinds of layers, 8x8 inputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, C)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def tiny_vit():
    """A timm ViT (the class-wise track's kind of model, no BatchNorm), shrunk to 8x8 inputs and one block."""
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=C, img_size=8, patch_size=4,
                             embed_dim=16, depth=1, num_heads=2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is fastest, above all on a busy 2-core machine (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_ctx(make_model=TinyConvNet, seed=0, method=None, **cfg):
    """(model, ctx): random uint8 8x8 images, labels 0, 1, 2, 0, ...; the model starts as a copy of the teacher.
    `cfg`: config fields (`<method>_<setting>` overrides); `method`: fill ctx.s with that method's settings (for
    calling a method's helpers directly; `_run_once` sets it itself)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (N, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(N) % C
    teacher = make_model().eval().requires_grad_(False)
    model = copy.deepcopy(teacher).requires_grad_(True)
    config = Config(**{**dict(device="cpu", precision="fp32", seed=seed), **cfg})
    ctx = Ctx(track="resnet", images=images, labels=labels, forget=torch.arange(N_FORGET),
              retain=torch.arange(N_FORGET, N), unseen=(images[:4], labels[:4]), teacher=teacher,
              fresh_model=make_model, num_classes=C, train_transform=lambda x: x.float() / 255,
              eval_transform=lambda x: x.float() / 255, cfg=config, device="cpu",
              gen=torch.Generator().manual_seed(seed), budget=Budget(0))
    if method is not None:
        ctx.s = settings_of(config, method, METHODS)
    return model, ctx


def run(name, model, ctx, limit=0.0):
    """The harness's runner: same start, seeds reset, forwards of model and teacher counted, `limit` units."""
    return _run_once(name, METHODS, model, state(model), ctx, limit, [], None)


def inputs(ctx, rows):
    return ctx.eval_transform(ctx.images[rows]), ctx.labels[rows]


def ce_gradients(model, ctx, rows):
    """Gradient of the mean CE over `rows` (one batch, eval mode), one tensor per parameter."""
    model.eval()
    x, y = inputs(ctx, rows)
    return torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def row_of(ctx):
    """Input tensor (a batch row, as the transforms give it) -> its train row index (the random images are unique)."""
    table = {bytes(ctx.images[i].flatten().tolist()): i for i in range(len(ctx.images))}
    assert len(table) == len(ctx.images)
    return lambda x: [table[bytes((r * 255).round().to(torch.uint8).flatten().tolist())] for r in x]


def record_inputs(module, sink):
    """Log the input batch of every forward of `module` (a forward pre-hook; returns the handle)."""
    return module.register_forward_pre_hook(lambda m, args: sink.append(args[0]))


# ------------------------------------------------------------------------------------------------ fit_phases
def test_fit_phases_keeps_a_schedule_that_fits():
    phases = [(3, 10.0), (0, 5.0), (2, 7.0)]  # 44 units
    for limit in (0, 44, 45, 1e9):  # 0 = unlimited
        assert fit_phases(SimpleNamespace(budget=Budget(limit)), phases) == [3, 0, 2]


def test_fit_phases_keeps_proportions_when_the_schedule_does_not_fit():
    # 400 units into 200: half the steps, picked evenly: every phase keeps half, an empty phase stays empty
    assert fit_phases(SimpleNamespace(budget=Budget(200)), [(100, 1.0), (0, 9.0), (300, 1.0)]) == [50, 0, 150]
    # 93 units into 31: 10 steps of 3 units (never more than fit), both ends kept: the 1-step last phase runs
    assert fit_phases(SimpleNamespace(budget=Budget(31)), [(10, 3.0), (20, 3.0), (1, 3.0), (0, 3.0)]) == [3, 6, 1, 0]
    # 10 epochs of 29 steps into 7.8 % of their cost: 22 steps spread over all 10 epochs
    counts = fit_phases(SimpleNamespace(budget=Budget(0.078 * 290)), [(29, 1.0)] * 10)
    assert sum(counts) == 22 and set(counts) == {2, 3}
    # what is LEFT of the budget counts: 100 units, 60 already spent -> 40 for a 100-unit schedule
    b = Budget(100)
    b.spent = 60
    assert fit_phases(SimpleNamespace(budget=b), [(5, 10.0), (5, 10.0)]) == [2, 2]


def test_fit_phases_below_one_step_per_phase_keeps_the_ends_and_says_so():
    phases = [(1, 6.0), (4, 6.0)] * 10  # RL / SalUn: per epoch 1 forget step then 4 retain steps, 300 units
    names = ["forget", "retain"] * 10
    b = Budget(12)  # 2 steps for 20 phases: the first (forget) and the last (retain)
    counts = fit_phases(SimpleNamespace(budget=b), phases, names)
    assert counts[0] == 1 and counts[-1] == 1 and sum(counts) == 2
    assert b.schedule["sequence"] == [["forget", 1], ["retain", 1]]
    assert b.schedule["phases_dropped"] == 18 and b.schedule["shape"] == "phases dropped"
    b = Budget(6)  # one step: the schedule's last, a retain step
    assert fit_phases(SimpleNamespace(budget=b), phases, names)[-1] == 1 and b.schedule["sequence"] == [["retain", 1]]
    b = Budget(1)  # not one step fits: none is planned, and the record says every phase was dropped
    assert fit_phases(SimpleNamespace(budget=b), [(7, 10.0), (0, 1.0), (3, 10.0)]) == [0, 0, 0]
    assert b.schedule["phases_dropped"] == 2 and b.schedule["planned_steps"] == 0


@pytest.mark.parametrize("pct", [1, 2, 5, 20, 50])
def test_fit_phases_keeps_each_phase_share_in_order(pct):
    phases = [(3, 2.0), (9, 2.0)] * 10  # 120 steps, 240 units
    names = ["forget", "retain"] * 10
    b = Budget(240 * pct / 100)
    counts = fit_phases(SimpleNamespace(budget=b), phases, names)
    m = sum(counts)
    assert m == int(240 * pct / 100 // 2)  # as many steps as the budget buys, never more
    seq = b.schedule["sequence"]
    assert seq[-1][0] == "retain" and (m < 2 or seq[0][0] == "forget")  # starts and ends where the schedule does
    if m >= 20:  # a step for every phase: all kept, in order, the rest by share
        assert all(counts) and [x[0] for x in seq] == names and b.schedule["phases_dropped"] == 0
        targets = [m * n / 120 for n, _ in phases]
        assert all(abs(k - t) <= 1 or (t < 1 and k == 1) for k, t in zip(counts, targets))  # each its share
    else:  # fewer steps than phases: the ends kept, the dropped phases counted
        assert b.schedule["phases_dropped"] == 20 - sum(1 for k in counts if k)


# ------------------------------------------------------------------------------------------------ Ctx.loader
def test_loader_keeps_the_last_partial_batch_as_the_official_loaders():
    _, ctx = make_ctx()
    sizes = lambda rows, b: [len(x) for x, _ in ctx.loader(rows, b)]  # noqa: E731
    assert sizes(ctx.retain, 8) == [8, 8, 2]  # 18 rows: every row, the last batch partial (drop_last=False)
    assert sizes(ctx.retain, 6) == [6, 6, 6]
    assert sizes(ctx.forget, 8) == [6]  # fewer rows than one batch: one batch of them all
    assert sizes(ctx.retain, 17) == [17]  # a single last row is left out: BatchNorm cannot train on one image
    for b in (5, 6, 7, 8, 17, 32):
        assert ctx.steps_per_pass(ctx.retain, b) == len(sizes(ctx.retain, b))
    seen = torch.cat([y for _, y in ctx.loader(ctx.retain, 8)])
    assert len(seen) == len(ctx.retain)


def test_replay_repeats_its_first_pass_as_itertools_cycle():
    _, ctx = make_ctx()
    ctx.images = torch.arange(N).view(N, 1, 1, 1).expand(N, 3, 8, 8).to(torch.uint8).contiguous()
    it = ctx.replay(ctx.forget, 4)
    first = [x[:, 0, 0, 0] for x, _ in (next(it), next(it))]  # 6 rows: batches of 4 and 2
    again = [x[:, 0, 0, 0] for x, _ in (next(it), next(it))]
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and sorted(torch.cat(first).tolist()) != []


# ------------------------------------------------------------------------------------------------------ SalUn
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_saliency_mask_keeps_exactly_the_fraction_of_largest_forget_gradients(fraction):
    model, ctx = make_ctx(method="salun", salun_batch_size=64)  # one forget batch: the hand gradient is the same sum
    mask = salun.saliency_mask(model, ctx, fraction)
    names = [n for n, _ in model.named_parameters()]
    assert list(mask) == names
    keep = torch.cat([mask[n].flatten() for n in names])
    assert keep.dtype == torch.bool
    assert int(keep.sum()) == int(len(keep) * fraction)
    scores = torch.cat([g.abs().flatten() for g in ce_gradients(model, ctx, ctx.forget)])
    assert scores[keep].min() >= scores[~keep].max() * (1 - 1e-5)  # the kept weights are the most salient


def test_salun_updates_only_masked_weights_and_zeroes_their_momentum(monkeypatch):
    model, ctx = make_ctx(salun_epochs=2, salun_lr=0.1, salun_momentum=0.9, salun_weight_decay=5e-3,
                          salun_batch_size=8)  # weight decay moves zero-gradient weights
    seen, opts = {}, []
    real_mask, real_sgd = salun.saliency_mask, ctx.sgd

    def spy(model, ctx, fraction):
        seen.update(real_mask(model, ctx, fraction))
        return seen

    monkeypatch.setattr(salun, "saliency_mask", spy)
    ctx.sgd = lambda params, s=None: opts.append(real_sgd(params, s)) or opts[-1]
    before = state(model)
    r = run("salun", model, ctx)
    history = r["history"]
    total = sum(m.numel() for m in seen.values())
    assert history[0]["mask_fraction"] == int(total * 0.5) / total
    assert r["steps"] == 2 * 4  # per epoch 1 forget batch (6 rows) + 3 retain batches (8, 8, 2 of 18 rows)
    (opt,) = opts
    changed_inside = moving_inside = 0
    for name, p in model.named_parameters():
        moved, m = p.detach() != before[name], seen[name]
        assert not moved[~m].any(), f"{name}: a weight outside the mask changed"
        buf = opt.state[p]["momentum_buffer"]
        assert (buf[~m] == 0).all(), f"{name}: momentum left on weights outside the mask"
        changed_inside += int(moved[m].sum())
        moving_inside += int((buf[m] != 0).sum())
    assert changed_inside > 0 and moving_inside > 0


# ------------------------------------------------------------------------------------------------ random labels
def test_random_labels_are_drawn_from_all_classes_including_the_true_one():
    y = torch.arange(C).repeat(3000)
    w = random_label.random_labels(y, C, torch.Generator().manual_seed(0))
    assert w.shape == y.shape and w.dtype == torch.int64
    assert ((w >= 0) & (w < C)).all()
    for c in range(C):  # every class is drawn for every true class, the true one included
        assert set(w[y == c].tolist()) == set(range(C))
    assert abs((w == y).float().mean().item() - 1 / C) < 0.03  # the true label with probability ~1/C (sd 0.005)
    w2 = random_label.random_labels(y, C, torch.Generator().manual_seed(1))
    assert not torch.equal(w, w2)  # a fresh draw per call


@pytest.mark.parametrize("mixed", [False, True], ids=["sequential", "mixed"])
def test_random_label_relabels_only_forget_rows_redrawn_every_time(monkeypatch, mixed):
    epochs = 4
    model, ctx = make_ctx(random_label_epochs=epochs, random_label_batch_size=8, random_label_mixed=mixed)
    xs, targets, draws = [], [], []
    real_ce, real_draw = F.cross_entropy, random_label.random_labels
    monkeypatch.setattr(F, "cross_entropy", lambda z, y, *a, **k: targets.append(y.clone()) or real_ce(z, y, *a, **k))
    monkeypatch.setattr(random_label, "random_labels", lambda y, c, g: draws.append(real_draw(y, c, g)) or draws[-1])
    hook = record_inputs(model, xs)
    try:
        history = run("random_label", model, ctx)["history"]
    finally:
        hook.remove()
    # sequential: 1 forget batch (6 rows < 8) + 3 retain batches (8, 8, 2) per epoch; mixed: 24 / 8 = 3
    per = 3 if mixed else 4
    assert [h["steps"] for h in history] == [per] * epochs
    assert len(xs) == len(targets) == per * epochs  # one forward, one CE per step
    rows_of = row_of(ctx)
    forget, seen_true, labels_of = set(ctx.forget.tolist()), 0, {}
    for x, y in zip(xs, targets):
        rows = rows_of(x)
        is_f = torch.tensor([r in forget for r in rows])
        true = ctx.labels[rows]
        assert torch.equal(y[~is_f], true[~is_f])  # retain rows keep their labels
        assert ((y[is_f] >= 0) & (y[is_f] < C)).all()
        seen_true += int((y[is_f] == true[is_f]).sum())
        for r, label in zip(rows, y.tolist()):
            if r in forget:
                labels_of.setdefault(r, []).append(label)
        if not mixed:  # a batch is all forget or all retain rows
            assert is_f.all() or not is_f.any()
    # random labels are redrawn: once per forget batch (sequential) or once per pass (mixed)
    assert len(draws) == epochs
    assert all(len(v) == epochs for v in labels_of.values()) and len(labels_of) == N_FORGET
    assert any(len(set(v)) > 1 for v in labels_of.values())  # a row's label changes between draws
    assert seen_true > 0  # the true label is among the draws (from all classes; P(no hit) = (2/3)^24 here)


def test_random_label_lays_its_schedule_over_a_small_budget():
    """Batch 6: per epoch one forget step (6 rows) and 3 retain steps (18 rows), 18 units each: 72 units; 4 epochs =
    288. At 240 units 13 of the 16 steps fit: each phase keeps its share in order (one forget step per epoch, the
    retain steps 2, 3, 2, 2), and the run ends on its last retain pass, not cut."""
    model, ctx = make_ctx(random_label_epochs=4, random_label_batch_size=6)
    full = run("random_label", model, ctx)
    assert (full["steps"], full["units"]) == (16, 288)
    r = run("random_label", model, ctx, limit=240)
    assert [h["steps"] for h in r["history"]] == [3, 4, 3, 3]
    assert r["schedule"]["sequence"] == [["forget", 1], ["retain", 2], ["forget", 1], ["retain", 3], ["forget", 1],
                                         ["retain", 2], ["forget", 1], ["retain", 2]]
    assert (r["units"], r["cut"], r["phases_dropped"]) == (234, False, False)


@pytest.mark.parametrize("name", ["random_label", "salun", "l1_sparse", "scrub", "random_label_mixed"])
@pytest.mark.parametrize("pct", [1, 2, 5])
def test_phased_methods_keep_their_schedule_shape_at_small_budgets(name, pct):
    """1, 2 and 5 % of the full schedule: the run takes what the budget buys without being cut partway, ends on the
    schedule's last phase (RL / SalUn: retain, SCRUB: min), keeps the order, and says when phases got no step."""
    method, extra = (name, {}) if name != "random_label_mixed" else ("random_label", {"random_label_mixed": True})
    cfg = {f"{method}_epochs": 10, f"{method}_batch_size": 2, **extra}
    if method == "scrub":
        cfg.update(scrub_forget_batch_size=2, scrub_msteps=3)
    model, ctx = make_ctx(**cfg)
    full = run(method, model, ctx)
    r = run(method, model, ctx, limit=full["units"] * pct / 100)
    sched = r["schedule"]
    # over budget only by an indivisible part: SalUn's saliency pass, SCRUB's forced first max-step
    assert r["units"] <= full["units"] * pct / 100 or (method in ("salun", "scrub") and r["over_budget"])
    forced = method == "scrub" and r["over_budget"] and r["steps"] == 1
    assert r["steps"] == sched["planned_steps"] or forced or (method == "salun" and r["over_budget"])
    # cut only when not one step fits (then nothing runs, and it says so) or an indivisible part took the budget
    assert not r["cut"] or forced or (method == "salun" and r["over_budget"]) or sched["planned_steps"] == 0
    assert sched["planned_steps"] or r["phases_dropped"]
    seq = [p for p, _ in sched["sequence"]]
    if r["steps"] and method != "scrub":
        assert seq[-1] == {"random_label": "forget + retain" if extra else "retain", "salun": "retain",
                           "l1_sparse": "epoch 10"}[method]
    if method == "scrub" and sched["planned_steps"]:
        assert seq[-1] == "min" and "max" not in seq[seq.index("min"):] or seq.count("max") == 0 or seq[-1] == "min"
    assert r["phases_dropped"] == (sched["phases_dropped"] > 0)
    if method == "l1_sparse" and r["steps"]:
        assert sched["last_l1_coef"] == pytest.approx(l1_sparse.l1_coefficient(ctx.s.alpha, 9, 10))


# ------------------------------------------------------------------------------------------------------ SSD
def test_ssd_dampen_on_hand_made_importances():
    f = [torch.tensor([0.0, 5.0, 30.0, 1.0, 2.0])]  # forget importance
    a = [torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0])]  # all-rows importance; selected (alpha 2): f > 2a
    p = [torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])]
    assert ssd.dampen(p, f, a, alpha=2.0, lam=1.0) == 3
    assert torch.equal(p[0], torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]) * torch.tensor([1.0, 1 / 5, 1 / 30, 0.0, 1.0]))
    p = [torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])]  # lambda 10: beta = min(10 a / f, 1), never above 1
    assert ssd.dampen(p, f, a, alpha=2.0, lam=10.0) == 3
    assert torch.equal(p[0], torch.tensor([1.0, 2.0, 3.0 * (10 / 30), 0.0, 5.0]))


def test_ssd_importances_are_batch_mean_squared_gradients():
    model, ctx = make_ctx(method="ssd", ssd_batch_size=3)  # forget rows in two batches of 3
    imp = ssd.importances(model.eval(), ctx, ctx.forget)
    g1 = ce_gradients(model, ctx, ctx.forget[:3])
    g2 = ce_gradients(model, ctx, ctx.forget[3:])
    for i, a, b in zip(imp, g1, g2):
        assert torch.allclose(i, (a.square() + b.square()) / 2, rtol=1e-5, atol=1e-12)


def test_ssd_dampens_exactly_the_selected_weights_and_takes_no_step(monkeypatch):
    alpha, lam = 1.5, 1.0
    model, ctx = make_ctx(ssd_batch_size=64, ssd_alpha=alpha, ssd_lam=lam)  # one batch per importance pass
    monkeypatch.setattr(ctx, "sgd", lambda *a, **k: pytest.fail("SSD built an optimiser"))
    monkeypatch.setattr(ctx, "step", lambda *a, **k: pytest.fail("SSD took a step"))
    imp_f = [g.square() for g in ce_gradients(model, ctx, ctx.forget)]
    imp_a = [g.square() for g in ce_gradients(model, ctx, torch.arange(N))]  # forget + all retain (fraction 1)
    before = state(model)
    r = run("ssd", model, ctx)
    after = model.state_dict()
    for k in ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked"):  # eval mode: statistics untouched
        assert torch.equal(after[k], before[k])
    assert all(p.grad is None for p in model.parameters())
    n_sel = n_kept = 0
    for (name, p), f, a in zip(model.named_parameters(), imp_f, imp_a):
        clear = (f - alpha * a).abs() > 1e-4 * torch.maximum(f, alpha * a)  # skip float ties at the threshold
        sel, old, new = (f > alpha * a) & clear, before[name], p.detach()
        beta = (lam * a / f).clamp(max=1.0)
        assert torch.allclose(new[sel], old[sel] * beta[sel], rtol=1e-4, atol=1e-7), name
        assert torch.equal(new[~sel & clear], old[~sel & clear]), name
        n_sel, n_kept = n_sel + int(sel.sum()), n_kept + int((~sel & clear).sum())
    assert n_sel > 0 and n_kept > 0
    (h,) = r["history"]
    total = sum(p.numel() for p in model.parameters())
    assert h["dampened"] >= n_sel and h["dampened_fraction"] == h["dampened"] / total
    assert r["steps"] == 0 and r["units"] == 3 * (N_FORGET + N)  # two gradient passes: forget, then all rows


# ------------------------------------------------------------------------------------------------- l1-sparse
def test_l1_coefficient_decays_linearly_to_zero():
    alpha, epochs = 1e-4, 4
    values = [l1_sparse.l1_coefficient(alpha, e, epochs) for e in range(epochs + 1)]
    assert values[0] == alpha and values[-1] == 0.0
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(math.isclose(s, -alpha / epochs, rel_tol=1e-9) for s in steps)


def test_l1_sparse_uses_the_schedule_per_epoch():
    model, ctx = make_ctx(l1_sparse_epochs=3, l1_sparse_alpha=1e-3, l1_sparse_batch_size=8)
    history = run("l1_sparse", model, ctx)["history"]
    assert [h["l1_coef"] for h in history] == pytest.approx([1e-3, 2e-3 / 3, 1e-3 / 3])
    assert all(h["steps"] == 3 for h in history)  # 18 retain rows: batches of 8, 8, 2
    assert history[0]["loss"] == pytest.approx(history[0]["ce"] + 1e-3 * history[0]["l1_norm"], rel=1e-2)


def test_l1_sparse_lays_all_epochs_coefficients_over_a_small_budget():
    alpha, epochs = 1e-3, 4
    model, ctx = make_ctx(l1_sparse_epochs=epochs, l1_sparse_alpha=alpha, l1_sparse_batch_size=6)
    full = run("l1_sparse", model, ctx)  # 4 epochs x 18 / 6 = 12 steps of 3 x 6 units
    assert full["steps"] == 12 and full["units"] == 12 * 18
    r = run("l1_sparse", model, ctx, limit=100)  # 5 steps (90 units), each epoch its share: 1, 2, 1, 1
    history = r["history"]
    assert [h["l1_coef"] for h in history] == pytest.approx([alpha * (1 - e / epochs) for e in range(epochs)])
    assert history[-1]["l1_coef"] == pytest.approx(alpha / epochs)  # the decay reaches its last epoch
    assert r["schedule"]["last_l1_coef"] == pytest.approx(alpha / epochs)
    assert [h["steps"] for h in history] == [1, 2, 1, 1]
    assert (r["steps"], r["units"], r["cut"], r["over_budget"]) == (5, 90, False, False)


# ------------------------------------------------------------------------------------------------- NegGrad+
def test_neggrad_plus_loss_on_known_logits():
    z_r, y_r = torch.zeros(1, C), torch.tensor([0])  # CE = log 3
    z_f, y_f = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])  # CE = log(1 + 2 e^-2)
    t = neggrad_plus.neggrad_plus_terms(z_r, y_r, z_f, y_f, beta=0.9)
    assert t["loss"].item() == pytest.approx(0.9 * math.log(3) - 0.1 * math.log(1 + 2 * math.exp(-2)), rel=1e-6)
    assert t["retain_ce"].item() == pytest.approx(math.log(3))
    assert neggrad_plus.neggrad_plus_terms(z_r, y_r, z_f, y_f, beta=1.0)["loss"].item() == pytest.approx(math.log(3))


def test_neggrad_plus_pairs_every_retain_batch_with_a_forget_batch():
    model, ctx = make_ctx(neggrad_plus_epochs=2, neggrad_plus_beta=0.5, neggrad_plus_batch_size=8,
                          neggrad_plus_forget_batch_size=4)
    xs = []
    hook = record_inputs(model, xs)
    try:
        history = run("neggrad_plus", model, ctx)["history"]
    finally:
        hook.remove()
    assert [h["steps"] for h in history] == [3, 3]  # 18 retain rows: 8, 8, 2 per epoch
    # each step: a retain batch, then the next batch of the forget pass (4, 2), replayed as itertools.cycle does
    assert [len(x) for x in xs] == [8, 4, 8, 2, 2, 4, 8, 2, 8, 4, 2, 2]
    rows_of, forget = row_of(ctx), set(ctx.forget.tolist())
    forget_batches = [rows_of(x) for x in xs[1::2]]
    assert forget_batches[0] == forget_batches[2] == forget_batches[4] and forget_batches[1] == forget_batches[3]
    assert all(all(r not in forget for r in rows_of(xr)) and all(r in forget for r in rows_of(xf))
               for xr, xf in zip(xs[::2], xs[1::2]))
    assert history[0]["loss"] == pytest.approx(0.5 * history[0]["retain_ce"] - 0.5 * history[0]["forget_ce"])


# ------------------------------------------------------------------------------------- SCRUB, Bad Teacher
def test_kl_div_t_is_the_temperature_scaled_batch_mean_kl():
    s, t, T = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]]), 2.0
    p_t, p_s = torch.softmax(t / T, 1), torch.softmax(s / T, 1)
    expected = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * T * T
    assert _base.kl_div_t(s, t, T).item() == pytest.approx(expected.item(), rel=1e-6)
    assert _base.kl_div_t(t, t, T).item() == pytest.approx(0.0, abs=1e-7)


def test_bad_teacher_official_kl_is_torch_kl_div_mean_without_t_squared():
    s, t = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    for T in (1.0, 2.0):
        p_t, p_s = torch.softmax(t / T, 1), torch.softmax(s / T, 1)
        per_row = (p_t * (p_t.log() - p_s.log())).sum(1)
        got = bad_teacher.official_kl(s, t, T)
        assert got.item() == pytest.approx(per_row.mean().item() / C, rel=1e-6)  # rows x classes mean, no T^2
        ref = F.kl_div(torch.log_softmax(s / T, 1), torch.softmax(t / T, 1), reduction="mean")
        assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    assert bad_teacher.official_kl(t, t, 1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_scrub_max_steps_only_in_the_first_msteps_epochs_and_lr_decays():
    lr = 1e-2
    model, ctx = make_ctx(scrub_epochs=6, scrub_msteps=2, scrub_forget_batch_size=3, scrub_batch_size=8,
                          scrub_lr=lr)
    r = run("scrub", model, ctx)
    history = r["history"]
    assert [h.get("max_steps", 0) for h in history] == [2, 2, 0, 0, 0, 0]  # 6 forget // 3
    assert [h["min_steps"] for h in history] == [3] * 6  # 18 retain rows: 8, 8, 2
    assert [h["lr"] for h in history] == pytest.approx([lr, lr, lr, lr / 10, lr / 10, lr / 100])  # decay (3, 5, 9)
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert (r["cut"], r["over_budget"]) == (False, False)


def test_scrub_lays_its_max_steps_over_a_small_budget():
    # per epoch 2 max-steps of 4 x 3 units and 3 min-steps of 4 x 6: 2 x (24 + 72) + 72 = 264 units in all
    model, ctx = make_ctx(scrub_epochs=3, scrub_msteps=2, scrub_forget_batch_size=3, scrub_batch_size=6)
    full = run("scrub", model, ctx)
    assert full["units"] == 264 and [h.get("max_steps", 0) for h in full["history"]] == [2, 2, 0]
    r = run("scrub", model, ctx, limit=132)  # half: 6 of the 13 steps fit, each phase its share, in order
    history = r["history"]
    assert [h.get("max_steps", 0) for h in history] == [1, 1, 0]  # still max-steps in each of the msteps epochs
    assert [h["min_steps"] for h in history] == [1, 2, 1]  # and the run ends on a min pass
    assert r["schedule"]["sequence"] == [["max", 1], ["min", 1], ["max", 1], ["min", 3]]  # epoch 3: no max phase
    assert (r["units"], r["cut"], r["over_budget"], r["phases_dropped"]) == (120, False, False, False)
    r = run("scrub", model, ctx, limit=30)  # one step fits (a min-step, 24 units): the schedule's last, marked
    assert r["steps"] == 1 and r["schedule"]["sequence"] == [["min", 1]] and r["phases_dropped"]
    assert r["units"] <= 30 and not r["over_budget"]


def test_scrub_takes_its_first_max_step_even_when_it_does_not_fit():
    model, ctx = make_ctx(scrub_epochs=3, scrub_msteps=2, scrub_forget_batch_size=3, scrub_batch_size=4)
    before = state(model)
    r = run("scrub", model, ctx, limit=5)  # one max-step costs 4 x 3 = 12 units
    assert ctx.budget.over and r["over_budget"]
    assert r["steps"] == 1 and r["units"] == 12
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_scrub_records_its_forced_max_step_in_the_history():
    """The forced first max-step is a step of epoch 1: the history (and so the run's `epochs`) shows it."""
    model, ctx = make_ctx(scrub_epochs=3, scrub_msteps=2, scrub_forget_batch_size=3, scrub_batch_size=4)
    r = run("scrub", model, ctx, limit=5)
    assert r["steps"] == 1
    assert sum(h.get("max_steps", 0) + h.get("min_steps", 0) for h in r["history"]) == r["steps"]
    assert U.epochs_done(r["history"]) > 0


class Constant(nn.Module):
    """A 'teacher' whose logits are the same row for every input."""

    def __init__(self, row):
        super().__init__()
        self.register_buffer("row", torch.tensor(row))

    def forward(self, x):
        return self.row.expand(len(x), -1)


def test_bad_teacher_uses_the_incompetent_teacher_exactly_on_forget_rows(monkeypatch):
    model, ctx = make_ctx()  # official: retain_fraction 0.3, batch 256 (one batch of 6 + 5 rows), Adam 1e-4
    made, targets, opts, seen = [], [], [], {"teacher": [], "bad": []}

    def fresh():
        made.append(Constant([9.0, 0.0, 0.0]))
        record_inputs(made[-1], seen["bad"])
        return made[-1]

    ctx.fresh_model = fresh
    real_kl, real_step = bad_teacher.official_kl, ctx.step
    monkeypatch.setattr(bad_teacher, "official_kl", lambda s, t, T: targets.append(t) or real_kl(s, t, T))
    ctx.step = lambda opt, loss, force=False: opts.append(opt) or real_step(opt, loss, force)
    hook = record_inputs(ctx.teacher, seen["teacher"])
    try:
        r = run("bad_teacher", model, ctx)
    finally:
        hook.remove()
    assert len(made) == 1  # one incompetent teacher, from ctx.make_fresh()
    rows = torch.cat(targets)
    from_bad = (rows == torch.tensor([9.0, 0.0, 0.0])).all(1)
    n_retain = round(0.3 * (N - N_FORGET))
    assert int(from_bad.sum()) == N_FORGET and int((~from_bad).sum()) == n_retain
    # each row goes through exactly one teacher
    n_bad, n_teacher = sum(len(x) for x in seen["bad"]), sum(len(x) for x in seen["teacher"])
    assert (n_bad, n_teacher) == (N_FORGET, n_retain)
    rows_of, forget = row_of(ctx), set(ctx.forget.tolist())
    assert all(r in forget for x in seen["bad"] for r in rows_of(x))
    assert all(r not in forget for x in seen["teacher"] for r in rows_of(x))
    assert r["units"] == 3 * (N_FORGET + n_retain) + N_FORGET + n_retain  # student fwd + bwd, one teacher each
    assert len(r["history"]) == ctx.s.epochs == 1
    assert all(isinstance(o, torch.optim.Adam) for o in opts) and len(opts) == 1
    assert opts[0].defaults["lr"] == 1e-4 and opts[0].defaults["weight_decay"] == 0


# ------------------------------------------------------------------------------------------------ all methods
def fast(name):
    """Config overrides that keep `name` quick on the tiny data (fewer epochs / GAN steps, batch 8)."""
    out = {}
    for k in METHODS[name].SETTINGS:
        if k == "epochs":
            out[f"{name}_{k}"] = 2
        elif k in ("batch_size", "forget_batch_size"):
            out[f"{name}_{k}"] = 8
    if name == "gan":
        out.update(gan_steps=3, gan_critic_warmup=2, gan_n_critic=2)
    if name == "retain_only":
        out.update(retain_only_steps=3)
    if name == "ssd":
        out.update(ssd_alpha=1.0)  # something is selected on a tiny untrained net
    if name == "unsir":
        out.update(unsir_noise_steps=3, unsir_noise_repeats=4)  # 12 noise rows + 18 retain rows
    return out


ONCE = {n for n, m in METHODS.items() if m.SCHEDULE == "once"}  # one indivisible pass, no step (SSD, Fisher, IU)


@pytest.mark.parametrize("make_model", [TinyConvNet, tiny_vit], ids=["convnet_bn", "vit"])
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_runs_and_returns_a_numeric_history(name, make_model):
    model, ctx = make_ctx(make_model, **fast(name))
    teacher_before, before = state(ctx.teacher), state(model)
    r = run(name, model, ctx)
    history = r["history"]
    assert history and all(isinstance(h, dict) for h in history)
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for h in history for v in h.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in ctx.teacher.state_dict().items())
    assert r["units"] > 0 and not r["cut"] and not r["over_budget"]
    assert not ctx.hooks  # the runner removed its counting hooks


INDIVISIBLE_FIRST = {"scrub", "salun", "gan", "gan_reference", "unsir"} | ONCE  # set-up / smallest work done whole


@pytest.mark.parametrize("name", list(METHODS))
def test_no_method_takes_a_step_once_the_budget_is_spent(name):
    model, ctx = make_ctx(**fast(name))
    before = state(model)
    r = run(name, model, ctx, limit=1)  # one unit: not even one image forward and backward
    params_same = all(torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())
    if name in ONCE:  # one indivisible pass: done whole, marked over budget, never truncated
        assert r["over_budget"] and not r["cut"] and not params_same
        assert r["units"] == METHODS[name].units_per_step(ctx.s, ctx)
    elif name == "scrub":  # its first max-step is its smallest unit of work: taken, over budget, then it stops
        assert r["over_budget"] and r["cut"] and r["steps"] == 1 and not params_same
    else:
        assert r["cut"] and r["steps"] == 0 and params_same
        assert r["over_budget"] == (name in INDIVISIBLE_FIRST)  # only set-up work (saliency, GAN references)


def test_a_refused_step_leaves_the_whole_model_as_it_was():
    """The model a cut run returns is the one before the refused step: BatchNorm statistics included (with the
    harness policy `bn` = train, the refused step's forward must not move them). Methods that did indivisible
    set-up work first (over budget by design) are left out."""
    moved = {}
    for name in METHODS:
        if name in INDIVISIBLE_FIRST:
            continue
        model, ctx = make_ctx(**fast(name))
        before = state(model)
        r = run(name, model, ctx, limit=1)
        assert r["cut"] and r["steps"] == 0 and not r["over_budget"], name
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        if changed:
            moved[name] = changed
    # the same mid-run: finetune (batches of 8, 8, 2 rows: 24, 24, 6 units) allowed 60 units takes 3 steps (54) and
    # must end with 3 batches in its BN statistics
    model, ctx = make_ctx(finetune_epochs=10, finetune_batch_size=8)
    r = run("finetune", model, ctx, limit=2.5 * 24)
    assert (r["steps"], r["units"], r["cut"]) == (3, 54, True)
    if int(model.bn.num_batches_tracked) != 3:
        moved["finetune (mid-run)"] = [f"bn.num_batches_tracked = {int(model.bn.num_batches_tracked)}"]
    assert not moved, f"a refused step's forward changed the model: {moved}"


class RecordingBudget(Budget):
    """A budget that logs the units pending at every commit (before a step) and settle (indivisible work)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []

    def commit(self):
        self.log.append(("commit", self.pending))
        return super().commit()

    def settle(self):
        self.log.append(("settle", self.pending))
        super().settle()


COST_CASES = [(n, {}) for n in METHODS] + [("random_label", dict(random_label_mixed=True)),
                                          ("salun", dict(salun_mixed=True))]
SETUP_SETTLES = {"gan", "gan_reference", "salun", "unsir"}  # indivisible set-up committed before the first step


@pytest.mark.parametrize("batch", [4, 8, None], ids=["batch4_all_full", "batch8_forget_smaller", "defaults"])
@pytest.mark.parametrize("name,extra", COST_CASES, ids=[n + ("_mixed" if e else "") for n, e in COST_CASES])
def test_declared_cost_per_step_matches_the_counted_units(monkeypatch, name, extra, batch):
    """units_per_step(s, ctx) against the units counted by the hooks at each committed step. Batch 4: every row set
    (forget 6, retain 18) holds a full batch; batch 8: forget is smaller than a batch, retain is not (the cpu
    profile's shape: forget 200 < batch 256 < retain 1800); defaults: every set is smaller than one batch."""
    mod = METHODS[name]
    cfg = {k: v for k, v in fast(name).items() if not k.endswith("batch_size")}
    if batch is not None:
        cfg.update({f"{name}_{k}": batch for k in mod.SETTINGS if k in ("batch_size", "forget_batch_size")})
    model, ctx = make_ctx(**cfg, **extra)
    monkeypatch.setattr(U, "Budget", RecordingBudget)
    r = run(name, model, ctx, limit=1e9)
    log, s = ctx.budget.log, ctx.s
    ups = mod.units_per_step(s, ctx)
    commits = [u for kind, u in log if kind == "commit"]
    settles = [u for kind, u in log if kind == "settle"]
    assert len(commits) == r["steps"] and not r["cut"] and not r["over_budget"]
    history = r["history"]
    if name == "scrub":  # a max-step costs 4 x min(forget_batch_size, |forget|); the min-steps units_per_step
        uf = 4 * min(s.forget_batch_size, N_FORGET)
        expected = [u for h in history for u in [uf] * h.get("max_steps", 0) + [ups] * h["min_steps"]]
    elif name in ("random_label", "salun"):  # forget steps 3 x min(batch, |forget|), retain steps units_per_step
        if extra:  # mixed: one pass over forget + retain
            expected = [3 * min(s.batch_size, N)] * len(commits)
        else:
            uf = 3 * min(s.batch_size, N_FORGET)
            assert all(c <= max(uf, ups) for c in commits) and ups in commits  # partial last batches cost less
            expected = commits
    elif name == "unsir":  # impair steps units_per_step, then repair steps 3 x min(repair batch, retain rows)
        k = history[1]["steps"]
        expected = [ups] * k + [3 * min(s.repair_batch_size, N - N_FORGET)] * (len(commits) - k)
    elif name == "two_stage":  # stage 1's steps cost 3 x min(batch, |forget|); stage 2's units_per_step
        k = history[0]["steps"]
        expected = [3 * min(s.batch_size, N_FORGET)] * k + [ups] * (len(commits) - k)
    else:
        expected = [ups] * len(commits)
    if name in ONCE:
        assert commits == [] and settles == [ups, 0]  # the one indivisible pass, then nothing left at the end
    else:
        assert len(commits) > 0
        # a full batch costs exactly the declared cost; a pass's last, partial batch costs less (its rows' share)
        assert len(commits) == len(expected), f"{name}: {len(commits)} steps, {len(expected)} declared"
        assert all(c <= e for c, e in zip(commits, expected)), f"{name}: a step cost more than declared {ups}"
        assert set(expected) & set(commits), f"{name}: no full step at the declared cost {ups}"
        if name not in SETUP_SETTLES:
            assert settles == [0]  # only the runner's final settle, with nothing left pending
    assert settles[-1] == 0  # every forward of the run is committed by a step or a settle of its own
    assert r["units"] == sum(commits) + sum(settles)


class ScriptedBudget(Budget):
    """A budget that allows `allowed` commits, then refuses every one, logging each commit's answer."""

    def __init__(self, allowed, events):
        super().__init__(0)
        self.allowed, self.events = allowed, events

    def commit(self):
        self.allowed -= 1
        if self.allowed < 0:
            self.cut = True
        ok = super().commit()  # unlimited: True unless cut
        self.events.append(("commit", ok))
        return ok


@pytest.mark.parametrize("name,rows,per_row", [("finetune", "retain", 3), ("gradient_ascent", "forget", 3),
                                               ("l1_sparse", "retain", 3), ("bad_teacher", None, 4)])
@pytest.mark.parametrize("batch", [4, 5, 7])
def test_a_pass_counts_every_row_once_the_last_partial_batch_included(name, rows, per_row, batch):
    """No dropped rows: one epoch's units = its rows x the per-row cost (18 retain / 6 forget rows; batch 5 and 7
    leave partial last batches of 3 / 1 and 4 / 6 rows; a single last row is the one exception, left out because
    BatchNorm cannot train on one image)."""
    cfg = {f"{name}_epochs": 1, f"{name}_batch_size": batch}
    if name == "bad_teacher":
        cfg["bad_teacher_retain_fraction"] = 1.0
    model, ctx = make_ctx(**cfg)
    r = run(name, model, ctx, limit=1e9)
    n = {"retain": N - N_FORGET, "forget": N_FORGET, None: N}[rows]
    n -= 1 if n % batch == 1 else 0
    assert r["units"] == per_row * n and r["steps"] == math.ceil(n / batch) == ctx.steps_per_pass(torch.arange(
        {"retain": N - N_FORGET, "forget": N_FORGET, None: N}[rows]), batch)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_optimiser_step_follows_a_budget_commit_that_allowed_it(monkeypatch, name):
    events = []
    cfg = fast(name)
    cfg.update({k: 3 for k in cfg if k.endswith("_epochs")})
    model, ctx = make_ctx(**cfg)
    monkeypatch.setattr(U, "Budget", lambda *a, **k: ScriptedBudget(2, events))
    model_params = {id(p) for p in model.parameters()}

    def on_step(opt, args, kwargs):  # every optimiser's step; the GAN critics' (not budgeted) are left out
        if any(id(p) in model_params for g in opt.param_groups for p in g["params"]):
            events.append(("step", None))

    handle = register_optimizer_step_pre_hook(on_step)
    try:
        r = run(name, model, ctx)
    finally:
        handle.remove()
    steps = [e for e in events if e[0] == "step"]
    if name in ONCE:
        assert not events and r["steps"] == 0  # no optimiser, no step, no commit
        return
    assert r["cut"] and len(steps) == r["steps"] == 2  # every method plans at least 3
    allowed = False
    refused = False
    for kind, ok in events:
        if kind == "commit":
            assert not (refused and ok), "a commit allowed after one was refused"
            refused = refused or not ok
            allowed = ok
        else:
            assert allowed and not refused, "an optimiser step without a budget commit that allowed it"
            allowed = False  # the next step needs its own commit


def test_docs_methods_table_states_every_methods_augment_default():
    """docs/methods.md lists every registered method with the `augment` default its file declares."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "methods.md").read_text()
    for name, mod in METHODS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/methods.md has no row for {name}"
        if "augment" in mod.SETTINGS:
            assert f"| {mod.SETTINGS['augment']} |" in row, f"{name}: augment default not as in its file"
    for name in ("scrub", "neggrad_plus", "bad_teacher"):  # official code trains on un-augmented data
        assert METHODS[name].SETTINGS["augment"] == "none"
