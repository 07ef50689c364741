"""The methods added from the anchors' codebases (Fisher forgetting, influence / WoodFisher, boundary shrink and
expanding, Amnesiac, UNSIR, EU-k, CF-k), one pass or one step each on the tiny models of
test_methods_literature.py, against the formulas of their official code (named in each method's file)."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.methods import METHODS, _last_k, amnesiac, boundary_expanding, boundary_shrink, eu_k, fisher, unsir, wfisher
from test_methods_literature import C, N, N_FORGET, TinyConvNet, make_ctx, row_of, run, state, tiny_vit


def params(model):
    return [p for p in model.parameters() if p.requires_grad]


# ------------------------------------------------------------------------------------------------ Fisher
def test_fisher_diagonal_is_fisher_new_hessian():
    """Per batch and class c: F += mean_batch(p_c) x grad(batch-mean CE with label c)^2; F /= number of batches."""
    model, ctx = make_ctx(method="fisher", fisher_batch_size=7)
    model.eval()  # as the method runs it (BatchNorm statistics, not batch statistics)
    got = fisher.fisher_diagonal(model, ctx, ctx.retain)
    want = [torch.zeros_like(p) for p in params(model)]
    chunks = ctx.retain.split(7)
    for rows in chunks:
        x = ctx.eval_transform(ctx.images[rows])
        out = model(x)
        prob = out.softmax(1).detach()
        for c in range(C):
            model.zero_grad()
            F.cross_entropy(out, torch.full((len(rows),), c)).backward(retain_graph=True)
            for w, p in zip(want, params(model)):
                w += prob[:, c].mean() * p.grad.pow(2)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w / len(chunks))


def test_fisher_mean_var_on_hand_made_tensors():
    """get_mean_var: 1 / (F + 1e-8) clamped at 1e3 (classifier 1e2), x alpha, mean over dim 1, the forgotten class's
    row mu 0 / var 1e-4, x 10 for the classifier and 1-d tensors."""
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # 3 rows = num_classes: a classifier
    f = torch.tensor([[1.0, 1e-6], [0.5, 0.25], [1e-9, 2.0]])
    mu, var = fisher.mean_var(w, f, alpha=0.5, num_classes=3, forget_class=1)
    inv = (1 / (f + 1e-8)).clamp(max=1e3).clamp(max=1e2) * 0.5
    want = inv.mean(dim=1, keepdim=True).expand_as(w).clone()
    want[1] = 1e-4
    torch.testing.assert_close(var, want * 10)
    torch.testing.assert_close(mu, torch.tensor([[1.0, 2.0], [0.0, 0.0], [5.0, 6.0]]))
    conv = torch.ones(4, 2, 3, 3)  # not a classifier: clamp 1e3, mean over input channels, no x 10
    fc = torch.full_like(conv, 1e-6)
    fc[:, 1] = 1.0
    _, v = fisher.mean_var(conv, fc, alpha=1.0, num_classes=3, forget_class=None)
    torch.testing.assert_close(v, torch.full_like(conv, (1e3 + 1 / (1 + 1e-8)) / 2))
    _, vb = fisher.mean_var(torch.ones(4), torch.full((4,), 0.5), alpha=1.0, num_classes=3, forget_class=None)
    torch.testing.assert_close(vb, torch.full((4,), 20.0))  # 1-d: (1 / 0.5) x 10


@pytest.mark.parametrize("track", ["vit", "resnet"])
def test_fisher_adds_the_official_noise_once(track):
    """The weights after the run are mu + sqrt(var) x N(0, 1), the normal draws of the run's seeded generator in
    parameter order; class-wise only, the forgotten class's classifier row is centred on 0."""
    model, ctx = make_ctx(method="fisher", fisher_alpha=1e-4)
    ctx.track = track
    start = state(model)
    r = run("fisher", model, ctx)
    ref = TinyConvNet()
    ref.load_state_dict(start)
    ref.eval()
    ctx.s = fisher_settings(ctx)
    f = fisher.fisher_diagonal(ref, ctx, ctx.retain)
    gen = torch.Generator().manual_seed(ctx.cfg.seed)
    forget_class = 0 if track == "vit" else None
    for p, p0, fi in zip(params(model), params(ref), f):
        mu, var = fisher.mean_var(p0, fi, 1e-4, C, forget_class)
        torch.testing.assert_close(p.detach(), mu + var.sqrt() * torch.randn(p.shape, generator=gen))
    assert r["steps"] == 0 and r["units"] == (1 + 2 * C) * (N - N_FORGET)


def fisher_settings(ctx):
    from common.unlearn import settings_of

    return settings_of(ctx.cfg, "fisher", METHODS)


