import dataclasses
import json

import pytest
import torch

from began_core.checkpoints.hub import CheckpointError, load
from began_core.config import ConfigError, ModelConfig
from began_core.nn.model import BEGAN
from began_core.runs.run_dir import RunDir
from began_core.runs.run_lock import holder
from began_core.training.step import update_D, update_G
from began_core.training.train import NonFiniteLossError, Trainer, train

from conftest import TensorDataset, tiny_config, with_train


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return [k for k, v in module.state_dict().items() if not torch.equal(before[k], v)]


def test_D_step_leaves_G_alone_and_G_step_leaves_D_alone():
    torch.manual_seed(0)
    model = BEGAN(ModelConfig(n=8, Nh=16, Nz=16))
    opt_G = torch.optim.Adam(model.G.parameters(), lr=1e-3)
    opt_D = torch.optim.Adam(model.D.parameters(), lr=1e-3)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    for k_t in (0.0, 0.5):  # with k_t > 0 the fake term of L_D reaches back towards G
        G0, D0 = snapshot(model.G), snapshot(model.D)
        update_D(model, opt_D, x, model.sample_z(4), k_t)
        assert changed(G0, model.G) == []
        assert len(changed(D0, model.D)) == len(D0)
        G1, D1 = snapshot(model.G), snapshot(model.D)
        update_G(model, opt_G, model.sample_z(4))
        assert changed(D1, model.D) == []
        assert len(changed(G1, model.G)) == len(G1)
        assert all(p.requires_grad for p in model.D.parameters())  # restored afterwards


def test_D_step_is_the_same_with_real_and_fake_in_one_batch_or_two():
    """GPUs run D once on real+fake, CPUs twice on halves: the same L_D and the same update."""
    x, z = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 16) * 2 - 1
    results = []
    for fuse in (True, False):
        torch.manual_seed(0)
        model = BEGAN(ModelConfig(n=8, Nh=16, Nz=16))
        opt_D = torch.optim.SGD(model.D.parameters(), lr=1.0)  # the step is the gradient
        losses = update_D(model, opt_D, x, z, 0.3, fuse=fuse)
        results.append((losses, snapshot(model.D)))
    (a, Da), (b, Db) = results
    assert torch.allclose(torch.stack(a), torch.stack(b), atol=1e-6)
    assert all(torch.allclose(Da[k], Db[k], atol=1e-5) for k in Da)


def test_run_directory_contract(tmp_path, dataset):
    run_dir = tmp_path / "run"
    records = list(train(tiny_config(), run_dir, dataset=dataset))
    run = RunDir(run_dir)
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    for key in ("step", "k_t", "L_x", "L_G", "M_global", "lr", "images_per_s", "wall_time"):
        assert key in records[-1]
    assert run.read_metrics() == records
    assert json.loads(run.config_path.read_text())["train"]["steps"] == 20
    assert run.read_status()["state"] == "finished"
    assert [s for s, _ in run.samples()] == [0, 10, 20]
    assert [s for s, _ in run.checkpoints()] == [10, 20]
    ckpt = run.latest_checkpoint()
    assert {p.name for p in ckpt.iterdir()} == {
        "config.json",
        "model.safetensors",
        "README.md",
        "training.json",
        "training_state.pt",
    }
    assert not list(run.checkpoints_dir.glob(".tmp*"))  # nothing half-written left behind
    assert "gamma 0.5" in (ckpt / "README.md").read_text()


def test_short_run_moves_k_t_off_zero_and_keeps_it_in_unit_interval(tmp_path, dataset):
    records = list(train(tiny_config(steps=60, log_every=1), tmp_path / "r", dataset=dataset))
    k = [r["k_t"] for r in records]
    assert k[0] > 0
    assert all(0 < v < 1 for v in k)
    M = [r["M_global"] for r in records]
    assert all(m >= r["L_x"] for m, r in zip(M, records, strict=True))


