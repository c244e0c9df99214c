"""Checkpoints as model repositories: `config.json` + `model.safetensors` + `README.md`.

Beside them `training.json` says, as data, how the weights were made: the run configuration
(gamma among it), step, wall time, hardware and metrics; the README model card says the same
for people. Readers (the explorer, `evaluate`) use `read_training`, never the card's text.

The same layout locally, in `pretrained/` and on the Hugging Face Hub, so `load("pretrained/x")`
and `load("user/repo")` take one code path (huggingface_hub's PyTorchModelHubMixin). Weights
are safetensors only; nothing here unpickles.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors
from safetensors.torch import save_file

from .config import ConfigError, ModelConfig
from .model import BEGAN
from .runs import run_of

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINING = "training.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says why and what to do."""


def save_pretrained(
    model: BEGAN,
    directory: str | os.PathLike,
    *,
    card: str | None = None,
    training: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    generator_only: bool = False,
) -> Path:
    """Write `model` as a model repository. `dtype=torch.float16` halves the size on disk;
    `training` (see `model_card.training_record`) goes to training.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        k: v for k, v in model.state_dict().items() if not (generator_only and k.startswith("D."))
    }
    state = {k: (v.to(dtype) if dtype else v).detach().cpu().contiguous() for k, v in state.items()}
    save_file(state, str(directory / WEIGHTS), metadata={"format": "pt"})
    config = dataclasses.asdict(model.config)
    (directory / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return describe(directory, card=card, training=training)


def describe(
    directory: str | os.PathLike,
    *,
    card: str | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write (or rewrite) what a checkpoint folder says about itself: its model card and its
    training.json, leaving the weights as they are."""
    directory = Path(directory)
    if training is not None:
        (directory / TRAINING).write_text(json.dumps(training, indent=2) + "\n", encoding="utf-8")
    if card is not None:
        (directory / "README.md").write_text(card, encoding="utf-8")
    return directory


