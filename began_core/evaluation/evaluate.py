"""`python -m began_core evaluate CHECKPOINT_OR_RUN`: offline quality metrics of a generator.

Generated images (fixed seeds) are compared with real images of the dataset the model was
trained on, with metrics that need no downloaded weights (see `metrics.py`):

- SWD: multi-scale sliced Wasserstein distance of Laplacian-pyramid patches (x1e3, lower better);
- classifier FD: Frechet distance in the feature space of the project's own classifier for
  that dataset and resolution (`classifier.py`, `began_core/assets/classifiers/`), lower better;
- coverage and KL: share of the data's classes the classifier finds among the generated
  images, and KL(p_gen || p_data) of the class histograms (mode dropping; gamma's effect);
- diversity: mean pairwise feature distance of the generated images over that of real ones
  (1.0 = as diverse as the data); pixel diversity: the same on 16x16 pixels.

Every figure is also given for a second, disjoint set of real images scored as if it were
generated (`reference`): what a perfect generator would get at this sample size. Both real sets
and the generated set have the same size n (capped at half the dataset). Inception FID needs
weights this project never downloads: it is computed only from a local TorchScript copy named
by $BEGAN_INCEPTION_WEIGHTS, and is otherwise null with a note that says so.
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import ModelConfig

INCEPTION_ENV = "BEGAN_INCEPTION_WEIGHTS"
INCEPTION_FILE = (
    "inception-2015-12-05.pt"  # the TorchScript Inception-v3 of StyleGAN2-ADA / clean-fid
)
DEFAULT_N = 1024
MIN_N = 16
DEFAULT_DATA = "fluent-faces"
METRIC_KEYS = ("swd", "classifier_fd", "coverage", "kl", "diversity", "pixel_diversity")


def resolve(checkpoint_or_run: str | os.PathLike) -> tuple[str | Path, dict[str, Any] | None]:
    """(checkpoint folder or Hub id, the run's data config or None). A run directory gives its
    latest checkpoint; a checkpoint inside a run's checkpoints/ gives that run's data config."""
    from ..runs.run_dir import find_checkpoint

    if not Path(checkpoint_or_run).is_dir():
        return os.fspath(checkpoint_or_run), None  # hub.load says what is wrong with it
    checkpoint, run = find_checkpoint(checkpoint_or_run)
    return checkpoint, run.read_config_dict().get("data") if run is not None else None


def _data_of(checkpoint: str | Path) -> dict[str, Any] | None:
    """The data config a local checkpoint's training.json names (exported checkpoints)."""
    from ..checkpoints.hub import read_training

    record = read_training(checkpoint) if Path(str(checkpoint)).is_dir() else None
    data = (record or {}).get("run", {}).get("data")
    return data if isinstance(data, dict) and data.get("source") else None


def inception_fid(real, fake, device: str = "cpu") -> tuple[float | None, str]:
    """(FID, note) from a local TorchScript Inception-v3 named by $BEGAN_INCEPTION_WEIGHTS
    (called as `net(images_0_255, return_features=True)` -> (N, 2048), the convention of
    StyleGAN2-ADA's and clean-fid's inception-2015-12-05.pt); (None, why) without one."""
    import torch

    from .metrics import frechet_distance

    path = os.environ.get(INCEPTION_ENV)
    if not path:
        return None, (
            "Inception FID not computed: the Inception-v3 weights are not available offline "
            f"and this project never downloads them. To compute it, set {INCEPTION_ENV} to a "
            f"local TorchScript copy of {INCEPTION_FILE}. The offline metrics above do not "
            "need it."
        )
    try:
        net = torch.jit.load(path, map_location=device).eval()
        feats = []
        with torch.inference_mode():
            for x in (real, fake):
                parts = []
                for chunk in x.split(64):
                    chunk = chunk.add(1).mul(127.5).round().clamp(0, 255)
                    if chunk.shape[1] == 1:
                        chunk = chunk.repeat(1, 3, 1, 1)
                    f = net(chunk.to(device), return_features=True)
                    parts.append(f.reshape(len(chunk), -1).double().cpu())
                feats.append(torch.cat(parts))
        fid = frechet_distance(*feats)
    except Exception as e:  # any failure of a user-supplied network is reported, not raised
        why = f"{type(e).__name__}: {e}"
        return None, f"Inception FID not computed: {path} did not work as Inception ({why})"
    return fid, (
        f"Inception FID from {Path(path).name}, {len(real)} real vs {len(fake)} generated "
        "images; with few images FID is biased upwards (papers use 50,000)."
    )


def evaluate(
    checkpoint_or_run: str | os.PathLike,
    *,
    n: int = DEFAULT_N,
    data: str | None = None,
    device: str = "cpu",
    seed: int = 0,
    classifier: str | os.PathLike | None = None,
    resolution: int | None = None,
    generator: str = "auto",
) -> dict[str, Any]:
    """Offline quality metrics of a checkpoint folder, a run directory (its latest checkpoint)
    or a Hub id, against the real images of its dataset; see the module docstring.

    `generator` is "G", "G_ema", "G_ema:KIMG" (an average a run kept with --ema-sweep) or
    "auto": the one the checkpoint names (training.json), else G.

    `resolution` scores at another size than the model's: its images are resized as the
    built-in datasets are (8-bit, LANCZOS down, BICUBIC up), the real ones opened at that
    size and the classifier for that size used. So a 64x64 generator and a 32x32 one can be
    compared by one classifier.

    The dataset is `data` if given, else the run's `config.json`, else the checkpoint's
    training.json, else fluent-faces. `n` generated images (z from `seed`) are compared with n real
    ones; n is capped at half the dataset so that a disjoint real reference set of the same
    size exists. Raises ConfigError, DatasetError, CheckpointError or ClassifierError (all
    ValueErrors) with a message that says what to do.
    """
    import numpy as np
    import torch

    from ..checkpoints import generators
    from ..checkpoints.hub import CheckpointError, load
    from ..config import ConfigError
    from ..data.sources import open_dataset
    from . import metrics
    from .classifier import ClassifierError, find_classifier, load_classifier

    start = time.time()
    if not isinstance(n, int) or n < MIN_N:
        raise ConfigError(f"n must be an integer of at least {MIN_N}, got {n!r}.")
    checkpoint, run_data = resolve(checkpoint_or_run)
    model = generators.select(load(checkpoint, device=device), generator, checkpoint)
    cfg = model.config
    open_kw: dict[str, Any] = {}
    exported = _data_of(checkpoint) if run_data is None else None
    if data is not None:
        source, data_from = str(data), "--data"
    elif run_data is not None or exported is not None:
        known: dict[str, Any] = run_data or exported or {}
        source = str(known.get("source", DEFAULT_DATA))
        data_from = "run config" if run_data is not None else "training.json"
        open_kw = {k: known.get(k) for k in ("celeba_crop", "max_images")}
    else:
        source, data_from = DEFAULT_DATA, "default: no run config or training.json names one"
    size = cfg.resolution if resolution is None else int(resolution)
    if size < 8:
        raise ConfigError(f"resolution must be at least 8, got {resolution!r}.")
    ds = open_dataset(source, size, cfg.channels, **open_kw)

    try:
        clf_path = Path(classifier) if classifier else find_classifier(source, size, cfg.channels)
    except ClassifierError as e:
        if data_from.startswith("default"):
            raise ClassifierError(
                f"{e} (the dataset defaulted to {DEFAULT_DATA}: name the model's with --data)"
            ) from None
        raise
    clf = load_classifier(clf_path, device=device)
    if ds.class_names is not None and list(ds.class_names) != list(clf.config.class_names):
        raise ClassifierError(
            f"the classifier {clf_path} was trained on other classes than {source!r} has."
        )

    # Equal-sized sets: n real, n generated and n other real images as the reference.
    n_eff = min(n, len(ds) // 2)
    if n_eff < MIN_N:
        raise ConfigError(f"{source!r} has {len(ds)} images; at least {2 * MIN_N} are needed.")
    perm = np.random.default_rng(seed).permutation(len(ds))
    real, ref = ds.batch(perm[:n_eff]), ds.batch(perm[n_eff : 2 * n_eff])
    z = model.sample_z(
        n_eff, generator=torch.Generator().manual_seed(seed), device=torch.device("cpu")
    )
    fake = torch.cat([model.generate(c.to(device)).float().cpu() for c in z.split(256)])
    if not torch.isfinite(fake).all():
        raise CheckpointError(
            f"{checkpoint} generates non-finite images (NaN or inf): its weights are broken."
        )
    if size != cfg.resolution:
        from ..data.builtin_data import resize_stack
        from ..data.images import to_uint8

        u8 = np.ascontiguousarray(to_uint8(fake).transpose(0, 3, 1, 2))  # as the data are kept
        fake = torch.from_numpy(resize_stack(u8, size)).float().div(127.5).sub(1.0)

    f_real, logits_real = clf.embed(real)
    labels = ds.labels if ds.labels is not None else logits_real.argmax(1).numpy()
    K = clf.config.num_classes

    def score(x: torch.Tensor) -> dict[str, Any]:
        f, logits = clf.embed(x)
        swd = metrics.sliced_wasserstein(real, x, seed=seed)
        classes = metrics.class_coverage(logits.argmax(1), labels, K)
        return {
            "swd": swd["mean"],
            "swd_levels": swd["levels"],
            "classifier_fd": metrics.frechet_distance(f_real, f),
            "coverage": classes["coverage"],
            "kl": classes["kl"],
            "classes_generated": classes["classes_generated"],
            "classes_in_data": classes["classes_in_data"],
            "diversity": metrics.diversity(f, reference=f_real),
            "pixel_diversity": metrics.diversity(x, reference=real),
        }

    generated, reference = score(fake), score(ref)
    fid, note = inception_fid(real, fake, device)
    step = re.search(r"step_(\d+)", Path(str(checkpoint)).name)
    return {
        "checkpoint": str(checkpoint),
        "step": int(step.group(1)) if step else None,
        "generator": model.generator,
        "data": source,
        "data_from": data_from,
        "resolution": size,
        "model_resolution": cfg.resolution,
        "channels": cfg.channels,
        "n": n_eff,
        "n_requested": n,
        "seed": seed,
        "classifier": str(clf_path),
        "classifier_test_accuracy": clf.config.info.get("test_accuracy"),
        **generated,
        "reference": reference,
        "inception_fid": fid,
        "inception_note": note,
        "seconds": round(time.time() - start, 1),
    }


def untrained_baseline(
    config: ModelConfig, *, data: str, n: int = DEFAULT_N, seed: int = 0
) -> dict[str, Any]:
    """`evaluate` of an untrained G of this architecture, its weights drawn right after
    torch.manual_seed(`seed`) (the caller's random state is left as it was): the floor a
    trained G must beat (`shortfalls`). The draw matters: its noise scores differently on
    the class metrics from one seed to another."""
    import tempfile

    import torch

    from ..checkpoints.hub import save_pretrained
    from ..nn.model import BEGAN

    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(seed)
        path = save_pretrained(BEGAN(config), Path(tmp) / "untrained")
        return evaluate(path, n=n, data=data)


def shortfalls(result: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """The metrics on which `result` does not beat `baseline` (two `evaluate` results on the
    same data and n): SWD, classifier FD and KL lower, coverage at least as high, and both
    diversities nearer (in ratio) to those of the held-out real images in `result`."""
    real = result["reference"]

    def beats(k: str) -> bool:
        a, b = result[k], baseline[k]
        if k == "coverage":
            return a >= b
        if k in ("diversity", "pixel_diversity"):
            return abs(math.log(a / real[k])) < abs(math.log(b / real[k]))
        return a < b  # SWD, classifier FD, KL

    return [k for k in METRIC_KEYS if not beats(k)]
