"""The README.md model card written beside every checkpoint's weights."""

from __future__ import annotations

import json
from typing import Any

from .config import RunConfig

_METRIC_KEYS = ("k_t", "L_x", "L_G", "M_global", "lr")


def model_card(
    config: RunConfig,
    *,
    step: int,
    wall_time: float,
    hardware: str,
    metrics: dict[str, Any] | None = None,
    command: str | None = None,
    extra: str = "",
) -> str:
    m, t, d = config.model, config.train, config.data
    shown = {k: metrics[k] for k in _METRIC_KEYS if metrics and k in metrics}
    metric_lines = (
        "\n".join(f"| {k} | {v:.4g} |" for k, v in shown.items()) or "| (none logged yet) | |"
    )
    reproduce = command or (
        f"python -m began_core train --data {d.source} --out runs/reproduce --steps {t.steps} "
        f"--resolution {m.resolution} --channels {m.channels} --filters {m.n} "
        f"--batch-size {t.batch_size} --gamma {t.gamma} --lambda-k {t.lambda_k} --lr {t.lr} "
        f"--seed {t.seed}"
    )
    return f"""---
library_name: began-studio
tags: [began, gan, image-generation, pytorch]
license: mit
---

# BEGAN, {m.resolution}x{m.resolution}, gamma {t.gamma}

A Boundary Equilibrium GAN (Berthelot, Schumm and Metz, 2017): a generator G and an
auto-encoding discriminator D, kept in balance by the controller k_t at diversity ratio gamma.

```python
from began_core.hub import load
model = load("THIS_FOLDER_OR_REPO_ID")
images = model.generate(model.sample_z(16))  # (16, {m.channels}, {m.resolution}, {m.resolution}) in [-1, 1]
```

## Training

| setting | value |
| --- | --- |
| data | `{d.source}` |
| steps | {step} of {t.steps} |
| wall time | {wall_time / 60:.1f} min |
| hardware | {hardware} |
| gamma / lambda_k / k_0 | {t.gamma} / {t.lambda_k} / {t.k_0} |
| batch size / learning rate | {t.batch_size} / {t.lr} (halved when M_global stalls over {t.lr_window} steps, floor {t.lr_min}) |
| seed | {t.seed} |

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
