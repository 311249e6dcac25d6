"""What produced a run's results: results/provenance.json and the one-line stamp every table and
figure carries, so a reviewer can tie a number to the code, config, data and judges behind it.

The file holds the code commit and whether the checkout had uncommitted changes, a hash of the
resolved config (and the config itself), the versions of the packages that did the work, the
sha256 of every prepared data file and model file, the seeds, the generation engine and the judge
models as the APIs reported them. The stamp is "code <commit>, config <hash>": short enough for a
footnote, and both halves match the file.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from prefopt.config import RESOURCE_KEYS
from prefopt.runtime import package_versions

#: Where the DAG writes it (rule write_provenance); tables and figures cite it by this path.
PROVENANCE_PATH = "results/provenance.json"
#: Characters of the commit and of the config hash shown in a stamp (the file has them in full).
SHORT = 12
UNKNOWN_COMMIT = "unknown"
DIR_MARKER = ".snakemake_timestamp"
_STAMP = re.compile(r"code (\w+?)(\+dirty)?, config ([0-9a-f]+)")
#: Paths under these folders are outputs, not code: their changes do not make the code dirty.
_NOT_CODE = ("results/", ".snakemake/", ".venv/")


def results_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without its resource keys (`RESOURCE_KEYS`): what the results depend on."""
    out = json.loads(json.dumps(config, default=str))
    for section, key in RESOURCE_KEYS:
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the resolved config, resource keys left out, as canonical JSON (sorted keys):
    equal configs, equal hash, whatever the order or the file they were layered from."""
    text = json.dumps(results_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_state(root: str | Path) -> dict[str, Any]:
    """The commit checked out at `root` and whether tracked code differs from it.

    Outside a git checkout (an unpacked archive, a copy) the commit is "unknown" and `dirty` is
    None: the stamp then says so instead of guessing.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=60
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = [
            line[3:]
            for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
            if not line[3:].startswith(_NOT_CODE)
        ]
    except (OSError, subprocess.SubprocessError):
        return {"commit": UNKNOWN_COMMIT, "dirty": None}
    return {"commit": commit, "dirty": bool(changed)}


def stamp_text(commit: str, dirty: bool | None, cfg_hash: str) -> str:
    """ "code 6a854e5e1a2b+dirty, config 3f9c0d1e2a4b": the stamp of tables and figures."""
    code = commit[:SHORT] + ("+dirty" if dirty else "")
    return f"code {code}, config {cfg_hash[:SHORT]}"


def stamp(provenance: Mapping[str, Any]) -> str:
    """The stamp of a provenance record (as written by `build_provenance`)."""
    code = provenance["code"]
    return stamp_text(code["commit"], code["dirty"], provenance["config_hash"])


def parse_stamp(text: str) -> dict[str, Any]:
    """{"code_commit", "code_dirty", "config_hash"} (short forms) from a stamp."""
    match = _STAMP.fullmatch(text)
    if not match:
        raise ValueError(f"not a provenance stamp: {text!r} (expected {_STAMP.pattern})")
    commit, dirty, cfg = match.groups()
    return {"code_commit": commit, "code_dirty": bool(dirty), "config_hash": cfg}


def provenance_note(text: str) -> str:
    """The footnote line: the stamp and where the full record is."""
    parse_stamp(text)
    return f"Provenance: {text} (full record: {PROVENANCE_PATH})."


def stamp_columns(data: pd.DataFrame, text: str) -> pd.DataFrame:
    """`data` with the stamp's commit, dirty flag and config hash as its last columns, so a CSV
    read on its own still says what produced it."""
    return data.assign(**parse_stamp(text))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_hashes(paths: Iterable[str | Path]) -> dict[str, str]:
    """{path as given (repository-relative under Snakemake): sha256}, folders expanded to their
    files (a model folder: weights, config, tokenizer), sorted."""
    out: dict[str, str] = {}
    for path in map(Path, paths):
        if path.is_dir():  # Snakemake's own marker of a directory output is not content
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != DIR_MARKER)
        else:
            files = [path]
        for f in files:
            out[f.as_posix()] = sha256_file(f)
    return dict(sorted(out.items()))


def served_judges(score_files: Iterable[str | Path]) -> dict[str, list[str]]:
    """{judge id: models the API said answered (or the configured model for the local judge)},
    from the `served_model`/`judge_model` columns of score tables that have them."""
    served: dict[str, set[str]] = {}
    for path in score_files:
        df = pd.read_csv(path)
        if "judge" not in df.columns:
            continue
        for column in ("served_model", "judge_model"):
            if column not in df.columns:
                continue
            for judge, values in df.groupby("judge")[column]:
                models = {m for v in values.dropna() for m in str(v).split(";") if m.strip()}
                served.setdefault(str(judge), set()).update(m.strip() for m in models)
    return {judge: sorted(models) for judge, models in sorted(served.items())}


def generation_engines(record_files: Iterable[str | Path]) -> list[dict[str, str]]:
    """The distinct engines that generated the run's answers (engine, version, dtype, device),
    from the record each generation job writes beside its answers."""
    seen = {json.dumps(json.loads(Path(f).read_text(encoding="utf-8")), sort_keys=True)
            for f in record_files}  # fmt: skip
    return [json.loads(s) for s in sorted(seen)]


def model_source(model: Mapping[str, Any]) -> dict[str, Any]:
    """Where the base model came from: the Hub id and revision for `huggingface`, else the
    source alone (its package version is under `packages`; the files' sha256 identify it)."""
    out = {"slug": model["slug"], "source": model["source"]}
    if model["source"] == "huggingface":
        out.update(id=model.get("id"), revision=model.get("revision"))
    return out


def build_provenance(
    config: Mapping[str, Any],
    code: Mapping[str, Any],
    data_files: Iterable[str | Path],
    model_dirs: Iterable[str | Path],
    score_files: Iterable[str | Path],
    snakemake_version: str | None,
    generation_engine_files: Iterable[str | Path],
) -> dict[str, Any]:
    """The record written to results/provenance.json (see the module docstring)."""
    packages = package_versions()
    if snakemake_version:  # the scheduler's own version: jobs may run in another environment
        packages["snakemake"] = snakemake_version
    return {
        "code": {"commit": code["commit"], "dirty": code["dirty"]},
        "config_hash": config_hash(config),
        "stamp": stamp_text(code["commit"], code["dirty"], config_hash(config)),
        "seeds": list(config["run"]["seeds"]),
        "variants": list(config["run"]["variants"]),
        "model": {
            **model_source(config["model"]),
            "files_sha256": file_hashes(model_dirs),
        },
        "data_sha256": file_hashes(data_files),
        "generation_engines": generation_engines(generation_engine_files),
        "judges": {
            "configured": {k: config["judges"][k] for k in ("alpaca_eval", "mt_bench")},
            "served": served_judges(score_files),
        },
        "packages": packages,
        "config": results_config(config),
    }
