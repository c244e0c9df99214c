"""Several processes, one equilibrium: the torch.distributed side of training.

`torchrun --nproc_per_node=N -m began_core train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
`init()` reads them, joins the process group (NCCL on GPUs, gloo on CPUs) and returns a `Dist`
that the trainer asks what it needs: which rank writes, how to average a loss over ranks.
A single process gets a `Dist` of world 1 whose operations are no-ops.
"""

from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

# How long a collective waits for a rank that has gone silent before raising.
TIMEOUT_S = float(os.environ.get("BEGAN_DIST_TIMEOUT", "120"))


class RankLostError(RuntimeError):
    """Another rank stopped answering (it died, or its node went away)."""


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run directory, samples and checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def mean(self, t: Tensor) -> Tensor:
        """The mean of `t` over all ranks (every rank gets the same tensor back)."""
        if not self.active:
            return t
        t = t.clone()
        self._collective(dist.all_reduce, t, op=dist.ReduceOp.SUM)
        return t / self.world

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if it is True on one (e.g. a stop request seen by rank 0)."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        self._collective(dist.all_reduce, t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (a list of one in a single process)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        self._collective(dist.all_gather_object, out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank: a decision made once, never re-derived per rank."""
        if not self.active:
            return obj
        box = [obj if self.main else None]
        self._collective(dist.broadcast_object_list, box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            self._collective(dist.barrier)

    def _collective(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except RuntimeError as e:
            raise self.lost(e) from e

    def lost(self, e: BaseException) -> RankLostError:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        return RankLostError(
            f"rank {self.rank} of {self.world} lost contact with the other processes ({first}); "
            "one of them probably died. Stopping; the last checkpoint is intact: resume with "
            "--resume RUN_DIR."
        )

    def is_lost_contact(self, e: BaseException) -> bool:
        """A communication failure (also one raised inside DDP's gradient all-reduce)."""
        if not self.active or isinstance(e, RankLostError):
            return False
        text = str(e)
        return isinstance(e, dist.DistError) or any(
            s in text
            for s in ("gloo", "NCCL", "Connection reset", "Connection closed", "Timed out")
        )


def requested() -> bool:
    """True when started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def resolve_device(name: str) -> torch.device:
    """ "auto" is the GPU when there is one, else the CPU."""
    from ..config import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N.") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for, but CUDA is not available; use --device cpu."
        )
    return device


def hardware_name(device: torch.device, world: int = 1) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = (
            f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
        )
    return f"{world} x {name}" if world > 1 else name


def init(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group if launched by torchrun; pick this rank's device."""
    device = resolve_device(device_name)
    if not requested():
        return Dist(), device
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=TIMEOUT_S)
        if backend == "nccl":
            dist.init_process_group(backend, timeout=timeout, device_id=device)
        else:
            dist.init_process_group(backend, timeout=timeout)
    return Dist(rank, world, local_rank, backend), device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
