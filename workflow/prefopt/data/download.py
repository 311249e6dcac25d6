"""Fetch the pinned public sources into the download layout (``results/downloads/``), verified.

The download layout is also the layout of a data mirror and of the samples shipped in
``workflow/resources/data/``, so every later stage reads the same relative paths whichever route
the files came by. Each source is fetched at a pinned revision and checked before it is kept:

- GitHub files at a commit, each against its git blob id at that commit (recorded here);
- Hugging Face dataset (or Space) files at a revision resolved to a commit, each against the
  sha256 (LFS) or git blob id the Hub lists for it at that commit.

Files are written under a temporary name and moved into place only when every file of the
source passed, so a failed download leaves nothing behind, and the error names the source.

Hub files come through ``huggingface_hub`` (``HfApi.repo_info`` for the commit and the file
listing, ``hf_hub_download`` at that commit for each file, which follows the Hub's LFS redirects
and resumes a transfer cut short with ``Range`` requests); it reads ``HF_TOKEN`` (never logged)
and refuses to go online when ``HF_HUB_OFFLINE`` is set. GitHub files come through urllib.
Base URLs come from the environment, so tests point them at local stand-in servers:
``HF_ENDPOINT`` (read at each call, passed to huggingface_hub) and ``PREFOPT_GITHUB_RAW_URL``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefopt.runtime import write_json

DEFAULT_GITHUB_RAW_URL = "https://raw.githubusercontent.com"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
GITHUB_RAW_URL_ENV = "PREFOPT_GITHUB_RAW_URL"
#: Extensions of the data files a Hub dataset split is read from (in file-name order).
HF_DATA_EXTENSIONS = (".parquet", ".jsonl", ".json")
CHUNK = 1 << 20


#: The download layout's folder inside a run (mirrors are copies of it).
DOWNLOADS_DIR = "results/downloads"


class DownloadError(RuntimeError):
    """A source could not be fetched or verified; the message names the source and the file."""


@dataclass(frozen=True)
class GitHubSource:
    """Files of one GitHub repository at a pinned commit, with their git blob ids there."""

    repo: str
    commit: str
    #: download-layout path -> (path in the repository, git blob id at ``commit``)
    files: dict[str, tuple[str, str]] = field(default_factory=dict)


#: Where the AlpacaEval 1.0 reference set sits in the download layout (and a mirror): alpaca_eval's
#: published AE1 annotations of one model (phi-2-sft by alpaca_eval_gpt4), whose ``output_1`` is
#: the text-davinci-003 baseline every AE1 judgment compares with.
ALPACA_EVAL_REFERENCE = "alpaca_eval/alpaca_eval_1_annotations_phi-2-sft.json"
#: The authors' files and their git blob ids at the pinned commit (path, id).
_AUTHORS_BLOBS = [
    tuple(line.split())
    for line in """
