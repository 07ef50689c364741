"""common/: config parsing and profiles, atomic writes, checkpoints, manifests, logging/wandb, batched data path."""
from __future__ import annotations

import json
from pathlib import Path
import math
import os
import subprocess
import sys

import pytest
import torch

from common import config as C
from common.data import batches, num_batches, vit_transform
from common.io import PipelineError, atomic_path, save_checkpoint, save_json, save_torch, write_manifest
from common.log import RunLog, _NoWandb
from common.models import build_model, load_model


# -------------------------------------------------------------------------------------------------- config
def test_overrides_types_and_precedence():
    cfg = C.parse_config(C.PrepareConfig, ["--profile", "cpu", "--forget-class", "3", "--wandb", "true",
                                           "--forget-fraction=0.1", "--max-train-per-class", "7"])
    assert (cfg.profile, cfg.forget_class, cfg.wandb, cfg.forget_fraction) == ("cpu", 3, True, 0.1)
    assert cfg.max_train_per_class == 7  # the command line beats the profile preset
    assert cfg.max_test_per_class == C.PRESETS[C.PrepareConfig]["cpu"]["max_test_per_class"]  # preset beats default
    assert C.parse_config(C.PrepareConfig, ["--profile", "paper"]).max_train_per_class == 0


def test_auto_profile_resolves_by_hardware():
    expected = "paper" if torch.cuda.is_available() else "cpu"
    assert C.parse_config(C.PrepareConfig, []).profile == expected


@pytest.mark.parametrize("argv, words", [
    (["--no-such-field", "1"], "unknown option"),
    (["--seed", "x"], "takes a int"),
    (["--wandb", "maybe"], "true or false"),
    (["--profile", "fast"], "unknown profile"),
    (["--seed"], "needs a value"),
    (["seed", "3"], "unexpected argument"),
])
def test_bad_overrides_are_errors(argv, words):
    with pytest.raises(PipelineError, match=words):
        C.parse_config(C.PrepareConfig, argv)


def test_every_stage_config_has_all_profiles():
    for cls, presets in C.PRESETS.items():
        assert set(presets) == {"smoke", "cpu", "paper"}, cls.__name__
        fields = {f.name for f in __import__("dataclasses").fields(cls)}
        for profile, values in presets.items():
            assert set(values) <= fields, f"{cls.__name__}.{profile} sets unknown fields"
            C.parse_config(cls, ["--profile", profile])


# ------------------------------------------------------------------------------------------------------ io
def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "out" / "data.pt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half of a file")
            raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of torch.save
    assert not target.exists() and list(target.parent.iterdir()) == []

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    save_json({"old": 1}, tmp_path / "keep.json")
    with pytest.raises(OSError):
        save_torch({"x": 1}, target)
    assert not target.exists() and [p.name for p in target.parent.iterdir()] == []


def test_atomic_write_replaces_whole_file(tmp_path):
    save_json({"a": 1}, tmp_path / "m.json")
    save_json({"b": 2}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"b": 2}
    assert oct((tmp_path / "m.json").stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


@pytest.mark.parametrize("name, args, shape", [
    ("resnet18_cifar", dict(num_classes=10), (2, 3, 32, 32)),
    ("vit_tiny_patch16_224", dict(num_classes=10, pretrained=False, img_size=32), (2, 3, 32, 32)),
])
def test_checkpoint_round_trip(tmp_path, name, args, shape):
    torch.manual_seed(0)
    model = build_model(name, **args).eval()
    save_checkpoint(tmp_path / "m.pt", model, name, args, config={"seed": 0})
    loaded, ckpt = load_model(tmp_path / "m.pt")
    x = torch.randn(*shape)
    assert torch.equal(model(x), loaded.eval()(x))
    assert ckpt["config"] == {"seed": 0} and ckpt["model_args"] == args
    torch.load(tmp_path / "m.pt", weights_only=True)  # plain tensors and builtins only


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(PipelineError, match="run make it first"):
        load_model(tmp_path / "none.pt", make="make it")


def test_pretrained_without_network_is_one_clear_error():
    with pytest.raises(PipelineError, match="--weights-file .* --pretrained false"):
        build_model("vit_tiny_patch16_224", num_classes=10, pretrained=True, img_size=32)


def test_manifest_records_the_run(tmp_path):
    import time

    (tmp_path / "in.bin").write_bytes(b"abc")
    started = time.time() - 2.5  # a stage that began 2.5 s ago
    write_manifest(tmp_path, {"seed": 3}, "cpu", started=started, inputs=[tmp_path / "in.bin"], outputs=[])
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["seed"] == 3 and m["device"]["device"] == "cpu" and m["versions"]["torch"] == torch.__version__
    assert m["inputs"][0]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert set(m["git"]) == {"sha", "dirty"} and 2.5 <= m["wall_seconds"] < 60


# ----------------------------------------------------------------------------------------------- logging
def test_wandb_off_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB", raising=False)
    log = RunLog(tmp_path, "stage", {"a": 1}, wandb=False)
    log.log("epoch", echo=False, loss=0.5, acc=90.0)
    assert isinstance(log.wandb, _NoWandb)
    log.close({"acc": 90.0})
    rows = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rows[0]["event"] == "epoch" and rows[0]["loss"] == 0.5
    assert not (tmp_path / "wandb").exists()


def test_wandb_offline_needs_no_network(tmp_path):
    """A child process (wandb keeps global state): WANDB_MODE=offline writes a local run and exits cleanly."""
    code = ("from common.log import RunLog; l = RunLog(r'%s', 's', {'a': 1}, wandb=True); "
            "l.log('epoch', echo=False, acc=1.0); l.close({'acc': 1.0}); print(type(l.wandb).__module__)") % tmp_path
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=C.__file__.rsplit("/common", 1)[0], env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "wandb" in out.stdout
    assert list((tmp_path / "wandb").glob("offline-run-*")), "no offline run folder written"


# ------------------------------------------------------------------------------------------------ data path
def test_batches_cover_every_index_once_and_shuffle_is_seeded():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    labels = torch.arange(10)
    idx = torch.tensor([9, 2, 4, 6, 8, 1, 3])
    ident = lambda x: x  # noqa: E731
    seen = torch.cat([y for _, y in batches(images, labels, idx, 3, ident, "cpu")])
    assert seen.tolist() == idx.tolist() and num_batches(7, 3) == 3 and num_batches(7, 3, drop_last=True) == 2
    order = lambda s: torch.cat([y for _, y in batches(images, labels, idx, 3, ident, "cpu", shuffle=True,  # noqa
                                                       generator=torch.Generator().manual_seed(s))]).tolist()
    assert order(1) == order(1) and sorted(order(1)) == sorted(idx.tolist()) and order(1) != order(2)
    x, _ = next(batches(images, labels, None, 4, ident, "cpu"))
    assert torch.equal(x[:, 0, 0, 0], torch.arange(4, dtype=torch.uint8))  # images stay uint8 until transform


def test_vit_transform_resizes_and_normalises_on_device():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 32, 32)
    out = vit_transform(64)(x)
    assert out.shape == (2, 3, 64, 64) and out.dtype == torch.float32
    assert torch.allclose(out[0], torch.full_like(out[0], -1.0)) and torch.allclose(out[1], torch.ones_like(out[1]))
    assert math.isclose(vit_transform(32)(x)[1].mean().item(), 1.0)


