"""Calibration of the run's judge against the retired judge's recorded verdicts.

The paper's AlpacaEval judge (alpaca_eval's ``alpaca_eval_gpt4_turbo_fn`` annotator, model
``gpt-4-1106-preview``) is shut down. Its verdicts are recorded in alpaca_eval's published
annotation files, each row with the instruction, both outputs and the verdict, so any judge can be
asked the very same pairs and scored against the original (rule ``judge_calibration``).

**Verdicts.** alpaca_eval's convention: ``preference`` 1 = ``output_1`` (the baseline) wins,
2 = ``output_2`` (the model) wins, 1.5 or 0 = a draw, null = a failure (no usable answer). A
continuous preference in [1, 2] (the local judge's, or alpaca_eval's weighted annotators) is a
win for the side it leans to; exactly 1.5 is a draw. :func:`verdict` maps a preference to
1, 2, :data:`DRAW` (0) or None.

**Statistics** (:func:`calibration_table`; per source file and over all of them):

- ``agreement``: the share of pairs where the judge picks the winner the retired judge picked,
  over the pairs **both** judged decisively (a draw or a failure on either side leaves the pair
  out; how many did so is in the ``*_draws`` / ``*_failures`` rows). 95 % Wilson interval.
- ``agreement_with_draws``: the same over every pair both judged without failure, a draw
  agreeing only with a draw (so a judge that often says "draw" cannot look good by abstaining).
- ``cohen_kappa``: Cohen's kappa on the decisive pairs (agreement corrected for what the two
  judges' verdict frequencies give by chance); NaN when undefined (both judges always name the
  same side). 95 % percentile bootstrap over pairs (:data:`N_BOOTSTRAP` resamples, fixed seed).
- ``position_consistency``: the share of pairs whose winner (or draw) is the same when the two
  outputs are shown in the other order, over pairs with a verdict in both orders. Wilson.
- ``length_preference_judge`` / ``length_preference_reference``: the share of decisive verdicts
  that prefer the longer output (characters; pairs of equal length left out), for the judge and
  for the retired judge on the same pairs. Wilson.

**Orders.** An API judge is asked each pair twice: in the original order (alpaca_eval's own
seeded per-instruction swap of the two outputs in the prompt, so each output where the retired
judge saw it) and with ``output_1`` and ``output_2`` exchanged; its verdict for agreement is the
original order's. (The Mistral file's verdicts came from alpaca_eval's chain-of-thought prompt of
the same model, ``alpaca_eval_cot_gpt4_turbo_fn``; the table names each source's annotator.)
The local judge always reads both orders and averages them (:mod:`prefopt.judging.local`); its
verdict is that average and its per-order probabilities give the two orders.

The table is long (one row per judge, source and statistic): the MT-Bench calibration's rows
(correlation of scores and of model rankings with FastChat's published GPT-4 judgments,
:mod:`prefopt.judging.calibration_mt_bench`) join it with ``benchmark = mt_bench`` and statistics
of their own (:func:`write_calibration_outputs`, ``mt_bench=``).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import zip_longest
from typing import Any

import numpy as np
import pandas as pd

from prefopt.judging.registry import paper_judge

#: The annotation files of the retired judge this project calibrates against, by source (the
#: model that wrote ``output_2``; the baseline ``output_1`` is AlpacaEval 2.0's
#: ``gpt4_1106_preview``), in the order the tables list them.
SOURCES = ("Mistral-7B-Instruct-v0.2", "gpt-3.5-turbo-0301", "gemini-pro")
#: The retired judge: alpaca_eval's annotator config and its model.
REFERENCE_JUDGE = paper_judge("alpaca_eval").id
REFERENCE_MODEL = paper_judge("alpaca_eval").model
#: Where a source's annotations sit in the download layout (and in a mirror, and in the shipped
#: sample): alpaca_eval's own ``results/<model>/<annotator>/annotations.json`` under this folder.
LAYOUT_DIR = "alpaca_eval_calibration"
#: The pooled row of the table.
ALL = "all"
DRAW = 0
#: Salt of the selection hash: the same rows are drawn on every machine, by every route.
SELECTION_SALT = "prefopt-judge-calibration"
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 20250811
LEVEL = 0.95
#: The statistics of a benchmark, in table order (AlpacaEval's; MT-Bench's will add their own).
STATISTICS = (
    "pairs",
    "reference_draws",
    "reference_failures",
    "judge_draws",
    "judge_failures",
    "agreement",
    "agreement_with_draws",
    "cohen_kappa",
    "position_consistency",
    "length_preference_judge",
    "length_preference_reference",
)
#: Columns of the table (before the provenance stamp's).
COLUMNS = (
    "benchmark",
    "judge",
    "judge_label",
    "judge_model",
    "served_model",
    "reference_judge",
    "reference_model",
    "reference_annotators",
    "source",
    "statistic",
    "value",
    "ci_low",
    "ci_high",
    "ci_method",
    "n",
)


def source_path(source: str) -> str:
    """A source's annotation file, relative to the download layout (or mirror) root."""
    return f"{LAYOUT_DIR}/{source}/{REFERENCE_JUDGE}/annotations.json"


