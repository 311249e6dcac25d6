"""The download route (`mirror_dir: null`) through the real DAG, against local stand-ins.

The stand-in Hub and raw-GitHub servers (tests/standins.py) serve the bytes the real services
would: the upstream MT-Bench files shipped in workflow/resources/data, and a parquet of the
shipped UltraFeedback rows in trl-lib's schema. The shipped AlpacaEval file is a cut of the
upstream one (four fields), so the stand-in serves it at a commit of its own
(`standins.AE_SAMPLE_COMMIT`), which these runs name, and the download records its sha256.
Every `results/data/*` file the download route prepares must be byte-identical to what the
shipped-data route prepares; a corrupted or missing download must fail naming its source,
leave no file behind, and keep what was already computed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import copy_workflow, run_snakemake, snakemake_env
from standins import AE_SAMPLE_COMMIT, UF_REPO, shipped_github, shipped_hub

from prefopt.data import download

pytestmark = pytest.mark.e2e

#: Everything the prepare rules write (the model-free part of the DAG).
DATA_TARGETS = [
    "results/data/train_pairs.jsonl",
    "results/data/train_pairs.report.json",
    "results/data/alpaca_eval.json",
    "results/data/mt_bench_questions.jsonl",
    "results/data/mt_bench_judge_prompts.jsonl",
    "results/data/mt_bench_reference_answers.jsonl",
]
AUDIT = ["results/tables/audit_paper_numbers.csv", "results/tables/audit_paper_numbers.md"]


@pytest.fixture(scope="module")
def servers(embedded_data: Path):
    """Stand-ins holding every source the shipped data covers (not the authors' files)."""
    with shipped_hub(embedded_data) as hub, shipped_github(embedded_data) as github:
        yield hub, github


def run(work: Path, servers, *args: str, mirror: str | None = None):
    hub, github = servers
    env = snakemake_env(
        HF_ENDPOINT=hub.url,
        HF_HUB_OFFLINE="0",
        **{download.GITHUB_RAW_URL_ENV: github.url},
    )
    (work / "ae_sample_commit.yaml").write_text(
        f"data: {{alpaca_eval: {{repo_revision: '{AE_SAMPLE_COMMIT}'}}}}\n"
    )
    return run_snakemake(
        work,
        *args,  # targets and flags first: --configfile and --config take several values
        "--cores",
        "2",
        "--configfile",
        "tests/config.tiny.yaml",
        "ae_sample_commit.yaml",
        "--config",
        f"mirror_dir={mirror or 'null'}",
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def routes(module_tmp_path, servers):
    """The prepared data by both routes, each in its own copy of the workflow."""
    shipped = copy_workflow(module_tmp_path / "shipped")
    fetched = copy_workflow(module_tmp_path / "fetched")
    a = run(shipped, servers, *DATA_TARGETS, mirror="workflow/resources/data")
    assert a.returncode == 0, a.stderr[-4000:]
    b = run(fetched, servers, *DATA_TARGETS)
    assert b.returncode == 0, b.stderr[-4000:]
    return shipped, fetched


def test_download_route_prepares_byte_identical_data(routes):
    shipped, fetched = routes
    names = sorted(p.name for p in (shipped / "results" / "data").iterdir())
    assert names == sorted(Path(t).name for t in DATA_TARGETS)
    assert sorted(p.name for p in (fetched / "results" / "data").iterdir()) == names
    for name in names:
        a = (shipped / "results" / "data" / name).read_bytes()
        b = (fetched / "results" / "data" / name).read_bytes()
        assert a == b, f"results/data/{name} differs between the shipped and downloaded routes"
    assert not (shipped / "results" / "downloads").exists()  # the shipped route fetched nothing


def test_downloads_record_what_they_got(routes, servers):
    _, fetched = routes
    hub, _ = servers
    downloads = fetched / "results" / "downloads"
    uf = json.loads((downloads / "ultrafeedback_binarized" / "train.provenance.json").read_text())
    assert uf["resolved_commit"] == hub.datasets[UF_REPO]["sha"]
    assert uf["requested_revision"] == "main"
    assert list(uf["files"]) == ["data/train-00000-of-00001.parquet"]
    ae = json.loads((downloads / "alpaca_eval" / "provenance.json").read_text())
    assert ae["commit"] == AE_SAMPLE_COMMIT and "not the pinned" in ae["warning"]
    mt = json.loads((downloads / "mt_bench" / "provenance.json").read_text())
    assert mt["commit"] == download.GITHUB_SOURCES["mt_bench"].commit
    assert {e["git_blob"] for e in mt["files"].values()} == {
        blob for _, blob in download.GITHUB_SOURCES["mt_bench"].files.values()
    }
    assert not list(downloads.rglob(".partial-*"))


def test_corrupted_download_fails_cleanly_and_keeps_finished_work(tmp_path, servers):
    """A checksum mismatch on one MT-Bench file (at its pinned commit): that job fails naming the
    source and leaves no file; with --keep-going the jobs that did not depend on it finish and
    stay."""
    hub, github = servers
    work = copy_workflow(tmp_path / "repo")
    src = download.GITHUB_SOURCES["mt_bench"]
    remote = src.files["mt_bench/judge_prompts.jsonl"][0]
    key = f"/{src.repo}/{src.commit}/{remote}"
    github.faults[key] = "corrupt"
    try:
        proc = run(work, servers, "--keep-going", *DATA_TARGETS)
    finally:
        github.faults.pop(key)
    assert proc.returncode != 0
    log = (work / "results" / "logs" / "download_mt_bench.log").read_text()
    assert "mt_bench: checksum mismatch" in log and "nothing was kept" in log
    downloads = work / "results" / "downloads"
    assert not (downloads / "mt_bench").exists() or not any((downloads / "mt_bench").iterdir())
    assert not list(downloads.rglob(".partial-*"))
    assert not list((work / "results" / "data").glob("mt_bench_*"))
    # unaffected work finished and is kept
    assert (work / "results" / "data" / "train_pairs.jsonl").is_file()
    assert (work / "results" / "data" / "alpaca_eval.json").is_file()
    # the next run, with the fault gone, fetches only what is missing
    again = run(work, servers, *DATA_TARGETS)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "download_mt_bench" in again.stdout + again.stderr
    assert "download_alpaca_eval" not in again.stdout + again.stderr


def test_audit_without_the_authors_files_says_why(tmp_path, servers):
    """The shipped data has no authors' annotations (no licence): the audit still finishes,
    with the paper's numbers and the reason."""
    work = copy_workflow(tmp_path / "repo")
    proc = run(work, servers, *AUDIT, mirror="workflow/resources/data")
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (work / AUDIT[1]).read_text()
    assert "**Not audited:**" in md and "authors' AlpacaEval annotations not available" in md
    assert "mirror_dir: null" in md


def test_missing_authors_download_names_the_source(tmp_path, servers):
    """No internet copy of the authors' files (the stand-in lacks them): a clear 404."""
    work = copy_workflow(tmp_path / "repo")
    proc = run(work, servers, AUDIT[0])
    assert proc.returncode != 0
    log = (work / "results" / "logs" / "download_authors_annotations.log").read_text()
    assert "authors_alpaca_eval: HTTP 404" in log
    assert not (work / "results" / "downloads" / "authors_alpaca_eval").exists()


@pytest.mark.mirror
def test_authors_download_audits_like_the_mirror(tmp_path, servers, mirror):
    """With the authors' files (from a mirror) behind the stand-in, the downloaded audit is the
    mirror's, byte for byte."""
    hub, github = servers
    src = download.GITHUB_SOURCES["authors_alpaca_eval"]
    github.add_tree(
        src.repo, src.commit, {rel: mirror / local for local, (rel, _) in src.files.items()}
    )
    from_mirror = copy_workflow(tmp_path / "a")
    shutil.copytree(mirror / "authors_alpaca_eval", tmp_path / "m" / "authors_alpaca_eval")
    a = run(from_mirror, servers, *AUDIT, mirror=str(tmp_path / "m"))
    assert a.returncode == 0, a.stderr[-3000:]
    fetched = copy_workflow(tmp_path / "b")
    b = run(fetched, servers, *AUDIT)
    assert b.returncode == 0, b.stderr[-3000:]
    for target in AUDIT:
        assert (from_mirror / target).read_bytes() == (fetched / target).read_bytes()
