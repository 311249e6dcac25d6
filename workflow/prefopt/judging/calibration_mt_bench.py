"""MT-Bench calibration of the run's judge against FastChat's published GPT-4 single grading.

FastChat publishes, in the Hugging Face Space ``lmsys/mt-bench`` (the files its
``download_mt_bench_pregenerated.py`` fetches), GPT-4's single-answer grades of many models'
MT-Bench answers (``data/mt_bench/model_judgment/gpt-4_single.jsonl``: one row per model,
question and turn, ``score`` 1-10 or -1 where FastChat could not read a rating) and those answers
(``data/mt_bench/model_answer/<model>.jsonl``). The run's MT-Bench judge (``judges.mt_bench``)
grades the very same answers with the same FastChat prompts (:mod:`prefopt.judging.mt_bench`,
through the API judge or the local judge), and the two sets of scores are compared
(rule ``judge_calibration``, rows ``benchmark = mt_bench`` of ``judge_calibration.csv``).

**Items.** One item per (model, question, turn). A turn whose GPT-4 score is -1, or that has no
GPT-4 row, is a *reference failure*; one the judge could not rate (-1, or an API refusal) a
*judge failure*. Both are counted and left out of every other statistic, which are computed on
the turns both graded.

**Statistics** (:func:`mt_bench_table`; per source model and over all of them, ``source = all``):

- ``items``, ``reference_failures``, ``judge_failures``: counts, over every item.
- ``score_pearson``: Pearson's r of the judge's and GPT-4's scores (``scipy.stats.pearsonr``);
  95 % interval by Fisher's z (``atanh(r) ± 1.96 / sqrt(n - 3)``).
- ``score_spearman``: Spearman's ρ (``scipy.stats.spearmanr``); 95 % percentile bootstrap over
  *questions* (each resample draws questions with replacement and keeps all their turns and
  models, since a question's items are not independent), :data:`N_BOOTSTRAP` resamples, fixed seed.
- ``mean_abs_difference``: the mean of |judge - GPT-4| (same bootstrap).
- ``mean_score_judge`` / ``mean_score_reference``: the mean score of each judge on the compared
  turns (the figure's scatter; the local judge's expected score is on the same 1-10 scale).

And over the models (``source = all`` only): each model's mean score on the compared turns, by
the judge and by GPT-4, ranks the models; ``ranking_kendall_tau`` (Kendall's τ-b,
``scipy.stats.kendalltau``) and ``ranking_spearman`` compare the two rankings, with the same
question bootstrap (n = the number of models).
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
from scipy import stats

from prefopt.judging.mt_bench import CATEGORIES, judge_prompt_name

#: Where the Space's files sit in the download layout (and in a mirror): the Space's
#: ``data/mt_bench/`` folder, without the prefix.
LAYOUT_DIR = "mt_bench_calibration"
SPACE_DIR = "data/mt_bench"
JUDGMENT_FILE = "model_judgment/gpt-4_single.jsonl"
#: FastChat's name of the judge in gpt-4_single.jsonl (``judge[0]``), and the table's.
REFERENCE_JUDGE = "gpt-4"
REFERENCE_LABEL = "FastChat gpt-4_single"
BENCHMARK = "mt_bench"
ALL = "all"
SELECTION_SALT = "prefopt-judge-calibration-mt-bench"
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 20250812
LEVEL = 0.95
#: Per-source statistics, then the ranking statistics (source ``all`` only), in table order.
STATISTICS = (
    "items",
    "reference_failures",
    "judge_failures",
    "score_pearson",
    "score_spearman",
    "mean_abs_difference",
    "mean_score_judge",
    "mean_score_reference",
)
RANKING_STATISTICS = ("ranking_kendall_tau", "ranking_spearman")


def layout_files(models: Iterable[str]) -> dict[str, str]:
    """{path under :data:`LAYOUT_DIR`: path in the Space} of the judgments and the answers of
    ``models``."""
    rels = [JUDGMENT_FILE] + [f"model_answer/{m}.jsonl" for m in models]
    return {rel: f"{SPACE_DIR}/{rel}" for rel in rels}


def source_path(rel: str) -> str:
    """A file of the source relative to the download layout (or mirror) root."""
    return f"{LAYOUT_DIR}/{rel}"


def answer_path(model: str) -> str:
    return source_path(f"model_answer/{model}.jsonl")


# --------------------------------------------------------------------------- selection


def selection_key(question_id: Any) -> str:
    """The rank of a question in a draw: sha256 of the salt and the question id."""
    return hashlib.sha256(f"{SELECTION_SALT}\n{question_id}".encode()).hexdigest()


def select_questions(
    questions: Sequence[Mapping[str, Any]], max_questions: int | None = None
) -> list[dict[str, Any]]:
    """The questions a calibration reads, in file order: all (``max_questions`` None), or a
    category-stratified draw: each category's questions ranked by :func:`selection_key`, the
    categories taken in turn (:data:`CATEGORIES` order; a category that runs out leaves the rest
    to the others) until ``max_questions``. Drawing fewer gives a subset of drawing more."""
    if max_questions is None:
        return [dict(q) for q in questions]
    present = list(dict.fromkeys(q["category"] for q in questions))
    order = [c for c in CATEGORIES if c in present] + [c for c in present if c not in CATEGORIES]
    ranked = [
        sorted(
            (i for i, q in enumerate(questions) if q["category"] == c),
            key=lambda i: selection_key(questions[i]["question_id"]),
        )
        for c in order
    ]
    interleaved = [i for turn in zip_longest(*ranked) for i in turn if i is not None]
    return [dict(questions[i]) for i in sorted(interleaved[:max_questions])]


def _valid(score: Any) -> float | None:
    """A score as a float, None for a failure (-1, a negative, null or NaN)."""
    if score is None:
        return None
    value = float(score)
    return None if math.isnan(value) or value < 0 else value


def calibration_items(
    questions: Sequence[Mapping[str, Any]],
    judgments: Iterable[Mapping[str, Any]],
    answers: Mapping[str, Sequence[Mapping[str, Any]]],
    max_questions: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the judge is asked and what GPT-4 said: ``(items, report)``.

    ``questions``: FastChat's question.jsonl; ``judgments``: rows of gpt-4_single.jsonl (other
    models' and other judges' rows are ignored; a repeated (model, question, turn) keeps the last
    row, as FastChat's readers do); ``answers``: each model's model_answer rows, in the order the
    tables list the models. ``items`` holds the chosen questions, each model's answer turns and
    GPT-4's score per (model, question, turn) (None for a failed or missing grade); ``report``
    counts, per model, the rows read and the reference failures.
    """
    chosen = select_questions(questions, max_questions)
    ids = {q["question_id"] for q in chosen}
    models = list(answers)
    rows: dict[tuple[str, int, int], Mapping[str, Any]] = {}
    for row in judgments:
        judge = row.get("judge") or [None]
        wanted = row.get("model") in answers and row["question_id"] in ids
        if wanted and judge[0] == REFERENCE_JUDGE:
            rows[(row["model"], int(row["question_id"]), int(row["turn"]))] = row
    items: dict[str, Any] = {"questions": chosen, "models": models, "answers": [], "reference": []}
    report: dict[str, Any] = {"max_questions": max_questions, "questions": len(chosen)}
    report["models"] = {}
    for model in models:
        by_id = {a["question_id"]: a for a in answers[model]}
        counts: Counter[str] = Counter(answers_in_file=len(by_id))
        for q in chosen:
            qid = q["question_id"]
            if qid not in by_id:
                raise ValueError(f"{model}: no answer to MT-Bench question {qid}")
            turns = list(by_id[qid]["choices"][0]["turns"])
            if len(turns) < len(q["turns"]):
                raise ValueError(f"{model}: question {qid} answered in {len(turns)} turn(s)")
            items["answers"].append({"model": model, "question_id": qid, "turns": turns})
            for turn in range(1, len(q["turns"]) + 1):
                row = rows.get((model, qid, turn))
                score = _valid(row["score"]) if row is not None else None
                prompt = judge_prompt_name(q["category"], turn)
                counts["items"] += 1
                if row is None:
                    counts["reference_missing"] += 1
                elif score is None:
                    counts["reference_failed_parse"] += 1
                elif row["judge"][1] != prompt:
                    counts["reference_other_prompt"] += 1
                items["reference"].append(
                    {
                        "model": model,
                        "question_id": qid,
                        "category": q["category"],
                        "turn": turn,
                        "reference_score": score,
                        "reference_prompt": row["judge"][1] if row is not None else None,
                    }
                )
        report["models"][model] = {
            key: int(counts[key])
            for key in (
                "answers_in_file",
                "items",
                "reference_missing",
                "reference_failed_parse",
                "reference_other_prompt",
            )
        }
    return items, report


