"""The `paper` profile, executed end to end: `make test-paper` (CPU, generated data, a generated timm checkpoint) and
`make gpu-check` (a CUDA GPU, the real downloads, the epochs cut to fit ~10 minutes).

Every stage 01-07 runs with `--profile paper`; the only overrides are sizes of the profile's own fields (rows per
class, epochs, t-SNE points, relearn-probe steps and rows, eval batch) and counts of a few methods' own settings
(epochs of the reproduction's fine-tune and 2-stage, the share of retain rows Fisher reads, WoodFisher's N, UNSIR's
noise steps). Everything else stays `paper`: the ViT at 224 px from ImageNet-format weights (`--weights-file`), the
batch sizes, the optimisers, B's normalisation and crop + flip, the 64-row forget batch, the reproduction runs
without a budget, every registered method (each track's).

  python bench/paper_run.py --mode test [--out results-paper]   # make test-paper: <= 5 min on 2 CPU cores
  python bench/paper_run.py --mode gpu  [--out results-gpu]     # make gpu-check: needs CUDA, data + weights online

Writes <out>/results/seed-<seed>/... (the usual tree), <out>/results/report.md, <out>/paper_run.json (stage wall
times, throughput, the checks, the reproduction table). A failure prints one line naming the stage and the setting
that broke it and exits 1.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = 42
TRAIN_PER_CLASS, TEST_PER_CLASS = 13, 4  # the generated data of --mode test
# test: sizes that keep every code path and fit 5 minutes on 2 cores; gpu: the epochs cut, the data whole
SIZES = {
    "test": {
        # 130 train rows (64 of them the forget batch: 66 retain rows, the one full batch of 64 02 needs for gold;
        # the ViT's forget class 13 rows, 117 retain rows), 40 test rows
        "01_prepare_data.py": ["--max-train-per-class", str(TRAIN_PER_CLASS),
                               "--max-test-per-class", str(TEST_PER_CLASS)],
        "02_train_resnet.py": ["--epochs", "1", "--eval-batch-size", "64"],
        "03_train_vit_refs.py": ["--epochs", "1", "--eval-batch-size", "32"],
        # counts only (epochs, rows, steps), never an lr, batch size, optimiser or resolution: reference A's
        # fine-tune and 2-stage reproduction runs 1 epoch (A: 5), Fisher reads a quarter of the retain rows,
        # WoodFisher's recursion 32 rows (N 30; official 1000), UNSIR's noise is trained 5 steps (official 25; the
        # tiny budget cuts its impair / repair steps anyway)
        "04_unlearn_vit.py": ["--tsne-per-group", "16", "--relearn-rows", "4", "--relearn-steps", "1",
                              "--relearn-batch-size", "8", "--relearn-every", "1", "--eval-batch-size", "32",
                              "--finetune-epochs", "1", "--two-stage-epochs", "1", "--fisher-retain-fraction", "0.25",
                              "--wfisher-n-hessian", "30", "--unsir-noise-steps", "5"],
        "05_unlearn_gan.py": ["--eval-batch-size", "64", "--fisher-retain-fraction", "0.25",
                              "--wfisher-n-hessian", "30"],
        "06_membership_attack.py": [],
    },
    "gpu": {
        "01_prepare_data.py": [],
        "02_train_resnet.py": ["--epochs", "3"],  # B: 10 (84.81 % test); 3 fit the 10-minute check
        "03_train_vit_refs.py": ["--epochs", "1"],  # A: 3
        "04_unlearn_vit.py": [],
        "05_unlearn_gan.py": [],
        "06_membership_attack.py": [],
    },
}
STAGES = list(SIZES["test"])
# what each stage's failure most likely concerns, for the one-line error
SETTING = {"01_prepare_data.py": "source cifar10 (cifar-10-batches-py), forget_size 64",
           "02_train_resnet.py": "ResNet-18, Adam 1e-3, batch 64, reference B's normalisation, crop + flip",
           "03_train_vit_refs.py": "ViT-Tiny 224 px from --weights-file, SGD 1e-4, batch 64",
           "04_unlearn_vit.py": "every method at 224 px + reference A's reproduction runs (no budget), t-SNE",
           "05_unlearn_gan.py": "every sample-wise method on ResNet-18 + reference B's GAN reproduction (no budget)",
           "06_membership_attack.py": "membership-inference attacks",
           "07_report.py": "the report"}


def fail(stage: str, why: str) -> None:
    print(f"paper_run: {stage} failed ({SETTING.get(stage, stage)}): {why}", file=sys.stderr)
    sys.exit(1)


def run_stage(script: str, args: list[str], log: Path, env: dict, prefix: list[str] = ()) -> float:
    """Run one stage script (after `prefix`, e.g. the md5 shim); its output goes to log; returns wall seconds. On
    failure: the last error line."""
    start = time.time()
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, *prefix, str(ROOT / script), *args], cwd=ROOT, stdout=f,
                           stderr=subprocess.STDOUT, env=env)
    if r.returncode:
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        last = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
        fail(script, f"exit {r.returncode}: {last.strip()[:300]} (log: {log})")
    return time.time() - start


def make_test_inputs(out: Path) -> tuple[Path, Path]:
    """Generated data in torchvision's cifar-10-batches-py layout and a timm vit_tiny_patch16_224 checkpoint with
    random weights in timm's own format (its ImageNet 1000-class head included)."""
    import timm
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    import fake_data

    data = out / "data"
    fake_data.write_cifar10(data, per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS)
    weights = out / "vit_tiny_patch16_224.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict(), weights)
    return data, weights


