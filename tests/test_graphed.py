"""The whole step as one CUDA graph (began_core/training/graphed.py).

On the CPU the graph's code path runs with the capture off: it must make the eager host-free
step's numbers bit for bit (it differs only in autocast's cache and G_ema's weights coming from
tensors), through the training loop too, and a checkpoint written in one mode must resume in
the other exactly. The tests marked `cuda` need a GPU and skip without one
(scripts/device_window.sh runs them there): the captured step tracks the eager one within the
fast-path tolerances over a few hundred steps on real images, a run resumes exactly across
modes, and neither step synchronises with the host."""

import dataclasses
import os

import pytest
import torch

from began_core.checkpoints.hub import load
from began_core.config import ConfigError, ModelConfig, TrainConfig
from began_core.data.sources import open_dataset
from began_core.nn.model import BEGAN
from began_core.runs.run_dir import RunDir
from began_core.training import fast_path
from began_core.training.augment import Augment
from began_core.training.graphed import GraphedStep
from began_core.training.schedule import PlateauHalving
from began_core.training.step import TrainStep
from began_core.training.train import train

from conftest import TensorDataset, tiny_config, with_train

# cuBLAS is deterministic only with a fixed workspace, set before CUDA starts.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

CPU = torch.device("cpu")
ALL = ("translation", "cutout", "color")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# The fast-path tolerances (tests/test_fast_path.py): window means within 2 %, k_t within 2e-3.
STEPS, WINDOW, LOSS_RTOL, K_ATOL = 240, 40, 0.02, 2e-3


def make_step(device, graphed: bool, capture: bool | None = None, **train):
    torch.manual_seed(0)
    model = BEGAN(ModelConfig(resolution=32, n=8, Nh=16, Nz=16)).to(device)
    cfg = TrainConfig(gamma=0.9, lambda_k=0.05, ema_kimg=0.02, ema_sweep="0.01", **train)
    step = TrainStep(model, cfg, device, augment=Augment(ALL, 0.6, seed=1), draws="device")
    return GraphedStep(step, capture=capture) if graphed else step


def state(step) -> dict[str, torch.Tensor]:
    step = getattr(step, "step", step)
    out = dict(step.model.state_dict())
    for name, opt in (("G", step.opt_G), ("D", step.opt_D)):
        for i, s in opt.state_dict()["state"].items():
            out.update({f"{name}.{i}.{k}": v for k, v in s.items()})
    out.update({f"sweep.{h}.{k}": v for h, w in step.averages.sweep_state().items() for k, v in w.items()})  # fmt: skip
    return out


def test_the_graphs_code_path_uncaptured_is_the_eager_step_bit_for_bit():
    x = TensorDataset(n=16).x[:8]
    eager, graphed = make_step(CPU, False), make_step(CPU, True, capture=False)
    assert not graphed.step.autocast_cache and graphed.step.ema_weights is not None
    for t in range(5):
        lr = 1e-4 if t < 3 else 5e-5
        eager.set_lr(lr), graphed.step.set_lr(lr)
        a, b = eager(x, t), graphed(x, t)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not graphed.captured and graphed.eager_steps == 5
    sa, sb = state(eager), state(graphed)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(eager.k_t, graphed.step.k_t) and float(eager.k_t) > 0


def test_graph_refusals_name_the_problem():
    with pytest.raises(ConfigError, match="CUDA device"):
        fast_path.resolve(TrainConfig(graph=True), CPU)
    with pytest.raises(ConfigError, match="choose one"):
        fast_path.resolve(TrainConfig(graph=True, compile=True), torch.device("cuda"))
    assert fast_path.resolve(TrainConfig(), torch.device("cuda")).graph  # proven on a GPU
    assert fast_path.resolve(TrainConfig(), torch.device("cuda")).draws == "device"
    step = make_step(CPU, False)
    with pytest.raises(ConfigError, match="CUDA"):
        GraphedStep(step, capture=True)
    host = TrainStep(step.model, step.cfg, CPU, augment=Augment(ALL, 0.5, seed=0))
    with pytest.raises(ConfigError, match="host"):
        GraphedStep(host, capture=False)


