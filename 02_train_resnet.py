"""Stage 02 - train the CIFAR ResNet-18 `original` on the sample-wise rows and `gold` on sample_retain only.

`original` is reference B's trained classifier (the model to unlearn from), trained on sample_forget +
sample_retain (every train row, or --sample-per-class of them); `gold` is the same recipe from the same initial
weights on `sample_retain` only, i.e. a model that never saw the forget set (`sample_forget`). Every unlearning and
attack figure of the ResNet track is compared with gold's. `gold_2` (--noise-gold true) is gold's recipe with
training seed + 10000 (common.seed.GOLD_2_SEED_OFFSET): the gap between gold and gold_2 on every figure is
what SGD noise alone produces (stage 07: the noise floor with one seed, the calibration of its equivalence test).

Recipe (both models, the same initial weights, the same batch order and augmentation stream):
  - ResNet-18 with the CIFAR stem (3x3 stride-1 conv, no max-pool), `common.models.resnet18_cifar`;
  - `paper` profile = reference B's code: Adam lr 1e-3 (default betas), batch 64, 10 epochs, no weight decay, no
    label smoothing, constant lr, B's normalisation constants (std 0.2023, 0.1994, 0.2010), random crop 32 with
    4 px padding + horizontal flip;
  - `cpu` profile = the project's memorising recipe, because 2 CPU cores cannot afford B's 10 Adam epochs (B's own
    code took 1,015 s per model for 66.0 % on the real subset): 200 rows per class, SGD with Nesterov momentum 0.9,
    weight decay 5e-4, no label smoothing, no augmentation, one-cycle lr (torch OneCycleLR, cosine both ways, per
    batch) peaking at 0.05, 8 epochs, the true CIFAR std (the measured sweep is in common/config.py);
  - augmentation on the device, batched; channels_last, and training steps in --precision (auto: bf16 autocast
    where the hardware computes bf16 natively, else fp32; weights and optimiser state fp32); evaluation in fp32.
Accuracy on the test_val rows is measured after every epoch (eval mode; the reported test_eval rows are scored
once, from the final cached logits). `seconds` counts the training passes only (not the per-epoch evaluation), as
every RTE figure does; `units` = images trained x 3 (forward + backward, common.unlearn): gold's is the unit of
every unlearning budget.

Reads   results/01_prepare_data/{data.pt, splits.pt, metrics.json}
Writes  results/02_train_resnet/
  original.pt, gold.pt     checkpoints (common.io.save_checkpoint; load with common.models.load_model)
  logits/<model>.pt        eval-mode fp32 logits of every test row and of the sample-wise train rows (NaN in train
                           rows outside the --sample-per-class pool: never used) (common.metrics cache)
  first_batch.pt           reference B's hand-off: the forget batch {"images": uint8 [n,3,32,32], "labels",
                           "indices" (rows of data.pt's train tensors)}; load with torch.load(weights_only=True)
  manifest.json, log.jsonl, metrics.json (last): per model acc_forget / acc_retain / acc_test (%), units, seconds
  (training passes only) and history [{epoch, train_loss, train_acc, val_acc, lr (at the epoch's end), seconds
  (that epoch's training pass)}]
Run
  python 02_train_resnet.py                       (auto profile: paper on CUDA, else cpu)
  python 02_train_resnet.py --profile smoke --results results-smoke/results --device cpu
  python 02_train_resnet.py --epochs 5 --lr 0.2   (any ResNetConfig field)
  python 02_train_resnet.py --profile paper --device cpu   (reference B's recipe on any device)
"""
from __future__ import annotations

import time

import torch

from common.config import ResNetConfig, config_dict, parse_config, print_config, resolve_runtime
from common.data import PREPARE_CMD, PREPARE_STAGE, batches, load_prepared, num_batches, resnet_transform, stage_dir
from common.io import PipelineError, load_json, run_main, save_checkpoint, save_json, save_torch, write_manifest
from common.log import RunLog
from common.metrics import accuracy, logits_path, samplewise_metrics, save_logits, track_train_rows
from common.models import RESNET, build_model
from common.seed import GOLD_2_SEED_OFFSET, set_seed
from common.train import cross_entropy_loss, split_logits, train_epoch

