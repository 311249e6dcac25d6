"""Data preparation: normalise and schema-check preference pairs, subset the eval sets.

All inputs are in the layout the download rules write under results/downloads/, whether they were
downloaded there or read from a mirror in that layout (such as the samples shipped in
workflow/resources/data).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from prefopt.judging import mt_bench

# JSON-lines reading lives in prefopt.runtime (mt_bench needs it too); stages import it here.
from prefopt.runtime import DataError, read_jsonl  # noqa: F401


def write_jsonl(rows: list[dict[str, Any]], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _message_text(value: Any, role: str = "assistant") -> Any:
    """trl-lib rows hold message lists; the mirror holds plain strings. Return the text."""
    if isinstance(value, list):
        texts = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == role]
        return texts[-1] if texts else None
    return value


def normalise_pair(row: dict[str, Any], index: int) -> dict[str, Any]:
    """Map a trl-lib (message lists) or flattened mirror row onto prompt/chosen/rejected strings."""
    prompt = row.get("prompt")
    if prompt is None and isinstance(row.get("chosen"), list):
        prompt = _message_text(row["chosen"], role="user")
    prompt = _message_text(prompt, role="user")
    meta = row.get("metadata") or {}
    return {
        "prompt": prompt,
        "chosen": _message_text(row.get("chosen")),
        "rejected": _message_text(row.get("rejected")),
        "score_chosen": row.get("score_chosen", meta.get("score_chosen")),
        "score_rejected": row.get("score_rejected", meta.get("score_rejected")),
        "source_index": row.get("source_index", index),
    }


def check_pairs(
    rows: list[dict[str, Any]], max_pairs: int | None = None, first_row: int = 0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Keep rows whose prompt/chosen/rejected are non-empty strings; count every reject by reason.

    The first `max_pairs` valid rows are kept (file order is the upstream order, so the subset
    is deterministic). `pair_id` is a content hash: it ties reference log-probs to their pair.
    Rows before index `first_row` are not read (held-out pairs drawn from the rows after the
    training pairs: `prefopt.evaluation.heldout`); indices stay those of the file.
    """
    kept: list[dict[str, Any]] = []
    rejects: Counter[str] = Counter()
    examples: dict[str, list[int]] = defaultdict(list)
    for i, raw in enumerate(rows):
        if i < first_row:
            continue
        row = normalise_pair(raw, i)
        reason = None
        for key in ("prompt", "chosen", "rejected"):
            value = row[key]
            if not isinstance(value, str):
                reason = f"{key} is not a string"
            elif not value.strip():
                reason = f"{key} is empty"
            if reason:
                break
        if reason is None and row["chosen"] == row["rejected"]:
            reason = "chosen equals rejected"
        if reason:
            rejects[reason] += 1
            if len(examples[reason]) < 5:
                examples[reason].append(i)
            continue
        if max_pairs is not None and len(kept) >= max_pairs:
            continue
        digest = hashlib.sha256(
            json.dumps([row["prompt"], row["chosen"], row["rejected"]]).encode()
        ).hexdigest()[:16]
        kept.append({"pair_id": f"{i:06d}-{digest}", **row})
    n_read = max(len(rows) - first_row, 0)
    report = {
        "rows_read": n_read,
        "rows_valid": n_read - sum(rejects.values()),
        "rows_kept": len(kept),
        "rows_rejected": sum(rejects.values()),
        "rejected_by_reason": dict(rejects),
        "rejected_row_examples": {k: v for k, v in examples.items()},
    }
    if not kept:
        raise ValueError(f"no valid preference pairs left after checks: {report}")
    return kept, report


def rejected_rows_message(report: dict[str, Any], path: str | Path) -> str | None:
    """One line naming the rows `check_pairs` left out and why (None when none were), for the
    log: a bad row is never trained on, and the user can find it in the file."""
    if not report["rows_rejected"]:
        return None
    parts = []
    for reason, rows in report["rejected_row_examples"].items():
        count = report["rejected_by_reason"][reason]
        listed = ", ".join(str(i) for i in rows) + (", ..." if len(rows) < count else "")
        parts.append(f"{reason}: {count} (rows {listed})")
    return (
        f"{path}: {report['rows_rejected']} of {report['rows_read']} rows left out, never "
        f"trained on or scored (row = 0-based line of the file): {'; '.join(parts)}"
    )


