"""The training step that asks nothing of the host (step.py, schedule.py, augment.py).

On the CPU it must compute what the step computed before it was made host-free, bit for bit:
`old_step` below is that step as it was written (k_t rebound to a new tensor every step, the
learning rate a float, G_ema from floats), built from the same public functions. The plateau
rule decided on the device must halve exactly where the float rule does. The augmentation
drawn on the device (CUDA's mode) is another random stream: it must draw from the same
distributions, give the same expected loss, and resume exactly."""

import dataclasses

import numpy as np
import pytest
import torch

from began_core.checkpoints.hub import load
from began_core.config import ModelConfig, TrainConfig
from began_core.equilibrium import update_k
from began_core.nn.model import BEGAN
from began_core.runs.run_dir import RunDir
from began_core.training import augment, fast_path
from began_core.training.augment import Augment
from began_core.training.schedule import PlateauHalving
from began_core.training.step import TrainStep, update_D, update_G
from began_core.training.train import train

from conftest import TensorDataset, tiny_config, with_train

CPU = torch.device("cpu")
ALL = ("translation", "cutout", "color")


def tiny_model() -> BEGAN:
    torch.manual_seed(0)
    return BEGAN(ModelConfig(resolution=32, n=8, Nh=16, Nz=16))


def old_step(step: TrainStep, x: torch.Tensor, t: int, k_t: torch.Tensor):
    """The step as written before it was host-free: returns (losses, new k_t)."""
    cfg, aug, B = step.cfg, step.augment, len(x)

    def T(use):
        return (lambda v: aug(v, t, use)) if aug else None

    x = x.contiguous(memory_format=torch.channels_last) if step.channels_last else x
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if step.amp else None
    with amp or torch.autocast("cpu", enabled=False):
        L_x, L_D = update_D(
            step.model, step.opt_D, x, step.z(B), k_t, cfg.eta, fuse=True, T_x=T("real"),
            T_fake=T("fake_D"),
        )  # fmt: skip
        L_G = update_G(step.model, step.opt_G, step.z(B), cfg.eta, T=T("fake_G"))
    if step.averages is not None:
        step.averages.update(images_seen=(t + 1) * cfg.batch_size)
    return (L_x, L_G, L_D), update_k(k_t, L_x, L_G, cfg.gamma, cfg.lambda_k)


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16"])
def test_the_host_free_step_is_the_step_as_written_before(amp):
    """Same weights, batches and seeds: every loss, k_t and every weight (G, D, G_ema and a
    swept average, both Adam states) equal bit for bit over steps that halve the rate."""
    x = TensorDataset(n=16).x[:8]
    cfg = TrainConfig(gamma=0.9, amp=amp, ema_kimg=0.02, ema_sweep="0.01", lambda_k=0.05)
    steps = []
    for _ in range(2):
        a = Augment(ALL, 0.7, seed=3)
        steps.append(TrainStep(tiny_model(), cfg, CPU, augment=a))
    new, old = steps
    assert new.augment.draws == "host" and new.lr_t is None  # the CPU's modes
    k_old = torch.tensor(cfg.k_0)
    lr = torch.tensor(cfg.lr, dtype=torch.float64)
    for t in range(6):
        if t == 3:
            lr = lr * 0.5  # a halving, as the plateau rule makes it (a float64 tensor)
        new.set_lr(lr)
        old.set_lr(float(lr))
        got = new(x, t)
        want, k_old = old_step(old, x, t, k_old)
        assert all(torch.equal(got[k], w) for k, w in zip(("L_x", "L_G", "L_D"), want, strict=True))
        assert torch.equal(new.k_t, k_old)
    assert float(new.k_t) > 0
    for a, b in ((new.model, old.model), (new.opt_G, old.opt_G), (new.opt_D, old.opt_D)):
        sa, sb = a.state_dict(), b.state_dict()
        if isinstance(a, torch.nn.Module):
            assert all(torch.equal(sa[k], sb[k]) for k in sa)
        else:
            assert all(
                torch.equal(sa["state"][i][n], sb["state"][i][n]) for i in sa["state"] for n in sa["state"][i]
            )  # fmt: skip
    ema_new, ema_old = new.averages.sweep_state(), old.averages.sweep_state()
    assert all(torch.equal(ema_new[h][k], ema_old[h][k]) for h in ema_new for k in ema_new[h])


def test_k_t_is_one_tensor_updated_in_place():
    """A captured graph reads and writes one k_t: the step never rebinds it, and a resume's
    assignment copies into it."""
    step = TrainStep(tiny_model(), TrainConfig(gamma=0.9, lambda_k=0.1), CPU)
    k = step.k_t
    step(TensorDataset(n=16).x[:8])
    assert step.k_t is k and float(k) > 0
    step.k_t = 0.25
    assert step.k_t is k and float(k) == 0.25


