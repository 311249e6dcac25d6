"""prefopt.data.download against local stand-ins of the Hub and of raw GitHub (tests/standins.py).

The stand-ins serve the real bytes (the upstream files shipped in workflow/resources/data, and a
parquet of the shipped UltraFeedback rows in trl-lib's schema); faults are injected per file.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest
from standins import (
    AE_SAMPLE_COMMIT,
    UF_LOCAL,
    UF_REPO,
    StandInGitHubRaw,
    github_tree,
    hub_online,
    shipped_github,
    shipped_hub,
)

from prefopt.data import download
from prefopt.data.prepare import (
    ALPACA_EVAL_1_FIELDS,
    ALPACA_EVAL_1_ITEMS,
    alpaca_eval_1_reference,
    read_jsonl,
)
from prefopt.runtime import write_json


@pytest.fixture
def github(embedded_data: Path, monkeypatch: pytest.MonkeyPatch):
    with shipped_github(embedded_data) as server:
        monkeypatch.setenv(download.GITHUB_RAW_URL_ENV, server.url)
        yield server


@pytest.fixture
def hub(embedded_data: Path, monkeypatch: pytest.MonkeyPatch):
    with shipped_hub(embedded_data) as server:
        hub_online(monkeypatch, server)
        yield server


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ------------------------------------------------------------------- the shipped data itself


def test_shipped_mt_bench_files_are_the_pinned_upstream_bytes(embedded_data: Path):
    for local, (_, blob) in download.GITHUB_SOURCES["mt_bench"].files.items():
        assert download.git_blob_id((embedded_data / local).read_bytes()) == blob, local


def alpaca_eval_sample(rows: list[dict]) -> list[dict]:
    """The shipped AlpacaEval sample's rule (its PROVENANCE.md): every row, the fields read."""
    return [{key: row[key] for key in ALPACA_EVAL_1_FIELDS} for row in rows]


def test_shipped_alpaca_eval_sample_holds_every_item_and_only_the_fields_read(embedded_data):
    (local,) = download.GITHUB_SOURCES["alpaca_eval"].files
    rows = json.loads((embedded_data / local).read_text(encoding="utf-8"))
    assert len(rows) == ALPACA_EVAL_1_ITEMS
    assert all(list(row) == list(ALPACA_EVAL_1_FIELDS) for row in rows)
    assert alpaca_eval_sample(rows) == rows
    reference = alpaca_eval_1_reference(rows)  # the benchmark's checks hold on the sample
    assert [r["instruction"] for r in reference] == [r["instruction"] for r in rows]


@pytest.mark.mirror
def test_alpaca_eval_sample_is_cut_from_the_pinned_upstream_file(
    tmp_path, mirror, embedded_data, monkeypatch
):
    """With the whole file in a mirror: it is the pinned upstream bytes, the shipped sample is
    its four fields written by write_json, byte for byte, and the download's code fetches it."""
    src = download.GITHUB_SOURCES["alpaca_eval"]
    ((local, (remote, blob)),) = src.files.items()
    full = mirror / local
    if not full.is_file() or download.git_blob_id(full.read_bytes()) != blob:
        pytest.skip(f"the mirror holds no upstream {local} (a mirror of the samples?)")
    rows = json.loads(full.read_text(encoding="utf-8"))
    write_json(alpaca_eval_sample(rows), tmp_path / "cut.json")
    shipped = embedded_data / local
    assert (tmp_path / "cut.json").read_bytes() == shipped.read_bytes()
    assert alpaca_eval_1_reference(rows) == alpaca_eval_1_reference(json.loads(shipped.read_text()))
    with StandInGitHubRaw() as github:
        github.add_tree(src.repo, src.commit, {remote: full})
        monkeypatch.setenv(download.GITHUB_RAW_URL_ENV, github.url)
        record = download.download_github("alpaca_eval", tmp_path / "fetched")
    assert record["files"][local]["git_blob"] == blob


def test_shipped_alpaca_eval_sample_fails_the_pinned_blob_check(tmp_path, embedded_data, github):
    """The sample is not the upstream file: served as if it were, the download refuses it."""
    src = download.GITHUB_SOURCES["alpaca_eval"]
    github.add_tree(src.repo, src.commit, github_tree(embedded_data, "alpaca_eval"))
    with pytest.raises(download.DownloadError, match=r"^alpaca_eval: checksum mismatch"):
        download.download_github("alpaca_eval", tmp_path)
    assert leftovers(tmp_path) == []


