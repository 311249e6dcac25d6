"""The MT-Bench calibration source (FastChat's Hugging Face Space lmsys/mt-bench) fetched by
prefopt.data.download against a local stand-in of the Hub speaking the Space routes
(``/api/spaces/{id}/revision/{rev}?blobs=true`` and ``/spaces/{id}/resolve/{rev}/{path}``, LFS
files redirected to a CDN URL as the Hub does). The files are synthetic, in FastChat's formats:
the repository ships none of FastChat's judgments."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from standin_space import StandInSpaceHub
from standins import hub_online

from prefopt.data import download
from prefopt.judging import calibration_mt_bench as cmt

MODELS = ["gpt-4", "llama-13b"]


def _space_files() -> dict[str, bytes]:
    judgment = {
        "question_id": 81,
        "model": "gpt-4",
        "judge": ["gpt-4", "single-v1"],
        "user_prompt": "...",
        "judgment": "Rating: [[9]]",
        "score": 9,
        "turn": 1,
        "tstamp": 1687222021.0,
    }
    files = {
        "README.md": b"---\ntitle: MT-Bench\nsdk: gradio\n---\n",
        "data/mt_bench/model_judgment/gpt-4_single.jsonl": (json.dumps(judgment) + "\n").encode(),
    }
    for m in MODELS:
        answer = {
            "question_id": 81,
            "answer_id": "a",
            "model_id": m,
            "choices": [{"index": 0, "turns": ["one", "two"]}],
            "tstamp": 0.0,
        }
        files[f"data/mt_bench/model_answer/{m}.jsonl"] = (json.dumps(answer) + "\n").encode()
    return files


@pytest.fixture
def space(monkeypatch: pytest.MonkeyPatch):
    with StandInSpaceHub() as server:
        server.add_dataset(download.MT_BENCH_SPACE_REPO, _space_files())
        hub_online(monkeypatch, server)
        yield server


def test_space_files_are_fetched_verified_and_recorded(tmp_path: Path, space):
    files = cmt.layout_files(MODELS)
    assert files == {
        "model_judgment/gpt-4_single.jsonl": "data/mt_bench/model_judgment/gpt-4_single.jsonl",
        "model_answer/gpt-4.jsonl": "data/mt_bench/model_answer/gpt-4.jsonl",
        "model_answer/llama-13b.jsonl": "data/mt_bench/model_answer/llama-13b.jsonl",
    }
    out = tmp_path / cmt.LAYOUT_DIR
    record = download.download_hf_space_files(
        "mt_bench_calibration", download.MT_BENCH_SPACE_REPO, "main", files, out
    )
    sha = space.datasets[download.MT_BENCH_SPACE_REPO]["sha"]
    assert record["requested_revision"] == "main" and record["resolved_commit"] == sha
    assert record["space"] == f"{space.url}/spaces/lmsys/mt-bench"
    assert "pin" in record["warning"] and sha in record["warning"]
    upstream = _space_files()
    for local, remote in files.items():
        data = (out / local).read_bytes()
        assert data == upstream[remote]
        entry = record["files"][local]
        assert entry["path"] == remote and entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["url"] == f"{space.url}/spaces/lmsys/mt-bench/resolve/{sha}/{remote}"
    # read at the commit itself: no warning; the requests went to the Space routes
    again = download.download_hf_space_files(
        "mt_bench_calibration", download.MT_BENCH_SPACE_REPO, sha, files, tmp_path / "again"
    )
    assert "warning" not in again
    assert any(r.startswith("GET /api/spaces/lmsys/mt-bench/revision/") for r in space.requests)
    assert not any("/datasets/" in r for r in space.requests)


def test_the_provenance_record_verifies_the_layout(tmp_path: Path, space):
    """Written where the rule writes it, the record is what check_sources reads: the files
    verify, and an edited one is refused."""
    files = cmt.layout_files(MODELS)
    out = tmp_path / cmt.LAYOUT_DIR
    record = download.download_hf_space_files(
        "mt_bench_calibration", download.MT_BENCH_SPACE_REPO, "main", files, out
    )
    download.write_provenance(record, out / "provenance.json")
    assert (
        json.loads((out / "provenance.json").read_text())["resolved_commit"]
        == record["resolved_commit"]
    )
    paths = [tmp_path / cmt.source_path(rel) for rel in files]
    assert download.verify_sources(paths, tmp_path) == len(files)
    (tmp_path / cmt.answer_path("llama-13b")).write_text("{}\n")
    with pytest.raises(download.SourceChecksumError, match="llama-13b.jsonl"):
        download.verify_sources(paths, tmp_path)


def test_a_missing_file_or_revision_is_a_404_naming_the_source(tmp_path: Path, space):
    files = cmt.layout_files(MODELS)
    space.faults["data/mt_bench/model_answer/llama-13b.jsonl"] = "missing"
    with pytest.raises(download.DownloadError, match=r"mt_bench_calibration: HTTP 404.*llama-13b"):
        download.download_hf_space_files(
            "mt_bench_calibration", download.MT_BENCH_SPACE_REPO, "main", files, tmp_path / "a"
        )
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").rglob("*.jsonl"))
    with pytest.raises(download.DownloadError, match=r"mt_bench_calibration: HTTP 404.*no-such"):
        download.download_hf_space_files(
            "mt_bench_calibration", download.MT_BENCH_SPACE_REPO, "no-such", files, tmp_path / "b"
        )
    unlisted = cmt.layout_files(["vicuna-13b-v1.3"])
    with pytest.raises(download.DownloadError, match="has no file 'data/mt_bench/model_answer/vi"):
        download.download_hf_space_files(
            "mt_bench_calibration", download.MT_BENCH_SPACE_REPO, "main", unlisted, tmp_path / "c"
        )


@pytest.mark.parametrize(
    ("fault", "message"), [("corrupt", "checksum mismatch"), ("truncate", "truncated")]
)
def test_bad_bytes_fail_and_leave_nothing(tmp_path: Path, space, fault, message):
    space.faults["data/mt_bench/model_judgment/gpt-4_single.jsonl"] = fault
    with pytest.raises(download.DownloadError, match=message):
        download.download_hf_space_files(
            "mt_bench_calibration",
            download.MT_BENCH_SPACE_REPO,
            "main",
            cmt.layout_files(MODELS),
            tmp_path,
        )
    assert sorted(p.name for p in tmp_path.rglob("*")) == []
