"""G_ema (ema.py): the update rule, its ramp-up, saving and exact resume, an old run gaining one,
and the tools that choose between G and G_ema."""

import json

import pytest
import torch

from began_core.checkpoints import generators
from began_core.checkpoints.hub import CheckpointError, load, save_pretrained
from began_core.config import ConfigError, ModelConfig, TrainConfig
from began_core.nn import ema
from began_core.nn.model import BEGAN
from began_core.runs.run_dir import RunDir
from began_core.training.train import train

from conftest import TensorDataset, tiny_config, with_train

CFG = ModelConfig(resolution=32, n=8, Nh=16, Nz=16)


def weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_beta_is_the_half_life_in_images_and_ramps_up():
    # Without ramp-up: after half-life / batch steps the old weights count half.
    b = ema.beta(16, 10.0, images_seen=10**9, rampup=0)
    assert b ** (10_000 / 16) == pytest.approx(0.5)
    # ProGAN's beta 0.999 at batch 16 is a half-life of about 11 kimg.
    assert ema.beta(16, 11.08, 10**9, 0) == pytest.approx(0.999, abs=1e-5)
    # Ramp-up: the half-life is at most 5 % of the images seen, so early on beta is small.
    assert ema.beta(16, 10.0, images_seen=1600, rampup=0.05) == pytest.approx(0.5 ** (16 / 80))
    assert ema.beta(16, 10.0, images_seen=16, rampup=0.05) < 1e-6  # the first step: G itself
    late = ema.beta(16, 10.0, images_seen=10**7, rampup=0.05)
    assert late == ema.beta(16, 10.0, 10**9, 0)  # once 5 % of the images pass 10 kimg


def test_update_is_beta_average_plus_one_minus_beta_G():
    model = BEGAN(CFG)
    averages = ema.Averages(model, TrainConfig(ema_kimg=1.0, ema_rampup=0, ema_sweep="0.1"))
    assert model.G_ema is averages.nets[1.0] and set(averages.nets) == {1.0, 0.1}
    before = {k: weights(net) for k, net in averages.nets.items()}
    with torch.no_grad():
        for p in model.G.parameters():
            p.add_(torch.randn_like(p))
    averages.update(images_seen=10**6)
    G = model.G.state_dict()
    for kimg, net in averages.nets.items():
        b = ema.beta(16, kimg, 10**6, 0)
        for k, v in net.state_dict().items():
            torch.testing.assert_close(v, b * before[kimg][k] + (1 - b) * G[k])
    assert not any(p.requires_grad for p in model.G_ema.parameters())


def test_config_refuses_bad_half_lives():
    with pytest.raises(ConfigError, match="ema_kimg must be a number >= 0"):
        TrainConfig(ema_kimg=-1)
    with pytest.raises(ConfigError, match="not a half-life"):
        TrainConfig(ema_kimg=1, ema_sweep="2,fast")
    with pytest.raises(ConfigError, match="give --ema-kimg too"):
        TrainConfig(ema_sweep="2")


def test_G_ema_travels_in_the_model_repository(tmp_path):
    model = BEGAN(CFG)
    model.add_G_ema()
    with torch.no_grad():
        for p in model.G_ema.parameters():
            p.mul_(0.5)
    save_pretrained(model, tmp_path / "m", training={"generator": "G_ema"})
    loaded = load(tmp_path / "m")
    assert loaded.G_ema is not None and loaded.recommended == "G_ema"
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    z = model.sample_z(4)
    view = generators.select(loaded, "auto")
    assert view.generator == "G_ema" and view.D is loaded.D
    assert torch.equal(view.generate(z), model.G_ema(z).clamp(-1, 1))
    assert generators.select(loaded, "G") is loaded
    with pytest.raises(ValueError, match="save the model, not its view"):
        save_pretrained(view, tmp_path / "v")
    # Without G_ema, asking for it says how to get one.
    save_pretrained(BEGAN(CFG), tmp_path / "plain")
    with pytest.raises(CheckpointError, match="has no G_ema"):
        generators.select(load(tmp_path / "plain"), "G_ema")
    with pytest.raises(CheckpointError, match="unknown generator"):
        generators.select(loaded, "H")


def test_a_run_keeps_G_ema_and_its_sweep_and_resumes_them_bit_for_bit(tmp_path):
    full = tiny_config(steps=30, checkpoint_every=15, ema_kimg=0.2, ema_sweep="0.05,1")
    list(train(full, tmp_path / "a", dataset=TensorDataset()))
    list(train(with_train(full, steps=15), tmp_path / "b", dataset=TensorDataset()))
    list(train(full, tmp_path / "b", dataset=TensorDataset(), resume=True))
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    ca, cb = a.latest_checkpoint(), b.latest_checkpoint()
    wa, wb = load(ca).state_dict(), load(cb).state_dict()
    assert any(k.startswith("G_ema.") for k in wa)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = generators.load_sweep(ca), generators.load_sweep(cb)
    assert set(sa) == {0.05, 1.0}
    assert all(torch.equal(sa[h][k], sb[h][k]) for h in sa for k in sa[h])
    # The average is not G: it lags behind it.
    assert not torch.equal(wa["G.decoder.fc.weight"], wa["G_ema.decoder.fc.weight"])
    # Sample grids of both generators, from the same z.
    assert [s for s, _ in a.samples("G_ema")] == [s for s, _ in a.samples()]
    assert a.sample_generators() == ["G", "G_ema"]
    assert [g for g in generators.available(load(ca), ca)] == [
        "G",
        "G_ema",
        "G_ema:0.05",
        "G_ema:1",
    ]