# --------------------------------------------------------------------------- verdicts


def verdict(preference: Any) -> int | None:
    """1 (output_1 wins), 2 (output_2 wins), DRAW (0) or None (failure) of an alpaca_eval
    preference: 1.5 and 0 are draws, values in [1, 1.5) and (1.5, 2] lean to a side."""
    if preference is None:
        return None
    p = float(preference)
    if math.isnan(p):
        return None
    if p == 0 or p == 1.5:
        return DRAW
    if not 1.0 <= p <= 2.0:
        raise ValueError(f"preference {preference!r} is not 0, null or in [1, 2]")
    return 1 if p < 1.5 else 2


def swap_preference(preference: Any) -> float | None:
    """A preference given with output_1 and output_2 exchanged, back in the original orientation
    (1 <-> 2; draws, 0 and failures unchanged)."""
    if preference is None or (isinstance(preference, float) and math.isnan(preference)):
        return None
    p = float(preference)
    return p if p == 0 else 3.0 - p


# --------------------------------------------------------------------------- selection


def selection_key(source: str, instruction: str) -> str:
    """The rank of a row in a draw: sha256 of the salt, the source and the instruction (the
    sources share their 805 instructions, so each source draws its own)."""
    text = f"{SELECTION_SALT}\n{source}\n{instruction}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def select_rows(
    rows: Sequence[Mapping[str, Any]],
    source: str,
    max_pairs: int | None = None,
    max_chars: int | None = None,
) -> list[int]:
    """Indices (in file order) of the rows a calibration reads from one source file.

    ``max_pairs`` None: every row (``max_chars`` None) or every row whose two outputs together
    have at most ``max_chars`` characters. Otherwise a stratified draw of decisive rows: the
    retired judge's baseline wins and model wins, each ranked by :func:`selection_key`, are taken
    in turn (1st baseline win, 1st model win, 2nd baseline win, ...; a class that runs out leaves
    the rest to the other) until ``max_pairs`` rows. The draw is stable under itself: drawing
    ``max_pairs`` from its own result returns all of it, and drawing fewer returns the same rows
    as drawing fewer from the whole file.
    """
    eligible = [
        i
        for i, r in enumerate(rows)
        if max_chars is None or len(r["output_1"]) + len(r["output_2"]) <= max_chars
    ]
    if max_pairs is None:
        return eligible
    by_class = {
        side: sorted(
            (i for i in eligible if verdict(rows[i]["preference"]) == side),
            key=lambda i: selection_key(source, rows[i]["instruction"]),
        )
        for side in (1, 2)
    }
    turns = zip_longest(by_class[1], by_class[2])
    interleaved = [i for turn in turns for i in turn if i is not None]
    return sorted(interleaved[:max_pairs])


def calibration_pairs(
    rows: Sequence[Mapping[str, Any]], source: str, max_pairs: int | None = None
) -> list[dict[str, Any]]:
    """The selected rows of one source as the pairs a judge is asked: both outputs, the
    retired judge's recorded preference and annotator, and the row's index in the file."""
    out = []
    for i in select_rows(rows, source, max_pairs):
        r = rows[i]
        for key in ("instruction", "output_1", "output_2"):
            if not isinstance(r.get(key), str) or not r[key].strip():
                raise ValueError(f"{source_path(source)} row {i}: {key!r} is missing or empty")
        out.append(
            {
                "source": source,
                "row": i,
                "instruction": r["instruction"],
                "dataset": r.get("dataset"),
                "output_1": r["output_1"],
                "generator_1": r.get("generator_1"),
                "output_2": r["output_2"],
                "generator_2": r.get("generator_2"),
                "reference_annotator": r.get("annotator"),
                "reference_preference": r.get("preference"),
            }
        )
    return out


