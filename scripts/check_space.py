"""Check this repository as a Hugging Face Space starts it, against a local Hub.

1. The README's front matter, as Spaces read it: `sdk: gradio`, `sdk_version` equal to the
   gradio pinned in requirements.txt, `python_version` equal to the interpreter that runs
   the app here, `app_file` present, `models:` naming Hub repo ids (the generators the
   Space lists), `preload_from_hub` (optional) naming only those.
2. A local Hub (tests/hub_server.py) holding the shipped generators under the `models:` ids,
   as `python -m began_core push` puts them.
3. `python app.py` with the environment a Space gives (GRADIO_SERVER_NAME, a Space's 0.0.0.0
   only with `--host 0.0.0.0`: 127.0.0.1 by default, so the check serves nobody else;
   GRADIO_SERVER_PORT, SYSTEM=spaces, SPACE_ID) and HF_ENDPOINT at the local Hub; every API
   endpoint called with gradio_client, a `models:` id among them.
4. The `preload_from_hub` step of a Space build (the repos downloaded into the cache), the
   Hub stopped, and `python app.py` once more with HF_HUB_OFFLINE=1: every endpoint again,
   the `models:` ids from the cache, an unknown id refused with the offline message.

`--fresh-venv` runs the app in a new virtual environment holding only requirements.txt, as a
Space build does (minutes: the torch wheel); without it, this interpreter runs the app (CI).
Prints the measured times; exits 1 on the first failure.

    python -m scripts.check_space [--fresh-venv] [--port 7860] [--host 0.0.0.0]   # from the root
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SPACE_ID = "local/began-explorer"


class SpaceCheckError(RuntimeError):
    pass


def pinned(requirement: str) -> str | None:
    text = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    m = re.search(rf"^{re.escape(requirement)}==([^\s;#]+)", text, flags=re.M | re.I)
    return m[1] if m else None


def preload_entries(meta: dict) -> list[tuple[str, list[str] | None, str | None]]:
    """`preload_from_hub` lines: 'repo_id [file,file] [revision]'."""
    entries = []
    for line in meta.get("preload_from_hub") or []:
        parts = str(line).split()
        files = parts[1].split(",") if len(parts) > 1 else None
        entries.append((parts[0], files, parts[2] if len(parts) > 2 else None))
    return entries


def shipped_folder(repo_id: str) -> Path:
    """The folder under pretrained/ that the Space's model `owner/name` is pushed from."""
    return ROOT / "pretrained" / repo_id.split("/")[-1]


def check_front_matter(python: str) -> dict:
    """The Space's configuration, or a SpaceCheckError naming every key that is wrong."""
    from app.settings import front_matter
    from began_core.checkpoints.hub import HUB_ID

    meta = front_matter(ROOT / "README.md")
    problems = []
    if meta.get("sdk") != "gradio":
        problems.append(f"sdk is {meta.get('sdk')!r}, not 'gradio'")
    if str(meta.get("sdk_version")) != pinned("gradio"):
        problems.append(
            f"sdk_version {meta.get('sdk_version')!r} is not requirements.txt's gradio=={pinned('gradio')}"
        )
    if str(meta.get("python_version")) != python:
        problems.append(
            f"python_version {meta.get('python_version')!r} is not {python!r}, the Python tested"
        )
    if not (ROOT / str(meta.get("app_file"))).is_file():
        problems.append(f"app_file {meta.get('app_file')!r} does not exist")
    models = meta.get("models")
    if not (isinstance(models, list) and models):
        problems.append("models: lists no Hub repos (the generators the Space offers)")
        models = []
    bad = [m for m in models if not HUB_ID.fullmatch(str(m)) or "@" in str(m)]
    if bad:
        problems.append(f"models: {bad} are not Hub repo ids 'owner/name'")
    unshipped = [m for m in models if not shipped_folder(str(m)).is_dir()]
    if unshipped:
        problems.append(
            f"models: {unshipped} have no folder of that name under pretrained/ (the generators "
            "this repository ships, which the check uploads under those ids)"
        )
    stray = [r for r, _, _ in preload_entries(meta) if r not in models]
    if stray:
        problems.append(f"preload_from_hub names {stray}, which models: does not list")
    if problems:
        raise SpaceCheckError("README front matter: " + "; ".join(problems))
    return meta


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        try:
            s.bind((host, preferred))
            return s.getsockname()[1]
        except OSError:
            s.bind((host, 0))
            return s.getsockname()[1]


