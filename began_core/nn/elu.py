"""ELU, the only non-linearity of D and G (paper Figure 1), with a faster CPU kernel.

    ELU(x) = x for x > 0, exp(x) - 1 otherwise;  ELU'(x) = 1 for x > 0, ELU(x) + 1 otherwise.

On the CPU, PyTorch's own ELU forward evaluates expm1 element by element and took a fifth of
a bf16 training step (bench/results/cpu-profile-torch-elu.md: 13 to 24 % of a step at 32x32
and 64x64).
The same function written once and compiled by inductor runs about three times as fast. So a
module can be switched to `fast`: forward and backward then run as two compiled element-wise
kernels over the tensor's memory, whatever its layout (NCHW or channels_last), one kernel
for every shape; tensors too small to gain keep PyTorch's ELU. Where the compiler is
missing, or fails at any call (torch.compile recompiles when the thread count or the
determinism setting changes, and gives up after a few), the module says so once and goes on
with PyTorch's ELU for the rest of the process; the two agree to the last bit or two of
float32 (`tests/test_elu.py`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

# Below this many values a call's fixed cost (the autograd function, the compiled kernel's
# guards: some 50 us forward and backward together) outweighs what the kernel saves, so
# small tensors keep torch's ELU (measured in a bf16 step: 32x32 n=16 slower with every
# ELU compiled, 64x64 n=32 faster).
FAST_MIN_NUMEL = 1 << 19


def _forward(x: Tensor) -> Tensor:
    return torch.where(x > 0, x, torch.expm1(x))


def _backward(grad: Tensor, y: Tensor) -> Tensor:  # from the output y = ELU(x)
    return torch.where(y > 0, grad, grad * (y + 1))


_broken: list[str] = []  # why the compiled kernels failed, once they have


def _give_up(e: Exception) -> None:
    if not _broken:
        log.warning("fast ELU unavailable (%s: %s); using torch's ELU", type(e).__name__, e)
    _broken.append(str(e))


@functools.cache
def _kernels() -> tuple[Callable, Callable] | None:
    """The compiled forward and backward, or None where torch.compile cannot run."""
    # The first time on a machine inductor generates and builds the code; later processes
    # load it from inductor's cache and only trace the two functions (docs/speed.md).
    log.info(
        "compiling the fast ELU kernel (the first run on a machine builds it, later ones load it)"
    )
    try:
        fwd = torch.compile(_forward, fullgraph=True, dynamic=True)
        bwd = torch.compile(_backward, fullgraph=True, dynamic=True)
        probe = torch.linspace(-2, 2, 37)
        if not torch.allclose(fwd(probe), F.elu(probe), atol=1e-6):
            raise RuntimeError("the compiled ELU does not match torch's")
        return fwd, bwd
    except Exception as e:  # no C++ compiler, an unsupported platform, ...
        _give_up(e)
        return None


def available() -> bool:
    """Whether the compiled kernels run in this process (until one call fails)."""
    return not _broken and _kernels() is not None


def _dense(t: Tensor) -> bool:
    """Laid out as NCHW or channels_last without gaps: its memory is one run of numel values."""
    return t.is_contiguous() or (
        t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    )


def _flat(t: Tensor) -> Tensor:
    """A dense tensor's memory as one 1-D view, in storage order."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def _like(flat: Tensor, t: Tensor) -> Tensor:
    """`flat` (storage order of a tensor laid out like `t`) viewed with t's shape and strides."""
    return flat.as_strided(t.shape, t.stride(), 0)


class _FastELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        try:
            kernels = _kernels()
            if kernels is None:
                raise RuntimeError("the fused ELU kernels are not available")
            y = _like(kernels[0](_flat(x)), x)
        except Exception as e:  # a recompile refused, a compiler error: torch's ELU from now on
            _give_up(e)
            y = F.elu(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        if grad.stride() != y.stride() or not _dense(grad):
            grad = torch.empty_like(y).copy_(grad)  # y's layout, so memory lines up
        if not _broken:
            try:
                kernels = _kernels()
                if kernels is None:
                    raise RuntimeError("the fused ELU kernels are not available")
                return _like(kernels[1](_flat(grad), _flat(y)), y)
            except Exception as e:
                _give_up(e)
        return torch.ops.aten.elu_backward(grad, 1.0, 1, 1, True, y)


def elu(x: Tensor, fast: bool = False) -> Tensor:
    """ELU with alpha 1; `fast` takes the compiled CPU kernels where they apply."""
    if (
        fast
        and x.numel() >= FAST_MIN_NUMEL
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and _dense(x)
        and available()
    ):
        return _FastELU.apply(x)
    return F.elu(x)


class ELU(nn.Module):
    """nn.ELU() with a `fast` switch (off by default; `began_core.training.step` turns it on for
    training on the CPU). No parameters: checkpoints do not change."""

    def __init__(self) -> None:
        super().__init__()
        self.fast = False

    def forward(self, x: Tensor) -> Tensor:
        return elu(x, self.fast)


def set_fast(module: nn.Module, fast: bool = True) -> None:
    """Switch every ELU inside `module`."""
    for m in module.modules():
        if isinstance(m, ELU):
            m.fast = fast
