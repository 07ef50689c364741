"""Tune every unlearning method the same way: one Optuna study per (profile, track, method) on a tuning problem
that the report never scores, then the chosen settings written where stages 04 / 05 read them.

The tuning problem (results/tune/, built by the same stages: 01 --problem tune, 02, 03 at training seed
TUNE_SEED, which `make` keeps out of SEEDS) has its own original and gold, trained once. Class-wise it forgets
class TUNE_FORGET_CLASS (1; the report forgets 0); sample-wise its forget set is drawn from the pool rows outside
the reported forget set. The data, the three test pools and the sample-wise pool are the same rows as in every
reported tree (stage 01's pool seed; `data_hash`).

Objective (minimised, recorded per trial with its parts): the Euclidean norm of the gaps to the tuning gold, in
percentage points, on
  forget    accuracy on the tuning forget rows (sample-wise: all; class-wise: a seeded sample of --forget-rows)
  retain    accuracy on a fixed seeded sample of --retain-rows retain rows (the reported forget rows left out)
  val       accuracy on the test_val rows
  mia       100 x the track's membership figure with test_val rows as the non-members: sample-wise the loss
            attack's AUC (true-class log-probability, forget rows vs test_val rows), class-wise SalUn's
            MIA-efficacy (RBF SVC on true-class confidence, retain sample vs test_val rows of the other classes,
            share of forget rows called non-member)
as Deep Unlearn does (xcadet/deepunlearn munl/hpsearch/objectives.py: retain / forget / validation accuracy gaps
and MIA indiscernibility, Euclidean norm to pick the best). The reported forget rows and the test_eval rows never
enter it (`objective_rows` checks; a test too). Gold's figures come from the same evaluation of its weights.

Studies: a seeded TPE sampler per worker (seed = sampler_seed + worker, `constant_liar` for parallel workers),
`startup_trials` random start-up trials (default trials / 3: with 12 trials TPE is close to random search), the
method's official defaults (the profile's, from its file) enqueued once per study as trial 0 (by `create`, which
runs before the workers), the search space from the method's file, every trial at the same counted budget
(--budget x the tuning gold's units). Each study's best is taken over its first `trials` COMPLETE trials by trial
number, so parallel workers that overshoot do not buy a method more effort. Storage: an Optuna journal file
(<results>/studies.journal; file-locked, safe for local workers) or PostgreSQL (--storage postgresql://...;
Optuna's RDB storage with heartbeats: a trial whose worker died is failed after --grace-s and retried).

Actions
  create   make each study, enqueue the official defaults as its trial 0 (once)
  work     run trials until every study of this worker's tracks / methods has `trials` complete ones
  collect  choose each study's best, write <tuned_dir>/<profile>.json (settings, study summary, what they were
           tuned for: method file hash, profile, data hash) and <results>/summary.json (every counted trial)
Run
  make tune PROFILE=cpu DATA_SOURCE=kaggle DATA_DIR=... WORKERS=2 TRIALS=12  (tune tree, create, workers, collect)
  python -m common.tune --action work --profile cpu --tracks resnet --methods scrub --worker 1
  python -m common.tune --profile smoke --results results-smoke/results/tune --trials 4 --action collect
Browse: optuna-dashboard <results>/studies.journal (or the postgresql:// URL).
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from pathlib import Path

import torch

from common.config import (TuneConfig, ViTUnlearnConfig, ResNetUnlearnConfig, parse_config, print_config,
                           resolve_runtime)
from common.data import PREPARE_CMD, batches, load_prepared, stage_dir
from common.io import PipelineError, load_json, run_main, save_json, sha256
from common.methods import METHODS, methods_for
from common.metrics import group_auc, mia_efficacy, true_class_confidence, true_class_log_prob
from common.models import autocast, load_model
from common.seed import set_seed
from common.tracks import TRACKS, load_track
from common.train import predict
from common.unlearn import _run_once, chosen_methods, method_file_hash, tuned_file, with_method_settings

ACTIONS = ("create", "work", "collect")
UNLEARN_CONFIGS = {"vit": ViTUnlearnConfig, "resnet": ResNetUnlearnConfig}
PARTS = ("forget", "retain", "val", "mia")
DIVERGED = 1e3  # objective of a trial whose model gives non-finite logits (a finite value keeps TPE working)


# ------------------------------------------------------------------------------------------------ storage
def storage_of(cfg: TuneConfig):
    import optuna

    if not cfg.storage:
        path = Path(cfg.results) / "studies.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    if not cfg.storage.startswith(("postgresql://", "postgresql+psycopg2://")):
        raise PipelineError(f"--storage {cfg.storage!r}: use '' (journal file) or postgresql://user@host/db")
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)  # a dead worker's trial runs again
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; the pinned driver is psycopg2 (requirements.txt)
    url = cfg.storage.replace("postgresql://", "postgresql+psycopg2://", 1)
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=cfg.heartbeat_s, grace_period=cfg.grace_s,
                                          heartbeat_stale_trial_callback=retry)
    except Exception as e:  # sqlalchemy's OperationalError: no server, wrong user or database
        raise PipelineError(f"cannot open the study storage {cfg.storage} ({type(e).__name__}): start the "
                            "PostgreSQL server and create the database, or leave STORAGE empty (journal file)") from None


def storage_kind(cfg: TuneConfig) -> str:
    return "journal file" if not cfg.storage else "postgresql"


def study_name(profile: str, track: str, method: str) -> str:
    return f"{profile}/{track}/{method}"


def tree_id(cfg: TuneConfig, track: str) -> str:
    """Which tuning tree a study's trials were run on: the tuning seed and a hash of its gold's weights (a study is
    never continued on a rebuilt tree)."""
    gold = stage_dir(cfg.results, TRACKS[track]["stage"]) / "gold.pt"
    if not gold.is_file():
        raise PipelineError(f"no tuning gold {gold}: build the tuning tree first (make tune-tree, or make tune)")
    return f"seed {cfg.seed}, gold {sha256(gold)[:16]}"


def check_tree(study, cfg: TuneConfig, track: str) -> None:
    if study.user_attrs.get("tree") != tree_id(cfg, track):
        raise PipelineError(f"study {study.study_name} was filled on another tuning tree ({study.user_attrs.get('tree')}"
                            f"; now {tree_id(cfg, track)}): delete {Path(cfg.results) / 'studies.journal'} (or the "
                            "PostgreSQL studies) and re-run make tune")


def tuned_settings_cfg(cfg: TuneConfig, track: str):
    """The unlearning config of `track` at the profile's official defaults (the trials' starting point), at the
    tuning seed (every trial draws the same batch order from it)."""
    cls = with_method_settings(UNLEARN_CONFIGS[track], track, METHODS)
    ucfg = parse_config(cls, ["--profile", cfg.profile, "--results", cfg.results, "--device", cfg.device,
                              "--seed", str(cfg.seed), "--settings", "official", "--precision", cfg.precision])
    resolve_runtime(ucfg, quiet=True)
    return ucfg


def defaults_of(ucfg, name: str) -> dict:
    return {k: getattr(ucfg, f"{name}_{k}") for k in METHODS[name].SEARCH_SPACE}


def suggest(trial, space: dict) -> dict:
    out = {}
    for k, spec in space.items():
        kind = spec[0]
        if kind == "log":
            out[k] = trial.suggest_float(k, spec[1], spec[2], log=True)
        elif kind == "float":
            out[k] = trial.suggest_float(k, spec[1], spec[2])
        elif kind == "int":
            out[k] = trial.suggest_int(k, spec[1], spec[2])
        elif kind == "choice":
            out[k] = trial.suggest_categorical(k, list(spec[1]))
        else:
            raise PipelineError(f"search space of {k}: unknown kind {kind!r} (log, float, int or choice)")
    return out


# ---------------------------------------------------------------------------------------------- objective
def objective_rows(track: str, splits: dict, cfg: TuneConfig) -> dict:
    """The rows the objective scores, fixed and seeded: forget (train), retain (train), val (test_val) and, class-
    wise, the membership non-members (test_val rows of the other classes). Raises unless this is a tuning tree
    (stage 01 --problem tune) and unless none of them is a reported forget row or a test_eval row."""
    if "reported_forget" not in splits:
        raise PipelineError("this results tree is not a tuning problem (its splits have no reported_forget): build it "
                            "with python 01_prepare_data.py --problem tune --results results/tune (make tune)")
    gen = torch.Generator().manual_seed(cfg.seed)
    spec = TRACKS[track]
    forget, retain = splits[spec["forget"]], splits[spec["retain"]]
    # the reported problem's forget rows of this track (class-wise: the reported class; sample-wise: its forget set)
    reported = splits["reported_forget" if track == "vit" else "reported_sample_forget"]
    if len(forget) > cfg.forget_rows:
        forget = forget[torch.randperm(len(forget), generator=gen)[:cfg.forget_rows]].sort().values
    retain = retain[~torch.isin(retain, reported)]
    retain = retain[torch.randperm(len(retain), generator=gen)[:cfg.retain_rows]].sort().values
    rows = dict(forget=forget.sort().values, retain=retain, val=splits["test_val"])
    if torch.isin(rows["forget"], reported).any() or torch.isin(rows["retain"], reported).any():
        raise PipelineError("the tuning forget set shares rows with the reported forget set: rebuild results/tune "
                            "with this stage 01 (python 01_prepare_data.py --problem tune)")
    if torch.isin(rows["val"], splits["test_eval"]).any():
        raise PipelineError("test_val and test_eval overlap in this tree: rebuild it with stage 01")
    return rows


class Problem:
    """One track of the tuning tree, loaded once per worker: the original, the method context, the objective rows
    and gold's figures on them. `trial(name, params)` runs one method from the original at the trial budget."""

    def __init__(self, cfg: TuneConfig, track: str, device: str):
        self.track, self.device, self.cfg = track, device, cfg
        self.data, self.splits = load_prepared(cfg.results)
        self.prep = load_json(stage_dir(cfg.results, "01_prepare_data") / "metrics.json", "stage 01 metrics", PREPARE_CMD)
        self.ucfg = tuned_settings_cfg(cfg, track)
        self.t = load_track(track, self.ucfg, device, self.data, self.splits)
        self.rows = objective_rows(track, self.splits, cfg)
        self.initial = {k: v.detach().clone() for k, v in self.t.model.state_dict().items()}
        self.limit = cfg.budget * self.t.gold_units
        gold, _ = load_model(self.t.ref_dir / "gold.pt", device, self.t.ref_cmd)
        if track == "resnet" and self.ucfg.channels_last:
            gold = gold.to(memory_format=torch.channels_last)
        self.gold = self.figures(gold)

    def _logits(self, model, split: str, rows: torch.Tensor) -> torch.Tensor:
        """Logits of `rows` in the trials' precision (bf16 autocast where --precision resolved to bf16): the
        objective's evaluation is overhead on top of the trial's budget, and gold's figures come from the same pass,
        so both carry the same rounding."""
        x, y = self.t.on_device[split]
        with autocast(self.device, self.ucfg.amp):
            return predict(model, batches(x, y, rows, self.ucfg.eval_batch_size, self.t.eval_transform, self.device),
                           self.device, desc=f"objective {split}")

    def figures(self, model) -> dict | None:
        """Accuracies (%) on the objective rows and the membership figure; None when the logits are not finite."""
        r, ytr, yte = self.rows, self.data["train_labels"], self.data["test_labels"]
        lf, lr, lv = (self._logits(model, "train", r["forget"]), self._logits(model, "train", r["retain"]),
                      self._logits(model, "test", r["val"]))
        if not all(torch.isfinite(t).all() for t in (lf, lr, lv)):
            return None
        acc = {k: 100.0 * (lg.argmax(1) == y).double().mean().item()
               for k, lg, y in (("forget", lf, ytr[r["forget"]]), ("retain", lr, ytr[r["retain"]]), ("val", lv, yte[r["val"]]))}
        if self.track == "resnet":  # loss attack: forget rows (members before unlearning) vs test_val rows
            mia = group_auc(true_class_log_prob(lf, ytr[r["forget"]]), true_class_log_prob(lv, yte[r["val"]]))
        else:  # MIA-efficacy with test_val rows of the other classes as non-members (balanced with retain)
            other = yte[r["val"]] != self.prep["forget_class"]
            n = int(min(other.sum().item(), len(r["retain"])))
            mia = mia_efficacy(true_class_confidence(lr[:n], ytr[r["retain"]][:n]),
                               true_class_confidence(lv[other][:n], yte[r["val"]][other][:n]),
                               true_class_confidence(lf, ytr[r["forget"]]))
        return dict(acc, mia=float(mia))

    def trial(self, name: str, params: dict) -> dict:
        t0 = time.perf_counter()
        ucfg = dataclasses.replace(self.ucfg, **{f"{name}_{k}": v for k, v in params.items()})
        self.t.ctx.cfg = ucfg
        run = _run_once(name, METHODS, self.t.model, self.initial, self.t.ctx, self.limit, [], None)
        figs = self.figures(self.t.model)
        seconds = time.perf_counter() - t0
        if figs is None:
            parts, value = {k: None for k in PARTS}, DIVERGED
        else:
            parts = {k: abs(figs[k] - self.gold[k]) * (100.0 if k == "mia" else 1.0) for k in PARTS}
            value = math.sqrt(sum(v * v for v in parts.values()))
        return dict(value=value, parts=parts, figures=figs, units=run["units"], steps=run["steps"], cut=run["cut"],
                    over_budget=run["over_budget"], method_s=run["seconds"], trial_s=round(seconds, 3),
                    diverged=figs is None)


