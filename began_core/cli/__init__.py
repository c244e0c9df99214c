"""The command line, `python -m began_core ...`."""
