"""Determinism check after the smoke pipeline (usage: check_determinism.py TREE [METHODS] [--loaders N]): re-run stages
01, 02 and 05 (05 on METHODS) of a finished seed tree into a copy, one stage after another, while N busy-loop
processes (default: one per core; `make test` passes 0 because it runs this beside the audit's jobs, which are the
load) keep the machine busy, and compare each stage's metrics.json with the tree's. `make test` builds the trees with `make -j2` (two seeds'
stages at once, THREADS=1), so this also checks that parallel make gives the metrics of a serial run. Every field
must be identical except wall times (`seconds`): budgets are counted work, so machine load cannot move a number.
Stage 01 extracts the data into a fresh cache folder. Exit status 1 with one line per differing field."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGE = "05_unlearn_gan"
STAGES = ("01_prepare_data", "02_train_resnet", STAGE)
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


def commands(tree: Path, copy: Path, cache: Path, methods: str) -> dict[str, list[str]]:
    """The Makefile's recipes for stages 01, 02 and 05, with the settings each stage's manifest recorded."""
    conf = {s: json.loads((tree / s / "manifest.json").read_text())["config"] for s in STAGES}
    budgets = json.loads((tree / STAGE / "metrics.json").read_text())["budgets"]

    def base(stage: str) -> list[str]:
        c = conf[stage]
        return [sys.executable, str(REPO / f"{stage}.py"), "--profile", c["profile"], "--results", str(copy),
                "--device", c["device"], "--seed", str(c["seed"]), "--wandb", "0", "--precision", c.get("precision", "auto")]
    c1, c2, c5 = (conf[s] for s in STAGES)
    return {"01_prepare_data": base("01_prepare_data") + [
                "--source", c1["source"], "--data-dir", c1["data_dir"], "--cache-dir", str(cache),
                "--forget-class", str(c1["forget_class"]), "--split-seed", str(c1["split_seed"])],
            "02_train_resnet": base("02_train_resnet") + ["--noise-gold", str(c2["noise_gold"]).lower()],
            STAGE: base(STAGE) + ["--settings", c5["settings"], "--tuned-dir", c5["tuned_dir"], "--methods", methods,
                                  "--budgets", ",".join(str(b) for b in budgets)]}


def main(tree: Path, methods: str, loaders: int | None = None) -> int:
    found, names = [], methods.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        copy, cache = Path(tmp) / "tree", Path(tmp) / "cache"
        n = (os.cpu_count() or 1) if loaders is None else loaders
        loaders = [mp.Process(target=busy, args=(900.0,), daemon=True) for _ in range(n)]
        for p in loaders:
            p.start()
        try:
            for stage, cmd in commands(tree, copy, cache, methods).items():
                run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                if run.returncode != 0:
                    print(f"determinism check: the re-run of {stage} failed: {run.stderr.strip().splitlines()[-1:]}")
                    return 1
                first = json.loads((tree / stage / "metrics.json").read_text())
                second = json.loads((copy / stage / "metrics.json").read_text())
                if stage == STAGE:  # only the re-run methods
                    pick = lambda m: {k: {n: m[k][n] for n in names} for k in ("models", "curve")}  # noqa: E731
                    first, second = pick(first), pick(second)
                found += [f"{stage}{d}" for d in diff(first, second)]
        finally:
            for p in loaders:
                p.terminate()
    for line in found[:20]:
        print(f"determinism check: {line}")
    print(f"determinism check: {'FAILED' if found else 'ok'}: stages {', '.join(STAGES)} re-run one at a time under "
          f"load (05: methods {methods}) against the make -j2 tree, {len(found)} differing field(s) (wall times "
          "excluded)")
    return 1 if found else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    n_load = None
    if "--loaders" in args:
        i = args.index("--loaders")
        n_load, args = int(args[i + 1]), args[:i] + args[i + 2:]
    sys.exit(main(Path(args[0]), args[1] if len(args) > 1 else DEFAULT_METHODS, n_load))
