"""The run directory that trainer and dashboard share, launching runs, one writer per run, fault injection."""