def answers_of(items: Mapping[str, Any], model: str) -> dict[int, list[str]]:
    """One model's answer turns by question id, as the judges read them."""
    return {a["question_id"]: a["turns"] for a in items["answers"] if a["model"] == model}


def items_note(report: Mapping[str, Any]) -> str:
    """What the MT-Bench items are, from prepare_calibration_mt_bench's report."""
    draw = (
        f"a category-stratified draw of {report['questions']} questions "
        f"(max_questions = {report['max_questions']})"
        if report.get("max_questions")
        else f"all {report['questions']} questions"
    )
    parts = []
    for model, r in report["models"].items():
        failed = r["reference_missing"] + r["reference_failed_parse"]
        parts.append(f"{model}: {r['items']} turns, {failed} without a GPT-4 score")
    return f"MT-Bench items: {draw}, both turns, per model: " + "; ".join(parts) + "."


# --------------------------------------------------------------------------- judge records


def judge_with_local(judge: Any, items: Mapping[str, Any], judge_prompts: Any, references: Any):
    """The local judge's FastChat judgment rows of every model's answers (``judge``: a
    :class:`prefopt.judging.local.LocalJudge`; ``references``: the reference turns by id)."""
    out: list[dict[str, Any]] = []
    for model in items["models"]:
        out += judge.judge_mt_bench(
            items["questions"], answers_of(items, model), judge_prompts, references, model
        )
    return out