def test_saved_bytes_are_reproducible_and_json_is_strict(tmp_path):
    save_torch({"x": torch.arange(5)}, tmp_path / "a.pt")
    save_torch({"x": torch.arange(5)}, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    save_json({"p": float("nan"), "q": [1.0, float("inf")]}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: 1 / 0) == {"p": None, "q": [1.0, None]}


# ------------------------------------------------------------------------------------------------ Makefile
def _imports(path: Path) -> set[str]:
    """common/ files a file imports directly (from common.x[.y] import ..., from common[.x] import y). A package
    (common/methods/) counts as every file in it: its __init__ imports each method file it finds."""
    import re

    repo = Path(C.__file__).resolve().parent.parent
    text = path.read_text()
    mods = set(re.findall(r"^\s*from common\.([\w.]+) import", text, re.M))
    for pkg, names in re.findall(r"^\s*from common(\.[\w.]+)? import ([\w, ]+)", text, re.M):
        base = pkg.lstrip(".")
        names = [n.split(" as ")[0].strip() for n in names.split(",")]  # "verdict as V" -> verdict
        mods |= {f"{base}.{n}" if base else n for n in names}
    out = set()
    for m in mods:
        rel = Path("common", *m.split("."))
        if (repo / rel).is_dir():
            out |= {str(p.relative_to(repo)) for p in (repo / rel).glob("*.py")}
        elif (repo / rel.with_suffix(".py")).is_file():
            out.add(str(rel.with_suffix(".py")))
    return out


def test_makefile_stage_dependencies_match_imports():
    """Each stage's Make target lists exactly the common/ modules it imports (transitively), so editing the method
    registry re-runs 04-07 but not 02/03, and no edit is missed."""
    import re

    repo = Path(C.__file__).resolve().parent.parent
    make = (repo / "Makefile").read_text()
    var = dict(re.findall(r"^(C_\w+)\s*:=\s*(.*)$", make, re.M))

    def expand(text):
        text = re.sub(r"\$\(sort \$\(wildcard ([^)]+)\)\)",
                      lambda m: " ".join(str(p.relative_to(repo)) for p in repo.glob(m.group(1))), text)
        while "$(" in text:
            text = re.sub(r"\$\((C_\w+)\)", lambda m: var[m.group(1)], text)
            text = re.sub(r"\$\(sort \$\(wildcard ([^)]+)\)\)",
                          lambda m: " ".join(str(p.relative_to(repo)) for p in repo.glob(m.group(1))), text)
        return set(text.split())

    for script in sorted(repo.glob("0[1-7]_*.py")):
        rule = re.search(rf"^\S+: {script.name} (\$\(C_\w+\))", make, re.M)
        assert rule, f"no Make rule with a C_* dependency list for {script.name}"
        need, todo = set(), _imports(script)
        while todo:
            mod = todo.pop()
            if mod not in need:
                need.add(mod)
                todo |= _imports(repo / mod)
        listed = {m for m in expand(rule.group(1)) if m != "common/__init__.py"}
        assert listed == need, f"{script.name}: Makefile lists {sorted(listed - need)} extra, misses {sorted(need - listed)}"
