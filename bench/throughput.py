"""Train and eval throughput (images/s) of this pipeline's input + compute path vs the references' way, both tracks,
and as a share of this machine's measured matmul limit.

  limit         a square fp32 matmul (--matmul-size, torch.mm) timed the same way, in every precision this machine
                computes natively (fp32 always; bf16 where common.config.native_bf16 says so): GFLOP/s. A phase's
                "% of limit" = its img/s x the model's FLOP per image (counted by torch.utils.flop_counter on one
                step: forward, or forward + backward) / the limit of the precision it ran in.
  ViT track     ours: uint8 images on the device, batched bilinear resize + normalise there (common.data.batches +
                      vit_transform), training in --precision (auto = what the stages resolve on this machine),
                      eval in fp32 (as every stage's evaluation pass), timm vit_tiny_patch16_224 at --img-size
                reference A's way: a Dataset that makes a PIL image per row, torchvision Resize((s, s)) + ToTensor +
                      Normalize([0.5]*3, [0.5]*3) per image, DataLoader(num_workers=0), fp32
  ResNet track  ours: random crop (pad 4) + flip on the device (resnet_transform), --precision, channels_last
                reference B's way: PIL RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize per
                      image, DataLoader(num_workers=0), fp32 (eval: ToTensor + Normalize)
Same machine, same model, same batch size per track, one run: after --warmup batches, --repeats windows of --steps
batches each (data loading included) of a training step (forward, backward, SGD) or an eval forward pass, the two
paths' windows alternating; the best window of each path counts (least disturbed by other load; all are kept).

Reads   <results>/01_prepare_data/data.pt (real images; run 01 first)
Writes  results/bench/throughput.json (img/s, ratio ours / reference, % of the limit, limits, precision, CPU model and
        flags, device, batch, img_size, torch version)
Run
  python bench/throughput.py --results results/seed-42                          (~2-4 min on 2 CPU cores)
  python bench/throughput.py --precision fp32                                   (ours in fp32 whatever the machine)
  python bench/throughput.py --img-size 224 --steps 20 --device cuda            (on a GPU: reference A's size)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.config import cpu_flags, native_bf16, resolve_device, resolve_precision  # noqa: E402
from common.data import CIFAR_MEAN, CIFAR_STD, VIT_MEAN, VIT_STD, batches, load_prepared, resnet_transform, vit_transform  # noqa: E402
from common.io import PipelineError, run_main, save_json  # noqa: E402
from common.models import autocast, build_model  # noqa: E402


class PilDataset(torch.utils.data.Dataset):
    """Rows of an HWC uint8 array turned into PIL images one by one, as torchvision's CIFAR10 does."""

    def __init__(self, images_hwc, labels, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_loader(images, labels, transform, batch_size: int):
    ds = PilDataset(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), transform)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_limit(device: str, precision: str, n: int, steps: int, repeats: int) -> float:
    """GFLOP/s of an n x n x n matmul in `precision` (best of `repeats` windows of `steps` products)."""
    a, b = (torch.randn(n, n, device=device, dtype=DTYPES[precision]) for _ in range(2))
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            a @ b
        sync(device)
        best = max(best, 2 * n ** 3 * steps / (time.perf_counter() - t0) / 1e9)
    return best


def flop_per_image(model, x: torch.Tensor, train: bool) -> float:
    """FLOP of one image through `model` (forward; + backward when `train`), counted by torch's FlopCounterMode
    (matmuls and convolutions: what bounds these models), on a copy of a real batch."""
    from torch.utils.flop_counter import FlopCounterMode

    model.train(train)
    with FlopCounterMode(display=False) as counter:
        if train:
            F.cross_entropy(model(x).float(), torch.zeros(len(x), dtype=torch.long, device=x.device)).backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(x)
    return counter.get_total_flops() / len(x)


