"""The literature's unlearning methods of common/methods.py (NegGrad+, random labels, SalUn, l1-sparse, SCRUB,
Bad Teacher, SSD) on tiny hand-made models and 8x8 random images: the parts that can be checked exactly (SalUn's
mask and frozen weights, wrong labels, SSD's selection and dampening factor, the l1 schedule, the NegGrad+ loss),
plus every method running on both tracks' kinds of model and stopping at once when the budget is spent."""
import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import common.methods as M
from common.config import UnlearnConfig
from common.unlearn import Budget, Ctx

C = 3  # classes
N, N_FORGET = 24, 6  # rows; the first N_FORGET are the forget rows
LITERATURE = ("neggrad_plus", "random_label", "salun", "l1_sparse", "scrub", "bad_teacher", "ssd")


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


def make_ctx(make_model=TinyConvNet, seed=0, budget=0.0, **cfg):
    """(model, ctx): random uint8 8x8 images, labels 0, 1, 2, 0, ...; the model starts as a copy of the teacher."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (N, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(N) % C
    teacher = make_model().eval().requires_grad_(False)
    model = copy.deepcopy(teacher).requires_grad_(True)
    config = UnlearnConfig(**{**dict(device="cpu", amp=False, batch_size=8, epochs=1, lr=1e-2), **cfg})
    ctx = Ctx(track="resnet", images=images, labels=labels, forget=torch.arange(N_FORGET),
              retain=torch.arange(N_FORGET, N), unseen=(images[:4], labels[:4]), teacher=teacher,
              fresh_model=make_model, num_classes=C, train_transform=lambda x: x.float() / 255,
              eval_transform=lambda x: x.float() / 255, cfg=config, device="cpu",
              gen=torch.Generator().manual_seed(seed), budget=Budget(budget))
    return model, ctx


def inputs(ctx, rows):
    return ctx.eval_transform(ctx.images[rows]), ctx.labels[rows]


def ce_gradients(model, ctx, rows):
    """Gradient of the mean CE over `rows` (one batch, eval mode), one tensor per parameter."""
    model.eval()
    x, y = inputs(ctx, rows)
    return torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------------------ SalUn
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_saliency_mask_keeps_exactly_the_fraction_of_largest_forget_gradients(fraction):
    model, ctx = make_ctx(batch_size=64)  # one forget batch: the hand gradient below is the same sum
    mask = M.saliency_mask(model, ctx, fraction)
    names = [n for n, _ in model.named_parameters()]
    assert list(mask) == names
    keep = torch.cat([mask[n].flatten() for n in names])
    assert keep.dtype == torch.bool
    assert int(keep.sum()) == int(len(keep) * fraction)
    scores = torch.cat([g.abs().flatten() for g in ce_gradients(model, ctx, ctx.forget)])
    assert scores[keep].min() >= scores[~keep].max() * (1 - 1e-5)  # the kept weights are the most salient


def test_salun_updates_only_masked_weights(monkeypatch):
    model, ctx = make_ctx(epochs=2, lr=0.1, momentum=0.9, weight_decay=5e-3)  # decay moves zero-grad weights
    seen = {}

    def spy(model, ctx, fraction):
        seen.update(real_mask(model, ctx, fraction))
        return seen

    real_mask = M.saliency_mask
    monkeypatch.setattr(M, "saliency_mask", spy)
    before = state(model)
    history = M.salun(model, ctx)
    total = sum(m.numel() for m in seen.values())
    assert history[0]["mask_fraction"] == int(total * 0.5) / total
    changed_inside = 0
    for name, p in model.named_parameters():
        moved = p.detach() != before[name]
        assert not moved[~seen[name]].any(), f"{name}: a weight outside the mask changed"
        changed_inside += int(moved[seen[name]].sum())
    assert changed_inside > 0


# ------------------------------------------------------------------------------------------------ random labels
def test_wrong_labels_are_never_the_true_label_and_cover_the_others():
    y = torch.arange(C).repeat(400)
    w = M.wrong_labels(y, C, torch.Generator().manual_seed(0))
    assert ((w >= 0) & (w < C)).all()
    assert (w != y).all()
    for c in range(C):  # every wrong class is drawn for every true class
        assert set(w[y == c].tolist()) == set(range(C)) - {c}


@pytest.mark.parametrize("mixed", [False, True])
def test_random_label_relabels_only_forget_rows_each_epoch(monkeypatch, mixed):
    model, ctx = make_ctx(epochs=2, random_label_mixed=mixed)
    views = []
    real = M.relabel_forget
    monkeypatch.setattr(M, "relabel_forget", lambda c: views.append(real(c)) or views[-1])
    history = M.random_label(model, ctx)
    assert len(views) == 2  # fresh labels per epoch
    for v in views:
        assert (v.labels[ctx.forget] != ctx.labels[ctx.forget]).all()
        assert torch.equal(v.labels[ctx.retain], ctx.labels[ctx.retain])
    # sequential: ceil(6/8) forget + ceil(18/8) retain batches per epoch; mixed: ceil(24/8)
    assert [h["steps"] for h in history] == ([3, 3] if mixed else [4, 4])


# ------------------------------------------------------------------------------------------------------ SSD
def test_ssd_dampen_on_hand_made_importances():
    f = [torch.tensor([0.0, 5.0, 30.0, 1.0, 2.0])]  # forget importance
    a = [torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0])]  # all-rows importance; selected (alpha 2): f > 2a
    p = [torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])]
    assert M.ssd_dampen(p, f, a, alpha=2.0, lam=1.0) == 3
    assert torch.equal(p[0], torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]) * torch.tensor([1.0, 1 / 5, 1 / 30, 0.0, 1.0]))
    p = [torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])]  # lambda 10: beta = min(10 a / f, 1), never above 1
    assert M.ssd_dampen(p, f, a, alpha=2.0, lam=10.0) == 3
    assert torch.equal(p[0], torch.tensor([1.0, 2.0, 3.0 * (10 / 30), 0.0, 5.0]))


def test_ssd_dampens_exactly_the_selected_weights_and_takes_no_step(monkeypatch):
    alpha, lam = 1.5, 1.0
    model, ctx = make_ctx(batch_size=64, ssd_alpha=alpha, ssd_lambda=lam)  # one batch per importance pass
    monkeypatch.setattr(ctx, "sgd", lambda *a, **k: pytest.fail("SSD built an optimiser"))
    imp_f = [g.square() for g in ce_gradients(model, ctx, ctx.forget)]
    imp_a = [g.square() for g in ce_gradients(model, ctx, torch.arange(N))]
    before = state(model)
    history = M.ssd(model, ctx)
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
    assert history[0]["dampened"] >= n_sel and history[0]["forget_batches"] == history[0]["all_batches"] == 1


# ------------------------------------------------------------------------------------------------- l1-sparse
def test_l1_coefficient_decays_linearly_to_zero():
    alpha, epochs = 1e-4, 4
    values = [M.l1_coefficient(alpha, e, epochs) for e in range(epochs + 1)]
    assert values[0] == alpha and values[-1] == 0.0
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(math.isclose(s, -alpha / epochs, rel_tol=1e-9) for s in steps)


def test_l1_sparse_uses_the_schedule_per_epoch():
    model, ctx = make_ctx(epochs=3, l1_sparse_alpha=1e-3)
    history = M.l1_sparse(model, ctx)
    assert [h["l1_coef"] for h in history] == pytest.approx([1e-3, 2e-3 / 3, 1e-3 / 3])
    assert all(h["steps"] == 3 for h in history)
    assert history[0]["loss"] == pytest.approx(history[0]["ce"] + 1e-3 * history[0]["l1_norm"], rel=1e-2)


# ------------------------------------------------------------------------------------------------- NegGrad+
def test_neggrad_plus_loss_on_known_logits():
    z_r, y_r = torch.zeros(1, C), torch.tensor([0])  # CE = log 3
    z_f, y_f = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])  # CE = log(1 + 2 e^-2)
    t = M.neggrad_plus_terms(z_r, y_r, z_f, y_f, beta=0.9)
    assert t["loss"].item() == pytest.approx(0.9 * math.log(3) - 0.1 * math.log(1 + 2 * math.exp(-2)), rel=1e-6)
    assert M.neggrad_plus_terms(z_r, y_r, z_f, y_f, beta=1.0)["loss"].item() == pytest.approx(math.log(3))


def test_neggrad_plus_pairs_every_retain_batch_with_a_forget_batch():
    model, ctx = make_ctx(epochs=2, neggrad_plus_beta=0.5)
    history = M.neggrad_plus(model, ctx)
    assert [h["steps"] for h in history] == [3, 3]  # ceil(18 retain / 8); the one forget batch cycles
    assert history[0]["loss"] == pytest.approx(0.5 * history[0]["retain_ce"] - 0.5 * history[0]["forget_ce"])


# ------------------------------------------------------------------------------------- SCRUB, Bad Teacher
def test_kl_div_t_is_the_temperature_scaled_batch_mean_kl():
    s, t, T = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]]), 2.0
    p_t, p_s = torch.softmax(t / T, 1), torch.softmax(s / T, 1)
    expected = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * T * T
    assert M.kl_div_t(s, t, T).item() == pytest.approx(expected.item(), rel=1e-6)
    assert M.kl_div_t(t, t, T).item() == pytest.approx(0.0, abs=1e-7)


def test_scrub_max_steps_only_in_the_first_msteps_epochs():
    model, ctx = make_ctx(epochs=3, scrub_msteps=2, scrub_forget_batch_size=4)
    history = M.scrub(model, ctx)
    assert [h.get("max_steps", 0) for h in history] == [2, 2, 0]  # ceil(6 forget / 4)
    assert [h["min_steps"] for h in history] == [3, 3, 3]


class Constant(nn.Module):
    """A 'teacher' whose logits are the same row for every input."""

    def __init__(self, row):
        super().__init__()
        self.register_buffer("row", torch.tensor(row))

    def forward(self, x):
        return self.row.expand(len(x), -1)


def test_bad_teacher_uses_the_incompetent_teacher_exactly_on_forget_rows(monkeypatch):
    model, ctx = make_ctx(bad_teacher_retain_fraction=0.3)
    ctx.fresh_model = lambda: Constant([9.0, 0.0, 0.0])
    targets = []
    real = M.kl_div_t
    monkeypatch.setattr(M, "kl_div_t", lambda s, t, T: targets.append(t) or real(s, t, T))
    history = M.bad_teacher(model, ctx)
    rows = torch.cat(targets)
    from_bad = (rows == torch.tensor([9.0, 0.0, 0.0])).all(1)
    assert int(from_bad.sum()) == N_FORGET and int((~from_bad).sum()) == round(0.3 * (N - N_FORGET))
    assert len(history) == ctx.cfg.bad_teacher_epochs == 1


# ------------------------------------------------------------------------------------------------ all methods
@pytest.mark.parametrize("make_model", [TinyConvNet, tiny_vit], ids=["convnet_bn", "vit"])
@pytest.mark.parametrize("name", LITERATURE)
def test_every_method_runs_and_returns_a_numeric_history(name, make_model):
    model, ctx = make_ctx(make_model, epochs=2, ssd_alpha=1.0)
    teacher_before, before = state(ctx.teacher), state(model)
    history = M.METHODS[name](model, ctx)
    assert history and all(isinstance(h, dict) for h in history)
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for h in history for v in h.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in ctx.teacher.state_dict().items())


@pytest.mark.parametrize("name", LITERATURE)
def test_no_method_changes_the_model_once_the_budget_is_spent(name):
    model, ctx = make_ctx(budget=1e-9)
    before = state(model)
    M.METHODS[name](model, ctx)
    assert ctx.budget.cut
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class ScriptedBudget(Budget):
    """A budget that runs out after `allowed` checks, logging each check's answer into `events`."""

    def __init__(self, allowed, events):
        super().__init__(0)
        self.allowed, self.events = allowed, events

    def exhausted(self):
        self.allowed -= 1
        self.cut = self.cut or self.allowed < 0
        self.events.append(("check", self.cut))
        return self.cut


@pytest.mark.parametrize("name", LITERATURE)
def test_every_optimiser_step_follows_a_budget_check_that_allowed_it(name):
    events = []
    model, ctx = make_ctx(epochs=3, bad_teacher_epochs=3)
    ctx.budget = ScriptedBudget(3, events)
    real_sgd = ctx.sgd

    def counting_sgd(params, method):
        opt = real_sgd(params, method)
        step = opt.step
        opt.step = lambda *a, **k: events.append(("step", None)) or step(*a, **k)
        return opt

    ctx.sgd = counting_sgd
    M.METHODS[name](model, ctx)
    assert ctx.budget.cut
    last_check = None
    for kind, cut in events:
        if kind == "check":
            last_check = cut if last_check is not True else True  # once out of budget, always out
        else:
            assert last_check is False, "an optimiser step without a budget check that allowed it"
            last_check = None  # the next step needs its own check
