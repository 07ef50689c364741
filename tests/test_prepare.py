"""Stage 01: splits, determinism, the two sources, and every bad input (one-line error, exit 2, nothing written)."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import fake_data
from conftest import load_stage

prep = load_stage("01_prepare_data.py")


def _prepare(run_stage, tmp_path, data_dir, *extra, results="results"):
    res = tmp_path / results
    code, err = run_stage("01_prepare_data.py", ["--profile", "smoke", "--source", "kaggle", "--data-dir",
                                                 str(data_dir), "--cache-dir", str(tmp_path / "cache"),
                                                 "--results", str(res), *extra])
    return code, err, res / "01_prepare_data"


def _load(out: Path):
    return (torch.load(out / "data.pt", weights_only=True), torch.load(out / "splits.pt", weights_only=True))


def _set(t):
    return set(t.tolist())


def test_splits_are_disjoint_and_cover(run_stage, tmp_path, kaggle_dir):
    code, err, out = _prepare(run_stage, tmp_path, kaggle_dir, "--forget-size", "10")
    assert code == 0, err
    data, s = _load(out)
    n_train, n_test = len(data["train_labels"]), len(data["test_labels"])
    assert n_train + n_test == 120 and n_test == 24  # seeded 80/20
    assert data["train_images"].dtype == torch.uint8 and data["train_images"].shape[1:] == (3, 32, 32)
    for a, b, n in (("forget", "retain", n_train), ("sample_forget", "sample_retain", n_train)):
        assert not _set(s[a]) & _set(s[b]) and _set(s[a]) | _set(s[b]) == set(range(n))
    # test rows: three disjoint pools that cover the test split; class-wise test rows live in test_eval
    pools = [_set(s[k]) for k in ("test_unseen", "test_val", "test_eval")]
    assert all(p for p in pools) and sum(len(p) for p in pools) == n_test and set().union(*pools) == set(range(n_test))
    assert not _set(s["test_forget"]) & _set(s["test_retain"])
    assert _set(s["test_forget"]) | _set(s["test_retain"]) == _set(s["test_eval"])
    assert (data["train_labels"][s["forget"]] == 0).all() and (data["train_labels"][s["retain"]] != 0).all()
    assert (data["test_labels"][s["test_forget"]] == 0).all()
    assert len(s["sample_forget"]) == 10
    for track, members, nonmembers in (("sample", "sample_retain", None), ("class", "retain", "test_retain")):
        parts = {k: s[f"mia_{track}_{k}"] for k in ("members_attack", "members_eval", "nonmembers_attack",
                                                   "nonmembers_eval")}
        sizes = {len(v) for v in parts.values()}
        assert len(sizes) == 1 and sizes.pop() > 0  # balanced
        assert not _set(parts["members_attack"]) & _set(parts["members_eval"])
        assert not _set(parts["nonmembers_attack"]) & _set(parts["nonmembers_eval"])
        m = _set(parts["members_attack"]) | _set(parts["members_eval"])
        assert m <= _set(s[members])  # members never include forget samples
        allowed = _set(s["test_eval"]) if nonmembers is None else _set(s[nonmembers])
        assert _set(parts["nonmembers_attack"]) | _set(parts["nonmembers_eval"]) <= allowed
        # the rows a method may see (test_unseen) and the selection rows never become attack non-members
        assert not (_set(parts["nonmembers_attack"]) | _set(parts["nonmembers_eval"])) & (
            _set(s["test_unseen"]) | _set(s["test_val"]))
    assert (out / "manifest.json").is_file() and (out / "metrics.json").is_file()


def test_same_seed_same_splits(run_stage, tmp_path, kaggle_dir):
    _, _, a = _prepare(run_stage, tmp_path, kaggle_dir, results="a")
    _, _, b = _prepare(run_stage, tmp_path, kaggle_dir, results="b")
    _, _, c = _prepare(run_stage, tmp_path, kaggle_dir, "--split-seed", "7", results="c")
    _, _, d = _prepare(run_stage, tmp_path, kaggle_dir, "--seed", "7", results="d")  # a training seed only
    (da, sa), (db, sb), (_, sc), (_, sd) = _load(a), _load(b), _load(c), _load(d)
    assert torch.equal(da["train_images"], db["train_images"]) and torch.equal(da["test_ids"], db["test_ids"])
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["sample_forget"], sc["sample_forget"])  # the split seed draws the splits
    assert all(torch.equal(sa[k], sd[k]) for k in sa)  # the training seed leaves the forget set alone


def test_forget_fraction_and_cap(run_stage, tmp_path, kaggle_dir):
    code, err, out = _prepare(run_stage, tmp_path, kaggle_dir, "--forget-fraction", "0.1",
                              "--max-train-per-class", "5")
    assert code == 0, err
    data, s = _load(out)
    assert torch.bincount(data["train_labels"]).max() <= 5
    assert len(s["sample_forget"]) == round(0.1 * len(data["train_labels"]))


def test_cifar10_and_kaggle_give_identical_tensors(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    root = tmp_path / "cifar"
    folder = fake_data.write_cifar10(root, per_class=6, test_per_class=3)
    # The fake batches are not the real files: give torchvision their md5s so its checks stay on and pass.
    from torchvision.datasets.utils import calculate_md5
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{k}", calculate_md5(folder / f"data_batch_{k}")]
                                                for k in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", calculate_md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                          "md5": calculate_md5(folder / "batches.meta")})
    trx, try_, _, tex, tey, _, classes = prep.load_cifar10(root)
    assert classes == list(fake_data.CLASSES)
    images = torch.cat([trx, tex]).permute(0, 2, 3, 1).numpy()
    labels = torch.cat([try_, tey]).numpy()
    kdir = fake_data.write_kaggle(tmp_path / "k", images=images, labels=labels)
    kx, ky, ids = prep.load_kaggle(kdir, tmp_path / "cache")
    assert torch.equal(kx, torch.cat([trx, tex])) and torch.equal(ky, torch.cat([try_, tey]))
    assert ids.tolist() == list(range(1, len(labels) + 1))
    # an already extracted train/ folder gives the same tensors as the archive
    fake_data.write_kaggle(tmp_path / "k2", images=images, labels=labels, archive=False)
    kx2, _, _ = prep.load_kaggle(tmp_path / "k2", tmp_path / "cache2")
    assert torch.equal(kx, kx2)
    assert not (kdir / "train").exists()  # extraction went to the cache, never into the source folder


def test_cifar10_offline_and_corrupt(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10
    from common.io import PipelineError

    def no_network(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(CIFAR10, "download", no_network)
    with pytest.raises(PipelineError, match="could not download CIFAR-10"):
        prep.load_cifar10(tmp_path / "empty")
    fake_data.write_cifar10(tmp_path / "bad", per_class=2, test_per_class=1)  # md5s do not match the real files
    with pytest.raises(PipelineError, match="integrity check"):
        prep.load_cifar10(tmp_path / "bad")


def _write_7z(path: Path, files: dict[str, bytes]):
    import py7zr

    with py7zr.SevenZipFile(path, "w") as z:
        for name, blob in files.items():
            z.writef(io.BytesIO(blob), name)


def _bad_inputs(tmp_path: Path, kaggle_dir: Path):
    """name -> (data dir, extra args, words the error line must contain)."""
    def copy(name):
        d = tmp_path / name
        shutil.copytree(kaggle_dir, d)
        return d

    cases = {}
    cases["unknown source"] = (kaggle_dir, ["--source", "imagenet"], "unknown source")
    cases["missing data dir"] = (tmp_path / "nope", [], "does not exist")
    d = copy("truncated")
    blob = (d / "train.7z").read_bytes()
    (d / "train.7z").write_bytes(blob[: len(blob) // 2])
    cases["truncated archive"] = (d, [], "corrupt or truncated")
    d = copy("garbage")
    (d / "train.7z").write_bytes(b"7z\xbc\xaf\x27\x1c" + bytes(range(256)) * 40)
    cases["corrupt archive"] = (d, [], "corrupt or truncated")
    d = copy("no_train")
    _write_7z(d / "train.7z", {"images/1.png": b"x"})
    cases["archive without train/"] = (d, [], "no train/")
    d = copy("no_archive")
    (d / "train.7z").unlink()
    cases["no archive"] = (d, [], "no train.7z")
    d = copy("columns")
    (d / "trainLabels.csv").write_text("id,name\n1,frog\n")
    cases["csv missing columns"] = (d, [], "lacks column")
    d = copy("unknown_class")
    (d / "trainLabels.csv").write_text((kaggle_dir / "trainLabels.csv").read_text().replace(",frog", ",froggy"))
    cases["unknown class names"] = (d, [], "unknown class name")
    d = copy("extra_ids")
    (d / "trainLabels.csv").write_text((kaggle_dir / "trainLabels.csv").read_text() + "9999,cat\n")
    cases["ids without images"] = (d, [], "have no image")
    d = copy("missing_rows")
    lines = (kaggle_dir / "trainLabels.csv").read_text().splitlines()
    (d / "trainLabels.csv").write_text("\n".join(lines[:-3]) + "\n")
    cases["images without rows"] = (d, [], "have no row")
    d = copy("no_csv")
    (d / "trainLabels.csv").unlink()
    cases["missing csv"] = (d, [], "missing")
    cases["forget class 10"] = (kaggle_dir, ["--forget-class", "10"], "outside 0-9")
    cases["forget class -1"] = (kaggle_dir, ["--forget-class", "-1"], "outside 0-9")
    d = tmp_path / "no_cats"
    imgs, labels = fake_data.make_images(6)
    keep = labels != 3
    fake_data.write_kaggle(d, images=imgs[keep], labels=labels[keep])
    cases["forget class without samples"] = (d, ["--forget-class", "3"], "has no train samples")
    cases["forget size >= train size"] = (kaggle_dir, ["--forget-size", "96"], "forget size")
    cases["unknown option"] = (kaggle_dir, ["--forget-klass", "1"], "unknown option")
    cases["bad type"] = (kaggle_dir, ["--forget-class", "one"], "takes a int")
    return cases


def test_bad_inputs_fail_cleanly(run_stage, tmp_path, kaggle_dir):
    cases = _bad_inputs(tmp_path, kaggle_dir)
    for name, (data_dir, extra, words) in cases.items():
        res = tmp_path / f"res-{name.replace(' ', '_')}"
        code, err, out = _prepare(run_stage, tmp_path, data_dir, *extra, results=res.name)
        lines = [l for l in err.splitlines() if l.strip()]
        assert code == 2, f"{name}: exit {code}, stderr {err!r}"
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], f"{name}: {err!r}"
        assert not out.exists() or not any(out.iterdir()), f"{name}: wrote {list(out.iterdir())}"
    leftovers = [p for p in (tmp_path / "cache").glob(".extract-*")] if (tmp_path / "cache").exists() else []
    assert not leftovers  # failed extractions are cleaned up
