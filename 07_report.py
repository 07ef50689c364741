"""Stage 07 - one report of both tracks: every model beside gold (the model retrained without the forget data).

Reads   results/01_prepare_data/{metrics,manifest}.json, results/02_train_resnet/metrics.json,
        results/03_train_vit_refs/metrics.json, results/04_unlearn_vit/{metrics.json, tsne.png},
        results/05_unlearn_gan/metrics.json, results/06_membership_attack/{metrics.json, roc.json}
        (only metrics/manifest/figure files: nothing is retrained or re-evaluated here)
Writes  results/report.md       header (data, profile, device, seed, git sha, ViT init) + per-track tables with
                                each unlearned value's gap to gold, Avg Gap, RTE, attack tables, figure links
        results/summary.csv     one row per (track, model) with every metric
        results/07_report/      accuracy.png, vit_js_entropy.png, roc.png, training_curves.png,
                                manifest.json, metrics.json
Run     python 07_report.py [--results results]; smoke: python 07_report.py --profile smoke --results results-smoke/results
A stage whose outputs are missing gets one line naming the command that makes it; the rest still renders.

Avg Gap (the literature's summary, e.g. SalUn): mean |model - gold| over forget accuracy, retain accuracy, test
accuracy and MIA-efficacy (all in %). For the class-wise ViT track "test" is the test accuracy on the retained
classes (gold cannot score on the forgotten one). Lower is better; gold scores 0 by definition.
RTE (run-time efficiency): the method's wall time, and as % of gold's training time (retraining from scratch).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from common.config import ReportConfig, config_dict, parse_config, print_config, resolve_device  # noqa: E402
from common.io import atomic_path, run_main, save_figure, save_json, write_manifest  # noqa: E402
from common.log import RunLog  # noqa: E402

STAGE = "07_report"
# stage folder -> (what it is, the command that makes it)
STAGES = {
    "01_prepare_data": ("data preparation", "make prepare"),
    "02_train_resnet": ("ResNet original + gold", "make {R}/02_train_resnet/metrics.json"),
    "03_train_vit_refs": ("ViT original + gold", "make {R}/03_train_vit_refs/metrics.json"),
    "04_unlearn_vit": ("ViT unlearning", "make {R}/04_unlearn_vit/metrics.json"),
    "05_unlearn_gan": ("GAN unlearning", "make {R}/05_unlearn_gan/metrics.json"),
    "06_membership_attack": ("membership-inference attacks", "make {R}/06_membership_attack/metrics.json"),
}
# Avg Gap terms per track: (forget acc, retain acc, test acc) keys; MIA-efficacy comes from stage 06.
GAP_KEYS = {"vit": ("acc_forget_train", "acc_retain_train", "acc_test_retain"),
            "resnet": ("acc_forget", "acc_retain", "acc_test")}
NO_GAP = {"seconds", "epochs", "n"}  # columns shown without a gap to gold
TRACE_MIN = 2.0  # Avg Gap (%) of original to gold below which the forget data left too little trace to judge


def read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def flatten(d: dict, prefix: str = "") -> dict:
    """{"forget": {"fnr": 0.2}} -> {"forget_fnr": 0.2}; lists (curves, histories) are dropped."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "_"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out


def load_all(results: Path) -> tuple[dict, list[str]]:
    found, missing = {}, []
    for stage, (what, cmd) in STAGES.items():
        m = read_json(results / stage / "metrics.json")
        if m is None:
            missing.append(f"- **{stage}** ({what}) has no outputs: run `{cmd.format(R=results)}` "
                           f"(or `python {stage}.py --results {results}`).")
        else:
            found[stage] = m
    found["roc"] = read_json(results / "06_membership_attack" / "roc.json") or {}
    return found, missing


