"""Every run option is declared once (config.opt) and the parser, the launcher, the resume check
and the presets follow from it."""

import argparse
import dataclasses
import json

import pytest

from began_core.cli.main import build_parser, main
from began_core.config import GROUPS, DataConfig, ModelConfig, RunConfig, TrainConfig
from began_core.flags import FLAGS, FROZEN, OPTIONS, config_from_flags, train_flags
from began_core.presets import PRESETS, preset_flags
from began_core.runs.launch import LAUNCH_FLAGS, LaunchError, validate_launch
from began_core.runs.run_dir import RunDir

from conftest import SHORT, TINY

CLI_ONLY = {"-h", "--help", "--out", "--resume", "--preset", "--dry-run", "--quiet"}


def train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_every_config_field_is_one_declared_flag():
    fields = [
        (section, f)
        for section, kind in (("model", ModelConfig), ("train", TrainConfig), ("data", DataConfig))
        for f in dataclasses.fields(kind)
    ]
    assert len(OPTIONS) == len(fields) == len(FLAGS)
    for section, f in fields:
        assert f.metadata["help"] and f.metadata["group"] in GROUPS, f.name
        assert (section, f.name) in FLAGS.values()
    options = {s for a in train_parser()._actions for s in a.option_strings}
    declared = {o.option for o in OPTIONS.values()}
    declared |= {"--no-" + o.option[2:] for o in OPTIONS.values() if o.type is bool}
    assert options - CLI_ONLY == declared


def test_the_parser_takes_each_option_with_its_declared_type_and_default_help():
    parser = train_parser()
    by_dest = {a.dest: a for a in parser._actions}
    for o in OPTIONS.values():
        action = by_dest[o.flag]
        assert action.default is None  # unset keeps the stored value on resume
        if o.type is bool:
            assert isinstance(action, argparse.BooleanOptionalAction)
        elif o.flag != "seed":
            assert action.type is o.type
    text = parser.format_help()
    assert "images per batch (default 16)" in text
    assert "initial k_t (default 0.0)" in text


def test_resume_freezes_what_the_config_declares_frozen():
    # The values an exact resume depends on: the trajectory (data order, k_t, Adam's state) is
    # a function of them. Changing this set changes what "exact resume" means.
    assert set(FROZEN["train"]) == {
        "batch_size",
        "gamma",
        "lambda_k",
        "eta",
        "beta1",
        "beta2",
        "seed",
        "lr_window",
        "augment",
        "augment_p",
        "heldout_every",
    }
    assert set(FROZEN["model"]) == {f.name for f in dataclasses.fields(ModelConfig)}
    assert set(FROZEN["data"]) == {f.name for f in dataclasses.fields(DataConfig)}


def test_the_launcher_types_every_setting_as_the_config_declares(tmp_path):
    config = validate_launch({"data": "shapes", "gamma": "0.3", "filters": 8.0, "hflip": True})
    assert config.train.gamma == 0.3 and config.model.n == 8 and config.data.hflip is True
    for bad, message in (({"hflip": 1}, "true, false or unset"), ({"filters": 8.5}, "whole")):
        with pytest.raises(LaunchError, match=message):
            validate_launch({"data": "shapes", **bad})
    assert set(LAUNCH_FLAGS) <= set(OPTIONS)


def dry_run(capsys, *args: str) -> dict:
    assert main(["train", "--out", "x", "--dry-run", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_preset_sets_its_flags_and_flags_given_beside_it_win(capsys):
    faces = dry_run(capsys, "--preset", "faces-64")
    assert faces["model"]["resolution"] == 64 and faces["model"]["n"] == 32
    assert faces["train"]["eta"] == 2 and faces["train"]["lambda_k"] == 0.01
    assert faces["train"]["augment"] == "translation,cutout" and faces["data"]["heldout"] == 0.05
    mine = dry_run(capsys, "--preset", "faces-64", "--eta", "1", "--resolution", "32")
    assert mine["train"]["eta"] == 1 and mine["model"]["resolution"] == 32
    assert mine["train"]["lambda_k"] == 0.01
    paper = dry_run(capsys, "--preset", "paper")
    assert paper["train"]["lambda_k"] == 0.001 and paper["train"]["eta"] == 1
    assert paper["model"]["resolution"] == 64


def test_every_preset_is_a_valid_config_and_round_trips_through_its_flags():
    for name, preset in PRESETS.items():
        assert set(preset.flags) <= set(OPTIONS), name
        config = config_from_flags(dict(preset.flags))
        assert config_from_flags(_parsed(train_flags(config))) == config, name


def test_flags_beside_a_preset_train_the_config_they_were_made_from(capsys):
    """The dashboard launches `--preset faces-32` with the form's settings beside it: every
    setting the form moved away from the preset is stated, back to the plain default too."""
    config = config_from_flags({**preset_flags("faces-32"), "eta": 1, "filters": 16})
    words = train_flags(config, "faces-32")
    assert words[:2] == ["--preset", "faces-32"] and "--eta" in words and "--augment" not in words
    assert RunConfig.from_dict(dry_run(capsys, *words)) == config


def _parsed(words: list[str]) -> dict:
    args = build_parser().parse_args(["train", "--out", "x", *words])
    return {k: v for k, v in vars(args).items() if k in FLAGS}


def test_an_unknown_preset_is_refused_naming_the_presets(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--out", "x", "--preset", "celeba", "--dry-run"])
    assert "faces-64" in capsys.readouterr().err


def test_the_run_records_its_preset_and_a_resume_refuses_another(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--preset", "faces-32", *TINY, *SHORT, "--quiet"]
    assert main(["train", "--out", str(out), *args, "--score-every", "0", "--heldout", "0"]) == 0
    run = RunDir(out)
    assert run.read_config_dict()["meta"]["preset"] == "faces-32"
    assert run.read_config().train.eta == 2
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--preset", "paper", "--steps", "30"]) == 2
    assert "--preset paper sets up a new run" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--steps", "30", "--quiet"]) == 0
    assert run.read_config_dict()["meta"]["preset"] == "faces-32"