def read_training(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """What a local checkpoint says about its training (training.json), or None.

    A checkpoint inside a run directory (RUN/checkpoints/step_N) that predates training.json
    gets the run's config.json instead, under the same "run" key."""
    path = Path(checkpoint)
    try:
        record = json.loads((path / TRAINING).read_text(encoding="utf-8"))
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        pass
    run = run_of(path)
    if run is not None:
        try:
            return {"run": run.read_config_dict()}
        except (OSError, ValueError):
            return None
    return None


def read_config(name_or_path: str | os.PathLike) -> ModelConfig:
    """The ModelConfig of a local checkpoint folder, with a clear error if it is not one."""
    path = Path(name_or_path)
    try:
        values = json.loads((path / CONFIG).read_text(encoding="utf-8"))
        return ModelConfig(**values)
    except FileNotFoundError as e:
        raise CheckpointError(
            f"{path} has no {CONFIG}: it is not a BEGAN checkpoint folder."
        ) from e
    except (json.JSONDecodeError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{path / CONFIG} is not a valid BEGAN model config: {e}") from e


def load(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    revision: str | None = None,
    expect: ModelConfig | None = None,
) -> BEGAN:
    """Load a checkpoint from a local folder or a Hub repo id, in eval mode.

    `expect` demands a given architecture (a resume, say) and names every field that differs.
    Errors are `CheckpointError`s that say what is wrong and what to do, never a stack trace
    from deep inside a download.
    """
    local = Path(name_or_path)
    if local.is_dir():
        model = _load_local(local)
    elif _looks_like_path(str(name_or_path)):
        raise CheckpointError(
            f"no checkpoint folder at {local}: expected a folder holding {CONFIG} and {WEIGHTS}, "
            "or a Hugging Face repo id such as 'user/began-faces'."
        )
    else:
        model = _load_hub(str(name_or_path), revision)
    if expect is not None and model.config != expect:
        raise CheckpointError(
            f"checkpoint {name_or_path} has another configuration: {describe_mismatch(expect, model.config)}."
        )
    return model.to(device).eval()


def describe_mismatch(want: ModelConfig, got: ModelConfig) -> str:
    diffs = [
        f"{k} {getattr(got, k)!r} where {getattr(want, k)!r} is expected"
        for k in want.__dataclass_fields__
        if getattr(want, k) != getattr(got, k)
    ]
    return "; ".join(diffs) or "none"


_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _looks_like_path(s: str) -> bool:
    """Anything but the 'owner/name' form of a Hub repo id is a local path, and so is an
    'owner/name' whose 'owner' is a local folder (a typo in `pretrained/...`, say)."""
    return _REPO_ID.fullmatch(s) is None or Path(s.split("/", 1)[0]).is_dir()


def _load_local(path: Path) -> BEGAN:
    cfg = read_config(path)
    if not (path / WEIGHTS).is_file():
        raise CheckpointError(
            f"{path} has {CONFIG} but no {WEIGHTS}; weights travel as safetensors only."
        )
    return _load_weights(BEGAN(cfg), path / WEIGHTS, str(path))


def _load_weights(model: BEGAN, weights: Path, where: str) -> BEGAN:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is corrupt or not a safetensors file: {e}") from e
    own = model.state_dict()
    missing = [k for k in own if k.startswith("G.") and k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
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
        raise CheckpointError(f"weights of {where} do not match its {CONFIG} ({detail}).")
    model.load_state_dict(state, strict=False)  # D may be absent from a generator-only export
    model.has_discriminator = all(k in state for k in own if k.startswith("D."))
    return model


def _hub_reachable(timeout: float = 3.0) -> bool:
    host = urlparse(hf_constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_hub(repo_id: str, revision: str | None) -> BEGAN:
    from huggingface_hub import hf_hub_download

    def fetch(filename: str, local_only: bool) -> Path:
        return Path(
            hf_hub_download(repo_id, filename, revision=revision, local_files_only=local_only)
        )

    try:
        try:  # a copy already in the Hugging Face cache needs no network
            config_file, weights_file = fetch(CONFIG, True), fetch(WEIGHTS, True)
        except (hf_errors.LocalEntryNotFoundError, FileNotFoundError):
            if hf_constants.HF_HUB_OFFLINE or not _hub_reachable():
                raise CheckpointError(
                    f"cannot download '{repo_id}': the Hugging Face Hub is not reachable from here "
                    "(no network, or HF_HUB_OFFLINE is set) and it is not in the local cache. Use a "
                    "local checkpoint folder, e.g. one under pretrained/, or connect and try again."
                ) from None
            config_file, weights_file = fetch(CONFIG, False), fetch(WEIGHTS, False)
    except hf_errors.RepositoryNotFoundError:
        raise CheckpointError(
            f"no model repository '{repo_id}' on the Hugging Face Hub (or it is private: log in "
            "with `hf auth login`)."
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise CheckpointError(f"'{repo_id}' has no revision '{revision}'.") from None
    except hf_errors.EntryNotFoundError:
        raise CheckpointError(
            f"'{repo_id}' is not a BEGAN checkpoint: it lacks {CONFIG} or {WEIGHTS}."
        ) from None
    except hf_errors.HfHubHTTPError as e:
        raise CheckpointError(f"the Hub refused '{repo_id}': {e}") from None
    cfg = read_config(config_file.parent)
    return _load_weights(BEGAN(cfg), weights_file, repo_id)


def push_to_hub(directory: str | os.PathLike, repo_id: str, *, private: bool = False) -> str:
    """Upload a checkpoint folder (as written by `save_pretrained`) to a Hub model repository."""
    from huggingface_hub import HfApi

    path = Path(directory)
    read_config(path)
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(path),
        allow_patterns=[CONFIG, WEIGHTS, TRAINING, "README.md", "*.png"],
    )
    return str(info)
