"""Checkpoints as model repositories: saving and loading (locally and on the Hub), the checks, the model card, export."""