# ------------------------------------------------------------------------------------------------ actions
def names_of(cfg: TuneConfig) -> tuple[list[str], list[str]]:
    tracks = [t.strip() for t in cfg.tracks.replace(" ", ",").split(",") if t.strip()]
    bad = [t for t in tracks if t not in TRACKS]
    if bad or not tracks:
        raise PipelineError(f"unknown or no track(s) {bad or cfg.tracks!r} in --tracks: use vit, resnet or both")
    return tracks, chosen_methods(cfg.methods, METHODS)  # per track: those of methods_for(track) (run_tracks)


def complete_trials(study) -> list:
    from optuna.trial import TrialState

    return sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)


def requeue_orphans(study) -> None:
    """Journal storage has no heartbeat: a trial still RUNNING when `create` runs (before any local worker starts)
    was left by a worker that died or was stopped. Mark it failed and queue its settings again (user attributes
    kept, so an interrupted defaults trial is still the defaults trial), as the RDB storage's heartbeat retry does."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        params = t.system_attrs.get("fixed_params") or t.params  # an enqueued trial's settings, even if never suggested
        study.enqueue_trial(params, user_attrs={k: v for k, v in t.user_attrs.items() if k == "defaults"})
        print(f"[tune] study {study.study_name}: trial {t.number} was left running by a stopped worker: failed, "
              "its settings queued again", flush=True)


def check_precision(study, precision: str) -> None:
    """A study's trials are comparable only in one precision: a worker that resolves another one is refused."""
    made = study.user_attrs.get("precision")
    if made is not None and made != precision:
        raise PipelineError(f"study {study.study_name} runs its trials in {made}, this worker resolves --precision to "
                            f"{precision}: pass PRECISION={made}, or delete the study storage and re-run make tune")


