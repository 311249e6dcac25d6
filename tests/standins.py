"""Local stand-ins for the services the download rules talk to, on 127.0.0.1.

They speak the real protocols with the bytes the real services would serve (the caller adds the
files), so `prefopt.download` runs unchanged against them:

- ``StandInHub``: the Hugging Face Hub's dataset API (``/api/datasets/{id}/revision/{rev}``
  with ``?blobs=true`` file metadata) and its ``/datasets/{id}/resolve/{rev}/{path}`` route,
  which redirects LFS files to a content-addressed CDN URL as the Hub does. Point
  ``HF_ENDPOINT`` at ``.url``.
- ``StandInGitHubRaw``: ``raw.githubusercontent.com``'s ``/{owner}/{repo}/{commit}/{path}``.
  Point ``PREFOPT_GITHUB_RAW_URL`` at ``.url``.

Faults per file path: ``"truncate"`` (announce the full length, send half, drop the
connection), ``"corrupt"`` (flip one byte, same length) and ``"missing"`` (404).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from prefopt import download

#: Files the Hub stores in git itself (not LFS): small text files.
NON_LFS = (".gitattributes", "README.md")
#: The preference dataset, and where its train split sits in the download layout.
UF_REPO = "trl-lib/ultrafeedback_binarized"
UF_LOCAL = "ultrafeedback_binarized/train.jsonl"


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Rows as a parquet file, the format the Hub stores dataset splits in."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue().to_pybytes()


def github_tree(embedded: Path, name: str) -> dict[str, bytes]:
    """Repository paths of GitHub source `name`, with the upstream bytes the repo ships."""
    src = download.GITHUB_SOURCES[name]
    return {remote: (embedded / local).read_bytes() for local, (remote, _) in src.files.items()}


def shipped_hub(embedded: Path) -> StandInHub:
    """A Hub holding trl-lib/ultrafeedback_binarized as parquet: the shipped rows in train, a
    few of them in test (so split selection is exercised)."""
    rows = json.loads("[" + ",".join((embedded / UF_LOCAL).read_text().splitlines()) + "]")
    hub = StandInHub()
    hub.add_dataset(
        UF_REPO,
        {
            "README.md": b"---\nlicense: mit\n---\n",
            "data/train-00000-of-00001.parquet": parquet_bytes(rows),
            "data/test-00000-of-00001.parquet": parquet_bytes(rows[:3]),
        },
    )
    return hub


def shipped_github(embedded: Path) -> StandInGitHubRaw:
    """Raw GitHub holding the AlpacaEval and MT-Bench files at their pinned commits."""
    github = StandInGitHubRaw()
    for name in ("alpaca_eval", "mt_bench"):
        src = download.GITHUB_SOURCES[name]
        github.add_tree(src.repo, src.commit, github_tree(embedded, name))
    return github


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324


def _faulty(data: bytes, fault: str | None) -> bytes:
    if fault == "corrupt":
        return data[:-1] + bytes([data[-1] ^ 0x01])
    return data


class _Server:
    """A threaded HTTP server whose handler calls ``self.handle(method, path)``."""

    def __init__(self) -> None:
        self.faults: dict[str, str] = {}
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner._dispatch(self, "GET")

            def do_HEAD(self) -> None:  # noqa: N802
                owner._dispatch(self, "HEAD")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _dispatch(self, req: BaseHTTPRequestHandler, method: str) -> None:
        self.requests.append(f"{method} {req.path}")
        parts = urlsplit(req.path)
        status, headers, body, fault = self.handle(method, unquote(parts.path), parts.query)
        req.send_response(status)
        for key, value in headers.items():
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if method == "HEAD":
            return
        if fault == "truncate":
            req.wfile.write(body[: len(body) // 2])
            req.wfile.flush()
            req.close_connection = True
            return
        req.wfile.write(_faulty(body, fault))

    def handle(
        self, method: str, path: str, query: str
    ) -> tuple[int, dict[str, str], bytes, str | None]:
        raise NotImplementedError


def _not_found(code: str = "EntryNotFound") -> tuple[int, dict[str, str], bytes, None]:
    return 404, {"X-Error-Code": code}, json.dumps({"error": code}).encode(), None


class StandInGitHubRaw(_Server):
    """``/{owner}/{repo}/{commit}/{path}`` -> the file's bytes, as raw.githubusercontent.com."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}

    def add(self, repo: str, commit: str, path: str, data: bytes) -> None:
        self.files[f"/{repo}/{commit}/{path}"] = data

    def add_tree(self, repo: str, commit: str, files: dict[str, bytes | Path]) -> None:
        for path, data in files.items():
            self.add(repo, commit, path, data if isinstance(data, bytes) else data.read_bytes())

    def handle(self, method: str, path: str, query: str):  # noqa: ANN201
        if path not in self.files or self.faults.get(path) == "missing":
            return 404, {"Content-Type": "text/plain"}, b"404: Not Found", None
        return (
            200,
            {"Content-Type": "text/plain; charset=utf-8"},
            self.files[path],
            self.faults.get(path),
        )


