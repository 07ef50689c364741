"""The unlearning methods of 04_unlearn_vit.py on a tiny random ViT (img_size 32, 2 blocks) and random images:
each runs a few steps and moves its own loss the expected way; the losses match hand computations; a failed
pretrained download is a one-line PipelineError naming both ways out. No data files, no network."""
import importlib.util
import math
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network, whatever a test does

from common.config import ViTRefsConfig, ViTUnlearnConfig, parse_config  # noqa: E402
from common.data import vit_transform  # noqa: E402
from common.io import PipelineError  # noqa: E402
from common.models import build_model  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def load_stage(filename: str):
    """Import a numbered stage script; registered in sys.modules first, as @dataclass needs its module there."""
    name = "stage_" + Path(filename).stem
    spec = importlib.util.spec_from_file_location(name, REPO / filename)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


unlearn = load_stage("04_unlearn_vit.py")
refs = load_stage("03_train_vit_refs.py")


def tiny_vit(seed=0):
    import timm

    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, depth=2)


def make_ctx(epochs=2, lr=1e-2, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.cat([torch.zeros(16, dtype=torch.long), torch.arange(32) % 9 + 1])  # 16 forget (class 0)
    cfg = ViTUnlearnConfig(epochs=epochs, batch_size=8, lr=lr, amp=False, device="cpu")
    return unlearn.Ctx(images=images, labels=labels, forget=torch.arange(16), retain=torch.arange(16, 48), cfg=cfg,
                       device="cpu", transform=vit_transform(32), gen=torch.Generator().manual_seed(seed))


@torch.no_grad()
def logits_of(model, ctx, rows):
    model.eval()
    return model(ctx.transform(ctx.images[rows]))


def ce(model, ctx, rows):
    return F.cross_entropy(logits_of(model, ctx, rows), ctx.labels[rows]).item()


def test_methods_dict_is_name_to_function():
    assert set(unlearn.METHODS) == {"finetune", "gradient_ascent", "two_stage"}
    assert all(callable(f) for f in unlearn.METHODS.values())
    with pytest.raises(PipelineError, match="choose from"):
        unlearn.chosen_methods(ViTUnlearnConfig(methods="finetune,nope"))


def test_finetune_lowers_retain_cross_entropy():
    model, ctx = tiny_vit(), make_ctx()
    before = ce(model, ctx, ctx.retain)
    history = unlearn.finetune(model, ctx)
    assert len(history) == ctx.cfg.epochs
    assert ce(model, ctx, ctx.retain) < before


def test_gradient_ascent_raises_forget_cross_entropy():
    model, ctx = tiny_vit(), make_ctx()
    before = ce(model, ctx, ctx.forget)
    history = unlearn.gradient_ascent(model, ctx)
    assert ce(model, ctx, ctx.forget) > before
    assert all(h["loss"] <= 0 for h in history)  # the minimised loss is -CE


def test_two_stage_stage1_lowers_kl_to_uniform():
    model, ctx = tiny_vit(), make_ctx(epochs=0, lr=0.05)  # epochs 0: stage 1 only (one pass over forget)
    # make the start far from uniform on forget, so there is something to lower
    with torch.no_grad():
        model.head.bias.copy_(torch.linspace(0, 6, 10))
    before = unlearn.kl_to_uniform(logits_of(model, ctx, ctx.forget)).item()
    history = unlearn.two_stage(model, ctx)
    assert [h["stage"] for h in history] == [1]
    assert unlearn.kl_to_uniform(logits_of(model, ctx, ctx.forget)).item() < before


def test_two_stage_runs_stage2_with_finite_losses():
    model, ctx = tiny_vit(), make_ctx(epochs=2, lr=1e-3)
    history = unlearn.two_stage(model, ctx)
    assert [h["stage"] for h in history] == [1, 2, 2]
    for h in history[1:]:
        assert math.isfinite(h["loss"]) and h["loss"] == pytest.approx(h["con"] + h["ce"], rel=1e-5)
        assert h["con"] >= math.log(ctx.cfg.batch_size) - 1e-4  # l_con >= log m_retain (see its docstring)


def test_contrastive_loss_hand_computed():
    # S = Z_f Z_r^T = [[1, 0]]; -log softmax = [log(1+e) - 1, log(1+e)]; mean over the row
    z_f, z_r = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert unlearn.contrastive_loss(z_f, z_r).item() == pytest.approx(math.log(1 + math.e) - 0.5, abs=1e-6)
    # two forget rows: S = [[2, 0], [0, 0]] -> row 1: log(1+e^2) - 1, row 2: log 2; mean over rows
    z_f = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    expected = ((math.log(1 + math.e ** 2) - 1) + math.log(2)) / 2
    assert unlearn.contrastive_loss(z_f, z_r).item() == pytest.approx(expected, abs=1e-6)


def test_kl_to_uniform_hand_computed():
    assert unlearn.kl_to_uniform(torch.zeros(3, 10)).item() == pytest.approx(0.0, abs=1e-7)
    p = torch.tensor([[0.5, 0.25, 0.25]])  # KL(u||p) = 1/3 (ln(2/3) + 2 ln(4/3))
    expected = (math.log(2 / 3) + 2 * math.log(4 / 3)) / 3
    assert unlearn.kl_to_uniform(p.log()).item() == pytest.approx(expected, abs=1e-6)


def test_pretrained_download_failure_is_one_line_error(monkeypatch):
    import timm

    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", no_network)
    cfg = parse_config(ViTRefsConfig, ["--profile", "paper"])
    assert cfg.pretrained
    with pytest.raises(PipelineError) as err:
        build_model(cfg.model, **refs.model_args(cfg))
    assert "--weights-file" in str(err.value) and "--pretrained false" in str(err.value)
    assert "\n" not in str(err.value)