class Runner:
    """One model + one endless batch stream; `window(steps)` times that many batches of a train step (forward,
    backward, SGD) or an eval forward, the input pipeline included, and returns img/s."""

    def __init__(self, model, make_iter, device: str, amp: bool, train: bool):
        self.model, self.make_iter, self.device, self.amp, self.train = model, make_iter, device, amp, train
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9) if train else None
        self.it = iter(make_iter())
        model.train(train)

    def batch(self):
        try:
            return next(self.it)
        except StopIteration:  # an epoch ended: start the next one
            self.it = iter(self.make_iter())
            return next(self.it)

    def step(self) -> int:
        x, y = self.batch()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)  # no-op for ours
        if self.train:
            with autocast(self.device, self.amp):
                loss = F.cross_entropy(self.model(x).float(), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        else:
            with torch.no_grad(), autocast(self.device, self.amp):
                self.model(x)
        return len(y)

    def window(self, steps: int) -> float:
        sync(self.device)
        t0, seen = time.perf_counter(), 0
        for _ in range(steps):
            seen += self.step()
        sync(self.device)
        return seen / (time.perf_counter() - t0)


def bench_track(track: str, images, labels, args, device: str, precision: str, limits: dict) -> list[dict]:
    from torchvision import transforms as T

    if track == "vit":
        bs, size = args.vit_batch, args.img_size
        norm = T.Normalize(VIT_MEAN, VIT_STD)
        ref_tf = {True: T.Compose([T.Resize((size, size)), T.ToTensor(), norm])}
        ref_tf[False] = ref_tf[True]
        ours_tf = {True: vit_transform(size), False: vit_transform(size)}

        def make(channels_last: bool):
            return build_model("vit_tiny_patch16_224", num_classes=10, pretrained=False, img_size=size).to(device)
    else:
        bs, size = args.resnet_batch, 32
        norm = T.Normalize(CIFAR_MEAN, CIFAR_STD)
        ref_tf = {True: T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), norm]),
                  False: T.Compose([T.ToTensor(), norm])}
        ours_tf = {True: resnet_transform(True, channels_last=True), False: resnet_transform(False, channels_last=True)}

        def make(channels_last: bool):
            model = build_model("resnet18_cifar", num_classes=10).to(device)
            return model.to(memory_format=torch.channels_last) if channels_last else model
    if len(labels) < bs:
        raise PipelineError(f"{len(labels)} images are fewer than one batch of {bs}: use a bigger data.pt")

    x_dev, y_dev = images.to(device), labels.to(device)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for train in (True, False):
        phase = "train" if train else "eval"
        phase_precision = precision if train else "fp32"  # the stages' evaluation passes (common.train.predict) are fp32
        torch.manual_seed(0)
        ours = Runner(make(track == "resnet"), lambda: batches(x_dev, y_dev, None, bs, ours_tf[train], device,
                      shuffle=True, drop_last=True, generator=gen), device, train and precision == "bf16", train)
        flop = flop_per_image(make(False), next(iter(batches(x_dev, y_dev, None, bs, ours_tf[train], device)))[0], train)
        torch.manual_seed(0)  # same initial weights; fp32 and the default memory format, as the references run
        ref = Runner(make(False), lambda: reference_loader(images, labels, ref_tf[train], bs), device, False, train)
        for r in (ours, ref):
            for _ in range(args.warmup):
                r.step()
        rates = {"ours": [], "reference": []}
        for _ in range(args.repeats):  # alternate windows, so a burst of load elsewhere hits both paths alike
            rates["ours"].append(ours.window(args.steps))
            rates["reference"].append(ref.window(args.steps))
        best = {k: max(v) for k, v in rates.items()}  # best window = least disturbed by other processes
        pct = {k: 100.0 * v * flop / 1e9 / limits[p] for (k, v), p in zip(best.items(), (phase_precision, "fp32"))}
        rows.append(dict(track=track, phase=phase, precision=phase_precision, ours_img_s=round(best["ours"], 1),
                         reference_img_s=round(best["reference"], 1), ratio=round(best["ours"] / best["reference"], 2),
                         gflop_per_image=round(flop / 1e9, 4), ours_pct_of_limit=round(pct["ours"], 1),
                         reference_pct_of_limit=round(pct["reference"], 1),
                         batch=bs, img_size=size, windows={k: [round(x, 1) for x in v] for k, v in rates.items()}))
        print(f"{track:6s} {phase:5s}  ours ({phase_precision}) {best['ours']:8.1f} img/s = {pct['ours']:5.1f} % of limit  "
              f"reference (fp32) {best['reference']:8.1f} img/s = {pct['reference']:5.1f} %  ratio "
              f"{best['ours'] / best['reference']:5.2f}x   (windows: ours {rows[-1]['windows']['ours']}, "
              f"reference {rows[-1]['windows']['reference']})", flush=True)
    return rows