# --------------------------------------------------------------------------- judge records


def local_judge_records(annotations: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Calibration records from the local judge's annotations of the pairs (each asked in both
    orders): the averaged preference is its verdict; order 1 (output_1 shown first) and order 2
    (output_2 first) give the per-order preferences, in the original orientation."""
    out = []
    for a in annotations:
        out.append(
            {
                **{k: v for k, v in a.items() if not k.startswith("p_model_better")},
                "preference_original_order": 1.0 + a["p_model_better_order1"],
                "preference_swapped_order": 1.0 + a["p_model_better_order2"],
            }
        )
    return out


def api_judge_records(
    original: Sequence[Mapping[str, Any]],
    swapped: Sequence[Mapping[str, Any]] | None,
    pairs: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Calibration records from an API judge's annotations in the original order and (if asked)
    with the outputs exchanged (``output_1`` = the pair's output_2 there): the original order's
    preference is the verdict, the swapped one is mapped back (:func:`swap_preference`)."""
    out = []
    for k, (pair, a) in enumerate(zip(pairs, original, strict=True)):
        s = swapped[k] if swapped is not None else None
        errors = [e for e in (a.get("judge_error"), s and s.get("judge_error")) if e]
        out.append(
            {
                **pair,
                "annotator": a.get("annotator"),
                "judge_model": a.get("judge_model"),
                "served_model": a.get("served_model"),
                "preference": a.get("preference"),
                "preference_original_order": a.get("preference"),
                "preference_swapped_order": swap_preference(s["preference"]) if s else None,
                "is_switched_outputs": a.get("is_switched_outputs"),
                "judge_error": "; ".join(dict.fromkeys(errors)) or None,
            }
        )
    return out


def judge_pairs_with_api(
    client: Any, pairs: Sequence[Mapping[str, Any]], config_path: Any, swap: bool = True
) -> list[dict[str, Any]]:
    """Calibration records of an API judge (a :class:`prefopt.judging.api.ApiJudgeClient`):
    every pair asked as the retired judge was asked (``output_1`` the baseline, alpaca_eval's
    seeded per-instruction presentation) and, with ``swap``, with the outputs exchanged."""
    from prefopt.judging.api import judge_alpaca_eval_pairs

    def outputs(side: int) -> list[dict[str, Any]]:
        return [
            {
                "instruction": p["instruction"],
                "dataset": p.get("dataset"),
                "output": p[f"output_{side}"],
                "generator": p.get(f"generator_{side}"),
            }
            for p in pairs
        ]

    def ask(model: list[dict[str, Any]], reference: list[dict[str, Any]], order: str) -> list:
        return judge_alpaca_eval_pairs(
            client, model, reference, config_path=config_path, item_prefix=f"calibration-{order}"
        )

    original = ask(outputs(2), outputs(1), "original")
    swapped = ask(outputs(1), outputs(2), "swapped") if swap else None
    return api_judge_records(original, swapped, pairs)


def pairs_note(report: Mapping[str, Any]) -> str:
    """What the pairs are, from prepare_calibration_pairs' report: rows read per source."""
    text = "Pairs per source: " + "; ".join(
        f"{source}: {r['pairs']} of the {r['rows_in_file']} rows of the file read"
        for source, r in report["sources"].items()
    )
    if report.get("max_pairs"):
        text += f" (a stratified draw, max_pairs = {report['max_pairs']})"
    return text + "."


# --------------------------------------------------------------------------- statistics