# ------------------------------------------------------------------------------------------------ WoodFisher
def test_woodfisher_recursion_is_the_official_one_and_keeps_o_parallel_to_the_first_gradient():
    """Wfisher.py's woodfisher over hand-made gradients, transcribed literally; o only rescales, so k - v is a
    multiple of g_0 (the official recursion, as documented in the method's file)."""
    torch.manual_seed(0)
    gs, v, n = torch.randn(6, 5), torch.randn(5), 4.0
    k, o = v.clone(), None
    for g in gs:
        if o is None:
            o = g.clone()
        else:
            t = o @ g
            k = k - (k @ g) / (n + t) * o
            o = o - t / (n + t) * o
    model, ctx = make_ctx(method="wfisher")
    feed = iter(gs)
    orig = wfisher.flat_grad
    try:
        wfisher.flat_grad = lambda *a: next(feed)
        g0, w, total, n = wfisher.woodfisher_pass(model, params(model), ctx, ctx.retain[:6], n_hessian=4)
    finally:
        wfisher.flat_grad = orig
    got = wfisher.apply_woodfisher(v, g0, w)  # the streaming closed form = the official loop, for any v
    torch.testing.assert_close(got, k)
    torch.testing.assert_close(total, gs.sum(0))  # the rows' share of the retain sum
    assert n == 6
    d = got - v
    torch.testing.assert_close(d, (d @ gs[0]) / (gs[0] @ gs[0]) * gs[0])


def test_wfisher_update_is_alpha_times_the_inverse_hessian_product_of_the_forget_share():
    """theta_new = theta + alpha x woodfisher(v), v = sum_f / (n_f + n_r) - sum_r n_f / ((n_f + n_r) n_r), from
    per-row gradients computed one row at a time (eval mode), the first n_hessian + 2 retain rows in order."""
    model, ctx = make_ctx(method="wfisher", wfisher_alpha=0.5, wfisher_batch_size=5, wfisher_n_hessian=10)
    ref = copy.deepcopy(model).eval()
    r = run("wfisher", model, ctx)
    ps = params(ref)

    def g(i):
        x = ctx.eval_transform(ctx.images[i:i + 1])
        return torch.cat([q.flatten() for q in torch.autograd.grad(F.cross_entropy(ref(x), ctx.labels[i:i + 1]), ps)])

    nf, nr = N_FORGET, N - N_FORGET
    v = sum(g(i) for i in range(nf)) / (nf + nr) - sum(g(i) for i in range(nf, N)) * nf / ((nf + nr) * nr)
    k, o = v.clone(), None
    for i in range(nf, min(N, nf + 12)):
        gi = g(i)
        if o is None:
            o = gi.clone()
        else:
            t = o @ gi
            k, o = k - (k @ gi) / (10 + t) * o, o - t / (10 + t) * o
    got = torch.cat([(p.detach() - q.detach()).flatten() for p, q in zip(params(model), ps)])
    torch.testing.assert_close(got, 0.5 * k, rtol=1e-4, atol=1e-6)
    assert r["units"] == 3 * (nf + nr) and r["steps"] == 0  # each row's gradient computed once


# ------------------------------------------------------------------------------------------ boundary shrink
def normalised_ctx(**cfg):
    """make_ctx with a normalising transform (pixel p -> (p - 0.4) / 0.2), so the FGSM's pixel space is tested."""
    model, ctx = make_ctx(**cfg)
    ctx.eval_transform = ctx.train_transform = lambda x: (x.float() / 255 - 0.4) / 0.2
    return model, ctx


def test_boundary_shrink_neighbour_is_one_fgsm_step_in_pixel_space_on_the_frozen_original():
    model, ctx = normalised_ctx(method="boundary_shrink", boundary_shrink_bound=0.1)
    offset, scale = boundary_shrink.pixel_map(ctx)
    torch.testing.assert_close(offset.flatten(), torch.full((3,), -2.0))
    torch.testing.assert_close(scale.flatten(), torch.full((3,), 5.0))
    x, y = ctx.eval_transform(ctx.images[:N_FORGET]), ctx.labels[:N_FORGET]
    with torch.no_grad():  # the model has moved away from the teacher: the neighbour must come from the teacher
        for p in model.parameters():
            p.add_(1.0)
    got = boundary_shrink.neighbour_labels(ctx, x, y, offset, scale)
    pix = (ctx.images[:N_FORGET].float() / 255).requires_grad_(True)
    loss = F.cross_entropy(ctx.teacher((pix - 0.4) / 0.2), y)
    grad, = torch.autograd.grad(loss, pix)
    adv = torch.round((pix + 0.1 * grad.sign()).clamp(0, 1) * 255) / 255
    want = ctx.teacher((adv - 0.4) / 0.2).argmax(1)
    assert torch.equal(got, want)
    assert ctx.budget.pending == 2 * N_FORGET  # the input gradient's backward (the forwards: the runner's hooks)


