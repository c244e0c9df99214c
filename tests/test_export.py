"""`python -m began_core export`: a run's checkpoint as a model repository, as in pretrained/."""

import dataclasses
import json
import os
import re
import shlex

import pytest
import torch
from safetensors.torch import load_file

from began_core.checkpoints import hub
from began_core.checkpoints.model_card import model_card
from began_core.cli.main import build_parser, main, resolve_config
from began_core.config import ConfigError
from began_core.explore import latent
from began_core.publish.export import SAMPLES, export
from began_core.training.train import train

from conftest import tiny_config

COMMAND = "python -m began_core train --data fluent-faces --out runs/tiny --steps 20"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "run"
    for _ in train(tiny_config(gamma=0.3), path):  # fluent-faces, the default data
        pass
    return path


def test_export_writes_a_documented_float16_repository_with_metrics(run, tmp_path):
    out = export(
        run, tmp_path / "shipped" / "tiny", history=[10], n=32, command=COMMAND, note="Hi."
    )
    assert {p.name for p in out.iterdir()} == {
        "config.json",
        "model.safetensors",
        "training.json",
        "README.md",
        SAMPLES,
    }
    weights = load_file(out / "model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float16}
    assert any(k.startswith("D.") for k in weights)
    # Readable by others as every file of a shipped folder is (safetensors' own writer
    # made the weights 0600, so a checkout or a shared machine could not load them).
    umask = os.umask(0)
    os.umask(umask)
    for p in out.iterdir():
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p.name

    record = hub.read_training(out)
    assert record["step"] == 20 and record["run"]["train"]["gamma"] == 0.3
    assert record["run"]["meta"]["command"] == COMMAND
    assert record["evaluation"]["n"] == 32 and record["evaluation"]["checkpoint"] == "tiny"
    assert [h["step"] for h in record["history"]] == [10]
    assert latent.read_origin(out).gamma == 0.3

    card = (out / "README.md").read_text()
    assert "Fluent Emoji" in card and "MIT" in card  # the data and its licence
    assert COMMAND in card and "| step 10 |" in card and "| step 20 (this) |" in card
    assert "## Notes" in card and "Hi." in card and f"]({SAMPLES})" in card
    for text in (card, (out / "training.json").read_text()):
        assert str(tmp_path) not in text and str(run) not in text  # no machine paths

    model = hub.load(out)
    z = model.sample_z(64, generator=torch.Generator().manual_seed(0))
    x = model.generate(z)
    assert x.shape == (64, 3, 32, 32) and torch.isfinite(x).all()
    assert model.has_discriminator
    source = hub.load(run / "checkpoints" / "step_0000020")
    assert (source.generate(z) - x).abs().max() < 1 / 255  # float16 moves no pixel a grey level


def test_export_cli_generator_only_without_metrics(run, tmp_path, capsys):
    out = tmp_path / "g"
    assert (
        main(["export", str(run), str(out), "--step", "10", "--generator-only", "--no-evaluate"])
        == 0
    )
    assert "step 10" in capsys.readouterr().err
    assert not any(k.startswith("D.") for k in load_file(out / "model.safetensors"))
    assert "## Quality" not in (out / "README.md").read_text()
    assert not hub.load(out).has_discriminator
    assert json.loads((out / "training.json").read_text())["step"] == 10


def test_export_refuses_what_is_not_a_run_checkpoint(run, tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint at step 7"):
        export(run, tmp_path / "x", step=7, evaluate=False)
    bare = hub.save_pretrained(hub.load(run / "checkpoints" / "step_0000020"), tmp_path / "bare")
    with pytest.raises(ConfigError, match="neither a run directory"):
        export(bare, tmp_path / "y", evaluate=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_evaluate_compares_several_checkpoints_in_one_table(run, capsys):
    steps = [str(run / "checkpoints" / f"step_{s:07d}") for s in (10, 20)]
    assert main(["evaluate", *steps, "--n", "16"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 5  # header, rule, two checkpoints, the real reference
    assert table[2].startswith(f"| {steps[0]} |") and table[-1].startswith("| real images")


def test_a_card_without_a_stated_command_gives_one_that_trains_the_same_run():
    config = tiny_config(gamma=0.3, eta=2, lambda_k=0.01)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, hflip=True))
    card = model_card(config, step=20, wall_time=1.0, hardware="cpu")
    command = re.search(r"```bash\n(python -m began_core train .+)\n```", card).group(1)
    again = resolve_config(build_parser().parse_args(shlex.split(command)[3:]))
    assert again == config
    assert "--lambda-k 0.01" in command and "--eta 2" in command and "--hflip" in command
