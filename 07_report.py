"""Stage 07 - one report of both tracks: every model beside gold (the model retrained without the forget data).

Reads   results/01_prepare_data/{metrics,manifest}.json, results/02_train_resnet/metrics.json,
        results/03_train_vit_refs/metrics.json (models with their counted `units`),
        results/04_unlearn_vit/{metrics.json, tsne.png}, results/05_unlearn_gan/metrics.json (models; budget,
        budget_units, budgets, bn; the budget `curve` and the no-budget `reproduction` when run),
        results/06_membership_attack/{metrics.json, roc.json, avg_gap_boot.json (paired Avg Gap replicates)}
        (only metrics/manifest/figure files: nothing is retrained or re-evaluated here)
Writes  results/report.md       header (data, profile, device, seeds, git sha, compute budget, ViT init); the
                                VERDICT per track first (common.verdict: which methods beat which, Holm-corrected;
                                which are equivalent to gold at the stated margin, by two one-sided tests over >= 3
                                seeds, checked on gold_2 with the test's power; what the run cannot show; whether
                                the past-the-head checks separate what the output figures do not); then per track
                                the summary over seeds: group, rank [interval], Avg Gap [interval] and every figure
                                as mean ± std [95 % t-interval] (gap to gold, ≠ shown / ≡ equivalent), compute,
                                status, RTE (wall time, reported only); ViT's extra and past-the-head tables; attack
                                tables; the reproduction table (no budget) when present; settings; figure links
        results/summary.csv     one row per (tree, track, model): tree id, training seed, split_seed, forget_class,
                                then every metric (intervals as *_ci_lo / *_ci_hi)
        results/07_report/      per_seed.md (each seed's own tables: value [row-bootstrap interval] (gap, n.s.)),
                                budget_curve.png, accuracy.png, vit_js_entropy.png, roc.png (log-log),
                                training_curves.png, manifest.json, metrics.json (+ budget_curve, reproduction,
                                claims: per track the pairs with Holm p, ranks, groups, margins, marks, verdict)
Run     python 07_report.py [--results results]; smoke: python 07_report.py --profile smoke --results results-smoke/results
A stage whose outputs are missing gets one line naming the command that makes it; the rest still renders.

Avg Gap (the literature's summary, e.g. SalUn): mean |model - gold| over forget accuracy, retain accuracy, test
accuracy and MIA-efficacy (all in %). For the class-wise ViT track "test" is the test accuracy on the retained
classes (gold cannot score on the forgotten one). Lower is better; gold scores 0 by definition.
Compute: the budget is counted work, not time: 1 unit per image forward through any network (the model, teachers,
the original), 2 more per image backward, so gold's training cost = epochs x rows x 3. "compute % of gold" =
100 x units / gold's units, for every row that has units (original and gold_2 included). Status: "cut" = the
budget stopped the method before its schedule ended; "over budget" = an indivisible pass (e.g. SSD's importances)
exceeded the budget and still ran in full; "diverged" = the model's logits are not finite (e.g. Fisher
forgetting's noise at too large an alpha): its figures are NaN and it is left out of the ranking and the tests.
RTE (run-time efficiency): the method's wall time (its unlearning steps, no evaluation), and as % of gold's
training time measured the same way (training passes only). Reported only: wall time never decides anything.
Budget curve (budget_curve.png): every method re-run at each --budgets fraction (stage 04/05 `curve`), each point's
Avg Gap against the same tree's gold, mean ± std over seeds per (method, budget), against the compute it used
(log x); a track with no curve shows each method's single budgeted run instead.
"Cannot show unlearning": a track whose original and gold forget accuracies are indistinguishable (the interval
of their paired gap contains 0) gets a caution: there was nothing measurable to unlearn.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pandas as pd

from common import audit_report as AR
from common import verdict as V
from common.verdict import gap_not_significant
from common.aggregate import aggregate, aggregate_curve, noise_floor
from common.config import ReportConfig, config_dict, parse_config, print_config, resolve_device
from common.figures import (plot_accuracy, plot_audit_auc, plot_audit_exposure, plot_budget_curve, plot_js_entropy,
                            plot_roc, plot_training)
from common.io import PipelineError, atomic_path, run_main, save_json, write_manifest
from common.log import RunLog

STAGE = "07_report"
# stage folder -> (what it is, the command that makes it)
STAGES = {
    "01_prepare_data": ("data preparation", "make prepare"),
    "02_train_resnet": ("ResNet original + gold", "make {R}/02_train_resnet/metrics.json"),
    "03_train_vit_refs": ("ViT original + gold", "make {R}/03_train_vit_refs/metrics.json"),
    "04_unlearn_vit": ("ViT unlearning", "make {R}/04_unlearn_vit/metrics.json"),
    "05_unlearn_gan": ("ResNet unlearning", "make {R}/05_unlearn_gan/metrics.json"),
    "06_membership_attack": ("membership-inference attacks", "make {R}/06_membership_attack/metrics.json"),
}
# Avg Gap terms per track: (forget acc, retain acc, test acc) keys; MIA-efficacy comes from stage 06.
GAP_KEYS = {"vit": ("acc_forget_train", "acc_retain_train", "acc_test_retain"),
            "resnet": ("acc_forget", "acc_retain", "acc_test")}
FORGET_KEY = {"vit": "acc_forget_train", "resnet": "acc_forget"}
REFS = ("original", "gold")
UNLEARN_STAGE = {"vit": "04_unlearn_vit", "resnet": "05_unlearn_gan"}  # where each track's methods, curve live
DROP = ("history", "grid", "vs_gold", "logits", "settings", "settings_from", "schedule")  # per-model fields no table shows
NO_GAP = ("seconds", "rte_pct_of_gold", "avg_gap", "pct_of_gold", "units")  # costs and Avg Gap: no gap to gold


def read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def flatten(d: dict, prefix: str = "") -> dict:
    """{"loss": {"auc": 0.6, "auc_ci": [0.5, 0.7]}} -> {"loss_auc": 0.6, "loss_auc_ci_lo": 0.5, "loss_auc_ci_hi":
    0.7}; booleans kept, other lists (curves, histories) dropped."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "_"))
        elif isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            out[f"{key}_lo"], out[f"{key}_hi"] = v
        elif isinstance(v, (int, float)):
            out[key] = v
    return out


STAGE_TRACK = {"02_train_resnet": "resnet", "05_unlearn_gan": "resnet", "03_train_vit_refs": "vit",
               "04_unlearn_vit": "vit"}