def test_boundary_shrink_step_is_ce_on_the_clean_image_with_the_neighbour_label():
    """One step (every forget row in one batch): SGD on CE(model(x), neighbour label), as boundary_sh.py."""
    cfg = dict(boundary_shrink_epochs=1, boundary_shrink_batch_size=N_FORGET, boundary_shrink_bound=0.3)
    model, ctx = normalised_ctx(**cfg)
    ref = copy.deepcopy(model)
    r = run("boundary_shrink", model, ctx)
    assert r["steps"] == 1 and r["units"] == 7 * N_FORGET
    s = ctx.s
    offset, scale = boundary_shrink.pixel_map(ctx)
    x, y = ctx.eval_transform(ctx.images[:N_FORGET]), ctx.labels[:N_FORGET]
    adv_y = boundary_shrink.neighbour_labels(ctx, x, y, offset, scale)
    opt = torch.optim.SGD(ref.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    ref.train()
    F.cross_entropy(ref(x), adv_y).backward()
    opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)  # batch order differs: BN sums, same set


# ---------------------------------------------------------------------------------------- boundary expanding
def test_boundary_expanding_trains_a_shadow_class_then_prunes_it():
    """One step: the head widened by the shadow row (old rows copied, default init), CE towards class C on the
    forget rows, SGD with weight decay on all rows; the model keeps its C outputs (rows 0 .. C - 1)."""
    cfg = dict(boundary_expanding_epochs=1, boundary_expanding_batch_size=N_FORGET)
    model, ctx = make_ctx(**cfg)
    ref = copy.deepcopy(model)
    r = run("boundary_expanding", model, ctx)
    s = ctx.s
    assert r["steps"] == 1 and model.fc.out_features == C and model(ctx.eval_transform(ctx.images[:2])).shape == (2, C)
    torch.manual_seed(ctx.cfg.seed)  # the runner's seed: the shadow row is the first draw of torch's generator
    widened = nn.Linear(ref.fc.in_features, C + 1)
    with torch.no_grad():
        widened.weight[:C], widened.bias[:C] = ref.fc.weight, ref.fc.bias
    ref.fc = widened
    opt = torch.optim.SGD(ref.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    ref.train()
    F.cross_entropy(ref(ctx.eval_transform(ctx.images[:N_FORGET])), torch.full((N_FORGET,), C)).backward()
    opt.step()
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p, q[:C] if n.startswith("fc") else q, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------- Amnesiac
def test_wrong_labels_are_uniform_over_the_other_classes():
    y = torch.arange(30000) % C
    z = amnesiac.wrong_labels(y, C, torch.Generator().manual_seed(0))
    assert not (z == y).any()
    for c in range(C):
        share = (z[y == c] == (c + 1) % C).float().mean().item()
        assert abs(share - 0.5) < 0.02


def test_amnesiac_relabels_forget_rows_once_and_trains_on_them_with_all_retain_rows(monkeypatch):
    """Every epoch sees every row once; a forget row carries the same wrong label in every epoch, a retain row its
    own label; Adam at the set lr."""
    model, ctx = make_ctx(amnesiac_epochs=3, amnesiac_batch_size=8)
    seen = []
    real = F.cross_entropy
    which = row_of(ctx)
    monkeypatch.setattr(amnesiac, "ce_terms", lambda m, c: (lambda b: seen.append((which(b[0]), b[1].tolist()))
                                                                or dict(loss=real(m(b[0]), b[1]))))
    opts = []
    monkeypatch.setattr(torch.optim, "Adam", lambda *a, **k: opts.append(k) or torch.optim.SGD(*a, lr=k["lr"]))
    r = run("amnesiac", model, ctx)
    assert opts == [dict(lr=1e-4)] and r["steps"] == 3 * 3
    labels = {}
    per_epoch = [[], [], []]
    for i, (rows, ys) in enumerate(seen):
        per_epoch[i // 3] += rows
        for row, y in zip(rows, ys):
            labels.setdefault(row, set()).add(y)
    assert all(sorted(e) == list(range(N)) for e in per_epoch)
    for row, ys in labels.items():
        assert len(ys) == 1
        assert (next(iter(ys)) != int(ctx.labels[row])) == (row < N_FORGET)


# -------------------------------------------------------------------------------------------------- UNSIR
def test_unsir_noise_step_maximises_the_forget_class_loss_with_the_l2_penalty():
    """UNSIR_noise_train, one Adam step (lr 0.1) on the noise only: -CE(model(noise), forget class) + lam x
    mean(sum(noise^2)); the model's weights and gradients are untouched."""
    model, ctx = make_ctx(method="unsir", unsir_noise_steps=1, unsir_noise_batch_size=4)
    before = state(model)
    gen_state = ctx.gen.get_state()
    got = unsir.learn_noise(model, ctx, 0, (3, 8, 8))
    ctx.gen.set_state(gen_state)
    noise = torch.randn((4, 3, 8, 8), generator=ctx.gen).requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=0.1)
    loss = -F.cross_entropy(model(noise), torch.zeros(4, dtype=torch.long)) + 0.1 * noise.square().sum((1, 2, 3)).mean()
    loss.backward()
    opt.step()
    torch.testing.assert_close(got, noise.detach())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items() if "running" not in k
               and "num_batches" not in k)