def test_exact_resume_matches_uninterrupted_run(tmp_path):
    full = tiny_config(steps=30, checkpoint_every=15)
    list(train(full, tmp_path / "a", dataset=TensorDataset()))
    list(train(with_train(full, steps=15), tmp_path / "b", dataset=TensorDataset()))
    assert RunDir(tmp_path / "b").read_status()["state"] == "finished"
    list(train(full, tmp_path / "b", dataset=TensorDataset(), resume=True))

    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    wa, wb = load(a.latest_checkpoint()).state_dict(), load(b.latest_checkpoint()).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa = torch.load(a.latest_checkpoint() / "training_state.pt", weights_only=True)
    sb = torch.load(b.latest_checkpoint() / "training_state.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 30
    assert sa["k_t"] == sb["k_t"] and sa["k_t"] > 0
    assert sa["lr"] == sb["lr"] < full.train.lr  # the plateau rule halved it, identically
    assert torch.equal(sa["rng_z"], sb["rng_z"])

    def strip(rs):
        return [{k: v for k, v in r.items() if k in ("step", "k_t", "L_x", "L_G")} for r in rs]

    assert strip(a.read_metrics()) == strip(b.read_metrics())


def test_a_gpu_checkpoint_resumes_on_the_cpu(tmp_path, capsys):
    """A CUDA run's noise generator keeps a 16-byte state that a CPU generator cannot take: the
    run resumes anyway, weights, optimizers, k_t and lr exact, the noise re-seeded from (seed,
    step), and says so. (A checkpoint written on a GPU, its generator state as CUDA saves it.)"""
    full = tiny_config(steps=20, checkpoint_every=10)
    runs = []
    for name in ("a", "b"):
        list(train(with_train(full, steps=10), tmp_path / name, dataset=TensorDataset()))
        ckpt = RunDir(tmp_path / name).latest_checkpoint()
        state = torch.load(ckpt / "training_state.pt", weights_only=True)
        state["rng_z"] = torch.arange(16, dtype=torch.uint8)[None]  # as a CUDA generator's
        torch.save(state, ckpt / "training_state.pt")
        capsys.readouterr()
        list(train(full, tmp_path / name, dataset=TensorDataset(), resume=True))
        assert (
            "from a checkpoint whose noise generator was another device's"
            in capsys.readouterr().err
        )
        run = RunDir(tmp_path / name)
        assert run.read_status()["state"] == "finished" and run.read_status()["step"] == 20
        runs.append([(r["step"], r["k_t"], r["L_x"]) for r in run.read_metrics()])
    assert runs[0] == runs[1]  # the re-seeding is deterministic


def test_stop_file_checkpoints_and_resume_continues(tmp_path, dataset):
    run = RunDir(tmp_path / "r")
    records = train(tiny_config(steps=40, checkpoint_every=100), run.path, dataset=dataset)
    for r in records:
        if r["step"] == 10:
            run.request_stop()
    status = run.read_status()
    assert status["state"] == "stopped" and status["step"] == 10
    assert run.checkpoints()[-1][0] == 10 and not run.stop_requested()
    list(train(tiny_config(steps=40, checkpoint_every=100), run.path, dataset=dataset, resume=True))
    assert run.read_status()["state"] == "finished"
    assert [r["step"] for r in run.read_metrics()] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_closing_the_generator_is_a_graceful_stop(tmp_path, dataset):
    records = train(tiny_config(steps=40), tmp_path / "r", dataset=dataset)
    next(records)
    records.close()
    run = RunDir(tmp_path / "r")
    assert run.read_status()["state"] == "stopped"
    assert run.checkpoints()[-1][0] == 5


def test_the_trainer_closes_explicitly_when_its_block_is_left(tmp_path, dataset):
    """The end of a run is said by leaving the `with` block, not left to garbage collection:
    the records abandoned at step 10 (their generator still referenced, never closed), the
    block's exit writes step 10's checkpoint, the "stopped" status and frees the run."""
    run = RunDir(tmp_path / "r")
    with Trainer(tiny_config(steps=40, checkpoint_every=100), run.path, dataset=dataset) as t:
        assert run.read_status()["state"] == "running" and holder(run.path) is not None
        records = t.records()
        for r in records:
            if r["step"] == 10:
                break
        assert run.checkpoints() == []  # nothing written yet but step 0's samples
    assert run.read_status()["state"] == "stopped" and run.read_status()["step"] == 10
    assert run.checkpoints()[-1][0] == 10 and holder(run.path) is None
    del records
    with Trainer(tiny_config(steps=20), run.path, dataset=dataset, resume=True) as t:
        assert [r["step"] for r in t.records()] == [15, 20]
    assert run.read_status()["state"] == "finished"


def test_a_failed_step_marks_the_run_failed_and_frees_it(tmp_path):
    run = RunDir(tmp_path / "r")
    poisoned = PoisonedDataset(after=7)
    with (
        pytest.raises(NonFiniteLossError),
        Trainer(tiny_config(steps=40), run.path, dataset=poisoned) as t,
    ):
        for _ in t.records():
            pass
    status = run.read_status()
    assert status["state"] == "failed" and "NonFiniteLossError: non-finite loss" in status["error"]
    assert "Traceback" in status["traceback"] and holder(run.path) is None


class PoisonedDataset(TensorDataset):
    """Turns into NaN after a given batch number."""

    def __init__(self, after: int):
        super().__init__()
        self.calls, self.after = 0, after

    def batch(self, indices):
        self.calls += 1
        x = super().batch(indices)
        return x * float("nan") if self.calls > self.after else x


def test_nan_loss_fails_the_run_and_keeps_last_good_checkpoint(tmp_path):
    run = RunDir(tmp_path / "r")
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        list(train(tiny_config(steps=40), run.path, dataset=PoisonedDataset(after=12)))
    status = run.read_status()
    assert status["state"] == "failed" and "non-finite" in status["error"]
    assert run.latest_checkpoint().name == "step_0000010"
    model = load(run.latest_checkpoint())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_resume_with_another_model_is_refused(tmp_path, dataset):
    list(train(tiny_config(steps=10), tmp_path / "r", dataset=dataset))
    other = tiny_config(steps=20)
    other = type(other)(model=ModelConfig(resolution=32, n=16, Nh=16, Nz=16), train=other.train)
    with pytest.raises(CheckpointError, match="n 8 where 16 is expected"):
        list(train(other, tmp_path / "r", dataset=dataset, resume=True))
    with pytest.raises(ConfigError, match="gamma"):
        list(
            train(
                with_train(tiny_config(steps=20), gamma=0.7),
                tmp_path / "r",
                dataset=dataset,
                resume=True,
            )
        )


def test_new_run_into_a_used_directory_is_refused(tmp_path, dataset):
    list(train(tiny_config(steps=10), tmp_path / "r", dataset=dataset))
    with pytest.raises(ConfigError, match="--resume"):
        list(train(tiny_config(steps=10), tmp_path / "r", dataset=dataset))


def test_resume_without_checkpoint_is_refused(tmp_path, dataset):
    with pytest.raises(ConfigError, match="not a run directory"):
        list(train(tiny_config(), tmp_path / "nothing", dataset=dataset, resume=True))


def test_dataset_smaller_than_batch_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="fewer than the batch size"):
        list(train(tiny_config(), tmp_path / "r", dataset=TensorDataset(n=8)))
    assert not (tmp_path / "r").exists()  # nothing started


