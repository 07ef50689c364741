"""The tuning problem and its studies: pools shared by every tree, objective rows that never touch the reported
forget set or test_eval, tuned settings applied only where current, and a real PostgreSQL server filled by two
workers, one of them killed mid-trial."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from common.config import PrepareConfig, TuneConfig, parse_config
from common.io import PipelineError
from common.methods import METHODS
from common import tune
from common.unlearn import apply_tuned, method_file_hash, with_method_settings
from common.config import ResNetUnlearnConfig, ViTUnlearnConfig
from conftest import REPO, load_stage

prep = load_stage("01_prepare_data.py")
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _labels(n_per_class: int, seed: int = 0) -> torch.Tensor:
    y = torch.arange(10).repeat_interleave(n_per_class)
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]


def _splits(**kw):
    train_y, test_y = _labels(40), _labels(12, 1)
    cfg = PrepareConfig(**dict(dict(forget_size=20, sample_per_class=30), **kw))
    return prep.make_splits(train_y, test_y, cfg), train_y, test_y


def test_pools_are_the_same_rows_in_every_tree():
    """Test pools and the sample-wise pool depend on the pool seed only: not on the split seed, the forget class
    or the problem; only the forget draws change."""
    base, *_ = _splits()
    pool = lambda s: torch.cat([s["sample_forget"], s["sample_retain"]]).sort().values  # noqa: E731
    for other in (_splits(split_seed=7)[0], _splits(forget_class=3)[0], _splits(problem="tune")[0]):
        for k in ("test_unseen", "test_val", "test_eval"):
            assert torch.equal(base[k], other[k]), k
        assert torch.equal(pool(base), pool(other))
    moved, *_ = _splits(pool_seed=7)
    assert not torch.equal(moved["test_val"], base["test_val"])  # the pool seed is what cuts them


def test_tuning_problem_forgets_other_rows_and_the_objective_never_sees_reported_ones():
    report, train_y, _ = _splits()
    t, *_ = _splits(problem="tune", tune_forget_class=1)
    assert (train_y[t["forget"]] == 1).all() and torch.equal(t["reported_forget"], report["forget"])
    assert torch.equal(t["reported_sample_forget"], report["sample_forget"])
    assert not set(t["sample_forget"].tolist()) & set(report["sample_forget"].tolist())
    assert len(t["sample_forget"]) == len(report["sample_forget"])
    cfg = TuneConfig(retain_rows=50, forget_rows=25)
    for track, reported in (("vit", report["forget"]), ("resnet", report["sample_forget"])):
        rows = tune.objective_rows(track, t, cfg)
        used_train = set(rows["forget"].tolist()) | set(rows["retain"].tolist())
        assert not used_train & set(reported.tolist()), track  # the reported forget set never enters
        assert not set(rows["val"].tolist()) & set(t["test_eval"].tolist())  # nor test_eval rows
        assert torch.equal(rows["val"], t["test_val"]) and len(rows["retain"]) == 50
        assert torch.equal(rows["retain"], tune.objective_rows(track, t, cfg)["retain"])  # fixed, seeded
    with pytest.raises(PipelineError, match="not a tuning problem"):
        tune.objective_rows("vit", report, cfg)  # a reported tree is never tuned on


def test_tuning_problem_rejects_the_reported_class(run_stage, tmp_path, kaggle_dir):
    code, err = run_stage("01_prepare_data.py", ["--profile", "smoke", "--source", "kaggle", "--data-dir",
                                                 str(kaggle_dir), "--cache-dir", str(tmp_path / "c"), "--results",
                                                 str(tmp_path / "r"), "--problem", "tune", "--tune-forget-class", "0"])
    assert code == 2 and "reported class 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "01_prepare_data").exists()


# ------------------------------------------------------------------------------------------ tuned settings
def _tuned_file(tmp_path, track="resnet", data="abc", forget_class=1, forget_rows=(), settings=None,
                precision="fp32"):
    settings = settings or {"lr": 0.0123, "epochs": 3}
    entry = dict(settings=settings, precision=precision, tuned_for=dict(method_file=method_file_hash("finetune"), profile="cpu", data=data),
                 study=dict(trials=12, objective=1.0, default_objective=2.0, best_trial=4, cost_pct_of_gold=120.0,
                            tuning="t", command="make tune"))
    problem = dict(forget_class=forget_class if track == "vit" else None, forget_rows=list(forget_rows))
    (tmp_path / "cpu.json").write_text(json.dumps(dict(profile="cpu", tracks={
        track: dict(problem=problem, methods={"finetune": entry})})))
    return tmp_path


def _cfg(track, tuned_dir, *extra):
    base = {"vit": ViTUnlearnConfig, "resnet": ResNetUnlearnConfig}[track]
    return parse_config(with_method_settings(base, track, METHODS),
                        ["--profile", "cpu", "--tuned-dir", str(tuned_dir), *extra])


def test_tuned_settings_are_used_only_where_current(tmp_path):
    splits = {"sample_forget": torch.tensor([1, 2, 3])}
    d = _tuned_file(tmp_path, data="abc", forget_rows=[7, 8])
    cfg = _cfg("resnet", d)
    prov = apply_tuned(cfg, "resnet", METHODS, {"data_hash": "abc", "forget_class": 0}, splits)
    assert prov["finetune"]["status"] == "tuned" and cfg.finetune_lr == 0.0123 and cfg.finetune_epochs == 3
    assert isinstance(cfg.finetune_epochs, int) and prov["scrub"]["status"] == "official"
    # a command-line value wins over the tuned one
    cfg = _cfg("resnet", d, "--finetune-lr", "0.5")
    prov = apply_tuned(cfg, "resnet", METHODS, {"data_hash": "abc", "forget_class": 0}, splits)
    assert cfg.finetune_lr == 0.5 and cfg.finetune_epochs == 3 and prov["finetune"]["overridden"] == ["lr"]
    # other data: stale, reported, not used
    cfg = _cfg("resnet", d)
    prov = apply_tuned(cfg, "resnet", METHODS, {"data_hash": "other", "forget_class": 0}, splits)
    assert prov["finetune"]["status"] == "stale" and "data" in prov["finetune"]["why"] and cfg.finetune_lr == 0.01
    # --settings official ignores the file
    cfg = _cfg("resnet", d, "--settings", "official")
    prov = apply_tuned(cfg, "resnet", METHODS, {"data_hash": "abc", "forget_class": 0}, splits)
    assert prov["finetune"]["status"] == "official" and cfg.finetune_lr == 0.01


def test_an_entry_tuned_in_another_precision_is_used_and_says_so(tmp_path):
    splits = {"sample_forget": torch.tensor([1, 2, 3])}
    d = _tuned_file(tmp_path, data="abc", forget_rows=[7, 8], precision="fp32")
    for run, differs in (("fp32", False), ("bf16", True)):
        cfg = _cfg("resnet", d, "--precision", run)
        prov = apply_tuned(cfg, "resnet", METHODS, {"data_hash": "abc", "forget_class": 0}, splits)["finetune"]
        assert prov["status"] == "tuned" and cfg.finetune_lr == 0.0123  # used either way
        assert prov["tuned_precision"] == "fp32" and prov["precision_differs"] is differs


def test_reported_problem_equal_to_the_tuning_one_is_rejected(tmp_path):
    (tmp_path / "a").mkdir()
    d = _tuned_file(tmp_path / "a", track="vit", forget_class=0)
    with pytest.raises(PipelineError, match="reported forget class 0 is the class"):
        apply_tuned(_cfg("vit", d), "vit", METHODS, {"data_hash": "abc", "forget_class": 0}, {})
    (tmp_path / "b").mkdir()
    d = _tuned_file(tmp_path / "b", forget_rows=[2, 9])
    with pytest.raises(PipelineError, match="shares 1 rows"):
        apply_tuned(_cfg("resnet", d), "resnet", METHODS, {"data_hash": "abc", "forget_class": 0},
                    {"sample_forget": torch.tensor([1, 2, 3])})


def test_entries_of_other_data_do_not_block_a_run_whose_rows_they_name(tmp_path):
    """A tuned file of other data (a changed recipe: stage 01's data_hash differs) names other rows: its entries are
    stale, the run goes on at the official defaults instead of refusing."""
    d = _tuned_file(tmp_path, forget_rows=[2, 9], data="old")
    prov = apply_tuned(_cfg("resnet", d), "resnet", METHODS, {"data_hash": "new", "forget_class": 0},
                       {"sample_forget": torch.tensor([1, 2, 3])})
    assert prov["finetune"]["status"] == "stale"


def test_search_spaces_can_be_sampled_and_defaults_enqueued():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for track in ("vit", "resnet"):
        ucfg = tune.tuned_settings_cfg(TuneConfig(profile="cpu", results="r"), track)
        for name, mod in METHODS.items():
            study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
            study.enqueue_trial(tune.defaults_of(ucfg, name))
            trial = study.ask()
            assert tune.suggest(trial, mod.SEARCH_SPACE) == tune.defaults_of(ucfg, name)  # trial 0 = defaults
            params = tune.suggest(study.ask(), mod.SEARCH_SPACE)
            assert set(params) == set(mod.SEARCH_SPACE)


# ---------------------------------------------------------------------------------------------- PostgreSQL
FAKE_WORKER = """
import math, sys, time
sys.path.insert(0, {repo!r})
import common.tune as T

class FakeProblem:  # the storage / worker / collect code is real; only the training is replaced by a sleep
    def __init__(self, cfg, track, device):
        self.gold = dict(forget=50.0, retain=99.0, val=45.0, mia=0.5)

    def trial(self, name, params):
        time.sleep({sleep})
        value = sum(abs(math.log10(v)) if isinstance(v, float) and v > 0 else float(v) for v in params.values())
        return dict(value=value, parts=dict(forget=value, retain=0.0, val=0.0, mia=0.0), figures=None, units=10,
                    steps=1, cut=False, over_budget=False, method_s={sleep}, trial_s={sleep} + 0.01, diverged=False)

T.Problem = FakeProblem
sys.argv = ["common.tune", *sys.argv[1:]]
T.run_main(T.main)
"""


def _fake_gold(results: Path) -> None:
    """A stand-in tuning gold file: the studies record which tree (gold weights) they were filled on."""
    (results / "02_train_resnet").mkdir(parents=True, exist_ok=True)
    (results / "02_train_resnet" / "gold.pt").write_bytes(b"gold weights")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL 15 server on a free loopback port (initdb + pg_ctl in a temporary directory, run as
    a non-root user: the `postgres` account when the tests run as root)."""
    if not (PG_BIN / "initdb").is_file():
        pytest.skip(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing)")
    prefix = []
    if os.getuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no non-root 'postgres' user to run the server as")
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    root.chmod(0o755)
    if prefix:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, port = root / "data", _free_port()
    run = lambda *cmd: subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "tune", "--auth", "trust")
    run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    try:
        run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tune", "optuna")
        yield f"postgresql://tune@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_on_postgresql_fill_the_study_even_when_one_is_killed(postgres, tmp_path, run_stage, kaggle_dir):
    import optuna
    from optuna.trial import TrialState

    results = tmp_path / "tune"
    code, err = run_stage("01_prepare_data.py", ["--profile", "smoke", "--source", "kaggle", "--data-dir",
                                                 str(kaggle_dir), "--cache-dir", str(tmp_path / "c"), "--results",
                                                 str(results), "--problem", "tune", "--forget-size", "8"])
    assert code == 0, err
    _fake_gold(results)
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER.format(repo=str(REPO), sleep=1.5))
    trials = 6
    args = ["--profile", "smoke", "--results", str(results), "--tracks", "resnet", "--methods", "finetune",
            "--trials", str(trials), "--storage", postgres, "--heartbeat-s", "1", "--grace-s", "3", "--device", "cpu"]
    env = dict(os.environ, THREADS="1")
    py = [sys.executable, str(worker)]
    subprocess.run([*py, "--action", "create", *args], check=True, env=env, capture_output=True)
    subprocess.run([*py, "--action", "create", *args], check=True, env=env, capture_output=True)  # idempotent
    workers = [subprocess.Popen([*py, "--action", "work", "--worker", str(w), *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for w in (0, 1)]
    storage = optuna.storages.RDBStorage(postgres.replace("postgresql://", "postgresql+psycopg2://"))
    study = optuna.load_study(study_name="smoke/resnet/finetune", storage=storage)
    deadline = time.time() + 60
    while time.time() < deadline and not [t for t in study.get_trials(states=(TrialState.RUNNING,))
                                          if t.user_attrs.get("worker") == 0]:
        time.sleep(0.1)
    workers[0].send_signal(signal.SIGKILL)  # mid-trial: its RUNNING trial has no heartbeat any more
    assert workers[1].wait(timeout=180) == 0, workers[1].stderr.read()
    workers[0].wait()
    trials_now = study.get_trials()
    complete = [t for t in trials_now if t.state == TrialState.COMPLETE]
    assert len(complete) >= trials
    assert sum(t.user_attrs.get("defaults", False) for t in complete) == 1  # trial 0 once, not once per worker
    failed = [t for t in trials_now if t.state == TrialState.FAIL]
    assert failed, "the killed worker's trial was not failed by the heartbeat"
    retried = [t for t in trials_now if t.system_attrs.get("failed_trial") in {f.number for f in failed}]
    # retried with the settings it had drawn (a worker killed between two suggestions leaves some undrawn)
    assert retried and all(retried[0].params[k] == v for k, v in failed[0].params.items())
    tuned_dir = tmp_path / "tuned"
    subprocess.run([*py, "--action", "collect", "--tuned-dir", str(tuned_dir), *args], check=True, env=env,
                   capture_output=True)
    out = json.loads((tuned_dir / "smoke.json").read_text())["tracks"]["resnet"]["methods"]["finetune"]
    first = sorted(complete, key=lambda t: t.number)[:trials]
    best = min(first, key=lambda t: (t.value, t.number))
    assert out["study"]["best_trial"] == best.number and out["settings"] == best.params  # first `trials` only
    assert out["study"]["complete"] == len(complete) and out["study"]["storage"] == "postgresql"
    assert out["study"]["objective"] <= out["study"]["default_objective"]
    # a rebuilt tuning tree (other gold weights) is never continued with the old studies
    (results / "02_train_resnet" / "gold.pt").write_bytes(b"other gold")
    r = subprocess.run([*py, "--action", "work", "--worker", "0", *args], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "another tuning tree" in r.stderr


def test_make_refuses_a_tuning_seed_among_the_reported_seeds(tmp_path):
    r = subprocess.run(["make", "-n", "all", "SEEDS=0 1000", "TUNE_SEED=1000", f"RESULTS={tmp_path / 'r'}"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "TUNE_SEED 1000 is one of SEEDS" in r.stderr


def test_create_requeues_a_journal_trial_left_running_by_a_stopped_worker(tmp_path):
    import optuna
    from optuna.trial import TrialState

    cfg = TuneConfig(profile="smoke", results=str(tmp_path), tracks="resnet", methods="finetune", storage="")
    _fake_gold(tmp_path)
    storage = tune.storage_of(cfg)
    tune.create(cfg, storage)
    study = optuna.load_study(study_name="smoke/resnet/finetune", storage=storage)
    orphan = study.ask()  # the defaults trial, taken by a worker that then died before finishing it
    assert orphan.user_attrs.get("defaults") and study.get_trials(states=(TrialState.RUNNING,))
    tune.create(cfg, storage)  # make tune runs create before its workers start
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].user_attrs.get("defaults")
    assert waiting[0].system_attrs["fixed_params"] == tune.defaults_of(tune.tuned_settings_cfg(cfg, "resnet"), "finetune")