alpaca_eval_Original/annotations.json 5031d184f4e7927bb31073d3087b5fcebb44147f
alpaca_eval_Original/leaderboard.csv 6c3ffe54bc2c9557fd8feef6e8acfa94f64a868b
alpaca_eval_DPO/annotations.json a63c6c6855911cc47219d44e14c8bd8a2b5255af
alpaca_eval_DPO/leaderboard.csv 744785491185ac984df0bd8bcfc40d8046d1672c
alpaca_eval_DPO_hinge/annotations.json 994b8ac8442f6c2de0e2eed57f7dc9e339404457
alpaca_eval_DPO_hinge/leaderboard.csv 6f2ced70c2a28205e387132b44a0fe530cffcaf2
alpaca_eval_APO/annotations.json 303a0a82b9ea5e406f3ee85dca423664a32ade73
alpaca_eval_APO/leaderboard.csv 9b6ede937f789b05d74ad54e4f4ddb47bd3da4a1
alpaca_eval_APO_zero_hinge/annotations.json d0396d9256684334c963e8d92730fee78279ae5e
alpaca_eval_APO_zero_hinge/leaderboard.csv b705903c903347596e4c77451d5a8df9997765fb
alpaca_eval_APO_hinge_softplus_beta/annotations.json d0c0101279d904ec1a73edf494e637cb6dcf23c0
alpaca_eval_APO_hinge_softplus_beta/leaderboard.csv 2608084c64a6bcebe9d8ef2bdb3296cafc018c23
alpaca_eval_EXO/annotations.json 69b809d6e7efdbee1ad0f3e4e30b62940b38f479
alpaca_eval_EXO/leaderboard.csv 3f89276dd760b5c4be3843a8a8a6b750207ee891
alpaca_eval_AOT.csv 3c164761173225e5883d37cf4b02d951762ee8df
alpaca_eval_margin_sigmoid.csv acb1c9b042f75d07b4ffb51655873b1f623f0001
""".split("\n")
    if line.strip()
]

GITHUB_SOURCES: dict[str, GitHubSource] = {
    # AlpacaEval 1.0: the 805 instructions with the reference (baseline) outputs of
    # text-davinci-003 as alpaca_eval's AlpacaEval 1.0 judging shows them to the judge: the
    # ``output_1`` of its own published AE1 annotations (prefopt.data.prepare
    # .alpaca_eval_1_reference). Not results/text_davinci_003/model_outputs.json: 785 of its 805
    # texts differ from the baseline the AE1 judges (and the paper's) saw.
    "alpaca_eval": GitHubSource(
        repo="tatsu-lab/alpaca_eval",
        commit="cd543a149df89434d8a54582c0151c0b945c3d20",
        files={
            ALPACA_EVAL_REFERENCE: (
                "results/phi-2-sft/alpaca_eval_gpt4/annotations.json",
                "e490746acb1ea6e41b81790d38572bdf70b73c60",
            ),
        },
    ),
    # MT-Bench: questions, FastChat's judge prompts, GPT-4 reference answers.
    "mt_bench": GitHubSource(
        repo="lm-sys/FastChat",
        commit="0e6d3e4beaab66f4d3f93db72541a4abab8af28d",
        files={
            "mt_bench/question.jsonl": (
                "fastchat/llm_judge/data/mt_bench/question.jsonl",
                "464e2c22f7a021a0f9a584d232338a9a17c40066",
            ),
            "mt_bench/judge_prompts.jsonl": (
                "fastchat/llm_judge/data/judge_prompts.jsonl",
                "4ec7524cbcdf308766fddc52df31e203316ad75f",
            ),
            "mt_bench/reference_answer/gpt-4.jsonl": (
                "fastchat/llm_judge/data/mt_bench/reference_answer/gpt-4.jsonl",
                "8b66387a3129cbb117178fe515491df553dd52df",
            ),
        },
    ),
    # The retired paper judge's recorded verdicts (alpaca_eval_gpt4_turbo_fn, gpt-4-1106-preview)
    # on three models' outputs, for judge calibration (prefopt.judging.calibration).
    "alpaca_eval_calibration": GitHubSource(
        repo="tatsu-lab/alpaca_eval",
        commit="cd543a149df89434d8a54582c0151c0b945c3d20",
        files={
            f"alpaca_eval_calibration/{model}/alpaca_eval_gpt4_turbo_fn/annotations.json": (
                f"results/{model}/alpaca_eval_gpt4_turbo_fn/annotations.json",
                blob,
            )
            for model, blob in (
                ("Mistral-7B-Instruct-v0.2", "5219d080be5d520ffdfc125432788e7e88d595a2"),
                ("gpt-3.5-turbo-0301", "157e7f54ce0a7675457890a006f5424cab399cfa"),
                ("gemini-pro", "715c6f03ec2455c1441712f2109f7b0d54e3ea5c"),
            )
        },
    ),
    # The paper authors' AlpacaEval annotations and leaderboards (their repository has no
    # licence, so they are fetched, never shipped with this repository).
    "authors_alpaca_eval": GitHubSource(
        repo="Oaynerad/11711---Alignment-on-small-LLM",
        commit="efb974b894ad77fd86e67260303260889f7c7642",
        files={f"authors_alpaca_eval/{rel}": (rel, blob) for rel, blob in _AUTHORS_BLOBS},
    ),
}
#: The Hub dataset (and its files) alpaca_eval's length-controlled win rate reads.
LC_ASSETS_REPO = "tatsu-lab/alpaca_eval"
LC_ASSET_FILES = ("df_gamed.csv", "instruction_difficulty.csv")
#: FastChat's MT-Bench Space: GPT-4's single-grading judgments and the answers it graded, for
#: the MT-Bench judge calibration (prefopt.judging.calibration_mt_bench). FastChat's own
#: downloader (fastchat/llm_judge/download_mt_bench_pregenerated.py) reads them at ``main``; the
#: revision is ``calibration.mt_bench.space_revision``, resolved to a commit and recorded.
MT_BENCH_SPACE_REPO = "lmsys/mt-bench"


# --------------------------------------------------------------------------- hashing, fetching


def git_blob_id(data: bytes) -> str:
    """The id git gives a file's bytes (``git hash-object``): what a commit pins."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 (git's id)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def github_raw_url() -> str:
    return os.environ.get(GITHUB_RAW_URL_ENV, DEFAULT_GITHUB_RAW_URL).rstrip("/")


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_HF_ENDPOINT).rstrip("/")


