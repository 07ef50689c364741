""""Add a method" is tested as written: the worked example of docs/methods.md is a complete method file.

The test takes the page's python block under "Adding a method", saves it into a temporary copy of the repository as
`common/methods/<name>.py` (the name the page gives) and touches nothing else. It then runs the smoke pipeline on
tiny generated data (stages 01-03 without gold_2, then 04 and 05 for that method alone, 06 and 07) and checks that
the method appears, run under the counted budget, in both tracks' metrics and in the report. About a minute on 2
cores; the smoke run of `make test` does not include the example (it is not in the registry).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "methods.md"


def worked_example() -> tuple[str, str]:
    """(method name, file text) from the page's "Adding a method" section."""
    text = PAGE.read_text()
    section = text.split("## Adding a method", 1)
    assert len(section) == 2, "docs/methods.md has no '## Adding a method' section"
    name = re.search(r"`common/methods/(\w+)\.py`", section[1])
    block = re.search(r"```python\n(.*?)```", section[1], re.S)
    assert name and block, "the 'Adding a method' section must name common/methods/<name>.py and give its file"
    return name.group(1), block.group(1)


def copy_repo(dst: Path) -> None:
    """The repository's files as they are now (tracked and untracked, not ignored): no results, no venv."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def test_the_pages_method_file_is_new_and_complete():
    name, code = worked_example()
    assert not (REPO / "common" / "methods" / f"{name}.py").exists(), f"{name} is already a registered method"
    for attr in ("KIND", "SOURCE", "SETTINGS", "SEARCH_SPACE", "SCHEDULE", "def units_per_step", "def run"):
        assert attr in code, f"the worked example lacks {attr}"
    compile(code, f"common/methods/{name}.py", "exec")


def test_the_worked_example_runs_budgeted_on_both_tracks_and_reaches_the_report(tmp_path):
    name, code = worked_example()
    repo = tmp_path / "repo"
    copy_repo(repo)
    (repo / "common" / "methods" / f"{name}.py").write_text(code)  # the only change to the copy
    env = dict(os.environ, THREADS="1", PYTHONHASHSEED="0")

    def run(*args: str) -> None:
        p = subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True, text=True)
        assert p.returncode == 0, f"{' '.join(args)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"

    tree = "results/seed-0"
    common = ["--profile", "smoke", "--results", tree, "--device", "cpu", "--seed", "0", "--wandb", "0"]
    run("tests/fake_data.py", "kaggle", str(tmp_path / "data"), "--per-class", "30")
    run("01_prepare_data.py", *common, "--source", "kaggle", "--data-dir", str(tmp_path / "data"),
        "--cache-dir", str(tmp_path / "cache"))
    run("02_train_resnet.py", *common, "--noise-gold", "false")
    run("03_train_vit_refs.py", *common, "--noise-gold", "false")
    run("04_unlearn_vit.py", *common, "--methods", name, "--settings", "official")
    run("05_unlearn_gan.py", *common, "--methods", name, "--settings", "official")
    run("06_membership_attack.py", *common)
    run("07_report.py", "--profile", "smoke", "--results", "results", "--device", "cpu", "--wandb", "0",
        "--seeds", "0")

    for stage in ("04_unlearn_vit", "05_unlearn_gan"):
        metrics = json.loads((repo / tree / stage / "metrics.json").read_text())
        m = metrics["models"].get(name)
        assert m is not None, f"{stage}: {name} is not in the metrics"
        assert m["units"] > 0 and m["steps"] > 0, f"{stage}: {name} took no counted step"
        assert m["units"] <= metrics["budget_units"] or m["cut"] is False and m["over_budget"], \
            f"{stage}: {name} used {m['units']} units past the budget of {metrics['budget_units']}"
        assert (repo / tree / stage / "logits" / f"{name}.pt").is_file()
    report = (repo / "results" / "report.md").read_text()
    assert report.count(name) >= 2, f"{name} is not in both tracks' tables of the report"
