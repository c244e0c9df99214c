"""Imported by the decode pool's forkserver as it starts (and by nothing else): a SIGTERM sent
to the whole process group then leaves the forkserver alive. Had it died, the pool would read
every worker's status pipe as closed, count them all as dead, and start new ones behind the
parent's back (a traceback, or a pool that never ends). The forkserver still exits when its
parent does.

Its workers inherit the handler. One that is still starting (before the pool's initializer sets
its own handler) holds no images yet, so a SIGTERM ends it at once: the parent's terminate
must never wait on a worker that ignores it."""

import os
import signal

_FORKSERVER = os.getpid()


def _on_term(_signum: int, _frame: object) -> None:
    if os.getpid() != _FORKSERVER:
        os._exit(1)


signal.signal(signal.SIGTERM, _on_term)