def test_unsir_impair_set_is_the_official_noise_copies_and_the_first_retain_rows_per_class():
    model, ctx = make_ctx(method="unsir", unsir_noise_images=3, unsir_noise_repeats=5, unsir_retain_per_class=2)
    rows = unsir.retain_rows(ctx, 2)
    assert rows.tolist() == [6, 7, 8, 9, 10, 11]  # labels 0, 1, 2, 0, 1, 2: the first two of each class
    noise = torch.arange(32, dtype=torch.float).view(32, 1, 1, 1).expand(32, 3, 8, 8)
    xs, ys = zip(*unsir.noisy_batches(ctx, noise, rows, 1, batch_size=8))  # 21 rows: 8, 8, 5
    x, y = torch.cat(xs), torch.cat(ys)
    is_noise = (x[:, 0, 0, 0] == x[:, 0, 0, 0].round()) & (x.flatten(1).std(1) == 0)
    ids = x[is_noise][:, 0, 0, 0].long()
    assert sorted(ids.tolist()) == [0] * 5 + [1] * 5 + [2] * 5 and (y[is_noise] == 1).all()  # only images 0, 1, 2
    assert sorted(row_of(ctx)(x[~is_noise])) == rows.tolist() and torch.equal(
        y[~is_noise].sort().values, ctx.labels[rows].sort().values)


def test_unsir_is_class_wise_only_and_the_resnet_registry_leaves_it_out():
    from common.methods import methods_for, not_on

    assert "unsir" in methods_for("vit") and "unsir" not in methods_for("resnet")
    assert "class-wise only" in not_on("resnet")["unsir"]


# ------------------------------------------------------------------------------------------------ EU-k, CF-k
def test_last_k_blocks_of_the_project_networks():
    from common.models import resnet18_cifar

    assert _last_k.trained_modules(resnet18_cifar(10, width=8), 1) == ["layer4", "fc"]
    assert _last_k.trained_modules(resnet18_cifar(10, width=8), 5) == ["layer1", "layer2", "layer3", "layer4", "fc"]
    assert _last_k.trained_modules(tiny_vit(), 1) == ["blocks.0", "norm", "head"]
    assert _last_k.trained_modules(TinyConvNet(), 1) == ["bn", "fc"]
    assert [_last_k.lr_at(1.0, e, 10) for e in range(1, 11)] == pytest.approx([1] * 5 + [0.1] * 3 + [0.01, 0.001])


@pytest.mark.parametrize("name", ["cf_k", "eu_k"])
def test_last_k_trains_only_the_chosen_modules_with_the_anchor_penalty(name):
    """Two steps (one epoch each, all 18 retain rows a batch) by hand: SGD, momentum 0, on CE + anchor / 2 x
    ||theta - theta_0||^2 over bn + fc (k 1) with theta_0 the weights as training starts (EU-k: re-initialised from
    a fresh network, first draw of the runner's seed); the conv stays exactly as it was."""
    cfg = {f"{name}_epochs": 2, f"{name}_batch_size": N - N_FORGET, f"{name}_anchor": 0.5, f"{name}_lr": 0.05}
    model, ctx = make_ctx(**cfg)
    ref = copy.deepcopy(model)
    r = run(name, model, ctx)
    assert r["steps"] == 2
    torch.testing.assert_close(model.conv.weight, ref.conv.weight, rtol=0, atol=0)
    if name == "eu_k":
        torch.manual_seed(ctx.cfg.seed)
        eu_k.reinitialise(ref, TinyConvNet(), ["bn", "fc"])
    trained = [*ref.bn.parameters(), *ref.fc.parameters()]
    theta0 = [p.detach().clone() for p in trained]
    ref.conv.requires_grad_(False)
    opt = torch.optim.SGD(trained, lr=0.05, momentum=0.0)
    ref.eval()
    ref.bn.train()
    x, y = ctx.eval_transform(ctx.images[N_FORGET:]), ctx.labels[N_FORGET:]
    for epoch in (1, 2):  # milestones int(2 x 0.5) = int(2 x 0.8) = int(2 x 0.9) = 1: epoch 2 at lr x 0.1^3
        opt.param_groups[0]["lr"] = _last_k.lr_at(0.05, epoch, 2)
        opt.zero_grad()
        (F.cross_entropy(ref(x), y) + 0.25 * sum((p - q).square().sum() for p, q in zip(trained, theta0))).backward()
        opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again for whatever runs next
