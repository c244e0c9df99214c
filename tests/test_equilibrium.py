import pytest
import torch

from began_core.config import ConfigError, TrainConfig
from began_core.equilibrium import M_global, ae_loss, balance, discriminator_loss, update_k


def test_ae_loss_is_per_sample_mean_of_pixel_norm():
    v = torch.zeros(2, 1, 2, 2)
    D_v = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    assert torch.allclose(ae_loss(v, D_v, eta=1), torch.tensor([1.0, 0.5]))
    assert torch.allclose(ae_loss(v, D_v, eta=2), torch.tensor([1.5, 0.25]))
    with pytest.raises(ValueError, match="eta"):
        ae_loss(v, D_v, eta=3)
    with pytest.raises(ValueError, match="differ"):
        ae_loss(v, D_v[:, :, :1], eta=1)


def test_k_update_is_proportional_and_clipped():
    # gamma * L(x) - L(G) = 0.5 * 0.4 - 0.1 = 0.1, times lambda_k 0.001
    assert update_k(0.2, 0.4, 0.1, gamma=0.5, lambda_k=0.001) == pytest.approx(0.2001)
    assert update_k(0.0, 0.1, 0.9, gamma=0.5, lambda_k=0.1) == 0.0  # clipped at 0
    assert update_k(1.0, 0.9, 0.0, gamma=1.0, lambda_k=0.5) == 1.0  # clipped at 1
    k = update_k(torch.tensor(0.2), torch.tensor(0.4), torch.tensor(0.1), 0.5, 0.001)
    assert isinstance(k, torch.Tensor) and k.item() == pytest.approx(0.2001)


def test_k_t_is_never_differentiated():
    L_x = torch.tensor(0.5, requires_grad=True)
    L_fake = torch.tensor(0.3, requires_grad=True)
    k_t = torch.tensor(0.25, requires_grad=True)
    discriminator_loss(L_x, L_fake, k_t).backward()
    assert k_t.grad is None
    assert L_fake.grad.item() == pytest.approx(-0.25)
    assert L_x.grad.item() == pytest.approx(1.0)
    k_next = update_k(k_t, L_x, L_fake, 0.5, 0.001)
    assert not k_next.requires_grad


def test_M_global_and_balance():
    assert balance(0.4, 0.1, 0.5) == pytest.approx(0.1)
    assert M_global(0.4, 0.1, 0.5) == pytest.approx(0.5)
    assert M_global(0.4, 0.3, 0.5) == pytest.approx(0.5)  # |0.2 - 0.3| = 0.1
    t = M_global(torch.tensor(0.4), torch.tensor(0.3), 0.5)
    assert t.item() == pytest.approx(0.5)


def test_controller_drives_the_ratio_to_gamma():
    """A toy plant: L(G) rises with k (D pushes fakes away). The controller settles k so that
    L(G) = gamma * L(x), which is what 'equilibrium' means in the paper."""
    gamma, L_x, k = 0.5, 0.2, 0.0
    for _ in range(20_000):
        L_G = 0.02 + 0.3 * k
        k = update_k(k, L_x, L_G, gamma, lambda_k=0.01)
    assert 0 < k < 1
    assert L_G / L_x == pytest.approx(gamma, rel=1e-3)


@pytest.mark.parametrize("gamma", [0.0, -0.1, 1.01, 2])
def test_gamma_outside_unit_interval_is_rejected(gamma):
    with pytest.raises(ConfigError, match=r"gamma must be in \(0, 1\]"):
        TrainConfig(gamma=gamma)
