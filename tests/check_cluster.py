"""After `make test-cluster`'s two runs (usage: check_cluster.py CLUSTER_RESULTS SERIAL_RESULTS JOBCOMP_LOG SEED ...):
every per-seed stage of the cluster run ran as a SLURM job (its manifest records SLURM_JOB_ID, and the controller's
job completion log lists that job as COMPLETED), and each stage's metrics.json equals the serial run's, field by field,
except wall times. Exit status 1 with one line per problem."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_determinism as CD  # noqa: E402  (its field-by-field diff)

STAGES = ("01_prepare_data", "02_train_resnet", "03_train_vit_refs", "04_unlearn_vit", "05_unlearn_gan",
          "06_membership_attack")
CD.WALL_TIME_KEYS |= {"wall_seconds", "rte_pct_of_gold"}  # wall time and what is derived from it: reported only


def rooted(obj, root: Path):
    """Paths under a run's RESULTS folder (06 records the logits files it read) written relative to it, so that the
    two runs' metrics compare equal where only their folders differ."""
    if isinstance(obj, dict):
        return {k: rooted(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rooted(v, root) for v in obj]
    return obj.replace(str(root), "<RESULTS>") if isinstance(obj, str) else obj


def problems(cluster: Path, serial: Path, jobcomp: Path, seeds: list[str]) -> tuple[list[str], dict]:
    out, jobs = [], {}
    completed = {}
    for line in jobcomp.read_text().splitlines() if jobcomp.is_file() else []:
        m, s = re.search(r"JobId=(\d+)", line), re.search(r"JobState=(\w+)", line)
        if m and s:
            completed[m.group(1)] = s.group(1)
    for seed in seeds:
        for stage in STAGES:
            a, b = cluster / f"seed-{seed}" / stage, serial / f"seed-{seed}" / stage
            if not (a / "metrics.json").is_file() or not (b / "metrics.json").is_file():
                out.append(f"seed {seed} {stage}: no metrics.json in {'the cluster' if not a.exists() else 'the serial'} run")
                continue
            slurm = json.loads((a / "manifest.json").read_text()).get("host", {}).get("slurm", {})
            job = slurm.get("job_id")
            if job is None:
                out.append(f"seed {seed} {stage}: its manifest records no SLURM job (it did not run through srun)")
            elif completed.get(job) != "COMPLETED":
                out.append(f"seed {seed} {stage}: SLURM job {job} is {completed.get(job, 'not in the job completion log')}")
            else:
                jobs[f"seed-{seed}/{stage}"] = job
            serial_slurm = json.loads((b / "manifest.json").read_text()).get("host", {}).get("slurm")
            if serial_slurm:
                out.append(f"seed {seed} {stage}: the serial run's manifest records a SLURM job: it is no serial baseline")
            found = CD.diff(rooted(json.loads((a / "metrics.json").read_text()), cluster),
                            rooted(json.loads((b / "metrics.json").read_text()), serial))
            out += [f"seed {seed} {stage}{d}" for d in found[:5]]
    if len(set(jobs.values())) != len(jobs):
        out.append("two stages share one SLURM job id: each stage must be its own job")
    return out, jobs


if __name__ == "__main__":
    cluster, serial, jobcomp, *seeds = sys.argv[1:]
    found, jobs = problems(Path(cluster), Path(serial), Path(jobcomp), seeds)
    for k, v in jobs.items():
        print(f"cluster check: {k}: SLURM job {v} COMPLETED")
    for line in found:
        print(f"cluster check: {line}")
    print(f"cluster check: {'FAILED' if found else 'ok'}: {len(jobs)} stage(s) ran as SLURM jobs, metrics of the srun "
          f"make -j2 run {'differ from' if found else 'identical to'} the serial run (wall times excluded), "
          f"{len(found)} problem(s)")
    sys.exit(1 if found else 0)
