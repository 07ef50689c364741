"""What a GPU run needs, checked without a GPU (issue 28): torch's CUDA queries are stubbed where the code only asks
them questions; what cannot be checked without a GPU is listed in docs/reproduction.md ("make gpu-check").

- `cuda:N` resolution and its one-line error without CUDA (common.config.resolve_device);
- the precision rule on CUDA: auto = bf16 at compute capability >= 8.0, fp32 below (native_bf16, resolve_precision);
- autocast's device type for cuda:N (common.models.autocast);
- the batch loader's two paths: a split already on the device is indexed there (no per-batch copy), a split on the
  host is copied per batch with non_blocking (common.data.batches);
- NGPUS: tests/test_parallel.py (make -n, tree i -> cuda:<i mod NGPUS>).
"""
from __future__ import annotations

import pytest
import torch

from common import config as C
from common.io import PipelineError


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch believes a CUDA GPU of the given compute capability is present (only its queries are stubbed)."""
    def install(cc: tuple[int, int]):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cc)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: cc >= (8, 0))
    return install


def test_cuda_n_resolves_when_cuda_is_there_and_is_a_one_line_error_when_not(fake_cuda, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PipelineError, match="--device cuda:1 asked for, but torch sees no CUDA GPU: use --device cpu"):
        C.resolve_device("cuda:1")
    assert C.resolve_device("auto") == "cpu" and C.resolve_profile("auto") == "cpu"
    fake_cuda((9, 0))
    assert C.resolve_device("cuda:1") == "cuda:1" and C.resolve_device("auto") == "cuda"
    assert C.resolve_profile("auto") == "paper"  # a GPU user's `make all` is the paper profile
    with pytest.raises(PipelineError, match="unknown device 'tpu'"):
        C.resolve_device("tpu")


@pytest.mark.parametrize("cc, expected", [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp32"), ((6, 1), "fp32")])
def test_auto_precision_on_cuda_follows_the_compute_capability(fake_cuda, cc, expected):
    fake_cuda(cc)
    ok, why = C.native_bf16("cuda:0")
    assert ok == (expected == "bf16") and str(cc) in why
    assert C.resolve_precision("auto", "cuda:0") == expected
    assert C.resolve_precision("fp32", "cuda:0") == "fp32" and C.resolve_precision("bf16", "cuda:0") == "bf16"


def test_autocast_uses_the_cuda_device_type(monkeypatch):
    from common import models

    seen = {}

    class Spy:
        def __init__(self, device_type, dtype):
            seen.update(device_type=device_type, dtype=dtype)
    monkeypatch.setattr(torch, "autocast", Spy)
    models.autocast("cuda:3", True)
    assert seen == {"device_type": "cuda", "dtype": torch.bfloat16}


def test_batches_index_on_the_device_or_copy_non_blocking(monkeypatch):
    from common.data import batches

    images, labels = torch.arange(10 * 3 * 2 * 2, dtype=torch.uint8).view(10, 3, 2, 2), torch.arange(10)
    copies = []
    real_to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        copies.append(kwargs.get("non_blocking"))
        return real_to(self, *args, **kwargs)
    monkeypatch.setattr(torch.Tensor, "to", spy)
    out = list(batches(images, labels, None, 4, lambda x: x.float(), "cpu"))  # split already on the device
    assert [len(y) for _, y in out] == [4, 4, 2] and all(c is not True for c in copies)
    copies.clear()
    # a host split for a "cuda" device: copied per batch with non_blocking=True (the copy itself stays on the CPU
    # here: the spy hands the tensor back unchanged)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: copies.append(k.get("non_blocking")) or self)
    out = list(batches(images, labels, None, 4, lambda x: x.float(), "cuda:0"))
    assert copies == [True] * 6 and torch.equal(torch.cat([x for x, _ in out]), images.float())