STAGE = "02_train_resnet"


def check_config(cfg: ResNetConfig) -> None:
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise PipelineError("epochs, batch_size and eval_batch_size must be >= 1: fix the --epochs / --*batch-size")
    if not 0 < cfg.pct_start < 1:
        raise PipelineError(f"pct_start {cfg.pct_start} must be in (0, 1): e.g. --pct-start 0.25")
    if cfg.optimizer not in ("adam", "sgd") or cfg.schedule not in ("none", "onecycle"):
        raise PipelineError(f"--optimizer {cfg.optimizer} / --schedule {cfg.schedule}: use adam|sgd and none|onecycle")


def make_optimizer(model: torch.nn.Module, cfg: ResNetConfig, total_steps: int):
    if cfg.optimizer == "adam":  # reference B: torch's default betas (0.9, 0.999)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                              weight_decay=cfg.weight_decay)
    if cfg.schedule == "none":  # reference B: constant lr
        return opt, None
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=cfg.pct_start,
                                                anneal_strategy="cos", cycle_momentum=False)
    return opt, sched


def eval_logits(model, data: dict, split: str, cfg: ResNetConfig, device: str, rows=None) -> torch.Tensor:
    """Eval-mode fp32 logits of `split` (train / test) in data.pt order, no augmentation; with `rows`, only those
    rows are evaluated (NaN elsewhere)."""
    xy = {split: (data[f"{split}_images"], data[f"{split}_labels"])}
    return split_logits(model, xy, cfg.eval_batch_size, resnet_transform(False, cfg.channels_last, cfg.norm),
                        device, rows={split: rows} if rows is not None else None)[split]


def model_args(cfg: ResNetConfig) -> dict:
    return dict(num_classes=10, width=cfg.width)


def train_model(name: str, rows: torch.Tensor, seed: int, data: dict, splits: dict, cfg: ResNetConfig,
                device: str, log: RunLog) -> tuple[torch.nn.Module, list, float, torch.Tensor]:
    """Train one model on the train rows `rows` with the training seed `seed` (initial weights, batch order and
    augmentation stream); returns (model, history, seconds of the training passes, units = images trained x 3)."""
    torch.manual_seed(seed)
    model = build_model(RESNET, **model_args(cfg))  # original and gold: the same seed, so the same initial weights
    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    steps = num_batches(len(rows), cfg.batch_size, drop_last=True)
    if steps < 1:
        raise PipelineError(f"{len(rows)} training rows give no full batch of {cfg.batch_size}: lower --batch-size")
    if cfg.schedule == "onecycle" and cfg.epochs * steps * cfg.pct_start <= 1:  # torch's warm-up phase would be empty
        raise PipelineError(f"{cfg.epochs * steps} one-cycle steps are too few for --pct-start {cfg.pct_start}: lower "
                            "--batch-size or raise --epochs")
    opt, sched = make_optimizer(model, cfg, cfg.epochs * steps)
    loss_fn = cross_entropy_loss(cfg.label_smoothing)
    torch.manual_seed(seed)  # same augmentation stream for original and gold
    order = torch.Generator().manual_seed(seed)  # same shuffling stream for original and gold
    train_x, train_y = data["train_images"], data["train_labels"]
    history, train_seconds = [], 0.0
    transform = resnet_transform(cfg.augment, cfg.channels_last, cfg.norm)
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.time()
        it = batches(train_x, train_y, rows, cfg.batch_size, transform, device, shuffle=True, drop_last=True,
                     generator=order)
        stats = train_epoch(model, it, opt, loss_fn, device, cfg.amp, steps, sched, desc=f"{name} {epoch}")
        seconds = time.time() - t0
        train_seconds += seconds
        val = splits["test_val"]  # per-epoch progress on validation rows only (cheap; never the reported rows)
        val_logits = split_logits(model, {"val": (data["test_images"][val], data["test_labels"][val])},
                                  cfg.eval_batch_size, resnet_transform(False, cfg.channels_last, cfg.norm), device)["val"]
        row = dict(epoch=epoch, train_loss=stats["loss"], train_acc=stats["acc"],
                   val_acc=accuracy(val_logits, data["test_labels"][val]), lr=opt.param_groups[0]["lr"],
                   seconds=round(seconds, 2))
        history.append(row)
        log.log("epoch", model=name, **row)
    return model, history, round(train_seconds, 2), 3 * cfg.epochs * steps * cfg.batch_size  # drop_last batches