def test_shipped_files_match_their_recorded_sha256(embedded_data: Path):
    """Every shipped data file is listed in SHA256SUMS and in its source's PROVENANCE.md."""
    sums = {}
    for line in (embedded_data / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        sums[rel] = digest
    docs = ("SHA256SUMS", "README.md", "PROVENANCE.md", "LICENSE")
    shipped = {
        str(p.relative_to(embedded_data))
        for p in embedded_data.rglob("*")
        if p.is_file() and p.name not in docs and "LICENSES" not in p.parts
    }
    assert set(sums) == shipped
    for rel, digest in sums.items():
        assert hashlib.sha256((embedded_data / rel).read_bytes()).hexdigest() == digest, rel
        provenance = (embedded_data / rel.split("/")[0] / "PROVENANCE.md").read_text()
        assert digest in provenance, f"{rel}: sha256 not in its PROVENANCE.md"


def test_shipped_data_stays_small(embedded_data: Path):
    total = sum(p.stat().st_size for p in embedded_data.rglob("*") if p.is_file())
    assert total <= 3 * 1024 * 1024, f"{total} bytes shipped"


# ------------------------------------------------------------------- GitHub files


def test_github_source_fetched_byte_identical_with_provenance(tmp_path, github, embedded_data):
    record = download.download_github("mt_bench", tmp_path)
    for local, (remote, blob) in download.GITHUB_SOURCES["mt_bench"].files.items():
        assert (tmp_path / local).read_bytes() == (embedded_data / local).read_bytes()
        entry = record["files"][local]
        assert entry["git_blob"] == blob
        assert entry["url"].startswith(f"{github.url}/lm-sys/FastChat/")
        assert entry["url"].endswith(remote)
    assert record["commit"] == download.GITHUB_SOURCES["mt_bench"].commit
    assert leftovers(tmp_path) == [
        "mt_bench",
        "mt_bench/judge_prompts.jsonl",
        "mt_bench/question.jsonl",
        "mt_bench/reference_answer",
        "mt_bench/reference_answer/gpt-4.jsonl",
    ]


def test_github_wrong_commit_is_a_404_naming_the_source(tmp_path, github):
    with pytest.raises(download.DownloadError, match=r"^alpaca_eval: HTTP 404 .*wrong revision"):
        download.download_github("alpaca_eval", tmp_path, commit="0" * 40)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [("truncate", r"mt_bench: truncated download"), ("corrupt", r"mt_bench: checksum mismatch")],
)
def test_github_bad_bytes_fail_and_leave_nothing(tmp_path, github, fault, message):
    """The fault hits the second file: the first, already fetched, is not kept either."""
    src = download.GITHUB_SOURCES["mt_bench"]
    path = f"/{src.repo}/{src.commit}/fastchat/llm_judge/data/judge_prompts.jsonl"
    github.faults[path] = fault
    with pytest.raises(download.DownloadError, match=message):
        download.download_github("mt_bench", tmp_path)
    assert leftovers(tmp_path) == []


def test_github_other_commit_records_sha256_and_warns(tmp_path, github, embedded_data):
    record = download.download_github("alpaca_eval", tmp_path, commit=AE_SAMPLE_COMMIT)
    assert "not the pinned" in record["warning"] and record["checked_against"] is None
    (local,) = record["files"]
    data = (tmp_path / local).read_bytes()
    assert data == (embedded_data / local).read_bytes()
    assert record["files"][local]["sha256"] == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------- Hugging Face datasets


def test_hub_split_is_the_shipped_sample_byte_for_byte(tmp_path, hub, embedded_data):
    out = tmp_path / UF_LOCAL
    record = download.download_hf_split("preference_data", UF_REPO, "main", "train", out)
    assert out.read_bytes() == (embedded_data / UF_LOCAL).read_bytes()
    assert record["resolved_commit"] == hub.datasets[UF_REPO]["sha"]
    assert list(record["files"]) == ["data/train-00000-of-00001.parquet"]  # not the test split
    assert record["rows"] == len(read_jsonl(out))
    # The files are fetched at the resolved commit, never at the moving branch name.
    resolves = [r for r in hub.requests if "/resolve/" in r]
    assert resolves and all(record["resolved_commit"] in r for r in resolves)
    assert leftovers(tmp_path) == ["ultrafeedback_binarized", UF_LOCAL]


def test_hub_unknown_revision_names_the_source(tmp_path, hub):
    with pytest.raises(download.DownloadError, match=r"^preference_data: HTTP 404 .*revision/v9"):
        download.download_hf_split("preference_data", UF_REPO, "v9", "train", tmp_path / "x.jsonl")
    assert leftovers(tmp_path) == []


