"""Stage 07's figures, drawn from the report's tables (no data files, no forward passes); each returns the PNG
path, or None when the tables hold nothing to draw. Conventions: ROC on log-log axes (LiRA, Carlini et al. 2022),
Avg Gap against compute (% of gold's training cost in counted units, not wall time) on a log x axis, error bars =
std across seeds."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from common.io import save_figure  # noqa: E402

ROC_ATTACK = "loss"  # the ROC figure's attack: no method trains against it


def plot_accuracy(summary: pd.DataFrame, out: Path) -> Path | None:
    """Accuracy per split and model, bars = mean over seeds, error bars = std across seeds."""
    acc = [c for c in summary.columns if c.startswith("acc_") and "_ci" not in c]
    if not acc or not len(summary):
        return None
    data = summary[["track", "model", "seed", *acc]].melt(["track", "model", "seed"], var_name="split",
                                                             value_name="accuracy (%)").dropna()
    g = sns.catplot(data=data, kind="bar", x="split", y="accuracy (%)", hue="model", col="track", errorbar="sd",
                    sharex=False, height=3.6, aspect=1.8)
    g.set_xticklabels(rotation=25, ha="right")
    save_figure(g.figure, out / "accuracy.png")
    plt.close(g.figure)
    return out / "accuracy.png"


def plot_js_entropy(tables: dict, out: Path) -> Path | None:
    df = tables.get("vit")
    cols = [c for c in ("jsd_gold_test_forget", "jsd_gold_test_retain", "entropy_test_forget") if c in df.columns] \
        if df is not None else []
    if not cols:
        return None
    fig, axes = plt.subplots(1, len(cols), figsize=(4.6 * len(cols), 3.6), squeeze=False)
    for ax, c in zip(axes[0], cols):
        sns.barplot(x=df.index, y=df[c], ax=ax, hue=df.index, legend=False)
        ax.set_title(c + (" (JS distance, natural log)" if c.startswith("jsd") else " (nats)"), fontsize=9)
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=45)
    if "entropy_test_forget" in cols:
        axes[0][-1].axhline(math.log(10), ls="--", c="grey", lw=1, label="uniform (ln 10)")
        axes[0][-1].legend(fontsize=8)
    save_figure(fig, out / "vit_js_entropy.png")
    plt.close(fig)
    return out / "vit_js_entropy.png"


def plot_roc(roc: dict, out: Path) -> Path | None:
    """The loss attack's ROC on held-out members vs non-members, log-log axes (LiRA's convention), a panel per
    track."""
    tracks = {t: v for t, v in roc.items() if isinstance(v, dict) and v}
    if not tracks:
        return None
    fig, axes = plt.subplots(1, len(tracks), figsize=(5.0 * len(tracks), 4.6), squeeze=False)
    for ax, (track, models) in zip(axes[0], tracks.items()):
        for model, curves in models.items():
            curve = curves.get(ROC_ATTACK, curves) if isinstance(curves, dict) else {}
            if "fpr" not in curve:
                continue
            pts = [(f, t) for f, t in zip(curve["fpr"], curve["tpr"]) if f > 0 and t > 0]
            if pts:
                ax.plot(*zip(*pts), label=model, lw=2 if model == "gold" else 1.2, ls="--" if model == "gold" else "-")
        ax.plot([1e-3, 1], [1e-3, 1], c="grey", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1), xlabel="FPR", ylabel="TPR",
               title=f"{track}: {ROC_ATTACK} attack, held-out members vs non-members")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, ncol=2)
    save_figure(fig, out / "roc.png")
    plt.close(fig)
    return out / "roc.png"


def _err(d: pd.DataFrame, col: str):
    """Error-bar lengths from a std column, or None when there is none to draw (one seed)."""
    if col not in d.columns or d[col].isna().all():
        return None
    return d[col].fillna(0).to_numpy(dtype=float)


def plot_budget_curve(curves: dict, out: Path, floors: dict | None = None) -> Path | None:
    """Avg Gap (%; lower = closer to gold) against compute (% of gold's training cost in counted units, log x), one
    line per method, one panel per track. `curves` = {track: DataFrame as common.aggregate.aggregate_curve returns:
    method, budget, pct_of_gold, avg_gap, and pct_of_gold_std / avg_gap_std (std over seeds, drawn as error bars
    when there are any), n (seeds), over_budget (an indivisible pass exceeded the budget and ran in full: hollow
    marker)}. `floors` = {track: Avg Gap noise floor, gold vs gold (%)}, a dotted line where finite."""
    data = {}
    for track, d in curves.items():
        if d is None or not len(d) or not {"method", "pct_of_gold", "avg_gap"} <= set(d.columns):
            continue
        d = d[(pd.to_numeric(d.pct_of_gold, errors="coerce") > 0) & d.avg_gap.notna()]  # log x: compute > 0 only
        if len(d):
            data[track] = d
    if not data:
        return None
    methods = sorted({m for d in data.values() for m in d.method})
    colors = dict(zip(methods, sns.color_palette("tab20" if len(methods) > 10 else "tab10", len(methods))))
    fig, axes = plt.subplots(1, len(data), figsize=(6.4 * len(data), 4.8), squeeze=False)
    for ax, (track, d) in zip(axes[0], data.items()):
        for method, g in d.groupby("method", sort=True):
            g, c = g.sort_values("pct_of_gold"), colors[method]
            xerr, yerr = _err(g, "pct_of_gold_std"), _err(g, "avg_gap_std")
            if xerr is not None or yerr is not None:
                ax.errorbar(g.pct_of_gold, g.avg_gap, xerr=xerr, yerr=yerr, fmt="none", ecolor=c, elinewidth=0.8,
                            capsize=2)
            over = g["over_budget"].map(lambda v: v in (True, 1)) if "over_budget" in g.columns else \
                pd.Series(False, index=g.index)
            ax.plot(g.pct_of_gold, g.avg_gap, "-", color=c, lw=1.2, label=method)
            ax.scatter(g.pct_of_gold[~over], g.avg_gap[~over], color=c, s=26, zorder=3)
            ax.scatter(g.pct_of_gold[over], g.avg_gap[over], facecolors="none", edgecolors=c, s=40, linewidths=1.3,
                       zorder=3)
        ax.axvline(100, ls="--", c="grey", lw=0.8, label="gold's training cost (100 %)")
        fl = (floors or {}).get(track)
        if fl is not None and pd.notna(fl):
            ax.axhline(fl, ls=":", c="grey", lw=1, label="noise floor (gold vs gold)")
        if "over_budget" in d.columns and d["over_budget"].map(lambda v: v in (True, 1)).any():
            ax.scatter([], [], facecolors="none", edgecolors="grey", s=40, label="hollow: over budget (ran in full)")
        single = d.groupby("method").size().max() == 1
        ax.set(xscale="log", xlabel="compute: % of gold's training cost (counted units, log)",
               ylabel="Avg Gap to gold (%)",
               title=f"{track} track" + (": one budget, a point per method (no --budgets curve)" if single else ""))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 10, 100 (%), not 10^k
        ax.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))  # labels only on a narrow range
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, ncol=2)
    n = max(int(d["n"].max()) for d in data.values()) if all("n" in d.columns for d in data.values()) else 1
    fig.suptitle("Avg Gap to gold against compute used, one line per method: "
                 + (f"mean over {n} seeds, error bars = std across seeds" if n > 1 else "one seed (no error bars)"),
                 fontsize=10)
    save_figure(fig, out / "budget_curve.png")
    plt.close(fig)
    return out / "budget_curve.png"


def plot_training(m: dict, out: Path) -> Path | None:
    curves = []
    for stage, track in (("02_train_resnet", "resnet"), ("03_train_vit_refs", "vit")):
        for model, v in m.get(stage, {}).get("models", {}).items():
            for h in v.get("history", []) if isinstance(v, dict) else []:
                if "val_acc" in h:  # validation rows: the reported test rows are scored once, at the end
                    curves.append(dict(track=track, model=model, epoch=h["epoch"], val_acc=h["val_acc"]))
    if not curves:
        return None
    g = sns.relplot(data=pd.DataFrame(curves), kind="line", x="epoch", y="val_acc", hue="model", col="track",
                    marker="o", height=3.2, aspect=1.3, facet_kws=dict(sharex=False))
    g.set_axis_labels("epoch", "validation accuracy (%)")
    save_figure(g.figure, out / "training_curves.png")
    plt.close(g.figure)
    return out / "training_curves.png"


FACETS = dict(col="model", col_wrap=5, height=1.9, aspect=1.2)  # the audit's small multiples: one panel per model


def _save_facets(g, labels: tuple[str, str], chance: str, path: Path) -> Path:
    """Panel titles, axis labels, a dotted line at chance (0.5) on the `chance` axis ("x" or "y"), saved to `path`."""
    g.set_titles("{col_name}", size=8)
    g.set_axis_labels(*labels)
    for ax in g.axes.flat:
        (ax.axvline if chance == "x" else ax.axhline)(0.5, c="grey", lw=0.8, ls=":")
    save_figure(g.figure, path)
    plt.close(g.figure)
    return path


def plot_audit_auc(examples: pd.DataFrame, out: Path) -> Path | None:
    """The audit: a histogram of per-example Gaussian-test AUC per model (0.5 = the attacker cannot tell the model
    from gold on that example; 1 = always can)."""
    if examples is None or not len(examples):
        return None
    g = sns.displot(data=examples, x="auc", bins=np.linspace(0, 1, 21), facet_kws=dict(sharey=False), **FACETS)
    return _save_facets(g, ("per-example AUC", "examples"), "x", out / "audit_auc.png")


def plot_audit_exposure(examples: pd.DataFrame, out: Path) -> Path | None:
    """The audit: per-example attack accuracy against how much the original knew the example (its mean logit-scaled
    confidence minus gold's, over the seeds): which examples stay exposed after unlearning."""
    if examples is None or not len(examples):
        return None
    g = sns.relplot(data=examples, x="original_gold_gap", y="accuracy", s=6, alpha=0.5, linewidth=0, **FACETS)
    return _save_facets(g, ("original - gold (logit conf.)", "attack accuracy"), "y", out / "audit_exposure.png")
