"""The whole training step as one CUDA graph: D's update, G's update, G_ema's, k_t's and the
z draws, replayed by one launch.

On a GPU the eager step is bound by the host: measured on an H200 at 64x64, n=64, batch 16,
852 kernels a step, the GPU busy 5.1 ms of 25.6. A CUDA graph records the step's kernels once
and replays them with one launch. `GraphedStep` wraps a `TrainStep` (step.py), whose device half
(`TrainStep.run`) is written to be captured: k_t and the learning rate are device tensors
updated in place, the augmentation and z are drawn from device generators, G_ema's weights come
from device tensors, and nothing reads a value back to the host. It follows PyTorch's notes on
whole-network capture:

- the first `warmup` steps run eagerly on a side stream (real training steps: they initialise
  Adam's state and let cuBLAS and cuDNN settle on their workspaces before the capture);
- gradients are set to None before the capture, so the captured backward writes them afresh;
- Adam runs with `capturable=True` and a tensor learning rate (step.py), so halving the rate
  is a copy into that tensor, not a new capture;
- autocast runs with `cache_enabled=False` (a cached cast would outlive the capture);
- every `torch.Generator` the step draws from is registered with the graph
  (`CUDAGraph.register_generator_state`): a replay draws the numbers the eager step would,
  and the augmentation's re-seed before each step is what the next replay reads;
- the real batch goes in through a static buffer (`copy_`), the losses come out in static
  tensors that the next replay overwrites (the loop adds them up before it).

What stays on the host between replays is what `TrainStep.begin` does (a re-seed, a few
fills) and the copy of the batch. A step whose Python changes from step to step cannot be
replayed: the vanishing residual's carry is a float in the forward pass, so while it is above 0
the steps run eagerly and the capture waits for it to reach 0. A distributed run stays eager
(step.py says why). The weights, both Adam states and k_t live in the tensors the graph was
captured with, so a checkpoint is loaded into them before the first step, as `train` does.

With `capture=False` the wrapper runs the very same calls eagerly: that is how the CPU tests
exercise this module (tests/test_graphed.py); the capture itself needs CUDA.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import ConfigError
from .step import TrainStep

WARMUP = 3  # eager steps before the capture, as PyTorch's whole-network example takes


class GraphedStep:
    """Call it as a TrainStep: `graphed(x, t)` runs step t on the real batch x and returns the
    step's losses as device tensors (static ones once captured: read or add them up before the
    next call)."""

    def __init__(self, step: TrainStep, *, capture: bool | None = None, warmup: int = WARMUP):
        cuda = step.device.type == "cuda"
        self.capture = cuda if capture is None else capture
        if self.capture and not (cuda and torch.cuda.is_available()):
            raise ConfigError(
                f"a CUDA graph needs a CUDA device; this step runs on {step.device.type}. "
                "Train on a GPU, or leave --graph out."
            )
        if step.d.active:
            raise ConfigError("a distributed step stays eager: leave --graph out.")
        if step.path.compile:
            raise ConfigError("--graph and --compile: choose one.")
        if step.augment is not None and step.augment and step.augment.draws != "device":
            raise ConfigError(
                "a graphed step draws its augmentation on the device; this one draws it on the "
                "host, where a capture would freeze it (augment.py)."
            )
        self.step, self.warmup = step, warmup
        step.autocast_cache = False
        step.use_tensor_ema()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_x: Tensor | None = None
        self.static_out: dict[str, Tensor] | None = None
        self.eager_steps = 0  # steps run before the capture (warm-up, or a carry above 0)
        self.warmed = 0  # of those, the warm-up steps on the side stream
        self._side: torch.cuda.Stream | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, x: Tensor, t: int = 0) -> dict[str, Tensor]:
        step = self.step
        if self.graph is not None:
            assert self.static_x is not None and self.static_out is not None
            self.static_x.copy_(x, non_blocking=True)
            step.begin(t)
            self.graph.replay()
            return self.static_out
        if not self.capture or not self._replayable():
            self.eager_steps += 1
            return step(x, t)
        if self.warmed < self.warmup:
            return self._warm_up(x, t)
        return self._capture(x, t)

    def _replayable(self) -> bool:
        """No Python value that changes between steps is baked into the forward pass."""
        return all(getattr(m, "carry", 0.0) == 0.0 for m in self.step.model.modules())

    def _warm_up(self, x: Tensor, t: int) -> dict[str, Tensor]:
        """One eager step on a side stream, as the capture's notes ask."""
        if self._side is None:
            self._side = torch.cuda.Stream(self.step.device)
        self._side.wait_stream(torch.cuda.current_stream(self.step.device))
        with torch.cuda.stream(self._side):
            out = self.step(x, t)
        torch.cuda.current_stream(self.step.device).wait_stream(self._side)
        self.eager_steps += 1
        self.warmed += 1
        return out

    def generators(self) -> list[torch.Generator]:
        """The generators the step draws from: z's, and the augmentation's."""
        step = self.step
        gens = [step.z_gen] if step.z_gen is not None else []
        aug = step.augment
        if aug is not None and aug and aug.generator is not None:
            gens.append(aug.generator)
        return gens

    def _capture(self, x: Tensor, t: int) -> dict[str, Tensor]:
        """Capture step t, then replay it: the capture itself runs nothing."""
        step = self.step
        self.static_x = torch.empty_like(x)
        self.static_x.copy_(x)
        step.begin(t)  # outside the capture: the augmentation's generator exists from here
        step.opt_G.zero_grad(set_to_none=True)
        step.opt_D.zero_grad(set_to_none=True)
        torch.cuda.synchronize(step.device)
        graph = torch.cuda.CUDAGraph()
        register = getattr(graph, "register_generator_state", None)
        if register is None:
            raise RuntimeError(
                f"torch {torch.__version__} cannot register a generator with a CUDA graph "
                "(CUDAGraph.register_generator_state, torch 2.4 and later); upgrade torch, or "
                "leave --graph out."
            )
        for gen in self.generators():
            register(gen)
        with torch.cuda.graph(graph):
            self.static_out = step.run(self.static_x, t)
        self.graph = graph
        graph.replay()
        return self.static_out