def load_all(results: Path, tracks: tuple = ("vit", "resnet")) -> tuple[dict, list[str]]:
    """Every stage's metrics of one tree; a stage of a track not in `tracks` is neither read nor missing."""
    found, missing = {}, []
    for stage, (what, cmd) in STAGES.items():
        if STAGE_TRACK.get(stage, tracks[0]) not in tracks:
            continue
        m = read_json(results / stage / "metrics.json")
        if m is None:
            missing.append(f"- **{stage}** ({what}) has no outputs: run `{cmd.format(R=results)}` "
                           f"(or `python {stage}.py --results {results}`).")
        else:
            found[stage] = m
    found["roc"] = read_json(results / "06_membership_attack" / "roc.json") or {}
    found["boot"] = (read_json(results / "06_membership_attack" / "avg_gap_boot.json") or {}).get("replicates", {})
    return found, missing


def track_tables(m: dict) -> dict[str, pd.DataFrame]:
    """One DataFrame per track, a row per model, every numeric metric as a column (attack columns prefixed)."""
    rows: dict[str, dict[str, dict]] = {"vit": {}, "resnet": {}}
    drop = DROP
    for stage, track in (("03_train_vit_refs", "vit"), ("04_unlearn_vit", "vit"), ("02_train_resnet", "resnet"),
                         ("05_unlearn_gan", "resnet")):
        for model, v in m.get(stage, {}).get("models", {}).items():
            rows[track].setdefault(model, {}).update(flatten({k: x for k, x in v.items() if k not in drop}))
    for track in rows:
        for model, a in m.get("06_membership_attack", {}).get(track, {}).items():
            if isinstance(a, dict):  # 06's own vs_gold block is skipped: the report derives every gap itself
                if "avg_gap" in a:  # 06's Avg Gap with its paired row-bootstrap interval (the same terms as here)
                    lo, hi = a.get("avg_gap_ci", [math.nan, math.nan])
                    rows[track].setdefault(model, {}).update(avg_gap_rows=a["avg_gap"], avg_gap_ci_lo=lo, avg_gap_ci_hi=hi)
                a = {**{k: v for k, v in a.items() if k not in drop + ("attacks", "avg_gap", "avg_gap_ci")},
                     **a.get("attacks", {})}
                figs = flatten(a)
                rows[track].setdefault(model, {}).update(
                    {(k if k.startswith("attack_") else f"attack_{k}"): v for k, v in figs.items()})
    return {t: pd.DataFrame.from_dict(r, orient="index") for t, r in rows.items() if r}


STATUS_FLAGS = (("over_budget", "over budget"), ("cut", "cut"), ("phases_dropped", "phases dropped"),
                ("diverged", "diverged"))  # diverged: non-finite logits, figures NaN, left out of the ranking


def status(row: pd.Series) -> str:
    """'over budget' (an indivisible pass exceeded the budget and ran in full), 'cut' (the budget stopped the method
    before its schedule ended), 'phases dropped' (the budget bought fewer steps than its schedule has phases, so some
    phases got none: common.unlearn.lay_out), any of them, or ''."""
    return ", ".join(name for key, name in STATUS_FLAGS if row.get(key) in (True, 1))


def add_summaries(track: str, df: pd.DataFrame) -> pd.DataFrame:
    """Avg Gap to gold (%), compute (% of gold's counted units), status and RTE (% of gold's training wall time) for
    every model; methods sorted by Avg Gap."""
    if {"cut", "over_budget", "phases_dropped"} & set(df.columns):
        df["status"] = [status(df.loc[i]) for i in df.index]
    if "gold" not in df.index:
        return df
    keys = [k for k in GAP_KEYS[track] if k in df.columns]
    gaps = [(df[k] - df.loc["gold", k]).abs() for k in keys]
    if "attack_mia_efficacy" in df.columns:
        gaps.append(100 * (df["attack_mia_efficacy"] - df.loc["gold", "attack_mia_efficacy"]).abs())
    if gaps:
        df["avg_gap"] = sum(gaps) / len(gaps)
    if "units" in df.columns and pd.notna(df.loc["gold", "units"]) and df.loc["gold", "units"] > 0:
        # every row from its units (original, gold_2 too); a stage's own pct_of_gold is the same ratio
        pct = 100 * pd.to_numeric(df["units"], errors="coerce") / float(df.loc["gold", "units"])
        df["pct_of_gold"] = pct.combine_first(df["pct_of_gold"]) if "pct_of_gold" in df.columns else pct
    if "seconds" in df.columns and df.loc["gold", "seconds"] > 0:
        df["rte_pct_of_gold"] = 100 * df["seconds"] / df.loc["gold", "seconds"]
    refs = [r for r in (*REFS, "gold_2") if r in df.index]
    rest = df.drop(index=refs)
    if "avg_gap" in df.columns:
        rest = rest.sort_values("avg_gap", na_position="last")
    return pd.concat([df.loc[refs], rest])


def digits_for(col: str) -> int:
    """Percentages and seconds with 1 decimal; entropies, distances and attack fractions with 3."""
    if col in ("units", "rank"):
        return 0  # counted units and steps are whole numbers
    return 1 if col.startswith(("acc_", "relearn_")) or col in ("avg_gap", "seconds", "rte_pct_of_gold",
                                                                 "pct_of_gold") else 3


def cell(df: pd.DataFrame, model: str, col: str, floor: pd.Series | None = None) -> str:
    """value [95 % interval] (gap to gold, n.s. when its interval contains 0, within noise when |gap| is below the
    gold-vs-gold noise floor); 'diverged' for a diverged model."""
    v = df.loc[model, col]
    if df.loc[model].get("diverged") is True or df.loc[model].get("diverged") == 1:
        return "diverged"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    d = digits_for(col)
    s = f"{v:.{d}f}"
    if f"{col}_ci_lo" in df.columns and pd.notna(df.loc[model, f"{col}_ci_lo"]):
        s += f" [{df.loc[model, f'{col}_ci_lo']:.{d}f}, {df.loc[model, f'{col}_ci_hi']:.{d}f}]"
    if model != "gold" and "gold" in df.index and col not in NO_GAP and pd.notna(df.loc["gold", col]):
        gap, ns = v - df.loc["gold", col], gap_not_significant(df, model, col)
        fl = floor.get(col, math.nan) if floor is not None else math.nan
        marks = (", n.s." if ns else "") + (", within noise" if pd.notna(fl) and abs(gap) < fl else "")
        s += f" ({gap:+.{d}f}{marks})"
    return s