def test_hub_unknown_split_lists_the_data_files(tmp_path, hub):
    with pytest.raises(download.DownloadError, match=r"no data file for split 'dev'.*train-0"):
        download.download_hf_split("preference_data", UF_REPO, "main", "dev", tmp_path / "x.jsonl")


@pytest.mark.parametrize(
    ("fault", "message"),
    [("truncate", "truncated download"), ("corrupt", "checksum mismatch.*sha256")],
)
def test_hub_bad_bytes_fail_and_leave_nothing(tmp_path, hub, fault, message):
    hub.faults["data/train-00000-of-00001.parquet"] = fault
    with pytest.raises(download.DownloadError, match=rf"^preference_data: {message}"):
        download.download_hf_split("preference_data", UF_REPO, "main", "train", tmp_path / "x")
    assert leftovers(tmp_path) == []


def test_hub_repository_without_split_names_reads_every_data_file(tmp_path, hub):
    """openbmb/UltraFeedback's layout: one JSON-lines file per source, all in `train`."""
    files = {
        "README.md": b"# card\n",
        "sharegpt.jsonl": b'{"source": "sharegpt", "i": 1}\n',
        "evol_instruct.jsonl": b'{"source": "evol_instruct", "i": 0}\n',
    }
    hub.add_dataset("openbmb/UltraFeedback", files)
    out = tmp_path / "listwise.jsonl"
    download.download_hf_split("listwise_data", "openbmb/UltraFeedback", "main", "train", out)
    assert [r["source"] for r in read_jsonl(out)] == ["evol_instruct", "sharegpt"]


