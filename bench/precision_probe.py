"""fp32 against bf16 autocast on this machine, for a whole step of each track's model (not a matmul alone): the
figure behind the README's note on what `PRECISION=auto` chose. The choice itself is made from the CPU's flags
(common.config.native_bf16), never from a timing; this script only shows whether that choice pays off here.

  python bench/precision_probe.py [--threads 2] [--repeats 3]

Prints img/s for eval (no_grad) and one SGD step, at fp32 and under bf16 autocast: ViT-Tiny at 224 px (batch 32)
and CIFAR ResNet-18 at 32 px (batch 64), random weights, the best of --repeats timed runs after one warm-up.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.config import native_bf16  # noqa: E402
from common.models import RESNET, build_model  # noqa: E402


def seconds(model: torch.nn.Module, x: torch.Tensor, bf16: bool, train: bool, repeats: int) -> float:
    """Best wall seconds of one forward (eval) or forward + backward + SGD step (train) on batch x."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    best = float("inf")
    for i in range(repeats + 1):  # the first run warms up (oneDNN primitives, allocator)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if train:
                model.train()
                loss = model(x).float().sum()
            else:
                model.eval()
                with torch.no_grad():
                    model(x)
        if train:
            opt.zero_grad()
            loss.backward()
            opt.step()
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads, {platform.processor() or platform.machine()}; "
          f"native_bf16: {native_bf16('cpu')[1]}")
    models = [("vit_tiny_patch16_224 224 px", build_model("vit_tiny_patch16_224", num_classes=10, img_size=224,
                                                          pretrained=False), 224, 32),
              ("resnet18_cifar 32 px", build_model(RESNET, num_classes=10), 32, 64)]
    for name, model, img, batch in models:
        x = torch.randn(batch, 3, img, img)
        for train in (False, True):
            fp32, bf16 = (batch / seconds(model, x, ac, train, a.repeats) for ac in (False, True))
            print(f"{name:28s} {'train' if train else 'eval':5s} batch {batch}: fp32 {fp32:7.1f} img/s, "
                  f"bf16 autocast {bf16:7.1f} img/s, fp32 / bf16 = {fp32 / bf16:.2f}x")


if __name__ == "__main__":
    main()