def markdown_table(df: pd.DataFrame, cols: list[str], names: dict | None = None,
                   floor: pd.Series | None = None) -> str:
    cols = [c for c in cols if c in df.columns]
    names = names or {}
    lines = ["| model | " + " | ".join(names.get(c, c) for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for model in df.index:
        cells = []
        for c in cols:
            if c == "status":
                cells.append(df.loc[model, c] if isinstance(df.loc[model, c], str) else "")
            else:
                cells.append(cell(df, model, c, floor))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- report
MAIN_COLS = {"vit": ["acc_forget_train", "acc_retain_train", "acc_test_retain", "attack_mia_efficacy"],
             "resnet": ["acc_forget", "acc_retain", "acc_test", "attack_mia_efficacy"]}
SUMMARY_COLS = ["avg_gap", "units", "pct_of_gold", "status", "seconds", "rte_pct_of_gold"]
VIT_EXTRA = ["acc_test_forget", "acc_test", "entropy_test_forget", "jsd_gold_test_forget", "jsd_gold_test_retain"]
PAST_HEAD = ["relearn_acc", "probe_auc"]  # ViT: common.probes (stage 04)
ATTACK_COLS = ["attack_loss_forget_auc", "attack_calibrated_forget_auc", "attack_loss_auc",
               "attack_loss_tpr_at_0.1pct_fpr", "attack_loss_tpr_at_1pct_fpr", "attack_reference_b_auc",
               "attack_reference_b_forget_fnr", "attack_own_auc", "attack_own_forget_fnr"]
NAMES = {"acc_forget_train": "forget (train)", "acc_retain_train": "retain (train)", "acc_test_retain":
         "test (retained classes)", "acc_forget": "forget", "acc_retain": "retain", "acc_test": "test",
         "attack_mia_efficacy": "MIA-efficacy", "avg_gap": "Avg Gap", "units": "compute (units)", "pct_of_gold": "compute % of gold",
         "seconds": "RTE: wall s", "rte_pct_of_gold": "RTE % of gold (wall)",
         "jsd_gold_test_forget": "JS to gold, test forget (ln)", "jsd_gold_test_retain": "JS to gold, test retain (ln)",
         "entropy_test_forget": "entropy test forget (nats)", "relearn_acc": "relearn: forget test acc (mean over the fine-tune)",
         "probe_auc": "linear probe AUC (forget class)"}


def header(m: dict, tree: Path, seeds: list[str]) -> list[str]:
    prep = m.get("01_prepare_data", {})
    man = read_json(tree / "01_prepare_data" / "manifest.json") or {}
    vit = m.get("04_unlearn_vit") or m.get("03_train_vit_refs") or {}
    git = man.get("git", {})
    sizes = prep.get("split_sizes", {})
    lines = ["# Unlearning report", "",
             f"- Data: **{prep.get('source', '?')}**, {prep.get('n_train', '?')} train / {prep.get('n_test', '?')} "
             f"test images (test cut into {sizes.get('test_unseen', '?')} unseen for methods / {sizes.get('test_val', '?')} "
             f"validation / {sizes.get('test_eval', '?')} evaluation rows); class-wise forget class "
             f"{prep.get('forget_class', '?')} ({prep.get('forget_class_name', '?')}); sample-wise: forget set "
             f"{sizes.get('sample_forget', '?')} of {sizes.get('sample_forget', 0) + sizes.get('sample_retain', 0)} rows",
             f"- Profile: **{man.get('config', {}).get('profile', '?')}**; device: {man.get('device', {}).get('device', '?')}; "
             f"training seeds: {', '.join(seeds)} ({len(seeds)}); split seed: {man.get('config', {}).get('split_seed', '?')}; "
             f"git: {(git.get('sha') or '?')[:10]}{' (dirty)' if git.get('dirty') else ''}"]
    precision = {}  # the precision each compute stage resolved (its manifest): "fp32" / "bf16"
    for stage in ("02_train_resnet", "03_train_vit_refs", "04_unlearn_vit", "05_unlearn_gan", "06_membership_attack"):
        p = (read_json(tree / stage / "manifest.json") or {}).get("precision")
        if p:
            precision[stage[:2]] = p
    if precision:
        kinds = sorted({p["resolved"] for p in precision.values()})
        check = next(iter(precision.values())).get("check", "")
        lines.append(f"- Precision of training and unlearning steps: **{' / '.join(kinds)}** ("
                     + ", ".join(f"{k} {p['resolved']}" for k, p in precision.items())
                     + f"; asked for: {', '.join(sorted({p['requested'] for p in precision.values()}))}; hardware: "
                     f"{check}); every evaluation pass runs in fp32")
    for stage, track in (("04_unlearn_vit", "ViT"), ("05_unlearn_gan", "ResNet")):
        u = m.get(stage, {})
        if "budget" in u:
            lines.append(f"- {track} compute budget per method: {budget_text(u)}")
    if "pretrained" in vit:
        lines.append("- ViT: " + ("ImageNet-pretrained (timm)" if vit["pretrained"] else
                                  "**randomly initialised** (no ImageNet weights were used), so its accuracies are far "
                                  "below reference A's pretrained setting") + f", {vit.get('img_size', '?')} px inputs")
    return lines


def budget_text(u: dict) -> str:
    """Stage 04/05's budget in words: the fraction of gold's training cost, its counted units (null in the JSON when
    there is no budget), the BatchNorm policy of the literature methods and the budget-curve fractions."""
    units = u.get("budget_units")
    if not u["budget"]:
        text = "none (--budget 0: every method runs its full schedule)"
    else:
        text = f"{u['budget']:g} x gold's training cost"
        if isinstance(units, (int, float)) and math.isfinite(units):
            text += f" ({units:,.0f} units = images forward + 2 x images backward)"
    if u.get("bn"):
        text += f"; BatchNorm policy: {u['bn']}"
    if u.get("budgets"):
        text += "; budget curve at " + ", ".join(f"{b:g}" for b in u["budgets"]) + " x gold's cost"
    return text


def caution(track: str, df: pd.DataFrame) -> list[str]:
    """The run cannot show unlearning when original and gold are indistinguishable on the forget rows."""
    key = FORGET_KEY[track]
    if not {"original", "gold"} <= set(df.index) or key not in df.columns:
        return []
    ns = gap_not_significant(df, "original", key)
    if not ns:
        return []
    return [f"**Caution:** original's forget accuracy ({df.loc['original', key]:.1f} %) is indistinguishable from "
            f"gold's ({df.loc['gold', key]:.1f} %; the 95 % interval of their gap contains 0): the forget data left no "
            "measurable trace, so this run cannot show whether unlearning works on this track.", ""]


def track_floor(per_seed: dict, track: str, cols: list[str]) -> pd.Series:
    """common.aggregate.noise_floor, plus Avg Gap's floor: the Avg Gap between the two golds (same terms)."""
    floor = noise_floor(per_seed, cols)
    terms = [floor.get(k) for k in GAP_KEYS[track] if k in floor.index]
    if "attack_mia_efficacy" in floor.index:
        terms.append(100 * floor["attack_mia_efficacy"])
    floor["avg_gap"] = sum(terms) / len(terms) if terms and all(pd.notna(t) for t in terms) else math.nan
    return floor


def agg_cell(agg: pd.DataFrame, model: str, col: str, marks: pd.DataFrame | None = None,
             one: pd.DataFrame | None = None) -> str:
    """mean ± std over seeds [95 % interval: t across seeds, or with one seed the row bootstrap of that seed]
    (gap to gold, ≠ = the gap is shown, ≡ = equivalent to gold at the stated margin; common.verdict)."""
    v = agg.loc[model, col]
    if pd.isna(v):
        return "–"
    d = digits_for(col)
    s = f"{v:.{d}f}" + (f" ± {agg.loc[model, f'{col}_std']:.{d}f}" if pd.notna(agg.loc[model, f"{col}_std"]) else "")
    lo, hi = agg.loc[model].get(f"{col}_lo"), agg.loc[model].get(f"{col}_hi")
    if (lo is None or pd.isna(lo)) and one is not None and f"{col}_ci_lo" in one.columns and model in one.index:
        lo, hi = one.loc[model, f"{col}_ci_lo"], one.loc[model, f"{col}_ci_hi"]
    if lo is not None and pd.notna(lo) and (col == "avg_gap" or col not in NO_GAP):  # costs: mean ± std only
        s += f" [{lo:.{d}f}, {hi:.{d}f}]"
    if model != "gold" and col not in NO_GAP and pd.notna(agg.loc[model].get(f"{col}_gap", math.nan)):
        mark = ""
        if marks is not None and model in marks.index and f"{col}_different" in marks.columns:
            mark = (", ≠" if V.yes(marks.loc[model, f"{col}_different"]) else "") + \
                   (", ≡" if V.yes(marks.loc[model, f"{col}_equivalent"]) else "")
        s += f" ({agg.loc[model, f'{col}_gap']:+.{d}f}{mark})"
    return s


def agg_table(agg: pd.DataFrame, cols: list[str], names: dict, marks: pd.DataFrame | None = None,
              one: pd.DataFrame | None = None, comp: dict | None = None) -> str:
    """One row per model; with `comp` (common.verdict.compare) a group and a rank [interval] column first."""
    cols = [c for c in cols if c in agg.columns]
    head = (["group", "rank [95 % interval]"] if comp else []) + [names.get(c, c) for c in cols]
    lines = ["| model | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for m in agg.index:
        cells = []
        if comp:
            r = comp["ranks"]
            cells += [comp["groups"].get(m, ""),
                      f"{r.loc[m, 'rank']} [{r.loc[m, 'rank_lo']}, {r.loc[m, 'rank_hi']}]" if m in r.index else ""]
        cells += [agg.loc[m, c] if c == "status" else agg_cell(agg, m, c, marks, one) for c in cols]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def agg_status(per_seed: dict, model: str) -> str:
    """The status over seeds: 'cut' when every seed's run was cut, 'cut (1/3 seeds)' when some were; same for
    'over budget'."""
    rows = [df.loc[model] for df in per_seed.values() if model in df.index]
    marks = []
    for key, name in STATUS_FLAGS:
        k = sum(r.get(key) in (True, 1) for r in rows)
        if k:
            marks.append(name if k == len(rows) else f"{name} ({k}/{len(rows)} seeds)")
    return ", ".join(marks)


def aggregate_track(per_seed: dict, track: str, floor: pd.Series | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Mean ± std over seeds of every shown figure, the noise floor (computed here unless given), the status over
    seeds, models sorted by mean Avg Gap."""
    cols = list(dict.fromkeys(c for c in MAIN_COLS[track] + ["avg_gap", "units", "pct_of_gold", "seconds", "rte_pct_of_gold"]
                              + VIT_EXTRA + PAST_HEAD + ATTACK_COLS if any(c in df.columns for df in per_seed.values())))
    floor = track_floor(per_seed, track, cols) if floor is None else floor
    agg = aggregate(per_seed, cols, floor)
    if any({"cut", "over_budget", "phases_dropped"} & set(df.columns) for df in per_seed.values()):
        agg["status"] = [agg_status(per_seed, m) for m in agg.index]
    refs = [r for r in (*REFS, "gold_2") if r in agg.index]
    rest = agg.drop(index=refs)
    if "avg_gap" in agg.columns:
        rest = rest.sort_values("avg_gap", na_position="last")
    return pd.concat([agg.loc[refs], rest]), floor


def number(x) -> float:
    """A JSON figure as a float: NaN for null, a missing key or a non-number."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def point_gap(track: str, point: dict, gold: pd.Series) -> float:
    """Avg Gap of one set of figures against a tree's gold row: mean |x - gold| over the track's accuracy keys (%)
    and 100 x |attack_mia_efficacy - gold's| (fractions -> %), over the terms gold has (as in add_summaries); NaN
    when the point lacks one of them."""
    terms = [abs(number(point.get(k)) - float(gold[k])) for k in GAP_KEYS[track] if pd.notna(gold.get(k))]
    if pd.notna(gold.get("attack_mia_efficacy")):
        terms.append(100 * abs(number(point.get("attack_mia_efficacy")) - float(gold["attack_mia_efficacy"])))
    return sum(terms) / len(terms) if terms else math.nan


def curve_points(m: dict, tables: dict) -> dict[str, list[dict]]:
    """Per track, one tree's budget-curve points (stage 04/05 `curve`: {method: [{budget, units, pct_of_gold, cut,
    over_budget, accuracies, attack_mia_efficacy}]}) with their Avg Gap against the same tree's gold (accuracies
    from its tables, gold's MIA-efficacy from stage 06); x = the compute actually used (pct_of_gold, else units /
    gold's units). Diverged points are left out. {} for a track with no curve or no gold."""
    out = {}
    for track, stage in UNLEARN_STAGE.items():
        curve, df = m.get(stage, {}).get("curve") or {}, tables.get(track)
        if not curve or df is None or "gold" not in df.index:
            continue
        gold, pts = df.loc["gold"], []
        for method, points in curve.items():
            for p in points if isinstance(points, list) else []:
                if not isinstance(p, dict) or p.get("diverged") in (True, 1):
                    continue
                pct = number(p.get("pct_of_gold"))
                if math.isnan(pct) and pd.notna(gold.get("units")) and gold.get("units", 0) > 0:
                    pct = 100 * number(p.get("units")) / float(gold["units"])
                pts.append(dict(method=method, budget=number(p.get("budget")), pct_of_gold=pct,
                                avg_gap=point_gap(track, p, gold), over_budget=p.get("over_budget") in (True, 1),
                                cut=p.get("cut") in (True, 1)))
        if pts:
            out[track] = pts
    return out


def table_points(track: str, df: pd.DataFrame, m: dict) -> list[dict]:
    """The budget figure's fallback, one tree: each method's single budgeted run (compute used, Avg Gap)."""
    if df is None or not {"pct_of_gold", "avg_gap"} <= set(df.columns):
        return []
    budget = number(m.get(UNLEARN_STAGE[track], {}).get("budget"))
    return [dict(method=model, budget=budget, pct_of_gold=df.loc[model, "pct_of_gold"], avg_gap=df.loc[model, "avg_gap"],
                 over_budget=df.loc[model].get("over_budget") in (True, 1), cut=df.loc[model].get("cut") in (True, 1))
            for model in df.index if model not in (*REFS, "gold_2") and df.loc[model].get("diverged") not in (True, 1)]


def budget_curves(trees: dict, tracks: list[str]) -> dict[str, pd.DataFrame]:
    """{track: aggregate_curve over every seed tree's curve points}; a track no tree has a curve for falls back to
    each method's single budgeted run, so the figure exists whenever the tables have units."""
    curves = {}
    for track in tracks:
        pts = [p for t in trees.values() for p in t["curve"].get(track, [])]
        if not pts:
            pts = [p for t in trees.values() for p in table_points(track, t["tables"].get(track), t["m"])]
        if pts:
            curves[track] = aggregate_curve(pd.DataFrame(pts))
    return curves


def reproduction_tables(m: dict, tables: dict) -> dict[str, pd.DataFrame]:
    """Per track, the references' methods run with no budget (stage 04/05 `reproduction`, paper profile), beside the
    tree's gold row, with the summaries of add_summaries. Stage 06 attacks only the budgeted models, so unless the
    entries carry attack_mia_efficacy the attack columns are dropped and Avg Gap is over the three accuracies."""
    out = {}
    for track, stage in UNLEARN_STAGE.items():
        rep, df = m.get(stage, {}).get("reproduction") or {}, tables.get(track)
        if not rep or df is None or "gold" not in df.index:
            continue
        rows = {method: flatten({k: x for k, x in v.items() if k not in DROP}) for method, v in rep.items()
                if isinstance(v, dict)}
        gold = df.loc["gold"].to_dict()
        if not any("attack_mia_efficacy" in r for r in rows.values()):
            gold = {k: v for k, v in gold.items() if not k.startswith("attack_")}
        table = pd.DataFrame.from_dict({"gold": gold, **rows}, orient="index")
        out[track] = add_summaries(track, table.drop(columns=["avg_gap", "status"], errors="ignore"))
    return out


REPRO_COLS = ["avg_gap", "pct_of_gold", "seconds", "rte_pct_of_gold"]
REPRO_TITLE = ("**Reproduction (no budget, as the references ran)**: the references' methods with their own "
               "settings and full schedules, no compute budget; Avg Gap over the terms shown (stage 06 attacks only "
               "the budgeted models).")


TITLES = {"vit": "ViT track: class-wise forgetting (reference A's scenario)",
          "resnet": "ResNet track: sample-wise forgetting (reference B's scenario)"}


def settings_lines(m: dict, track: str) -> list[str]:
    """Per method: where its settings came from (stage 04 / 05 metrics `tuned`): tuned by `make tune` (trials,
    tuning problem, objective against the defaults' on the tuning problem, tuning cost) or official defaults (why)."""
    stage = m.get({"vit": "04_unlearn_vit", "resnet": "05_unlearn_gan"}[track], {})
    prov = stage.get("tuned") or {}
    skipped = [f"- Not run on this track: {n} ({why})." for n, why in (stage.get("not_applicable") or {}).items()]
    if not prov:
        return skipped + [""] * bool(skipped)
    lines = ["Settings per method (`make tune`: Optuna TPE on the tuning problem, which the report never scores; "
             "objective = norm of the gaps to the tuning gold on forget, retain and test_val accuracy and the "
             "membership figure, in points). The tuning cost is stated apart from each run's compute and RTE:", ""]
    for name, p in prov.items():
        if p.get("status") == "tuned":
            text = (f"tuned ({p.get('trials')} trials, tuning problem: {p.get('tuning', '?')}; objective "
                    f"{p.get('objective')} vs {p.get('default_objective')} at the official defaults; tuning cost "
                    f"{p.get('cost_pct_of_gold')} % of gold): " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float)
                                                                             else f"{k} {v}" for k, v in p["settings"].items()))
            if p.get("overridden"):
                text += f"; set on the command line instead: {', '.join(p['overridden'])}"
            if p.get("precision_differs"):
                text += (f"; **tuned in {p.get('tuned_precision')}**, this run computes in another precision (header): "
                         "the settings are used as tuned, but were chosen by trials in the other precision")
        elif p.get("status") == "stale":
            text = f"official defaults: the tuned entry is **stale** ({p.get('why')})"
        else:
            text = f"official defaults ({p.get('why', '')})"
        lines.append(f"- {name}: {text}")
    return lines + skipped + [""]


def claims(per_seed: dict, boots: dict, track: str) -> dict:
    """common.verdict for one track: the methods' comparison, the margins, every model's marks, the calibration."""
    cols = [c for c in MAIN_COLS[track] if any(c in df.columns for df in per_seed.values())]
    marked = cols + [c for c in PAST_HEAD if any(c in df.columns for df in per_seed.values())]
    models = [m for m in dict.fromkeys(m for df in per_seed.values() for m in df.index) if m != "gold"]
    margin, cal_margin = V.margins(per_seed, marked), V.margins(per_seed, marked, with_gold_2=False)
    comp = V.compare(per_seed, boots, V.methods_of(per_seed))
    mk = V.marks(per_seed, models, marked, margin, cal_margin)
    extra = [c for c in PAST_HEAD if c in marked]
    lines = V.verdict(per_seed, comp, mk.loc[[m for m in mk.index if m in comp["means"]]], margin, cols, NAMES,
                      extra) if "gold" in next(iter(per_seed.values())).index else ["- No gold: nothing can be claimed."]
    return dict(comp=comp, marks=mk, margin=margin, cols=cols, lines=lines,
                calibration=V.calibration_line(per_seed, cols, cal_margin, NAMES))


def per_seed_report(trees: dict, floors: dict) -> str:
    """07_report/per_seed.md: every seed's own tables (value [95 % row-bootstrap interval] (gap to gold))."""
    lines = ["# Per-seed tables", "", "Cells: value [95 % bootstrap interval over rows] (gap to gold; **n.s.** when "
             "the gap's interval contains 0: not shown, which is not \"equal\"; paired bootstrap for accuracies and "
             "Avg Gap, gold's value inside the model's interval for the other figures). The summary and the tests are "
             "in ../report.md.", ""]
    for seed, t in trees.items():
        lines += [f"## Seed {seed}", ""]
        for track, df in t["tables"].items():
            fl = floors[track] if len(trees) == 1 else None  # one seed: gold_2 gives this seed's floor
            lines += [f"### {TITLES[track]}", ""] + caution(track, df)
            lines += [markdown_table(df, MAIN_COLS[track] + SUMMARY_COLS, NAMES, fl), ""]
            if track == "vit":
                lines += [markdown_table(df, VIT_EXTRA, NAMES, fl), "", markdown_table(df, PAST_HEAD, NAMES, fl), ""]
            attack = [c for c in ATTACK_COLS if c in df.columns]
            if attack:
                lines += ["Membership-inference attacks (stage 06; AUC = held-out members vs non-members, forget AUC "
                          "= forget rows vs held-out non-members; gold's row is the target):", "",
                          markdown_table(df, attack, {c: c.removeprefix("attack_") for c in attack}, fl), ""]
            if track in t["repro"]:
                lines += [REPRO_TITLE, "", markdown_table(t["repro"][track], MAIN_COLS[track] + REPRO_COLS, NAMES, fl),
                          ""]
    return "\n".join(lines) + "\n"


HOW_TO_READ = (
    "How to read: gold, the model retrained without the forget data, is the target of every figure, not 0 or 100. "
    "Cells: mean ± std across training seeds (sample std, ddof 1) [95 % interval: Student t across seeds; with one "
    "seed the bootstrap over rows] (mean gap to gold). **≠** = the gap is shown (its 95 % interval excludes 0); "
    "**≡** = equivalent to gold: two one-sided t-tests across >= 3 seeds against the margin stated per track (a lower "
    "confidence bound of gold's seed-to-seed spread, Holm over the track's tests: family-wise error <= 0.05); a cell "
    "with neither mark is not shown either way (an interval that contains 0 is not \"equal\"); both marks = a real "
    "gap that is smaller than the margin. **group**: methods "
    "sharing a letter are not told apart on Avg Gap, two with no common letter are (Piepho's letters); **rank** "
    "[interval] = 1 + the methods significantly better, "
    "N - the methods significantly worse (Holm-corrected pairwise tests, the test named in the verdict). **Avg Gap** "
    "= mean |gap| over forget, retain and test accuracy and MIA-efficacy, in % (lower is better); with one seed its "
    "interval is stage 06's paired row bootstrap of all four terms (MIA-efficacy's SVC stays fitted, only its calls "
    "on the forget rows are resampled). **Compute % of "
    "gold** = the counted work a model used, as % of gold's training cost: 1 unit per image forward through any "
    "network and 2 more per image backward, so gold's cost = epochs x rows x 3. Status **cut** = the budget stopped "
    "the method before its schedule ended; **over budget** = an indivisible pass (e.g. SSD's importances) exceeded "
    "the budget and still ran in full. **RTE** = wall time of the unlearning steps, in seconds and as % of gold's "
    "training time: reported only, wall time never decides anything. JS = Jensen-Shannon distance with scipy's "
    "natural-log base (reference A's unit, range [0, 0.833]).")


# the population attacks behind "no gap shown" in the audit: MIA-efficacy and stage 06's forget-row attack AUCs
POPULATION_ATTACKS = ["attack_mia_efficacy", "attack_loss_forget_auc", "attack_calibrated_forget_auc"]


def run_audit(trees: dict, cfg, out: Path, results: Path) -> tuple[list[str], dict, dict]:
    """The per-example audit over every tree (common.audit_report): its report lines, figures and metrics; writes
    results/audit.csv (per model) and 07_report/audit_examples.csv (per forget example)."""
    inputs = AR.load({s: t["path"] for s, t in trees.items()})
    df, examples = AR.run(inputs, cfg.audit_boot, cfg.audit_permutations, cfg.seed)
    per_seed = {s: t["tables"]["resnet"] for s, t in trees.items() if "resnet" in t["tables"]}
    cols = [c for c in POPULATION_ATTACKS if any(c in d.columns for d in per_seed.values())]
    like_gold = {m: bool(cols) and not any(V.yes(V.different(per_seed, m, c)) for c in cols) for m in df["model"]}
    with atomic_path(results / "audit.csv") as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(out / "audit_examples.csv") as tmp:
        examples.to_csv(tmp, index=False)
    figs = {"Per-example audit: histogram of per-example AUC per model (0.5 = indistinguishable from gold)":
            plot_audit_auc(examples, out),
            "Per-example audit: attack accuracy against the original-vs-gold gap of each forget example":
            plot_audit_exposure(examples, out)}
    metrics = dict(trees=inputs["trees"], not_audited=inputs["missing"], diverged=inputs["diverged"],
                   population_like_gold=like_gold,
                   models={r["model"]: {k: v for k, v in r.items() if k != "model"} for r in df.to_dict("records")})
    return AR.section(df, inputs, like_gold), figs, metrics


def build_report(trees: dict, aggs: dict, floors: dict, repro: dict, figs: dict, results: Path, cl: dict,
                 audit: list[str] = ()) -> str:
    """report.md, what a reader may conclude first: the verdict per track (from the tests), then one short table per
    track (Avg Gap with its interval, group letters, rank, compute) and the figures; the detail after, under
    headings: the run (data, profile, precision, budgets), how to read, per track the full tables (margins, every
    figure, ViT's extra and past-the-head figures, attacks, the reproduction, settings), the audit, a link to the
    per-seed tables."""
    first = next(iter(trees.values()))
    seeds = list(trees)
    lines = ["# Unlearning report", ""]
    for seed, t in trees.items():
        if t["missing"]:
            lines += [f"## Missing stages (seed {seed})", ""] + t["missing"] + [""]
    lines += ["## Verdict", ""]
    for track in aggs:
        lines += [f"**{TITLES[track]}**", ""] + cl[track]["lines"] + [""]
        if cl[track]["calibration"]:
            lines += [cl[track]["calibration"], ""]
    per_track = {track: {s: t["tables"][track] for s, t in trees.items() if track in t["tables"]} for track in aggs}
    ones = {track: (first["tables"].get(track) if len(seeds) == 1 else None) for track in aggs}
    lines += [f"## Summary over {len(seeds)} training seed{'s' if len(seeds) > 1 else ''} ({', '.join(seeds)})", "",
              "Avg Gap to gold (lower is better) with its 95 % interval, the groups that cannot be told apart, the "
              "rank interval and the counted compute; every figure of every model is under \"Details\" below.", ""]
    for track, agg in aggs.items():
        lines += [f"### {TITLES[track]}", ""]
        if all(caution(track, t["tables"][track]) for t in trees.values() if track in t["tables"]):
            lines += caution(track, first["tables"][track]) if track in first["tables"] else []
        lines += [agg_table(agg, ["avg_gap", "pct_of_gold", "status"], NAMES, cl[track]["marks"], ones[track],
                            cl[track]["comp"]), ""]
    lines += ["## Figures", ""]
    for name, path in figs.items():
        if path is not None and Path(path).is_file():
            lines += [f"**{name}**", "", f"![{name}]({Path(path).relative_to(results).as_posix()})", ""]
    lines += ["## Run", ""] + header(first["m"], first["path"], seeds)
    ids = [tree_ids(t) for t in trees.values()]
    splits, classes = sorted({str(i["split_seed"]) for i in ids}), sorted({str(i["forget_class"]) for i in ids})
    if len(splits) > 1 or len(classes) > 1:
        lines.append(f"- Trees: {len(trees)} = training seeds x forget sets (split seeds {', '.join(splits)}; forget "
                     f"classes {', '.join(classes)}), aggregated like seeds: every spread below includes the choice of "
                     "forget data (the header's forget class and sizes are the first tree's)")
    lines += ["", HOW_TO_READ, "", "## Details per track", ""]
    for track, agg in aggs.items():
        c, one = cl[track], ones[track]
        margin = c["margin"].dropna()
        golds = {k: ", ".join(f"{g:.{digits_for(k)}f}" for g in V.values(per_track[track], "gold", k)) for k in margin.index}
        margin_text = (", ".join(f"{NAMES.get(k, k)} ±{v:.{digits_for(k) + (1 if 0 < v < 0.1 else 0)}f} (golds {golds[k]})"
                                 for k, v in margin.items()) +
                       f" (1.96 x √2 x a lower confidence bound of the seed-to-seed std of {len(seeds)} golds and "
                       "their gold_2s, one pair per tree, " + (
                           "pooled within forget sets, so the choice of forget data does not widen it"
                           if len(splits) > 1 or len(classes) > 1 else
                           "that differ by training seed only: initial weights and batch order, same data and retain "
                           "rows") +
                       "; within a tree gold starts from the original's initial weights; common.stats)") if len(margin) else \
            f"none ({len(seeds)} gold{'s' if len(seeds) != 1 else ''}: at least 3 are needed)"
        lines += [f"### {TITLES[track]}", ""]
        lines += [f"Equivalence margins: {margin_text}.", "",
                  agg_table(agg, ["avg_gap"] + MAIN_COLS[track] + SUMMARY_COLS[1:], NAMES, c["marks"], one, c["comp"]), ""]
        if track == "vit":
            lines += [agg_table(agg, VIT_EXTRA, NAMES, c["marks"], one), ""]
            if any(k in agg.columns for k in PAST_HEAD):
                lines += ["Past the head (stage 04, common.probes): forget-class test accuracy during the same short "
                          "fine-tune of every model on forget-class + retain train rows (mean over its checkpoints), "
                          "and a linear probe's AUC for the forget class on pre-logit features (fitted on test_unseen "
                          "+ test_val, scored on test_eval):", "",
                          agg_table(agg, PAST_HEAD, NAMES, c["marks"], one), ""]
        attack = [k for k in ATTACK_COLS if k in agg.columns]
        if attack:
            lines += ["Attacks (stage 06):", "",
                      agg_table(agg, attack, {k: k.removeprefix("attack_") for k in attack}, None, one), ""]
        if track in repro:
            lines += [REPRO_TITLE, "", agg_table(repro[track], MAIN_COLS[track] + REPRO_COLS, NAMES), ""]
        lines += settings_lines(first["m"], track)
    lines += list(audit)
    lines += ["Per-seed tables (each seed's values with row-bootstrap intervals): "
              "[07_report/per_seed.md](07_report/per_seed.md).", "",
              "Units: accuracy in %, compute in % of gold's training cost (counted units), entropy in nats, JS "
              "distance natural log, RTE in seconds of wall time; attack AUC/TPR/FNR/MIA-efficacy as fractions."]
    return "\n".join(lines) + "\n"


def claims_json(c: dict) -> dict:
    """The tests of one track as JSON: test used, pairs (with Holm p), ranks, groups, margins, marks, verdict."""
    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v
    comp = c["comp"]
    return {"by": comp["by"], "note": comp["note"], "mean_avg_gap": comp["means"],
            "pairs": [{k: clean(v) for k, v in r.items()} for r in comp["pairs"].to_dict("records")],
            "ranks": comp["ranks"].astype(int).to_dict("index"), "groups": comp["groups"],
            "margins": {k: clean(v) for k, v in c["margin"].items()},
            "marks": {m: {k: clean(v) for k, v in r.items()} for m, r in c["marks"].to_dict("index").items()},
            "verdict": c["lines"], "calibration": c["calibration"]}


def tree_ids(t: dict) -> dict:
    """A tree's training seed, split seed (sample-wise forget set) and forgotten class (stage 01's manifest and
    metrics); the tree id itself when 01 has not run."""
    cfg = (read_json(t["path"] / "01_prepare_data" / "manifest.json") or {}).get("config", {})
    prep = t["m"].get("01_prepare_data", {})
    return dict(seed=cfg.get("seed", t["path"].name.removeprefix("seed-")), split_seed=cfg.get("split_seed"),
                forget_class=prep.get("forget_class"))


def seed_trees(results: Path, seeds: str) -> dict[str, Path]:
    """{seed: tree}: the named seeds' results/seed-<s>/, else every seed-* tree found, else results itself."""
    if seeds.split():
        return {s: results / f"seed-{s}" for s in seeds.split()}
    found = sorted(results.glob("seed-*"), key=lambda p: p.name)
    if found:
        return {p.name.removeprefix("seed-"): p for p in found}
    man = read_json(results / "01_prepare_data" / "manifest.json") or {}
    return {str(man.get("seed", "?")): results}


def main() -> None:
    cfg = parse_config(ReportConfig)
    print_config(STAGE, cfg)
    started = time.time()
    results = Path(cfg.results)
    out = results / STAGE
    log = RunLog(out, STAGE, config_dict(cfg), cfg.wandb)
    trees = {}
    chosen = tuple(t for t in ("vit", "resnet") if t in cfg.tracks.replace(",", " ").split())
    if not chosen:
        raise PipelineError(f"--tracks {cfg.tracks!r} names no track: use vit, resnet or both")
    for seed, path in seed_trees(results, cfg.seeds).items():
        m, missing = load_all(path, chosen)
        tables = {t: add_summaries(t, df) for t, df in track_tables(m).items() if t in chosen}
        trees[seed] = dict(path=path, m=m, missing=missing, tables=tables, curve=curve_points(m, tables),
                           repro=reproduction_tables(m, tables))
    tracks = list(dict.fromkeys(t for tree in trees.values() for t in tree["tables"]))
    aggs, floors, repro = {}, {}, {}
    for track in tracks:
        per_seed = {s: t["tables"][track] for s, t in trees.items() if track in t["tables"]}
        aggs[track], floors[track] = aggregate_track(per_seed, track)
        per_seed_repro = {s: t["repro"][track] for s, t in trees.items() if track in t["repro"]}
        if per_seed_repro:  # the same golds: the track's noise floor applies
            repro[track] = aggregate_track(per_seed_repro, track, floors[track])[0]
    cl = {track: claims({s: t["tables"][track] for s, t in trees.items() if track in t["tables"]},
                        {s: t["m"]["boot"].get(track, {}) for s, t in trees.items()}, track) for track in aggs}
    curves = budget_curves(trees, tracks)
    frames = [df.assign(tree=tid, track=track, **tree_ids(t)).reset_index(names="model")
              for tid, t in trees.items() for track, df in t["tables"].items()]
    keys = ["tree", "seed", "split_seed", "forget_class", "track", "model"]
    summary = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=keys)
    summary = summary[keys + [c for c in summary.columns if c not in keys]]
    first = next(iter(trees.values()))
    figs = {"Avg Gap to gold against compute (% of gold's training cost, counted units, log x), one line per "
            "method, one panel per track (mean ± std over seeds; hollow = over budget)":
            plot_budget_curve(curves, out, {t: f.get("avg_gap") for t, f in floors.items()}),
            "Accuracy per split and model (mean, std across seeds)": plot_accuracy(summary, out),
            "t-SNE of ViT pre-logit features (forget vs retain, first seed)": first["path"] / "04_unlearn_vit" / "tsne.png",
            "Jensen-Shannon distance to gold and entropy (ViT, first seed)": plot_js_entropy(first["tables"], out),
            "Membership-inference ROC curves (log-log, first seed)": plot_roc(first["m"]["roc"], out),
            "Training curves (first seed)": plot_training(first["m"], out)}
    audit_lines, audit_metrics = [], None
    if cfg.audit:
        audit_lines, audit_figs, audit_metrics = run_audit(trees, cfg, out, results)
        figs.update(audit_figs)
    else:  # a re-run without the audit leaves no stale audit behind
        for stale in (results / "audit.csv", out / "audit_examples.csv", out / "audit_auc.png", out / "audit_exposure.png"):
            stale.unlink(missing_ok=True)
    with atomic_path(results / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    report = build_report(trees, aggs, floors, repro, figs, results, cl, audit_lines)
    with atomic_path(out / "per_seed.md") as tmp:
        tmp.write_text(per_seed_report(trees, floors))
    log.log("report", seeds=len(trees), models=len(summary), missing_stages=sum(len(t["missing"]) for t in trees.values()))
    if log.wandb.__class__.__name__ != "_NoWandb":
        import wandb

        log.wandb.log({"summary": wandb.Table(dataframe=summary.fillna(float("nan")))})
        log.wandb.log({k: wandb.Image(str(p)) for k, p in figs.items() if p is not None and Path(p).is_file()})
    def numeric(aggs: dict) -> dict:
        return {f"{t}/{m}": {k: v for k, v in row.items() if isinstance(v, (int, float)) and not
                             (isinstance(v, float) and math.isnan(v))}
                for t, agg in aggs.items() for m, row in agg.to_dict("index").items()}

    metrics = {"seeds": list(trees), "noise_floor": {t: f.dropna().to_dict() for t, f in floors.items()},
               "models": numeric(aggs), "reproduction": numeric(repro),
               # per track: one record per (method, budget): compute used (% of gold) and Avg Gap, mean/std over seeds
               "budget_curve": {t: c.to_dict("records") for t, c in curves.items()},
               "missing_stages": sorted({s for t in trees.values() for s in STAGES if s not in t["m"]
                                         and STAGE_TRACK.get(s, chosen[0]) in chosen}),
               # per track: the tests behind the verdict (common.verdict)
               "claims": {t: claims_json(c) for t, c in cl.items()}}
    if audit_metrics is not None:  # the per-example audit (make audit): per model, every figure and interval
        metrics["audit"] = audit_metrics
    write_manifest(out, config_dict(cfg), resolve_device(cfg.device), started,
                   [t["path"] / s / "metrics.json" for t in trees.values() for s in STAGES],
                   [results / "summary.csv", out / "per_seed.md"] + [p for p in figs.values() if p is not None] +
                   ([results / "audit.csv", out / "audit_examples.csv"] if cfg.audit else []))
    log.close()
    save_json(metrics, out / "metrics.json")
    with atomic_path(results / "report.md") as tmp:  # the Make target: written last
        tmp.write_text(report)
    print(f"[{STAGE}] wrote {results / 'report.md'} and {results / 'summary.csv'} ({len(trees)} seed tree(s))")


if __name__ == "__main__":
    run_main(main)
