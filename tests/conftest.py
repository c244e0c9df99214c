import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from began_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
# `train` flags of a tiny model on the instant built-in data, and of a short run of it.
TINY = ["--data", "shapes", "--filters", "8", "--h-dim", "16", "--z-dim", "16"]
SHORT = ["--steps", "20", "--log-every", "5", "--checkpoint-every", "10"]


class TensorDataset:
    """A stand-in for data.ImageDataset: random images held in memory."""

    def __init__(self, n: int = 64, resolution: int = 32, channels: int = 3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, channels, resolution, resolution, generator=g) * 2 - 1
        self.resolution, self.channels = resolution, channels
        self.skipped, self.description = 0, "random test images"

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, indices) -> torch.Tensor:
        return self.x[torch.as_tensor(indices)]


def tiny_config(heldout: float = 0.0, **train) -> RunConfig:
    defaults = dict(steps=20, log_every=5, sample_every=10, checkpoint_every=10, lr_window=7)
    return RunConfig(
        model=ModelConfig(resolution=32, n=8, Nh=16, Nz=16),
        train=TrainConfig(**{**defaults, **train}),
        data=DataConfig(heldout=heldout),
    )


def with_train(config: RunConfig, **changes) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


@pytest.fixture
def dataset():
    return TensorDataset()


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """An empty runs folder for the dashboard, with no shipped checkpoints and not read-only."""
    root = tmp_path / "runs"
    monkeypatch.setenv("BEGAN_RUNS_DIR", str(root))
    monkeypatch.setenv("BEGAN_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    monkeypatch.delenv("BEGAN_READ_ONLY", raising=False)
    return root


THREADS = 2  # every test, and every module's shared reference run, trains on this many


@pytest.fixture(autouse=True, scope="module")
def _few_threads_for_the_module():
    """Module-scoped fixtures (a reference run trained once per file) are built before any
    test's own fixtures: without this they trained on whatever thread count the previous file
    left (test_faults_kill's 1), and bit-for-bit comparisons with the tests' runs failed."""
    torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(THREADS)
    # torch.compile's caches start afresh for every test: tests change the thread count and the
    # determinism setting, each of which makes a compiled function recompile, and after a few
    # recompiles torch.compile refuses (the fast ELU then falls back, see test_elu.py).
    torch.compiler.reset()


def wait_until(predicate, timeout: float, what: str = "condition"):
    """Poll `predicate` until it returns something truthy, and return that; fail naming
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def end_launched_children():
    """Kill whatever training processes began_core.runs.launch started in this process."""
    from began_core.runs import launch

    yield
    for pid, proc in list(launch._children.items()):
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        launch._children.pop(pid, None)


def run_began(
    *args: str, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m began_core ARGS` from the repository root, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "began_core", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dead_pid() -> int:
    """The pid of a process that has already exited: what a killed trainer leaves behind."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """A Hub on 127.0.0.1 (tests/hub_server.py) that this process's huggingface_hub talks to,
    with an empty cache of its own. huggingface_hub reads HF_ENDPOINT and friends at import,
    so its constants are patched here, and the environment is set for subprocesses."""
    from hub_server import Hub
    from huggingface_hub import constants

    hub = Hub()
    url = hub.start()
    cache = tmp_path / "hf"
    for name, value in {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_CACHE": str(cache / "hub"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
    }.items():
        monkeypatch.setattr(constants, name, value)
    env = {
        "HF_ENDPOINT": url,
        "HF_HOME": str(cache),
        "HF_HUB_DISABLE_XET": "1",
        "HF_TOKEN": "hf_local_test_token",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub.env = env
    yield hub
    hub.stop()
