"""What a checkpoint must pass before any of its tensors is built.

A public explorer loads whatever repo id a visitor types, so a checkpoint's config.json and
its safetensors file are untrusted input: a config asking for n=20000 would make `BEGAN(cfg)`
allocate 14 GB for one layer, and a file can claim anything in its header. Here the config's
fields and the model's parameter count are bounded, the model's expected tensor shapes are
computed on the `meta` device (no memory), and the safetensors header (8 bytes of length,
then JSON) is read and compared with them, all before `safetensors.torch.load_file`.
Pickles (`*.bin`, `*.pt`, ...) are never opened.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TypeGuard

import torch

from ..config import ModelConfig

# The shipped generators (pretrained/, 32x32, n=32) have 1,105,446 parameters, G and D
# together. A checkpoint may have up to 64 times that (283 MB in float32): room for the
# paper's models (64x64 n=128: 17.3 M; 256x256 n=128: 44.9 M) and nothing near a denial of
# memory. BEGAN_MAX_PARAMETERS changes the ceiling.
SHIPPED_PARAMETERS = 1_105_446
MAX_PARAMETERS = 64 * SHIPPED_PARAMETERS
FIELD_LIMITS = {"n": 512, "Nh": 4096, "Nz": 4096, "convs_per_scale": 8}
MAX_CONFIG_BYTES = 64 * 1024  # a config.json is about 150 bytes
MAX_TRAINING_BYTES = 1024 * 1024  # a training.json is about 6 KB
MAX_HEADER_BYTES = 1024 * 1024  # a BEGAN's safetensors header is about 10 KB
DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says why and what to do."""


def max_parameters() -> int:
    try:
        return int(os.environ.get("BEGAN_MAX_PARAMETERS", "") or MAX_PARAMETERS)
    except ValueError:
        return MAX_PARAMETERS


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor `BEGAN(cfg)` has, by name, with its shape; nothing is allocated."""
    from ..nn.model import BEGAN

    with torch.device("meta"):
        model = BEGAN(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def with_G_ema(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """`shapes` and, for each of G's tensors, the same shape named for G_ema (ema.py)."""
    return {**shapes, **{"G_ema." + k[2:]: v for k, v in shapes.items() if k.startswith("G.")}}


def check_config(cfg: ModelConfig, where: str) -> dict[str, tuple[int, ...]]:
    """Refuse a configuration too large to build; return its expected tensor shapes."""
    for name, limit in FIELD_LIMITS.items():
        if getattr(cfg, name) > limit:
            raise CheckpointError(
                f"{where} asks for {name}={getattr(cfg, name)}, above the limit of {limit}: "
                "not loaded (a BEGAN of that size would not fit in memory)."
            )
    shapes = expected_shapes(cfg)
    count = sum(_numel(s) for s in shapes.values())
    ceiling = max_parameters()
    if count > ceiling:
        raise CheckpointError(
            f"{where} describes a model of {count:,} parameters, above this server's limit of "
            f"{ceiling:,} (BEGAN_MAX_PARAMETERS): not loaded."
        )
    return shapes


def max_weights_bytes(shapes: dict[str, tuple[int, ...]]) -> int:
    """The largest safetensors file these tensors can make: float32 and a generous header."""
    return 4 * sum(_numel(s) for s in shapes.values()) + MAX_HEADER_BYTES + 8


def check_size(size: int | None, shapes: dict[str, tuple[int, ...]], where: str) -> None:
    limit = max_weights_bytes(shapes)
    if size is not None and size > limit:
        raise CheckpointError(
            f"{where}: model.safetensors is {size:,} bytes, far more than its config.json "
            f"implies (at most {limit:,}): not loaded."
        )


def read_header(path: Path) -> tuple[dict, int]:
    """The JSON header of a safetensors file and the bytes of data after it, read without
    touching its tensors."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is corrupt or not a safetensors file: too short.")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(
                f"{path} is corrupt or not a safetensors file: its header claims {length:,} bytes."
            )
        try:
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is corrupt or not a safetensors file: {e}") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is corrupt or not a safetensors file: bad header.")
    return header, size - 8 - length


def check_weights(path: Path, shapes: dict[str, tuple[int, ...]], where: str) -> None:
    """Refuse a safetensors file whose size, dtypes, shapes or names disagree with `shapes`
    (the expected tensors of its config), before any tensor is read. G_ema's tensors, where
    the file has them, are G's shapes under the name G_ema."""
    shapes = with_G_ema(shapes)
    size = path.stat().st_size
    check_size(size, shapes, where)
    header, data_bytes = read_header(path)
    header.pop("__metadata__", None)
    missing = [k for k in shapes if k.startswith("G.") and k not in header]
    unexpected = [k for k in header if k not in shapes]
    wrong = []
    for name, info in header.items():
        if name not in shapes:
            continue
        if not isinstance(info, dict) or info.get("dtype") not in DTYPE_BYTES:
            wrong.append(f"{name} (dtype {info.get('dtype') if isinstance(info, dict) else '?'})")
            continue
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not (_ints(shape) and _ints(offsets) and len(offsets) == 2):
            wrong.append(f"{name} (malformed entry)")
            continue
        (begin, end), stored = offsets, _numel(shape) * DTYPE_BYTES[info["dtype"]]
        if tuple(shape) != shapes[name]:
            wrong.append(f"{name} {list(shape)} where {list(shapes[name])} is expected")
        elif end - begin != stored or not 0 <= begin <= end <= data_bytes:
            wrong.append(f"{name} (its data offsets disagree with its shape or the file)")
    refuse_mismatch(where, missing, unexpected, wrong)


def refuse_mismatch(
    where: str, missing: list[str], unexpected: list[str], wrong: list[str]
) -> None:
    """A CheckpointError naming up to three tensors of each kind, if any kind is non-empty."""
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if keys
        )
        raise CheckpointError(f"weights of {where} do not match its config.json ({detail}).")


def pickles_in(names: list[str]) -> list[str]:
    return [n for n in names if n.lower().endswith(PICKLE_SUFFIXES)]


def pickle_refusal(where: str, pickles: list[str]) -> CheckpointError:
    return CheckpointError(
        f"{where} has no model.safetensors, only {', '.join(pickles[:3])}: a pickle, which can "
        "run code when opened, so it is never loaded here. Only safetensors weights are loaded; "
        "convert the checkpoint to model.safetensors."
    )


def _ints(value: object) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for d in shape:
        count *= int(d)
    return count
