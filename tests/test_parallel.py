"""Beyond one machine, without one: `make -n` shows what `make audit`, LAUNCH and NGPUS put on each job's command
line (the seed -> GPU mapping, the launch prefix on every per-seed stage and tuning worker), and stage 01 runs of two
seeds that share one cache folder at the same time both succeed with the same data (make -j's old race)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
STAGE_RE = re.compile(r"(0[1-7]_\w+\.py|-m common\.tune --action \w+)")


def make_n(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-n", *args, f"RESULTS={tmp_path / 'r'}", "PROFILE=smoke"], cwd=REPO,
                          capture_output=True, text=True)


def jobs(out: str) -> list[tuple[str, str, str]]:
    """(stage, tree, device) per stage command of a make -n listing."""
    found = []
    for line in out.splitlines():
        m = STAGE_RE.search(line)
        tree = re.search(r"--results \S*/(seed-[\w-]+|tune)\b", line)
        dev = re.search(r"--device (\S+)", line)
        if m and tree and dev:
            found.append((m.group(1), tree.group(1), dev.group(1)))
    return found


def test_make_audit_runs_the_resnet_stages_of_k_seeds_then_the_audit_report(tmp_path):
    r = make_n(tmp_path, "audit", "K=3", "SEEDS=5")
    assert r.returncode == 0, r.stderr
    ran = jobs(r.stdout)
    want = {(s, f"seed-{k}") for k in (5, 6, 7) for s in ("01_prepare_data.py", "02_train_resnet.py",
                                                            "05_unlearn_gan.py", "06_membership_attack.py")}
    assert {(s, t) for s, t, _ in ran} == want  # no ViT stage (TRACKS=resnet), nothing else
    report = [line for line in r.stdout.splitlines() if "07_report.py" in line][0] + r.stdout.split("07_report.py")[1]
    assert '--seeds "5 6 7"' in report and '--tracks "resnet"' in report and "--audit true" in report
    both = make_n(tmp_path, "audit", "K=3", "SEEDS=5", "TRACKS=vit resnet")  # TRACKS given: honoured
    assert any(s == "03_train_vit_refs.py" for s, _, _ in jobs(both.stdout))
    plain = make_n(tmp_path, "all", "SEEDS=5")
    assert "--audit false" in plain.stdout
    missing = make_n(tmp_path, "audit")
    assert missing.returncode != 0 and "make audit needs K" in missing.stderr


def test_ngpus_maps_each_tree_to_a_gpu_by_its_position_in_the_seed_list(tmp_path):
    r = make_n(tmp_path, "all", "DEVICE=cuda", "NGPUS=2", "SEEDS=5 7 9")
    assert r.returncode == 0, r.stderr
    dev = {(t, d) for s, t, d in jobs(r.stdout) if s.endswith(".py")}
    assert dev == {("seed-5", "cuda:0"), ("seed-7", "cuda:1"), ("seed-9", "cuda:0")}  # position mod NGPUS
    three = make_n(tmp_path, "all", "DEVICE=cuda", "NGPUS=3", "SEEDS=5 7 9 11", "SPLIT_SEEDS=1 2")
    got = {t: d for s, t, d in jobs(three.stdout) if s.endswith(".py")}
    assert [got[f"seed-{s}_split-{k}"] for s in (5, 7, 9, 11) for k in (1, 2)] == \
        [f"cuda:{i % 3}" for i in range(8)]
    launched = make_n(tmp_path, "tune", "WORKERS=4", "THREADS=8", "LAUNCH=srun -n1")
    assert "THREADS=8 srun -n1" in launched.stdout  # a launched worker is its own job: all THREADS for it
    local = make_n(tmp_path, "tune", "WORKERS=4", "THREADS=8")
    assert "THREADS=2 " in local.stdout  # local workers share the machine's THREADS
    workers = make_n(tmp_path, "tune", "DEVICE=cuda", "NGPUS=2", "WORKERS=3")
    assert "dev=cuda:$(( w % 2 ))" in workers.stdout and "--device $dev" in workers.stdout
    bad = make_n(tmp_path, "all", "DEVICE=cpu", "NGPUS=2")
    assert bad.returncode != 0 and "give DEVICE=cuda" in bad.stderr


def test_launch_prefixes_every_per_seed_stage_and_tuning_worker(tmp_path):
    r = make_n(tmp_path, "all", "tune", "SEEDS=0 1", "LAUNCH=srun -N1 -n1")
    assert r.returncode == 0, r.stderr
    lines = [line.strip() for line in r.stdout.splitlines() if STAGE_RE.search(line)]
    per_job = [line for line in lines if re.search(r"0[1-6]_\w+\.py|--action work", line)]
    assert len(per_job) >= 2 * 6 + 3 + 1  # 2 trees x 6 stages, the tuning tree's 01-03, the workers
    for line in per_job:
        assert "srun -N1 -n1 " in line, line
    local = [line for line in lines if "07_report.py" in line or "--action create" in line or "--action collect" in line]
    assert local and not any("srun" in line for line in local)  # the report and the study bookkeeping run here


def _extract_at_once(barrier, archive, cache, queue):
    from conftest import load_stage

    prep = load_stage("01_prepare_data.py")
    barrier.wait()  # both processes reach the extraction together
    try:
        queue.put(("ok", str(prep._extract(archive, cache))))
    except Exception as e:  # noqa: BLE001 (reported to the parent)
        queue.put(("error", f"{type(e).__name__}: {e}"))


def test_two_stage01_extractions_into_one_cache_folder_both_succeed(tmp_path, kaggle_dir):
    """make -j's old race: every seed's stage 01 extracted train.7z into the same CACHE_DIR, and the second rename
    failed and was reported as a corrupt archive. Two processes released at the same instant, three times."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for attempt in range(3):
        cache = tmp_path / f"cache-{attempt}"
        barrier, queue = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_extract_at_once, args=(barrier, kaggle_dir / "train.7z", cache, queue))
                 for _ in range(2)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert [r[0] for r in results] == ["ok", "ok"], results
        assert results[0][1] == results[1][1]  # the same extracted folder
        assert [p.name for p in cache.iterdir() if not p.name.startswith(".kaggle-")] == [Path(results[0][1]).parent.name]


def test_two_stage01_runs_sharing_a_cache_folder_give_the_same_data(tmp_path, kaggle_dir):
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, str(REPO / "01_prepare_data.py"), "--profile", "smoke", "--source",
                               "kaggle", "--data-dir", str(kaggle_dir), "--cache-dir", str(cache), "--results",
                               str(tmp_path / f"seed-{s}"), "--seed", str(s), "--wandb", "0", "--device", "cpu"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "THREADS": "1"})
             for s in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    d0, d1 = (torch.load(tmp_path / f"seed-{s}" / "01_prepare_data" / "data.pt", weights_only=True) for s in (0, 1))
    assert torch.equal(d0["train_images"], d1["train_images"])
