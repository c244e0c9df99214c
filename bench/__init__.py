"""Benchmarks of began_core and the apps, run from the repository root as modules:
`python -m bench.NAME` (docs/speed.md says what each measures)."""
