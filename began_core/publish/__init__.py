"""Shipping a generator: a run's checkpoint made a documented, evaluated model repository."""
