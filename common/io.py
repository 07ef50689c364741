"""Atomic writes, checkpoints, manifests and the one-line error convention shared by every stage.

- Every file is written to a temp file in the same folder and renamed into place, so an interrupted write never
  leaves a half-written artefact under its real name.
- Checkpoints are plain dicts {"model_name", "model_args", "state_dict", "config"}; `load_checkpoint` reads them
  with `torch.load(..., weights_only=True)` so no pickled code ever runs.
- A stage raises `PipelineError("problem: fix")`; `run_main` prints it as one line and exits with status 2.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class PipelineError(Exception):
    """Bad input or a missing upstream artefact: reported as one line, exit status 2."""


def run_main(main) -> None:
    """Call `main()`; turn a PipelineError into `error: ...` on stderr and exit status 2."""
    try:
        main()
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path next to `path`; on success rename it onto `path`, on any error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the mode a plain open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale(out_dir: str | Path, keep: list) -> list[Path]:
    """Delete the .pt / .png artefacts under `out_dir` that this run did not write (e.g. a method no longer in
    --methods), so later stages never read a previous run's outputs. Returns what was removed."""
    keep = {Path(p).resolve() for p in keep}
    stale = [p for p in Path(out_dir).rglob("*") if p.suffix in (".pt", ".png") and p.resolve() not in keep]
    for p in stale:
        p.unlink()
    return stale


def save_torch(obj, path: str | Path) -> None:
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)  # via a file object: the zip records do not embed the temp name, so bytes are reproducible


def load_torch(path: str | Path, what: str = "", make: str = ""):
    """torch.load with weights_only=True and a one-line error naming the stage that makes a missing file."""
    import torch

    path = Path(path)
    if not path.exists():
        hint = f": run {make} first" if make else ""
        raise PipelineError(f"missing {what or 'artefact'} {path}{hint}")
    return torch.load(path, map_location="cpu", weights_only=True)


def _finite(o):
    """NaN / inf -> None, so the file is strict JSON (null) that every parser reads."""
    if isinstance(o, float):
        return o if o == o and abs(o) != float("inf") else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def save_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False) + "\n")


def load_json(path: str | Path, what: str = "", make: str = ""):
    path = Path(path)
    if not path.exists():
        hint = f": run {make} first" if make else ""
        raise PipelineError(f"missing {what or 'file'} {path}{hint}")
    return json.loads(path.read_text())


def save_figure(fig, path: str | Path, dpi: int = 120) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")


def _json_default(o):
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_checkpoint(path, model, model_name: str, model_args: dict, config: dict | None = None, **extra) -> None:
    """Save the plain state_dict plus what `common.models.build_model` needs to rebuild the network."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(dict(model_name=model_name, model_args=model_args, state_dict=state, config=config or {}, **extra), path)


def load_checkpoint(path, make: str = ""):
    ckpt = load_torch(path, "checkpoint", make)
    for key in ("model_name", "model_args", "state_dict"):
        if key not in ckpt:
            raise PipelineError(f"{path} is not a checkpoint of this project (no {key!r}): re-run {make or 'its stage'}")
    return ckpt


def sha256(path: str | Path, limit_mb: int = 512) -> str | None:
    """Hex digest of a file (None for folders or files over `limit_mb`, which would cost too long to hash)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size > limit_mb * 2**20:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_state() -> dict:
    def git(*args):
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    sha = git("rev-parse", "HEAD")
    return {"sha": sha or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no")) if sha else None}


def library_versions() -> dict:
    """Installed versions from the package metadata: importing timm only to read its version cost a stage 5-10 s."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name, dist in (("torch", "torch"), ("torchvision", "torchvision"), ("timm", "timm"), ("numpy", "numpy"),
                       ("sklearn", "scikit-learn"), ("scipy", "scipy")):
        mod = sys.modules.get(name)
        try:
            out[name] = getattr(mod, "__version__", None) if mod is not None else metadata.version(dist)
        except metadata.PackageNotFoundError:  # an optional library that is not installed
            out[name] = None
    return out


def device_info(device: str) -> dict:
    import torch

    info = {"device": device, "cpu_threads": torch.get_num_threads(), "platform": platform.platform()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _file_entry(p) -> dict:
    p = Path(p)
    return {"path": str(p), "bytes": p.stat().st_size if p.is_file() else None, "sha256": sha256(p)}


def launch_info() -> dict:
    """Where a stage ran: host name, THREADS, and the SLURM job / step / node when a LAUNCH prefix (srun) placed it."""
    import socket

    slurm = {k.removeprefix("SLURM_").lower(): os.environ[k] for k in
             ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_JOB_NODELIST", "SLURMD_NODENAME", "SLURM_CPUS_PER_TASK")
             if k in os.environ}
    return dict(hostname=socket.gethostname(), threads=os.environ.get("THREADS"), **({"slurm": slurm} if slurm else {}))


def precision_info(config: dict, device: str) -> dict:
    from common.config import precision_info as info  # common.config imports this module

    return info(config, device)


def write_manifest(out_dir, config: dict, device: str, started: float, inputs: list, outputs: list, **extra) -> None:
    """manifest.json: resolved config, seed, git state, versions, device, wall time, where it ran (host, threads,
    the SLURM job when launched through srun), input and output files."""
    manifest = dict(
        config=config,
        seed=config.get("seed"),
        git=git_state(),
        versions=library_versions(),
        device=device_info(device),
        precision=precision_info(config, device),
        wall_seconds=round(time.time() - started, 3),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        host=launch_info(),
        inputs=[_file_entry(p) for p in inputs if Path(p).exists()],
        outputs=[_file_entry(p) for p in outputs if Path(p).exists()],
        **extra,
    )
    save_json(manifest, Path(out_dir) / "manifest.json")
