"""Stage 05 - sample-wise unlearning of the ResNet-18 (reference B's scenario): every registered method.

The file name is the layout's; the stage runs every method of common/methods/ (one file each), reference B's GAN
(`gan_reference`, exactly as B's code ran it) and the project's GAN variant (`gan`) included, on the same footing
as stage 04: each starts from stage 02's `original` weights at its official settings, trains on the inputs the
original was trained with (augmentation and normalisation from its checkpoint), runs under the same counted
compute budget (`budget` x gold's training cost from 02, units of images forward + 2 x images backward) and is
evaluated by one fp32 forward pass over the sample-wise train rows and every test row, cached as logits. The
forget set is stage 01's `sample_forget` (= 02's first_batch.pt); `ctx.unseen` = stage 01's test_unseen rows (the
GANs' "real" pool; never scored, never an attack's non-member). --budgets adds the trade-off curve; in the paper
profile `gan_reference` also runs with no budget, as reference B ran it ("reproduction").

Reads   results/01_prepare_data/{data.pt, splits.pt}, results/02_train_resnet/{original.pt, gold.pt,
        first_batch.pt, logits/original.pt, logits/gold.pt, metrics.json}
Writes  results/05_unlearn_gan/
  <method>.pt, logits/<method>.pt     weights and {"train", "test"} float32 logits of each unlearned model
  manifest.json, log.jsonl, metrics.json (last): {"models": {name: acc_forget / acc_retain / acc_test (%), units,
  pct_of_gold, steps, epochs, cut, over_budget, seconds, settings, source, bn, diverged, history}, "curve",
  "reproduction", gold_units, budget_units, ...}; stale outputs of methods not run this time are removed.
Run
  python 05_unlearn_gan.py                                     (every method)
  python 05_unlearn_gan.py --profile smoke --results results-smoke/results --device cpu
  python 05_unlearn_gan.py --methods gan_reference,gan --gan-lambda-retain 0.3
  python 05_unlearn_gan.py --budgets 0.05,0.1,0.2,0.5,1        (the trade-off curve)
"""
from __future__ import annotations

import copy
import time

import torch

from common.config import ResNetUnlearnConfig, config_dict, parse_config, print_config, resolve_device
from common.data import load_prepared, resnet_transform, stage_dir, to_device
from common.io import (PipelineError, load_json, load_torch, remove_stale, run_main, save_checkpoint, save_json,
                       write_manifest)
from common.log import RunLog
from common.methods import METHODS
from common.metrics import (curve_figures, finite, load_logits, logits_path, samplewise_metrics, save_logits,
                            track_train_rows)
from common.models import RESNET, build_model, load_model
from common.seed import set_seed
from common.train import split_logits
from common.unlearn import Ctx, check_config, parse_budgets, reproduce, run_methods, with_method_settings

STAGE = "05_unlearn_gan"
TRAIN_STAGE = "02_train_resnet"
TRAIN_CMD = "python 02_train_resnet.py (or make all)"


def load_references(cfg: ResNetUnlearnConfig, data: dict, splits: dict, device: str):
    """02's original (as the model to unlearn), its training config, metrics and both references' logits."""
    d02 = stage_dir(cfg.results, TRAIN_STAGE)
    model, ckpt = load_model(d02 / "original.pt", device, TRAIN_CMD)
    first = load_torch(d02 / "first_batch.pt", "forget batch", TRAIN_CMD)
    if not torch.equal(first["indices"], splits["sample_forget"]):
        raise PipelineError(f"{d02 / 'first_batch.pt'} does not match stage 01's sample_forget: re-run {TRAIN_CMD}")
    refs = load_json(d02 / "metrics.json", "stage 02 metrics", TRAIN_CMD)
    if "gold" not in refs["models"]:
        raise PipelineError(f"stage 02 trained no gold model, so there is no budget or target: re-run {TRAIN_CMD} "
                            "with --train-gold true")
    logits = {n: load_logits(logits_path(cfg.results, TRAIN_STAGE, n), TRAIN_CMD, data) for n in ("original", "gold")}
    return model, ckpt, refs, logits


