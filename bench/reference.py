"""The yardstick: a BEGAN step written the way peer implementations write it.

Plain eager float32, one z shared by both updates, D run separately on real and fake images,
G's loss back-propagated through D's graph, and k_t read back to the host every step
(`.item()`), as in the widely copied PyTorch ports. Same architecture (began_core.nn.model), so
the ratio to it measures the training path, not the network.
"""

from __future__ import annotations

import torch

from began_core.nn.model import BEGAN


class ReferenceStep:
    def __init__(
        self,
        model: BEGAN,
        lr: float = 1e-4,
        gamma: float = 0.5,
        lambda_k: float = 0.001,
        sync: bool = True,
    ):
        """`sync=False` only to count its FLOPs on the meta device, where `.item()` cannot run."""
        self.model, self.gamma, self.lambda_k, self.sync = model, gamma, lambda_k, sync
        self.opt_G = torch.optim.Adam(model.G.parameters(), lr=lr, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(model.D.parameters(), lr=lr, betas=(0.5, 0.999))
        self.k_t = 0.0

    def __call__(self, x: torch.Tensor) -> float:
        G, D = self.model.G, self.model.D
        z = torch.rand(len(x), self.model.config.Nz, device=x.device) * 2 - 1
        fake = G(z)
        d_real = torch.mean(torch.abs(D(x) - x))
        d_fake = torch.mean(torch.abs(D(fake.detach()) - fake.detach()))
        d_loss = d_real - self.k_t * d_fake
        self.opt_D.zero_grad()
        d_loss.backward()
        self.opt_D.step()

        g_loss = torch.mean(torch.abs(D(fake) - fake))
        self.opt_G.zero_grad()
        g_loss.backward()
        self.opt_G.step()

        if not self.sync:
            return self.k_t
        balance = (self.gamma * d_real - g_loss).item()  # host sync, every step
        self.k_t = min(max(self.k_t + self.lambda_k * balance, 0.0), 1.0)
        return self.k_t
