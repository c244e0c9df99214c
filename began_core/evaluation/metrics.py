"""Offline quality metrics for generated images: nothing here downloads weights.

Every function takes images as float tensors in [-1, 1], shape (N, C, H, W), or feature
vectors (N, d), and returns plain Python numbers, so results go straight into JSON.

- `sliced_wasserstein`: multi-scale sliced Wasserstein distance between Laplacian-pyramid
  patches of two image sets (Karras et al., "Progressive Growing of GANs", 2018, section 5 and
  their metrics/sliced_wasserstein.py): how far apart the local statistics (texture, edges,
  colour) of the two sets are, level by level. Lower is better; x1e3 as in the paper.
- `frechet_distance`: the Frechet distance between Gaussians fitted to two sets of features
  (the formula of FID, in whatever feature space is given: `classifier.py` supplies one).
- `class_coverage`: share of the data's classes that the generated images fall into, and the
  KL divergence of the generated class histogram from the data's (mode dropping, gamma's effect).
- `diversity`: mean pairwise distance within a set, optionally relative to real data; needs
  no labels and drops when a generator collapses.

Only torch and numpy: no package implements this SWD, and the Frechet distance is a few lines
of float64 linear algebra (checked against scipy's sqrtm in the tests). torchmetrics'
FrechetInceptionDistance(feature=module) would also work, but it runs the images through the
network inside a stateful metric, while `evaluate` needs the same features for the Frechet
distance, the diversity and the class histogram; it would add a dependency for one formula.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SWD_PATCH = 7  # neighbourhood size, 7x7 pixels
SWD_PATCHES_PER_IMAGE = 128
SWD_DIR_REPEATS = 4
SWD_DIRS_PER_REPEAT = 128
SWD_MIN_RESOLUTION = 16  # the pyramid stops at the first level below this
DIVERSITY_POOL = 16  # images given to `diversity` are area-averaged to 16x16 first
DIVERSITY_MAX = 4096  # pairwise distances on at most this many (a fixed subset beyond)

# The 5x5 binomial filter of cv2.pyrDown / pyrUp, as in Karras et al.'s code.
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
_GAUSSIAN = torch.outer(_BINOMIAL, _BINOMIAL) / 256.0


def _check_images(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{name} must be square images (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 images, got {x.shape[0]}")
    x = x.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def _as_tensor(x) -> Tensor:
    return x.detach().cpu() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


def _check_features(f, name: str) -> Tensor:
    f = _as_tensor(f)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"{name} must be features (N, d) with N >= 2, got shape {tuple(f.shape)}")
    f = f.to(torch.float64)
    if not torch.isfinite(f).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return f


# --------------------------------------------------------------------------- SWD


def _blur(x: Tensor, kernel: Tensor) -> Tensor:
    """Depthwise 5x5 convolution with mirror padding (scipy.ndimage 'mirror' = torch 'reflect')."""
    c = x.shape[1]
    weight = kernel.to(x.dtype).expand(c, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), weight, groups=c)


def _pyr_down(x: Tensor) -> Tensor:
    return _blur(x, _GAUSSIAN)[:, :, ::2, ::2]


def _pyr_up(x: Tensor) -> Tensor:
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, _GAUSSIAN * 4.0)


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """[band-pass at full size, ..., band-pass at 1/2^(levels-2), low-pass at 1/2^(levels-1)]."""
    pyramid = [x]
    for _ in range(1, levels):
        pyramid.append(_pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - _pyr_up(pyramid[-1])
    return pyramid


def swd_resolutions(resolution: int) -> list[int]:
    """The pyramid levels SWD reports: 64 -> [64, 32, 16], 32 -> [32, 16]."""
    out, r = [], resolution
    while r >= SWD_MIN_RESOLUTION:
        out.append(r)
        r //= 2
    return out


def _descriptors(x: Tensor, levels: int, generator: torch.Generator) -> list[Tensor]:
    """Per level, SWD_PATCHES_PER_IMAGE random 7x7 patches of every image, each set
    normalised per channel (its own mean and std over all its patches), flattened."""
    per_level: list[list[Tensor]] = [[] for _ in range(levels)]
    for chunk in x.split(256):
        for i, band in enumerate(laplacian_pyramid(chunk, levels)):
            n, s = band.shape[0], band.shape[-1]
            m = n * SWD_PATCHES_PER_IMAGE
            # Top-left corners; patches = band[img, :, y:y+7, x:x+7] without copying the image.
            y = torch.randint(0, s - SWD_PATCH + 1, (m,), generator=generator)
            xx = torch.randint(0, s - SWD_PATCH + 1, (m,), generator=generator)
            img = torch.arange(n).repeat_interleave(SWD_PATCHES_PER_IMAGE)
            windows = band.unfold(2, SWD_PATCH, 1).unfold(3, SWD_PATCH, 1)  # (n, c, s-6, s-6, 7, 7)
            per_level[i].append(windows[img, :, y, xx])  # (m, c, 7, 7)
    out = []
    for parts in per_level:
        d = torch.cat(parts)
        d = d - d.mean(dim=(0, 2, 3), keepdim=True)
        d = d / d.std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-8)
        out.append(d.flatten(1))
    return out


def _sliced_w1(a: Tensor, b: Tensor, generator: torch.Generator) -> float:
    """Mean over SWD_DIR_REPEATS x SWD_DIRS_PER_REPEAT random unit directions of the 1-D
    Wasserstein-1 distance between the projections of a and b (equal sizes)."""
    # (d, M) layout: the projections come out (directions, M) and are sorted along
    # contiguous rows; numpy's vectorised sort is several times faster than torch.sort here.
    a_t, b_t = a.T.contiguous().numpy(), b.T.contiguous().numpy()
    results = []
    for _ in range(SWD_DIR_REPEATS):
        dirs = torch.randn(a.shape[1], SWD_DIRS_PER_REPEAT, generator=generator)
        dirs = (dirs / dirs.norm(dim=0, keepdim=True)).T.contiguous().numpy()
        pa = np.sort(dirs @ a_t, axis=1)
        pb = np.sort(dirs @ b_t, axis=1)
        results.append(float(np.abs(pa - pb).mean(dtype=np.float64)))
    return float(np.mean(results))


def sliced_wasserstein(real: Tensor, fake: Tensor, *, seed: int = 0) -> dict:
    """Multi-scale sliced Wasserstein distance (Karras et al. 2018) between two image sets.

    Each set is decomposed into a Laplacian pyramid down to 16x16 (64px: levels 64, 32, 16);
    from every level 128 random 7x7 patches per image are taken, normalised per channel over
    the set, and the sliced Wasserstein-1 distance between the two patch clouds is averaged
    over 4 x 128 random directions and multiplied by 1e3. Patch positions and directions come
    from `seed`, and both sets get the same patch positions, so SWD(x, x) == 0 exactly and
    repeated calls agree. Sets of different sizes are cut to the smaller (first images kept);
    the distance shrinks as N grows, so compare numbers at equal N only. Because each set is
    normalised by its own statistics (as in the paper), SWD ignores global contrast: the faint
    textures of a blurry, early generator are scaled up and can score like an untrained one.

    Returns {"levels": {"64": ..., "32": ..., "16": ...}, "mean": ...}; lower is better.
    """
    real, fake = _check_images(real, "real"), _check_images(fake, "fake")
    if real.shape[1:] != fake.shape[1:]:
        shapes = f"{tuple(real.shape[1:])} vs {tuple(fake.shape[1:])}"
        raise ValueError(f"real and fake images differ in shape: {shapes}")
    resolution = real.shape[-1]
    if resolution < SWD_MIN_RESOLUTION:
        raise ValueError(f"SWD needs images of at least {SWD_MIN_RESOLUTION}px, got {resolution}")
    n = min(len(real), len(fake))
    real, fake = real[:n], fake[:n]
    resolutions = swd_resolutions(resolution)
    desc_real = _descriptors(real, len(resolutions), torch.Generator().manual_seed(seed))
    desc_fake = _descriptors(fake, len(resolutions), torch.Generator().manual_seed(seed))
    dirs = torch.Generator().manual_seed(seed + 1)
    levels = {
        str(r): _sliced_w1(a, b, dirs) * 1e3
        for r, a, b in zip(resolutions, desc_real, desc_fake, strict=True)
    }
    return {"levels": levels, "mean": float(np.mean(list(levels.values())))}


# --------------------------------------------------------------------------- Frechet


def frechet_distance(feat_real, feat_fake) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) between Gaussians fitted to two
    feature sets (N, d) (FID's formula; the feature space is the caller's choice).

    Computed in float64 as Tr((S_r^(1/2) S_f S_r^(1/2))^(1/2)) from symmetric eigen-decompositions,
    which is real and stable even for singular covariances (N < d), unlike a general sqrtm.
    Covariances are unbiased (N - 1), as in the reference FID code. 0 for identical sets.
    """
    a, b = _check_features(feat_real, "feat_real"), _check_features(feat_fake, "feat_fake")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    w, v = torch.linalg.eigh(s_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    m = root_a @ s_b @ root_a
    tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    fd = (mu_a - mu_b).square().sum() + s_a.trace() + s_b.trace() - 2 * tr_covmean
    return max(float(fd), 0.0)


# --------------------------------------------------------------------------- classes


def class_coverage(pred_fake, labels_real, num_classes: int) -> dict:
    """Class coverage and KL(p_gen || p_data) of predicted classes of generated images.

    `pred_fake`: predicted class per generated image (N,), or scores (N, K) whose argmax is
    taken. `labels_real`: the data's class per real image (the whole dataset, ideally).
    coverage = share of the classes present in the data that at least one generated image
    falls into (1.0 = none dropped). kl = sum_c p_gen(c) log(p_gen(c) / p_data(c)), in nats:
    0 when the generated class histogram matches the data's; log(1 / p_data(c)) when every
    image falls into class c. A class the data lacks counts as half an image there, so the
    KL stays finite. Returns {coverage, kl, classes_generated, classes_in_data}.
    """
    pred, labels = _as_tensor(pred_fake), _as_tensor(labels_real)
    if pred.ndim == 2:
        pred = pred.argmax(1)
    if pred.ndim != 1 or labels.ndim != 1 or len(pred) == 0 or len(labels) == 0:
        raise ValueError("pred_fake and labels_real must be non-empty 1-D class indices")
    pred, labels = pred.long(), labels.long()
    for name, t in (("pred_fake", pred), ("labels_real", labels)):
        if t.min() < 0 or t.max() >= num_classes:
            raise ValueError(f"{name} holds classes outside 0..{num_classes - 1}")
    n_gen = torch.bincount(pred, minlength=num_classes).double()
    n_data = torch.bincount(labels, minlength=num_classes).double()
    present = n_data > 0
    p_gen = n_gen / n_gen.sum()
    p_data = torch.where(present, n_data, torch.full_like(n_data, 0.5))
    p_data = p_data / p_data.sum()
    used = p_gen > 0
    kl = (p_gen[used] * (p_gen[used] / p_data[used]).log()).sum()
    hit = int((used & present).sum())
    return {
        "coverage": hit / int(present.sum()),
        "kl": max(float(kl), 0.0),
        "classes_generated": int(used.sum()),
        "classes_in_data": int(present.sum()),
    }


# --------------------------------------------------------------------------- diversity


def _mean_pairwise_distance(f: Tensor) -> float:
    if len(f) > DIVERSITY_MAX:  # a fixed, evenly spread subset keeps this O(DIVERSITY_MAX^2)
        f = f[torch.linspace(0, len(f) - 1, DIVERSITY_MAX).long()]
    return float(torch.pdist(f.double()).mean())


def _diversity_features(x) -> Tensor:
    if isinstance(x, Tensor) and x.ndim == 4:
        x = _check_images(x, "images")
        if x.shape[-1] > DIVERSITY_POOL:
            x = F.adaptive_avg_pool2d(x, DIVERSITY_POOL)
        return x.flatten(1).double()
    return _check_features(x, "features")


def diversity(x, reference=None) -> float:
    """Label-free diversity: the mean Euclidean distance between all pairs of a set.

    `x` is images (N, C, H, W), area-averaged to 16x16 and flattened (pixel distances), or
    features (N, d) used as given (evaluate passes the project classifier's features).
    With `reference` (real images or features, embedded the same way) the result is
    mean_pairwise(x) / mean_pairwise(reference): 1.0 = as spread out as the data, near 0 =
    collapsed onto a few outputs; values above 1 mean more spread than the data, usually
    artefacts rather than better coverage. Without it, the raw mean distance.
    Beyond 4,096 items a fixed evenly spaced subset is used.
    """
    own = _mean_pairwise_distance(_diversity_features(x))
    if reference is None:
        return own
    ref = _mean_pairwise_distance(_diversity_features(reference))
    if ref <= 0 or not math.isfinite(ref):
        raise ValueError("the reference set has no spread (all items identical)")
    return own / ref
