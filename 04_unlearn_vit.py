"""Stage 04 - class-wise unlearning of the ViT (reference A's scenario): every registered method, same footing.

Every method of common/methods/ (one file each: the references' fine-tune, gradient ascent, 2-stage and GAN, and the
literature's methods) starts from 03's `original` weights at its settings (tuned by `make tune` where the committed
entry in common/tuned/<profile>.json is current, else its official defaults: common.unlearn.apply_tuned; metrics
"tuned" says which, per method), trains on the inputs the
original was trained with, runs under the same counted compute budget (`budget` x gold's training cost from 03, in
units of images forward + 2 x images backward, common.unlearn) and is evaluated by one forward pass over every
train and test row, cached as logits. Figures come from cached logits (common.metrics.classwise_metrics; JS to
gold's logits, natural log as reference A). The forget set is the whole forget class; `ctx.unseen` = stage 01's
test_unseen rows. t-SNE of pooled pre-logit features of one seeded sample of retain + forget train images. A
method's t-SNE and probe features come from the same evaluation pass as its logits (common.train.split_logits).
Past the head (common.probes, every model incl. original and gold): relearn time (forget-class test_eval accuracy
after the same short fine-tune on forget-class train rows) and a linear probe of the forget class on pre-logit
features (fitted on test_unseen + test_val, AUC on test_eval); evaluation cost, outside every budget.
With --budgets, every method is also evaluated at each budget fraction (the trade-off curve, metrics "curve").
In the paper profile the references' methods also run with no budget, as reference A ran them ("reproduction").

Reads   results/01_prepare_data/{data.pt, splits.pt, metrics.json}, results/03_train_vit_refs/{original.pt,
        gold.pt, logits/original.pt, logits/gold.pt, metrics.json}, common/tuned/<profile>.json (if present)
Writes  results/04_unlearn_vit/
  <method>.pt          the unlearned weights (common.io.save_checkpoint; load with common.models.load_model)
  logits/<method>.pt   {"train", "test"} float32 logits (data.pt row order)
  tsne.png             one t-SNE panel per model (original, gold, each method), forget vs retain
  manifest.json, log.jsonl, metrics.json (last): {"models": {name: metrics, units, pct_of_gold, steps, epochs, cut,
  over_budget, seconds, settings, source, bn, diverged, relearn_acc (+ _ci, _gap_ci), relearn_curve,
  probe_auc (+ _ci)}, "curve", "reproduction", gold_units, budget_units, ...}
  Outputs of methods not run this time are removed (no stale rows downstream).
Run
  python 04_unlearn_vit.py                                   (auto profile; after 03)
  python 04_unlearn_vit.py --profile smoke --results results-smoke
  python 04_unlearn_vit.py --methods finetune,two_stage      (a subset of METHODS; default all)
  python 04_unlearn_vit.py --finetune-lr 1e-3 --scrub-msteps 1   (any method setting: --help lists them)
  python 04_unlearn_vit.py --budgets 0.05,0.1,0.2,0.5,1      (the trade-off curve)
  python 04_unlearn_vit.py --settings official            (official defaults, ignoring common/tuned/)
"""
from __future__ import annotations

import time

import torch

from common.config import ViTUnlearnConfig, config_dict, parse_config, print_config, resolve_runtime
from common.data import batches, load_prepared, stage_dir
from common.io import load_json, remove_stale, run_main, save_checkpoint, save_figure, save_json, write_manifest
from common.log import RunLog
from common.methods import methods_for, not_on
from common.metrics import (classwise_metrics, curve_figures, finite, load_logits, logits_path,
                            save_logits)
from common.models import load_model
from common.probes import linear_probe, relearn, relearn_figures, relearn_plan
from common.seed import set_seed
from common.train import predict, split_logits
from common.tracks import load_track
from common.unlearn import apply_tuned, check_config, parse_budgets, reproduce, run_methods, with_method_settings

STAGE, REFS = "04_unlearn_vit", "03_train_vit_refs"
MAKE_REFS = "python 03_train_vit_refs.py"


def tsne_sample(splits: dict, n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """A fixed seeded sample of up to n retain and n forget train rows (the same for every model)."""
    gen = torch.Generator().manual_seed(seed)
    f = splits["forget"][torch.randperm(len(splits["forget"]), generator=gen)[:n]]
    r = splits["retain"][torch.randperm(len(splits["retain"]), generator=gen)[:n]]
    return torch.cat([r, f]), ["retain"] * len(r) + ["forget"] * len(f)


def tsne_embed(features: torch.Tensor, seed: int):
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(features) - 1) / 3)  # sklearn needs perplexity < n_samples
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features.numpy())