def cpu_model() -> str:
    """The CPU's model name (lscpu's 'Model name'), for the record beside every figure."""
    import platform

    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default="results", help="results root holding 01_prepare_data/data.pt")
    p.add_argument("--device", default="auto")
    p.add_argument("--img-size", type=int, default=0, help="ViT input size (default: 224 on CUDA, 32 on CPU, as "
                   "the paper / cpu profiles)")
    p.add_argument("--vit-batch", type=int, default=64, help="reference A's batch size")
    p.add_argument("--resnet-batch", type=int, default=128, help="the ResNet track's batch size")
    p.add_argument("--steps", type=int, default=8, help="timed batches per window")
    p.add_argument("--repeats", type=int, default=3, help="timed windows per path (alternating); the best counts")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    p.add_argument("--tracks", default="vit,resnet")
    p.add_argument("--precision", default="auto", help="ours: auto (as the stages resolve it here) | bf16 | fp32; "
                   "the references' loops run in fp32, as their code does")
    p.add_argument("--matmul-size", type=int, default=1024, help="the limit's square matmul")
    p.add_argument("--out", default="results/bench/throughput.json")
    args = p.parse_args()
    device = resolve_device(args.device)
    args.img_size = args.img_size or (224 if device.startswith("cuda") else 32)
    precision = resolve_precision(args.precision, device)
    native, why = native_bf16(device)
    limits = {p: round(matmul_limit(device, p, args.matmul_size, 20, args.repeats), 1)
              for p in ("fp32", "bf16") if p == "fp32" or native or precision == p}
    cpu = cpu_model()
    print(f"{cpu}; {why}; ours in {precision}\nlimit ({args.matmul_size}^2 matmul): "
          + ", ".join(f"{p} {v} GFLOP/s" for p, v in limits.items()), flush=True)
    data, _ = load_prepared(args.results)
    images, labels = data["train_images"], data["train_labels"]
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {len(labels)} real train "
          f"images, {args.repeats} x {args.steps} timed batches per path after {args.warmup} warm-up", flush=True)
    started, rows = time.time(), []
    for track in [t.strip() for t in args.tracks.split(",") if t.strip()]:
        if track not in ("vit", "resnet"):
            raise PipelineError(f"unknown track {track!r}: use --tracks vit,resnet")
        rows += bench_track(track, images, labels, args, device, precision, limits)

    print(f"\n{'track':6s} {'phase':5s} {'batch':>5s} {'px':>4s} {'GFLOP/img':>9s} {'ours img/s':>11s} {'% limit':>7s} "
          f"{'reference img/s':>16s} {'% limit':>7s} {'ratio':>6s}")
    for r in rows:
        print(f"{r['track']:6s} {r['phase']:5s} {r['batch']:5d} {r['img_size']:4d} {r['gflop_per_image']:9.3f} "
              f"{r['ours_img_s']:11.1f} {r['ours_pct_of_limit']:7.1f} {r['reference_img_s']:16.1f} "
              f"{r['reference_pct_of_limit']:7.1f} {r['ratio']:5.2f}x")
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    save_json(dict(rows=rows, device=device, gpu=gpu, cpu=cpu, cpu_flags=sorted(cpu_flags()), precision=precision,
                   precision_check=why, limits_gflop_s=limits, matmul_size=args.matmul_size,
                   torch=torch.__version__, cpu_threads=torch.get_num_threads(),
                   steps=args.steps, repeats=args.repeats, warmup=args.warmup, statistic="best window",
                   data=str(Path(args.results) / "01_prepare_data/data.pt"),
                   seconds=round(time.time() - started, 1),
                   ours=f"batched on-device uint8 path, {precision} (+ channels_last for ResNet)",
                   reference="PIL per-image torchvision transforms in a DataLoader with 0 workers, fp32"), args.out)
    print(f"wrote {args.out} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    run_main(main)