def create(cfg: TuneConfig, storage) -> None:
    import optuna

    tracks, methods = names_of(cfg)
    for track in tracks:
        ucfg = tuned_settings_cfg(cfg, track)
        for name in [n for n in methods if n in methods_for(track)]:  # a one-track method: its track only
            study = optuna.create_study(study_name=study_name(cfg.profile, track, name), storage=storage,
                                        direction="minimize", load_if_exists=True)
            if not study.get_trials(deepcopy=False):  # once per study, not once per worker
                study.enqueue_trial(defaults_of(ucfg, name), user_attrs={"defaults": True})
                study.set_user_attr("method_file", method_file_hash(name))
                study.set_user_attr("budget", cfg.budget)
                study.set_user_attr("tree", tree_id(cfg, track))
                study.set_user_attr("precision", ucfg.precision)  # every trial of a study runs in this precision
            check_tree(study, cfg, track)
            check_precision(study, ucfg.precision)
            if not cfg.storage:
                requeue_orphans(study)
            print(f"[tune] study {study.study_name}: {len(study.get_trials(deepcopy=False))} trial(s) so far", flush=True)


def work(cfg: TuneConfig, storage, device: str) -> None:
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tracks, methods = names_of(cfg)
    startup = cfg.startup_trials or max(1, round(cfg.trials / 3))
    for track in tracks:
        problem = None
        for name in [n for n in methods if n in methods_for(track)]:  # a one-track method: its track only
            sampler = optuna.samplers.TPESampler(seed=cfg.sampler_seed + cfg.worker, n_startup_trials=startup,
                                                 constant_liar=True)
            try:
                study = optuna.load_study(study_name=study_name(cfg.profile, track, name), storage=storage,
                                          sampler=sampler)
            except KeyError:
                raise PipelineError(f"no study {study_name(cfg.profile, track, name)} in the storage: run "
                                    "python -m common.tune --action create first (make tune does)") from None
            if study.user_attrs.get("method_file") != method_file_hash(name):
                raise PipelineError(f"common/methods/{name}.py changed since its study was created: delete the study "
                                    f"storage ({storage_kind(cfg)}) and re-run make tune")
            check_tree(study, cfg, track)
            check_precision(study, tuned_settings_cfg(cfg, track).precision)
            if len(complete_trials(study)) >= cfg.trials:
                continue
            problem = problem or Problem(cfg, track, device)  # loaded once per track, only when there is work
            if "gold" not in study.user_attrs:  # the tuning gold's figures on the objective rows, for the summary
                study.set_user_attr("gold", problem.gold)

            def objective(trial, name=name):
                trial.set_user_attr("worker", cfg.worker)
                r = problem.trial(name, suggest(trial, METHODS[name].SEARCH_SPACE))
                for k, v in r.items():
                    if k != "value":
                        trial.set_user_attr(k, v)
                print(f"[tune] {track}/{name} trial {trial.number}: objective {r['value']:.2f} "
                      f"({', '.join(f'{k} {v:.1f}' for k, v in r['parts'].items() if v is not None)}) "
                      f"{r['trial_s']:.1f} s", flush=True)
                return r["value"]

            study.optimize(objective, callbacks=[MaxTrialsCallback(cfg.trials, states=(TrialState.COMPLETE,))],
                           gc_after_trial=False)