def _request(url: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"User-Agent": "prefopt-download"})


def fetch(source: str, url: str, dest: Path, timeout: float = 120.0) -> int:
    """Stream ``url`` (a raw GitHub file) into ``dest``; raise DownloadError naming ``source``
    on any failure.

    A body shorter than its Content-Length (a dropped connection) is an error, not a file.
    """
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout) as resp:  # noqa: S310
            expected = resp.headers.get("Content-Length")
            size = 0
            with open(dest, "wb") as fh:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    fh.write(chunk)
                    size += len(chunk)
    except urllib.error.HTTPError as err:
        hint = " (wrong revision or path?)" if err.code == 404 else ""
        raise DownloadError(f"{source}: HTTP {err.code} {err.reason} for {url}{hint}") from None
    except http.client.IncompleteRead as err:
        raise DownloadError(
            f"{source}: truncated download of {url}: the connection closed after "
            f"{len(err.partial)} more bytes"
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        raise DownloadError(f"{source}: could not fetch {url}: {err!r}") from None
    if expected is not None and size != int(expected):
        raise DownloadError(
            f"{source}: truncated download of {url}: {size} of {expected} bytes received"
        )
    return size


class _Staging:
    """A temporary folder beside the outputs; files move into place only on ``commit()``."""

    def __init__(self, out_root: Path) -> None:
        out_root.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=".partial-", dir=out_root))
        self.moves: list[tuple[Path, Path]] = []

    def path(self, final: Path) -> Path:
        staged = self.root / f"{len(self.moves):03d}-{final.name}"
        self.moves.append((staged, final))
        return staged

    def commit(self) -> None:
        for staged, final in self.moves:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)

    def __enter__(self) -> _Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- GitHub


def download_github(
    name: str, out_root: str | Path, commit: str | None = None, only: Iterable[str] | None = None
) -> dict[str, Any]:
    """Fetch source ``name`` of GITHUB_SOURCES into ``out_root`` (download layout).

    At the pinned commit every file must have its recorded git blob id. At another commit
    (a user's override) no id is known: the sha256 is recorded and a warning is returned.
    """
    src = GITHUB_SOURCES[name]
    commit = commit or src.commit
    pinned = commit == src.commit
    files = {k: v for k, v in src.files.items() if only is None or k in set(only)}
    record: dict[str, Any] = {
        "source": name,
        "repo": f"https://github.com/{src.repo}",
        "commit": commit,
        "checked_against": "git blob ids at the pinned commit" if pinned else None,
        "retrieved_utc": _utc_now(),
        "files": {},
    }
    if not pinned:
        record["warning"] = (
            f"commit {commit} is not the pinned {src.commit}: no known blob ids, sha256 recorded"
        )
    out_root = Path(out_root)
    with _Staging(out_root) as stage:
        for local, (remote, blob) in files.items():
            url = f"{github_raw_url()}/{src.repo}/{commit}/{remote}"
            staged = stage.path(out_root / local)
            fetch(name, url, staged)
            got = git_blob_id(staged.read_bytes())
            if pinned and got != blob:
                raise DownloadError(
                    f"{name}: checksum mismatch for {url}: git blob {got}, expected {blob} "
                    f"(the file at commit {commit}); nothing was kept"
                )
            record["files"][local] = {
                "url": url,
                "bytes": staged.stat().st_size,
                "sha256": sha256_file(staged),
                "git_blob": got,
            }
        stage.commit()
    return record