def test_hub_named_files_are_verified(tmp_path, hub):
    """The LC-assets route: named files of a dataset at a resolved commit, checked against the
    Hub's listing. (These CSVs are placeholders: the protocol is under test, not their numbers.)"""
    files = {name: f"{name},1\n".encode() for name in download.LC_ASSET_FILES}
    sha = hub.add_dataset(download.LC_ASSETS_REPO, {**files, "README.md": b"card\n"})
    record = download.download_hf_files(
        "alpaca_eval_lc", download.LC_ASSETS_REPO, "main", download.LC_ASSET_FILES, tmp_path
    )
    assert record["resolved_commit"] == sha
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data
        assert record["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
    with pytest.raises(download.DownloadError, match=r"alpaca_eval_lc: .* has no file 'x.csv'"):
        download.download_hf_files(
            "alpaca_eval_lc", download.LC_ASSETS_REPO, "main", ["x.csv"], tmp_path
        )


def test_hub_token_is_sent_but_never_in_errors(tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    with pytest.raises(download.DownloadError) as err:
        download.download_hf_split("preference_data", UF_REPO, "nope", "train", tmp_path / "x")
    assert "hf_secret_value_123" not in str(err.value)
    assert re.search(r"HTTP 404", str(err.value))


def test_hub_token_goes_to_the_hub_never_to_the_cdn(tmp_path, hub, monkeypatch):
    """huggingface_hub sends HF_TOKEN to the Hub's API and resolve routes and drops it for the
    LFS redirect to the CDN (another origin); the record does not carry it."""
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    record = download.download_hf_split(
        "preference_data", UF_REPO, "main", "train", tmp_path / "t.jsonl"
    )
    assert any(r.startswith("GET /api/datasets/") for r in hub.authorized)
    assert any("/resolve/" in r for r in hub.authorized)
    assert hub.cdn.requests and hub.cdn.authorized == []
    assert "hf_secret_value_123" not in json.dumps(record)


def test_hub_offline_mode_is_refused_before_any_request(tmp_path, hub, monkeypatch):
    """HF_HUB_OFFLINE (read by huggingface_hub at import) stops the download with the source,
    the variable and what to do; the Hub is not asked."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(download.DownloadError, match=r"^preference_data: .*offline.*HF_HUB_OFF"):
        download.download_hf_split("preference_data", UF_REPO, "main", "train", tmp_path / "x")
    assert hub.requests == [] and leftovers(tmp_path) == []


def test_hub_download_interrupted_halfway_resumes_with_a_range_request(tmp_path, hub):
    """The CDN drops the connection halfway through a large LFS file on the first request:
    huggingface_hub asks for the rest with ``Range`` (from the last whole chunk it wrote, a
    multiple of its chunk size, hence a file of a few chunks), and the file that results is
    the Hub's, byte for byte, checked against its sha256."""
    from huggingface_hub import constants

    size = 2 * constants.DOWNLOAD_CHUNK_SIZE + 12345
    data = random.Random(0).randbytes(size)
    sha = hub.add_dataset(download.LC_ASSETS_REPO, {"df_gamed.csv": data})
    hub.faults["df_gamed.csv"] = "interrupt"
    record = download.download_hf_files(
        "alpaca_eval_lc", download.LC_ASSETS_REPO, "main", ["df_gamed.csv"], tmp_path
    )
    assert (tmp_path / "df_gamed.csv").read_bytes() == data
    assert record["resolved_commit"] == sha
    assert record["files"]["df_gamed.csv"]["sha256"] == hashlib.sha256(data).hexdigest()
    cdn_gets = [r for r in hub.cdn.requests if r.startswith("GET ")]
    assert len(cdn_gets) == 2  # the interrupted transfer and the rest of the file
    ((path, wanted),) = [r.split(" ", 1) for r in hub.cdn.ranges]
    assert path == f"/cdn/{hashlib.sha256(data).hexdigest()}"
    start = int(re.fullmatch(r"bytes=(\d+)-", wanted)[1])
    assert 0 < start <= size // 2  # resumed, not restarted
    assert leftovers(tmp_path) == ["df_gamed.csv"]


def test_provenance_is_json(tmp_path, hub):
    record = download.download_hf_split(
        "preference_data", UF_REPO, "main", "train", tmp_path / "t.jsonl"
    )
    download.write_provenance(record, tmp_path / "t.provenance.json")
    assert json.loads((tmp_path / "t.provenance.json").read_text())["split"] == "train"


# ------------------------------------------------------------------- reading a source later


def test_a_download_layout_verifies_by_its_own_records(tmp_path, github, hub):
    """The three kinds of record a download writes (GitHub provenance.json, a Hub split's
    <split>.provenance.json, a Hub file set's provenance.json) each vouch for their files, so a
    copy of results/downloads used as a mirror is checked file by file; one changed byte in
    any of them is refused with the file and both checksums."""
    root = tmp_path / "downloads"
    download.write_provenance(
        download.download_github("mt_bench", root), root / "mt_bench" / "provenance.json"
    )
    split = root / UF_LOCAL
    download.write_provenance(
        download.download_hf_split("preference_data", UF_REPO, "main", "train", split),
        split.with_name("train.provenance.json"),
    )
    hub.add_dataset(download.LC_ASSETS_REPO, {n: b"a,1\n" for n in download.LC_ASSET_FILES})
    lc = root / "alpaca_eval_lc"
    download.write_provenance(
        download.download_hf_files(
            "alpaca_eval_lc", download.LC_ASSETS_REPO, "main", download.LC_ASSET_FILES, lc
        ),
        lc / "provenance.json",
    )
    sources = [root / "mt_bench" / "question.jsonl", split, lc]
    assert download.verify_sources(sources, root) == 1 + 1 + len(download.LC_ASSET_FILES)
    assert download.verify_sources([tmp_path / "elsewhere.jsonl"], root) == 0  # not a source
    for victim in (root / "mt_bench" / "question.jsonl", split, lc / download.LC_ASSET_FILES[0]):
        original = victim.read_bytes()
        victim.write_bytes(original[:-2] + b"X\n")
        with pytest.raises(download.SourceChecksumError) as err:
            download.verify_sources(sources, root)
        message = str(err.value)
        assert str(victim) in message and hashlib.sha256(original).hexdigest() in message
        assert "provenance.json records" in message
        victim.write_bytes(original)


def test_the_shipped_mirror_verifies_and_a_changed_or_unlisted_file_is_refused(
    tmp_path, embedded_data
):
    import shutil

    mirror = tmp_path / "mirror"
    shutil.copytree(embedded_data, mirror)
    train = mirror / UF_LOCAL
    assert download.verify_sources([train, mirror / "mt_bench"], mirror) == 1 + 3
    lines = train.read_text().splitlines(keepends=True)
    train.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # cut short
    with pytest.raises(download.SourceChecksumError, match=r"SHA256SUMS records [0-9a-f]{64}"):
        download.verify_sources([train], mirror)
    with pytest.raises(download.SourceChecksumError, match=r"extra.jsonl: no checksum recorded"):
        download.verify_sources([mirror / "mt_bench" / "extra.jsonl"], mirror)
    (mirror / "mt_bench" / "question.jsonl").unlink()  # a folder source lacking a listed file
    with pytest.raises(download.SourceChecksumError, match=r"question.jsonl: missing, but .*SHA"):
        download.verify_sources([mirror / "mt_bench"], mirror)
