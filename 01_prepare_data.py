"""Stage 01 - read CIFAR-10 once, split it, and hand uint8 tensors and index splits to every later stage.

Reads
  --source cifar10  <data-dir>/cifar-10-batches-py through torchvision's CIFAR10 (downloaded when missing; an
                    existing folder is used as is; torchvision's md5 checks stay on)
  --source kaggle   <data-dir>/train.7z (extracted once into --cache-dir, never into <data-dir>) or an extracted
                    <data-dir>/train/<id>.png, plus <data-dir>/trainLabels.csv (id,label; label = class name);
                    split seeded 80/20 into train/test as reference B does
Writes results/01_prepare_data/
  data.pt      {"train_images": uint8 [N,3,32,32], "train_labels": int64 [N], "test_images", "test_labels",
                "train_ids", "test_ids" (source ids: CSV id or CIFAR index), "classes": [10 names]}
  splits.pt    int64 index tensors (rows of data.pt):
               test_unseen / test_val / test_eval   the test rows cut three ways (disjoint): held-out images an
                            unlearning method may use / hyper-parameter choice / every reported test figure
               forget / retain / test_forget / test_retain (class-wise, reference A; test_* within test_eval),
               (with --problem tune: the tuning problem's; then also reported_forget / reported_sample_forget,
               the reported problem's forget rows, which the tuning objective leaves out),
               sample_forget / sample_retain (sample-wise, reference B: one batch, or --forget-fraction of the
               sample-wise rows; with --sample-per-class the ResNet track uses only that many rows per class,
               and the rows outside sample_forget + sample_retain are unused there), and balanced, disjoint membership sets
               mia_{sample,class}_{members,nonmembers}_{attack,eval} (non-members drawn from test_eval only)
  manifest.json, metrics.json (written last: sizes, forget class, data_hash = what every tree shares), log.jsonl
Seeds: --pool-seed cuts what every tree shares (kaggle's train/test split, the caps, the three test pools, the
sample-wise row pool); --split-seed draws the forget sets and membership sets; --seed (training) is not used here.
Run
  python 01_prepare_data.py --source kaggle --data-dir ../shared/data/cifar10-kaggle-subset
  python 01_prepare_data.py --profile smoke --source kaggle --data-dir <tiny data> --results results-smoke
  python 01_prepare_data.py --problem tune --tune-forget-class 1 --results results/tune ...   (make tune)
Bad input (unknown source, missing files, corrupt archive, CSV problems, bad forget settings) stops with one line
naming the problem and the fix, exit status 2, before anything is written.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common.config import PrepareConfig, config_dict, parse_config, print_config, resolve_device
from common.data import CIFAR10_CLASSES, PREPARE_STAGE, stage_dir
from common.io import PipelineError, run_main, save_json, save_torch, write_manifest
from common.log import RunLog
from common.seed import set_seed

SOURCES = ("cifar10", "kaggle")


# ------------------------------------------------------------------------------------------------- cifar10
def load_cifar10(data_dir: Path):
    """Official train/test through torchvision (md5-checked); returns uint8 NCHW tensors and class names."""
    from torchvision.datasets import CIFAR10

    folder = data_dir / "cifar-10-batches-py"
    download = not folder.is_dir()
    archive = data_dir / "cifar-10-python.tar.gz"
    had_archive = archive.exists()
    try:
        # parallel runs (make -j) that must download: one does, the others wait for it and read its files
        with _locked(data_dir / ".cifar10-download.lock") if download else contextlib.nullcontext():
            train = CIFAR10(str(data_dir), train=True, download=download and not folder.is_dir())
            test = CIFAR10(str(data_dir), train=False, download=False)
    except (OSError, RuntimeError) as e:
        if download:
            if not had_archive:
                archive.unlink(missing_ok=True)  # no half-downloaded archive left behind
            raise PipelineError(
                f"could not download CIFAR-10 into {data_dir} ({type(e).__name__}; no network?): put an extracted "
                "cifar-10-batches-py there, or use --source kaggle --data-dir <folder with train.7z>") from None
        raise PipelineError(f"{folder} fails torchvision's integrity check (corrupt or incomplete): delete it to "
                            "download again, or use --source kaggle") from None

    def tensors(ds):
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return x, torch.tensor(ds.targets, dtype=torch.int64)

    (trx, try_), (tex, tey) = tensors(train), tensors(test)
    return trx, try_, torch.arange(len(trx)), tex, tey, torch.arange(len(tex)), list(train.classes)


# -------------------------------------------------------------------------------------------------- kaggle
@contextlib.contextmanager
def _locked(lock_file: Path):
    """An exclusive advisory lock (flock) for the duration of the block: parallel stage-01 runs (make -j, one per
    seed) that share a cache or data folder take turns, so the second finds the first's result instead of racing it."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _extract(archive: Path, cache_dir: Path) -> Path:
    """Extract train.7z once into cache_dir/kaggle-<sha256 prefix>/ (atomic rename, under a lock); return its train/
    folder."""
    import py7zr

    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    target = cache_dir / f"kaggle-{digest}"
    if (target / "train").is_dir():
        return target / "train"
    with _locked(cache_dir / f".kaggle-{digest}.lock"):
        if (target / "train").is_dir():  # another run extracted it while this one waited
            return target / "train"
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_dir))
        try:
            with py7zr.SevenZipFile(archive, mode="r") as z:
                names = z.getnames()
                if not any(n == "train" or n.startswith("train/") for n in names):
                    raise PipelineError(f"{archive} holds no train/ folder: use Kaggle's CIFAR-10 train.7z")
                z.extractall(path=tmp)
        except PipelineError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except Exception as e:  # py7zr raises Bad7zFile, CrcError, DecompressionError, EOFError, lzma errors ...
            shutil.rmtree(tmp, ignore_errors=True)
            raise PipelineError(f"{archive} is corrupt or truncated ({type(e).__name__}): download train.7z again") from None
        try:
            tmp.rename(target)
        except OSError:  # a run on another machine (no shared lock on some network filesystems) got there first
            shutil.rmtree(tmp, ignore_errors=True)
            if not (target / "train").is_dir():
                raise
    return target / "train"


