"""Shared fixtures: tiny generated datasets and an in-process runner for the numbered stage scripts."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a pretrained download must fail at once, never hang on retries
os.environ.setdefault("WANDB_MODE", "offline")

import fake_data  # noqa: E402


def load_stage(filename: str):
    """Import a numbered stage script (its name starts with a digit, so plain `import` cannot)."""
    spec = importlib.util.spec_from_file_location(Path(filename).stem.replace("-", "_"), REPO / filename)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # @dataclass looks its module up in sys.modules
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def run_stage(monkeypatch, capsys):
    """run_stage("01_prepare_data.py", [...args]) -> (exit code, stderr): main() under run_main, in-process."""
    from common.io import run_main

    def run(filename: str, argv: list[str]):
        mod = load_stage(filename)
        monkeypatch.setattr(sys, "argv", [filename, *argv])
        capsys.readouterr()
        try:
            run_main(mod.main)
            code = 0
        except SystemExit as e:
            code = e.code
        return code, capsys.readouterr().err

    return run


@pytest.fixture
def kaggle_dir(tmp_path):
    """A tiny Kaggle-layout dataset (train.7z + trainLabels.csv), 12 images per class."""
    return fake_data.write_kaggle(tmp_path / "kaggle", per_class=12)
