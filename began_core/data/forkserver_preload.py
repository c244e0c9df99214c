"""Imported by the decode pool's forkserver as it starts (and by nothing else): a SIGTERM sent
to the whole process group then leaves the forkserver alive. Had it died, the pool would read
every worker's status pipe as closed, count them all as dead, and start new ones behind the
parent's back (a traceback, or a pool that never ends). The forkserver still exits when its
parent does; its workers inherit the ignore until the pool's initializer sets their handler."""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
