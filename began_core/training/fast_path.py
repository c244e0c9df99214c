"""Which speed options a training step takes on this device: the fast path, resolved.

`TrainConfig` leaves amp, channels_last, fused_adam and compile at None ("auto"); this module
turns them into choices from what the device has, and says in words which path a run took
(the run's config.json and the dashboard's run header show it). Each option keeps the
algorithm: `tests/test_fast_path.py` checks every one against the float32 eager step, and
`bench/bench.py` and `bench/profile_cpu.py` measure what each one gives.

On a CPU the choices follow the processor. With native bf16 matrix units (AVX-512 BF16 on
recent EPYCs, AMX on recent Xeons) a bf16 convolution runs at 2.5 to 6.5 times the float32
one, so the networks run under bf16 autocast there and in float32 elsewhere, where bf16 is
emulated and slower than float32.

On CUDA two more choices follow. The augmentation's parameters are drawn on the device
(augment.py's "device" draws), so that the step asks nothing of the host; the CPU keeps its
numpy draws, which its runs have always used. And the whole step may run as one CUDA graph
(graphed.py: one launch for the step's ~850 kernels, where the host's launches were the
bottleneck). `GRAPH_AUTO` says whether a CUDA run takes the graph unasked: it was False until
the CUDA tests (`tests/test_graphed.py`: graphed tracks eager, never synchronises, exact resume
across modes) had passed on a GPU. They passed on an H200 (2026-12-04), where the graphed step
was the fastest at every size measured (bench/results/cuda.md). A distributed run, and one that
asks for --compile, stays eager; `--no-graph` keeps any run eager.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..config import ConfigError, TrainConfig

# Whether CUDA runs take the whole-step CUDA graph by default; see the module's docstring.
GRAPH_AUTO = True


def native_bf16() -> str | None:
    """The processor's bf16 matrix units by name ("AMX", "AVX-512 BF16"), None without."""
    cpu = getattr(torch, "cpu", None)
    if cpu is None:
        return None
    try:
        if cpu._is_amx_tile_supported():
            return "AMX"
        if cpu._is_avx512_bf16_supported():
            return "AVX-512 BF16"
    except (AttributeError, RuntimeError):  # an older torch, or another architecture
        pass
    return None


@dataclass(frozen=True)
class FastPath:
    """The resolved speed options of one training step."""

    amp: bool  # bf16 autocast for the networks; losses and k_t stay float32
    channels_last: bool  # NHWC layout for the convolutions
    fused_adam: bool  # one fused Adam kernel per optimizer
    compile: bool  # torch.compile of G and D (inductor)
    fuse_D: bool  # real and fake images through D as one batch
    fast_elu: bool  # ELU by compiled element-wise kernels (elu.py), on the CPU
    reason: str  # why, in words: the device and what it has
    draws: str = "host"  # where the augmentation's parameters are drawn (augment.py)
    graph: bool = False  # the whole step as one CUDA graph (graphed.py)

    def describe(self) -> str:
        """The path in a line: what a run's header shows."""
        parts = ["bf16 autocast" if self.amp else "float32"]
        parts += ["channels_last"] if self.channels_last else []
        parts += ["fused Adam"] if self.fused_adam else []
        parts += ["compiled"] if self.compile else []
        parts += ["D on real+fake as one batch"] if self.fuse_D else []
        parts += ["fast ELU"] if self.fast_elu else []
        parts += ["augmentation drawn on the device"] if self.draws == "device" else []
        parts += ["one CUDA graph per step"] if self.graph else []
        return f"{', '.join(parts)} ({self.reason})"

    def record(self) -> dict:
        """For config.json's meta: the choices and the line that says them."""
        return {**asdict(self), "summary": self.describe()}


def resolve(cfg: TrainConfig, device: torch.device, processes: int = 1) -> FastPath:
    """The options `cfg` asks for, with every None ("auto") decided for `device` and the
    number of training `processes` (the graph is one process's).

    What was measured (bench/results/cpu-options.md, a 2-core AMD EPYC with AVX-512 BF16): bf16
    autocast 1.3x to 1.7x float32 with channels_last; torch.compile of G and D nothing at 64x64
    and 32x32 (it moves the ELU work into its own kernels, which take as long), after half a
    minute of compiling, so it stays opt-in; fused Adam, and D on real and fake as one batch,
    each from 2 % slower to 10 % faster over three 12-round runs (the noise is about 5 %),
    faster on balance, so both are on."""
    cuda = device.type == "cuda"
    if cuda:
        reason, bf16 = "CUDA", True
    elif device.type == "cpu":
        units = native_bf16()
        reason = f"CPU with {units}" if units else "CPU without native bf16"
        bf16 = units is not None
    else:
        reason, bf16 = device.type, False
    amp = bf16 if cfg.amp is None else cfg.amp
    auto_graph = cuda and GRAPH_AUTO and not cfg.compile and processes == 1
    graph = auto_graph if cfg.graph is None else cfg.graph
    if graph and not cuda:
        raise ConfigError(
            f"--graph captures the training step as a CUDA graph; this run is on {device.type}. "
            "Train on a CUDA device, or leave --graph out."
        )
    if graph and cfg.compile:
        raise ConfigError(
            "--graph and --compile both take over the step's launches; choose one (--graph "
            "captures the whole step, --compile graphs G and D apart)."
        )
    fused = (cuda or device.type == "cpu") if cfg.fused_adam is None else cfg.fused_adam
    return FastPath(
        amp=amp,
        channels_last=True if cfg.channels_last is None else cfg.channels_last,
        fused_adam=fused,
        compile=bool(cfg.compile),
        # One batch through D: fewer, larger kernels; one all-reduce on a GPU; and required by
        # DDP (one forward per backward).
        fuse_D=True,
        # A compiled model fuses its ELUs itself; elsewhere the CPU takes elu.py's kernels.
        fast_elu=device.type == "cpu" and not cfg.compile,
        reason=reason,
        draws="device" if cuda else "host",
        graph=graph,
    )