#: The AlpacaEval 1.0 baseline, as alpaca_eval names it in ``generator_1``.
ALPACA_EVAL_1_BASELINE = "text_davinci_003"
ALPACA_EVAL_1_ITEMS = 805
#: The fields of alpaca_eval's AE1 annotations that `alpaca_eval_1_reference` reads (the shipped
#: sample, workflow/resources/data/alpaca_eval/, keeps only these).
ALPACA_EVAL_1_FIELDS = ("dataset", "instruction", "output_1", "generator_1")


def alpaca_eval_1_reference(annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AlpacaEval 1.0's items with its reference outputs, from alpaca_eval's own published AE1
    annotations (prefopt.data.download.ALPACA_EVAL_REFERENCE): each row's instruction and
    ``output_1``, the text-davinci-003 baseline exactly as the AE1 judge (and the paper's) saw it,
    as ``{dataset, instruction, output, generator}`` in the benchmark's order. The file must hold
    the 805 instructions once each, with that baseline; otherwise this stops, naming the row."""
    seen: set[str] = set()
    out = []
    for i, row in enumerate(annotations):
        if row.get("generator_1") != ALPACA_EVAL_1_BASELINE:
            raise ValueError(
                f"AlpacaEval 1.0 annotations row {i}: generator_1 is {row.get('generator_1')!r}, "
                f"not the AE1 baseline {ALPACA_EVAL_1_BASELINE!r}"
            )
        for key in ("instruction", "output_1"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"AlpacaEval 1.0 annotations row {i}: {key!r} missing or not text")
        if row["instruction"] in seen:
            raise ValueError(f"AlpacaEval 1.0 annotations row {i}: instruction repeated")
        seen.add(row["instruction"])
        out.append(
            {
                "dataset": row.get("dataset"),
                "instruction": row["instruction"],
                "output": row["output_1"],
                "generator": row["generator_1"],
            }
        )
    if len(out) != ALPACA_EVAL_1_ITEMS:
        raise ValueError(
            f"AlpacaEval 1.0 annotations: {len(out)} rows, not the benchmark's "
            f"{ALPACA_EVAL_1_ITEMS} instructions"
        )
    return out


def subset_alpaca_eval(rows: list[dict[str, Any]], max_prompts: int | None) -> list[dict[str, Any]]:
    """The first `max_prompts` AlpacaEval items (the benchmark's own order), fields checked."""
    for i, row in enumerate(rows):
        for key in ("instruction", "output", "generator"):
            if not isinstance(row.get(key), str):
                raise ValueError(
                    f"alpaca_eval reference row {i}: field {key!r} missing or not text"
                )
    return rows[:max_prompts] if max_prompts else rows


def subset_mt_bench(
    questions: list[dict[str, Any]], per_category: int | None
) -> list[dict[str, Any]]:
    """The first `per_category` questions of each of the 8 categories (all turns kept)."""
    counts: Counter[str] = Counter()
    out = []
    for q in questions:
        if q.get("category") not in mt_bench.CATEGORIES or len(q.get("turns", [])) != 2:
            raise ValueError(f"MT-Bench question {q.get('question_id')}: bad category or turns")
        if per_category is None or counts[q["category"]] < per_category:
            counts[q["category"]] += 1
            out.append(q)
    return out


def to_conversational(row: dict[str, Any]) -> dict[str, Any]:
    """TRL's conversational preference format; the model's own chat template is applied by TRL."""
    return {
        "pair_id": row["pair_id"],
        "prompt": [{"role": "user", "content": row["prompt"]}],
        "chosen": [{"role": "assistant", "content": row["chosen"]}],
        "rejected": [{"role": "assistant", "content": row["rejected"]}],
    }


def truncate_prompt(row: dict[str, Any], tokenizer: Any, max_prompt_tokens: int) -> dict[str, Any]:
    """Keep the last `max_prompt_tokens` tokens of the prompt text (TRL ≤0.28's max_prompt_length).

    TRL 1.x dropped max_prompt_length; the paper ran with 256, so we truncate prompts here,
    identically for the reference cache and for training.
    """
    ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
    if len(ids) <= max_prompt_tokens:
        return row
    return {**row, "prompt": tokenizer.decode(ids[-max_prompt_tokens:])}