class StandInHub(_Server):
    """Dataset repositories at one commit each, reachable by branch name or by commit sha."""

    def __init__(self) -> None:
        super().__init__()
        self.datasets: dict[str, dict[str, Any]] = {}

    def add_dataset(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Publish ``files`` as ``repo_id`` at a new commit on ``branch``; return its sha."""
        listing = "".join(f"{p}\0{git_blob_id(d)}\n" for p, d in sorted(files.items()))
        sha = hashlib.sha1(f"{repo_id}\n{listing}".encode()).hexdigest()  # noqa: S324
        self.datasets[repo_id] = {"sha": sha, "branches": {branch: sha}, "files": dict(files)}
        return sha

    def _repo(self, repo_id: str, revision: str) -> dict[str, Any] | None:
        repo = self.datasets.get(repo_id)
        if repo is None or revision not in (repo["sha"], *repo["branches"]):
            return None
        return repo

    def siblings(self, repo_id: str) -> list[dict[str, Any]]:
        out = []
        for path, data in sorted(self.datasets[repo_id]["files"].items()):
            entry: dict[str, Any] = {
                "rfilename": path,
                "size": len(data),
                "blobId": git_blob_id(data),
            }
            if not path.endswith(NON_LFS):
                sha256 = hashlib.sha256(data).hexdigest()
                entry["lfs"] = {"sha256": sha256, "size": len(data), "pointerSize": 134}
                entry["blobId"] = git_blob_id(
                    f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
                    f"size {len(data)}\n".encode()
                )
            out.append(entry)
        return out

    def handle(self, method: str, path: str, query: str):  # noqa: ANN201
        json_headers = {"Content-Type": "application/json"}
        if path.startswith("/api/datasets/"):
            head, _, revision = path[len("/api/datasets/") :].partition("/revision/")
            if head not in self.datasets:
                return _not_found("RepoNotFound")
            repo = self._repo(head, revision)
            if repo is None:
                return _not_found("RevisionNotFound")
            info = {"id": head, "sha": repo["sha"], "private": False, "siblings": []}
            info["siblings"] = (
                self.siblings(head)
                if "blobs=true" in query
                else [{"rfilename": p} for p in sorted(repo["files"])]
            )
            return 200, json_headers, json.dumps(info).encode(), None
        if path.startswith("/datasets/") and "/resolve/" in path:
            head, _, rest = path[len("/datasets/") :].partition("/resolve/")
            revision, _, rel = rest.partition("/")
            repo = self._repo(head, revision)
            if repo is None:
                return _not_found("RevisionNotFound")
            if rel not in repo["files"] or self.faults.get(rel) == "missing":
                return _not_found("EntryNotFound")
            data = repo["files"][rel]
            headers = {"X-Repo-Commit": repo["sha"], "ETag": f'"{git_blob_id(data)}"'}
            if not rel.endswith(NON_LFS):
                sha256 = hashlib.sha256(data).hexdigest()
                headers.update(
                    {
                        "Location": f"/cdn/{sha256}?file={rel}",
                        "X-Linked-Etag": f'"{sha256}"',
                        "X-Linked-Size": str(len(data)),
                    }
                )
                return 302, headers, b"", None
            return 200, headers, data, self.faults.get(rel)
        if path.startswith("/cdn/"):
            sha256 = path[len("/cdn/") :]
            for repo in self.datasets.values():
                for rel, data in repo["files"].items():
                    if hashlib.sha256(data).hexdigest() == sha256:
                        return 200, {"ETag": f'"{sha256}"'}, data, self.faults.get(rel)
            return _not_found()
        return _not_found()
