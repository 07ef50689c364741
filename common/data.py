"""Datasets as uint8 NCHW tensors and a batch iterator that does all pixel work batched on the compute device.

Stage 01 writes `data.pt` (images, labels, class names) and `splits.pt` (index tensors); every later stage reads
them with `load_prepared` and never re-reads or re-splits the source. Images stay uint8 until a batch reaches the
device; there it is (optionally) augmented, resized and normalised in one go. No PIL in any loop.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from common.io import PipelineError, load_torch

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel, pixels in [0, 1]
CIFAR_STD = (0.2470, 0.2435, 0.2616)  # the true per-channel std of CIFAR-10's train images
REFERENCE_B_STD = (0.2023, 0.1994, 0.2010)  # the std constants reference B's code normalises with
NORMS = {"cifar": (CIFAR_MEAN, CIFAR_STD), "reference_b": (CIFAR_MEAN, REFERENCE_B_STD)}
VIT_MEAN = VIT_STD = (0.5, 0.5, 0.5)  # reference A: Normalize([0.5]*3, [0.5]*3)

# Class order of CIFAR-10's batches.meta (and torchvision's CIFAR10.classes).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PREPARE_STAGE = "01_prepare_data"
PREPARE_CMD = "python 01_prepare_data.py (or make prepare)"
SPLIT_KEYS = ("forget", "retain", "test_forget", "test_retain", "sample_forget", "sample_retain", "test_unseen",
              "test_val", "test_eval")


def stage_dir(results: str | Path, stage: str) -> Path:
    return Path(results) / stage


def load_prepared(results: str | Path) -> tuple[dict, dict]:
    """Read stage 01's data.pt and splits.pt (one-line error naming the fix when either is missing)."""
    d = stage_dir(results, PREPARE_STAGE)
    data = load_torch(d / "data.pt", "prepared data", PREPARE_CMD)
    splits = load_torch(d / "splits.pt", "index splits", PREPARE_CMD)
    missing = [k for k in SPLIT_KEYS if k not in splits]
    if missing:
        raise PipelineError(f"{d / 'splits.pt'} lacks {missing}: re-run {PREPARE_CMD}")
    return data, splits


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def random_crop_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Per-image random crop (zero padding `pad` px, as torchvision's RandomCrop(32, padding=4)) and horizontal
    flip (p = 0.5) of a uint8 or float NCHW batch, all images at once via one gather."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dev = x.device
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=dev)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=dev)
    rows = dy + torch.arange(h, device=dev)  # [n, h]
    cols = dx + torch.arange(w, device=dev)  # [n, w]
    flip = torch.rand(n, 1, device=dev) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)
    return xp[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
              rows[:, None, :, None], cols[:, None, None, :]]


def resnet_transform(train: bool, channels_last: bool = False, norm: str = "cifar") -> Callable[[torch.Tensor], torch.Tensor]:
    """32 px CIFAR inputs: random crop + flip when training, mean/std normalisation with the constants `norm`."""
    if norm not in NORMS:
        raise PipelineError(f"unknown normalisation {norm!r}: use one of {', '.join(NORMS)}")
    mean, std = NORMS[norm]

    def f(x: torch.Tensor) -> torch.Tensor:
        if train:
            x = random_crop_flip(x)
        x = _normalise(x.float().div_(255), mean, std)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    return f


def vit_transform(img_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """ViT inputs: bilinear resize 32 -> img_size on the device, then mean = std = 0.5 as in reference A."""

    def f(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255)
        if x.shape[-1] != img_size:
            x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
        return _normalise(x, VIT_MEAN, VIT_STD)

    return f


def to_device(images: torch.Tensor, labels: torch.Tensor, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Put a whole uint8 split on the device once (150 MB for all of CIFAR-10 train): no per-batch copies on GPU."""
    return images.to(device), labels.to(device)


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def batches(images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor | None, batch_size: int,
            transform: Callable, device: str, shuffle: bool = False, drop_last: bool = False,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float inputs, int64 labels) on `device` for the rows `idx` (all rows when None) of uint8 `images`.

    Shuffling uses `generator` (a seeded CPU generator) so the order is reproducible per seed.
    """
    idx = torch.arange(len(images)) if idx is None else idx.cpu()
    if shuffle:
        idx = idx[torch.randperm(len(idx), generator=generator)]
    on_device = images.device.type == torch.device(device).type
    for start in range(0, len(idx), batch_size):
        b = idx[start:start + batch_size]
        if drop_last and len(b) < batch_size:
            break
        if on_device:
            b = b.to(images.device)
            x, y = images[b], labels[b]
        else:  # index on CPU, then copy the uint8 batch (4x smaller than float) to the device
            x = images[b].to(device, non_blocking=True)
            y = labels[b].to(device, non_blocking=True)
        yield transform(x), y