def collect(cfg: TuneConfig, storage) -> None:
    import optuna

    tracks, methods = names_of(cfg)
    prep = load_json(stage_dir(cfg.results, "01_prepare_data") / "metrics.json", "stage 01 metrics", PREPARE_CMD)
    _, splits = load_prepared(cfg.results)
    path = tuned_file(cfg.tuned_dir, cfg.profile)
    old = json.loads(path.read_text()) if path.is_file() else {}
    tracks_out = dict(old.get("tracks", {})) if old.get("profile") == cfg.profile else {}
    summary = {}
    for track in tracks:
        entry = dict(tracks_out.get(track, {}))
        entry["problem"] = dict(
            tune_seed=cfg.seed, data_hash=prep["data_hash"], budget=cfg.budget, retain_rows=cfg.retain_rows,
            forget_class=prep["forget_class"] if track == "vit" else None,
            forget_rows=splits["sample_forget"].tolist() if track == "resnet" else None)
        entry["methods"] = dict(entry.get("methods", {}))
        for name in [n for n in methods if n in methods_for(track)]:  # a one-track method: its track only
            study = optuna.load_study(study_name=study_name(cfg.profile, track, name), storage=storage)
            check_tree(study, cfg, track)
            done = complete_trials(study)
            if len(done) < cfg.trials:
                raise PipelineError(f"study {study.study_name} has {len(done)} complete trial(s) of --trials "
                                    f"{cfg.trials}: run more workers (make tune) before collecting")
            counted = done[:cfg.trials]  # equal effort: the first `trials` complete trials by trial number
            best = min(counted, key=lambda t: (t.value, t.number))
            default = next((t for t in done if t.user_attrs.get("defaults")), None)
            if default is None or default not in counted:
                raise PipelineError(f"study {study.study_name}: the official defaults' trial is not among its first "
                                    f"{cfg.trials} complete trials: delete the study and re-run make tune")
            method_s = [t.user_attrs["method_s"] for t in counted]
            overhead = [100.0 * (t.user_attrs["trial_s"] - t.user_attrs["method_s"]) / max(t.user_attrs["method_s"], 1e-9)
                        for t in counted]
            entry["methods"][name] = dict(
                settings={k: v for k, v in best.params.items()},
                tuned_for=dict(method_file=study.user_attrs.get("method_file"), profile=cfg.profile,
                               data=prep["data_hash"]),
                # the precision the trials ran in: a run in another one still uses the entry, and says so
                precision=study.user_attrs.get("precision"),
                study=dict(name=study.study_name, trials=cfg.trials, complete=len(done), best_trial=best.number,
                           objective=round(best.value, 3), parts=best.user_attrs.get("parts"),
                           figures=best.user_attrs.get("figures"), gold=study.user_attrs.get("gold"),
                           default_objective=round(default.value, 3), default_parts=default.user_attrs.get("parts"),
                           defaults=default.params, sampler=f"TPE (seed {cfg.sampler_seed} + worker, "
                           f"{cfg.startup_trials or max(1, round(cfg.trials / 3))} random start-up trials, constant liar)",
                           workers=sorted({t.user_attrs.get("worker") for t in done}), storage=storage_kind(cfg),
                           tuning=(f"forget class {prep['forget_class']}" if track == "vit" else
                                   f"{len(splits['sample_forget'])} sample-wise forget rows outside the reported set")
                           + f", training seed {cfg.seed}, test_val rows",
                           cost_pct_of_gold=round(100.0 * cfg.trials * cfg.budget, 1),
                           method_s_median=round(statistics.median(method_s), 2),
                           overhead_pct_median=round(statistics.median(overhead), 1),
                           command=cfg.command or "python -m common.tune"))
            summary[study.study_name] = [dict(number=t.number, value=t.value, params=t.params, **t.user_attrs)
                                         for t in counted]
            entry["problem"]["gold"] = study.user_attrs.get("gold")  # the tuning gold's figures (%, MIA as fraction)
            print(f"[tune] {study.study_name}: best trial {best.number} objective {best.value:.2f} "
                  f"(defaults {default.value:.2f}) {best.params}", flush=True)
        tracks_out[track] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json(dict(profile=cfg.profile, objective="Euclidean norm of |gap to the tuning gold| in points: forget, "
                   "retain, val accuracy (%) and 100 x the membership figure (common/tune.py)", tracks=tracks_out), path)
    save_json(summary, Path(cfg.results) / "summary.json")
    print(f"[tune] wrote {path}", flush=True)


def main() -> None:
    cfg = parse_config(TuneConfig)
    print_config("tune", cfg)
    if cfg.action not in ACTIONS:
        raise PipelineError(f"unknown --action {cfg.action!r}: use one of {', '.join(ACTIONS)}")
    if cfg.trials < 1 or cfg.budget <= 0 or cfg.retain_rows < 1 or cfg.forget_rows < 1:
        raise PipelineError("--trials, --budget, --retain-rows and --forget-rows must be positive")
    names_of(cfg)
    device = resolve_runtime(cfg)
    set_seed(cfg.seed)
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise PipelineError("optuna is not installed: pip install -r requirements.txt (make venv)") from None
    storage = storage_of(cfg)
    {"create": lambda: create(cfg, storage), "work": lambda: work(cfg, storage, device),
     "collect": lambda: collect(cfg, storage)}[cfg.action]()


if __name__ == "__main__":
    run_main(main)