# --------------------------------------------------------------------------- Hugging Face


def _shown_url(url: str) -> str:
    """A URL as a message shows it: without its query (a CDN's signed URL carries credentials)."""
    return str(url).split("?", 1)[0]


def _hub_error(name: str, url: str, err: BaseException) -> DownloadError:
    """A DownloadError naming the source, the URL and what to do, for an error of
    huggingface_hub (or of the HTTP client under it) while fetching ``url``."""
    import httpx2
    from huggingface_hub.errors import FileMetadataError, HfHubHTTPError, OfflineModeIsEnabled

    cause = err.__cause__ if err.__cause__ is not None else err
    for e in (err, cause):
        if isinstance(e, HfHubHTTPError) and e.response is not None:
            code = e.response.status_code
            where = _shown_url(str(e.response.url))
            hint = {
                401: " (a private or gated repository? set HF_TOKEN to a token with access)",
                403: " (a gated repository? accept its terms and set HF_TOKEN)",
                404: " (wrong revision or path?)",
            }.get(code, "")
            return DownloadError(
                f"{name}: HTTP {code} {e.response.reason_phrase} for {where}{hint}"
            )
        if isinstance(e, OfflineModeIsEnabled):
            return _offline_error(name, url)
        if isinstance(e, FileMetadataError):
            return DownloadError(
                f"{name}: {_shown_url(url)} did not answer as a Hugging Face Hub endpoint "
                f"(is HF_ENDPOINT right?): {e}"
            )
    if isinstance(err, httpx2.RemoteProtocolError) or "Consistency check failed" in str(err):
        return DownloadError(
            f"{name}: truncated download of {_shown_url(url)}: the connection closed before the "
            f"whole file came, again after every retry ({err}); nothing was kept"
        )
    what = f"{type(cause).__name__}: {cause}"
    return DownloadError(
        f"{name}: could not fetch {_shown_url(url)} ({what}); check the network and HF_ENDPOINT"
    )


def _offline_error(name: str, url: str) -> DownloadError:
    return DownloadError(
        f"{name}: cannot download {_shown_url(url)}: huggingface_hub is in offline mode "
        "(HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set for this process). Unset it for the "
        "download rules, or point mirror_dir at a copy of the data"
    )


def _hub_type(repo_type: str) -> str:
    """huggingface_hub's name of a repository type (``dataset``, ``space``) from either form."""
    return repo_type.removesuffix("s")


def _check_online(name: str, url: str) -> None:
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise _offline_error(name, url)


def resolve_hf_dataset(
    name: str, repo_id: str, revision: str, repo_type: str = "dataset"
) -> dict[str, Any]:
    """The Hub's record of a dataset (``repo_type="space"``: a Space) at ``revision``, through
    ``HfApi.repo_info(files_metadata=True)`` (``/api/{type}s/{id}/revision/{rev}?blobs=true``):
    its commit ``sha`` and file ``siblings``, each ``{"rfilename", "size", "blobId", "lfs":
    {"size", "sha256"}}`` as the Hub lists them."""
    from huggingface_hub import HfApi

    kind = _hub_type(repo_type)
    url = f"{hf_endpoint()}/api/{kind}s/{repo_id}/revision/{revision}"
    _check_online(name, url)
    try:
        info = HfApi(endpoint=hf_endpoint(), library_name="prefopt").repo_info(
            repo_id, revision=revision, repo_type=kind, files_metadata=True
        )
    except Exception as err:  # huggingface_hub's and httpx2's errors, each mapped
        raise _hub_error(name, url, err) from None
    if not re.fullmatch(r"[0-9a-f]{40}", str(info.sha)):
        raise DownloadError(f"{name}: {url} gave no commit sha for revision {revision!r}")
    siblings = []
    for s in info.siblings or []:
        entry: dict[str, Any] = {"rfilename": s.rfilename, "size": s.size, "blobId": s.blob_id}
        if s.lfs is not None:
            entry["lfs"] = {"size": s.lfs.size, "sha256": s.lfs.sha256}
        siblings.append(entry)
    return {"sha": info.sha, "siblings": siblings}