def main() -> None:
    cfg = parse_config(with_method_settings(ResNetUnlearnConfig, "resnet", METHODS))
    print_config(STAGE, cfg)
    names = check_config(cfg, METHODS)  # unknown methods or settings, bad values: one line, nothing written
    device = resolve_device(cfg.device)
    started = time.time()
    data, splits = load_prepared(cfg.results)
    model, ckpt, refs, ref_logits = load_references(cfg, data, splits, device)
    norm = ckpt["config"].get("norm", "cifar")
    augment = ckpt["config"].get("augment", True)  # the original's inputs: methods train on the same
    out = stage_dir(cfg.results, STAGE)
    (out / "metrics.json").unlink(missing_ok=True)  # a run that fails part-way leaves no "done" marker
    log = RunLog(out, STAGE, config_dict(cfg), cfg.wandb)
    set_seed(cfg.seed)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    on_device = {s: to_device(data[f"{s}_images"], data[f"{s}_labels"], device) for s in ("train", "test")}
    eval_tf = resnet_transform(False, cfg.channels_last, norm)
    unseen = splits["test_unseen"].to(device)  # the only test rows a method may see (never scored)
    ctx = Ctx(track="resnet", images=on_device["train"][0], labels=on_device["train"][1],
              forget=splits["sample_forget"], retain=splits["sample_retain"],
              unseen=(on_device["test"][0][unseen], on_device["test"][1][unseen]),
              teacher=copy.deepcopy(model).eval().requires_grad_(False),
              fresh_model=lambda: build_model(RESNET, **ckpt["model_args"]).to(device, memory_format=fmt),
              num_classes=ckpt["model_args"]["num_classes"],
              train_transform=resnet_transform(augment, cfg.channels_last, norm), eval_transform=eval_tf, cfg=cfg,
              device=device, gen=torch.Generator().manual_seed(cfg.seed))

    def save(name, model, logits):
        save_checkpoint(out / f"{name}.pt", model, RESNET, ckpt["model_args"], dict(config_dict(cfg), norm=norm),
                        method=name, unlearned_from=str(stage_dir(cfg.results, TRAIN_STAGE) / "original.pt"))
        save_logits(logits_path(cfg.results, STAGE, name), logits["train"], logits["test"])

    gold_units = refs["models"]["gold"]["units"]
    scored = track_train_rows("resnet", splits)  # train rows outside the sample-wise pool: NaN, never used

    def evaluate(m):
        return split_logits(m, on_device, cfg.eval_batch_size, eval_tf, device, rows={"train": scored})

    runs, curves = run_methods(names, METHODS, model, ctx, gold_units, evaluate, save, log,
                               budgets=parse_budgets(cfg.budgets),
                               curve_point=lambda lg: curve_figures("resnet", lg, data, splits))
    reproduction = reproduce(cfg, METHODS, model, ctx, gold_units, evaluate,
                             lambda lg: samplewise_metrics(lg, data, splits, ref_logits["gold"]), log)
    logits = dict(ref_logits, **{n: r.pop("logits") for n, r in runs.items()})
    models = {}
    for name in names:
        ok = finite(logits[name], scored)
        if not ok:
            print(f"[{STAGE}] WARNING: {name} produced non-finite logits (diverged): its figures are NaN")
        models[name] = dict(samplewise_metrics(logits[name], data, splits, ref_logits["gold"]), diverged=not ok, **runs[name])
        log.log("metrics", model=name, **{k: models[name][k] for k in ("acc_forget", "acc_retain", "acc_test")})

    metrics = dict(models=models, profile=cfg.profile, device=device, methods=names, budget=cfg.budget,
                   gold_units=gold_units, budget_units=cfg.budget * gold_units or None,
                   budgets=parse_budgets(cfg.budgets), curve=curves, reproduction=reproduction, bn=cfg.bn, norm=norm,
                   augment=augment, forget_size=len(splits["sample_forget"]),
                   units="accuracy %, compute in units (1 per image forward, 2 more per image backward), seconds "
                         "wall time of the unlearning steps (evaluation excluded; reported, never deciding)")
    d01, d02 = stage_dir(cfg.results, "01_prepare_data"), stage_dir(cfg.results, TRAIN_STAGE)
    outputs = [*(out / f"{n}.pt" for n in names), *(logits_path(cfg.results, STAGE, n) for n in names)]
    write_manifest(out, config_dict(cfg), device, started,
                   [d01 / "data.pt", d01 / "splits.pt", d02 / "original.pt", d02 / "first_batch.pt",
                    *(logits_path(cfg.results, TRAIN_STAGE, n) for n in ref_logits)], outputs)
    remove_stale(out, outputs)
    log.close({f"{n}/acc_forget": m["acc_forget"] for n, m in models.items()})
    save_json(metrics, out / "metrics.json")


if __name__ == "__main__":
    run_main(main)
