"""Stage 03 - the two ViT reference models of reference A, trained from one and the same initialisation.

  original  trained on all train rows (retain + forget): the "infected" model every unlearning method starts from
  gold      trained on the retain rows only: the model that never saw the forget class (the target to match)
  gold_2    (--noise-gold true) gold's recipe with training seed + 10000 (common.seed.GOLD_2_SEED_OFFSET): how far two golds differ by SGD noise alone

Both start from the same weights (the model is built once with the seed and its state copied), use the same
optimiser (SGD with momentum, constant learning rate, cross-entropy, as reference A) and the same number of epochs.
Inputs go through the batched on-device uint8 path of common/data.py (resize + normalise per batch); training steps
in --precision (auto: bf16 autocast where the hardware computes bf16 natively, else fp32; common.config.native_bf16).

Reads   results/01_prepare_data/{data.pt, splits.pt}
Writes  results/03_train_vit_refs/
  original.pt, gold.pt              checkpoints (common.io.save_checkpoint; rebuild with common.models.load_model)
  logits/original.pt, logits/gold.pt {"train": [N_train, 10], "test": [N_test, 10]} float32 logits of one forward
                                    pass over every train and test row (data.pt order; stage 04 re-uses them)
  manifest.json, log.jsonl, metrics.json (last): per model the training cost in units (images trained x 3),
                                    the training wall time in seconds and the per-epoch
                                    loss / accuracy (%), plus pretrained, img_size, profile, device
Run
  python 03_train_vit_refs.py                          auto profile (paper on a CUDA GPU, else cpu)
  python 03_train_vit_refs.py --profile smoke --results results-smoke
  python 03_train_vit_refs.py --profile paper --weights-file vit_tiny.safetensors   (no network: local weights)
  python 03_train_vit_refs.py --profile paper --pretrained false                   (random init, says so)
"""
from __future__ import annotations

import copy
import time

import torch

from common.config import ViTRefsConfig, config_dict, parse_config, print_config, resolve_runtime
from common.data import batches, load_prepared, num_batches, stage_dir, to_device, vit_transform
from common.io import PipelineError, run_main, save_checkpoint, save_json, write_manifest
from common.log import RunLog
from common.metrics import accuracy, logits_path, save_logits
from common.models import build_model
from common.seed import GOLD_2_SEED_OFFSET, set_seed
from common.train import cross_entropy_loss, split_logits, train_epoch

STAGE = "03_train_vit_refs"
RANDOM_INIT_NOTE = ("ViT is randomly initialised (pretrained false): no ImageNet weights, so accuracies are far "
                    "below reference A's pretrained numbers")


def model_args(cfg: ViTRefsConfig) -> dict:
    """Constructor args stored in each checkpoint so common.models.load_model can rebuild the network."""
    return dict(num_classes=10, pretrained=cfg.pretrained, img_size=cfg.img_size, weights_file=cfg.weights_file)


def check_config(cfg: ViTRefsConfig) -> None:
    for name in ("img_size", "epochs", "batch_size", "eval_batch_size"):
        if getattr(cfg, name) <= 0:
            raise PipelineError(f"--{name.replace('_', '-')} must be positive, not {getattr(cfg, name)}")
    if cfg.img_size % 16:
        raise PipelineError(f"--img-size {cfg.img_size} is not a multiple of the ViT patch size 16: use e.g. 32, 64, 224")
    if cfg.lr <= 0:
        raise PipelineError(f"--lr must be positive, not {cfg.lr}")


