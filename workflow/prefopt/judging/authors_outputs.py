"""The paper authors' own AlpacaEval outputs, judged again by this run's judge.

The paper's AlpacaEval judge (``alpaca_eval_gpt4_turbo_fn``, model ``gpt-4-1106-preview``) is
retired, so a reproduction judges its outputs with another model, and its numbers cannot sit next
to Table 1 as if the judge were the same. The authors published, for seven Table 1 rows, the
``annotations.json`` alpaca_eval wrote: every instruction with both outputs (``output_1`` the
AlpacaEval 1.0 baseline, text-davinci-003; ``output_2`` their model) and the retired judge's
verdict. Asking this run's judge the very same pairs gives three numbers per row that compare
like with like (rule ``score_authors_outputs``, ``results/scores/authors_alpaca_eval.csv``):

- the paper's number (Table 1, the retired judge);
- the paper's *outputs* under this run's judge (:func:`score_table`, ``rejudged_*`` columns), next
  to the retired judge's verdicts on the same rows (``reference_*``, recomputed with alpaca_eval's
  own metric code), and the two judges' agreement on those pairs (the statistics of
  :mod:`prefopt.judging.calibration`, one "source" per Table 1 row);
- our outputs under this run's judge (Table 1 of the run).

The pairs are asked as alpaca_eval asked them (``output_1`` the baseline, its seeded per-instruction
presentation order), by the same rules' code as the judge calibration. With
``authors_outputs.max_items`` the same instructions are drawn for every row (a hash of the
instruction), so the rows stay paired; alpaca_eval's LC win rate indexes its GLM by the position
of each of the 805 instructions and is computed only when every row is judged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from prefopt.judging import win_rates
from prefopt.judging.calibration import calibration_table

#: Salt of the draw with ``max_items``: the same instructions on every machine and for every row.
SELECTION_SALT = "prefopt-authors-outputs"
#: AlpacaEval's instruction count (every authors' file has one row per instruction).
ALPACA_EVAL_ITEMS = 805
#: The columns of ``results/scores/authors_alpaca_eval.csv``, in order.
COLUMNS = (
    "variant",
    "paper_label",
    "authors_folder",
    "status",
    "judge",
    "judge_label",
    "judge_model",
    "items",
    "rows_in_file",
    "paper_win_rate",
    "paper_lc_win_rate",
    "reference_win_rate",
    "reference_standard_error",
    "reference_lc_win_rate",
    "reference_failures",
    "rejudged_win_rate",
    "rejudged_standard_error",
    "rejudged_lc_win_rate",
    "rejudged_failures",
    "lc_missing_reason",
    "agreement",
    "agreement_ci_low",
    "agreement_ci_high",
    "agreement_pairs",
    "cohen_kappa",
    "baseline_outputs_matching_run_reference",
)
RUN = "judged"
#: Count columns (empty for the rows not judged).
COUNTS = ("items", "rows_in_file", "reference_failures", "rejudged_failures", "agreement_pairs")


def annotated_rows(table1: pd.DataFrame) -> pd.DataFrame:
    """The Table 1 rows whose authors' entry is a folder with ``annotations.json`` (the others,
    e.g. ``alpaca_eval_AOT.csv``, are a leaderboard line only: nothing to judge again)."""
    folder = table1["authors_folder"].astype(str)
    return table1[~folder.str.endswith(".csv")]


def select_items(instructions: Sequence[str], max_items: int | None) -> list[int]:
    """Row indices to judge: all, or the ``max_items`` instructions with the smallest salted hash,
    in file order (the same instructions in every authors' file, which share one order)."""
    n = len(instructions)
    if max_items is None or max_items >= n:
        return list(range(n))

    def key(i: int) -> str:
        return hashlib.sha256(f"{SELECTION_SALT}\n{instructions[i]}".encode()).hexdigest()

    return sorted(sorted(range(n), key=key)[:max_items])


def authors_pairs(
    rows: Sequence[Mapping[str, Any]], folder: str, max_items: int | None = None
) -> list[dict[str, Any]]:
    """The pairs of one authors' ``annotations.json`` a judge is asked, in the shape of the
    calibration pairs (``source`` = the folder; the retired judge's verdict as the reference).

    An output may be empty (a model may answer nothing; alpaca_eval judges it), but every row
    must carry the instruction and both outputs as text: a malformed file stops here, naming the
    file's row and key, before any request is made."""
    for i, r in enumerate(rows):
        if not isinstance(r.get("instruction"), str) or not r["instruction"].strip():
            raise ValueError(
                f"{folder}/annotations.json row {i}: 'instruction' is missing or empty"
            )
        for key in ("output_1", "output_2"):
            if not isinstance(r.get(key), str):
                raise ValueError(f"{folder}/annotations.json row {i}: {key!r} is not a text")
    chosen = select_items([r["instruction"] for r in rows], max_items)
    return [
        {
            "source": folder,
            "row": i,
            "instruction": rows[i]["instruction"],
            "dataset": rows[i].get("dataset"),
            "output_1": rows[i]["output_1"],
            "generator_1": rows[i].get("generator_1"),
            "output_2": rows[i]["output_2"],
            "generator_2": rows[i].get("generator_2"),
            "reference_annotator": rows[i].get("annotator"),
            "reference_preference": rows[i].get("preference"),
        }
        for i in chosen
    ]


def matching_baseline_outputs(
    pairs: Iterable[Mapping[str, Any]], reference: Iterable[Mapping[str, Any]]
) -> tuple[int, int]:
    """(matching, compared): how many of the authors' baseline outputs (``output_1``, what the
    paper's judge saw; rows of their file or pairs) are the very text this run compares its own
    outputs with (its AlpacaEval reference: ``instruction``, ``output``), by instruction.
    Fewer than all means Table 1 of the run is not judged against the paper's baseline texts."""
    ours = {r["instruction"]: r.get("output") for r in reference}
    compared = [(p["output_1"], ours[p["instruction"]]) for p in pairs if p["instruction"] in ours]
    return sum(a == b for a, b in compared), len(compared)


def _leaderboard(records: pd.DataFrame, preference: str, lc_assets_dir: Any, full: bool) -> dict:
    frame = records.assign(preference=pd.to_numeric(records[preference], errors="coerce"))
    board = win_rates.alpaca_eval_leaderboard(frame, lc_assets_dir=lc_assets_dir if full else None)
    if not full:
        board["lc_missing_reason"] = (
            f"{len(frame)} of the {ALPACA_EVAL_ITEMS} instructions judged "
            "(authors_outputs.max_items): alpaca_eval's LC GLM needs all of them"
        )
    return board


def judged_row(
    table1_row: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    *,
    judge: str,
    judge_label: str,
    rows_in_file: int,
    lc_assets_dir: str | None = None,
    baseline_match: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """One row of the score table for a Table 1 row whose authors' outputs were judged again."""
    frame = pd.DataFrame(list(records))
    full = len(frame) == rows_in_file == ALPACA_EVAL_ITEMS
    old = _leaderboard(frame, "reference_preference", lc_assets_dir, full)
    new = _leaderboard(frame, "preference", lc_assets_dir, full)
    models = sorted({str(m) for m in frame.get("judge_model", pd.Series(dtype=str)).dropna()})
    stats = calibration_table(
        frame, judge, judge_label, ";".join(models), swap=False, sources=[str(frame["source"][0])]
    )
    stat = stats[stats["source"] == frame["source"][0]].set_index("statistic")
    agree = stat.loc["agreement"]  # over the pairs both judges decided; Wilson interval
    pref = pd.to_numeric(frame["preference"], errors="coerce")
    ref = pd.to_numeric(frame["reference_preference"], errors="coerce")
    return {
        **_paper_part(table1_row),
        "status": RUN,
        "judge": judge,
        "judge_label": judge_label,
        "judge_model": ";".join(models),
        "items": len(frame),
        "rows_in_file": rows_in_file,
        "reference_win_rate": old["win_rate"],
        "reference_standard_error": old["standard_error"],
        "reference_lc_win_rate": old["length_controlled_winrate"],
        "reference_failures": int(ref.isna().sum()),
        "rejudged_win_rate": new["win_rate"],
        "rejudged_standard_error": new["standard_error"],
        "rejudged_lc_win_rate": new["length_controlled_winrate"],
        "rejudged_failures": int(pref.isna().sum()),
        "lc_missing_reason": new["lc_missing_reason"],
        "agreement": agree["value"],
        "agreement_ci_low": agree["ci_low"],
        "agreement_ci_high": agree["ci_high"],
        "agreement_pairs": int(agree["n"]),
        "cohen_kappa": stat.loc["cohen_kappa", "value"],
        "baseline_outputs_matching_run_reference": (
            f"{baseline_match[0]} of {baseline_match[1]}" if baseline_match else ""
        ),
    }


def _paper_part(table1_row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "variant": table1_row["variant"],
        "paper_label": table1_row["paper_label"],
        "authors_folder": table1_row["authors_folder"],
        "paper_win_rate": float(table1_row["win_rate"]),
        "paper_lc_win_rate": float(table1_row["lc_win_rate"]),
    }


def unjudged_row(table1_row: Mapping[str, Any], status: str) -> dict[str, Any]:
    """A Table 1 row whose authors' outputs were not judged again, and why (``status``)."""
    return {**dict.fromkeys(COLUMNS), **_paper_part(table1_row), "status": status}


def score_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The score table in :data:`COLUMNS` order."""
    table = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], columns=list(COLUMNS))
    for column in COUNTS:
        table[column] = pd.array(table[column], dtype="Int64")
    return table


def not_judged_reason(table1_row: Mapping[str, Any], authors_dir: str | Path | None) -> str:
    """Why a Table 1 row has no re-judged outputs: the authors published a leaderboard line only
    for it, or their files are not available to this run."""
    if str(table1_row["authors_folder"]).endswith(".csv"):
        return "the authors published a leaderboard line only (no outputs to judge)"
    if authors_dir is None:
        return "the authors' AlpacaEval artefacts are not available to this run"
    return "not selected (authors_outputs.variants)"


def authors_outputs_note(table: pd.DataFrame, judge_title: str) -> str:
    """The footnote of the "Paper's outputs, our judge" columns, from the score table (indexed
    by variant): what was judged, how far the two judges agree, and whether this run's own
    outputs are compared with the same baseline texts as the paper's."""
    from prefopt.reporting.artifacts import fmt

    done = table[table["status"] == RUN]
    if done.empty:
        why = "; ".join(sorted({str(s) for s in table["status"].dropna()}))
        return f"Paper's outputs, our judge: not computed in this run ({why})."
    items = ", ".join(sorted({str(int(n)) for n in done["items"]}))
    agree = "; ".join(
        f"{done.loc[v, 'paper_label']} {fmt(100 * float(a))} %"
        for v, a in done["agreement"].items()
    )
    match = "; ".join(
        sorted({str(m) for m in done["baseline_outputs_matching_run_reference"].dropna()})
    )
    return (
        f"Paper's outputs, our judge: the authors' published outputs ({items} instructions per "
        f"row) judged again by {judge_title}, ± its standard error. Its verdicts agree with the "
        f"retired judge's on the same pairs (share of the pairs both decided): {agree}. "
        "Baseline texts (text-davinci-003) the paper's judge saw that are the very texts this run "
        f"judges its own outputs against: {match or 'n/a'} (by instruction)."
    )
