"""Training and inference loops shared by the stages: one epoch of a loss over batches, and cached logits."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn
from tqdm import tqdm

from common.data import batches, num_batches
from common.models import autocast


def train_epoch(model: nn.Module, batch_iter: Iterable, optimizer: torch.optim.Optimizer,
                loss_fn: Callable, device: str, amp: bool, total: int | None = None,
                scheduler=None, desc: str = "train") -> dict:
    """One pass of `loss_fn(model, x, y) -> (loss, logits)` over `batch_iter`; returns mean loss, accuracy (%) and
    the number of optimiser steps."""
    model.train()
    loss_sum, correct, seen, steps = 0.0, 0, 0, 0
    for x, y in progress(batch_iter, total=total, desc=desc):
        with autocast(device, amp):
            loss, logits = loss_fn(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        steps += 1
    return {"loss": loss_sum / max(seen, 1), "acc": 100.0 * correct / max(seen, 1), "steps": steps}


def progress(it: Iterable, total: int | None = None, desc: str = "") -> Iterable:
    """tqdm on a terminal; silent when output goes to a file or pipe (`make all > log` gets no \\r frames)."""
    return tqdm(it, total=total, desc=desc, leave=False, mininterval=2.0, disable=None)


def cross_entropy_loss(label_smoothing: float = 0.0) -> Callable:
    ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def loss_fn(model, x, y):
        logits = model(x)
        return ce(logits.float(), y), logits

    return loss_fn


@torch.no_grad()
def predict(model: nn.Module, batch_iter: Iterable, device: str, total: int | None = None, desc: str = "eval",
            features: bool = False) -> torch.Tensor:
    """Float32 CPU logits (or, with `features`, timm pre-logit features) for every batch, in order. Evaluation
    runs in float32 without autocast: bf16 would quantise confidences and tie the attacks' features."""
    model.eval()
    outs = []
    for x, _ in progress(batch_iter, total=total, desc=desc):
        out = model.forward_head(model.forward_features(x), pre_logits=True) if features else model(x)
        outs.append(out.float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


@torch.no_grad()
def predict_with_features(model: nn.Module, batch_iter: Iterable, device: str, total: int | None = None,
                          desc: str = "eval") -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 CPU (logits, timm pre-logit features) of every batch from one forward pass: the head applied to the
    same `forward_features` output (timm's `forward` is exactly forward_head(forward_features(x)), so the logits
    equal `predict`'s). Spares the second pass a stage would otherwise run for t-SNE or a probe."""
    model.eval()
    logits, feats = [], []
    for x, _ in progress(batch_iter, total=total, desc=desc):
        f = model.forward_features(x)
        logits.append(model.forward_head(f).float().cpu())
        feats.append(model.forward_head(f, pre_logits=True).float().cpu())
    if not logits:
        return torch.empty(0), torch.empty(0)
    return torch.cat(logits), torch.cat(feats)


def split_logits(model: nn.Module, splits: dict, batch_size: int, transform: Callable, device: str,
                 rows: dict | None = None, features: dict | None = None) -> dict:
    """One eval forward pass over each named (uint8 images, labels) split, in row order: {name: float32 CPU
    logits}. With `rows` = {name: index tensor}, only those rows of that split are evaluated and the others hold
    NaN (rows no figure uses). With a `features` dict (timm models, no `rows`), the same pass also fills it with
    {name: pre-logit features}. Used for the logits caches (common.metrics)."""
    if features is not None and rows is not None:
        raise ValueError("split_logits: features are filled for whole splits only (no rows)")
    out = {}
    for name, (x, y) in splits.items():
        idx = None if rows is None else rows.get(name)
        n = len(y) if idx is None else len(idx)
        it = batches(x, y, idx, batch_size, transform, device)
        if features is not None:
            lg, features[name] = predict_with_features(model, it, device, total=num_batches(n, batch_size), desc=name)
        else:
            lg = predict(model, it, device, total=num_batches(n, batch_size), desc=name)
        if idx is not None:
            full = torch.full((len(y), lg.shape[1]), float("nan"))
            full[idx.cpu()] = lg
            lg = full
        out[name] = lg
    return out
