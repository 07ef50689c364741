"""The unlearning-method registry: one file per method in this package (common/methods/<name>.py), found by
scanning the package; a file whose name starts with `_` holds shared helpers. What a method file defines is listed
in `common.methods._base`. Adding a method = adding one file.

Order of `METHODS`: the references' methods, then the literature's, then the controls (file names within each).

A method written for one kind of forgetting only (e.g. UNSIR: class-wise; its official code has no sample-wise
variant) declares `TRACKS = ("vit",)` and `TRACK_NOTE` (why, from its code or paper); `methods_for(track)` is the
registry a track's stages, tuning and report use, and `not_on(track)` says which methods it leaves out and why."""
from __future__ import annotations

import importlib
import pkgutil

KINDS = ("reference", "literature", "control")
REQUIRED = ("KIND", "SOURCE", "SETTINGS", "SEARCH_SPACE", "SCHEDULE", "units_per_step", "run")


def _discover() -> dict:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        missing = [a for a in REQUIRED if not hasattr(mod, a)]
        if missing:
            raise ImportError(f"common/methods/{info.name}.py lacks {missing}: see common/methods/_base.py")
        found[info.name] = mod
    return dict(sorted(found.items(), key=lambda kv: (KINDS.index(kv[1].KIND), kv[0])))


METHODS = _discover()
ALL_TRACKS = ("vit", "resnet")


def methods_for(track: str) -> dict:
    """The registry of `track`: every method whose `TRACKS` (default: both) includes it, in `METHODS` order."""
    return {n: m for n, m in METHODS.items() if track in getattr(m, "TRACKS", ALL_TRACKS)}


def not_on(track: str) -> dict[str, str]:
    """{method: why} for the registered methods `track` leaves out (their TRACK_NOTE)."""
    return {n: getattr(m, "TRACK_NOTE", f"written for the {', '.join(m.TRACKS)} track only")
            for n, m in METHODS.items() if track not in getattr(m, "TRACKS", ALL_TRACKS)}
