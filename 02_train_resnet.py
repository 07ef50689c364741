"""Stage 02 - train the CIFAR ResNet-18 `original` on all train images and `gold` on sample_retain only.

`original` is reference B's trained classifier (the model to unlearn from); `gold` is the same recipe from the
same initial weights on `sample_retain` only, i.e. a model that never saw the forget batch (`sample_forget`). Every
unlearning and attack figure of the ResNet track is compared with gold's.

Recipe (both models; airbench / one-cycle style, meant to beat reference B's 84.81 % test accuracy after 10
epochs on full CIFAR-10 in the `paper` profile):
  - ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool), `common.models.resnet18_cifar`;
  - SGD with Nesterov momentum 0.9, weight decay 5e-4, batch 128, label smoothing 0.1;
  - one-cycle LR stepped per batch (torch OneCycleLR, cosine both ways): from lr/25 up to `lr` over the first
    `pct_start` of the steps, then down to lr/2.5e5; momentum is held fixed rather than cycled;
  - augmentation on the device, batched: random crop 32 with 4 px zero padding + horizontal flip, CIFAR mean/std;
  - bf16 autocast and channels_last on CPU and CUDA (weights and optimiser state stay fp32).
Test accuracy is measured after every epoch (eval mode); the last epoch's test logits are the cached ones.

Reads   results/01_prepare_data/{data.pt, splits.pt, metrics.json}
Writes  results/02_train_resnet/
  original.pt, gold.pt     checkpoints (common.io.save_checkpoint; load with common.models.load_model)
  logits/original.pt, logits/gold.pt   eval-mode logits of every train and test row (common.metrics cache)
  first_batch.pt           reference B's hand-off: the forget batch {"images": uint8 [n,3,32,32], "labels",
                           "indices" (rows of data.pt's train tensors)}; load with torch.load(weights_only=True)
  manifest.json, log.jsonl, metrics.json (last): per model acc_forget / acc_retain / acc_test (%), seconds
  (training wall time incl. the per-epoch test pass, excl. the final logits) and history [{epoch, train_loss,
  train_acc, test_acc, lr (at the epoch's end), seconds (that epoch's training pass)}]
Run
  python 02_train_resnet.py                       (auto profile: paper on CUDA, else cpu)
  python 02_train_resnet.py --profile smoke --results results-smoke/results --device cpu
  python 02_train_resnet.py --epochs 5 --lr 0.2   (any ResNetConfig field)
"""
from __future__ import annotations

import time

import torch

from common.config import ResNetConfig, config_dict, parse_config, print_config, resolve_device
from common.data import PREPARE_CMD, PREPARE_STAGE, batches, load_prepared, num_batches, resnet_transform, stage_dir
from common.io import PipelineError, load_json, run_main, save_checkpoint, save_json, save_torch, write_manifest
from common.log import RunLog
from common.metrics import accuracy, logits_path, samplewise_metrics, save_logits
from common.models import RESNET, build_model
from common.seed import set_seed
from common.train import cross_entropy_loss, split_logits, train_epoch

STAGE = "02_train_resnet"
MODEL_ARGS = dict(num_classes=10)


def check_config(cfg: ResNetConfig) -> None:
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise PipelineError("epochs, batch_size and eval_batch_size must be >= 1: fix the --epochs / --*batch-size")
    if not 0 < cfg.pct_start < 1:
        raise PipelineError(f"pct_start {cfg.pct_start} must be in (0, 1): e.g. --pct-start 0.25")


def make_optimizer(model: torch.nn.Module, cfg: ResNetConfig, total_steps: int):
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=cfg.pct_start,
                                                anneal_strategy="cos", cycle_momentum=False)
    return opt, sched


def eval_logits(model, data: dict, split: str, cfg: ResNetConfig, device: str) -> torch.Tensor:
    """Eval-mode logits of every row of `split` (train / test), no augmentation, data.pt order."""
    xy = {split: (data[f"{split}_images"], data[f"{split}_labels"])}
    return split_logits(model, xy, cfg.eval_batch_size, resnet_transform(False, cfg.channels_last), device, cfg.amp)[split]