def train_reference(model, images, labels, rows, cfg: ViTRefsConfig, device: str, log: RunLog, name: str,
                    seed: int) -> dict:
    """Train `model` in place on `rows` for cfg.epochs epochs; returns wall time (s) and per-epoch history."""
    gen = torch.Generator().manual_seed(seed)  # same shuffling stream for original and gold
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    loss_fn, transform = cross_entropy_loss(), vit_transform(cfg.img_size)
    steps = num_batches(len(rows), cfg.batch_size)
    history, started = [], time.time()
    for epoch in range(1, cfg.epochs + 1):
        it = batches(images, labels, rows, cfg.batch_size, transform, device, shuffle=True, generator=gen)
        stats = train_epoch(model, it, opt, loss_fn, device, cfg.amp, total=steps, desc=f"{name} {epoch}/{cfg.epochs}")
        history.append(dict(epoch=epoch, loss=stats["loss"], acc=stats["acc"]))
        log.log("epoch", model=name, epoch=epoch, loss=stats["loss"], acc=stats["acc"],
                seconds=round(time.time() - started, 1))
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise PipelineError(f"{name} diverged (non-finite weights): lower --lr or pass --precision fp32")
    # units: images trained x 3 (forward + backward; common.unlearn), the unit of every unlearning budget
    return dict(seconds=round(time.time() - started, 3), units=3 * cfg.epochs * len(rows), history=history)


def main() -> None:
    cfg = parse_config(ViTRefsConfig)
    print_config(STAGE, cfg)
    check_config(cfg)
    device = resolve_runtime(cfg)
    started = time.time()
    data, splits = load_prepared(cfg.results)
    set_seed(cfg.seed)
    model = build_model(cfg.model, **model_args(cfg))  # fails here, before any write, when weights are missing
    init_state = copy.deepcopy(model.state_dict())
    if not cfg.pretrained:
        print(f"[{STAGE}] NOTE: {RANDOM_INIT_NOTE}", flush=True)

    out = stage_dir(cfg.results, STAGE)
    log = RunLog(out, STAGE, config_dict(cfg), cfg.wandb)
    on_device = {s: to_device(data[f"{s}_images"], data[f"{s}_labels"], device) for s in ("train", "test")}
    images, labels = on_device["train"]
    plan = {"original": (torch.arange(len(labels)), cfg.seed), "gold": (splits["retain"], cfg.seed)}
    if cfg.noise_gold:  # the noise floor: gold's recipe with another training seed (init draw and batch order)
        plan["gold_2"] = (splits["retain"], cfg.seed + GOLD_2_SEED_OFFSET)
    rows = {name: r for name, (r, _) in plan.items()}
    models = {}
    for name, (_, seed) in plan.items():
        if seed == cfg.seed:
            model.load_state_dict(init_state)  # identical starting weights for original and gold
        else:
            set_seed(seed)
            model = build_model(cfg.model, **model_args(cfg))
        model.to(device)
        result = train_reference(model, images, labels, rows[name], cfg, device, log, name, seed)
        logits = split_logits(model, on_device, cfg.eval_batch_size, vit_transform(cfg.img_size), device)
        save_checkpoint(out / f"{name}.pt", model, cfg.model, model_args(cfg), config_dict(cfg), trained_on=name)
        save_logits(logits_path(cfg.results, STAGE, name), logits["train"], logits["test"])
        result.update(n_train_rows=len(rows[name]),
                      acc_train=accuracy(logits["train"][rows[name]], data["train_labels"][rows[name]]),
                      acc_test=accuracy(logits["test"][splits["test_eval"]], data["test_labels"][splits["test_eval"]]))
        models[name] = result
        log.log("trained", model=name, seconds=result["seconds"], acc_train=result["acc_train"],
                acc_test=result["acc_test"])

    metrics = dict(models=models, profile=cfg.profile, device=device, model=cfg.model, pretrained=cfg.pretrained,
                   init="imagenet" if cfg.pretrained else "random", img_size=cfg.img_size, epochs=cfg.epochs,
                   lr=cfg.lr, batch_size=cfg.batch_size, precision=cfg.precision,
                   note="" if cfg.pretrained else RANDOM_INIT_NOTE)
    prep = stage_dir(cfg.results, "01_prepare_data")
    write_manifest(out, config_dict(cfg), device, started, [prep / "data.pt", prep / "splits.pt"],
                   [out / f"{n}.pt" for n in plan] + [logits_path(cfg.results, STAGE, n) for n in plan])
    log.close({f"{n}/acc_test": m["acc_test"] for n, m in models.items()})
    save_json(metrics, out / "metrics.json")


if __name__ == "__main__":
    run_main(main)
