"""Stage 04 - class-wise unlearning of the ViT (reference A): every method starts from 03's `original`.

Methods (METHODS below: name -> function(model, ctx) -> history; adding a method = one function + one line):
  finetune         cross-entropy on retain only, cfg.epochs passes over retain
  gradient_ascent  maximise cross-entropy on forget (minimise its negative), cfg.epochs passes over forget
  two_stage        stage 1: one pass over forget minimising KL(u || p(.|x_f)), u uniform over the 10 classes;
                   stage 2: cfg.epochs passes over forget; each step pairs a forget batch with a retain batch and
                   minimises l_con(Z_f, Z_r) + CE(retain) (see contrastive_loss for how the formula is read)
Evaluation: one forward pass per unlearned model over all train and test rows, cached as logits; original and gold
re-use 03's cached logits. Every number comes from cached logits via common.metrics.classwise_metrics (JS to
gold's logits). t-SNE of pooled pre-logit features of a fixed seeded sample of retain + forget train images, one
panel per model.

Reads   results/01_prepare_data/{data.pt, splits.pt, metrics.json}, results/03_train_vit_refs/{original.pt,
        gold.pt, logits/original.pt, logits/gold.pt, metrics.json}
Writes  results/04_unlearn_vit/
  <method>.pt          the unlearned weights (common.io.save_checkpoint; load with common.models.load_model)
  logits/<method>.pt   {"train", "test"} float32 logits (data.pt row order)
  tsne.png             one t-SNE panel per model (original, gold, each method), forget vs retain
  manifest.json, log.jsonl, metrics.json (last): {"models": {name: metrics + seconds}, profile, device, ...}
Run
  python 04_unlearn_vit.py                                   (auto profile; after 03)
  python 04_unlearn_vit.py --profile smoke --results results-smoke
  python 04_unlearn_vit.py --methods finetune,two_stage      (a subset of METHODS)
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from common.config import ViTUnlearnConfig, config_dict, parse_config, print_config, resolve_device
from common.data import batches, load_prepared, num_batches, stage_dir, to_device, vit_transform
from common.io import PipelineError, load_json, run_main, save_checkpoint, save_figure, save_json, write_manifest
from common.log import RunLog
from common.metrics import classwise_metrics, load_logits, logits_path, save_logits
from common.models import autocast, load_model
from common.seed import set_seed
from common.train import cross_entropy_loss, predict, split_logits, train_epoch

STAGE, REFS = "04_unlearn_vit", "03_train_vit_refs"
MAKE_REFS = "python 03_train_vit_refs.py"


@dataclass
class Ctx:
    """What an unlearning method needs: train images/labels (uint8, on the device), the class-wise index splits,
    the config, the input transform and a seeded generator for shuffling."""
    images: torch.Tensor
    labels: torch.Tensor
    forget: torch.Tensor
    retain: torch.Tensor
    cfg: ViTUnlearnConfig
    device: str
    transform: Callable
    gen: torch.Generator

    def loader(self, rows: torch.Tensor):
        return batches(self.images, self.labels, rows, self.cfg.batch_size, self.transform, self.device,
                       shuffle=True, generator=self.gen)

    def steps(self, rows: torch.Tensor) -> int:
        return num_batches(len(rows), self.cfg.batch_size)

    def sgd(self, model) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=self.cfg.lr, momentum=self.cfg.momentum)


# ---------------------------------------------------------------------------------------------------- losses
def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(u || softmax(logits)), u uniform over the classes (nats; 0 iff the output is uniform)."""
    logp = torch.log_softmax(logits.float(), dim=1)
    u = torch.full_like(logp, 1.0 / logp.shape[1])
    return F.kl_div(logp, u, reduction="batchmean")  # sum_c u_c (log u_c - log p_c), averaged over rows


def contrastive_loss(z_f: torch.Tensor, z_r: torch.Tensor) -> torch.Tensor:
    """l_con(Z_f, Z_r) = (1/m) sum_i -log softmax(Z_f Z_r^T)_{i,:}, read literally:
    S = Z_f Z_r^T is [m_forget, m_retain] (dot products of forget and retain logit rows); the softmax runs over
    each row i (over the retain samples j); "-log softmax(S)_{i,:}" is a row of m_retain values, which is averaged
    over the row (mean over j), then the mean over the m forget rows is taken. So the loss is
    mean_i mean_j [logsumexp_k S_ik - S_ij] >= log m_retain, with equality when every forget row is equally similar
    to every retain row in the batch: it removes any preference of a forget output for particular retain outputs
    (it does not by itself maximise a distance). Computed in float32 (dot products of logits overflow bf16)."""
    s = z_f.float() @ z_r.float().T
    return -torch.log_softmax(s, dim=1).mean()