def test_an_old_run_resumed_with_G_ema_gains_one_from_G(tmp_path, capsys):
    old = tiny_config(steps=10, checkpoint_every=10)
    list(train(old, tmp_path / "r", dataset=TensorDataset()))
    G_at_10 = load(RunDir(tmp_path / "r").latest_checkpoint()).G.state_dict()
    resumed = with_train(old, steps=11, ema_kimg=1.0, ema_rampup=0.0)
    list(train(resumed, tmp_path / "r", dataset=TensorDataset(), resume=True))
    assert "kept no average of G at half-life 1 kimg" in capsys.readouterr().err
    model = load(RunDir(tmp_path / "r").latest_checkpoint())
    # One step after starting from G at step 10: beta * G_10 + (1 - beta) * G_11.
    b = ema.beta(16, 1.0, 11 * 16, 0)
    for k, v in model.G_ema.state_dict().items():
        torch.testing.assert_close(v, b * G_at_10[k] + (1 - b) * model.G.state_dict()[k])
    # Resumed again without it, the run drops G_ema and still trains.
    list(train(with_train(old, steps=12), tmp_path / "r", dataset=TensorDataset(), resume=True))
    assert load(RunDir(tmp_path / "r").latest_checkpoint()).G_ema is None


def test_scoring_picks_the_better_of_G_and_G_ema(tmp_path):
    config = tiny_config(heldout=0.3, steps=20, score_every=10, ema_kimg=0.1)
    records = list(train(config, tmp_path / "s", dataset=TensorDataset(n=128)))
    scored = [r for r in records if "score" in r]
    assert scored and all("score_G_ema" in r for r in scored)
    best = RunDir(tmp_path / "s").best_checkpoint()
    record = json.loads((best / "training.json").read_text())
    last = scored[-1]
    assert last["best_generator"] == record["generator"]
    winner = min(
        ((r["score"], "G") for r in scored), default=None
    )  # the best G score, against the best G_ema score
    ema_best = min(r["score_G_ema"] for r in scored)
    expected = "G_ema" if ema_best < winner[0] else "G"
    assert record["generator"] == expected
    assert load(best).recommended == expected


# --------------------------------------------------------------------------- the tools


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    torch.set_num_threads(2)
    path = tmp_path_factory.mktemp("ema") / "run"
    config = tiny_config(steps=20, checkpoint_every=10, ema_kimg=0.1, ema_sweep="0.02")
    list(train(config, path, dataset=TensorDataset()))
    return RunDir(path)


def test_export_ships_the_chosen_generator_and_says_which(ema_run, tmp_path):
    from began_core.publish.export import export

    checkpoint = ema_run.latest_checkpoint()
    swept = generators.load_sweep(checkpoint)[0.02]
    out = export(ema_run.path, tmp_path / "x", generator="G_ema:0.02", evaluate=False)
    shipped = load(out)
    assert shipped.recommended == "G_ema"
    assert all(
        torch.equal(shipped.G_ema.state_dict()[k], v.half().float()) for k, v in swept.items()
    )
    record = json.loads((out / "training.json").read_text())
    assert record["generator"] == "G_ema" and record["G_ema_kimg"] == 0.02
    card = (out / "README.md").read_text()
    assert "samples of G_ema (half-life 0.02 kimg)" in card and 'select(model, "auto")' in card
    plain = export(ema_run.path, tmp_path / "g", generator="G", evaluate=False)
    assert load(plain).recommended == "G" and load(plain).G_ema is not None


def test_sample_and_evaluate_say_which_generator(ema_run, tmp_path):
    from began_core.cli.main import main
    from began_core.evaluation.evaluate import evaluate

    result = evaluate(ema_run.latest_checkpoint(), n=32, generator="G_ema")
    assert result["generator"] == "G_ema"
    assert evaluate(ema_run.latest_checkpoint(), n=32)["generator"] == "G"  # auto: the card's
    assert main(["sample", str(ema_run.path), "--out", str(tmp_path / "s.png"), "--n", "4",
                 "--generator", "G_ema:0.02"]) == 0  # fmt: skip
    assert (tmp_path / "s.png").is_file()
    with pytest.raises(
        CheckpointError, match="no generator 'G_ema:7'.*it has G, G_ema, G_ema:0.02"
    ):
        generators.select(load(ema_run.latest_checkpoint()), "G_ema:7", ema_run.latest_checkpoint())


def test_explorer_offers_G_and_G_ema_of_a_checkpoint_holding_both(ema_run, tmp_path):
    from app.explorer_model import Explorer

    explorer = Explorer(tmp_path / "none", ema_run.path.parent, allow_hub=False)
    (label, key), (other_label, other_key) = explorer.choices()
    assert label.endswith("· G") and other_label.endswith("· G_ema")
    assert other_key == key + "#G_ema"
    assert explorer.model(key).generator == "G"
    assert explorer.model(other_key).generator == "G_ema"
    assert explorer.model(other_key) is explorer.model(other_key)  # cached: PCA stays cached
    assert "generating with G_ema" in explorer.describe(other_key)
    assert explorer.generate(other_key, 0, [], []).shape[:2] == (256, 256)