def test_skip_and_vanishing_residual_train(tmp_path, dataset):
    cfg = tiny_config(steps=10, carry_steps=5)
    cfg = type(cfg)(
        model=ModelConfig(n=8, Nh=16, Nz=16, skip=True, vanishing_residual=True), train=cfg.train
    )
    records = list(train(cfg, tmp_path / "r", dataset=dataset))
    assert records[-1]["step"] == 10


def test_fast_path_options_run_and_keep_losses_float32(tmp_path, dataset):
    """bf16 autocast + channels_last (the CUDA fast path) also run on the CPU; the losses and
    k_t stay float32 and finite."""
    from began_core.config import TrainConfig
    from began_core.training.step import TrainStep

    torch.manual_seed(0)
    model = BEGAN(ModelConfig(n=8, Nh=16, Nz=16))
    step = TrainStep(model, TrainConfig(amp=True, channels_last=True), torch.device("cpu"))
    for t in range(3):
        losses = step(dataset.batch(list(range(16 * t, 16 * t + 16))))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in losses.values())
    assert step.k_t.dtype == torch.float32 and 0 <= float(step.k_t) <= 1
    assert model.G.decoder.to_image.weight.is_contiguous(memory_format=torch.channels_last)


def test_hflip_changes_what_the_trainer_sees(tmp_path):
    config = tiny_config(steps=5, log_every=5)
    flipped = dataclasses.replace(config, data=dataclasses.replace(config.data, hflip=True))
    plain = list(train(config, tmp_path / "plain", dataset=TensorDataset()))[-1]
    mirrored = list(train(flipped, tmp_path / "flipped", dataset=TensorDataset()))[-1]
    assert plain["L_x"] != mirrored["L_x"]  # same weights and z, mirrored images
    assert RunDir(tmp_path / "flipped").read_config().data.hflip