def tsne_figure(embeddings: dict, groups: list[str], metrics: dict, forget_name: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    cols = min(len(embeddings), 6)
    rows = -(-len(embeddings) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(embeddings):]:
        ax.set_visible(False)
    for ax, (name, xy) in zip(axes.flat, embeddings.items()):
        sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=groups, hue_order=["retain", "forget"], s=8, linewidth=0,
                        alpha=0.7, palette={"retain": "grey", "forget": "tab:red"}, ax=ax, legend=ax is axes[0][0])
        ax.set_title(f"{name}\nforget-train acc {metrics[name]['acc_forget_train']:.1f} %", fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    axes[0][0].legend(title=f"forget = {forget_name}", fontsize=8, title_fontsize=8, loc="best")
    fig.suptitle("t-SNE of pooled pre-logit ViT features, train images (one seeded sample for every model)")
    fig.tight_layout()
    return fig


def past_head_figures(checks: dict, name: str, seed: int) -> dict:
    """relearn_acc (+ interval, + paired gap interval to gold's), relearn_curve, probe_auc (+ interval) of one
    model (common.probes)."""
    c, gold = checks[name], checks["gold"]
    return dict(relearn_figures(c["right"], gold["right"] if name != "gold" else None, seed),
                relearn_curve=c["curve"], **{k: v for k, v in c.items() if k.startswith("probe_")})

METHODS = methods_for("vit")  # this track's registry (a method may be written for one track only)


def main() -> None:
    cfg = parse_config(with_method_settings(ViTUnlearnConfig, "vit", METHODS))
    print_config(STAGE, cfg)
    names = check_config(cfg, METHODS)  # unknown methods or settings, bad values: one line, nothing written
    device = resolve_runtime(cfg)
    started = time.time()
    data, splits = load_prepared(cfg.results)
    prep = load_json(stage_dir(cfg.results, "01_prepare_data") / "metrics.json", "stage 01 metrics", "python 01_prepare_data.py")
    refs_dir = stage_dir(cfg.results, REFS)
    ref_names = [n for n in ("original", "gold", "gold_2") if n != "gold_2" or logits_path(cfg.results, REFS, n).is_file()]
    ref_logits = {n: load_logits(logits_path(cfg.results, REFS, n), MAKE_REFS, data) for n in ref_names}
    t = load_track("vit", cfg, device, data, splits)  # 03's original, the methods' Ctx (common.tracks)
    model, ckpt, refs, ctx, transform, on_device = t.model, t.ckpt, t.refs, t.ctx, t.eval_transform, t.on_device
    img_size = ckpt["model_args"]["img_size"]
    provenance = apply_tuned(cfg, "vit", METHODS, prep, splits)  # tuned or official settings, per method
    if not refs["pretrained"]:
        print(f"[{STAGE}] NOTE: the ViT was randomly initialised in {REFS} (pretrained false)", flush=True)

    out = stage_dir(cfg.results, STAGE)
    (out / "metrics.json").unlink(missing_ok=True)  # a run that fails part-way leaves no "done" marker
    log = RunLog(out, STAGE, config_dict(cfg), cfg.wandb)
    set_seed(cfg.seed)
    sample, groups = tsne_sample(splits, cfg.tsne_per_group, cfg.seed)
    xs, ys = on_device["train"][0][sample.to(on_device["train"][0].device)], data["train_labels"][sample].to(device)

    def features(model) -> torch.Tensor:
        return predict(model, batches(xs, ys, None, cfg.eval_batch_size, transform, device), device, desc="features",
                       features=True)

    # past the head (common.probes): relearn time on forget-class test_eval rows, linear probe on pre-logit features
    test_x, test_y = on_device["test"]
    dev_rows = {k: splits[k].to(test_x.device) for k in ("test_forget", "test_unseen", "test_val", "test_eval")}
    forget_x, forget_y = test_x[dev_rows["test_forget"]], test_y[dev_rows["test_forget"]]
    plan = relearn_plan(splits["forget"], splits["retain"], cfg.relearn_rows, cfg.relearn_retain_ratio,
                        cfg.relearn_steps, cfg.relearn_batch_size, cfg.seed)
    relearn_lr = cfg.relearn_lr or refs["lr"]
    fit_rows = torch.cat([dev_rows["test_unseen"], dev_rows["test_val"]])
    is_forget = {k: (test_y[r] == prep["forget_class"]).cpu().numpy().astype(int)
                 for k, r in (("fit", fit_rows), ("eval", dev_rows["test_eval"]))}
    checks = {}

    def past_head(name, m, test_features=None):
        curve, right = relearn(m, *on_device["train"], plan, forget_x, forget_y, relearn_lr, cfg.relearn_every,
                               ctx.train_transform, device, cfg.amp)
        probe_rows = (("fit", fit_rows), ("eval", dev_rows["test_eval"]))
        if test_features is not None:  # from the evaluation pass that made the model's logits
            f = {k: test_features[r.cpu()] for k, r in probe_rows}
        else:
            f = {k: predict(m, batches(test_x, test_y, r, cfg.eval_batch_size, transform, device), device,
                            desc="probe features", features=True) for k, r in probe_rows}
        probe = (linear_probe(f["fit"].numpy(), is_forget["fit"], f["eval"].numpy(), is_forget["eval"], cfg.seed)
                 if all(torch.isfinite(v).all() for v in f.values()) else {"probe_auc": float("nan")})
        checks[name] = dict(curve=curve, right=right, **probe)

    feats = {"original": features(model)}
    past_head("original", model)
    for name in ref_names[1:]:  # gold (and gold_2)
        ref_model = load_model(refs_dir / f"{name}.pt", device, MAKE_REFS)[0]
        if name == "gold":
            feats["gold"] = features(ref_model)
        past_head(name, ref_model)

    last = {}  # the pre-logit features of the last evaluation pass, for the logits it returned

    def evaluate(m):
        split_features = {}
        logits = split_logits(m, on_device, cfg.eval_batch_size, transform, device, features=split_features)
        last.update(logits=logits, features=split_features)
        return logits

    def save(name, model, logits):
        save_checkpoint(out / f"{name}.pt", model, ckpt["model_name"], ckpt["model_args"], config_dict(cfg),
                        method=name, unlearned_from=str(refs_dir / "original.pt"))
        save_logits(logits_path(cfg.results, STAGE, name), logits["train"], logits["test"])
        if last.get("logits") is logits:  # one forward per model and split: t-SNE and probe reuse that pass
            feats[name] = last["features"]["train"][sample]
            past_head(name, model, last["features"]["test"])
        else:
            feats[name] = features(model)
            past_head(name, model)

    gold_units = refs["models"]["gold"]["units"]

    curve_point = lambda lg: curve_figures("vit", lg, data, splits)  # noqa: E731
    runs, curves = run_methods(names, METHODS, model, ctx, gold_units, evaluate, save, log,
                               budgets=parse_budgets(cfg.budgets), curve_point=curve_point)
    reproduction = reproduce(cfg, METHODS, model, ctx, gold_units, evaluate,
                             lambda lg: classwise_metrics(lg, data, splits, gold=ref_logits["gold"]), log)
    logits = dict(ref_logits, **{n: r.pop("logits") for n, r in runs.items()})
    models = {}
    for name in (*ref_names, *names):
        m = classwise_metrics(logits[name], data, splits, gold=logits["gold"])
        ok = finite(logits[name])
        if not ok:
            print(f"[{STAGE}] WARNING: {name} produced non-finite logits (diverged): its figures are NaN")
        extra = dict(runs[name], settings_from=provenance[name]["status"]) if name in runs else \
            {k: refs["models"][name][k] for k in ("seconds", "units")}
        models[name] = dict(m, diverged=not ok, **extra, **past_head_figures(checks, name, cfg.seed))
        log.log("metrics", model=name, **{k: round(v, 4) for k, v in m.items() if not isinstance(v, list)})
    embeddings = {name: tsne_embed(f, cfg.seed) for name, f in feats.items() if torch.isfinite(f).all()}
    save_figure(tsne_figure(embeddings, groups, models, prep["forget_class_name"]), out / "tsne.png")

    metrics = dict(models=models, profile=cfg.profile, device=device, pretrained=refs["pretrained"], img_size=img_size,
                   forget_class=prep["forget_class"], forget_class_name=prep["forget_class_name"],
                   data_source=prep["source"], n_train=prep["n_train"], n_test=prep["n_test"], methods=names, not_applicable=not_on("vit"),
                   budget=cfg.budget, gold_units=gold_units, budget_units=cfg.budget * gold_units or None,
                   budgets=parse_budgets(cfg.budgets), curve=curves, reproduction=reproduction, bn=cfg.bn,
                   settings=cfg.settings, tuned=provenance, tsne_png="tsne.png", tsne_per_group=cfg.tsne_per_group,
                   units="accuracy %, entropy nats, JS distance natural log (scipy default, reference A) in [0, 0.833], "
                         "compute in units (1 per image forward, 2 more per image backward), seconds wall time of "
                         "the unlearning steps (evaluation excluded; reported, never deciding)")
    prep_dir = stage_dir(cfg.results, "01_prepare_data")
    outputs = [out / "tsne.png", *(out / f"{n}.pt" for n in names), *(logits_path(cfg.results, STAGE, n) for n in names)]
    write_manifest(out, config_dict(cfg), device, started,
                   [prep_dir / "data.pt", prep_dir / "splits.pt", refs_dir / "original.pt", refs_dir / "gold.pt",
                    *(logits_path(cfg.results, REFS, n) for n in ref_logits)], outputs)
    remove_stale(out, outputs)
    log.close({f"{n}/acc_forget_train": m["acc_forget_train"] for n, m in models.items()})
    save_json(metrics, out / "metrics.json")


if __name__ == "__main__":
    run_main(main)