def _read_labels(csv: Path) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    if not csv.is_file():
        raise PipelineError(f"missing {csv}: the kaggle source needs trainLabels.csv (columns id,label) beside train.7z")
    try:
        df = pd.read_csv(csv)
    except Exception as e:
        raise PipelineError(f"cannot read {csv} as CSV ({type(e).__name__}): expected columns id,label") from None
    missing = [c for c in ("id", "label") if c not in df.columns]
    if missing:
        raise PipelineError(f"{csv} lacks column(s) {', '.join(missing)}: expected header id,label")
    if not pd.api.types.is_integer_dtype(df["id"]) or df["id"].duplicated().any():
        raise PipelineError(f"{csv}: ids must be unique integers (image file names without .png)")
    names = df["label"].astype(str).str.strip()
    unknown = sorted(set(names) - set(CIFAR10_CLASSES))
    if unknown:
        raise PipelineError(f"{csv} has unknown class name(s) {unknown[:5]}: labels must be CIFAR-10 names "
                            f"({', '.join(CIFAR10_CLASSES)})")
    lookup = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    return df["id"].to_numpy(np.int64), names.map(lookup).to_numpy(np.int64)


def load_kaggle(data_dir: Path, cache_dir: Path):
    """All images of Kaggle's layout, ordered by id; returns (uint8 [N,3,32,32], int64 labels, int64 ids)."""
    from PIL import Image

    if not data_dir.is_dir():
        raise PipelineError(f"data dir {data_dir} does not exist: pass --data-dir <folder with train.7z and trainLabels.csv>")
    ids, labels = _read_labels(data_dir / "trainLabels.csv")
    if (data_dir / "train").is_dir():
        folder = data_dir / "train"
    elif (data_dir / "train.7z").is_file():
        folder = _extract(data_dir / "train.7z", cache_dir)
    else:
        raise PipelineError(f"no train.7z or train/ in {data_dir}: put Kaggle's train.7z (or its extracted train/) there")
    files = {p.stem: p for p in folder.glob("*.png")}
    file_ids = {int(s) for s in files if s.isdigit()}
    no_image = sorted(set(ids.tolist()) - file_ids)
    if no_image:
        raise PipelineError(f"{len(no_image)} id(s) in trainLabels.csv have no image in {folder} (e.g. {no_image[:3]}): "
                            "use the CSV that belongs to this archive")
    no_row = sorted(file_ids - set(ids.tolist()))
    if no_row:
        raise PipelineError(f"{len(no_row)} image(s) in {folder} have no row in trainLabels.csv (e.g. {no_row[:3]}): "
                            "use the CSV that belongs to this archive")
    order = np.argsort(ids, kind="stable")
    ids, labels = ids[order], labels[order]
    images = np.empty((len(ids), 32, 32, 3), dtype=np.uint8)
    for row, i in enumerate(ids):
        with Image.open(files[str(i)]) as im:
            arr = np.asarray(im.convert("RGB"))
        if arr.shape != (32, 32, 3):
            raise PipelineError(f"{files[str(i)]} is {arr.shape[1]}x{arr.shape[0]}, not 32x32: not CIFAR-10 data")
        images[row] = arr
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels), torch.from_numpy(ids)


