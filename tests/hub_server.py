"""A Hugging Face Hub for tests: model repositories in memory, served on 127.0.0.1 with the
standard library, enough for huggingface_hub's `hf_hub_download`, `HfApi.create_repo`,
`HfApi.upload_folder` and `HfApi.model_info` to run unchanged against it through
`HF_ENDPOINT` (uploads as regular files: set `HF_HUB_DISABLE_XET=1`).

What it answers, as huggingface_hub 2.x asks it (file_download.py, hf_api.py,
_commit_api.py):

- HEAD and GET `/{repo_id}/resolve/{revision}/{path}`: `X-Repo-Commit` (40 hex), `ETag`,
  `Content-Length`; 404 with `X-Error-Code` RepoNotFound, RevisionNotFound or EntryNotFound.
- GET `/api/models/{repo_id}` and `/api/models/{repo_id}/revision/{revision}`.
- POST `/api/repos/create` (409 when it exists), `/api/models/{repo_id}/preupload/{revision}`
  (every file `regular`) and `/api/models/{repo_id}/commit/{revision}` (NDJSON, files inline
  in base64), `/api/validate-yaml`.

`python tests/hub_server.py --port 8765` serves one by hand (an empty Hub, or `--seed DIR
REPO_ID` to put a checkpoint folder in it).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_INFO = re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")
_PREUPLOAD = re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$")
_COMMIT = re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$")


GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # oid -> files
    branches: dict[str, str] = field(default_factory=dict)  # name -> oid

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


class Hub:
    """The repositories, and the server that answers for them (`start`, `stop`, `url`)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path), for tests to inspect
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # The repositories.
    def create(self, repo_id: str) -> bool:
        with self._lock:
            if repo_id in self.repos:
                return False
            self.repos[repo_id] = Repo()
        self.commit(repo_id, {".gitattributes": GITATTRIBUTES})  # as the Hub's first commit
        return True

    def commit(
        self, repo_id: str, files: dict[str, bytes], *, branch: str = "main", deleted=()
    ) -> str:
        """A new commit on `branch` with `files` added (or replaced); returns its oid."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo())
            parent = repo.branches.get(branch)
            tree = dict(repo.commits.get(parent, {})) if parent else {}
            tree.update(files)
            for path in deleted:
                tree.pop(path, None)
            oid = hashlib.sha1(f"{repo_id}{parent}{time.time_ns()}{sorted(tree)}".encode())
            repo.commits[oid.hexdigest()] = tree
            repo.branches[branch] = oid.hexdigest()
            return oid.hexdigest()

    def seed(self, repo_id: str, folder: str | Path) -> str:
        """Commit every file of a local folder (a checkpoint, say) to `repo_id`."""
        folder = Path(folder)
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        return self.commit(repo_id, files)

    # The server.
    def start(self, port: int = 0) -> str:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "start the Hub first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Handler(BaseHTTPRequestHandler):
    hub: Hub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet: tests read hub.requests
        pass

    # Answers.
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message, "Content-Type": "application/json"}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _repo(self, repo_id: str, revision: str | None) -> tuple[Repo, str, str] | None:
        """(repo, revision as asked, commit oid), or None after answering the error."""
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        revision = unquote(revision or "main")
        oid = repo.resolve(revision)
        if oid is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo, revision, oid

    # Methods.
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.hub.requests.append((self.command, path))
        if m := _RESOLVE.match(path):
            found = self._repo(m["repo"], m["rev"])
            if found is None:
                return
            repo, _, oid = found
            name = unquote(m["path"])
            data = repo.commits[oid].get(name)
            if data is None:
                self._error(404, "EntryNotFound", f"{name} does not exist at {oid}")
                return
            etag = hashlib.sha256(data).hexdigest()
            headers = {"X-Repo-Commit": oid, "ETag": f'"{etag}"'}
            self._send(200, data, {**headers, "Content-Type": "application/octet-stream"})
        elif m := _INFO.match(path):
            found = self._repo(m["repo"], m["rev"])
            if found is None:
                return
            repo, _, oid = found
            siblings = [{"rfilename": name} for name in sorted(repo.commits[oid])]
            self._json({"id": m["repo"], "modelId": m["repo"], "sha": oid, "siblings": siblings})
        else:
            self._error(404, None, f"no route {path}")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        self.hub.requests.append((self.command, path))
        body = self._body()
        if path == "/api/repos/create":
            payload = json.loads(body or b"{}")
            repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
            answer = {"url": f"{self.hub.url}/{repo_id}", "name": repo_id}
            if not self.hub.create(repo_id):  # create_repo(exist_ok=True) reads the url of a 409
                message = "You already created this model repo"
                headers = {"X-Error-Message": message, "Content-Type": "application/json"}
                self._send(409, json.dumps({**answer, "error": message}).encode(), headers)
                return
            self._json(answer)
        elif path == "/api/validate-yaml":
            self._json({"errors": [], "warnings": []})
        elif m := _PREUPLOAD.match(path):
            if self._repo(m["repo"], m["rev"]) is None:
                return
            files = json.loads(body)["files"]
            mode = {"uploadMode": "regular", "shouldIgnore": False}
            self._json({"files": [{"path": f["path"], **mode} for f in files]})
        elif m := _COMMIT.match(path):
            found = self._repo(m["repo"], m["rev"])
            if found is None:
                return
            files, deleted = {}, []
            for line in body.splitlines():
                item = json.loads(line)
                value = item.get("value", {})
                if item["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "deletedFile":
                    deleted.append(value["path"])
                elif item["key"] != "header":
                    self._error(400, None, f"this test Hub takes regular files only: {item['key']}")
                    return
            oid = self.hub.commit(m["repo"], files, branch=found[1], deleted=deleted)
            url = f"{self.hub.url}/{m['repo']}/commit/{oid}"
            self._json({"commitUrl": url, "commitOid": oid, "pullRequestUrl": None})
        else:
            self._error(404, None, f"no route {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--seed", nargs=2, action="append", default=[], metavar=("DIR", "REPO_ID"))
    args = p.parse_args()
    hub = Hub()
    for folder, repo_id in args.seed:
        hub.seed(repo_id, folder)
    print(hub.start(args.port), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
