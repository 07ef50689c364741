"""Stage 05 - sample-wise unlearning of the ResNet-18 (reference B's scenario): every registered method.

The file name is the layout's; the stage runs every method of common/methods/ (one file each), reference B's GAN
(`gan_reference`, exactly as B's code ran it) and the project's GAN variant (`gan`) included, on the same footing
as stage 04: each starts from stage 02's `original` weights at its settings (tuned by `make tune` where the committed
entry in common/tuned/<profile>.json is current, else its official defaults; metrics "tuned"), trains on the inputs the
original was trained with (augmentation and normalisation from its checkpoint), runs under the same counted
compute budget (`budget` x gold's training cost from 02, units of images forward + 2 x images backward) and is
evaluated by one fp32 forward pass over the sample-wise train rows and every test row, cached as logits. The
forget set is stage 01's `sample_forget` (= 02's first_batch.pt); `ctx.unseen` = stage 01's test_unseen rows (the
GANs' "real" pool; never scored, never an attack's non-member). --budgets adds the trade-off curve; in the paper
profile `gan_reference` also runs with no budget, as reference B ran it ("reproduction").

Reads   results/01_prepare_data/{data.pt, splits.pt}, results/02_train_resnet/{original.pt, gold.pt,
        first_batch.pt, logits/original.pt, logits/gold.pt, metrics.json}, common/tuned/<profile>.json (if present)
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
  python 05_unlearn_gan.py --settings official             (official defaults, ignoring common/tuned/)
"""
from __future__ import annotations

import time

from common.config import ResNetUnlearnConfig, config_dict, parse_config, print_config, resolve_runtime
from common.data import PREPARE_CMD as PREP_CMD, load_prepared, stage_dir
from common.io import load_json, remove_stale, run_main, save_checkpoint, save_json, write_manifest
from common.log import RunLog
from common.methods import methods_for, not_on
from common.metrics import (curve_figures, finite, load_logits, logits_path, samplewise_metrics, save_logits,
                            track_train_rows)
from common.models import RESNET
from common.seed import set_seed
from common.train import split_logits
from common.tracks import load_track
from common.unlearn import apply_tuned, check_config, parse_budgets, reproduce, run_methods, with_method_settings

STAGE = "05_unlearn_gan"
TRAIN_STAGE = "02_train_resnet"
TRAIN_CMD = "python 02_train_resnet.py (or make all)"

METHODS = methods_for("resnet")  # this track's registry (a method may be written for one track only)


def main() -> None:
    cfg = parse_config(with_method_settings(ResNetUnlearnConfig, "resnet", METHODS))
    print_config(STAGE, cfg)
    names = check_config(cfg, METHODS)  # unknown methods or settings, bad values: one line, nothing written
    device = resolve_runtime(cfg)
    started = time.time()
    data, splits = load_prepared(cfg.results)
    t = load_track("resnet", cfg, device, data, splits)  # 02's original, the methods' Ctx (common.tracks)
    model, ckpt, refs, ctx, eval_tf, on_device, norm = t.model, t.ckpt, t.refs, t.ctx, t.eval_transform, t.on_device, t.norm
    ref_logits = {n: load_logits(logits_path(cfg.results, TRAIN_STAGE, n), TRAIN_CMD, data) for n in ("original", "gold")}
    prep = load_json(stage_dir(cfg.results, "01_prepare_data") / "metrics.json", "stage 01 metrics", PREP_CMD)
    provenance = apply_tuned(cfg, "resnet", METHODS, prep, splits)  # tuned or official settings, per method
    out = stage_dir(cfg.results, STAGE)
    (out / "metrics.json").unlink(missing_ok=True)  # a run that fails part-way leaves no "done" marker
    log = RunLog(out, STAGE, config_dict(cfg), cfg.wandb)
    set_seed(cfg.seed)

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
        models[name] = dict(samplewise_metrics(logits[name], data, splits, ref_logits["gold"]), diverged=not ok,
                            settings_from=provenance[name]["status"], **runs[name])
        log.log("metrics", model=name, **{k: models[name][k] for k in ("acc_forget", "acc_retain", "acc_test")})

    metrics = dict(models=models, profile=cfg.profile, device=device, methods=names, not_applicable=not_on("resnet"), budget=cfg.budget,
                   gold_units=gold_units, budget_units=cfg.budget * gold_units or None,
                   budgets=parse_budgets(cfg.budgets), curve=curves, reproduction=reproduction, bn=cfg.bn, norm=norm,
                   augment=t.augment, forget_size=len(splits["sample_forget"]), settings=cfg.settings,
                   tuned=provenance,
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
