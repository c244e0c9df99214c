"""Quality without downloaded weights: the metrics, the project's classifiers, `evaluate`."""