# --------------------------------------------------------------------------------------------------- splits
def _gen(seed: int, stream: int) -> torch.Generator:
    """A separate seeded stream per random step, so changing one setting does not reshuffle the others."""
    return torch.Generator().manual_seed(seed * 1_000 + stream)


def cap_per_class(labels: torch.Tensor, cap: int, gen: torch.Generator) -> torch.Tensor:
    """Sorted indices keeping at most `cap` seeded-random rows per class (all rows when cap is 0)."""
    if cap <= 0:
        return torch.arange(len(labels))
    keep = []
    for c in labels.unique():
        rows = (labels == c).nonzero().flatten()
        keep.append(rows[torch.randperm(len(rows), generator=gen)[:cap]])
    return torch.cat(keep).sort().values


def membership_sets(prefix: str, members: torch.Tensor, nonmembers: torch.Tensor, gen: torch.Generator) -> dict:
    """Balanced member / non-member index sets, each cut into an attack-training half and an evaluation half."""
    n = min(len(members), len(nonmembers))
    half = n // 2
    m = members[torch.randperm(len(members), generator=gen)[:n]]
    nm = nonmembers[torch.randperm(len(nonmembers), generator=gen)[:n]]
    return {f"{prefix}_members_attack": m[:half], f"{prefix}_members_eval": m[half:2 * half],
            f"{prefix}_nonmembers_attack": nm[:half], f"{prefix}_nonmembers_eval": nm[half:2 * half]}


