"""`python -m began_core push`: a checkpoint folder, with its card, to a Hub model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoints.hub import CheckpointError, push_to_hub


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "push",
        help="upload a checkpoint folder, with its model card, to a Hugging Face model repository",
        description="Upload CHECKPOINT (config.json, model.safetensors, training.json, README.md "
        "and images) to the Hub model repository REPO_ID, creating it if needed. Log in first "
        "(`hf auth login` or HF_TOKEN); HF_ENDPOINT points at another Hub.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="checkpoint folder")
    p.add_argument("repo_id", metavar="REPO_ID", help="e.g. user/began-faces-32-gamma0.5")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--message", help="commit message (default: 'Upload FOLDER')")


def main(args: Any) -> int:
    from huggingface_hub import errors

    try:
        url = push_to_hub(args.checkpoint, args.repo_id, private=args.private, message=args.message)
    except errors.HfHubHTTPError as e:
        raise CheckpointError(f"the Hub refused the upload to '{args.repo_id}': {e}") from None
    print(url)
    revision = url.rstrip("/").rsplit("/", 1)[-1]
    print(f"load it with: load('{args.repo_id}') or, pinned, load('{args.repo_id}@{revision}')")
    return 0
