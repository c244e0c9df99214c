"""The fast path (bf16 autocast, channels_last) tracks the float32 eager step in the NCHW
layout that peer code uses.

GAN trajectories are chaotic, so step-by-step equality is not the claim; the claim is that
from the same weights, data and z, the losses and k_t of the two paths stay together over a
few hundred steps on real images. Runs on the CPU, whose autocast takes the same code path as
CUDA's; the benchmark measures the speed."""

import pytest
import torch

from began_core.config import ModelConfig, TrainConfig
from began_core.data.sources import open_dataset
from began_core.nn.model import BEGAN
from began_core.training.fast_path import native_bf16
from began_core.training.step import TrainStep

STEPS, WINDOW = 240, 40
# Tolerances, stated: window means of the losses within 2% relative, k_t within 2e-3.
LOSS_RTOL, K_ATOL = 0.02, 2e-3


def trajectory(**fast) -> torch.Tensor:
    """(STEPS, 4): L(x), L(G(z)), M_global and k_t after each step."""
    data = open_dataset("fluent-faces", 32, 3)
    torch.manual_seed(0)
    model = BEGAN(ModelConfig(resolution=32, n=16, Nh=32, Nz=32))
    # gamma 0.9 keeps k_t off its floor of 0, so the controller is exercised too.
    step = TrainStep(model, TrainConfig(seed=0, gamma=0.9, **fast), torch.device("cpu"))
    order = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(STEPS):
        x = data.batch(torch.randint(0, len(data), (16,), generator=order).numpy())
        r = step(x)
        rows.append([float(r["L_x"]), float(r["L_G"]), float(r["M_global"]), float(step.k_t)])
    return torch.tensor(rows, dtype=torch.float64)


@pytest.fixture(scope="module")
def float32_eager() -> torch.Tensor:
    return trajectory(amp=False, channels_last=False, fused_adam=False, compile=False)


# Where bf16 is emulated (no AVX-512 BF16 or AMX: a Zen 3 EPYC, say) the trainer never takes
# it (fast_path.resolve picks float32 there), and each emulated trajectory took many minutes:
# those cases test a path that processor does not run, so they are skipped there.
NATIVE = pytest.mark.skipif(
    native_bf16() is None, reason="bf16 is emulated on this CPU; its trainer runs float32"
)


@pytest.mark.parametrize(
    "fast",
    [
        {"amp": False, "channels_last": True},  # the default without native bf16
        pytest.param({"amp": True, "channels_last": False}, marks=NATIVE),
        pytest.param({"amp": True, "channels_last": True}, marks=NATIVE),
        pytest.param(  # the default with native bf16
            {"amp": True, "channels_last": True, "fused_adam": True}, marks=NATIVE
        ),
        pytest.param(
            {"amp": True, "channels_last": True, "fused_adam": True, "compile": True},
            marks=[NATIVE, pytest.mark.slow],  # inductor compiles G and D (a minute or more)
        ),
    ],
    ids=["float32+nhwc", "bf16", "bf16+nhwc", "bf16+nhwc+fused", "bf16+nhwc+fused+compiled"],
)
def test_fast_path_tracks_float32_eager(float32_eager, fast):
    ref, got = float32_eager, trajectory(**fast)
    assert torch.isfinite(got).all()
    assert ref[:, 3].max() > 0.01, "k_t never left 0: the test would not exercise it"
    assert (got[:, 3] - ref[:, 3]).abs().max() < K_ATOL
    ref_w = ref[:, :3].reshape(-1, WINDOW, 3).mean(1)
    got_w = got[:, :3].reshape(-1, WINDOW, 3).mean(1)
    assert ((got_w - ref_w).abs() / ref_w).max() < LOSS_RTOL
    assert not torch.equal(got, ref)  # the fast path did run: it changes the low bits


def test_the_cpu_default_follows_the_processor():
    """channels_last and fused Adam everywhere; bf16 autocast where the processor has native
    bf16 (float32 elsewhere); compiled only for a long run."""
    model = BEGAN(ModelConfig(resolution=32, n=8, Nh=16, Nz=16))
    step = TrainStep(model, TrainConfig(), torch.device("cpu"))
    assert step.channels_last and step.path.fused_adam and not step.path.compile
    assert step.amp == (native_bf16() is not None)
    assert step.opt_D.defaults.get("fused") is True
    assert model.D.encoder.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    off = TrainStep(BEGAN(model.config), TrainConfig(channels_last=False), torch.device("cpu"))
    assert not off.channels_last


def test_fused_adam_the_cuda_default_makes_the_same_update():
    data = open_dataset("fluent-faces", 32, 3)
    x = data.batch(list(range(16)))
    weights = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = BEGAN(ModelConfig(resolution=32, n=8, Nh=16, Nz=16))
        step = TrainStep(model, TrainConfig(seed=0, fused_adam=fused), torch.device("cpu"))
        assert bool(step.opt_D.defaults.get("fused")) is fused
        for _ in range(5):
            step(x)
        weights.append(model.state_dict())
    plain, fused = weights
    assert all(torch.allclose(plain[k], fused[k], atol=1e-5) for k in plain)


def test_compiled_step_makes_the_eager_step_on_the_cpu():
    """`--compile` (torch.compile of G and D, inductor's CPU backend here) runs the same
    step: after a few steps from the same weights and z, the losses and k_t agree."""
    x = open_dataset("fluent-faces", 32, 3).batch(list(range(8)))
    got = []
    for compile_ in (False, True):
        torch.manual_seed(0)
        model = BEGAN(ModelConfig(resolution=32, n=8, Nh=16, Nz=16))
        cfg = TrainConfig(seed=0, gamma=0.9, compile=compile_, amp=False)  # float32: tight
        step = TrainStep(model, cfg, torch.device("cpu"))
        rows = []
        for _ in range(4):
            r = step(x)
            rows.append([float(r["L_x"]), float(r["L_G"]), float(step.k_t)])
        got.append(torch.tensor(rows))
    eager, compiled = got
    assert eager[-1, 2] > 0  # k_t moved, so the controller is compared too
    assert torch.allclose(compiled, eager, rtol=1e-4, atol=1e-6)
