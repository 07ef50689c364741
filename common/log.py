"""Per-stage logging: fixed-format lines on stdout, one JSON object per line in `log.jsonl`, and optional wandb.

wandb is imported only when asked for (`--wandb true` or WANDB=1) and honours WANDB_MODE=offline, which needs no
network. When it is off, `RunLog.wandb` is a no-op stand-in with the same `log`/`summary`/`finish` calls, so
stages never branch on it.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


class _NoWandb:
    """Stand-in for a wandb run when logging to wandb is off: every call does nothing."""

    summary: dict

    def __init__(self):
        self.summary = {}

    def log(self, *args, **kwargs):
        pass

    def finish(self, *args, **kwargs):
        pass


def wandb_enabled(flag: bool) -> bool:
    return bool(flag) or os.environ.get("WANDB", "").lower() in ("1", "true", "yes", "on")


def init_wandb(enabled: bool, stage: str, config: dict, out_dir: Path):
    if not wandb_enabled(enabled):
        return _NoWandb()
    try:
        import wandb
    except ImportError:
        from common.io import PipelineError

        raise PipelineError("wandb logging asked for but wandb is not installed: pip install wandb, or drop --wandb")
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "unlearning-pipeline"), name=stage, group=stage,
                      config=config, dir=str(out_dir), reinit="finish_previous")


class RunLog:
    """log.jsonl writer (opened on first use, so a stage that fails its input checks writes none) + wandb."""

    def __init__(self, out_dir: str | Path, stage: str, config: dict, wandb: bool = False):
        self.path = Path(out_dir) / "log.jsonl"
        self.stage = stage
        self.t0 = time.time()
        self._file = None
        self._wandb_flag, self._config = wandb, config
        self._wandb = None

    @property
    def wandb(self):
        if self._wandb is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._wandb = init_wandb(self._wandb_flag, self.stage, self._config, self.path.parent)
        return self._wandb

    def log(self, event: str, echo: bool = True, **fields) -> None:
        record = {"t": round(time.time() - self.t0, 3), "event": event, **fields}
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w")
        self._file.write(json.dumps(record, default=float) + "\n")
        self._file.flush()
        numeric = {f"{event}/{k}": v for k, v in fields.items() if isinstance(v, (int, float))}
        if numeric:
            self.wandb.log(numeric)
        if echo:
            parts = " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            print(f"[{self.stage}] {event} {parts}".rstrip())
            sys.stdout.flush()

    def close(self, summary: dict | None = None) -> None:
        if self._wandb is not None or (summary and wandb_enabled(self._wandb_flag)):
            for k, v in (summary or {}).items():
                if isinstance(v, (int, float, str)):
                    self.wandb.summary[k] = v
            self.wandb.finish()
        if self._file is not None:
            self._file.close()
            self._file = None


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)