def track_tables(m: dict) -> dict[str, pd.DataFrame]:
    """One DataFrame per track, a row per model, every numeric metric as a column (attack columns prefixed)."""
    rows: dict[str, dict[str, dict]] = {"vit": {}, "resnet": {}}
    if "04_unlearn_vit" in m:
        rows["vit"].update({k: flatten(v) for k, v in m["04_unlearn_vit"]["models"].items()})
    elif "03_train_vit_refs" in m:
        rows["vit"].update({k: flatten(v) for k, v in m["03_train_vit_refs"].get("models", {}).items()})
    for stage in ("02_train_resnet", "05_unlearn_gan"):
        if stage in m:
            rows["resnet"].update({k: flatten(v) for k, v in m[stage]["models"].items()})
    attack = m.get("06_membership_attack", {})
    for track in rows:
        for model, a in attack.get(track, {}).items():
            if isinstance(a, dict):  # 06's own vs_gold block is skipped: the report derives every gap itself
                figs = flatten({k: v for k, v in a.items() if k != "vs_gold"})
                rows[track].setdefault(model, {}).update(
                    {(k if k.startswith("attack_") else f"attack_{k}"): v for k, v in figs.items()})
    return {t: pd.DataFrame.from_dict(r, orient="index") for t, r in rows.items() if r}


def mia_efficacy_column(df: pd.DataFrame) -> str | None:
    cols = [c for c in df.columns if c.endswith("mia_efficacy")]
    return cols[0] if cols else None


def add_summaries(track: str, df: pd.DataFrame) -> pd.DataFrame:
    """Avg Gap to gold (%) and RTE (% of gold's training time) for every model."""
    if "gold" not in df.index:
        return df
    keys = [k for k in GAP_KEYS[track] if k in df.columns]
    gaps = [(df[k] - df.loc["gold", k]).abs() for k in keys]
    mia = mia_efficacy_column(df)
    if mia:
        gaps.append(100 * (df[mia] - df.loc["gold", mia]).abs())
    if gaps:
        df["avg_gap"] = sum(gaps) / len(gaps)
    if "seconds" in df.columns and df.loc["gold", "seconds"] > 0:
        df["rte_pct_of_gold"] = 100 * df["seconds"] / df.loc["gold", "seconds"]
    return df


def fmt(v, gap=None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    s = f"{v:.{digits}f}"
    if gap is not None and not (isinstance(gap, float) and math.isnan(gap)):
        s += f" ({gap:+.{digits}f})"
    return s


def digits_for(col: str) -> int:
    """Percentages and seconds with 1 decimal; entropies, distances and attack fractions with 3."""
    return 1 if col.startswith("acc_") or col in ("avg_gap", "seconds", "rte_pct_of_gold") else 3


def markdown_table(df: pd.DataFrame, cols: list[str]) -> str:
    """Rows = models; an unlearned model's value is followed by its gap to gold in brackets."""
    cols = [c for c in cols if c in df.columns]
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for model, row in df.iterrows():
        ref = model not in ("original", "gold") and "gold" in df.index
        cells = [fmt(row[c], row[c] - df.loc["gold", c] if ref and c not in NO_GAP and "gap" not in c
                     and "rte" not in c else None, digits_for(c)) for c in cols]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ figures
def plot_accuracy(tables: dict, out: Path) -> Path | None:
    frames = []
    for track, df in tables.items():
        acc = [c for c in df.columns if c.startswith("acc_")]
        long = df[acc].reset_index(names="model").melt("model", var_name="split", value_name="accuracy (%)")
        frames.append(long.assign(track=track))
    if not frames:
        return None
    data = pd.concat(frames, ignore_index=True)
    g = sns.catplot(data=data, kind="bar", x="split", y="accuracy (%)", hue="model", col="track",
                    sharex=False, height=3.6, aspect=1.5)
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
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.4))
    for ax, c in zip(axes if len(cols) > 1 else [axes], cols):
        sns.barplot(x=df.index, y=df[c], ax=ax, hue=df.index, legend=False)
        ax.set_title(c + (" (JS distance, base 2)" if c.startswith("jsd") else " (nats)"), fontsize=9)
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=30)
    if "entropy_test_forget" in cols:
        axes[-1].axhline(math.log(10), ls="--", c="grey", lw=1, label="uniform (ln 10)")
        axes[-1].legend(fontsize=8)
    save_figure(fig, out / "vit_js_entropy.png")
    plt.close(fig)
    return out / "vit_js_entropy.png"