def judge_with_api(client: Any, items: Mapping[str, Any], judge_prompts: Any, references: Any):
    """An API judge's FastChat judgment rows of every model's answers
    (:func:`prefopt.judging.api.judge_mt_bench`, one call per model; every answer cached)."""
    from prefopt.judging.api import judge_mt_bench

    out: list[dict[str, Any]] = []
    for model in items["models"]:
        out += judge_mt_bench(
            client,
            items["questions"],
            answers_of(items, model),
            judge_prompts,
            references,
            model_id=model,
        )
    return out


def merged_records(
    items: Mapping[str, Any], judgments: Iterable[Mapping[str, Any]]
) -> pd.DataFrame:
    """One row per item: the GPT-4 score and the judge's (NaN for a failure on either side), with
    the judge's model names. A judgment repeated for an item keeps the last one."""
    got = {(j["model"], int(j["question_id"]), int(j["turn"])): j for j in judgments}
    rows = []
    for ref in items["reference"]:
        j = got.get((ref["model"], int(ref["question_id"]), int(ref["turn"])))
        score = _valid(j["score"]) if j is not None else None
        rows.append(
            {
                **ref,
                "reference_score": math.nan
                if ref["reference_score"] is None
                else float(ref["reference_score"]),
                "judge_score": math.nan if score is None else score,
                "judge_model": j.get("judge_model") if j else None,
                "served_model": j.get("served_model") if j else None,
                "judge_error": j.get("judge_error") if j else "no judgment",
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- statistics


def pearson_fisher(x: Sequence[float], y: Sequence[float], level: float = LEVEL):
    """(r, (low, high)): Pearson's r and its Fisher-z interval; r NaN with fewer than two
    points or a constant side, the interval NaN with fewer than four points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, (math.nan, math.nan)
    r = float(stats.pearsonr(x, y).statistic)
    if n < 4:
        return r, (math.nan, math.nan)
    half = stats.norm.ppf((1 + level) / 2) / math.sqrt(n - 3)
    with np.errstate(divide="ignore"):
        z = np.arctanh(np.clip(r, -1.0, 1.0))
    return r, (float(np.tanh(z - half)), float(np.tanh(z + half)))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ; NaN with fewer than two points or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b; NaN with fewer than two points or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.kendalltau(x, y).statistic)


def model_means(compared: pd.DataFrame, models: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each model's mean judge and GPT-4 score on the compared turns (NaN for a model with none)."""
    means = compared.groupby("model")[["judge_score", "reference_score"]].mean()
    means = means.reindex(list(models))
    return means["judge_score"].to_numpy(float), means["reference_score"].to_numpy(float)


def ranking_agreement(judge: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """(Kendall's τ-b, Spearman's ρ) of two rankings given as scores (models without a score on
    either side left out)."""
    j, r = np.asarray(judge, float), np.asarray(reference, float)
    keep = np.isfinite(j) & np.isfinite(r)
    return kendall_tau(j[keep], r[keep]), spearman(j[keep], r[keep])


def _question_bootstrap(
    compared: pd.DataFrame,
    models: Sequence[str] | None,
    n_bootstrap: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Replicates of Spearman's ρ, the mean absolute difference and (``models`` given) the two
    ranking statistics, resampling questions with replacement (all of a question's items)."""
    qids = np.asarray(sorted(set(compared["question_id"])))
    reps: dict[str, list[float]] = {k: [] for k in ("spearman", "mad", "tau", "rank_rho")}
    if len(qids) == 0:
        return {k: np.array([]) for k in reps}
    rng = np.random.default_rng(seed)
    rows_of = {q: np.flatnonzero(compared["question_id"].to_numpy() == q) for q in qids}
    judge = compared["judge_score"].to_numpy(float)
    ref = compared["reference_score"].to_numpy(float)
    for draw in rng.integers(0, len(qids), (n_bootstrap, len(qids))):
        idx = np.concatenate([rows_of[qids[k]] for k in draw])
        reps["spearman"].append(spearman(judge[idx], ref[idx]))
        reps["mad"].append(float(np.mean(np.abs(judge[idx] - ref[idx]))))
        if models is not None:
            tau, rho = ranking_agreement(*model_means(compared.iloc[idx], models))
            reps["tau"].append(tau)
            reps["rank_rho"].append(rho)
    return {k: np.asarray(v, float) for k, v in reps.items()}


def _row(statistic: str, value: float, n: int, ci=(math.nan, math.nan), method: str = ""):
    return {
        "statistic": statistic,
        "value": float(value),
        "ci_low": float(ci[0]),
        "ci_high": float(ci[1]),
        "ci_method": method if math.isfinite(ci[0]) else "",
        "n": int(n),
    }


def group_statistics(
    records: pd.DataFrame,
    models: Sequence[str] | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> list[dict[str, Any]]:
    """:data:`STATISTICS` of one group of merged records (:func:`merged_records`) and, with
    ``models`` (the pooled group), :data:`RANKING_STATISTICS` over those models."""
    from prefopt.reporting.artifacts import percentile_interval

    ref_ok = records["reference_score"].notna()
    judge_ok = records["judge_score"].notna()
    compared = records[ref_ok & judge_ok]
    n = len(compared)
    judge = compared["judge_score"].to_numpy(float)
    ref = compared["reference_score"].to_numpy(float)
    r, r_ci = pearson_fisher(judge, ref, level)
    reps = _question_bootstrap(compared, models, n_bootstrap, seed)
    rho = spearman(judge, ref)
    mad = float(np.mean(np.abs(judge - ref))) if n else math.nan
    rows = [
        _row("items", len(records), len(records)),
        _row("reference_failures", int((~ref_ok).sum()), len(records)),
        _row("judge_failures", int((~judge_ok).sum()), len(records)),
        _row("score_pearson", r, n, r_ci, "fisher_z"),
        _row(
            "score_spearman",
            rho,
            n,
            percentile_interval(reps["spearman"], level) if math.isfinite(rho) else (math.nan,) * 2,
            "bootstrap_questions",
        ),
        _row(
            "mean_abs_difference",
            mad,
            n,
            percentile_interval(reps["mad"], level) if n else (math.nan, math.nan),
            "bootstrap_questions",
        ),
        _row("mean_score_judge", float(judge.mean()) if n else math.nan, n),
        _row("mean_score_reference", float(ref.mean()) if n else math.nan, n),
    ]
    if models is not None:
        j_means, r_means = model_means(compared, models)
        tau, rank_rho = ranking_agreement(j_means, r_means)
        ranked = int((np.isfinite(j_means) & np.isfinite(r_means)).sum())
        for name, value, key in (
            ("ranking_kendall_tau", tau, "tau"),
            ("ranking_spearman", rank_rho, "rank_rho"),
        ):
            ci = percentile_interval(reps[key], level) if math.isfinite(value) else (math.nan,) * 2
            rows.append(_row(name, value, ranked, ci, "bootstrap_questions"))
    return rows


def mt_bench_table(
    records: pd.DataFrame,
    judge: str,
    judge_label: str,
    models: Sequence[str] | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
) -> pd.DataFrame:
    """The long table of one MT-Bench judge (the columns of
    :data:`prefopt.judging.calibration.COLUMNS`): :data:`STATISTICS` per source model (in
    ``models`` order, default the records' order) and over all of them (``source = all``, with
    :data:`RANKING_STATISTICS`)."""
    order = list(models or dict.fromkeys(records["model"]))
    names = {
        column: ";".join(sorted({str(m) for m in records[column].dropna()}))
        for column in ("judge_model", "served_model")
    }
    prompts = ";".join(sorted({str(p) for p in records["reference_prompt"].dropna()}))
    groups = [(m, records[records["model"] == m], None) for m in order]
    groups.append((ALL, records, order))
    out = []
    for source, group, ranked in groups:
        for row in group_statistics(group, ranked, n_bootstrap=n_bootstrap):
            out.append(
                {
                    "benchmark": BENCHMARK,
                    "judge": judge,
                    "judge_label": judge_label,
                    "judge_model": names["judge_model"],
                    "served_model": names["served_model"],
                    "reference_judge": REFERENCE_LABEL,
                    "reference_model": REFERENCE_JUDGE,
                    "reference_annotators": prompts,
                    "source": source,
                    **row,
                }
            )
    # the long table's columns (prefopt.judging.calibration.COLUMNS, which imports this module:
    # the order is the dict's, checked by the tests)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- artifacts


def _cell(row: pd.Series, digits: int = 2) -> str:
    from prefopt.reporting.artifacts import fmt, fmt_ci

    value = fmt(row["value"], digits)
    if value == "n/a":
        return value
    ci = fmt_ci(row["ci_low"], row["ci_high"], digits)
    return value if ci == "n/a" else f"{value} {ci}"


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per judge and source model: items, failures, the score correlations, the mean
    absolute difference and both judges' mean scores; the rankings on the pooled row."""
    rows = []
    for (judge, source), group in table.groupby(["judge_label", "source"], sort=False):
        stat = group.set_index("statistic")
        count = {k: int(stat.loc[k, "value"]) for k in STATISTICS[:3]}
        ranked = "ranking_kendall_tau" in stat.index
        rows.append(
            {
                "Judge": judge,
                "Model": source,
                "Turns": count["items"],
                "Pearson r": _cell(stat.loc["score_pearson"]),
                "Spearman ρ": _cell(stat.loc["score_spearman"]),
                "Mean abs. diff.": _cell(stat.loc["mean_abs_difference"]),
                "Mean (judge / GPT-4)": (
                    f"{_cell(stat.loc['mean_score_judge'])} / "
                    f"{_cell(stat.loc['mean_score_reference'])}"
                ),
                "Ranking τ": _cell(stat.loc["ranking_kendall_tau"]) if ranked else "",
                "Ranking ρ": _cell(stat.loc["ranking_spearman"]) if ranked else "",
                "Failures (judge / GPT-4)": (
                    f"{count['judge_failures']} / {count['reference_failures']}"
                ),
            }
        )
    return pd.DataFrame(rows)


def table_notes(judge_note: str, items_text: str = "", n_bootstrap: int = N_BOOTSTRAP) -> list[str]:
    notes = [
        judge_note,
        "Reference: GPT-4's single-answer grades (1-10) of the same answers, as FastChat "
        "published them (Hugging Face Space lmsys/mt-bench, "
        "data/mt_bench/model_judgment/gpt-4_single.jsonl), "
        "with the same prompts (single-v1, single-math-v1 with GPT-4's reference answer, and their "
        "multi-turn versions). A turn without a GPT-4 grade (-1: FastChat read no rating; or no "
        "row) or without the judge's is left out of every statistic but the counts.",
        "Intervals: Pearson r, 95 % Fisher-z interval; Spearman ρ, the mean absolute "
        f"difference and the rankings, 95 % percentile bootstrap over questions ({n_bootstrap} "
        "resamples, all of a question's turns and models together). Ranking τ (Kendall's τ-b) "
        "and ρ compare the models ranked by their mean score on the turns both graded.",
    ]
    if items_text:
        notes.append(items_text)
    return notes


def draw_panels(ax: Any, sx: Any, table: pd.DataFrame) -> None:
    """The MT-Bench panels: each source's score correlations and the rankings with their 95 %
    intervals (``ax``), and each model's mean score, judge against GPT-4 (``sx``)."""
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab10")
    shown = {"score_pearson": "Pearson r", "score_spearman": "Spearman ρ"}
    ranks = {"ranking_kendall_tau": "Ranking τ", "ranking_spearman": "Ranking ρ"}
    sources = list(dict.fromkeys(table["source"]))
    labels = list(shown.values()) + list(ranks.values())
    step = 0.8 / max(len(sources), 1)
    for k, source in enumerate(sources):
        stat = table[table["source"] == source].set_index("statistic")
        names = [s for s in (*shown, *ranks) if s in stat.index]
        y = np.array([labels.index({**shown, **ranks}[s]) for s in names]) + k * step
        v = stat.loc[names, "value"].to_numpy(float)
        lo = stat.loc[names, "ci_low"].to_numpy(float)
        hi = stat.loc[names, "ci_high"].to_numpy(float)
        err = np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0)
        ax.errorbar(v, y, xerr=err, fmt="o", color=colors(k), capsize=2, label=source)
        if source != ALL:
            sx.scatter(
                stat.loc["mean_score_reference", "value"],
                stat.loc["mean_score_judge", "value"],
                color=colors(k),
                label=source,
            )
    ax.set_yticks(np.arange(len(labels)) + step * (len(sources) - 1) / 2, labels)
    ax.invert_yaxis()
    ax.axvline(0, color="0.7", lw=0.8, ls="--")
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("MT-Bench: correlation with GPT-4 (95 % interval)")
    ax.legend(
        fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(len(sources), 4)
    )
    sx.plot([1, 10], [1, 10], color="0.7", lw=0.8, ls="--")
    sx.set_xlim(0.5, 10.5)
    sx.set_ylim(0.5, 10.5)
    sx.set_xlabel("GPT-4 mean score")
    sx.set_ylabel("judge mean score")