def test_tensor_ema_weights_are_the_float_ones_bit_for_bit():
    x = TensorDataset(n=16).x[:8]
    cfg = TrainConfig(ema_kimg=0.02, ema_sweep="0.01,0.5")
    plain, tensor = TrainStep(tiny_model(), cfg, CPU), TrainStep(tiny_model(), cfg, CPU)
    tensor.use_tensor_ema()
    start = next(iter(plain.model.G_ema.parameters())).clone()
    for t in range(3):
        plain(x, t), tensor(x, t)
    assert tensor.ema_weights is not None and not torch.equal(
        next(iter(plain.model.G_ema.parameters())), start
    )  # the averages moved
    sa, sb = plain.model.state_dict(), tensor.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    wa, wb = plain.averages.sweep_state(), tensor.averages.sweep_state()
    assert all(torch.equal(wa[h][k], wb[h][k]) for h in wa for k in wa[h])


class OldPlateau:
    """The plateau rule as written before it was decided on the device: the window's sum of
    float32 M_global tensors read to the host once per window, the rest in floats."""

    def __init__(self, window, tolerance, lr_min):
        self.window, self.tolerance, self.lr_min = window, tolerance, lr_min
        self.best, self.total, self.count = float("inf"), 0.0, 0

    def observe(self, M, lr):
        self.total, self.count = self.total + M.detach(), self.count + 1
        if self.count < self.window:
            return lr
        mean = float(self.total) / self.count
        self.total, self.count = 0.0, 0
        if mean < self.best * (1.0 - self.tolerance):
            self.best = mean
            return lr
        self.best = min(self.best, mean)
        return max(lr * 0.5, self.lr_min)


@pytest.mark.parametrize("tolerance", [0.0, 0.01, -0.02])
def test_plateau_rule_on_the_device_halves_where_the_float_rule_does(tolerance):
    """Tensors in, tensors out, the old rule's decisions and numbers exactly: improving,
    tied and worsening windows, and the floor lr_min."""
    rng = np.random.default_rng(7)
    values = np.concatenate([np.linspace(1, 0.5, 40), np.full(30, 0.5), rng.random(80) + 0.4])
    M = torch.tensor(values, dtype=torch.float32)
    old, new = OldPlateau(5, tolerance, 3e-5), PlateauHalving(5, tolerance, lr_min=3e-5)
    lr_f, lr_t = 1e-4, torch.tensor(1e-4, dtype=torch.float64)
    seen = []
    for i, m in enumerate(M):
        lr_f = old.observe(m, lr_f)
        lr_t = new.observe(m, lr_t)
        assert isinstance(lr_t, torch.Tensor) and float(lr_t) == lr_f
        assert float(new.best) == old.best
        if i % 7 == 3:  # mid-window too
            assert float(new.total) == float(old.total) and new.count == old.count
        seen.append(lr_f)
    assert len(set(seen)) >= 3 and min(seen) == 3e-5  # it halved, and reached the floor
    floats = PlateauHalving(5, tolerance, lr_min=3e-5)  # plain floats still take the float rule
    lr = 1e-4
    for m in values:
        lr = floats.observe(float(m), lr)
    assert isinstance(lr, float)


def test_plateau_rule_state_round_trips_mid_window():
    a, b = PlateauHalving(4), PlateauHalving(4)
    lr = torch.tensor(1e-4, dtype=torch.float64)
    for m in torch.linspace(1, 0.9, 6):
        lr = a.observe(m, lr)
    b.load_state_dict(a.state_dict())
    for m in torch.linspace(0.95, 0.97, 5):
        assert torch.equal(a.observe(m, lr), b.observe(m, lr))
    assert a.state_dict() == b.state_dict()


# --------------------------------------------------------------------------- device draws


def test_device_draws_are_a_pure_function_of_seed_and_step():
    v = torch.rand(8, 3, 32, 32) * 2 - 1
    one, two = Augment(ALL, 0.5, seed=1, draws="device"), Augment(ALL, 0.5, seed=1, draws="device")
    one.begin(5, CPU)
    a = [one(v, 5, u) for u in augment.USES]
    two.begin(4, CPU)
    two(v, 4, "real")
    two.begin(5, CPU)  # another step in between changes nothing
    b = [two(v, 5, u) for u in augment.USES]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])  # each use draws afresh
    one.begin(6, CPU)
    assert not torch.equal(one(v, 6, "real"), a[0])
    with pytest.raises(RuntimeError, match="begin"):
        one(v, 7, "real")