# ---------------------------------------------------------------------------------------------------- methods
def epochs_of(model, ctx: Ctx, rows: torch.Tensor, loss_fn: Callable, name: str) -> list[dict]:
    """cfg.epochs passes of `loss_fn(model, x, y) -> (loss, logits)` over `rows` with one SGD optimiser."""
    opt, history = ctx.sgd(model), []
    for epoch in range(1, ctx.cfg.epochs + 1):
        stats = train_epoch(model, ctx.loader(rows), opt, loss_fn, ctx.device, ctx.cfg.amp, total=ctx.steps(rows),
                            desc=f"{name} {epoch}")
        history.append(dict(epoch=epoch, **stats))
    return history


def finetune(model, ctx: Ctx) -> list[dict]:
    """Cross-entropy on retain only, cfg.epochs passes."""
    return epochs_of(model, ctx, ctx.retain, cross_entropy_loss(), "finetune")


def gradient_ascent(model, ctx: Ctx) -> list[dict]:
    """Maximise cross-entropy on forget (minimise -CE), cfg.epochs passes; `loss` in the history is -CE."""

    def neg_ce(model, x, y):
        logits = model(x)
        return -F.cross_entropy(logits.float(), y), logits

    return epochs_of(model, ctx, ctx.forget, neg_ce, "gradient_ascent")


def two_stage(model, ctx: Ctx) -> list[dict]:
    """Stage 1: one pass over forget minimising KL(u || p). Stage 2: cfg.epochs passes over forget, each forget batch
    paired with the next batch of a fresh shuffle of retain (like zip(forget_loader, retain_loader), which stops at
    the shorter forget side); one forward of both batches together, loss = l_con(Z_f, Z_r) + CE(retain)."""
    opt = ctx.sgd(model)

    def kl_loss(model, x, y):
        logits = model(x)
        return kl_to_uniform(logits), logits

    stats = train_epoch(model, ctx.loader(ctx.forget), opt, kl_loss, ctx.device, ctx.cfg.amp,
                        total=ctx.steps(ctx.forget), desc="two_stage 1")
    history = [dict(stage=1, epoch=1, loss=stats["loss"], acc=stats["acc"])]
    model.train()
    for epoch in range(1, ctx.cfg.epochs + 1):
        sums, n = dict(loss=0.0, con=0.0, ce=0.0), 0
        for (xf, _), (xr, yr) in zip(ctx.loader(ctx.forget), ctx.loader(ctx.retain)):
            with autocast(ctx.device, ctx.cfg.amp):
                z = model(torch.cat([xf, xr]))
            z_f, z_r = z[:len(xf)], z[len(xf):]
            con, ce = contrastive_loss(z_f, z_r), F.cross_entropy(z_r.float(), yr)
            loss = con + ce
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for k, v in (("loss", loss), ("con", con), ("ce", ce)):
                sums[k] += v.item()
            n += 1
        history.append(dict(stage=2, epoch=epoch, **{k: v / max(n, 1) for k, v in sums.items()}))
    return history


METHODS: dict[str, Callable] = {
    "finetune": finetune,
    "gradient_ascent": gradient_ascent,
    "two_stage": two_stage,
}


