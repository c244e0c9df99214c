"""Checkpoints through a Hub: pushed with `python -m began_core push`, loaded by repo id and
by pinned revision, from the cache once the Hub is gone, and refused with a clear error when
a repository is hostile. The Hub is tests/hub_server.py on 127.0.0.1 (fixture `local_hub`)."""

import json
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hf_constants

from began_core.checkpoints import hub
from began_core.checkpoints.hub import CheckpointError, load, save_pretrained
from began_core.cli.main import main
from began_core.config import ModelConfig
from began_core.nn.model import BEGAN

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "pretrained").glob("fluent-faces-*-gamma*"))
TINY = ModelConfig(n=8, Nh=16, Nz=16)


def same_weights(a: BEGAN, b: BEGAN) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return save_pretrained(BEGAN(TINY), folder, card="# tiny\n")


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_push_cli_then_load_by_repo_id_in_a_fresh_process(local_hub, tmp_path):
    """The user's path, unchanged: HF_ENDPOINT names the Hub, the CLI pushes, another process
    loads by repo id."""
    env = {**__import__("os").environ, **local_hub.env}
    push = subprocess.run(
        [sys.executable, "-m", "began_core", "push", str(SHIPPED[0]), "alice/faces-g03"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert push.returncode == 0, push.stderr
    assert "load it with" in push.stdout
    repo = local_hub.repos["alice/faces-g03"]
    files = repo.commits[repo.branches["main"]]
    assert {"config.json", "model.safetensors", "README.md", "training.json"} <= set(files)
    assert files["README.md"] == (SHIPPED[0] / "README.md").read_bytes()  # the model card
    check = (
        "from began_core.checkpoints.hub import load; m = load('alice/faces-g03'); "
        "print(m.config.n, m.has_discriminator)"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["32", "True"]


def test_three_shipped_generators_round_trip_with_revisions_and_the_cache(local_hub, capsys):
    for folder in SHIPPED:
        assert main(["push", str(folder), f"alice/{folder.name}"]) == 0
    for folder in SHIPPED:
        assert same_weights(load(f"alice/{folder.name}"), load(folder))

    # A second commit; the first stays reachable by its revision, in both spellings.
    repo_id = f"alice/{SHIPPED[0].name}"
    first = local_hub.repos[repo_id].branches["main"]
    assert main(["push", str(SHIPPED[1]), repo_id]) == 0
    assert same_weights(load(repo_id), load(SHIPPED[0]))  # "main" as cached before the push
    assert same_weights(load(f"{repo_id}@{first}"), load(SHIPPED[0]))
    second = local_hub.repos[repo_id].branches["main"]
    assert same_weights(load(repo_id, revision=second), load(SHIPPED[1]))
    with pytest.raises(CheckpointError, match="has no revision 'v9'"):
        load(f"{repo_id}@v9")

    # With the Hub gone, what was loaded once comes from the cache.
    local_hub.stop()
    t = time.perf_counter()
    assert same_weights(load(f"alice/{SHIPPED[2].name}"), load(SHIPPED[2]))
    assert same_weights(load(f"{repo_id}@{first}"), load(SHIPPED[0]))
    assert time.perf_counter() - t < 10
    with pytest.raises(CheckpointError, match="not reachable"):
        load("alice/never-pushed")


def test_offline_mode_is_a_clear_message(local_hub, monkeypatch, tmp_path):
    local_hub.seed("alice/tiny", tiny_checkpoint(tmp_path / "tiny"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE is set"):
        load("alice/tiny")
    assert not local_hub.requests


def test_a_mirror_or_local_endpoint_counts_as_reachable(local_hub):
    assert hub._hub_reachable()


def test_push_refuses_a_folder_without_a_model_card(local_hub, tmp_path):
    folder = tiny_checkpoint(tmp_path / "tiny")
    (folder / "README.md").unlink()
    with pytest.raises(CheckpointError, match="no README.md model card"):
        hub.push_to_hub(folder, "alice/tiny")


# --------------------------------------------------------------------------- hostile repos


def weights_downloaded(local_hub) -> bool:
    return any(m == "GET" and p.endswith("/model.safetensors") for m, p in local_hub.requests)


def test_repo_without_safetensors(local_hub, tmp_path):
    files = files_of(tiny_checkpoint(tmp_path / "tiny"))
    del files["model.safetensors"]
    local_hub.commit("eve/no-weights", files)
    with pytest.raises(CheckpointError, match="lacks config.json or model.safetensors"):
        load("eve/no-weights")


class _Trap:
    """Unpickling this touches a file: the proof that nothing unpickled it."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickle_only_repo_is_refused_and_never_unpickled(local_hub, tmp_path):
    files = files_of(tiny_checkpoint(tmp_path / "tiny"))
    del files["model.safetensors"]
    sentinel = tmp_path / "unpickled"
    files["pytorch_model.bin"] = pickle.dumps(_Trap(str(sentinel)))
    local_hub.commit("eve/pickle-only", files)
    with pytest.raises(CheckpointError, match=r"only pytorch_model.bin: a pickle.*safetensors"):
        load("eve/pickle-only")
    plain = {k: v for k, v in files.items() if k != "config.json"}  # no config either
    local_hub.commit("eve/pytorch-repo", plain)
    with pytest.raises(CheckpointError, match=r"only pytorch_model.bin: a pickle"):
        load("eve/pytorch-repo")
    assert not sentinel.exists()
    assert not any(p.endswith(".bin") and m == "GET" for m, p in local_hub.requests)
    # The same folder on disk.
    local = tmp_path / "local"
    local.mkdir()
    for name, data in files.items():
        (local / name).write_bytes(data)
    with pytest.raises(CheckpointError, match="never loaded here"):
        load(local)
    assert not sentinel.exists()


def test_header_shapes_that_disagree_with_the_config(local_hub, tmp_path):
    files = files_of(tiny_checkpoint(tmp_path / "tiny"))
    files["config.json"] = json.dumps({**json.loads(files["config.json"]), "Nz": 32}).encode()
    local_hub.commit("eve/wrong-shapes", files)
    with pytest.raises(
        CheckpointError, match=r"wrong shape: G.decoder.fc.weight \[512, 16\] where \[512, 32\]"
    ):
        load("eve/wrong-shapes")


@pytest.mark.parametrize(
    "config, message",
    [
        ({"n": 20000}, "n=20000, above the limit of 512"),
        ({"n": 512, "resolution": 256}, r"parameters, above this server's limit"),
        ({"n": -3}, "not a valid BEGAN model config"),
        ({"resolution": 31}, "not a valid BEGAN model config"),
    ],
)
def test_absurd_config_is_refused_before_anything_is_built(local_hub, tmp_path, config, message):
    files = files_of(tiny_checkpoint(tmp_path / "tiny"))
    files["config.json"] = json.dumps({**json.loads(files["config.json"]), **config}).encode()
    local_hub.commit("eve/absurd", files)
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match=message):
        load("eve/absurd")
    assert time.perf_counter() - t < 10
    assert not weights_downloaded(local_hub)


def test_file_far_larger_than_its_config_implies(local_hub, tmp_path):
    files = files_of(tiny_checkpoint(tmp_path / "tiny"))
    files["model.safetensors"] += b"\0" * (4 << 20)  # 4 MB beyond a 0.1 MB model
    local_hub.commit("eve/padded", files)
    with pytest.raises(CheckpointError, match="far more than its config.json implies"):
        load("eve/padded")
    assert not weights_downloaded(local_hub)


def test_header_lying_about_its_length_or_offsets(tmp_path):
    folder = tiny_checkpoint(tmp_path / "tiny")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(struct.pack("<Q", 1 << 40) + data[8:])
    with pytest.raises(CheckpointError, match="header claims"):
        load(folder)
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    name = "G.decoder.fc.weight"
    header[name]["data_offsets"] = [0, 1 << 40]
    raw = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])
    with pytest.raises(CheckpointError, match=f"{name} .its data offsets disagree"):
        load(folder)


def test_the_explorer_compares_gamma_on_hub_ids(local_hub, tmp_path):
    from app.explorer_model import Explorer

    ids = []
    for folder in SHIPPED:
        local_hub.seed(f"alice/{folder.name}", folder)
        ids.append(f"alice/{folder.name}")
    ids[0] += "@" + local_hub.repos[ids[0]].branches["main"]  # one of them pinned
    ex = Explorer(tmp_path / "none", tmp_path / "none")
    assert ex.choices() == []
    captions = [caption for _, caption in ex.gamma(ids, 0, 4)]
    assert [c.split(":")[0] for c in captions] == ["gamma 0.3", "gamma 0.5", "gamma 0.7"]
    assert all(i in c for i, c in zip(ids, captions, strict=True))
    assert [k for _, k in ex.hub_choices()] == ids
    local_hub.create("alice/empty")
    with pytest.raises(CheckpointError, match="lacks config.json"):
        ex.model("alice/empty")


def test_a_large_model_serves_fewer_samples_per_request(tmp_path, monkeypatch):
    """The explorer bounds G's activations per request, so a large (allowed) checkpoint
    cannot make one request allocate gigabytes."""
    from app import explorer_model

    torch.manual_seed(0)
    big = ModelConfig(resolution=128, n=32, Nh=16, Nz=16)
    save_pretrained(BEGAN(big), tmp_path / "pretrained" / "big", card="# big\n")
    ex = explorer_model.Explorer(tmp_path / "pretrained", tmp_path / "runs")
    most = explorer_model.MAX_ACTIVATION // (32 * 128 * 128)
    assert ex.grid("pretrained/big", 0, most).shape[0] > 0
    with pytest.raises(ValueError, match=f"samples must be at most {most} for this 128x128"):
        ex.grid("pretrained/big", 0, most + 1)
    with pytest.raises(ValueError, match="at most"):
        ex.gamma(["pretrained/big"], 0, most + 1)