def main() -> None:
    cfg = parse_config(ResNetConfig)
    print_config(STAGE, cfg)
    check_config(cfg)
    device = resolve_runtime(cfg)
    started = time.time()
    data, splits = load_prepared(cfg.results)
    prep = load_json(stage_dir(cfg.results, PREPARE_STAGE) / "metrics.json", "stage 01 metrics", PREPARE_CMD)
    out = stage_dir(cfg.results, STAGE)
    log = RunLog(out, STAGE, config_dict(cfg), cfg.wandb)

    set_seed(cfg.seed)
    rows_all = track_train_rows("resnet", splits)  # the sample-wise rows (all train rows unless capped per class)
    plan = {"original": (rows_all, cfg.seed), "gold": (splits["sample_retain"], cfg.seed),
            "gold_2": (splits["sample_retain"], cfg.seed + GOLD_2_SEED_OFFSET)}  # gold_2: the same recipe, another training seed
    if not cfg.train_gold:
        del plan["gold"]
    if not (cfg.train_gold and cfg.noise_gold):
        del plan["gold_2"]

    models, outputs, logits = {}, [], {}
    for name, (rows, seed) in plan.items():
        log.log("start", model=name, n_rows=len(rows), epochs=cfg.epochs, seed=seed)
        model, history, seconds, units = train_model(name, rows, seed, data, splits, cfg, device, log)
        logits[name] = {"train": eval_logits(model, data, "train", cfg, device, rows=rows_all),  # NaN off the pool
                        "test": eval_logits(model, data, "test", cfg, device)}
        save_checkpoint(out / f"{name}.pt", model, RESNET, model_args(cfg), config_dict(cfg), trained_on=name)
        save_logits(logits_path(cfg.results, STAGE, name), logits[name]["train"], logits[name]["test"])
        outputs += [out / f"{name}.pt", logits_path(cfg.results, STAGE, name)]
        models[name] = dict(seconds=seconds, units=units, history=history)
    for name in plan:  # every accuracy with its interval, and (with gold) the interval of its gap to gold
        models[name].update(samplewise_metrics(logits[name], data, splits, logits.get("gold")))
        log.log("done", model=name, **{k: v for k, v in models[name].items() if k.startswith("acc_") and "ci" not in k},
                seconds=models[name]["seconds"])

    forget = splits["sample_forget"]
    save_torch({"images": data["train_images"][forget].clone(), "labels": data["train_labels"][forget].clone(),
                "indices": forget.clone()}, out / "first_batch.pt")
    outputs.append(out / "first_batch.pt")
    metrics = dict(models=models, profile=cfg.profile, device=device, norm=cfg.norm, optimizer=cfg.optimizer,
                   schedule=cfg.schedule, n_train=len(data["train_labels"]),
                   n_test=len(data["test_labels"]), forget_size=len(forget), data_source=prep.get("source"))
    d01 = stage_dir(cfg.results, PREPARE_STAGE)
    write_manifest(out, config_dict(cfg), device, started, [d01 / "data.pt", d01 / "splits.pt"], outputs)
    log.close({f"{m}/acc_test": v["acc_test"] for m, v in models.items()})
    save_json(metrics, out / "metrics.json")


if __name__ == "__main__":
    run_main(main)
