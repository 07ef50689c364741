"""After the smoke pipeline: every stage whose script exists wrote its manifest and metrics, and the report (when
stage 07 exists) names every model of every track. Exit status 1 with one line per problem."""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def problems(results: Path) -> list[str]:
    out = []
    for script in sorted(REPO.glob("0[1-6]_*.py")):
        d = results / script.stem
        for name in ("manifest.json", "metrics.json"):
            if not (d / name).is_file():
                out.append(f"{script.name} ran but {d / name} is missing")
    if (REPO / "07_report.py").exists():
        report = results / "report.md"
        if not report.is_file():
            return out + [f"07_report.py exists but {report} is missing"]
        text = report.read_text()
        for stage, key in (("04_unlearn_vit", "models"), ("02_train_resnet", "models"), ("05_unlearn_gan", "models")):
            m = results / stage / "metrics.json"
            if m.is_file():
                for model in json.loads(m.read_text()).get(key, {}):
                    if model not in text:
                        out.append(f"report.md does not list model {model!r} of {stage}")
    return out


if __name__ == "__main__":
    found = problems(Path(sys.argv[1]))
    for line in found:
        print(f"smoke check: {line}")
    print(f"smoke check: {'FAILED' if found else 'ok'} ({len(found)} problem(s))")
    sys.exit(1 if found else 0)
