"""Training: the loop, the step, its fast path, schedule and state, distributed runs, augmentation, held-out images and scoring."""
