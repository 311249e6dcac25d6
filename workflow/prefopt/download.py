"""Fetch the pinned public sources into the mirror layout (needs internet; else use a mirror).

Every download records where it came from (URL or dataset id + resolved commit) in a
PROVENANCE.json beside the files, so each number can be traced to its exact input.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from prefopt.data import write_jsonl
from prefopt.runtime import write_json

GITHUB_RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
FASTCHAT_FILES = {
    "question.jsonl": "fastchat/llm_judge/data/mt_bench/question.jsonl",
    "judge_prompts.jsonl": "fastchat/llm_judge/data/judge_prompts.jsonl",
    "reference_answer/gpt-4.jsonl": "fastchat/llm_judge/data/mt_bench/reference_answer/gpt-4.jsonl",
}
AUTHORS_FOLDERS = (
    "Original",
    "DPO",
    "DPO_hinge",
    "APO",
    "APO_zero_hinge",
    "APO_hinge_softplus_beta",
    "EXO",
)


def fetch(url: str, dest: str | Path, timeout: float = 60.0) -> None:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (pinned https URL)
        dest.write_bytes(resp.read())


def download_preference_data(spec: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """trl-lib/ultrafeedback_binarized split -> JSONL (message lists kept; prepare flattens)."""
    from datasets import load_dataset
    from huggingface_hub import HfApi

    sha = HfApi().dataset_info(spec["id"], revision=spec["revision"]).sha
    ds = load_dataset(spec["id"], revision=sha, split=spec["split"])
    rows = [{**row, "source_index": i} for i, row in enumerate(ds)]
    write_jsonl(rows, out)
    return {
        "id": spec["id"],
        "requested_revision": spec["revision"],
        "resolved_sha": sha,
        "split": spec["split"],
        "rows": len(rows),
    }


def download_alpaca_eval(spec: dict[str, Any], out: str | Path) -> dict[str, Any]:
    url = GITHUB_RAW.format(
        repo="tatsu-lab/alpaca_eval",
        commit=spec["repo_revision"],
        path="results/text_davinci_003/model_outputs.json",
    )
    fetch(url, out)
    return {"url": url, "rows": len(json.loads(Path(out).read_text()))}


def download_mt_bench(spec: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    urls = {}
    for local, remote in FASTCHAT_FILES.items():
        url = GITHUB_RAW.format(
            repo="lm-sys/FastChat", commit=spec["fastchat_revision"], path=remote
        )
        fetch(url, Path(out_dir) / local)
        urls[local] = url
    return {"urls": urls}


def download_authors_annotations(spec: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    urls = {}
    for folder in AUTHORS_FOLDERS:
        for name in ("annotations.json", "leaderboard.csv"):
            rel = f"alpaca_eval_{folder}/{name}"
            url = GITHUB_RAW.format(repo=spec["repo"], commit=spec["commit"], path=rel)
            fetch(url, Path(out_dir) / rel)
            urls[rel] = url
    for rel in ("alpaca_eval_AOT.csv", "alpaca_eval_margin_sigmoid.csv"):
        url = GITHUB_RAW.format(repo=spec["repo"], commit=spec["commit"], path=rel)
        fetch(url, Path(out_dir) / rel)
        urls[rel] = url
    return {"urls": urls}


def download_lc_assets(spec: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """alpaca_eval's length-controlled win-rate assets, which it otherwise fetches at run time."""
    from huggingface_hub import HfApi, hf_hub_download

    repo = "tatsu-lab/alpaca_eval"
    sha = HfApi().dataset_info(repo, revision=spec["lc_assets_revision"]).sha
    for name in ("df_gamed.csv", "instruction_difficulty.csv"):
        hf_hub_download(repo, name, repo_type="dataset", revision=sha, local_dir=out_dir)
    return {"id": repo, "requested_revision": spec["lc_assets_revision"], "resolved_sha": sha}


def write_provenance(info: dict[str, Any], folder: str | Path) -> None:
    write_json(info, Path(folder) / "PROVENANCE.json")
