"""Local stand-ins for the services the download rules talk to, on 127.0.0.1.

They speak the real protocols with the bytes the real services would serve (the caller adds the
files), so `prefopt.data.download` runs unchanged against them:

- ``StandInHub``: the Hugging Face Hub as ``huggingface_hub`` talks to it. Repository info
  (``/api/{datasets,spaces}/{id}`` and ``.../revision/{rev}``, with ``?blobs=true`` file
  metadata: sizes, git blob ids, LFS sha256) and ``/{datasets,spaces}/{id}/resolve/{rev}/{path}``
  (``HEAD`` and ``GET``), which answers with ``X-Repo-Commit`` and an ``ETag`` (the git blob id)
  for a file kept in git, and for an LFS file with a ``302`` to a content-addressed URL on a CDN
  of another origin (``.cdn``, its own port, as the Hub's CDN is another host: the client sends
  it no token) carrying ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``. Files are served
  with ``Accept-Ranges: bytes`` and honour ``Range`` (``206`` with ``Content-Range``; ``416``
  past the end). Point ``HF_ENDPOINT`` at ``.url`` and switch huggingface_hub's offline mode
  off (``hub_online``).
- ``StandInGitHubRaw``: ``raw.githubusercontent.com``'s ``/{owner}/{repo}/{commit}/{path}``.
  Point ``PREFOPT_GITHUB_RAW_URL`` at ``.url``.

Faults per file path: ``"truncate"`` (announce the full length and never send the file's second
half: every request breaks off there and drops the connection), ``"interrupt"`` (the first
``GET`` breaks off halfway and drops the connection; later requests are served whole, ``Range``
honoured), ``"corrupt"`` (flip one byte, same length) and ``"missing"`` (404). Every request is
in ``requests`` (``"METHOD /path?query"``); those that carried an ``Authorization`` header are in
``authorized`` too, and those with a ``Range`` header in ``ranges`` (``"/path bytes=N-"``).

- ``FakeOpenAI``: an OpenAI-compatible ``/v1/chat/completions`` endpoint for the API judge, with
  failures scripted per item (429, 5xx, timeouts, 400 content filter, 401, 404, hangs) and the
  ``model`` field of its answers (the served model) settable. Point ``base_url`` at
  ``.base_url``. It also answers ``GET /v1/models/{model}`` (the judge preflight's
  ``models.retrieve``) like the real API: every model by default, or only ``models=`` (each with
  optional extra fields such as ``shutdown_date``), 404 ``model_not_found`` for the rest.
- ``StandInVllm``: vLLM's offline API (``vllm.LLM``, ``vllm.SamplingParams``,
  ``vllm.inputs.TokensPrompt``) as modules put in ``sys.modules``, for the vLLM engine on a
  machine without a GPU (vLLM has no CPU build on PyPI). Keyword names and checks are vLLM
  0.33.0's; each request is decoded alone, in shuffled order as a scheduler would, by
  prefopt's HF decoding loop with that request's own parameters.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from prefopt.data import download

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


#: The commit at which the stand-in raw GitHub serves the shipped AlpacaEval sample. The sample
#: keeps four fields of the upstream file (workflow/resources/data/alpaca_eval/PROVENANCE.md), so
#: its bytes are not the pinned commit's and would fail the git blob check there, as they should.
#: A run pointed at this commit (`data.alpaca_eval.repo_revision`) downloads it as an unpinned
#: revision: sha256 recorded, with the warning. The pinned blob check is exercised on MT-Bench's
#: files (shipped unchanged) and, on the real file, by the tests marked `mirror`.
AE_SAMPLE_COMMIT = "5a" * 20


def github_tree(embedded: Path, name: str) -> dict[str, bytes]:
    """Repository paths of GitHub source `name`, with the bytes the repository ships for them."""
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
    """Raw GitHub holding MT-Bench's files at their pinned commit and the AlpacaEval sample at
    `AE_SAMPLE_COMMIT`."""
    github = StandInGitHubRaw()
    mt_bench = download.GITHUB_SOURCES["mt_bench"]
    github.add_tree(mt_bench.repo, mt_bench.commit, github_tree(embedded, "mt_bench"))
    alpaca_eval = download.GITHUB_SOURCES["alpaca_eval"]
    github.add_tree(alpaca_eval.repo, AE_SAMPLE_COMMIT, github_tree(embedded, "alpaca_eval"))
    return github


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324


def _faulty(data: bytes, fault: str | None) -> bytes:
    if fault == "corrupt":
        return data[:-1] + bytes([data[-1] ^ 0x01])
    return data


_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")


class _Server:
    """A threaded HTTP server whose handler calls ``self.handle(method, path, query)``.

    A ``200`` answer whose headers say ``Accept-Ranges: bytes`` honours a ``Range: bytes=a-[b]``
    request (``206`` and ``Content-Range``, or ``416`` past the end), as HTTP servers do; the
    faults (``truncate``, ``interrupt``) cut the file's bytes wherever the range starts."""

    def __init__(self) -> None:
        self.faults: dict[str, str] = {}
        self.requests: list[str] = []
        self.authorized: list[str] = []
        self.ranges: list[str] = []
        self._interrupted: set[str] = set()
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
        if req.headers.get("Authorization"):
            self.authorized.append(f"{method} {req.path}")
        parts = urlsplit(req.path)
        path = unquote(parts.path)
        status, headers, body, fault = self.handle(method, path, parts.query)
        body = _faulty(body, fault)
        start, end, wanted = 0, len(body), req.headers.get("Range")
        if wanted and status == 200 and headers.get("Accept-Ranges") == "bytes":
            self.ranges.append(f"{path} {wanted}")
            m = _RANGE_RE.fullmatch(wanted.strip())
            if m is None or int(m[1]) >= len(body):
                status, headers, body = 416, {"Content-Range": f"bytes */{len(body)}"}, b""
                end = 0
            else:
                start, end = int(m[1]), min(int(m[2]) + 1 if m[2] else len(body), len(body))
                status = 206
                headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{len(body)}"}
        req.send_response(status)
        for key, value in headers.items():
            req.send_header(key, value)
        req.send_header("Content-Length", str(end - start))
        req.end_headers()
        if method == "HEAD":
            return
        stop = end
        if fault == "truncate" or (fault == "interrupt" and path not in self._interrupted):
            self._interrupted.add(path)
            stop = min(end, max(start, len(body) // 2))
        req.wfile.write(body[start:stop])
        req.wfile.flush()
        if stop < end:  # announced more than it sent: drop the connection
            req.close_connection = True

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


def hub_online(monkeypatch: Any, hub: StandInHub) -> None:
    """Point huggingface_hub at ``hub`` and switch its offline mode off, as the download rules
    run (``HF_HUB_OFFLINE=0``): the test session sets ``HF_HUB_OFFLINE=1``, which
    huggingface_hub reads once, at import."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def lfs_pointer(data: bytes) -> bytes:
    """The git LFS pointer file the Hub keeps in git for an LFS file."""
    sha256 = hashlib.sha256(data).hexdigest()
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n"
    ).encode()


class _StandInCdn(_Server):
    """The Hub's CDN: ``/cdn/{sha256}`` -> the LFS file with that sha256 (any repository)."""

    def __init__(self, hub: StandInHub) -> None:
        super().__init__()
        self.hub = hub
        self.faults = hub.faults  # per file path, as the Hub's

    def handle(self, method: str, path: str, query: str):  # noqa: ANN201
        sha256 = path.removeprefix("/cdn/")
        for repo in self.hub.datasets.values():
            for rel, data in repo["files"].items():
                if hashlib.sha256(data).hexdigest() == sha256:
                    headers = {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"}
                    return 200, headers, data, self.faults.get(rel)
        return 404, {"Content-Type": "application/xml"}, b"<Error>NoSuchKey</Error>", None


class StandInHub(_Server):
    """Repositories at one commit each, reachable by branch name or by commit sha, served as
    datasets (``StandInSpaceHub`` serves them as Spaces); LFS files come from ``.cdn``."""

    def __init__(self) -> None:
        super().__init__()
        self.datasets: dict[str, dict[str, Any]] = {}
        self.cdn = _StandInCdn(self)

    def __enter__(self) -> StandInHub:
        self.cdn.__enter__()
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.cdn.__exit__(*exc)

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
                pointer = lfs_pointer(data)
                sha256 = hashlib.sha256(data).hexdigest()
                entry["lfs"] = {"sha256": sha256, "size": len(data), "pointerSize": len(pointer)}
                entry["blobId"] = git_blob_id(pointer)
            out.append(entry)
        return out

    def handle(self, method: str, path: str, query: str):  # noqa: ANN201
        json_headers = {"Content-Type": "application/json"}
        if path.startswith("/api/datasets/"):
            head, sep, revision = path[len("/api/datasets/") :].partition("/revision/")
            if head not in self.datasets:
                return _not_found("RepoNotFound")
            repo = self._repo(head, revision if sep else "main")
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
            if head not in self.datasets:
                return _not_found("RepoNotFound")
            revision, _, rel = rest.partition("/")
            repo = self._repo(head, revision)
            if repo is None:
                return _not_found("RevisionNotFound")
            if rel not in repo["files"] or self.faults.get(rel) == "missing":
                return _not_found("EntryNotFound")
            data = repo["files"][rel]
            headers = {"X-Repo-Commit": repo["sha"], "Accept-Ranges": "bytes"}
            if not rel.endswith(NON_LFS):
                sha256 = hashlib.sha256(data).hexdigest()
                headers.update(
                    {
                        "ETag": f'"{git_blob_id(lfs_pointer(data))}"',
                        "Location": f"{self.cdn.url}/cdn/{sha256}?file={quote(rel)}",
                        "X-Linked-Etag": f'"{sha256}"',
                        "X-Linked-Size": str(len(data)),
                    }
                )
                del headers["Accept-Ranges"]
                return 302, headers, b"", None
            headers["ETag"] = f'"{git_blob_id(data)}"'
            return 200, headers, data, self.faults.get(rel)
        return _not_found()


# ------------------------------------------------------------------------------------------------
# OpenAI-compatible chat completions (the API judge)
# ------------------------------------------------------------------------------------------------

#: How a test marks the item a request is about: ``ITEM-<name>`` in the last message that has one.
ITEM_RE = re.compile(r"ITEM-([A-Za-z0-9_]+)")


class FakeOpenAI:
    """Fake ``/v1/chat/completions`` endpoint with per-item failure scripts.

    ``script`` maps an item marker (``ITEM-<name>`` in the last message that has one) to the
    list of modes its successive requests get; ``always`` maps an item to one mode for every
    request. Modes: ``429`` (with Retry-After), ``500``, ``503``, ``timeout`` (answer nothing for
    longer than the client waits), ``400`` (Azure-style content filter: code
    ``content_filter``), ``401`` (invalid key), ``404`` (code ``model_not_found``), ``hang``
    (block until released, then drop the connection), ``empty`` (200 without choices). The
    400 and 401 messages echo the Authorization header back, like a careless server. Requests
    past the script are answered normally; the answer's ``model`` is ``served_model`` (default:
    the requested model with a date suffix, as an alias resolves to a snapshot).

    ``GET /v1/models/{model}`` answers a model object when ``models`` is None (every model
    exists) or names the model (its value: extra fields, e.g. ``{"shutdown_date": ...}``), else
    404 ``model_not_found`` in the real API's words. ``model_faults`` maps a model to ``401``
    (echoing the Authorization header) or ``timeout``. Every request (GET and POST) is appended to
    ``seen`` as ``"METHOD /path"``; model look-ups also to ``model_lookups``, and they are not
    counted in ``total``/``requests``.
    """

    def __init__(
        self,
        script: dict[str, list[str]] | None = None,
        *,
        always: dict[str, str] | None = None,
        served_model: str | None = None,
        max_requests: int = 300,
        lifetime_s: float = 90.0,
        timeout_sleep: float = 1.5,
        models: dict[str, dict[str, Any]] | None = None,
        model_faults: dict[str, str] | None = None,
    ) -> None:
        self.models = None if models is None else {k: dict(v) for k, v in models.items()}
        self.model_faults = dict(model_faults or {})
        self.seen: list[str] = []
        self.model_lookups: list[str] = []
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.always = dict(always or {})
        self.served_model = served_model
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.timeout_sleep = timeout_sleep
        self.requests: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.total = 0
        self.in_flight = 0  # requests being answered now, and the most at any one time
        self.max_in_flight = 0
        self.exhausted = False
        self.hung = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                with fake.lock:
                    fake.seen.append(f"GET {self.path}")
                fake.handle_get(self)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                with fake.lock:
                    fake.seen.append(f"POST {self.path}")
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    fake.handle(self)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.deadline = threading.Timer(self.lifetime_s, self.httpd.shutdown)
        self.deadline.daemon = True
        self.deadline.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.deadline.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    # -- request handling -----------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length", 0))))
        item = self.item_of(body)
        with self.lock:
            self.total += 1
            if self.total > self.max_requests:
                self.exhausted = True
                mode = "exhausted"
            else:
                self.requests[item] += 1
                self.bodies.append(body)
                pending = self.script.get(item)
                mode = pending.pop(0) if pending else self.always.get(item, "ok")
                if mode == "ok":
                    self.served[item] += 1
        auth = h.headers.get("Authorization", "")
        if mode == "exhausted":
            self._send(h, 503, {"error": {"message": "request budget exhausted"}})
            threading.Thread(target=self.httpd.shutdown, daemon=True).start()
        elif mode == "429":
            self._send(h, 429, {"error": {"message": "rate limited"}}, {"Retry-After": "0.05"})
        elif mode in ("500", "503"):
            self._send(h, int(mode), {"error": {"message": "server error"}})
        elif mode == "400":
            message = f"The response was filtered by the content management policy; you sent {auth}"
            error = {"message": message, "type": "invalid_request_error", "code": "content_filter"}
            self._send(h, 400, {"error": error})
        elif mode == "401":
            error = {"message": f"Incorrect API key provided: {auth}", "code": "invalid_api_key"}
            self._send(h, 401, {"error": error})
        elif mode == "404":
            message = f"The model `{body['model']}` does not exist or you do not have access to it."
            self._send(h, 404, {"error": {"message": message, "code": "model_not_found"}})
        elif mode == "timeout":
            time.sleep(self.timeout_sleep)  # then drop the connection without an answer
        elif mode == "empty":
            self._send(h, 200, {**self.completion(body, item), "choices": []})
        elif mode == "hang":
            self.hung.set()
            self.release.wait(20)
        else:
            self._send(h, 200, self.completion(body, item))

    def handle_get(self, h: BaseHTTPRequestHandler) -> None:
        """``GET /v1/models/{model}`` as OpenAI answers it; any other GET is a 404."""
        path = unquote(urlsplit(h.path).path)
        prefix = "/v1/models/"
        if not path.startswith(prefix) or len(path) == len(prefix):
            self._send(h, 404, {"error": {"message": f"Unknown request URL: GET {path}"}})
            return
        model = path[len(prefix) :]
        with self.lock:
            self.model_lookups.append(model)
        fault = self.model_faults.get(model)
        if fault == "401":
            auth = h.headers.get("Authorization", "")
            error = {"message": f"Incorrect API key provided: {auth}", "code": "invalid_api_key"}
            self._send(h, 401, {"error": error})
        elif fault == "timeout":
            time.sleep(self.timeout_sleep)  # then drop the connection without an answer
        elif self.models is None or model in self.models:
            extra = (self.models or {}).get(model, {})
            obj = {"id": model, "object": "model", "created": 1698959748, "owned_by": "system"}
            self._send(h, 200, {**obj, **extra})
        else:
            message = f"The model `{model}` does not exist or you do not have access to it."
            error = {"message": message, "type": "invalid_request_error", "param": None,
                     "code": "model_not_found"}  # fmt: skip
            self._send(h, 404, {"error": error})

    @staticmethod
    def item_of(body: dict[str, Any]) -> str:
        for msg in reversed(body["messages"]):
            found = ITEM_RE.findall(msg.get("content") or "")
            if found:
                return found[-1]
        return "?"

    def completion(self, body: dict[str, Any], item: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant"}
        if body.get("tools"):
            text = body["messages"][-1]["content"]
            # whichever output contains GOOD ranks first
            m_wins = text.find("GOOD") < text.find('"model": "M"')
            ranking = [{"model": "m", "rank": 1}, {"model": "M", "rank": 2}]
            if not m_wins:
                ranking = [{"model": "M", "rank": 1}, {"model": "m", "rank": 2}]
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{item}",
                    "type": "function",
                    "function": {
                        "name": "make_partial_leaderboard",
                        "arguments": json.dumps({"ordered_models": ranking}),
                    },
                }
            ]
        elif "NORATING" in json.dumps(body["messages"]):
            message["content"] = "I cannot rate this."
        else:
            message["content"] = f"Judged {item}. Rating: [[{len(item) % 10 + 1}]]"
        return {
            "id": f"chatcmpl-{item}",
            "object": "chat.completion",
            "created": 0,
            "model": self.served_model or body["model"] + "-2024-01-01",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)


def judge_items(names: list[str]) -> list[Any]:
    """Raw API-judge requests, one per name, each marked ``ITEM-<name>`` for FakeOpenAI's
    per-item scripts."""
    from prefopt.judging import api

    return [
        api.JudgeItem(
            f"raw:{n}",
            [{"role": "system", "content": "judge"}, {"role": "user", "content": f"ITEM-{n}"}],
            {"temperature": 0, "max_tokens": 16},
        )
        for n in names
    ]


def cache_lines(path: Path) -> list[dict]:
    """The records of an API judge's JSON-lines cache."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def judged_annotation(
    i: int, preference: float | None, judge_model: str, served_model: str | None, error=None
) -> dict:
    """Row `i` of an API judge's AlpacaEval annotations as prefopt.judging.api writes it."""
    return {
        "instruction": f"instruction {i}",
        "output_1": "reference " * (i + 1),
        "generator_1": "text_davinci_003",
        "output_2": "model " * (i + 2),
        "generator_2": "dpo-seed0",
        "annotator": "alpaca_eval_gpt4_turbo_fn",
        "preference": preference,
        "judge_model": judge_model,
        "served_model": served_model,
        "judge_error": error,
    }


def toy_alpaca_eval_pairs(n: int) -> tuple[list[dict], list[dict]]:
    """(model outputs, reference outputs) for n instructions marked ``ITEM-q<i>``: FakeOpenAI
    ranks first the output holding GOOD, the model's for even i; the last pair's outputs are
    identical (a draw alpaca_eval decides without a request). The model outputs carry literal
    braces, which no prompt formatting may touch."""
    model, ref = [], []
    for i in range(n):
        instr = f"Question ITEM-q{i}: say something about {i}."
        good_model = i % 2 == 0
        model.append(
            {
                "instruction": instr,
                "output": f"{'GOOD' if good_model else 'meh'} answer {{literal}} {i}",
                "generator": "toy-seed0",
                "dataset": "toy",
            }
        )
        ref.append(
            {
                "instruction": instr,
                "output": f"{'meh' if good_model else 'GOOD'} reference {i}",
                "generator": "text_davinci_003",
                "dataset": "toy",
            }
        )
    model[-1]["output"] = ref[-1]["output"]
    return model, ref


# ----------------------------------------------------------------------------- vLLM
#: `vllm.SamplingParams` keywords of vLLM 0.33.0 (vllm/sampling_params.py) that a caller may
#: pass; anything else is a TypeError there, and here.
VLLM_SAMPLING_FIELDS = frozenset(
    "n presence_penalty frequency_penalty repetition_penalty temperature top_p top_k min_p "
    "seed stop stop_token_ids bad_words include_stop_str_in_output ignore_eos max_tokens "
    "min_tokens logprobs prompt_logprobs detokenize skip_special_tokens "
    "spaces_between_special_tokens output_kind".split()
)
VLLM_SAMPLING_EPS = 1e-5  # vllm/sampling_params.py: below it, temperature means greedy


class StandInVllm:
    """Install with ``install(monkeypatch)``; ``llm_kwargs`` and ``requests`` record what the
    engine asked for (every LLM(...) call; every request's prompt ids and parameters)."""

    version = "0.33.0+standin"

    def __init__(self) -> None:
        self.llm_kwargs: list[dict[str, Any]] = []
        self.requests: list[tuple[list[int], dict[str, Any]]] = []
        #: whether this process initialised CUDA (cudaGetDeviceCount, hence cuInit)
        self.cuda_initialised = False

    def install(self, monkeypatch: Any) -> None:
        import sys
        import types

        import torch

        vllm = types.ModuleType("vllm")
        inputs = types.ModuleType("vllm.inputs")
        vllm.__version__ = self.version
        vllm.SamplingParams = _sampling_params_class()
        vllm.LLM = self._llm_class()
        inputs.TokensPrompt = dict  # a TypedDict there: a plain dict at run time
        vllm.inputs = inputs
        monkeypatch.setitem(sys.modules, "vllm", vllm)
        monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
        # A machine with one GPU, below torch.cuda.is_available: NVML sees it without touching
        # CUDA; cudaGetDeviceCount sees it too, and initialises CUDA in this process, which the
        # stand-in's LLM() refuses as vLLM's forked workers would fail.
        stand_in = self

        def cuda_get_device_count() -> int:
            stand_in.cuda_initialised = True
            return 1

        monkeypatch.setattr(torch.cuda, "_is_compiled", lambda: True)
        monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: 1)
        monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", cuda_get_device_count, raising=False)

    def _llm_class(self) -> type:
        stand_in = self

        class LLM:
            def __init__(self, model: str, *, tokenizer: str | None = None, dtype: str = "auto",
                         seed: int = 0, gpu_memory_utilization: float = 0.92,
                         **engine_args: Any) -> None:  # fmt: skip
                from prefopt.modeling import load_model

                if stand_in.cuda_initialised:
                    raise RuntimeError(
                        "CUDA was initialised in this process before vLLM made its engine: "
                        "workers forked now cannot use CUDA (torch's 'poison fork')"
                    )
                stand_in.llm_kwargs.append(
                    {"model": model, "tokenizer": tokenizer, "dtype": dtype, "seed": seed,
                     "gpu_memory_utilization": gpu_memory_utilization, **engine_args}
                )  # fmt: skip
                # float32 on the CPU, whatever was asked: the answers must not depend on batching
                self.model, self.tokenizer = load_model(model, device="cpu")

            def generate(self, prompts: Any, sampling_params: Any, *, use_tqdm: bool = True,
                         **kwargs: Any) -> list[Any]:  # fmt: skip
                import random
                from types import SimpleNamespace

                from prefopt.generation.hf_engine import _decode_batch
                from prefopt.generation.interface import Sampling

                if not isinstance(sampling_params, list | tuple):
                    sampling_params = [sampling_params] * len(prompts)
                if len(sampling_params) != len(prompts):
                    raise ValueError("The lengths of prompts and sampling_params must be the same.")
                outputs: list[Any] = [None] * len(prompts)
                order = list(range(len(prompts)))
                random.Random(len(prompts)).shuffle(order)
                for i in order:
                    ids, params = list(prompts[i]["prompt_token_ids"]), sampling_params[i]
                    if not all(isinstance(t, int) for t in ids):
                        raise TypeError("prompt_token_ids must be a list of int")
                    stand_in.requests.append((ids, dict(params.kwargs)))
                    eos = set(params.stop_token_ids or []) | {self.tokenizer.eos_token_id}
                    sampling = Sampling(
                        temperature=params.temperature, top_p=params.top_p,
                        max_new_tokens=params.max_tokens,
                        repetition_penalty=params.repetition_penalty,
                    )  # fmt: skip
                    (tokens,) = _decode_batch(
                        self.model, [ids], pad_id=self.tokenizer.eos_token_id, eos_ids=eos,
                        sampling=sampling, top_k=params.top_k, temperatures=[params.temperature],
                        seeds=[params.seed if params.seed is not None else 0],
                    )  # fmt: skip
                    outputs[i] = SimpleNamespace(
                        prompt_token_ids=ids,
                        outputs=[SimpleNamespace(index=0, token_ids=tuple(tokens), text="")],
                    )
                return outputs

        return LLM


def _sampling_params_class() -> type:
    class SamplingParams:
        def __init__(self, **kwargs: Any) -> None:
            unknown = set(kwargs) - VLLM_SAMPLING_FIELDS
            if unknown:
                raise TypeError(f"SamplingParams got unexpected keyword(s) {sorted(unknown)}")
            self.kwargs = kwargs
            self.n = kwargs.get("n", 1)
            self.temperature = float(kwargs.get("temperature", 1.0))
            self.top_p = float(kwargs.get("top_p", 1.0))
            self.top_k = kwargs.get("top_k", 0)
            self.repetition_penalty = float(kwargs.get("repetition_penalty", 1.0))
            self.max_tokens = kwargs.get("max_tokens", 16)
            self.seed = kwargs.get("seed")
            self.stop_token_ids = kwargs.get("stop_token_ids")
            if not isinstance(self.top_k, int) or self.top_k < -1:
                raise ValueError(f"top_k must be 0 (disable), or at least 1, got {self.top_k}.")
            if not 0.0 < self.top_p <= 1.0:
                raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
            if self.repetition_penalty <= 0.0:
                raise ValueError("repetition_penalty must be greater than zero")
            if self.n != 1 or self.max_tokens is None or self.max_tokens < 1:
                raise ValueError(f"n={self.n}, max_tokens={self.max_tokens}")
            if self.temperature < VLLM_SAMPLING_EPS:  # zero temperature means greedy sampling
                self.temperature, self.top_p, self.top_k = 0.0, 1.0, 0
            if self.top_k == -1:
                self.top_k = 0

    return SamplingParams
