"""Imported by the decode pool's forkserver as it starts (and by nothing else): it blocks
SIGTERM, so a SIGTERM sent to the whole process group leaves the forkserver alive. Had it died,
the pool would read every worker's status pipe as closed, count them all as dead, and start new
ones behind the parent's back (a traceback, or a pool that never ends). The forkserver still
exits when its parent does.

Its workers inherit the blocked mask, and so do the threads they start (numpy's BLAS pool): a
SIGTERM waits, pending, until the pool's initializer reads it in a thread of its own
(decoding._worker_signals). A Python-level handler was not enough: the kernel may hand the signal
to any thread that does not block it, and the main thread, waiting on a lock, never ran it."""

import signal

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
