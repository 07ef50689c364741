"""Determinism check after the smoke pipeline (usage: check_determinism.py TREE [METHODS]): re-run stage 05 on a copy
of a finished seed tree while another process keeps every core busy, and compare its metrics.json with the first
run's. Every field must be identical except wall times (`seconds`): the budget is counted work, so machine load
cannot move a number. Exit status 1 with one line per differing field."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGE = "05_unlearn_gan"
# BatchNorm in train mode, the GAN's random streams, a teacher and a laid-out schedule, an indivisible pass
DEFAULT_METHODS = "gan,scrub,ssd"
WALL_TIME_KEYS = {"seconds"}


def busy(stop_after: float) -> None:
    """Keep one core busy with float work for `stop_after` seconds (bounded: it ends by itself)."""
    import time

    t0, x = time.time(), 1.0
    while time.time() - t0 < stop_after:
        for _ in range(100_000):
            x = x * 1.0000001 + 1e-9


def diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k in WALL_TIME_KEYS:
                continue
            if k not in a or k not in b:
                out.append(f"{path}/{k}: present in one run only")
            else:
                out += diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} entries"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def main(tree: Path, methods: str) -> int:
    first = json.loads((tree / STAGE / "metrics.json").read_text())
    profile = first["profile"]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "tree"
        for stage in ("01_prepare_data", "02_train_resnet"):
            shutil.copytree(tree / stage, copy / stage)
        loaders = [mp.Process(target=busy, args=(600.0,), daemon=True) for _ in range(os.cpu_count() or 1)]
        for p in loaders:
            p.start()
        try:
            ran = json.loads((tree / STAGE / "manifest.json").read_text())["config"]  # the same settings source
            cmd = [sys.executable, str(REPO / f"{STAGE}.py"), "--profile", profile, "--results", str(copy),
                   "--device", first["device"], "--seed", str(ran["seed"]), "--settings", ran["settings"],
                   "--tuned-dir", ran["tuned_dir"], "--methods", methods,
                   "--budgets", ",".join(str(b) for b in first["budgets"])]
            run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        finally:
            for p in loaders:
                p.terminate()
        if run.returncode != 0:
            print(f"determinism check: the re-run failed: {run.stderr.strip().splitlines()[-1:]}")
            return 1
        second = json.loads((copy / STAGE / "metrics.json").read_text())
    names = methods.split(",")
    pick = lambda m: {k: {n: m[k][n] for n in names} for k in ("models", "curve")}  # noqa: E731
    found = diff(pick(first), pick(second))
    for line in found[:20]:
        print(f"determinism check: {line}")
    print(f"determinism check: {'FAILED' if found else 'ok'}: stage {STAGE} re-run under load, methods {methods}, "
          f"{len(found)} differing field(s) (wall times excluded)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else DEFAULT_METHODS))