# Stage 01 reads the generated batches through torchvision's CIFAR10, whose md5 checks the tests keep on: the
# child process gets the generated files' md5s (as tests/test_prepare.py does in-process).
MD5_SHIM = """
import runpy, sys
from pathlib import Path
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import calculate_md5
d = Path(sys.argv.pop(1)) / 'cifar-10-batches-py'
CIFAR10.train_list = [[f'data_batch_{k}', calculate_md5(d / f'data_batch_{k}')] for k in range(1, 6)]
CIFAR10.test_list = [['test_batch', calculate_md5(d / 'test_batch')]]
CIFAR10.meta = dict(CIFAR10.meta, md5=calculate_md5(d / 'batches.meta'))
sys.argv[0] = sys.argv[1]; sys.argv.pop(1)
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def check_weights_loaded(weights: Path) -> str:
    """The ViT that stage 03 builds from --weights-file: every backbone tensor equals the file's, and the head is a
    new 10-class layer (not the file's 1000-class one)."""
    import torch

    from common.models import build_model

    m = build_model("vit_tiny_patch16_224", num_classes=10, pretrained=True, img_size=224, weights_file=str(weights))
    ref = torch.load(weights, map_location="cpu", weights_only=True)
    sd = m.state_dict()
    backbone = [k for k in ref if not k.startswith("head.")]
    bad = [k for k in backbone if k not in sd or not torch.equal(sd[k], ref[k])]
    if bad:
        fail("03_train_vit_refs.py", f"--weights-file: {len(bad)} backbone tensors differ from the file, e.g. {bad[0]}")
    if tuple(sd["head.weight"].shape) != (10, 192) or ref["head.weight"].shape[0] != 1000:
        fail("03_train_vit_refs.py", f"head {tuple(sd['head.weight'].shape)}: expected a new (10, 192) layer")
    return f"backbone = file ({len(backbone)} tensors), head new (10, 192) vs the file's {tuple(ref['head.weight'].shape)}"


def vit_memory_estimate(batch: int = 64, img: int = 224) -> dict:
    """Peak training memory of ViT-Tiny at the paper's batch and resolution, from one measured forward of batch 2:
    the bytes autograd saves for backward (saved_tensors_hooks), scaled to `batch`, plus weights, gradients and SGD
    momentum. An estimate: allocator slack, cuDNN / cuBLAS workspaces and the CUDA context (~0.3-0.5 GB) are not
    in it."""
    import torch

    from common.models import build_model

    def saved_bytes(autocast: bool) -> int:
        m = build_model("vit_tiny_patch16_224", num_classes=10, pretrained=False, img_size=img).train()
        seen, total = set(), 0

        def pack(t):
            nonlocal total
            key = (t.untyped_storage().data_ptr(), t.dtype)
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
            return t
        x = torch.randn(2, 3, img, img)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                m(x).float().sum().backward()
        return total

    params = sum(p.numel() for p in build_model("vit_tiny_patch16_224", num_classes=10, pretrained=False,
                                                img_size=img).parameters())
    state = params * 4 * 3  # fp32 weights + grads + momentum
    out = dict(batch=batch, img_size=img, params=params, state_gb=state / 1e9)
    for name, ac in (("fp32", False), ("bf16", True)):
        act = saved_bytes(ac) / 2 * batch
        out[f"activations_{name}_gb"] = act / 1e9
        out[f"peak_{name}_gb"] = (act + state) / 1e9
    return out


def throughput(tree: Path) -> dict:
    """Training img/s of each track's original (rows x epochs / the epochs' seconds, from the stage's log.jsonl)."""
    out = {}
    for track, stage in (("resnet", "02_train_resnet"), ("vit", "03_train_vit_refs")):
        events = [json.loads(ln) for ln in (tree / stage / "log.jsonl").read_text().splitlines() if ln.strip()]
        start = next((e for e in events if e.get("event") == "start" and e.get("model") == "original"), None)
        secs = [e["seconds"] for e in events if e.get("event") == "epoch" and e.get("model") == "original"]
        # 03 logs no start event: its original trains on every train row (01's n_train)
        rows = start["n_rows"] if start else json.loads((tree / "01_prepare_data" / "metrics.json").read_text())["n_train"]
        if secs:
            out[track] = round(rows * len(secs) / sum(secs), 1)
    return out


def reproduction_table(tree: Path) -> list[str]:
    """The reproduction rows of 04 and 05 beside the references' published numbers."""
    lines = []
    for stage, ref in (("05_unlearn_gan", "reference B: original 84.81 % test, after GAN unlearning 63.35 % (10 epochs, "
                                          "full CIFAR-10)"),
                       ("04_unlearn_vit", "reference A: Table 1 in ../shared/reference/original-settings.md (3 epochs, "
                                          "pretrained ViT-Tiny)")):
        m = json.loads((tree / stage / "metrics.json").read_text())
        rep = m.get("reproduction") or {}
        lines.append(f"{stage}: {ref}")
        for name, r in (rep.get("models") or rep).items() if isinstance(rep, dict) else []:
            if isinstance(r, dict):
                figs = ", ".join(f"{k} {v:.2f}" for k, v in r.items() if k.startswith("acc_") and isinstance(v, (int, float)))
                lines.append(f"  {name}: {figs}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("test", "gpu"), required=True)
    ap.add_argument("--out", default="")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", os.cpu_count() or 1)))
    a = ap.parse_args()
    import torch

    from common.methods import methods_for

    if a.mode == "gpu" and not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA GPU here (torch.cuda.is_available() is False): run it on a CUDA machine",
              file=sys.stderr)
        sys.exit(1)
    out = Path(a.out or ("results-paper" if a.mode == "test" else "results-gpu")).resolve()
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    results, tree = out / "results", out / "results" / f"seed-{SEED}"
    env = dict(os.environ, THREADS=str(a.threads), PYTHONHASHSEED="0")
    device = "cpu" if a.mode == "test" else "cuda"
    common = ["--profile", "paper", "--results", str(tree), "--device", device, "--seed", str(SEED),
              "--precision", "auto"]
    times, checks = {}, {}
    if a.mode == "test":
        data, weights = make_test_inputs(out)
        checks["weights"] = check_weights_loaded(weights)
        prep = ["--source", "cifar10", "--data-dir", str(data), "--cache-dir", str(out / "cache")]
    else:
        data, weights = ROOT / "data", None
        prep = ["--source", "cifar10", "--data-dir", str(data), "--cache-dir", str(ROOT / "data" / "cache")]
    logs = out / "logs"
    logs.mkdir()
    for script in STAGES:
        args = common + SIZES[a.mode][script]
        if script == "01_prepare_data.py":
            args += prep
        if script in ("02_train_resnet.py", "03_train_vit_refs.py"):
            args += ["--noise-gold", "true"]
        if script == "03_train_vit_refs.py" and weights:
            args += ["--weights-file", str(weights)]
        shim = ["-c", MD5_SHIM, str(data)] if script == "01_prepare_data.py" and a.mode == "test" else []
        times[script] = run_stage(script, args, logs / f"{Path(script).stem}.log", env, shim)
        print(f"paper_run: {script} ok in {times[script]:.1f} s", flush=True)
    times["07_report.py"] = run_stage("07_report.py", ["--profile", "paper", "--results", str(results), "--device",
                                                       device, "--seeds", str(SEED)], logs / "07_report.log", env)
    print(f"paper_run: 07_report.py ok in {times['07_report.py']:.1f} s", flush=True)

    # what the paper profile must have produced
    man = json.loads((tree / "03_train_vit_refs" / "manifest.json").read_text())
    cfg = man.get("config", {})
    if cfg.get("img_size") != 224 or not cfg.get("pretrained"):
        fail("03_train_vit_refs.py", f"ran at img_size {cfg.get('img_size')}, pretrained {cfg.get('pretrained')}")
    for stage, track in (("04_unlearn_vit", "vit"), ("05_unlearn_gan", "resnet")):
        models = json.loads((tree / stage / "metrics.json").read_text()).get("models", {})
        missing = sorted(set(methods_for(track)) - set(models))  # every method of the track's registry
        if missing:
            fail(f"{stage}.py", f"no result for {', '.join(missing)}")
    prep_m = json.loads((tree / "01_prepare_data" / "metrics.json").read_text())
    n_forget = prep_m.get("split_sizes", {}).get("sample_forget")
    if n_forget != 64:
        fail("01_prepare_data.py", f"the sample-wise forget set has {n_forget} rows, reference B's batch is 64")
    checks["forget_rows"] = n_forget
    mem = vit_memory_estimate()
    checks["vit_memory"] = mem
    total = sum(times.values())
    speed = throughput(tree)
    summary = dict(mode=a.mode, device=device, threads=a.threads, stage_seconds=times, total_seconds=total,
                   throughput_img_s=speed, checks=checks, reproduction=reproduction_table(tree),
                   gpu=torch.cuda.get_device_name(0) if device == "cuda" else None)
    (out / "paper_run.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"paper_run: {checks.get('weights', 'weights: downloaded by timm')}")
    print(f"paper_run: ViT-Tiny training at batch {mem['batch']}, {mem['img_size']} px: {mem['params'] / 1e6:.2f} M "
          f"parameters, weights + grads + momentum {mem['state_gb']:.3f} GB, activations saved for backward "
          f"{mem['activations_fp32_gb']:.2f} GB fp32 / {mem['activations_bf16_gb']:.2f} GB bf16 autocast -> peak "
          f"~{mem['peak_fp32_gb']:.2f} / {mem['peak_bf16_gb']:.2f} GB (+ CUDA context and workspaces)")
    print(f"paper_run: training throughput of the originals (img/s, the epochs' own timing): "
          + ", ".join(f"{k} {v}" for k, v in speed.items()))
    print("\n".join(summary["reproduction"]))
    print(f"paper_run: all stages of the paper profile ran in {total:.0f} s ({out})")


if __name__ == "__main__":
    main()