def test_device_draws_slice_the_global_batch_per_rank():
    v = torch.rand(8, 3, 32, 32) * 2 - 1
    whole = Augment(ALL, 0.5, seed=2, draws="device")
    whole.begin(3, CPU)
    full = whole(torch.cat([v, v]), 3, "real")
    for rank in (0, 1):
        part = Augment(ALL, 0.5, seed=2, rank=rank, world=2, draws="device")
        part.begin(3, CPU)
        assert torch.equal(part(v, 3, "real"), full[rank * 8 : (rank + 1) * 8])


def test_device_draws_follow_the_host_draws_distributions():
    """Many steps' parameters: the same share applied (p), the same ranges, the same means,
    within 5 standard errors."""
    B, size, p, n = 64, 32, 0.6, 40
    gen = torch.Generator().manual_seed(0)
    host, dev = [], []
    for t in range(n):
        host.append(augment.draw(ALL, p, size, B, (0, t, 1)))
        gen.manual_seed(augment.step_seed(0, t))
        dev.append(augment.draw_on_device(ALL, p, size, B, gen))

    def stats(draws):
        shift = torch.cat([d.shift for d in draws]).float()
        return {
            "shift_on": (shift != 0).any(1).float(),
            "shift": shift.flatten(),
            "cut_on": torch.cat([d.cut_on for d in draws]).float(),
            "cut": torch.cat([d.cut for d in draws]).float().flatten(),
            "color_on": torch.cat([d.color_on for d in draws]).float(),
            **{f"color{i}": torch.cat([d.color[:, i] for d in draws]) for i in range(3)},
        }

    h, d = stats(host), stats(dev)
    for k in h:
        assert h[k].min() == d[k].min() or k.startswith("color"), k  # the same ranges
        se = (h[k].var() / len(h[k]) + d[k].var() / len(d[k])).sqrt()
        assert (h[k].mean() - d[k].mean()).abs() < 5 * se + 1e-6, k
    assert abs(float(d["cut_on"].mean()) - p) < 0.05
    assert d["shift"].abs().max() == size // 8
    for i, (lo, hi) in enumerate([(-0.5, 0.5), (0.0, 2.0), (0.5, 1.5)]):
        c = d[f"color{i}"]
        assert lo <= c.min() and c.max() <= hi and c.max() - c.min() > 0.8 * (hi - lo)


def test_device_draws_give_the_host_draws_expected_loss():
    """The step tracks today's in expectation: D's loss on augmented real images, averaged
    over many steps' draws, is the same for both streams within 4 standard errors."""
    model, x = tiny_model(), TensorDataset(n=32).x
    from began_core.equilibrium import ae_loss

    losses = {}
    for draws in ("host", "device"):
        T, out = Augment(ALL, 0.5, seed=0, draws=draws), []
        with torch.no_grad():
            for t in range(48):
                T.begin(t, CPU)
                v = T(x, t, "real")
                out.append(ae_loss(v, model.D(v)).mean())
        losses[draws] = torch.stack(out)
    h, d = losses["host"], losses["device"]
    se = (h.var() / len(h) + d.var() / len(d)).sqrt()
    assert not torch.equal(h, d) and (h.mean() - d.mean()).abs() < 4 * se


@pytest.fixture
def device_draws(monkeypatch):
    """Train on the CPU with CUDA's augmentation mode."""
    resolve = fast_path.resolve
    monkeypatch.setattr(
        fast_path, "resolve", lambda cfg, device, processes=1: dataclasses.replace(resolve(cfg, device, processes), draws="device")
    )  # fmt: skip


def test_a_run_with_device_draws_resumes_exactly(tmp_path, device_draws):
    full = tiny_config(
        steps=20, checkpoint_every=10, augment="translation,cutout,color", augment_p=0.6,
        ema_kimg=0.05, lr_window=3, gamma=0.9,
    )  # fmt: skip
    list(train(full, tmp_path / "a", dataset=TensorDataset()))
    list(train(with_train(full, steps=10), tmp_path / "b", dataset=TensorDataset()))
    list(train(full, tmp_path / "b", dataset=TensorDataset(), resume=True))
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    assert (
        "augmentation drawn on the device" in a.read_config_dict()["meta"]["fast_path"]["summary"]
    )
    wa, wb = load(a.latest_checkpoint()).state_dict(), load(b.latest_checkpoint()).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    keys = ("step", "k_t", "L_x", "L_G", "L_D", "lr")
    ra = [{k: r[k] for k in keys} for r in a.read_metrics()]
    assert ra == [{k: r[k] for k in keys} for r in b.read_metrics()]
    assert ra[-1]["lr"] < full.train.lr  # the device-side plateau rule halved it
