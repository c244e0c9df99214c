import pytest
import torch
from torch import nn

from began_core.config import ConfigError, ModelConfig
from began_core.nn.model import BEGAN, ScaleBlock


@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_discriminator_shapes(resolution, channels):
    model = BEGAN(ModelConfig(resolution=resolution, channels=channels, n=4, Nh=8, Nz=8))
    z = model.sample_z(2)
    x = model.G(z)
    assert x.shape == (2, channels, resolution, resolution)
    assert model.D(x).shape == x.shape
    assert model.D.encoder(x).shape == (2, 8)


@pytest.mark.parametrize("resolution", [32, 64, 128, 256])
def test_encoder_ends_at_8x8_with_linearly_growing_filters(resolution):
    cfg = ModelConfig(resolution=resolution, n=4)
    enc = BEGAN(cfg).D.encoder
    seen = []
    enc.fc.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    feature_maps = []
    for block in enc.blocks:
        block.register_forward_hook(lambda m, a, out: feature_maps.append(tuple(out.shape[1:])))
    enc(torch.zeros(1, 3, resolution, resolution))
    S = cfg.num_scales
    assert {32: 3, 64: 4, 128: 5, 256: 6}[resolution] == S
    assert feature_maps == [((i + 1) * 4, resolution >> i, resolution >> i) for i in range(S)]
    assert feature_maps[-1][1:] == (8, 8)
    assert seen[0][1] == S * 4 * 8 * 8


def test_paper_architecture_has_no_batchnorm_dropout_or_transposed_convs():
    model = BEGAN(ModelConfig(n=4))
    banned = (nn.BatchNorm2d, nn.Dropout, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.LayerNorm)
    assert not [m for m in model.modules() if isinstance(m, banned)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.kernel_size == (3, 3) for m in convs)
    # Output layers are linear: the last module of the decoders is a conv, not an activation.
    assert isinstance(model.G.decoder.to_image, nn.Conv2d)


def test_generator_and_decoder_share_architecture_not_weights():
    model = BEGAN(ModelConfig(n=4, Nh=16, Nz=16))
    g = {k: v.shape for k, v in model.G.decoder.state_dict().items()}
    d = {k: v.shape for k, v in model.D.decoder.state_dict().items()}
    assert g == d
    assert model.G.decoder.fc.weight.data_ptr() != model.D.decoder.fc.weight.data_ptr()


def test_skip_connections_widen_later_scales():
    plain = BEGAN(ModelConfig(n=4))
    skip = BEGAN(ModelConfig(n=4, skip=True))
    assert plain.G.decoder.blocks[1].convs[0].in_channels == 4
    assert skip.G.decoder.blocks[0].convs[0].in_channels == 4
    assert skip.G.decoder.blocks[1].convs[0].in_channels == 8
    assert skip.G(skip.sample_z(2)).shape == (2, 3, 32, 32)


def test_vanishing_residual_carry_one_is_identity_and_zero_is_plain():
    block = ScaleBlock(4, 4, convs=2, residual=True)
    x = torch.randn(2, 4, 8, 8)
    block.carry = 1.0
    assert torch.equal(block(x), x)
    block.carry = 0.0
    assert torch.allclose(block(x), block.convs(x))


@pytest.mark.parametrize("resolution", [32, 64])
def test_an_untrained_generator_already_varies_with_z(resolution):
    # With PyTorch's default initialisation G's output hardly depends on z (0.004 per pixel at
    # 32x32, n=32): training then starts on one image and every gamma collapsed. Glorot
    # weights with zero biases keep z's variation as large as the image's own.
    torch.manual_seed(0)
    G = BEGAN(ModelConfig(resolution=resolution, n=32)).G
    with torch.no_grad():
        x = G(torch.rand(128, G.Nz) * 2 - 1)
    across_z = x.std(0).mean()
    within_image = x.flatten(1).std(1).mean()
    assert across_z > 0.5 * within_image
    for m in G.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert not m.bias.any()


def test_sample_z_is_uniform_in_the_cube():
    model = BEGAN(ModelConfig(n=4))
    z = model.sample_z(4096, generator=torch.Generator().manual_seed(0))
    assert z.shape == (4096, 64)
    assert z.min() >= -1 and z.max() <= 1
    assert abs(z.mean().item()) < 0.02 and abs(z.var().item() - 1 / 3) < 0.01


@pytest.mark.parametrize("resolution", [16, 48, 100, 512])
def test_unsupported_resolution_is_a_clear_error(resolution):
    with pytest.raises(ConfigError, match="32, 64, 128, 256"):
        ModelConfig(resolution=resolution)


def test_bad_channels_and_sizes():
    with pytest.raises(ConfigError, match="channels"):
        ModelConfig(channels=2)
    with pytest.raises(ConfigError, match="n must be a positive integer"):
        ModelConfig(n=0)
