"""--precision auto | bf16 | fp32: auto follows the hardware check (common.config.native_bf16), forced both ways;
the resolved value reaches the manifest and the config's `amp`."""
import json

import pytest

from common import config as C
from common.io import PipelineError, write_manifest


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_hardware_check(monkeypatch, native, expected):
    monkeypatch.setattr(C, "native_bf16", lambda device: (native, "forced by the test"))
    assert C.resolve_precision("auto", "cpu") == expected
    # an explicit choice is honoured whatever the hardware
    assert C.resolve_precision("fp32", "cpu") == "fp32" and C.resolve_precision("bf16", "cpu") == "bf16"


@pytest.mark.parametrize("flags, native", [({"avx2", "fma"}, False), ({"avx512f", "avx512bw"}, False),
                                           ({"avx512f", "avx512_bf16"}, True), ({"avx2", "amx_bf16"}, True)])
def test_x86_native_means_bf16_instructions(monkeypatch, flags, native):
    """AVX512 alone (where oneDNN says bf16 is 'supported') is not native: only AVX512-BF16 or AMX-BF16 are."""
    monkeypatch.setattr(C, "cpu_flags", lambda: set(flags))
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    ok, why = C.native_bf16("cpu")
    assert ok is native and ("native" if native else "emulated") in why


def test_unknown_cpu_without_flags_is_fp32(monkeypatch):
    monkeypatch.setattr(C, "cpu_flags", lambda: set())
    monkeypatch.setattr("platform.machine", lambda: "riscv64")
    assert C.native_bf16("cpu")[0] is False


def test_unknown_precision_is_a_one_line_error():
    with pytest.raises(PipelineError, match="unknown precision 'fp16'"):
        C.resolve_precision("fp16", "cpu")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_stage_config_resolves_and_the_manifest_records_it(monkeypatch, tmp_path, native, expected):
    monkeypatch.setattr(C, "native_bf16", lambda device: (native, "forced by the test"))
    cfg = C.parse_config(C.ResNetConfig, ["--profile", "smoke", "--device", "cpu"])
    with pytest.raises(PipelineError, match="not resolved"):
        cfg.amp  # noqa: B018  (auto must be resolved on a device before a step runs)
    assert C.resolve_runtime(cfg) == "cpu"
    assert cfg.precision == expected and cfg.amp is (expected == "bf16")
    write_manifest(tmp_path, C.config_dict(cfg), "cpu", started=0.0, inputs=[], outputs=[])
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["config"]["precision"] == expected and man["config"]["precision_requested"] == "auto"
    assert man["precision"] == dict(requested="auto", resolved=expected, native_bf16=native, check="forced by the test")


def test_autocast_follows_the_resolved_precision():
    import torch

    from common.models import autocast

    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast("cpu", True):
        assert lin(x).dtype == torch.bfloat16
    with autocast("cpu", False):
        assert lin(x).dtype == torch.float32
