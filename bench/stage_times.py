"""Wall time of every stage of a finished run, read from each stage's manifest.json (no re-running).

  python bench/stage_times.py [results]            # table per stage + total
  python bench/stage_times.py results --json       # the same as JSON
For end-to-end time including Make and process start-up, time the whole command instead:
  /usr/bin/time -v make all PROFILE=cpu DATA_SOURCE=kaggle DATA_DIR=<folder>
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def stage_times(results: Path) -> list[dict]:
    rows = []  # a seed tree's stages (results/seed-<s>/0N_*) and the aggregate report (results/07_report)
    for manifest in sorted([*results.glob("0[1-7]_*/manifest.json"), *results.glob("seed-*/0[1-7]_*/manifest.json")]):
        m = json.loads(manifest.read_text())
        name = manifest.parent.name if manifest.parent.parent == results else \
            f"{manifest.parent.parent.name}/{manifest.parent.name}"
        rows.append(dict(stage=name, seconds=m.get("wall_seconds"), profile=m["config"].get("profile"),
                         device=m.get("device", {}).get("device"), finished=m.get("finished"),
                         git=(m.get("git", {}).get("sha") or "")[:10]))
    return rows


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    results = Path(args[0] if args else "results")
    rows = stage_times(results)
    if not rows:
        raise SystemExit(f"error: no manifest.json under {results}: run make all first")
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'stage':34s} {'seconds':>9s}  profile  device  git")
    for r in rows:
        print(f"{r['stage']:34s} {r['seconds']:9.1f}  {r['profile']:7s}  {r['device']:6s}  {r['git']}")
    print(f"{'total (stages only)':34s} {sum(r['seconds'] for r in rows):9.1f}")


if __name__ == "__main__":
    main()
