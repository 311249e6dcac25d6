"""The reference log-prob caches on disk: what each was computed from, and the checks every
reader runs before training or scoring reads one value.

A cache is JSON lines (`pair_id`, `ref_chosen_logps`, `ref_rejected_logps`) with a record beside
it (`<cache>.meta.json`): the sha256 of every file of the model that computed it (weights and
tokenizer), of the pairs it scored, and the numerics settings (`CACHE_TRAINING_KEYS`, with the
precision as resolved on the device that ran it). A reader states what it expects; a cache made
from another model, tokenizer, pair file, maximum length or precision is refused with the
difference named, before a model is loaded. Snakemake reruns the cache when these change in the
config; the record catches what Snakemake cannot see (a cache copied from another run, a file
touched by hand, a cache made on a CPU read on a GPU).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from prefopt.config import CACHE_TRAINING_KEYS
from prefopt.data.prepare import read_jsonl, write_jsonl
from prefopt.reporting.provenance import DIR_MARKER, sha256_file
from prefopt.runtime import read_json, write_json

#: Bumped when the record's meaning changes (older caches are then refused, never misread).
RECORD_VERSION = 1


class ReferenceCacheError(ValueError):
    """A reference cache that training must not read (the message names the pair and values)."""


def meta_path(cache_path: str | Path) -> Path:
    """Where the record of `cache_path` lives: beside it, `<stem>.meta.json`."""
    cache_path = Path(cache_path)
    return cache_path.with_name(cache_path.stem + ".meta.json")


def model_files(model_dir: str | Path) -> dict[str, str]:
    """{file name inside the model folder: sha256}: the weights and the tokenizer."""
    root = Path(model_dir)
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != DIR_MARKER
    }


def cache_record(
    model_dir: str | Path | None,
    pairs_path: str | Path,
    training: dict[str, Any],
    on_gpu: bool,
) -> dict[str, Any]:
    """What a cache computed (or expected) from these inputs and settings records. `model_dir`
    None: the reader does not have the reference model (a held-out score of a trained policy)
    and the model is not compared."""
    from prefopt.modeling import resolve_precision  # torch: not needed to name the record

    settings = {k: training[k] for k in CACHE_TRAINING_KEYS}
    settings["precision"] = resolve_precision(training["precision"], on_gpu)
    return {
        "record_version": RECORD_VERSION,
        "model_files": None if model_dir is None else model_files(model_dir),
        "pairs_sha256": sha256_file(pairs_path),
        "settings": settings,
    }


def check_finite_reference(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Every cached log-prob is a finite number (fp16 overflow gives inf/nan, a hand edit or a
    cut file gives null): checked when the cache is written and when it is read."""
    for number, row in enumerate(rows, start=1):
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            value = row.get(key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ReferenceCacheError(
                    f"{path}, row {number}: pair {row.get('pair_id')!r} has {key} = {value!r}, "
                    "not a finite number; the reference cache is unusable: delete it and rerun "
                    "cache_reference_logps (with fp32 if the values overflowed)"
                )


def write_reference_cache(
    rows: list[dict[str, Any]], path: str | Path, record: dict[str, Any]
) -> None:
    """The cache and its record; non-finite values are refused before anything is written."""
    check_finite_reference(rows, path)
    write_jsonl(rows, path)
    write_json({**record, "n_pairs": len(rows)}, meta_path(path))


def _differences(got: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """What differs between a cache's record and a reader's expectation, in words."""
    out = []
    if got.get("record_version") != expected["record_version"]:
        return [
            f"record version {got.get('record_version')!r}, this code reads "
            f"{expected['record_version']}"
        ]
    for key, value in expected["settings"].items():
        if got["settings"].get(key) != value:
            out.append(f"{key} {got['settings'].get(key)!r} (this job: {value!r})")
    if got["pairs_sha256"] != expected["pairs_sha256"]:
        out.append(
            f"another pair file (sha256 {got['pairs_sha256'][:12]}..., this job's "
            f"{expected['pairs_sha256'][:12]}...)"
        )
    if expected["model_files"] is not None:
        theirs, mine = got["model_files"] or {}, expected["model_files"]
        changed = sorted(n for n in set(theirs) | set(mine) if theirs.get(n) != mine.get(n))
        if changed:
            out.append(
                "another model or tokenizer (files that differ: " + ", ".join(changed[:5]) + ")"
            )
    return out


def read_reference_cache(path: str | Path, expected: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{pair_id: cached row} of a cache whose record matches `expected` (`cache_record` of the
    reader's own inputs and settings) and whose every value is finite; else
    `ReferenceCacheError` naming the file and what differs, or the row."""
    record_file = meta_path(path)
    fix = "delete both and rerun cache_reference_logps with this config"
    if not record_file.is_file():
        raise ReferenceCacheError(
            f"{path}: no record of what it was computed from ({record_file} is missing); {fix}"
        )
    try:
        differences = _differences(read_json(record_file), expected)
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise ReferenceCacheError(
            f"{record_file}: not a readable cache record ({err}); {fix}"
        ) from None
    if differences:
        raise ReferenceCacheError(
            f"{path} was computed with {'; '.join(differences)}: its log-probs are not this "
            f"job's reference; {fix}"
        )
    rows = read_jsonl(path)
    check_finite_reference(rows, path)
    return {r["pair_id"]: r for r in rows}


def require_pairs(cache: dict[str, dict[str, Any]], pair_ids: list[str], path: str | Path) -> None:
    """Every pair the job reads has a cached value (a cut cache lacks the last ones)."""
    missing = [pid for pid in pair_ids if pid not in cache]
    if missing:
        raise ReferenceCacheError(
            f"{path}: {len(missing)} of {len(pair_ids)} pairs have no cached reference "
            f"log-probs (first: {missing[0]}); delete it and rerun cache_reference_logps"
        )
