"""Tiny, learnable CIFAR-10-shaped data for the tests and the smoke run (no network, no real images needed).

Each class gets its own base colour and a bright square at a class-specific spot, plus noise, so small models
learn it in a few steps and "forgetting" a class is visible in the metrics.

  python tests/fake_data.py kaggle <out_dir> [--per-class 60]   # train.7z + trainLabels.csv (Kaggle layout)
  python tests/fake_data.py cifar10 <out_dir> [--per-class 60]  # cifar-10-batches-py (pickled batches)
"""
from __future__ import annotations

import argparse
import csv
import io
import pickle
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_images(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 32, 32, 3] HWC images and int labels, classes interleaved (0, 1, ..., 9, 0, 1, ...)."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(10), per_class)
    base = rng.integers(30, 200, size=(10, 3))
    images = np.empty((len(labels), 32, 32, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        img = base[c] + rng.normal(0, 25, size=(32, 32, 3))
        r, col = divmod(int(c), 5)
        y0, x0 = 4 + 14 * r + rng.integers(-2, 3), 2 + 6 * col + rng.integers(-1, 2)
        img[y0:y0 + 8, x0:x0 + 6] = 255 - base[c]
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels


def write_cifar10(out: Path, per_class: int = 60, test_per_class: int = 20, seed: int = 0) -> Path:
    """A cifar-10-batches-py folder in the real pickle layout (5 train batches + test_batch + batches.meta)."""
    folder = out / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    tr_x, tr_y = make_images(per_class, seed)
    te_x, te_y = make_images(test_per_class, seed + 1)

    def dump(name, x, y, label):
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # CHW-flattened rows, as in the real files
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": label, "labels": [int(v) for v in y], "data": rows,
                         "filenames": [f"{i}.png" for i in range(len(y))]}, f)

    for k, part in enumerate(np.array_split(np.arange(len(tr_y)), 5)):
        dump(f"data_batch_{k + 1}", tr_x[part], tr_y[part], f"training batch {k + 1} of 5")
    dump("test_batch", te_x, te_y, "testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CLASSES), "num_cases_per_batch": len(tr_y) // 5, "num_vis": 3072}, f)
    return folder


def write_kaggle(out: Path, per_class: int = 60, seed: int = 0, images: np.ndarray | None = None,
                 labels: np.ndarray | None = None, archive: bool = True) -> Path:
    """Kaggle layout: train.7z holding train/<id>.png (ids from 1) and trainLabels.csv (id,label)."""
    import py7zr
    from PIL import Image

    if images is None:
        images, labels = make_images(per_class, seed)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "trainLabels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label"])
        for i, c in enumerate(labels):
            w.writerow([i + 1, CLASSES[int(c)]])
    pngs = {}
    for i, img in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        pngs[f"train/{i + 1}.png"] = buf.getvalue()
    if archive:
        with py7zr.SevenZipFile(out / "train.7z", "w") as z:
            for name, blob in pngs.items():
                z.writef(io.BytesIO(blob), name)
    else:
        (out / "train").mkdir(exist_ok=True)
        for name, blob in pngs.items():
            (out / name).write_bytes(blob)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("layout", choices=["kaggle", "cifar10"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.layout == "kaggle":
        print(write_kaggle(a.out, a.per_class, a.seed))
    else:
        print(write_cifar10(a.out, a.per_class, seed=a.seed))
