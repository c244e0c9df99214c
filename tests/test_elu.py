"""The fast ELU (began_core/nn/elu.py) computes torch's ELU, forward and backward, in every layout
it takes, and falls back to torch's where it does not apply."""

import logging

import pytest
import torch
import torch.nn.functional as F

from began_core.config import ModelConfig, TrainConfig
from began_core.nn import elu as elu_module
from began_core.nn.elu import ELU, FAST_MIN_NUMEL, elu, set_fast
from began_core.nn.model import BEGAN
from began_core.training.step import TrainStep

SHAPE = (2, 32, 128, 128)  # 2**20 values: above FAST_MIN_NUMEL
TOL = {torch.float32: 1e-6, torch.bfloat16: 1e-2}


def _input(dtype, layout):
    torch.manual_seed(0)
    x = (torch.randn(SHAPE) * 2).to(dtype)
    return x.contiguous(memory_format=layout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_forward_and_backward_match_torch(dtype, layout):
    assert torch.Size(SHAPE).numel() >= FAST_MIN_NUMEL
    x = _input(dtype, layout)
    grad = torch.randn(SHAPE).to(dtype)  # NCHW, whatever x's layout: the backward copes
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref, got = F.elu(a), elu(b, fast=True)
    assert got.stride() == ref.stride() == x.stride()  # the output keeps the input's layout
    assert got.grad_fn is not None and "FastELU" in type(got.grad_fn).__name__  # it did run
    assert torch.allclose(got.float(), ref.float(), atol=TOL[dtype], rtol=TOL[dtype])
    ref.backward(grad)
    got.backward(grad)
    assert b.grad.stride() == a.grad.stride()
    assert torch.allclose(b.grad.float(), a.grad.float(), atol=TOL[dtype], rtol=TOL[dtype])


def test_small_or_strided_tensors_take_torchs_elu():
    small = torch.randn(4, 8, 16, 16)
    assert torch.equal(elu(small, fast=True), F.elu(small))
    strided = torch.randn(SHAPE)[:, :, ::2]  # not dense: a view with gaps
    out = elu(strided, fast=True)
    assert out.grad_fn is None and torch.equal(out, F.elu(strided))


def test_without_a_compiler_it_is_torchs_elu(monkeypatch):
    monkeypatch.setattr(elu_module, "_kernels", lambda: None)
    x = _input(torch.float32, torch.channels_last)
    assert torch.equal(elu(x, fast=True), F.elu(x))


def test_the_training_step_switches_it_on_for_the_cpu_and_checkpoints_do_not_change():
    model = BEGAN(ModelConfig(resolution=32, n=8, Nh=16, Nz=16))
    keys = set(model.state_dict())
    elus = [m for m in model.modules() if isinstance(m, ELU)]
    assert len(elus) > 10 and not any(m.fast for m in elus)  # off outside training
    step = TrainStep(model, TrainConfig(), torch.device("cpu"))
    assert step.path.fast_elu and all(m.fast for m in elus)
    assert set(model.state_dict()) == keys  # no parameters: the same checkpoint
    set_fast(model, False)
    assert not any(m.fast for m in elus)
    compiled = TrainStep(BEGAN(model.config), TrainConfig(compile=True), torch.device("cpu"))
    assert not compiled.path.fast_elu  # a compiled model fuses its ELUs itself


def test_a_step_with_the_fast_elu_makes_the_same_losses():
    """64x64, n=16, batch 16: most ELUs are large enough to take the compiled kernels."""
    x = torch.rand(16, 3, 64, 64) * 2 - 1
    losses = []
    for fast in (False, True):
        torch.manual_seed(0)
        model = BEGAN(ModelConfig(resolution=64, n=16, Nh=16, Nz=16))
        step = TrainStep(model, TrainConfig(seed=0, gamma=0.9, amp=False), torch.device("cpu"))
        set_fast(model, fast)
        rows = [[float(r["L_x"]), float(r["L_G"]), float(step.k_t)] for r in map(step, [x] * 5)]
        losses.append(torch.tensor(rows))
    assert torch.allclose(losses[1], losses[0], rtol=1e-4, atol=1e-6)


def test_a_compiler_failure_mid_run_falls_back_to_torchs_elu(monkeypatch, caplog):
    """torch.compile may refuse at any call (too many recompiles): that call and every later
    one take torch's ELU, with one warning, and training goes on."""
    monkeypatch.setattr(elu_module, "_broken", [])

    def refuse(*args):
        raise RuntimeError("recompile limit hit")

    monkeypatch.setattr(elu_module, "_kernels", lambda: (refuse, refuse))
    x = _input(torch.float32, torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    got = elu(b, fast=True)
    assert torch.equal(got, F.elu(x))
    got.sum().backward()
    F.elu(a).sum().backward()
    assert torch.allclose(b.grad, a.grad, atol=1e-6)  # (from the output, not the input)
    assert elu_module._broken and "fast ELU unavailable" in caplog.text
    assert elu(b, fast=True).grad_fn.__class__.__name__ == "EluBackward0"  # torch's from now on


def test_compiling_says_so_before_it_starts(monkeypatch, caplog):
    """The compile takes seconds with nothing else on screen: a line says what is going on
    (`train` shows the library's INFO lines on stderr)."""
    said_first = []

    def compile_(fn, **options):
        said_first.append("compiling the fast ELU kernel" in caplog.text)
        return fn

    monkeypatch.setattr(elu_module.torch, "compile", compile_)
    with caplog.at_level(logging.INFO, logger="began_core"):
        assert elu_module._kernels.__wrapped__() is not None  # the uncached body
    assert said_first == [True, True]
