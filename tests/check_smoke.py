"""After the smoke pipeline (usage: check_smoke.py RESULTS SEED [SEED ...]): in every seed tree each stage wrote its
manifest and metrics; the aggregate report opens with a verdict, then a summary over all seeds, and
07_report/per_seed.md has one section per seed; every model of every track is a row of the report's tables and has
one row per seed in summary.csv, with finite headline figures (Avg Gap's row-bootstrap interval, ViT's relearn and
probe figures among them; a model marked diverged is exempt). With --tuned DIR (the smoke tuning run's settings): every tuned study
counted its trials, and stages 04 / 05 ran each tuned method at its tuned settings, the others at their official
defaults, and the report says which. With --audit (after `make audit K=...`, usage: check_smoke.py --audit RESULTS SEED
...): results/audit.csv has one row per audited model (the calibration rows original and gold_2, every stage-05
method) over all K trees, with finite figures inside their intervals; the report's audit section, 07's metrics and
figures are there. Exit status 1 with one line per problem."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: common/
from common.audit import k_needed  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# pct_of_gold: the counted compute as % of gold's training cost; stage 07 derives it for every model with units
# (original and gold_2 from stages 02/03 included), so no model may lack it.
HEADLINE = {"vit": ("acc_forget_train", "acc_retain_train", "acc_test_retain", "avg_gap", "avg_gap_ci_lo",
                    "avg_gap_ci_hi", "pct_of_gold", "jsd_gold_test_forget", "attack_mia_efficacy", "relearn_acc",
                    "relearn_acc_ci_lo", "probe_auc", "probe_auc_ci_lo"),
            "resnet": ("acc_forget", "acc_retain", "acc_test", "avg_gap", "avg_gap_ci_lo", "avg_gap_ci_hi",
                       "pct_of_gold", "attack_mia_efficacy", "attack_loss_forget_auc")}


def problems(results: Path, seeds: list[str]) -> list[str]:
    out = []
    report, summary = results / "report.md", results / "summary.csv"
    if not report.is_file() or not summary.is_file():
        return [f"{report} or {summary} is missing"]
    text, table = report.read_text(), pd.read_csv(summary, dtype={"seed": str})
    per_seed = results / "07_report" / "per_seed.md"
    seed_text = per_seed.read_text() if per_seed.is_file() else ""
    if f"## Summary over {len(seeds)} training seed" not in text:
        out.append(f"report.md has no summary over the {len(seeds)} seeds")
    if "## Verdict" not in text or text.index("## Verdict") > text.find("## Summary"):
        out.append("report.md does not open with its verdict")
    for seed in seeds:
        tree = results / f"seed-{seed}"
        for script in sorted(REPO.glob("0[1-6]_*.py")):
            for name in ("manifest.json", "metrics.json"):
                if not (tree / script.stem / name).is_file():
                    out.append(f"{script.name} ran but {tree / script.stem / name} is missing")
        if f"## Seed {seed}" not in seed_text:
            out.append(f"{per_seed} has no section for seed {seed}")
        out += model_problems(tree, seed, text, table)
    return out


def model_problems(tree: Path, seed: str, text: str, table: pd.DataFrame) -> list[str]:
    out = []
    for stage, track in (("02_train_resnet", "resnet"), ("05_unlearn_gan", "resnet"), ("04_unlearn_vit", "vit")):
        m = tree / stage / "metrics.json"
        for model in json.loads(m.read_text()).get("models", {}) if m.is_file() else []:
            if f"\n| {model} |" not in text:
                out.append(f"report.md has no table row for {track} model {model!r} of {stage}")
            row = table[(table.seed == seed) & (table.track == track) & (table.model == model)]
            if len(row) != 1:
                out.append(f"summary.csv has {len(row)} rows for seed {seed} {track}/{model}, not 1")
                continue
            if row.iloc[0].get("diverged") == 1:
                continue
            for col in HEADLINE[track]:
                v = row.iloc[0].get(col, float("nan"))
                if not isinstance(v, (int, float)) or not math.isfinite(v):
                    out.append(f"summary.csv: seed {seed} {track}/{model} has no finite {col} ({v!r})")
    return out


def tuning_problems(results: Path, seeds: list[str], tuned_dir: Path) -> list[str]:
    path = tuned_dir / "smoke.json"
    if not path.is_file():
        return [f"make tune wrote no {path}"]
    out, tracks = [], json.loads(path.read_text())["tracks"]
    text = (results / "report.md").read_text() if (results / "report.md").is_file() else ""
    if not (results / "tune" / "summary.json").is_file():
        out.append(f"{results / 'tune' / 'summary.json'} (every counted trial) is missing")
    for track, stage in (("vit", "04_unlearn_vit"), ("resnet", "05_unlearn_gan")):
        methods = tracks.get(track, {}).get("methods", {})
        if not methods:
            out.append(f"{path}: no tuned methods for the {track} track")
        for name, e in methods.items():
            if e["study"]["complete"] < e["study"]["trials"] or e["study"]["objective"] > e["study"]["default_objective"]:
                out.append(f"{path}: {track}/{name} counted too few trials or is worse than its defaults")
        for seed in seeds:
            mpath = results / f"seed-{seed}" / stage / "metrics.json"
            if not mpath.is_file():
                out.append(f"{mpath} is missing")
                continue
            m = json.loads(mpath.read_text())
            for name, prov in m.get("tuned", {}).items():
                want = "tuned" if name in methods else "official"
                if prov["status"] != want:
                    out.append(f"seed {seed} {stage}: {name} ran at {prov['status']} settings, expected {want}")
                if want == "tuned" and name in m["models"]:
                    ran = m["models"][name]["settings"]
                    if any(abs(ran[k] - v) > 1e-12 * max(1.0, abs(v)) for k, v in methods[name]["settings"].items()):
                        out.append(f"seed {seed} {stage}: {name} did not run at its tuned settings")
        if methods and f"- {next(iter(methods))}: tuned (" not in text:
            out.append(f"report.md does not say that {track} methods were tuned")
    return out


AUDIT_FIGURES = ("mean_auc", "mean_accuracy", "share_auc_ge_0_9", "tpr_at_1pct_fpr", "retain_mean_auc", "forget_score",
                 "rmia_auc")


def audit_problems(results: Path, seeds: list[str]) -> list[str]:
    out, csv = [], results / "audit.csv"
    if not csv.is_file():
        return [f"no {csv}"]
    df = pd.read_csv(csv).set_index("model")
    methods = {p.stem for p in (results / f"seed-{seeds[0]}" / "05_unlearn_gan" / "logits").glob("*.pt")}
    metrics = json.loads((results / "07_report" / "metrics.json").read_text())
    diverged = set(metrics.get("audit", {}).get("diverged", []))  # non-finite logits: named, not audited
    if diverged and "so not audited: " + ", ".join(sorted(diverged)) not in ((results / "report.md").read_text()
                                                                            if (results / "report.md").is_file() else ""):
        out.append(f"report.md does not name the diverged models {sorted(diverged)} as not audited")
    for m in sorted(({"original", "gold_2"} | methods) - diverged):
        if m not in df.index:
            out.append(f"audit.csv has no row for {m}")
            continue
        r = df.loc[m]
        if int(r["K"]) != len(seeds):
            out.append(f"audit.csv {m}: K = {r['K']}, expected {len(seeds)} trees")
        for f in AUDIT_FIGURES:
            v, lo, hi = r[f], r[f"{f}_ci_lo"], r[f"{f}_ci_hi"]
            if not all(math.isfinite(x) for x in (v, lo, hi)) or not lo - 1e-9 <= v <= hi + 1e-9:
                out.append(f"audit.csv {m}: {f} = {v} outside or without its interval [{lo}, {hi}]")
        if not 0 < r["perm_p"] <= 1:
            out.append(f"audit.csv {m}: permutation p {r['perm_p']}")
    text = (results / "report.md").read_text() if (results / "report.md").is_file() else ""
    wants = [f"## Per-example audit: sample-wise track, K = {len(seeds)}", "**Calibration**", "gold_2 (calibration)"]
    if len(seeds) < k_needed(len(methods)):  # the within-tree swaps cannot reach Holm's level: nothing is tested
        wants.append(f"**Cannot test at K = {len(seeds)}**")
    for want in wants:
        if want not in text:
            out.append(f"report.md lacks {want!r}")
    if set(metrics.get("audit", {}).get("models", {})) != set(df.index):
        out.append("07_report/metrics.json's audit does not list the models of audit.csv")
    for f in ("audit_auc.png", "audit_exposure.png", "audit_examples.csv"):
        if not (results / "07_report" / f).is_file():
            out.append(f"no 07_report/{f}")
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--audit":
        found = audit_problems(Path(args[1]), args[2:])
        for line in found:
            print(f"audit check: {line}")
        print(f"audit check: {'FAILED' if found else 'ok'} ({len(found)} problem(s))")
        sys.exit(1 if found else 0)
    tuned = None
    if "--tuned" in args:
        i = args.index("--tuned")
        tuned, args = Path(args[i + 1]), args[:i] + args[i + 2:]
    found = problems(Path(args[0]), args[1:])
    if tuned is not None:
        found += tuning_problems(Path(args[0]), args[1:], tuned)
    for line in found:
        print(f"smoke check: {line}")
    print(f"smoke check: {'FAILED' if found else 'ok'} ({len(found)} problem(s))")
    sys.exit(1 if found else 0)