# ---------------------------------------------------------------------------------------------------- helpers
def chosen_methods(cfg: ViTUnlearnConfig) -> list[str]:
    names = [m.strip() for m in cfg.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise PipelineError(f"unknown or no method(s) {unknown or cfg.methods!r} in --methods: choose from {', '.join(METHODS)}")
    return names


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

    fig, axes = plt.subplots(1, len(embeddings), figsize=(3.6 * len(embeddings), 3.8), squeeze=False)
    for ax, (name, xy) in zip(axes[0], embeddings.items()):
        sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=groups, hue_order=["retain", "forget"], s=8, linewidth=0,
                        alpha=0.7, palette={"retain": "tab:blue", "forget": "tab:red"}, ax=ax, legend=ax is axes[0][0])
        ax.set_title(f"{name}\nforget-train acc {metrics[name]['acc_forget_train']:.1f} %", fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    axes[0][0].legend(title=f"forget = {forget_name}", fontsize=8, title_fontsize=8, loc="best")
    fig.suptitle("t-SNE of pooled pre-logit ViT features, train images (one seeded sample for every model)")
    fig.tight_layout()
    return fig


def main() -> None:
    cfg = parse_config(ViTUnlearnConfig)
    print_config(STAGE, cfg)
    names = chosen_methods(cfg)
    device = resolve_device(cfg.device)
    started = time.time()
    data, splits = load_prepared(cfg.results)
    prep = load_json(stage_dir(cfg.results, "01_prepare_data") / "metrics.json", "stage 01 metrics", "python 01_prepare_data.py")
    refs_dir = stage_dir(cfg.results, REFS)
    refs = load_json(refs_dir / "metrics.json", "stage 03 metrics", MAKE_REFS)
    ref_logits = {n: load_logits(logits_path(cfg.results, REFS, n), MAKE_REFS) for n in ("original", "gold")}
    for n, lg in ref_logits.items():
        if len(lg["train"]) != len(data["train_labels"]) or len(lg["test"]) != len(data["test_labels"]):
            raise PipelineError(f"{REFS} logits of {n} do not match data.pt (stale?): re-run {MAKE_REFS}")
    model, ckpt = load_model(refs_dir / "original.pt", device, MAKE_REFS)
    img_size = ckpt["model_args"]["img_size"]
    if not refs["pretrained"]:
        print(f"[{STAGE}] NOTE: the ViT was randomly initialised in {REFS} (pretrained false)", flush=True)

    out = stage_dir(cfg.results, STAGE)
    log = RunLog(out, STAGE, config_dict(cfg), cfg.wandb)
    set_seed(cfg.seed)
    transform = vit_transform(img_size)
    on_device = {s: to_device(data[f"{s}_images"], data[f"{s}_labels"], device) for s in ("train", "test")}
    sample, groups = tsne_sample(splits, cfg.tsne_per_group, cfg.seed)
    xs, ys = on_device["train"][0][sample.to(on_device["train"][0].device)], data["train_labels"][sample].to(device)

    def features(model) -> torch.Tensor:
        it = batches(xs, ys, None, cfg.eval_batch_size, transform, device)
        return predict(model, it, device, cfg.amp, desc="features", features=True)

    feats = {"original": features(model), "gold": features(load_model(refs_dir / "gold.pt", device, MAKE_REFS)[0])}
    logits, seconds, histories = dict(ref_logits), {n: refs["models"][n]["seconds"] for n in ref_logits}, {}
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    for name in names:
        model.load_state_dict(initial)  # every method starts from the same original weights
        ctx = Ctx(images=on_device["train"][0], labels=on_device["train"][1], forget=splits["forget"],
                  retain=splits["retain"], cfg=cfg, device=device, transform=transform,
                  gen=torch.Generator().manual_seed(cfg.seed))
        t0 = time.time()
        histories[name] = METHODS[name](model, ctx)
        seconds[name] = round(time.time() - t0, 3)
        for h in histories[name]:
            log.log("epoch", method=name, **h)
        save_checkpoint(out / f"{name}.pt", model, ckpt["model_name"], ckpt["model_args"], config_dict(cfg),
                        method=name, unlearned_from=str(refs_dir / "original.pt"))
        logits[name] = split_logits(model, on_device, cfg.eval_batch_size, transform, device, cfg.amp)
        save_logits(logits_path(cfg.results, STAGE, name), logits[name]["train"], logits[name]["test"])
        feats[name] = features(model)
        log.log("unlearned", method=name, seconds=seconds[name])

    models = {}
    for name in ("original", "gold", *names):
        m = classwise_metrics(logits[name], data, splits, gold=logits["gold"])
        finite = all(torch.isfinite(v).all().item() for v in logits[name].values())
        if not finite:  # e.g. gradient ascent run too long / too fast: its metrics are not meaningful
            print(f"[{STAGE}] WARNING: {name} produced non-finite logits (diverged); its metrics are not meaningful")
        models[name] = dict(m, seconds=seconds[name], finite=finite,
                            **({"history": histories[name]} if name in histories else {}))
        log.log("metrics", model=name, **{k: round(v, 4) for k, v in m.items()})
    embeddings = {name: tsne_embed(f, cfg.seed) for name, f in feats.items() if torch.isfinite(f).all()}
    fig = tsne_figure(embeddings, groups, models, prep["forget_class_name"])
    save_figure(fig, out / "tsne.png")

    metrics = dict(models=models, profile=cfg.profile, device=device, pretrained=refs["pretrained"], img_size=img_size,
                   forget_class=prep["forget_class"], forget_class_name=prep["forget_class_name"],
                   data_source=prep["source"], n_train=prep["n_train"], n_test=prep["n_test"], methods=names,
                   epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, tsne_png="tsne.png",
                   tsne_per_group=cfg.tsne_per_group, jsd_note="JS distance, base 2",
                   units="accuracy %, entropy nats, JS distance base 2 in [0, 1], seconds wall time")
    prep_dir = stage_dir(cfg.results, "01_prepare_data")
    inputs = [prep_dir / "data.pt", prep_dir / "splits.pt", refs_dir / "original.pt", refs_dir / "gold.pt",
              *(logits_path(cfg.results, REFS, n) for n in ref_logits)]
    write_manifest(out, config_dict(cfg), device, started, inputs,
                   [out / "tsne.png", *(out / f"{n}.pt" for n in names), *(logits_path(cfg.results, STAGE, n) for n in names)])
    log.close({f"{n}/acc_forget_train": m["acc_forget_train"] for n, m in models.items()})
    save_json(metrics, out / "metrics.json")


if __name__ == "__main__":
    run_main(main)
