"""The offline metrics on hand-made inputs and on real Fluent faces (fast, CPU)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from began_core.data.sources import open_dataset
from began_core.evaluation.metrics import (
    class_coverage,
    diversity,
    frechet_distance,
    laplacian_pyramid,
    sliced_wasserstein,
    swd_resolutions,
)

N = 96  # images per set: enough for a clear ordering, small enough to be quick


@pytest.fixture(scope="module")
def faces():
    """Two disjoint sets of real 32x32 faces, a blurred and a noise set of the same size."""
    ds = open_dataset("fluent-faces", 32, 3)
    perm = np.random.default_rng(0).permutation(len(ds))
    a, b = ds.batch(perm[:N]), ds.batch(perm[N : 2 * N])
    blurred = F.interpolate(F.avg_pool2d(b, 2), scale_factor=2, mode="bilinear")
    noise = torch.rand(b.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return a, b, blurred, noise


@pytest.fixture(scope="module")
def swd(faces):
    a, b, blurred, noise = faces
    return {
        name: sliced_wasserstein(a, x)
        for name, x in (("self", a), ("real", b), ("blurred", blurred), ("noise", noise))
    }


def test_swd_of_a_set_with_itself_is_zero_and_repeatable(faces, swd):
    a, b, *_ = faces
    assert swd["self"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert set(swd["self"]["levels"]) == {"32", "16"}
    assert sliced_wasserstein(a, b) == swd["real"]  # fixed seed: the same numbers again


def test_swd_orders_real_blurred_noise(swd):
    real, blur, rand = (swd[k]["mean"] for k in ("real", "blurred", "noise"))
    assert 0 < real < blur < rand
    assert blur > 1.5 * real and rand > 2 * blur
    # Blurring removes the finest band: the full-resolution level suffers most.
    assert swd["blurred"]["levels"]["32"] > swd["blurred"]["levels"]["16"]


def test_swd_levels_follow_the_resolution():
    assert swd_resolutions(64) == [64, 32, 16]
    assert swd_resolutions(32) == [32, 16]
    x = torch.rand(8, 1, 64, 64) * 2 - 1
    pyramid = laplacian_pyramid(x, 3)
    assert [p.shape[-1] for p in pyramid] == [64, 32, 16]
    assert set(sliced_wasserstein(x, x.flip(-1))["levels"]) == {"64", "32", "16"}


def test_swd_rejects_bad_input():
    x = torch.zeros(4, 3, 32, 32)
    with pytest.raises(ValueError, match="differ in shape"):
        sliced_wasserstein(x, torch.zeros(4, 1, 32, 32))
    with pytest.raises(ValueError, match="at least 16px"):
        sliced_wasserstein(torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        sliced_wasserstein(x, torch.full_like(x, float("nan")))


def test_frechet_distance_closed_forms():
    f = torch.randn(500, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)
    shift = torch.arange(16, dtype=torch.float64) / 10
    # Same covariance: only the means differ.
    assert frechet_distance(f, f + shift) == pytest.approx(float(shift.square().sum()), rel=1e-9)
    # Scaled by 2: |mu|^2 + tr S + 4 tr S - 2 tr(2 S) = |mu|^2 + tr S.
    expected = float(f.mean(0).square().sum() + torch.cov(f.T).trace())
    assert frechet_distance(f, 2 * f) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(f.numpy(), (2 * f).numpy()) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, 8, generator=g, dtype=torch.float64)
    b = torch.randn(300, 8, generator=g, dtype=torch.float64) @ torch.randn(
        8, 8, generator=g, dtype=torch.float64
    )
    s_a, s_b = np.cov(a.numpy().T), np.cov(b.numpy().T)
    covmean = linalg.sqrtm(s_a @ s_b).real
    mu = a.numpy().mean(0) - b.numpy().mean(0)
    reference = mu @ mu + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean)
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-7)


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(torch.zeros(4, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(4, 3))


def test_class_coverage_on_hand_made_histograms():
    data = np.repeat(np.arange(4), 25)  # uniform over 4 classes
    matched = class_coverage(np.arange(4).repeat(3), data, 4)
    assert matched["coverage"] == 1.0 and matched["kl"] == pytest.approx(0.0, abs=1e-12)
    collapsed = class_coverage(np.zeros(50, dtype=int), data, 4)
    assert collapsed["coverage"] == 0.25 and collapsed["kl"] == pytest.approx(math.log(4))
    half = class_coverage([0, 0, 1, 1], data, 4)
    assert half["coverage"] == 0.5 and half["kl"] == pytest.approx(math.log(2))
    assert half["classes_generated"] == 2 and half["classes_in_data"] == 4
    # Scores (N, K) are reduced to their argmax.
    scores = F.one_hot(torch.tensor([2, 2, 2, 3]), 4).float()
    assert class_coverage(scores, data, 4)["coverage"] == 0.5
    # Uneven data: p_data = (0.75, 0.25); all generated in the rare class costs log 4.
    assert class_coverage([1, 1], [0, 0, 0, 1], 2)["kl"] == pytest.approx(math.log(4))


def test_class_coverage_stays_finite_for_a_class_the_data_lacks():
    r = class_coverage([0, 1, 2], [0, 0, 1, 1], 3)
    assert math.isfinite(r["kl"]) and r["kl"] > 0
    assert r["coverage"] == 1.0 and r["classes_in_data"] == 2
    with pytest.raises(ValueError, match="outside"):
        class_coverage([5], [0, 1], 3)


def test_diversity_drops_when_a_generator_collapses(faces):
    a, b, *_ = faces
    g = torch.Generator().manual_seed(2)
    collapsed = (a[:2].repeat(N // 2, 1, 1, 1) + 0.02 * torch.randn(a.shape, generator=g)).clamp(
        -1, 1
    )
    assert diversity(b, reference=a) == pytest.approx(1.0, abs=0.15)
    assert diversity(collapsed, reference=a) < 0.6
    assert diversity(a[:1].repeat(8, 1, 1, 1) + 0 * a[:8], reference=a) == 0.0
    # On features: a feature set squeezed towards its mean loses diversity proportionally.
    f = torch.randn(200, 32, generator=g)
    squeezed = f.mean(0) + 0.1 * (f - f.mean(0))
    assert diversity(squeezed, reference=f) == pytest.approx(0.1, rel=1e-6)
    assert diversity(f) > 0
