"""Paper Figure 1: the auto-encoding discriminator D and the generator G.

No batch norm, no dropout, no transposed convolutions. Filters grow linearly in the encoder
(n, 2n, 3n, ...); the decoder and the generator keep n at every scale. Both ends meet at 8x8.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from ..config import ModelConfig
from .elu import ELU


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1)


def glorot_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every convolution and linear layer.

    The paper does not name an initialisation; its TensorFlow-era implementations get this
    one from their layers' defaults. PyTorch's default (uniform in 1/sqrt(fan_in), biases
    included) shrinks the signal at each of G's ELU layers until the biases dominate: an
    untrained G at 32x32, n=32 then varies with z by 0.004 per pixel against 0.12 here, so
    it starts on one image and BEGAN has no diversity to keep (measured: every gamma
    collapsed). `tests/test_model.py` checks the spread.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ScaleBlock(nn.Module):
    """`convs_per_scale` conv3x3 + ELU at one resolution.

    With the paper's vanishing residual, the output is `c * x + (1 - c) * convs(x)`; the
    trainer lowers the carry c from 1 to 0 early in training, after which the block is plain.
    """

    def __init__(self, c_in: int, c_out: int, convs: int, residual: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [conv3x3(c_in if i == 0 else c_out, c_out), ELU()]
        self.convs = nn.Sequential(*layers)
        self.residual = residual
        self.carry = 0.0

    def forward(self, x: Tensor, extra: Tensor | None = None) -> Tensor:
        out = self.convs(x if extra is None else torch.cat([x, extra], dim=1))
        if self.residual and self.carry > 0.0:
            out = self.carry * x + (1.0 - self.carry) * out
        return out


class Encoder(nn.Module):
    """Image (B, C, R, R) -> embedding h (B, Nh). Ends at 8x8 whatever R is."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n, S = cfg.n, cfg.num_scales
        self.resolution = cfg.resolution
        self.stem = nn.Sequential(conv3x3(cfg.channels, n), ELU())
        self.blocks = nn.ModuleList()
        self.down = nn.ModuleList()
        for i in range(S):
            ch = (i + 1) * n
            self.blocks.append(ScaleBlock(ch, ch, cfg.convs_per_scale, cfg.vanishing_residual))
            if i < S - 1:  # stride-2 sub-sampling to the next scale's filters
                self.down.append(nn.Sequential(conv3x3(ch, ch + n, stride=2), ELU()))
        self.bottom_channels = S * n
        self.fc = nn.Linear(self.bottom_channels * 8 * 8, cfg.Nh)  # no non-linearity

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, n, R, R)
        for i, block in enumerate(self.blocks):
            x = block(x)  # (B, (i+1)n, R/2^i, R/2^i)
            if i < len(self.down):
                x = self.down[i](x)  # (B, (i+2)n, R/2^(i+1), R/2^(i+1))
        if x.shape[-1] != 8:  # the input was not resolution x resolution
            raise ValueError(
                f"D's encoder ends at {x.shape[-1]}x{x.shape[-1]}, not 8x8: it takes "
                f"{self.resolution}x{self.resolution} images, and was given others."
            )
        return self.fc(x.flatten(1))  # (B, Nh)


class Decoder(nn.Module):
    """Embedding (B, N_in) -> image (B, C, R, R). The generator has this same architecture."""

    def __init__(self, cfg: ModelConfig, N_in: int) -> None:
        super().__init__()
        n, S = cfg.n, cfg.num_scales
        self.n, self.skip = n, cfg.skip
        self.fc = nn.Linear(N_in, 8 * 8 * n)  # no non-linearity
        self.blocks = nn.ModuleList(
            ScaleBlock(
                2 * n if (cfg.skip and i > 0) else n, n, cfg.convs_per_scale, cfg.vanishing_residual
            )
            for i in range(S)
        )
        self.to_image = conv3x3(n, cfg.channels)  # linear output

    def forward(self, h: Tensor) -> Tensor:
        h0 = self.fc(h).view(-1, self.n, 8, 8)  # (B, n, 8, 8)
        x = h0
        for i, block in enumerate(self.blocks):
            # Skip connections: the 8x8 input, up-sampled, joins the input of every later scale.
            extra = None
            if self.skip and i > 0:
                extra = F.interpolate(h0, size=x.shape[-2:], mode="nearest")
            x = block(x, extra)  # (B, n, 8*2^i, 8*2^i)
            if i < len(self.blocks) - 1:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.to_image(x)  # (B, C, R, R)


class Discriminator(nn.Module):
    """D: R^Nx -> R^Nx, an auto-encoder whose reconstruction error is the critic's signal."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg, cfg.Nh)

    def forward(self, v: Tensor) -> Tensor:
        return self.decoder(self.encoder(v))


class Generator(nn.Module):
    """G: z ~ U[-1, 1]^Nz -> image, the decoder's architecture with its own weights."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.Nz = cfg.Nz
        self.decoder = Decoder(cfg, cfg.Nz)

    def forward(self, z: Tensor) -> Tensor:
        return self.decoder(z)


class BEGAN(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="began-studio",
    tags=["began", "gan", "image-generation", "pytorch"],
):
    """G and D together, and G_ema where training kept one (ema.py): the unit that is saved,
    loaded and pushed to the Hub.

    `BEGAN.from_pretrained("pretrained/x")` and `BEGAN.from_pretrained("user/repo")` take one
    code path; prefer `began_core.checkpoints.hub.load` for clear errors when offline or mismatched.
    `generator` names the network `G` holds ("G", or "G_ema" in a view from `using`), and
    `recommended` the one a checkpoint names for use (its training.json), else "G".
    What loading found is recorded here too, declared rather than bolted on by the loader:
    `has_discriminator` is False for a generator-only export (D is then untrained), and
    `folder` is where the checkpoint was read from (the Hub cache's snapshot for a repo id),
    None for a model built in memory.
    """

    generator: str = "G"
    recommended: str = "G"
    has_discriminator: bool = True
    folder: Path | None = None

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if isinstance(config, dict):  # a config.json read by hand
            config = ModelConfig(**config)
        self.config = config
        self.G = Generator(config)
        self.D = Discriminator(config)
        self.G_ema: Generator | None = None  # add_G_ema gives it one
        glorot_init(self)

    def add_G_ema(self) -> Generator:
        """Give the model a G_ema, a copy of G as it is now that no optimizer updates."""
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        return self.G_ema

    def using(self, G: nn.Module, name: str) -> BEGAN:
        """A view of this model that generates with `G` (an average of this G, say) and is
        called `name`; it shares D, G_ema and all weights with this model."""
        view = copy.copy(self)
        view._modules = {**self._modules, "G": G}
        view.generator = name
        return view

    def sample_z(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> Tensor:
        """z ~ Uniform[-1, 1]^Nz, shape (batch, Nz)."""
        device = device or next(self.parameters()).device
        return torch.rand(batch, self.config.Nz, generator=generator, device=device) * 2 - 1

    def set_carry(self, c: float) -> None:
        """Vanishing-residual carry for every block (no effect unless the option is on)."""
        for m in self.modules():
            if isinstance(m, ScaleBlock):
                m.carry = float(c)

    @torch.inference_mode()
    def generate(self, z: Tensor) -> Tensor:
        """G(z) as float images in [-1, 1] (clamped), for display."""
        return self.G(z).clamp(-1, 1)