def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of k/n; (nan, nan) for n = 0 (prefopt.reporting.artifacts')."""
    from prefopt.reporting.artifacts import wilson_interval as wilson

    return wilson(k, n, level)


def agreement(reference: Sequence[int | None], judge: Sequence[int | None]) -> tuple[int, int]:
    """(agreeing, compared) over the pairs both judged decisively (1 or 2)."""
    both = [(r, j) for r, j in zip(reference, judge, strict=True) if r in (1, 2) and j in (1, 2)]
    return sum(r == j for r, j in both), len(both)


def agreement_with_draws(
    reference: Sequence[int | None], judge: Sequence[int | None]
) -> tuple[int, int]:
    """(agreeing, compared) over the pairs neither failed on; a draw agrees only with a draw."""
    both = [
        (r, j) for r, j in zip(reference, judge, strict=True) if r is not None and j is not None
    ]
    return sum(r == j for r, j in both), len(both)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's kappa of two raters' labels: (p_o - p_e) / (1 - p_e), p_e from each rater's own
    label frequencies. NaN with no pairs or when p_e = 1 (both raters always give the same one
    label: agreement is then certain by chance and kappa undefined). As scikit-learn's
    ``cohen_kappa_score`` (unweighted), without the dependency."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} labels against {len(b)}")
    n = len(a)
    if n == 0:
        return math.nan
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[label] * cb[label] for label in ca) / (n * n)
    if expected >= 1.0:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def kappa_bootstrap_interval(
    a: Sequence[Any],
    b: Sequence[Any],
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`cohen_kappa` over pairs resampled with
    replacement (resamples where kappa is undefined are left out); (nan, nan) without any."""
    from prefopt.reporting.artifacts import percentile_interval

    n = len(a)
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    reps = np.array(
        [
            cohen_kappa(a_arr[idx].tolist(), b_arr[idx].tolist())
            for idx in rng.integers(0, n, (n_bootstrap, n))
        ]
    )
    return percentile_interval(reps, level)


def position_consistency(
    original: Sequence[int | None], swapped: Sequence[int | None]
) -> tuple[int, int]:
    """(same verdict in both orders, pairs with a verdict in both orders); a draw in both counts
    as the same."""
    both = [
        (o, s) for o, s in zip(original, swapped, strict=True) if o is not None and s is not None
    ]
    return sum(o == s for o, s in both), len(both)


def length_preference(
    verdicts: Sequence[int | None], len_1: Sequence[int], len_2: Sequence[int]
) -> tuple[int, int]:
    """(decisive verdicts for the longer output, decisive verdicts on pairs of unequal length)."""
    longer = 0
    counted = 0
    for v, n1, n2 in zip(verdicts, len_1, len_2, strict=True):
        if v not in (1, 2) or n1 == n2:
            continue
        counted += 1
        longer += (v == 1) == (n1 > n2)
    return longer, counted


# --------------------------------------------------------------------------- the table


def _row(
    statistic: str,
    value: float,
    n: int,
    ci: tuple[float, float] = (math.nan, math.nan),
    method: str = "",
) -> dict[str, Any]:
    return {
        "statistic": statistic,
        "value": float(value),
        "ci_low": ci[0],
        "ci_high": ci[1],
        "ci_method": method,
        "n": int(n),
    }


def _proportion(statistic: str, k: int, n: int) -> dict[str, Any]:
    value = k / n if n else math.nan
    return _row(statistic, value, n, wilson_interval(k, n), "wilson" if n else "")


def group_statistics(records: pd.DataFrame, swap: bool = True) -> list[dict[str, Any]]:
    """The AlpacaEval statistics (:data:`STATISTICS`) of one group of calibration records
    (columns ``reference_preference``, ``preference``, ``preference_original_order``,
    ``preference_swapped_order``, ``output_1``, ``output_2``). ``swap`` False: the pairs were not
    asked in the other order, and position consistency is NaN with n = 0."""
    ref = [verdict(p) for p in records["reference_preference"]]
    judge = [verdict(p) for p in records["preference"]]
    n = len(records)
    rows = [
        _row("pairs", n, n),
        _row("reference_draws", sum(v == DRAW for v in ref), n),
        _row("reference_failures", sum(v is None for v in ref), n),
        _row("judge_draws", sum(v == DRAW for v in judge), n),
        _row("judge_failures", sum(v is None for v in judge), n),
        _proportion("agreement", *agreement(ref, judge)),
        _proportion("agreement_with_draws", *agreement_with_draws(ref, judge)),
    ]
    decisive = [(r, j) for r, j in zip(ref, judge, strict=True) if r in (1, 2) and j in (1, 2)]
    a, b = [r for r, _ in decisive], [j for _, j in decisive]
    kappa = cohen_kappa(a, b)
    ci = kappa_bootstrap_interval(a, b) if math.isfinite(kappa) else (math.nan, math.nan)
    rows.append(
        _row("cohen_kappa", kappa, len(decisive), ci, "bootstrap" if math.isfinite(ci[0]) else "")
    )
    if swap:
        first = [verdict(p) for p in records["preference_original_order"]]
        second = [verdict(p) for p in records["preference_swapped_order"]]
        rows.append(_proportion("position_consistency", *position_consistency(first, second)))
    else:
        rows.append(_row("position_consistency", math.nan, 0))
    len_1 = [len(t) for t in records["output_1"]]
    len_2 = [len(t) for t in records["output_2"]]
    rows.append(_proportion("length_preference_judge", *length_preference(judge, len_1, len_2)))
    rows.append(_proportion("length_preference_reference", *length_preference(ref, len_1, len_2)))
    return rows


def calibration_table(
    records: pd.DataFrame,
    judge: str,
    judge_label: str,
    judge_model: str,
    swap: bool = True,
    sources: Sequence[str] | None = None,
    served_model: str = "",
) -> pd.DataFrame:
    """The long table of one AlpacaEval judge: :data:`STATISTICS` per source (in ``sources``
    order, default :data:`SOURCES` present) and over all sources (``source = all``)."""
    present = list(dict.fromkeys(records["source"]))
    order = [s for s in (sources or SOURCES) if s in present] + [
        s for s in present if s not in (sources or SOURCES)
    ]
    groups = [(s, records[records["source"] == s]) for s in order] + [(ALL, records)]
    out = []
    for source, group in groups:
        annotators = ";".join(sorted({str(a) for a in group["reference_annotator"].dropna()}))
        for row in group_statistics(group, swap=swap):
            out.append(
                {
                    "benchmark": "alpaca_eval",
                    "judge": judge,
                    "judge_label": judge_label,
                    "judge_model": judge_model,
                    "served_model": served_model,
                    "reference_judge": REFERENCE_JUDGE,
                    "reference_model": REFERENCE_MODEL,
                    "reference_annotators": annotators,
                    "source": source,
                    **row,
                }
            )
    return pd.DataFrame(out, columns=list(COLUMNS))


# --------------------------------------------------------------------------- artifacts

#: The wide Markdown table's columns: statistic -> header (proportions shown in percent).
_SHOWN = {
    "agreement": "Agreement, %",
    "cohen_kappa": "Cohen's κ",
    "agreement_with_draws": "Agreement with draws, %",
    "position_consistency": "Same winner both orders, %",
    "length_preference_judge": "Longer preferred (judge), %",
    "length_preference_reference": "Longer preferred (retired judge), %",
}


def _cell(statistic: str, row: pd.Series) -> str:
    from prefopt.reporting.artifacts import fmt, fmt_ci

    scale, digits = (1.0, 2) if statistic == "cohen_kappa" else (100.0, 1)
    value = fmt(row["value"] * scale, digits)
    if value == "n/a":
        return value
    ci = fmt_ci(row["ci_low"] * scale, row["ci_high"] * scale, digits)
    return f"{value} {ci}" + (f" (n={int(row['n'])})" if ci == "n/a" else "")


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per judge and source: pairs, draws and failures, then each statistic with its
    95 % interval (the Markdown artifact)."""
    rows = []
    for (judge, source), group in table.groupby(["judge_label", "source"], sort=False):
        stat = group.set_index("statistic")
        count = {name: int(stat.loc[name, "value"]) for name in STATISTICS[:5]}
        rows.append(
            {
                "Judge": judge,
                "Source": source,
                "Pairs": count["pairs"],
                **{header: _cell(name, stat.loc[name]) for name, header in _SHOWN.items()},
                "Draws (judge / retired)": f"{count['judge_draws']} / {count['reference_draws']}",
                "Failures (judge / retired)": (
                    f"{count['judge_failures']} / {count['reference_failures']}"
                ),
            }
        )
    return pd.DataFrame(rows)


def table_notes(table: pd.DataFrame, judge_note: str, pairs_note: str = "") -> list[str]:
    """The Markdown table's footnotes: the judge's label, the conventions, the intervals, what
    the source files hold."""
    notes = [
        judge_note,
        "Verdicts as alpaca_eval records them: preference 1 = output_1 (the baseline: "
        "gpt4_1106_preview in alpaca_eval's files, text-davinci-003 in the paper authors' "
        "AlpacaEval 1.0 files) wins, 2 = output_2 (the source model) wins, 1.5 or 0 = draw, "
        "null = failure. Agreement and κ use the pairs both judges decided (a draw or a failure "
        "on either side leaves a pair out; counted in the last two columns); agreement with "
        "draws counts a draw as agreeing only with a draw.",
        "Intervals: 95 % Wilson score intervals for the percentages; κ: 95 % percentile "
        f"bootstrap over pairs ({N_BOOTSTRAP} resamples); n/a where undefined (no pairs, or both "
        "judges always name the same side).",
        "Same winner both orders: the judge asked with the two outputs in the retired judge's "
        "order and exchanged (the local judge always reads both orders and averages them; the "
        "paper authors' pairs are asked in one order unless authors_outputs.swap). "
        "Longer preferred: share of decisive verdicts for the longer output (characters).",
    ]
    if pairs_note:
        notes.append(pairs_note)
    annotators = {
        source: group["reference_annotators"].iloc[0]
        for source, group in table[table["source"] != ALL].groupby("source", sort=False)
    }
    other = {s: a for s, a in annotators.items() if a and a != REFERENCE_JUDGE}
    if other:
        notes.append(
            "Recorded by another prompt of the same model: "
            + "; ".join(f"{s}: {a}" for s, a in other.items())
            + f" (alpaca_eval files these rows under {REFERENCE_JUDGE})."
        )
    return notes


#: The note of a table without MT-Bench rows.
NO_MT_BENCH_NOTE = (
    "MT-Bench calibration (against FastChat's published GPT-4 judgments) is not computed in this "
    "run: calibration.mt_bench.models is empty, or its sources are not among this run's."
)


def calibration_figure(
    table: pd.DataFrame, title: str, mt_bench: pd.DataFrame | None = None
) -> Any:
    """Each AlpacaEval statistic per source with its 95 % interval: percentages (left), κ
    (right); with MT-Bench rows, a row of MT-Bench panels below (correlations and rankings, and
    each model's mean score against GPT-4's: prefopt.judging.calibration_mt_bench)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = [s for s in _SHOWN if s != "cohen_kappa"]
    sources = list(dict.fromkeys(table["source"]))
    heights = []
    if len(table):  # AlpacaEval rows
        heights.append(0.6 + 0.25 * len(shares) * len(sources))
    if mt_bench is not None and len(mt_bench):
        heights.append(3.2)
    fig = plt.figure(figsize=(10, 0.6 + sum(heights) + 0.6 * len(heights)))
    grid = fig.add_gridspec(len(heights), 2, width_ratios=[3, 1], height_ratios=heights)
    if len(table):
        _alpaca_eval_panels(fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), table)
    if mt_bench is not None and len(mt_bench):
        from prefopt.judging.calibration_mt_bench import draw_panels

        row = len(heights) - 1
        draw_panels(fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1]), mt_bench)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _alpaca_eval_panels(ax: Any, kx: Any, table: pd.DataFrame) -> None:
    import matplotlib.pyplot as plt

    shares = [s for s in _SHOWN if s != "cohen_kappa"]
    sources = list(dict.fromkeys(table["source"]))
    colors = plt.get_cmap("tab10")
    step = 0.8 / max(len(sources), 1)
    centre = step * (len(sources) - 1) / 2  # of a statistic's points, one per source
    for k, source in enumerate(sources):
        stat = table[table["source"] == source].set_index("statistic")
        for axis, names, scale in ((ax, shares, 100.0), (kx, ["cohen_kappa"], 1.0)):
            y = np.arange(len(names)) + k * step
            v = stat.loc[names, "value"].to_numpy(float) * scale
            lo = stat.loc[names, "ci_low"].to_numpy(float) * scale
            hi = stat.loc[names, "ci_high"].to_numpy(float) * scale
            err = np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0)
            label = source if axis is ax else None
            axis.errorbar(v, y, xerr=err, fmt="o", color=colors(k), capsize=2, label=label)
    ax.set_yticks(np.arange(len(shares)) + centre, [_SHOWN[s] for s in shares])
    ax.invert_yaxis()
    ax.axvline(50, color="0.7", lw=0.8, ls="--")
    ax.set_xlim(-3, 103)
    ax.set_xlabel("% (95 % Wilson interval)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(sources))
    kx.set_yticks([centre], ["Cohen's κ"])
    kx.set_ylim(centre + 0.5, centre - 0.5)
    kx.axvline(0, color="0.7", lw=0.8, ls="--")
    kx.set_xlim(-1.1, 1.1)
    kx.set_xlabel("κ (95 % bootstrap)")


def write_calibration_outputs(
    records: Sequence[Mapping[str, Any]],
    csv: str,
    md: str,
    png: str,
    pdf: str,
    *,
    judge: str,
    local_judge_model: str | None,
    swap: bool = True,
    sources: Sequence[str] | None = None,
    pairs_note: str = "",
    provenance: str | None = None,
    mt_bench: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The calibration table (long CSV with the provenance stamp's columns, wide Markdown with
    the notes) and figure of one AlpacaEval judge's records (none: no AlpacaEval part) and, with
    ``mt_bench``, of the MT-Bench judge's: a mapping with ``judge`` (its id), ``records``
    (:func:`prefopt.judging.calibration_mt_bench.merged_records`), ``models`` (the table's order)
    and optionally ``items_note`` and ``n_bootstrap``. Returns the long table of both."""
    import matplotlib.pyplot as plt

    from prefopt.judging import calibration_mt_bench as cmt
    from prefopt.reporting.artifacts import (
        judge_label,
        markdown_document,
        out_path,
        save_figure,
    )
    from prefopt.reporting.provenance import provenance_note, stamp_columns

    if not records and mt_bench is None:
        raise ValueError("judge calibration: no AlpacaEval records and no MT-Bench records")
    documents, captions = [], []
    table = pd.DataFrame(columns=list(COLUMNS))
    if records:
        label = judge_label(judge, local_judge_model)
        frame = pd.DataFrame(list(records))
        models = {
            column: ";".join(sorted({str(m) for m in frame[column].dropna()}))
            for column in ("judge_model", "served_model")
            if column in frame
        }
        table = calibration_table(
            frame,
            judge,
            label.title,
            models.get("judge_model", ""),
            swap=swap,
            sources=sources,
            served_model=models.get("served_model", ""),
        )
        notes = table_notes(table, label.note, pairs_note)
        if mt_bench is None:
            notes.append(NO_MT_BENCH_NOTE)
        captions.append(
            f"Judge calibration (AlpacaEval): {label.title}, against the retired paper judge "
            f"{REFERENCE_JUDGE} ({REFERENCE_MODEL}) on pairs it judged"
        )
        documents.append((wide_table(table), captions[-1], notes))
    mt_table = None
    if mt_bench is not None:
        mt_label = judge_label(mt_bench["judge"], local_judge_model)
        n_bootstrap = mt_bench.get("n_bootstrap", cmt.N_BOOTSTRAP)
        mt_table = cmt.mt_bench_table(
            pd.DataFrame(mt_bench["records"]),
            mt_bench["judge"],
            mt_label.title,
            models=mt_bench.get("models"),
            n_bootstrap=n_bootstrap,
        )
        captions.append(
            f"Judge calibration (MT-Bench): {mt_label.title}, against GPT-4's single-answer "
            "grades published by FastChat, on the same answers"
        )
        documents.append(
            (
                cmt.wide_table(mt_table),
                captions[-1],
                cmt.table_notes(mt_label.note, mt_bench.get("items_note", ""), n_bootstrap),
            )
        )
        table = mt_table if table.empty else pd.concat([table, mt_table], ignore_index=True)
    if provenance:
        documents[-1][2].append(provenance_note(provenance))
    (stamp_columns(table, provenance) if provenance else table).to_csv(out_path(csv), index=False)
    text = "\n".join(markdown_document(*doc) for doc in documents)
    out_path(md).write_text(text, "utf-8")
    alpaca = table[table["benchmark"] == "alpaca_eval"]
    title = "\n".join(c.replace(", against", ",\nagainst") for c in captions)
    fig = calibration_figure(alpaca, title, mt_table)
    save_figure(fig, png, pdf, provenance=provenance)
    plt.close(fig)
    return table