def plot_roc(roc: dict, out: Path) -> Path | None:
    tracks = {t: v for t, v in roc.items() if isinstance(v, dict) and v}
    if not tracks:
        return None
    fig, axes = plt.subplots(1, len(tracks), figsize=(4.6 * len(tracks), 4.2), squeeze=False)
    for ax, (track, models) in zip(axes[0], tracks.items()):
        for model, curve in models.items():
            ax.plot(curve["fpr"], curve["tpr"], label=model, lw=2 if model == "gold" else 1.2,
                    ls="--" if model == "gold" else "-")
        ax.plot([0, 1], [0, 1], c="grey", lw=0.8, ls=":")
        ax.set(title=f"{track}: attack ROC on held-out members vs non-members", xlabel="FPR", ylabel="TPR")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
    save_figure(fig, out / "roc.png")
    plt.close(fig)
    return out / "roc.png"


def plot_training(m: dict, out: Path) -> Path | None:
    curves = []
    for stage, track in (("02_train_resnet", "resnet"), ("03_train_vit_refs", "vit")):
        for model, v in m.get(stage, {}).get("models", {}).items():
            for h in v.get("history", []) if isinstance(v, dict) else []:
                if "test_acc" in h:
                    curves.append(dict(track=track, model=model, epoch=h["epoch"], test_acc=h["test_acc"]))
    if not curves:
        return None
    g = sns.relplot(data=pd.DataFrame(curves), kind="line", x="epoch", y="test_acc", hue="model", col="track",
                    marker="o", height=3.2, aspect=1.3, facet_kws=dict(sharex=False))
    g.set_axis_labels("epoch", "test accuracy (%)")
    save_figure(g.figure, out / "training_curves.png")
    plt.close(g.figure)
    return out / "training_curves.png"


# ------------------------------------------------------------------------------------------------- report
VIT_COLS = ["acc_forget_train", "acc_retain_train", "acc_test_forget", "acc_test_retain", "acc_test",
            "entropy_test_forget", "jsd_gold_test_forget", "jsd_gold_test_retain"]
RESNET_COLS = ["acc_forget", "acc_retain", "acc_test"]
ATTACK_COLS = ["attack_test_accuracy", "attack_auc", "attack_tpr_at_1pct_fpr", "attack_forget_fnr", "attack_mia_efficacy"]
SUMMARY_COLS = ["avg_gap", "seconds", "rte_pct_of_gold"]


def header(m: dict, results: Path) -> list[str]:
    prep = m.get("01_prepare_data", {})
    man = read_json(results / "01_prepare_data" / "manifest.json") or {}
    vit = m.get("04_unlearn_vit") or m.get("03_train_vit_refs") or {}
    git = man.get("git", {})
    lines = ["# Unlearning report", "",
             f"- Data: **{prep.get('source', '?')}**, {prep.get('n_train', '?')} train / {prep.get('n_test', '?')} "
             f"test images; class-wise forget class {prep.get('forget_class', '?')} ({prep.get('forget_class_name', '?')}), "
             f"sample-wise forget set {prep.get('split_sizes', {}).get('sample_forget', '?')} images",
             f"- Profile: **{man.get('config', {}).get('profile', '?')}**; device: {man.get('device', {}).get('device', '?')}; "
             f"seed: {man.get('seed', '?')}; git: {(git.get('sha') or '?')[:10]}{' (dirty)' if git.get('dirty') else ''}"]
    if "pretrained" in vit:
        lines.append("- ViT: " + ("ImageNet-pretrained (timm)" if vit["pretrained"] else
                                  "**randomly initialised** (no ImageNet weights were used), so its accuracies are far "
                                  "below reference A's pretrained setting") + f", {vit.get('img_size', '?')} px inputs")
    return lines