def train_model(name: str, rows: torch.Tensor, init_state: dict, data: dict, cfg: ResNetConfig, device: str,
                log: RunLog) -> tuple[torch.nn.Module, list, float, torch.Tensor]:
    """Train one model on the train rows `rows`; returns (model, history, seconds, last epoch's test logits)."""
    model = build_model(RESNET, **MODEL_ARGS)
    model.load_state_dict(init_state)  # original and gold start from the same weights
    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    steps = num_batches(len(rows), cfg.batch_size, drop_last=True)
    if steps < 1:
        raise PipelineError(f"{len(rows)} training rows give no full batch of {cfg.batch_size}: lower --batch-size")
    opt, sched = make_optimizer(model, cfg, cfg.epochs * steps)
    loss_fn = cross_entropy_loss(cfg.label_smoothing)
    torch.manual_seed(cfg.seed)  # same augmentation stream for both models
    order = torch.Generator().manual_seed(cfg.seed)  # same shuffling stream for both models
    train_x, train_y = data["train_images"], data["train_labels"]
    history, started = [], time.time()
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.time()
        it = batches(train_x, train_y, rows, cfg.batch_size, resnet_transform(True, cfg.channels_last), device,
                     shuffle=True, drop_last=True, generator=order)
        stats = train_epoch(model, it, opt, loss_fn, device, cfg.amp, steps, sched, desc=f"{name} {epoch}")
        seconds = time.time() - t0
        test = eval_logits(model, data, "test", cfg, device)
        row = dict(epoch=epoch, train_loss=stats["loss"], train_acc=stats["acc"],
                   test_acc=accuracy(test, data["test_labels"]), lr=sched.get_last_lr()[0], seconds=round(seconds, 2))
        history.append(row)
        log.log("epoch", model=name, **row)
    return model, history, round(time.time() - started, 2), test


def main() -> None:
    cfg = parse_config(ResNetConfig)
    print_config(STAGE, cfg)
    check_config(cfg)
    device = resolve_device(cfg.device)
    started = time.time()
    data, splits = load_prepared(cfg.results)
    prep = load_json(stage_dir(cfg.results, PREPARE_STAGE) / "metrics.json", "stage 01 metrics", PREPARE_CMD)
    out = stage_dir(cfg.results, STAGE)
    log = RunLog(out, STAGE, config_dict(cfg), cfg.wandb)

    set_seed(cfg.seed)
    init_state = {k: v.clone() for k, v in build_model(RESNET, **MODEL_ARGS).state_dict().items()}
    plan = {"original": torch.arange(len(data["train_labels"])), "gold": splits["sample_retain"]}
    if not cfg.train_gold:
        del plan["gold"]

    models, outputs = {}, []
    for name, rows in plan.items():
        log.log("start", model=name, n_rows=len(rows), epochs=cfg.epochs)
        model, history, seconds, test = train_model(name, rows, init_state, data, cfg, device, log)
        logits = {"train": eval_logits(model, data, "train", cfg, device), "test": test}
        save_checkpoint(out / f"{name}.pt", model, RESNET, MODEL_ARGS, config_dict(cfg), trained_on=name)
        save_logits(logits_path(cfg.results, STAGE, name), logits["train"], logits["test"])
        outputs += [out / f"{name}.pt", logits_path(cfg.results, STAGE, name)]
        models[name] = dict(samplewise_metrics(logits, data, splits), seconds=seconds, history=history)
        log.log("done", model=name, **{k: v for k, v in models[name].items() if k != "history"})

    forget = splits["sample_forget"]
    save_torch({"images": data["train_images"][forget].clone(), "labels": data["train_labels"][forget].clone(),
                "indices": forget.clone()}, out / "first_batch.pt")
    outputs.append(out / "first_batch.pt")
    metrics = dict(models=models, profile=cfg.profile, device=device, n_train=len(data["train_labels"]),
                   n_test=len(data["test_labels"]), forget_size=len(forget), data_source=prep.get("source"))
    d01 = stage_dir(cfg.results, PREPARE_STAGE)
    write_manifest(out, config_dict(cfg), device, started, [d01 / "data.pt", d01 / "splits.pt"], outputs)
    log.close({f"{m}/acc_test": v["acc_test"] for m, v in models.items()})
    save_json(metrics, out / "metrics.json")


if __name__ == "__main__":
    run_main(main)