def split_files(name: str, info: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """The data files of ``split``, as the Hub's datasets convention names them: files whose
    path has the split as a component prefix (``data/train-00000-of-00001.parquet``); in a
    repository without split names every data file belongs to ``train``."""
    files = sorted(
        (s for s in info.get("siblings", []) if s["rfilename"].endswith(HF_DATA_EXTENSIONS)),
        key=lambda s: s["rfilename"],
    )
    pattern = re.compile(rf"(^|/){re.escape(split)}([-_.][^/]*$|/)")
    chosen = [s for s in files if pattern.search(s["rfilename"])]
    if not chosen and split == "train":
        named = [
            s for s in files if re.search(r"(^|/)(test|validation|valid|dev)[-_./]", s["rfilename"])
        ]
        chosen = [s for s in files if s not in named]
    if not chosen:
        listed = ", ".join(s["rfilename"] for s in files) or "none"
        raise DownloadError(f"{name}: no data file for split {split!r} (data files: {listed})")
    return chosen


def _check_hub_file(name: str, url: str, path: Path, sibling: dict[str, Any]) -> dict[str, Any]:
    lfs = sibling.get("lfs") or {}
    got_sha256 = sha256_file(path)
    size = path.stat().st_size
    expected_size = lfs.get("size", sibling.get("size"))
    if expected_size is not None and size != int(expected_size):
        raise DownloadError(f"{name}: truncated download of {url}: {size} of {expected_size} bytes")
    if lfs.get("sha256"):
        if got_sha256 != lfs["sha256"]:
            raise DownloadError(
                f"{name}: checksum mismatch for {url}: sha256 {got_sha256}, "
                f"the Hub lists {lfs['sha256']}"
            )
    elif sibling.get("blobId"):
        got = git_blob_id(path.read_bytes())
        if got != sibling["blobId"]:
            raise DownloadError(
                f"{name}: checksum mismatch for {url}: git blob {got}, "
                f"the Hub lists {sibling['blobId']}"
            )
    else:
        raise DownloadError(f"{name}: the Hub lists no checksum for {sibling['rfilename']}")
    return {"url": url, "bytes": size, "sha256": got_sha256}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of one dataset file, in file order (parquet, JSON lines or a JSON list)."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise ValueError(f"{path.name}: expected a JSON list of rows")
    return rows


def _hf_record(name: str, repo_id: str, revision: str, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": name,
        "dataset": f"{hf_endpoint()}/datasets/{repo_id}",
        "requested_revision": revision,
        "resolved_commit": info["sha"],
        "retrieved_utc": _utc_now(),
        "files": {},
    }


def _fetch_hub_file(
    name: str,
    repo_id: str,
    sha: str,
    sibling: dict[str, Any],
    dest: Path,
    repo_type: str = "dataset",
) -> dict[str, Any]:
    """One listed file at commit ``sha`` into ``dest`` through ``hf_hub_download`` (into a
    folder beside ``dest``, then moved), checked against the Hub's listing."""
    from huggingface_hub import hf_hub_download, hf_hub_url

    kind = _hub_type(repo_type)
    rel = sibling["rfilename"]
    url = hf_hub_url(repo_id, rel, repo_type=kind, revision=sha, endpoint=hf_endpoint())
    _check_online(name, url)
    local_dir = Path(tempfile.mkdtemp(prefix=".hub-", dir=dest.parent))
    try:
        got = hf_hub_download(
            repo_id,
            rel,
            repo_type=kind,
            revision=sha,
            local_dir=local_dir,
            endpoint=hf_endpoint(),
            library_name="prefopt",
        )
        os.replace(got, dest)
    except DownloadError:
        raise
    except Exception as err:  # huggingface_hub's and httpx2's errors, each mapped
        raise _hub_error(name, url, err) from None
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)
    return _check_hub_file(name, url, dest, sibling)