def test_a_carry_above_zero_keeps_the_step_eager():
    torch.manual_seed(0)
    model = BEGAN(ModelConfig(resolution=32, n=8, Nh=16, Nz=16, vanishing_residual=True))
    g = GraphedStep(TrainStep(model, TrainConfig(), CPU), capture=False)
    model.set_carry(0.5)
    assert not g._replayable()
    model.set_carry(0.0)
    assert g._replayable()


@pytest.fixture
def graph_on_the_cpu(monkeypatch):
    """`train` with the graph's code path on the CPU (uncaptured), or CUDA's eager modes."""
    resolve = fast_path.resolve

    def modes(graph: bool):
        monkeypatch.setattr(
            fast_path,
            "resolve",
            lambda cfg, device, processes=1: dataclasses.replace(
                resolve(dataclasses.replace(cfg, graph=False), device, processes),
                draws="device",
                graph=graph,
            ),
        )

    return modes


def metrics(run: RunDir) -> list[dict]:
    keys = ("step", "k_t", "L_x", "L_G", "L_D", "M_global", "lr")
    return [{k: r[k] for k in keys} for r in run.read_metrics()]


def weights(run: RunDir) -> dict[str, torch.Tensor]:
    return load(run.latest_checkpoint()).state_dict()


def run_modes(tmp_path, full, mode) -> dict[str, RunDir]:
    """Four runs of `full`: eager, graphed, and each resumed halfway in the other mode.
    `mode(config, graph)` is the config that trains in that mode."""
    half, runs = with_train(full, steps=full.train.steps // 2), {}
    for name, first, second in [
        ("eager", False, None),
        ("graph", True, None),
        ("graph_then_eager", True, False),
        ("eager_then_graph", False, True),
    ]:
        cfg = mode(full if second is None else half, first)
        list(train(cfg, tmp_path / name, dataset=TensorDataset()))
        if second is not None:
            list(train(mode(full, second), tmp_path / name, dataset=TensorDataset(), resume=True))
        runs[name] = RunDir(tmp_path / name)
    return runs


def test_a_checkpoint_resumes_across_modes_exactly_through_train(tmp_path, graph_on_the_cpu):
    full = tiny_config(
        steps=20, checkpoint_every=10, augment="translation,cutout", augment_p=0.6,
        ema_kimg=0.05, lr_window=3, gamma=0.9,
    )  # fmt: skip
    runs = run_modes(tmp_path, full, lambda cfg, on: graph_on_the_cpu(on) or cfg)
    summary = runs["graph"].read_config_dict()["meta"]["fast_path"]["summary"]
    assert "one CUDA graph per step" in summary
    ref_m, ref_w = metrics(runs["eager"]), weights(runs["eager"])
    assert ref_m[-1]["lr"] < full.train.lr and ref_m[-1]["step"] == 20
    for name in ("graph", "graph_then_eager", "eager_then_graph"):
        assert metrics(runs[name]) == ref_m, name
        w = weights(runs[name])
        assert all(torch.equal(ref_w[k], w[k]) for k in ref_w), name


# --------------------------------------------------------------------------- on a GPU


def faces_trajectory(graphed: bool, steps: int = STEPS) -> tuple[torch.Tensor, GraphedStep | None]:
    """(steps, 4): L(x), L(G(z)), M_global and k_t after each step on real images, the default
    CUDA path (bf16, fused Adam, device draws) with augmentation and G_ema, the rate halved
    halfway (a copy into the captured learning rate, no re-capture)."""
    cuda = torch.device("cuda")
    data = open_dataset("fluent-faces", 32, 3)
    torch.manual_seed(0)
    model = BEGAN(ModelConfig(resolution=32, n=16, Nh=32, Nz=32)).to(cuda)
    cfg = TrainConfig(seed=0, gamma=0.9, ema_kimg=0.5, graph=graphed)
    step = TrainStep(model, cfg, cuda, augment=Augment(("translation", "cutout"), 0.5, seed=0))
    run = GraphedStep(step) if graphed else step
    order = torch.Generator().manual_seed(0)
    rows = []
    for t in range(steps):
        step.set_lr(cfg.lr if t < steps // 2 else cfg.lr / 2)
        x = data.batch(torch.randint(0, len(data), (16,), generator=order).numpy()).to(cuda)
        r = run(x, t)
        rows.append(torch.stack([r["L_x"], r["L_G"], r["M_global"], step.k_t.clone()]))
    return torch.stack(rows).double().cpu(), run if graphed else None


@CUDA
@pytest.mark.cuda
def test_cuda_graphed_step_tracks_the_eager_step():
    ref, _ = faces_trajectory(False)
    got, graphed = faces_trajectory(True)
    assert graphed is not None and graphed.captured
    assert torch.isfinite(got).all()
    assert ref[:, 3].max() > 0.01, "k_t never left 0: the test would not exercise it"
    assert (got[:, 3] - ref[:, 3]).abs().max() < K_ATOL
    ref_w = ref[:, :3].reshape(-1, WINDOW, 3).mean(1)
    got_w = got[:, :3].reshape(-1, WINDOW, 3).mean(1)
    assert ((got_w - ref_w).abs() / ref_w).max() < LOSS_RTOL
    # Replays draw fresh augmentations and z: the losses move from step to step.
    assert got[-20:, 0].unique().numel() > 10
    exact = torch.equal(got, ref)
    print(f"graphed equals eager bit for bit: {exact}; max |d k_t| {(got[:, 3] - ref[:, 3]).abs().max():.2e}")  # fmt: skip


@CUDA
@pytest.mark.cuda
def test_cuda_step_never_synchronises_with_the_host():
    """After a warm-up, eager and graphed steps run with torch's sync debug mode set to
    error, together with what the loop does per step (rate, sums, plateau rule)."""
    cuda = torch.device("cuda")
    x = (torch.rand(16, 3, 32, 32, device=cuda) * 2 - 1).contiguous()
    for graphed in (False, True):
        run = make_step(cuda, graphed)
        step = getattr(run, "step", run)
        plateau = PlateauHalving(4)
        lr = torch.tensor(1e-4, dtype=torch.float64, device=cuda)
        for t in range(6):
            run(x, t)
        torch.cuda.synchronize()
        total = torch.zeros((), device=cuda)
        torch.cuda.set_sync_debug_mode("error")
        try:
            for t in range(6, 18):
                step.set_lr(lr)
                out = run(x, t)
                total = total + out["L_x"]
                lr = plateau.observe(out["M_global"], lr)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert torch.isfinite(total) and float(lr) <= 1e-4
        assert not graphed or run.captured


CUDA_RUN = tiny_config(
    steps=60, checkpoint_every=30, log_every=5, augment="translation,cutout", augment_p=0.6,
    ema_kimg=0.05, lr_window=7, gamma=0.9, device="cuda",
)  # fmt: skip


@pytest.fixture
def cudnn_deterministic():
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


@CUDA
@pytest.mark.cuda
def test_cuda_graphed_run_resumes_graphed_bit_for_bit(tmp_path, cudnn_deterministic):
    half = with_train(CUDA_RUN, steps=30, graph=True)
    list(train(with_train(CUDA_RUN, graph=True), tmp_path / "a", dataset=TensorDataset()))
    list(train(half, tmp_path / "b", dataset=TensorDataset()))
    list(train(with_train(CUDA_RUN, graph=True), tmp_path / "b", dataset=TensorDataset(), resume=True))  # fmt: skip
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    assert "one CUDA graph per step" in a.read_config_dict()["meta"]["fast_path"]["summary"]
    assert metrics(a) == metrics(b)
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@CUDA
@pytest.mark.cuda
def test_cuda_runs_resume_across_modes(tmp_path, cudnn_deterministic):
    """A checkpoint written graphed resumes eager, and an eager one graphed: each tracks the
    uninterrupted run of its first mode within the fast-path tolerances, record by record."""
    runs = run_modes(tmp_path, CUDA_RUN, lambda cfg, on: with_train(cfg, graph=on))
    g, e = metrics(runs["graph"]), metrics(runs["eager"])
    for name, ref in (("graph_then_eager", g), ("eager_then_graph", e)):
        got = metrics(runs[name])
        assert [r["step"] for r in got] == [r["step"] for r in ref]
        assert got[:6] == ref[:6], name  # the first half is the first mode's own
        for a, b in zip(got, ref, strict=True):
            assert abs(a["k_t"] - b["k_t"]) < K_ATOL, name
            assert abs(a["L_x"] - b["L_x"]) / b["L_x"] < 5 * LOSS_RTOL, name  # per record
