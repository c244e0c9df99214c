import time

import pytest
import torch
from huggingface_hub import constants as hf_constants

from began_core.checkpoints import hub
from began_core.checkpoints.hub import CheckpointError, load, save_pretrained
from began_core.config import ModelConfig
from began_core.nn.model import BEGAN

CFG = ModelConfig(n=8, Nh=16, Nz=16)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = BEGAN(CFG)
    save_pretrained(model, tmp_path / "ckpt", card="# card\n")
    return model, tmp_path / "ckpt"


def test_roundtrip_is_exact_and_layout_is_a_model_repository(saved):
    model, path = saved
    assert sorted(p.name for p in path.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    loaded = load(path)
    assert loaded.config == CFG and not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    z = model.sample_z(3)
    assert torch.equal(model.generate(z), loaded.generate(z))


def test_hub_mixin_from_pretrained_reads_the_same_folder(saved):
    model, path = saved
    via_mixin = BEGAN.from_pretrained(str(path))
    assert via_mixin.config == CFG
    assert torch.equal(via_mixin.G.decoder.fc.weight, model.G.decoder.fc.weight)


def test_float16_and_generator_only_exports(tmp_path, saved):
    model, _ = saved
    save_pretrained(model, tmp_path / "half", dtype=torch.float16, generator_only=True)
    small = load(tmp_path / "half")
    assert not small.has_discriminator
    w, w16 = model.G.decoder.fc.weight, small.G.decoder.fc.weight
    assert w16.dtype == torch.float32 and torch.allclose(w, w16, atol=1e-3)
    assert load(saved[1]).has_discriminator
    assert small.folder == tmp_path / "half" and load(saved[1]).folder == saved[1]
    assert BEGAN(CFG).has_discriminator and BEGAN(CFG).folder is None  # built, not loaded
    assert {"has_discriminator", "folder"} <= set(BEGAN.__annotations__)  # declared


def test_missing_folder_names_the_path(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        load(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        load("./pretrained/does-not-exist")
    (tmp_path / "pretrained").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        load("pretrained/typo")  # 'pretrained' is a local folder: no Hub lookup


def test_folder_without_config_or_weights(tmp_path, saved):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load(tmp_path / "empty")
    _, path = saved
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load(path)


def test_corrupt_weights(saved):
    _, path = saved
    (path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load(path)


def test_weights_of_another_configuration(tmp_path, saved):
    _, path = saved
    (path / "config.json").write_text(
        (path / "config.json").read_text().replace('"n": 8', '"n": 16')
    )
    with pytest.raises(CheckpointError, match="do not match its config.json"):
        load(path)


def test_expect_names_the_differing_fields(saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="resolution 32 where 64 is expected"):
        load(path, expect=ModelConfig(resolution=64, n=8, Nh=16, Nz=16))


def test_hub_id_offline_is_a_clear_error_not_a_stack_of_retries(monkeypatch, tmp_path):
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match="not reachable") as err:
        load("someone/began-faces")
    assert "pretrained/" in str(err.value)
    assert time.perf_counter() - t < 10


def test_hub_id_unreachable_network(monkeypatch, tmp_path):
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hub, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(CheckpointError, match="not reachable"):
        load("someone/began-faces")
