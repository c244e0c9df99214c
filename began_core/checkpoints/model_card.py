"""What a checkpoint says about itself: the README.md model card for people, and the same facts
as data (`training_record`, saved as training.json by `hub.save_pretrained`)."""

from __future__ import annotations

import json
from typing import Any

from ..config import RunConfig
from ..flags import train_command

_METRIC_KEYS = ("k_t", "L_x", "L_G", "M_global", "lr")


def training_record(
    config: RunConfig,
    *,
    step: int,
    wall_time: float,
    hardware: str,
    metrics: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    generator: str = "G",
) -> dict[str, Any]:
    """The facts of a checkpoint as JSON-ready data: run configuration, step, wall time (s),
    hardware, the last logged training metrics, the run's meta (command, dataset) and the
    generator to use ("G", or "G_ema" where the checkpoint has one and it scored better)."""
    return {
        "step": int(step),
        "generator": generator,
        "wall_time_s": round(float(wall_time), 1),
        "hardware": hardware,
        "metrics": {k: float(metrics[k]) for k in _METRIC_KEYS if metrics and k in metrics},
        "run": {**config.to_dict(), "meta": dict(meta or {})},
    }


def model_card(
    config: RunConfig,
    *,
    step: int,
    wall_time: float,
    hardware: str,
    metrics: dict[str, Any] | None = None,
    command: str | None = None,
    dataset: str | None = None,
    evaluation: dict[str, Any] | None = None,
    quality: str = "",
    samples: str | None = None,
    extra: str = "",
    generator: str = "G",
    ema_kimg: float | None = None,
) -> str:
    """The README.md of a checkpoint. `evaluation` is an `evaluate` result for these weights,
    `quality` its markdown table (evaluation/report.py) with earlier checkpoints of the run,
    `samples` an image file beside it."""
    m, t, d = config.model, config.train, config.data
    shown = {k: metrics[k] for k in _METRIC_KEYS if metrics and k in metrics}
    metric_lines = (
        "\n".join(f"| {k} | {v:.4g} |" for k, v in shown.items()) or "| (none logged yet) | |"
    )

    reproduce = command or train_command(config)
    which = "G" if generator == "G" else f"G_ema (half-life {ema_kimg or t.ema_kimg:g} kimg)"
    sections = [f"\n![samples of {which} from fixed z (seed 0)]({samples})\n"] if samples else []
    if evaluation is not None:
        ev = evaluation
        sections.append(f"""
## Quality (`python -m began_core evaluate`, offline)

{ev["n"]} generated images against {ev["n"]} real ones of `{ev["data"]}`, seed {ev["seed"]}; the
classifier is the project's own ({ev["classifier"]}, held-out accuracy
{ev["classifier_test_accuracy"]}). "Real images" is a second, disjoint real set scored as if
it were generated: what a perfect generator would get at this sample size. Classes generated:
{ev["classes_generated"]} of {ev["classes_in_data"]}. {ev["inception_note"]}

{quality}
""")
    return f"""---
library_name: began-studio
tags: [began, gan, image-generation, pytorch]
license: mit
---

# BEGAN, {m.resolution}x{m.resolution}, gamma {t.gamma}

A Boundary Equilibrium GAN (Berthelot, Schumm and Metz, 2017): a generator G and an
auto-encoding discriminator D, kept in balance by the controller k_t at diversity ratio gamma.

```python
from began_core.checkpoints.hub import load

model = load("THIS_FOLDER_OR_REPO_ID")
images = model.generate(model.sample_z(16))  # (16, {m.channels}, {m.resolution}, {m.resolution}) in [-1, 1]
```
{_generator_lines(generator, which)}
{"".join(sections)}
## Training

| setting | value |
| --- | --- |
| data | `{d.source}`{" with random horizontal flips" if d.hflip else ""} |
| dataset and licence | {dataset or "see the data source"} |
| steps | {step} of {t.steps} |
| wall time | {wall_time / 60:.1f} min |
| hardware | {hardware} |
| gamma / lambda_k / k_0 / eta | {t.gamma} / {t.lambda_k} / {t.k_0} / {t.eta} |
| batch size / learning rate | {t.batch_size} / {t.lr} (halved when M_global stalls over {t.lr_window} steps, floor {t.lr_min}) |
| seed | {t.seed} |
| generator of the samples and metrics | {which} |

Model configuration:

```json
{json.dumps(config.to_dict()["model"], indent=2)}
```

## Last logged metrics (mean over the last logging interval)

| metric | value |
| --- | --- |
{metric_lines}

## Reproduce

```bash
{reproduce}
```
{extra}"""


def _generator_lines(generator: str, which: str) -> str:
    if generator == "G":
        return ""
    return f"""
This checkpoint holds G and {which}, a moving average of G's weights kept during training,
and names G_ema as the generator to use: `began_core.checkpoints.generators.select(model, "auto").generate(z)`
(the explorer, `sample`, `evaluate` do so); `model.generate` alone uses G.
"""
