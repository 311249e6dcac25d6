"""Corrupted inputs are caught, never trained on: the campaign behind `workflow/bin/fault-report`.

Each case corrupts one input the way it happens in practice (a copy cut short, a hand edit, a
file from another run) in a scratch folder, then runs the check the stage that reads it runs
first, before any model is loaded. A case counts as caught when the stage refuses the input (or,
for a bad row in a source, leaves it out and logs it) with a message that names the file and the
row, line, key or file inside it. The inputs are the shipped samples (workflow/resources/data) and
files written by this package's own writers, so the formats are the real ones.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefopt.data.download import SourceChecksumError, verify_sources
from prefopt.data.prepare import check_pairs, rejected_rows_message, write_jsonl
from prefopt.modeling import ModelFolderError, check_model_dir
from prefopt.runtime import DataError, read_json, read_jsonl, write_json
from prefopt.training.reference_cache import (
    ReferenceCacheError,
    cache_record,
    meta_path,
    read_reference_cache,
    require_pairs,
    write_reference_cache,
)

#: Shipped samples, relative to the repository root.
SHIPPED = Path("workflow/resources/data")
TRAIN = "ultrafeedback_binarized/train.jsonl"
#: Settings a reference cache records (`prefopt.config.CACHE_TRAINING_KEYS`), as a job has them.
SETTINGS = {
    "precision": "fp32",
    "max_length": 256,
    "max_prompt_length": 128,
    "reference_batch_size": 4,
}


@dataclass(frozen=True)
class Corruption:
    """One way an input gets corrupted, the stage that reads it, and what its message must name
    besides the file (a line, row, key or inner file)."""

    name: str
    stage: str
    make: Callable[[Path, Path], tuple[Path, str, Callable[[], str]]]


@dataclass(frozen=True)
class CorruptionResult:
    name: str
    stage: str
    caught: bool
    names_file: bool
    names_where: bool
    message: str


class NotCaught(Exception):
    """The stage read the corrupted input without complaint."""


def _refusal(check: Callable[[], Any], *errors: type[Exception]) -> str:
    """The message of the error `check` raises; NotCaught if it returns normally."""
    try:
        check()
    except errors as err:
        return str(err)
    raise NotCaught


# ------------------------------------------------------------------------------- fixtures


def _pairs(work: Path, shipped: Path, n: int = 8) -> Path:
    """Prepared pairs, as prepare_preference_data writes them (results/data/train_pairs.jsonl)."""
    kept, _ = check_pairs(read_jsonl(shipped / TRAIN), max_pairs=n)
    path = work / "results" / "data" / "train_pairs.jsonl"
    write_jsonl(kept, path)
    return path


def _model(work: Path, shards: int = 1) -> Path:
    """A model folder as save_pretrained writes it (config, tokenizer, safetensors weights;
    `shards` > 1: an index and one file per shard). Small random tensors: the checks read
    files, not numbers."""
    import torch
    from safetensors.torch import save_file

    path = work / "results" / "models" / "model"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 16}))
    (path / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"<|im_end|>": 2}}}))
    gen = torch.Generator().manual_seed(0)
    tensors = {f"layer{i}.weight": torch.randn(8, 8, generator=gen) for i in range(shards)}
    if shards == 1:
        save_file(tensors, path / "model.safetensors")
        return path
    weight_map = {}
    for i, (name, tensor) in enumerate(tensors.items(), start=1):
        shard = f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file({name: tensor}, path / shard)
        weight_map[name] = shard
    write_json({"weight_map": weight_map}, path / "model.safetensors.index.json")
    return path


def _cache(work: Path, model: Path, pairs: Path, **settings: Any) -> Path:
    """A reference cache and its record, as cache_reference_logps writes them."""
    rows = [
        {"pair_id": r["pair_id"], "ref_chosen_logps": -50.0 - i, "ref_rejected_logps": -60.0 - i}
        for i, r in enumerate(read_jsonl(pairs))
    ]
    path = work / "results" / "reference_logps" / "cache.jsonl"
    write_reference_cache(rows, path, cache_record(model, pairs, {**SETTINGS, **settings}, False))
    return path


def _read_cache_as_training(cache: Path, model: Path, pairs: Path) -> Callable[[], str]:
    """What train_policy runs before it loads a model
    (prefopt.training.trainer.build_policy_trainer)."""

    def check() -> str:
        expected = cache_record(model, pairs, SETTINGS, False)
        rows = read_reference_cache(cache, expected)
        require_pairs(rows, [r["pair_id"] for r in read_jsonl(pairs)], cache)
        return ""

    return lambda: _refusal(check, ReferenceCacheError, DataError)


def _rewrite_line(path: Path, index: int, edit: Callable[[dict[str, Any]], None]) -> None:
    lines = path.read_text().splitlines()
    row = json.loads(lines[index])
    edit(row)
    lines[index] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")


def _cut_last_line(path: Path) -> int:
    """Cut the file in the middle of its last line (a kill mid-write); its 1-based number."""
    text = path.read_text()
    lines = text.splitlines()
    path.write_text(text[: len(text) - len(lines[-1]) // 2 - 1])
    return len(lines)


# ------------------------------------------------------------------------------- the cases


def truncated_jsonl(work: Path, shipped: Path):
    pairs = _pairs(work, shipped)
    line = _cut_last_line(pairs)
    return pairs, f"line {line}", lambda: _refusal(lambda: read_jsonl(pairs), DataError)


def empty_chosen(work: Path, shipped: Path):
    source = work / "mirror" / TRAIN
    source.parent.mkdir(parents=True)
    shutil.copyfile(shipped / TRAIN, source)

    def empty_answer(row: dict[str, Any]) -> None:
        row["chosen"][-1]["content"] = ""  # the user turn stays: only the response is empty

    _rewrite_line(source, 3, empty_answer)

    def check() -> str:
        kept, report = check_pairs(read_jsonl(source), max_pairs=8)
        if any(r["source_index"] == 3 for r in kept):
            raise NotCaught  # trained on
        return rejected_rows_message(report, source) or ""

    return source, "rows 3", check


def nan_in_cache(work: Path, shipped: Path):
    model, pairs = _model(work), _pairs(work, shipped)
    cache = _cache(work, model, pairs)
    _rewrite_line(cache, 4, lambda row: row.update(ref_chosen_logps=float("nan")))
    return cache, "row 5", _read_cache_as_training(cache, model, pairs)


def missing_value_in_cache(work: Path, shipped: Path):
    model, pairs = _model(work), _pairs(work, shipped)
    cache = _cache(work, model, pairs)
    _rewrite_line(cache, 1, lambda row: row.pop("ref_rejected_logps"))
    return cache, "row 2", _read_cache_as_training(cache, model, pairs)


def cache_cut_short(work: Path, shipped: Path):
    model, pairs = _model(work), _pairs(work, shipped)
    cache = _cache(work, model, pairs)
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-2]) + "\n")  # whole rows lost: the record still matches
    last = read_jsonl(pairs)[-2]["pair_id"]
    return cache, last, _read_cache_as_training(cache, model, pairs)


def cache_of_other_tokenizer(work: Path, shipped: Path):
    model, pairs = _model(work), _pairs(work, shipped)
    cache = _cache(work, model, pairs)
    tok = model / "tokenizer.json"
    tok.write_text(tok.read_text().replace("<|im_end|>", "<|endoftext|>"))
    return cache, "tokenizer.json", _read_cache_as_training(cache, model, pairs)


def cache_of_other_max_length(work: Path, shipped: Path):
    model, pairs = _model(work), _pairs(work, shipped)
    cache = _cache(work, model, pairs, max_length=512)
    return cache, "max_length 512", _read_cache_as_training(cache, model, pairs)


def cache_without_record(work: Path, shipped: Path):
    model, pairs = _model(work), _pairs(work, shipped)
    cache = _cache(work, model, pairs)
    meta_path(cache).unlink()
    return cache, meta_path(cache).name, _read_cache_as_training(cache, model, pairs)


def missing_shard(work: Path, shipped: Path):
    model = _model(work, shards=3)
    (model / "model-00002-of-00003.safetensors").unlink()
    return (
        model,
        "model-00002-of-00003.safetensors",
        lambda: _refusal(lambda: check_model_dir(model), ModelFolderError),
    )


def weights_cut_short(work: Path, shipped: Path):
    model = _model(work)
    weights = model / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size - 16)
    return model, "model.safetensors", lambda: _refusal(lambda: check_model_dir(model), ValueError)


def alpaca_eval_annotations_cut(work: Path, shipped: Path):
    path = work / "results" / "judgments" / "annotations.json"
    annotations = [
        {"instruction": f"q{i}", "output_1": "a", "output_2": "b", "preference": 1.0}
        for i in range(4)
    ]
    write_json(annotations, path)
    line = _cut_last_line(path)  # the file's last record cut mid-way
    return path, f"line {line}", lambda: _refusal(lambda: read_json(path), ValueError)


def mt_bench_judgments_cut(work: Path, shipped: Path):
    path = work / "results" / "judgments" / "seed0.jsonl"
    write_jsonl([{"question_id": 81 + i, "turn": 1, "score": 7.0} for i in range(4)], path)
    line = _cut_last_line(path)
    return path, f"line {line}", lambda: _refusal(lambda: read_jsonl(path), DataError)


def api_judge_cache_cut(work: Path, shipped: Path):
    """The API judges' cache (answers so far): a torn last record is cut off, logged, and its
    request asked again; the earlier answers are kept (never re-bought)."""
    from prefopt.judging.api import ApiJudgeClient

    path = work / "results" / "judgments" / "api_cache.jsonl"
    write_jsonl([{"key": f"k{i}", "content": f"answer {i}"} for i in range(4)], path)
    _cut_last_line(path)
    seen: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("prefopt.judging.api")
    handler = Grab()
    logger.addHandler(handler)
    try:
        client = ApiJudgeClient(model="m", cache_path=path, allow_missing_key=True)
    finally:
        logger.removeHandler(handler)
    if sorted(client._cache) != ["k0", "k1", "k2"]:
        raise NotCaught
    return path, "partial line", lambda: " ".join(seen)


def mirror_checksum(work: Path, shipped: Path):
    mirror = work / "mirror"
    shutil.copytree(shipped, mirror)
    source = mirror / TRAIN
    _rewrite_line(source, 0, lambda row: row.update(score_chosen=10.0))
    return (
        source,
        "SHA256SUMS records",
        lambda: _refusal(lambda: verify_sources([source], mirror), SourceChecksumError),
    )


def mirror_file_unrecorded(work: Path, shipped: Path):
    mirror = work / "mirror"
    shutil.copytree(shipped, mirror)
    source = mirror / "ultrafeedback_binarized" / "test.jsonl"
    shutil.copyfile(mirror / TRAIN, source)  # a split dropped in by hand
    return (
        source,
        "no checksum recorded",
        lambda: _refusal(lambda: verify_sources([source], mirror), SourceChecksumError),
    )


CORRUPTIONS = (
    Corruption("truncated JSON-lines row (prepared pairs)", "cache, train", truncated_jsonl),
    Corruption("pair with an empty chosen response", "prepare_preference_data", empty_chosen),
    Corruption("NaN in the reference cache", "train_policy", nan_in_cache),
    Corruption("missing value in the reference cache", "train_policy", missing_value_in_cache),
    Corruption("reference cache cut short (whole rows)", "train_policy", cache_cut_short),
    Corruption("cache made with another tokenizer", "train_policy", cache_of_other_tokenizer),
    Corruption("cache made with another max length", "train_policy", cache_of_other_max_length),
    Corruption("cache without its record", "train_policy", cache_without_record),
    Corruption("model folder missing a shard", "every model-loading rule", missing_shard),
    Corruption("model weights cut short", "every model-loading rule", weights_cut_short),
    Corruption(
        "AlpacaEval annotations, last record half-written",
        "aggregate_scores",
        alpaca_eval_annotations_cut,
    ),
    Corruption(
        "MT-Bench judgments, last line half-written", "aggregate_scores", mt_bench_judgments_cut
    ),
    Corruption("API judge cache, last record half-written", "judge_*_api", api_judge_cache_cut),
    Corruption("mirror file whose checksum differs from its record", "prepare_*", mirror_checksum),
    Corruption("mirror file that no record lists", "prepare_*", mirror_file_unrecorded),
)


def run_campaign(work: str | Path, root: str | Path = ".") -> list[CorruptionResult]:
    """Every case of `CORRUPTIONS`, each in its own folder under `work`."""
    shipped = Path(root) / SHIPPED
    results = []
    for i, case in enumerate(CORRUPTIONS):
        folder = Path(work) / f"case{i:02d}"
        folder.mkdir(parents=True)
        try:
            path, where, check = case.make(folder, shipped)
            message = check()
        except NotCaught:
            results.append(CorruptionResult(case.name, case.stage, False, False, False, ""))
            continue
        results.append(
            CorruptionResult(
                case.name,
                case.stage,
                bool(message),
                str(path) in message,
                where in message,
                message,
            )
        )
    return results