def build_report(m: dict, tables: dict, missing: list[str], figs: dict, results: Path) -> str:
    lines = header(m, results) + [""]
    if missing:
        lines += ["## Missing stages", ""] + missing + [""]
    lines += ["How to read: every unlearned model's value is followed by (its gap to gold), the model retrained "
              "without the forget data: the target is gold's value, not 0 or 100. **Avg Gap** = mean |gap| over "
              "forget, retain and test accuracy and MIA-efficacy, in % (lower is better). **RTE** = wall time, and "
              "as % of gold's training time.", ""]
    titles = {"vit": "ViT track: class-wise forgetting (reference A)",
              "resnet": "ResNet track: sample-wise forgetting (reference B)"}
    for track, df in tables.items():
        lines += [f"## {titles[track]}", "", markdown_table(df, (VIT_COLS if track == "vit" else RESNET_COLS)
                                                           + SUMMARY_COLS), ""]
        if "avg_gap" in df.columns and "original" in df.index and df.loc["original", "avg_gap"] < TRACE_MIN:
            lines += [f"**Caution:** original is within {df.loc['original', 'avg_gap']:.1f} % (Avg Gap) of gold: the "
                      "forget data left almost no trace in it, so this run cannot show whether unlearning works. "
                      "Train the references longer (e.g. the paper profile) for a run that can.", ""]
        attack = [c for c in ATTACK_COLS if c in df.columns]
        if attack:
            lines += ["Membership-inference attacks (stage 06; gold's row is the target):", "",
                      markdown_table(df, attack), ""]
    lines += ["Units: accuracy in %, entropy in nats, JS = Jensen-Shannon distance (base 2) to gold, seconds of wall "
              "time; attack accuracy/AUC/TPR/FNR/MIA-efficacy as fractions.", "", "## Figures", ""]
    for name, path in figs.items():
        if path is not None and Path(path).is_file():
            rel = Path(path).relative_to(results)
            lines += [f"**{name}**", "", f"![{name}]({rel.as_posix()})", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    cfg = parse_config(ReportConfig)
    print_config(STAGE, cfg)
    started = time.time()
    results = Path(cfg.results)
    out = results / STAGE
    log = RunLog(out, STAGE, config_dict(cfg), cfg.wandb)
    m, missing = load_all(results)
    tables = {t: add_summaries(t, df) for t, df in track_tables(m).items()}
    figs = {"Accuracy per split and model": plot_accuracy(tables, out),
            "t-SNE of ViT pre-logit features (forget vs retain)": results / "04_unlearn_vit" / "tsne.png",
            "Jensen-Shannon distance to gold and entropy (ViT)": plot_js_entropy(tables, out),
            "Membership-inference ROC curves": plot_roc(m["roc"], out),
            "Training curves": plot_training(m, out)}
    summary = pd.concat([df.assign(track=t).reset_index(names="model") for t, df in tables.items()]) \
        if tables else pd.DataFrame(columns=["track", "model"])
    summary = summary[["track", "model"] + [c for c in summary.columns if c not in ("track", "model")]]
    with atomic_path(results / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    report = build_report(m, tables, missing, figs, results)
    log.log("report", models=len(summary), missing_stages=len(missing))
    if log.wandb.__class__.__name__ != "_NoWandb":
        import wandb

        log.wandb.log({"summary": wandb.Table(dataframe=summary.fillna(float("nan")))})
        log.wandb.log({k: wandb.Image(str(p)) for k, p in figs.items() if p is not None and Path(p).is_file()})
    records = summary.to_dict("records")
    metrics = {"models": {f"{r['track']}/{r['model']}": {k: v for k, v in r.items() if k not in ("track", "model")
                                                         and isinstance(v, (int, float)) and not math.isnan(v)}
                          for r in records},
               "missing_stages": [s for s in STAGES if s not in m]}
    write_manifest(out, config_dict(cfg), resolve_device(cfg.device), started,
                   [results / s / "metrics.json" for s in STAGES],
                   [results / "summary.csv"] + [p for p in figs.values() if p is not None])
    log.close()
    save_json(metrics, out / "metrics.json")
    with atomic_path(results / "report.md") as tmp:  # the Make target: written last
        tmp.write_text(report)
    print(f"[{STAGE}] wrote {results / 'report.md'} and {results / 'summary.csv'}")


if __name__ == "__main__":
    run_main(main)
