"""Which fast path a step takes (began_core/training/fast_path.py): decided from the device and the
processor, overridden by every explicit option, and recorded where a user sees it."""

import json
from pathlib import Path

import pytest
import torch

from began_core.config import TrainConfig
from began_core.training import fast_path
from began_core.training.fast_path import resolve
from began_core.training.train import train

from conftest import TensorDataset, tiny_config

CPU = torch.device("cpu")


@pytest.fixture
def without_bf16(monkeypatch):
    monkeypatch.setattr(fast_path, "native_bf16", lambda: None)


@pytest.fixture
def with_amx(monkeypatch):
    monkeypatch.setattr(fast_path, "native_bf16", lambda: "AMX")


def test_a_cpu_without_native_bf16_trains_in_float32(without_bf16):
    path = resolve(TrainConfig(), CPU)
    assert not path.amp  # emulated bf16 is slower than float32
    assert path.channels_last and path.fused_adam and path.fuse_D and not path.compile
    assert "float32" in path.describe() and "without native bf16" in path.describe()


def test_a_cpu_with_native_bf16_takes_bf16(with_amx):
    path = resolve(TrainConfig(), CPU)
    assert path.amp and path.channels_last and path.fused_adam
    assert not path.compile  # measured not to pay on the CPU
    assert path.describe().startswith("bf16 autocast") and "CPU with AMX" in path.describe()


def test_explicit_options_win_over_the_processor(with_amx):
    cfg = TrainConfig(amp=False, channels_last=False, fused_adam=False, compile=False)
    path = resolve(cfg, CPU)
    assert (path.amp, path.channels_last, path.fused_adam, path.compile) == (False,) * 4
    assert resolve(TrainConfig(compile=True), CPU).compile
    assert "compiled" in resolve(TrainConfig(compile=True), CPU).describe()


def test_cuda_takes_bf16_and_d_in_one_batch_everywhere():
    cuda = resolve(TrainConfig(), torch.device("cuda"))
    assert cuda.amp and cuda.fused_adam and cuda.fuse_D and not cuda.compile
    assert resolve(TrainConfig(), CPU).fuse_D  # also what DDP needs: one forward of D


def test_one_cuda_process_takes_the_graph_unasked_and_others_stay_eager():
    """Since its CUDA tests passed on a GPU (fast_path.GRAPH_AUTO), a one-process CUDA run
    replays the step as one graph; a distributed run, a compiled one, --no-graph and the CPU
    stay eager, and none of those is refused for it."""
    cuda = torch.device("cuda")
    assert fast_path.GRAPH_AUTO
    assert resolve(TrainConfig(), cuda).graph
    assert "one CUDA graph per step" in resolve(TrainConfig(), cuda).describe()
    assert not resolve(TrainConfig(), cuda, processes=2).graph
    assert not resolve(TrainConfig(compile=True), cuda).graph
    assert not resolve(TrainConfig(graph=False), cuda).graph
    assert not resolve(TrainConfig(), CPU).graph
    assert resolve(TrainConfig(graph=True), cuda, processes=2).graph  # asked: step.py refuses


def test_the_processor_is_read_not_assumed():
    units = fast_path.native_bf16()
    assert units in (None, "AMX", "AVX-512 BF16")
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # Linux: the kernel's flags say the same
        flags = cpuinfo.read_text()
        assert (units is not None) == any(f in flags for f in (" avx512_bf16", " amx_tile"))


def test_the_run_records_its_path(tmp_path):
    list(train(tiny_config(), tmp_path / "r", dataset=TensorDataset(n=16)))
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())["meta"]["fast_path"]
    expected = resolve(tiny_config().train, CPU)
    assert recorded["summary"] == expected.describe()
    assert recorded["amp"] == expected.amp == (fast_path.native_bf16() is not None)