@contextlib.contextmanager
def space(python: str, env: dict[str, str], port: int, log: Path):
    """`python app.py` as a Space starts it; yields (url, seconds until it answered)."""
    t = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [python, "app.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        import urllib.request

        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "config", timeout=2):
                break
            if proc.poll() is not None or time.perf_counter() - t > 300:
                raise SpaceCheckError(f"app.py did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url, time.perf_counter() - t
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def call_every_endpoint(url: str, models: list[str], offline: bool) -> dict[str, float]:
    """Every named endpoint of the explorer once; returns seconds per endpoint."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    first = models[0]
    times: dict[str, float] = {}

    def call(name: str, *args):
        t = time.perf_counter()
        out = client.predict(*args, api_name=name)
        times[name] = time.perf_counter() - t
        return out

    info = call("/select_checkpoint", first, 0)[0]
    if first not in info:
        raise SpaceCheckError(f"/select_checkpoint on {first} said: {info}")
    call("/seed", first, 1, *[0.0] * 8)
    call("/render", first, 1, *[0.25] * 8, *[0.0] * 8)
    call("/sample_grid", first, 0, 16)
    call("/interpolate", first, 0, 1, 6, "spherical")
    picked = call("/dataset_image", first, 3)
    summary = call("/mirror", first, handle_file(picked), 4, 20, 1)[2]
    if "Reconstruction error" not in summary:
        raise SpaceCheckError(f"/mirror said: {summary}")
    for repo_id in models:
        call("/load_hub", repo_id, [])
    grids = call("/gamma", models, 0, 8)
    captions = [g["caption"] for g in grids]
    if len(captions) != len(models) or not all("diversity" in c for c in captions):
        raise SpaceCheckError(f"/gamma gave {captions}")
    call("/refresh", first, [])
    try:
        client.predict("nobody/not-in-the-cache", [], api_name="/load_hub")
        raise SpaceCheckError("/load_hub accepted a repo that does not exist")
    except Exception as e:  # gradio_client raises AppError with the page's message
        expected = "not reachable" if offline else "no model repository"
        if expected not in str(e):
            raise SpaceCheckError(f"/load_hub of an unknown repo said: {e}") from None
    missing = named - set(times)
    if missing:
        raise SpaceCheckError(f"endpoints not called: {sorted(missing)}")
    return times


def make_venv(folder: Path) -> tuple[str, float]:
    """A fresh virtual environment with only requirements.txt; (python, seconds)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = str(folder / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements.txt")], check=True
    )
    return python, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fresh-venv", action="store_true", help="run the app in a new venv")
    p.add_argument("--port", type=int, default=7860, help="the Space's port (default 7860)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address the app binds (a Space binds 0.0.0.0; default 127.0.0.1: this machine)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="space-check-"))
    try:
        python, build_s = sys.executable, 0.0
        if args.fresh_venv:
            print("building a fresh venv from requirements.txt ...", flush=True)
            python, build_s = make_venv(work / "venv")
            print(f"venv built in {build_s:.0f} s", flush=True)
        version = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        meta = check_front_matter(version)
        models = [str(m) for m in meta["models"]]
        print(f"front matter: ok (gradio {meta['sdk_version']}, Python {version}, {models})")

        from tests.hub_server import Hub

        hub = Hub()
        hub_url = hub.start()
        for repo_id in models:  # what `python -m began_core push` uploads
            hub.seed(repo_id, shipped_folder(repo_id))
        port = free_port(args.port, args.host)
        env = {
            **os.environ,
            "GRADIO_SERVER_NAME": args.host,
            "GRADIO_SERVER_PORT": str(port),
            "SYSTEM": "spaces",
            "SPACE_ID": SPACE_ID,
            "HF_ENDPOINT": hub_url,
            "HF_HOME": str(work / "hf"),
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        for name in ("HF_HUB_OFFLINE", "BEGAN_HUB_MODELS", "BEGAN_PRETRAINED_DIR"):
            env.pop(name, None)

        with space(python, env, port, work / "online.log") as (url, start_s):
            print(f"app.py answered on port {port} after {start_s:.1f} s")
            times = call_every_endpoint(url, models, offline=False)
        print(f"online: {len(times)} endpoints ok in {sum(times.values()):.1f} s")

        # The build's preload_from_hub: the repos into the cache; then no Hub at all.
        t = time.perf_counter()
        preload = preload_entries(meta) or [(m, None, None) for m in models]
        code = (
            "import sys; from huggingface_hub import snapshot_download\n"
            "for repo, files, rev in eval(sys.argv[1]):\n"
            "    snapshot_download(repo, allow_patterns=files, revision=rev)\n"
        )
        subprocess.run([python, "-c", code, repr(preload)], env=env, check=True, cwd=ROOT)
        print(f"preload_from_hub: {len(preload)} repos cached in {time.perf_counter() - t:.1f} s")
        hub.stop()
        env["HF_HUB_OFFLINE"] = "1"
        with space(python, env, port, work / "offline.log") as (url, start_s):
            print(f"offline app.py answered after {start_s:.1f} s")
            times = call_every_endpoint(url, models, offline=True)
        print(f"offline: {len(times)} endpoints ok in {sum(times.values()):.1f} s")
        if build_s:
            print(f"fresh venv: {build_s:.0f} s to build")
        print("the Space starts and serves every endpoint, online and from the preload cache")
        return 0
    except SpaceCheckError as e:
        print(f"space check failed: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
