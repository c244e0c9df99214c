"""Serving the explorer (`app.explorer`): alone, as a Hugging Face Space runs it
(`python app.py`), on a thread of the dashboard's process, or mounted under a path of
another ASGI server. Host and port follow Gradio's variables; 127.0.0.1 unless told.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import torch
from starlette.routing import Mount

from app.explorer import CSS, build_explorer
from began_core.data import images


def launch_options() -> dict[str, Any]:
    """Host and port from Gradio's usual variables: GRADIO_SERVER_NAME (default 127.0.0.1,
    only this machine; a Space sets 0.0.0.0) and GRADIO_SERVER_PORT (default: the first free
    port from 7860)."""
    port = os.environ.get("GRADIO_SERVER_PORT", "").strip()
    return {
        "server_name": os.environ.get("GRADIO_SERVER_NAME", "").strip() or "127.0.0.1",
        "server_port": int(port) if port else None,
        "max_file_size": images.MAX_BYTES,
        "css": CSS,
    }


def use_threads() -> int:
    """Intra-op threads for torch in a process that serves the explorer: 1 unless
    BEGAN_EXPLORER_THREADS says otherwise. On a small CPU shared with a training run, two
    threads made G 20 to 50 times slower than one (they wait on each other while the other
    core is busy); one thread renders a 64x64, n=64 image in about 10 ms."""
    try:
        threads = max(1, int(os.environ.get("BEGAN_EXPLORER_THREADS", "1")))
    except ValueError:
        threads = 1
    torch.set_num_threads(threads)
    return threads


_server_lock = threading.Lock()
_server_url: str | None = None
EXPLORER_PATH = "/explorer"  # not /explore: that is the dashboard's own Explore page
_mounted_at: str | None = None


def mounted_path() -> str | None:
    """Where `mountable` put the explorer on this process's server ('/explorer/'), or None
    when it runs on no server of this process's (the dashboard started the classic way)."""
    return _mounted_at


def serve_in_background(port: int | None = None, host: str | None = None) -> str:
    """Start the explorer on a thread of this process, once; return its URL.

    For the dashboard's Explore tab: call it on every page run (later calls return the same
    URL at once) and show the URL in an iframe. The server lives as long as the process."""
    global _server_url
    with _server_lock:
        if _server_url is None:
            options = launch_options()
            if host:
                options["server_name"] = host
            if port:
                options["server_port"] = port
            use_threads()
            demo = build_explorer(heading=False)  # the Explore page has its own
            demo.queue(max_size=64).launch(prevent_thread_lock=True, quiet=True, **options)
            _server_url = demo.local_url
        return _server_url


@dataclass(frozen=True)
class Mounted:
    """The explorer ready to mount in another ASGI server on the same port: `route` serves
    it under a path, and `lifespan` (which starts Gradio's queue) must run in the parent's."""

    route: Mount
    lifespan: Callable[[Any], contextlib.AbstractAsyncContextManager[None]]


def mountable(path: str = EXPLORER_PATH) -> Mounted:
    """The explorer as a Starlette route for a server of its own, e.g. the dashboard's
    `st.App` (one port, same origin: works behind a proxy and in a Docker Space), as
    app/main.py does:

        explorer = mountable("/explorer")
        app = st.App("main.py", routes=[explorer.route], lifespan=explorer.lifespan)

    and the Explore page shows `st.iframe(mounted_path())`."""
    from fastapi import FastAPI

    global _mounted_at
    use_threads()
    sub = gr.mount_gradio_app(
        FastAPI(),
        build_explorer(heading=False),  # the Explore page has its own title
        path="/",
        css=CSS,
        max_file_size=images.MAX_BYTES,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_parent: Any) -> AsyncIterator[None]:
        async with sub.router.lifespan_context(sub):
            yield

    _mounted_at = (path.rstrip("/") or "") + "/"
    return Mounted(Mount(path.rstrip("/") or "/", app=sub), lifespan)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    use_threads()
    build_explorer().queue(max_size=64).launch(**launch_options())


if __name__ == "__main__":
    main()
