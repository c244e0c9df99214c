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

from ..config import ConfigError, ModelConfig
from ..faults import point
from ..nn.model import BEGAN
from ..runs.run_dir import run_of
from . import checkpoint_checks as checks
from .checkpoint_checks import CheckpointError
from .weights_file import save_weights

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINING = "training.json"

__all__ = ["CheckpointError", "load", "push_to_hub", "save_pretrained"]


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
    if model.generator != "G":
        raise ValueError(f"save the model, not its view generating with {model.generator}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        k: v for k, v in model.state_dict().items() if not (generator_only and k.startswith("D."))
    }
    state = {k: (v.to(dtype) if dtype else v).detach().cpu().contiguous() for k, v in state.items()}
    save_weights(state, directory / WEIGHTS)
    point(f"write {WEIGHTS}")
    config = dataclasses.asdict(model.config)
    (directory / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    point(f"write {CONFIG}")
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
        point(f"write {TRAINING}")
    if card is not None:
        (directory / "README.md").write_text(card, encoding="utf-8")
        point("write README.md")
    return directory


def read_training(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """What a local checkpoint says about its training (training.json), or None.

    A checkpoint inside a run directory (RUN/checkpoints/step_N) that predates training.json
    gets the run's config.json instead, under the same "run" key."""
    path = Path(checkpoint)
    try:
        if (path / TRAINING).stat().st_size > checks.MAX_TRAINING_BYTES:
            return None
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
        if (path / CONFIG).stat().st_size > checks.MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path / CONFIG} is too large to be a BEGAN model config.")
        values = json.loads((path / CONFIG).read_text(encoding="utf-8"))
        return ModelConfig(**values)
    except FileNotFoundError as e:
        raise CheckpointError(
            f"{path} has no {CONFIG}: it is not a BEGAN checkpoint folder."
        ) from e
    except (json.JSONDecodeError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{path / CONFIG} is not a valid BEGAN model config: {e}") from e


def find_checkpoints(root: str | os.PathLike) -> list[Path]:
    """The BEGAN checkpoint folders under `root` (itself and every folder below it, sorted):
    each holds a config.json that reads as a BEGAN model config. Other models' folders (a
    classifier) are skipped; a folder whose weights are missing or damaged is still listed,
    for its caller to say so (the explorer offers only loadable ones)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for config in sorted(root.rglob(CONFIG)):
        try:
            read_config(config.parent)
        except CheckpointError:
            continue
        found.append(config.parent)
    return found


def load(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    revision: str | None = None,
    expect: ModelConfig | None = None,
    allow_local: bool = True,
) -> BEGAN:
    """Load a checkpoint from a local folder or a Hub repo id, in eval mode.

    A Hub id may pin a revision, `user/repo@REV` (a branch, tag or commit), or pass
    `revision`. `expect` demands a given architecture (a resume, say) and names every field
    that differs. Errors are `CheckpointError`s that say what is wrong and what to do, never a
    stack trace from deep inside a download. Nothing is allocated for a checkpoint before its
    config and its safetensors header pass `checkpoint_checks`. `allow_local=False` takes
    the name as a Hub repo id whatever folders exist here: for names typed by the public,
    who must not read or probe this machine's folders.
    """
    local = Path(name_or_path)
    if allow_local and local.is_dir():
        model = _load_local(local)
    elif allow_local and _looks_like_path(str(name_or_path)):
        raise CheckpointError(
            f"no checkpoint folder at {local}: expected a folder holding {CONFIG} and {WEIGHTS}, "
            "or a Hugging Face repo id such as 'user/began-faces'."
        )
    else:
        repo_id, pinned = parse_repo_id(str(name_or_path))
        model = _load_hub(repo_id, revision or pinned)
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


# owner/name, optionally @revision (a branch, a tag, a commit; 'refs/pr/1' has slashes).
HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?")
_REPO_ID = HUB_ID


def parse_repo_id(s: str) -> tuple[str, str | None]:
    """'user/repo@REV' -> ('user/repo', 'REV'); 'user/repo' -> ('user/repo', None)."""
    m = HUB_ID.fullmatch(s.strip())
    if m is None:
        raise CheckpointError(f"{s!r} is not a Hub repo id such as 'user/began-faces[@revision]'.")
    return m["repo"], m["rev"]


def _looks_like_path(s: str) -> bool:
    """Anything but the 'owner/name' form of a Hub repo id is a local path, and so is an
    'owner/name' whose 'owner' is a local folder (a typo in `pretrained/...`, say)."""
    return _REPO_ID.fullmatch(s) is None or Path(s.split("/", 1)[0]).is_dir()


def _load_local(path: Path) -> BEGAN:
    cfg = read_config(path)
    if not (path / WEIGHTS).is_file():
        pickles = checks.pickles_in([p.name for p in path.iterdir()])
        if pickles:
            raise checks.pickle_refusal(str(path), pickles)
        raise CheckpointError(
            f"{path} has {CONFIG} but no {WEIGHTS}; weights travel as safetensors only."
        )
    model = _load_weights(cfg, path / WEIGHTS, str(path))
    model.folder = path
    _recommend(model, read_training(path))
    return model


def _recommend(model: BEGAN, training: dict[str, Any] | None) -> None:
    """The generator the checkpoint names for use (training.json's "generator"), if it has it."""
    named = (training or {}).get("generator")
    if named == "G_ema" and model.G_ema is not None:
        model.recommended = "G_ema"


def _load_weights(cfg: ModelConfig, weights: Path, where: str) -> BEGAN:
    """Check the config and the file's header against each other, then build and fill."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    shapes = checks.check_config(cfg, where)
    checks.check_weights(weights, shapes, where)
    model = BEGAN(cfg)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is corrupt or not a safetensors file: {e}") from e
    if any(k.startswith("G_ema.") for k in state):
        model.add_G_ema()
    own = model.state_dict()
    missing = [k for k in own if k.startswith(("G.", "G_ema.")) and k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    checks.refuse_mismatch(where, missing, unexpected, wrong)
    model.load_state_dict(state, strict=False)  # D may be absent from a generator-only export
    model.has_discriminator = all(k in state for k in own if k.startswith("D."))
    return model


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the endpoint (HF_ENDPOINT: the Hub, a mirror, a local server) takes a
    connection on its own host and port."""
    url = urlparse(hf_constants.ENDPOINT)
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_hub(repo_id: str, revision: str | None) -> BEGAN:
    from huggingface_hub import hf_hub_download

    where = repo_id if revision is None else f"{repo_id}@{revision}"

    def fetch(filename: str, local_only: bool) -> Path:
        return Path(
            hf_hub_download(repo_id, filename, revision=revision, local_files_only=local_only)
        )

    try:
        try:  # a copy already in the Hugging Face cache needs no network
            config_file, weights_file = fetch(CONFIG, True), fetch(WEIGHTS, True)
            cfg = read_config(config_file.parent)
        except (hf_errors.LocalEntryNotFoundError, FileNotFoundError):
            if hf_constants.HF_HUB_OFFLINE or not _hub_reachable():
                raise CheckpointError(
                    f"cannot download '{where}': the Hugging Face Hub is not reachable from here "
                    "(no network, or HF_HUB_OFFLINE is set) and it is not in the local cache. Use a "
                    "local checkpoint folder, e.g. one under pretrained/, or connect and try again."
                ) from None
            cfg, weights_file = _download_checked(repo_id, revision, where, fetch)
    except hf_errors.RepositoryNotFoundError:
        raise CheckpointError(
            f"no model repository '{repo_id}' on the Hugging Face Hub (or it is private: log in "
            "with `hf auth login`)."
        ) from None
    except hf_errors.RevisionNotFoundError:
        raise CheckpointError(f"'{repo_id}' has no revision '{revision}'.") from None
    except hf_errors.EntryNotFoundError:
        pickles = _remote_pickles(repo_id, revision)
        if pickles:
            raise checks.pickle_refusal(f"'{where}'", pickles) from None
        raise CheckpointError(
            f"'{where}' is not a BEGAN checkpoint: it lacks {CONFIG} or {WEIGHTS}."
        ) from None
    except hf_errors.HfHubHTTPError as e:
        raise CheckpointError(f"the Hub refused '{where}': {e}") from None
    model = _load_weights(cfg, weights_file, where)
    model.folder = weights_file.parent  # the cache's snapshot: read_training(model.folder)
    _fetch_training(repo_id, revision, fetch)
    _recommend(model, read_training(model.folder))
    return model


def _fetch_training(repo_id: str, revision: str | None, fetch: Any) -> None:
    """Bring training.json (what the weights were trained at: gamma, data) beside the weights
    in the cache, when the repo has one and it is small; a repo without it loads the same."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        fetch(TRAINING, True)
        return
    except (hf_errors.LocalEntryNotFoundError, FileNotFoundError):
        pass
    if hf_constants.HF_HUB_OFFLINE:
        return
    try:
        size = get_hf_file_metadata(hf_hub_url(repo_id, TRAINING, revision=revision)).size
        if size is not None and size <= checks.MAX_TRAINING_BYTES:
            fetch(TRAINING, False)
    except (hf_errors.HfHubHTTPError, OSError, ValueError):
        pass


def _download_checked(repo_id: str, revision: str | None, where: str, fetch: Any):
    """Download config.json, check it, then ask the weights' size and download them only if
    the config can account for it. A repo with pickles instead is named, never downloaded."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    def size_of(filename: str) -> int | None:
        return get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision)).size

    config_size = size_of(CONFIG)
    if config_size is not None and config_size > checks.MAX_CONFIG_BYTES:
        raise CheckpointError(f"'{where}': its {CONFIG} is too large to be a BEGAN model config.")
    cfg = read_config(fetch(CONFIG, False).parent)
    shapes = checks.check_config(cfg, where)
    checks.check_size(size_of(WEIGHTS), shapes, where)
    return cfg, fetch(WEIGHTS, False)


def _remote_pickles(repo_id: str, revision: str | None) -> list[str]:
    """The pickle files a Hub repo lists (to name them in the refusal), without opening any."""
    from huggingface_hub import HfApi

    try:
        siblings = HfApi().model_info(repo_id, revision=revision).siblings or []
    except (hf_errors.HfHubHTTPError, OSError, ValueError):
        return []
    return checks.pickles_in([s.rfilename for s in siblings])


def push_to_hub(
    directory: str | os.PathLike, repo_id: str, *, private: bool = False, message: str | None = None
) -> str:
    """Upload a checkpoint folder (as written by `save_pretrained` or `export`) to a Hub model
    repository, model card included; return the commit's URL. The folder is loaded first, with
    every check a downloader applies, so nothing that `load` would refuse is published."""
    from huggingface_hub import HfApi

    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint folder at {path}.")
    _load_local(path)
    if not (path / "README.md").is_file():
        raise CheckpointError(
            f"{path} has no README.md model card: write one with `python -m began_core export "
            "RUN OUT`, which makes the card from the run, then push OUT."
        )
    repo, revision = parse_repo_id(repo_id)
    if revision is not None:
        raise CheckpointError("push to a repo id without '@revision'; every push is a new commit.")
    api = HfApi()
    api.create_repo(repo, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo,
        folder_path=str(path),
        allow_patterns=[CONFIG, WEIGHTS, TRAINING, "README.md", "*.png"],
        commit_message=message or f"Upload {path.name}",
    )
    return str(info.commit_url if hasattr(info, "commit_url") else info)