def download_hf_split(
    name: str, repo_id: str, revision: str, split: str, out: str | Path
) -> dict[str, Any]:
    """A Hub dataset split as JSON lines (one row per line, in the Hub's file and row order)."""
    info = resolve_hf_dataset(name, repo_id, revision)
    record = {**_hf_record(name, repo_id, revision, info), "split": split}
    out = Path(out)
    with _Staging(out.parent) as stage:
        rows: list[dict[str, Any]] = []
        for i, sibling in enumerate(split_files(name, info, split)):
            part = stage.root / f"part-{i:03d}-{Path(sibling['rfilename']).name}"
            entry = _fetch_hub_file(name, repo_id, info["sha"], sibling, part)
            record["files"][sibling["rfilename"]] = entry
            try:
                rows.extend(read_rows(part))
            except (ValueError, OSError) as err:
                raise DownloadError(
                    f"{name}: {entry['url']} is not a readable data file: {err}"
                ) from None
        staged = stage.path(out)
        with open(staged, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        record["rows"] = len(rows)
        record["output_sha256"] = sha256_file(staged)
        stage.commit()
    return record


def download_hf_files(
    name: str, repo_id: str, revision: str, files: Iterable[str], out_dir: str | Path
) -> dict[str, Any]:
    """Named files of a Hub dataset at ``revision`` (resolved to a commit), verified."""
    info = resolve_hf_dataset(name, repo_id, revision)
    record = _hf_record(name, repo_id, revision, info)
    listed = {s["rfilename"]: s for s in info.get("siblings", [])}
    out_dir = Path(out_dir)
    with _Staging(out_dir) as stage:
        for rel in files:
            if rel not in listed:
                raise DownloadError(
                    f"{name}: {repo_id} has no file {rel!r} at commit {info['sha']}"
                )
            staged = stage.path(out_dir / rel)
            record["files"][rel] = _fetch_hub_file(name, repo_id, info["sha"], listed[rel], staged)
        stage.commit()
    return record


def download_hf_space_files(
    name: str, repo_id: str, revision: str, files: dict[str, str], out_dir: str | Path
) -> dict[str, Any]:
    """Files of a Hub Space at ``revision`` (resolved to a commit through
    ``/api/spaces/{id}/revision/{rev}``, fetched from ``/spaces/{id}/resolve/{sha}/{path}``
    by huggingface_hub),
    each verified against the Hub's listing: ``files`` maps the path under ``out_dir`` to the
    path in the Space. The record names the requested revision, the commit it resolved to and
    every file's url, size and sha256 (paths relative to ``out_dir``, as ``recorded_checksums``
    reads them); a revision that is not a commit sha is recorded with a warning to pin one."""
    info = resolve_hf_dataset(name, repo_id, revision, repo_type="space")
    record = {
        "source": name,
        "space": f"{hf_endpoint()}/spaces/{repo_id}",
        "requested_revision": revision,
        "resolved_commit": info["sha"],
        "retrieved_utc": _utc_now(),
        "files": {},
    }
    if revision != info["sha"]:
        record["warning"] = (
            f"revision {revision!r} is not a commit: it resolved to {info['sha']} on this day and "
            "may move; pin that commit (the files' sha256 below are what was read)"
        )
    listed = {s["rfilename"]: s for s in info.get("siblings", [])}
    out_dir = Path(out_dir)
    with _Staging(out_dir) as stage:
        for local, remote in files.items():
            if remote not in listed:
                raise DownloadError(
                    f"{name}: the Space {repo_id} has no file {remote!r} at commit {info['sha']}"
                )
            staged = stage.path(out_dir / local)
            entry = _fetch_hub_file(name, repo_id, info["sha"], listed[remote], staged, "space")
            record["files"][local] = {"path": remote, **entry}
        stage.commit()
    return record


def write_provenance(record: dict[str, Any], path: str | Path) -> None:
    write_json(record, path)


# --------------------------------------------------------------------------- reading a source


class SourceChecksumError(ValueError):
    """A source file that differs from (or is missing from) its recorded checksum."""


def recorded_checksums(root: str | Path) -> dict[str, tuple[str, str]]:
    """{path relative to `root`: (sha256, the record that lists it)} from every record of a
    download layout (results/downloads, a copy of it used as a mirror, or the shipped samples):
    `SHA256SUMS` at the top, each GitHub source's `provenance.json` (paths relative to the top),
    each Hub split's `<split>.provenance.json` (the JSON-lines file it wrote) and each Hub file
    set's `provenance.json` (paths relative to its folder)."""
    root = Path(root)
    out: dict[str, tuple[str, str]] = {}
    sums = root / "SHA256SUMS"
    if sums.is_file():
        for line in sums.read_text().splitlines():
            if line.strip():
                digest, name = line.split(maxsplit=1)
                out[name.strip().lstrip("*")] = (digest, "SHA256SUMS")
    for record_file in sorted(root.rglob("*provenance.json")):
        record = json.loads(record_file.read_text(encoding="utf-8"))
        where = record_file.relative_to(root).as_posix()
        if "output_sha256" in record:  # a Hub split written as <split>.jsonl
            data = record_file.name.removesuffix(".provenance.json") + ".jsonl"
            out[(record_file.parent / data).relative_to(root).as_posix()] = (
                record["output_sha256"],
                where,
            )
            continue
        base = root if record.get("source") in GITHUB_SOURCES else record_file.parent
        for name, entry in record.get("files", {}).items():
            rel = (base / name).relative_to(root).as_posix()
            out[rel] = (entry["sha256"], where)
    return out


def verify_sources(paths: Iterable[str | Path], root: str | Path) -> int:
    """Check every source among `paths` (files under `root`, the run's mirror or download
    folder) against the layout's records before a stage reads it: a file that was edited, cut
    short or swapped is refused with the file and both checksums; a file no record lists is
    refused too. A folder is checked for every file its records list under it (documentation
    beside the data is not read by any stage). Paths outside `root` (results of earlier rules,
    a local file) are not sources. Returns the number of files checked."""
    shown = Path(root)  # as given (relative under Snakemake): messages name no machine path
    root = shown.resolve()
    records: dict[str, tuple[str, str]] | None = None
    checked = 0
    for path in map(Path, paths):
        try:
            rel = path.resolve().relative_to(root).as_posix()
        except ValueError:
            continue
        if records is None:
            records = recorded_checksums(root)
        if path.is_dir():
            wanted = sorted(r for r in records if r.startswith(f"{rel}/") or rel == ".")
        else:
            wanted = [rel]
        for name in wanted:
            f = shown / name
            if name not in records:
                raise SourceChecksumError(
                    f"{path}: no checksum recorded for it in {shown} (SHA256SUMS or a provenance "
                    "record): a source must come from a verified download or a mirror of one"
                )
            expected, where = records[name]
            if not f.is_file():
                raise SourceChecksumError(f"{f}: missing, but {shown / where} lists it")
            got = sha256_file(f)
            if got != expected:
                raise SourceChecksumError(
                    f"{f}: sha256 {got}, but {shown / where} records {expected}: the file was "
                    "changed, cut short or replaced since it was verified. Restore it from its "
                    "source (or delete it and rerun with mirror_dir: null to download it again)"
                )
            checked += 1
    return checked


def source_root(config: dict[str, Any]) -> str:
    """Where a run's sources are read from: its mirror, or the download layout."""
    return config["mirror_dir"] or DOWNLOADS_DIR


def check_sources(smk: Any) -> int:
    """A rule script's sources checked before it reads them (`verify_sources` of its inputs
    under the run's mirror or download folder); the number of files checked."""
    paths = []
    for item in smk.input:  # a named input may be a list (an optional source: [] when absent)
        paths.extend(item if isinstance(item, list | tuple) else [item])
    return verify_sources(paths, source_root(smk.config))