def test_pools(n_test: int, cfg: PrepareConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """test_unseen / test_val / test_eval: a seeded cut of the test rows by `pool_seed` alone, so every tree
    (each training seed, each split seed, the tuning problem) has the same three pools."""
    test_perm = torch.randperm(n_test, generator=_gen(cfg.pool_seed, 6))
    n_unseen, n_val = round(cfg.unseen_fraction * n_test), round(cfg.val_fraction * n_test)
    return (test_perm[:n_unseen].sort().values, test_perm[n_unseen:n_unseen + n_val].sort().values,
            test_perm[n_unseen + n_val:].sort().values)


def class_split(train_y, test_y, test_eval, fc: int):
    forget, retain = (train_y == fc).nonzero().flatten(), (train_y != fc).nonzero().flatten()
    test_forget, test_retain = test_eval[test_y[test_eval] == fc], test_eval[test_y[test_eval] != fc]
    if len(forget) == 0 or len(test_forget) == 0:
        raise PipelineError(f"forget class {fc} has no {'train' if len(forget) == 0 else 'test'} samples in this "
                            "data: pick a class that is present (--forget-class / --tune-forget-class 0..9)")
    return forget, retain, test_forget, test_retain


def make_splits(train_y: torch.Tensor, test_y: torch.Tensor, cfg: PrepareConfig) -> dict:
    """Every index split of the pipeline, drawn once. Test rows are cut three ways, disjoint by construction:
    `test_unseen` (held-out images an unlearning method may look at, e.g. the GANs' "real" distribution),
    `test_val` (choosing hyper-parameters: the tuning objective) and `test_eval` (every reported test figure, and
    the attacks' non-members: their attack-training half and their evaluation half).
    With problem "tune" the class-wise split forgets `tune_forget_class` and the sample-wise forget set is drawn
    from the pool rows outside the reported one; `reported_forget` / `reported_sample_forget` keep the reported
    problem's forget rows so that the tuning objective can leave them out (common.tune.objective_rows)."""
    test_unseen, test_val, test_eval = test_pools(len(test_y), cfg)
    pool = cap_per_class(train_y, cfg.sample_per_class, _gen(cfg.pool_seed, 7))  # the sample-wise track's train rows
    n = len(pool)
    n_forget = round(cfg.forget_fraction * n) if cfg.forget_fraction > 0 else cfg.forget_size
    tune = cfg.problem == "tune"
    if not 0 < n_forget < (n // 2 if tune else n):
        raise PipelineError(f"forget size {n_forget} must be between 1 and the sample-wise train size {n} minus 1 "
                            "(half of it for the tuning problem, whose forget set lies outside the reported one): "
                            "lower --forget-size or --forget-fraction (or raise --sample-per-class)")
    perm = pool[torch.randperm(n, generator=_gen(cfg.split_seed, 3))]
    reported_sample_forget = perm[:n_forget]
    forget, retain, test_forget, test_retain = class_split(train_y, test_y, test_eval, cfg.forget_class)
    sample_forget = reported_sample_forget
    if tune:  # only the forget draws change: the tuning problem's rows come from outside the reported forget set
        reported_forget = forget
        forget, retain, test_forget, test_retain = class_split(train_y, test_y, test_eval, cfg.tune_forget_class)
        outside = perm[n_forget:]
        sample_forget = outside[torch.randperm(len(outside), generator=_gen(cfg.split_seed, 8))[:n_forget]]
    sample_retain = pool[~torch.isin(pool, sample_forget)].sort().values
    splits = dict(forget=forget, retain=retain, test_forget=test_forget, test_retain=test_retain,
                  sample_forget=sample_forget, sample_retain=sample_retain, test_unseen=test_unseen,
                  test_val=test_val, test_eval=test_eval)
    if tune:
        splits.update(reported_forget=reported_forget, reported_sample_forget=reported_sample_forget)
    splits.update(membership_sets("mia_sample", sample_retain, test_eval, _gen(cfg.split_seed, 4)))
    splits.update(membership_sets("mia_class", retain, test_retain, _gen(cfg.split_seed, 5)))
    return splits


def data_hash(data: dict, splits: dict) -> str:
    """sha256 (16 hex) of what every tree shares: the images' source ids, the labels, the three test pools and the
    sample-wise row pool. The same in the reported trees and the tuning tree of one dataset; tuned settings record
    it (common.tune), so settings tuned on other data are reported as stale."""
    h = hashlib.sha256()
    pool = torch.cat([splits["sample_forget"], splits["sample_retain"]]).sort().values
    for t in (data["train_ids"], data["train_labels"], data["test_ids"], data["test_labels"], splits["test_unseen"],
              splits["test_val"], splits["test_eval"], pool):
        h.update(t.to(torch.int64).contiguous().numpy().tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def load_source(cfg: PrepareConfig):
    """Read the chosen source; returns train/test tensors, source ids and class names (test split for kaggle)."""
    data_dir = Path(cfg.data_dir)
    if cfg.source == "cifar10":
        return load_cifar10(data_dir)
    images, labels, ids = load_kaggle(data_dir, Path(cfg.cache_dir))
    perm = torch.randperm(len(labels), generator=_gen(cfg.pool_seed, 0))
    n_train = len(labels) - round(cfg.test_fraction * len(labels))
    tr, te = perm[:n_train].sort().values, perm[n_train:].sort().values
    return images[tr], labels[tr], ids[tr], images[te], labels[te], ids[te], list(CIFAR10_CLASSES)


def check_config(cfg: PrepareConfig) -> None:
    if cfg.source not in SOURCES:
        raise PipelineError(f"unknown source {cfg.source!r}: use --source cifar10 or --source kaggle")
    if not 0 <= cfg.forget_class <= 9:
        raise PipelineError(f"forget class {cfg.forget_class} is outside 0-9: pass --forget-class 0..9")
    if cfg.problem not in ("report", "tune"):
        raise PipelineError(f"unknown problem {cfg.problem!r}: use --problem report or --problem tune")
    if cfg.problem == "tune" and not 0 <= cfg.tune_forget_class <= 9:
        raise PipelineError(f"tuning forget class {cfg.tune_forget_class} is outside 0-9: pass --tune-forget-class 0..9")
    if cfg.problem == "tune" and cfg.tune_forget_class == cfg.forget_class:
        raise PipelineError(f"the tuning problem would forget the reported class {cfg.forget_class}: tuning must not "
                            "score the reported problem, pick another --tune-forget-class (make: TUNE_FORGET_CLASS)")
    if cfg.unseen_fraction <= 0 or cfg.val_fraction <= 0 or cfg.unseen_fraction + cfg.val_fraction >= 0.9:
        raise PipelineError("unseen_fraction and val_fraction must be > 0 and leave >= 10 % of test for evaluation: "
                            "e.g. --unseen-fraction 0.1 --val-fraction 0.1")
    if not 0 < cfg.test_fraction < 1:
        raise PipelineError(f"test fraction {cfg.test_fraction} must be in (0, 1): e.g. --test-fraction 0.2")


def main() -> None:
    cfg = parse_config(PrepareConfig)
    print_config(PREPARE_STAGE, cfg)
    check_config(cfg)
    started = time.time()
    set_seed(cfg.split_seed)  # nothing below draws from torch's global generator; every draw has its own stream
    out = stage_dir(cfg.results, PREPARE_STAGE)

    trx, try_, tr_ids, tex, tey, te_ids, classes = load_source(cfg)
    keep_tr = cap_per_class(try_, cfg.max_train_per_class, _gen(cfg.pool_seed, 1))
    keep_te = cap_per_class(tey, cfg.max_test_per_class, _gen(cfg.pool_seed, 2))
    trx, try_, tr_ids = trx[keep_tr], try_[keep_tr], tr_ids[keep_tr]
    tex, tey, te_ids = tex[keep_te], tey[keep_te], te_ids[keep_te]
    splits = make_splits(try_, tey, cfg)  # validates the forget settings before anything is written

    log = RunLog(out, PREPARE_STAGE, config_dict(cfg), cfg.wandb)
    data = dict(train_images=trx, train_labels=try_, test_images=tex, test_labels=tey,
                train_ids=tr_ids, test_ids=te_ids, classes=classes)
    save_torch(data, out / "data.pt")
    save_torch(splits, out / "splits.pt")
    fc = cfg.tune_forget_class if cfg.problem == "tune" else cfg.forget_class  # the class this tree forgets
    metrics = dict(source=cfg.source, n_train=len(try_), n_test=len(tey), classes=classes,
                   train_per_class=torch.bincount(try_, minlength=10).tolist(),
                   test_per_class=torch.bincount(tey, minlength=10).tolist(),
                   forget_class=fc, forget_class_name=classes[fc], problem=cfg.problem,
                   reported_forget_class=cfg.forget_class,
                   data_hash=data_hash(data, splits),
                   split_sizes={k: len(v) for k, v in splits.items()}, seconds=round(time.time() - started, 3))
    log.log("prepared", n_train=metrics["n_train"], n_test=metrics["n_test"], seconds=metrics["seconds"],
            forget=len(splits["forget"]), sample_forget=len(splits["sample_forget"]))
    data_dir = Path(cfg.data_dir)
    inputs = [data_dir / "train.7z", data_dir / "trainLabels.csv"] if cfg.source == "kaggle" else \
        sorted((data_dir / "cifar-10-batches-py").glob("*"))
    write_manifest(out, config_dict(cfg), resolve_device(cfg.device), started, inputs,
                   [out / "data.pt", out / "splits.pt"])
    log.close(metrics)
    save_json(metrics, out / "metrics.json")


if __name__ == "__main__":
    run_main(main)
