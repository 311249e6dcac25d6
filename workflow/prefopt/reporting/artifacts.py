"""Helpers of the artifact notebooks (notebooks/*.ipynb): paths, judges, variants, statistics,
number formatting, and the CSV / Markdown / LaTeX tables and figures they write.

Each notebook keeps only its parameters and the logic of its own artifact; everything they share
lives here, once, with unit tests (tests/unit/reporting/test_artifacts.py). The module must import
in the `notebooks` environment (envs/notebooks.yaml: numpy, pandas, matplotlib, scipy; no torch,
no tabulate), so it imports only those and light modules of this package.
"""

from __future__ import annotations

import json
import math
import re
import warnings
import zlib
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from prefopt.judging import LOCAL_JUDGE
from prefopt.judging.mt_bench import CATEGORIES
from prefopt.judging.registry import open_weights_judge, paper_judge, spec_of
from prefopt.reporting.provenance import provenance_note, stamp_columns

#: Axis and column labels of the MT-Bench categories, in the paper's radar order.
CATEGORY_LABELS: dict[str, str] = {
    c: ("STEM" if c == "stem" else c.capitalize()) for c in CATEGORIES
}

_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_TEX_UNICODE = {
    "±": r"$\pm$",
    "σ": r"$\sigma$",
    "Δ": r"$\Delta$",
    "−": "--",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "…": r"\ldots{}",
    "×": r"$\times$",
    "–": "--",
    "ρ": r"$\rho$",
    "²": r"$^2$",
    "§": r"\S{}",
    "ε": r"$\varepsilon$",
    "β": r"$\beta$",
    "δ": r"$\delta$",
}


# --------------------------------------------------------------------------- paths


def repo_root(cwd: str | Path | None = None) -> Path:
    """The repository root, relative to `cwd` (default: the working directory).

    Snakemake runs the notebooks from the repository root; opened in Jupyter from notebooks/
    they run one level down, so the default paths of the parameters cell resolve against "..".
    """
    here = Path.cwd() if cwd is None else Path(cwd)
    if not (here / "workflow").is_dir() and (here.parent / "workflow").is_dir():
        return Path("..")
    return Path(".")


def repo_path(p: str | Path, cwd: str | Path | None = None) -> Path:
    """A path of the parameters cell: absolute ones as given, relative ones from the repo root."""
    p = Path(p)
    return p if p.is_absolute() else repo_root(cwd) / p


def out_path(p: str | Path) -> Path:
    """Like `repo_path`, with the parent folder created, so a notebook can write there."""
    path = repo_path(p)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- judges and variants


def pick_judge(judges: Iterable[Any], judge: str | None, what: str) -> str:
    """The judge whose rows to use: the one asked for, or ("auto") the only/first API judge.

    Score files may hold the rows of several judges (the local one next to an API one); mixing
    them would average incomparable numbers, so exactly one is chosen. `what` names the file in
    the error message.
    """
    available = sorted({str(j) for j in judges if not pd.isna(j)})
    if judge in (None, "", "auto"):
        if not available:
            raise ValueError(f"{what}: the file has no rows")
        api = [j for j in available if j != LOCAL_JUDGE]
        return api[0] if api else available[0]
    if str(judge) in available:
        return str(judge)
    raise ValueError(f"{what}: judge {judge!r} not found; the file has {available}")


def judge_rows(df: pd.DataFrame, judge: str) -> pd.DataFrame:
    """A copy of the rows of one judge (the `judge` column compared as text)."""
    return df[df["judge"].astype(str) == str(judge)].copy()


def select_judge(df: pd.DataFrame, judge: str | None, what: str) -> tuple[str, pd.DataFrame]:
    """`pick_judge` and `judge_rows` in one; prints the choice so the executed notebook shows it."""
    available = sorted(df["judge"].dropna().astype(str).unique())
    chosen = pick_judge(available, judge, what)
    print(f"{what}: judge {chosen!r} (available: {available})")
    return chosen, judge_rows(df, chosen)


#: What every artifact made with the local judge says in its footnote (after "local judge <model>").
LOCAL_JUDGE_CAVEAT = "pipeline check, not comparable with GPT-4 numbers"


class JudgeLabel(NamedTuple):
    """How an artifact names its judge: `title` for titles and captions, `note` for a footnote."""

    judge: str  #: the judge id of the score files ("local", "alpaca_eval_gpt4_turbo_fn", ...)
    local: bool  #: True for the local judge (a pipeline check, unless an open-weights judge)
    title: str  #: "local judge <model>, pipeline check" or "judge <API judge> (<model>, ...)"
    note: str  #: "local judge <model>: pipeline check, not comparable ..." or "Judge: ..."
    model: str = ""  #: the model that judges (the API model asked, or the local judge's model)
    paper: bool = False  #: True only for the judge the paper's numbers were made with


def judge_label(judge_id: Any, local_model: str | None) -> JudgeLabel:
    """The label of a judge in every table and figure, from its id and the local judge's model.

    The local judge is a small model reading its own preference probabilities: its win rates and
    grades check that the pipeline runs end to end and must not be read next to the paper's GPT-4
    numbers, so its label names the model and says so. `local_model` is the config's
    `judges.local_model`, or `model.slug` when that is null (the policy's base model judges);
    empty/None when neither is known. An API judge is named by its id and the model it asks
    (prefopt.judging.registry), and says whether it is the paper's judge or a substitute for it:
    the paper's judges are retired, and a substitute's numbers are comparable with the paper's
    only as far as results/tables/judge_calibration shows. An id the registry does not know
    keeps its own name. A local model that the registry lists as an open-weights judge
    (OPEN_WEIGHTS_JUDGES) is a real judge, not a pipeline check: "open judge <slug> (<id>@<rev>)".
    """
    judge = str(judge_id)
    if judge != LOCAL_JUDGE:
        spec = spec_of(judge)
        if spec is None:
            return JudgeLabel(judge, False, f"judge {judge}", f"Judge: {judge}.", judge)
        if spec.paper:
            return JudgeLabel(
                judge,
                False,
                f"judge {judge} ({spec.model}, the paper's)",
                f"Judge: {judge}, model {spec.model} (the paper's judge).",
                spec.model,
                True,
            )
        original = paper_judge(spec.benchmark).model
        return JudgeLabel(
            judge,
            False,
            f"judge {judge} ({spec.model}; not the paper's {original})",
            f"Judge: {judge}, model {spec.model}: a substitute for the paper's {original}, "
            "which is retired; its agreement with the original: results/tables/judge_calibration.",
            spec.model,
            False,
        )
    model = "" if local_model is None else str(local_model).strip()
    open_judge = open_weights_judge(model)
    if open_judge is not None:
        return JudgeLabel(
            judge,
            True,
            open_judge.label,
            f"Judge: {open_judge.label}, an open-weights model read by the local judge's "
            "probability protocol, not the paper's judge; its agreement with the retired judge: "
            "results/tables/judge_calibration.",
            model,
            False,
        )
    name = f"local judge {model}" if model else "local judge (policy base model)"
    return JudgeLabel(
        judge, True, f"{name}, pipeline check", f"{name}: {LOCAL_JUDGE_CAVEAT}", model, False
    )


def variant_table(variants: pd.DataFrame, present: Iterable[str]) -> pd.DataFrame:
    """Label, group and order of each variant in `present`, sorted in the paper's order.

    `variants` is the content of variants.csv (columns variant, label, group, order). Variants
    missing from it keep their slug as label, get group "unknown" and go last, so a run with a
    new variant still renders. Index: variant; duplicates in `present` are dropped.
    """
    meta = variants.drop_duplicates("variant").set_index("variant")
    rows = []
    for v in dict.fromkeys(present):
        r = meta.loc[v] if v in meta.index else {}
        label, group, order = r.get("label"), r.get("group"), r.get("order")
        rows.append(
            {
                "variant": v,
                "label": str(label) if pd.notna(label) else v,
                "group": str(group) if pd.notna(group) else "unknown",
                "order": float(order) if pd.notna(order) else math.inf,
            }
        )
    df = pd.DataFrame(rows, columns=["variant", "label", "group", "order"])
    return df.sort_values(["order", "variant"], kind="stable").set_index("variant")


def read_variants(path: str | Path, present: Iterable[str]) -> pd.DataFrame:
    """`variant_table` of the variants.csv at `path`."""
    return variant_table(pd.read_csv(repo_path(path)), present)


#: The pairs the paper argues about (hinge vs sigmoid, with and without the reference model),
#: each (A, B) for "A vs B": kept in every paired comparison, run or not.
PAPER_PAIRS: tuple[tuple[str, str], ...] = (("apo_hinge_zero", "apo_zero"), ("dpo_hinge", "dpo"))


def parse_pairs(text: str | None) -> list[tuple[str, str]]:
    """Pairs from "a:b,c:d": [("a", "b"), ("c", "d")]; blanks skipped, a malformed pair raises."""
    pairs = []
    for item in str(text or "").split(","):
        if not item.strip():
            continue
        parts = [s.strip() for s in item.split(":")]
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"pair {item.strip()!r} is not 'variant_a:variant_b'")
        pairs.append((parts[0], parts[1]))
    return pairs


def comparison_pairs(
    variants_present: Iterable[str],
    baseline: str | None,
    reference: str | None = "dpo",
    paper_pairs: Iterable[tuple[str, str]] | str = PAPER_PAIRS,
) -> list[tuple[str, str]]:
    """The (A, B) pairs a paired comparison reports, derived from the variants a run has.

    In order: the paper's pairs (`paper_pairs`, also "a:b,c:d"; kept whether or not the run has
    them, so the table says which it did not run), then every variant of `variants_present`
    other than the baseline compared with `reference` (DPO) when the run has it, then every
    variant compared with `baseline` (the untrained model) when the run has it; the derived ones
    in the order of `variants_present` (give it in the variants' table order). A pair is listed
    once, in its first orientation (A vs B and B vs A are one comparison), and a variant is never
    compared with itself.
    """
    present = list(dict.fromkeys(variants_present))
    fixed = parse_pairs(paper_pairs) if isinstance(paper_pairs, str) else list(paper_pairs)
    candidates = [(str(a), str(b)) for a, b in fixed]
    if reference is not None and reference in present:
        candidates += [(v, reference) for v in present if v not in (reference, baseline)]
    if baseline is not None and baseline in present:
        candidates += [(v, baseline) for v in present if v != baseline]
    pairs, seen = [], set()
    for a, b in candidates:
        key = frozenset((a, b))
        if a == b or key in seen:
            continue
        seen.add(key)
        pairs.append((a, b))
    return pairs


def color_order(known: Sequence[str], variants: Iterable[str]) -> dict[str, int]:
    """Colour index of each variant: its position in `known`, unknown ones after, modulo 10.

    Positions come from the full variants.csv, not from the variants of one figure, so a
    variant has the same colour in every figure.
    """
    order = list(known) + [v for v in dict.fromkeys(variants) if v not in known]
    return {v: order.index(v) % 10 for v in dict.fromkeys(variants)}


def variant_colors(path: str | Path, variants: Iterable[str]) -> dict[str, Any]:
    """One matplotlib "tab10" colour per variant, fixed by its position in variants.csv."""
    import matplotlib.pyplot as plt

    known = list(read_variants(path, pd.read_csv(repo_path(path))["variant"]).index)
    cmap = plt.get_cmap("tab10")
    return {v: cmap(i) for v, i in color_order(known, variants).items()}


# --------------------------------------------------------------------------- statistics


def preference_score(preference: pd.Series) -> pd.Series:
    """alpaca_eval's preference (1 = reference wins, 2 = model wins) as win-rate points 0-100.

    The mean of these scores over prompts is the win rate; unparsable preferences (judge
    failures) become NaN, so they drop out of a nanmean instead of counting as losses.
    """
    return (pd.to_numeric(preference, errors="coerce") - 1.0) * 100.0


def rng_for(seed: int, *keys: Hashable) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (not on which variants are present).

    crc32 rather than hash(): str hashes are salted per process, which would make bootstrap
    intervals change from run to run.
    """
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(k).encode()) for k in keys])


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates; (nan, nan) when there are none."""
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_se(replicates: np.ndarray) -> float:
    """Bootstrap standard error: the sd of the finite replicates (nan with fewer than two)."""
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    return float(np.std(reps, ddof=1)) if reps.size > 1 else math.nan


def bootstrap_ci(
    mat: np.ndarray, n_boot: int, rng: np.random.Generator, level: float
) -> tuple[float, float]:
    """The prompt bootstrap: percentile CI of the seed mean of the nanmean over prompts.

    `mat` is seeds x prompts. Prompts are resampled with the same indices for every seed (the
    seeds answered the same prompts); seeds are not resampled, so between-seed variance is
    ignored (`hierarchical_bootstrap` includes it). NaN cells (failed judgments) are skipped.
    (nan, nan) without prompts or resamples.
    """
    mat = np.asarray(mat, dtype=float)
    n_prompts = mat.shape[1] if mat.ndim == 2 else 0
    if n_prompts == 0 or n_boot < 1:
        return math.nan, math.nan
    idx = rng.integers(0, n_prompts, size=(int(n_boot), n_prompts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (every judgment failed)
        stat = np.nanmean(np.nanmean(mat[:, idx], axis=2), axis=0)
    return percentile_interval(stat, level)


def hierarchical_bootstrap(
    mat: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    *,
    shared_prompts: bool = True,
    minus: np.ndarray | None = None,
) -> np.ndarray:
    """Bootstrap replicates of a seed-mean score: seeds and prompts both resampled, and the
    judge's repeats of each item too when it judged them more than once.

    Why: a method's seed-mean win rate varies with the training seed as well as with the prompts
    judged. A bootstrap over prompts alone (`bootstrap_ci`), alpaca_eval's standard error or the
    mean of per-seed standard errors see only the prompts, so they understate the uncertainty of
    a method whose seeds disagree. Each replicate draws S of the S seeds (rows of `mat`, seeds x
    prompts) with replacement and P of the P prompts with replacement; it is the mean over the
    drawn seeds of the nanmean over the drawn prompts (NaN = failed judgment). The prompt indices
    are drawn first, so with one seed the replicates are exactly those of `bootstrap_ci` with the
    same generator: the prompt bootstrap.

    By default (`shared_prompts=True`) one prompt draw serves every drawn seed: the seeds answered
    the same prompts (seeds crossed with prompts, as in AlpacaEval), so a prompt that is hard for
    one seed is hard for all, and that shared prompt effect must move every seed of a replicate
    together. `shared_prompts=False` draws prompts independently for each drawn seed (prompts
    nested in seeds); on crossed data it shrinks the prompt part of the variance by up to 1/S
    when the seeds agree prompt by prompt (intervals ~0.6x too narrow with 3 seeds).

    Judge repeats (`judges.repeats` > 1): `mat` may be seeds x prompts x repeats (NaN = a repeat
    that failed, or one not asked). The score of a drawn cell is then the mean of n verdicts
    drawn with replacement from its n valid ones (the bootstrap of the item's mean verdict), so
    the judge's disagreement with itself widens the interval; a cell without a valid verdict is
    skipped. The repeat draws come after the seed and prompt draws, so when every item's repeats
    agree the replicates are those of the seeds x prompts matrix of their means (to rounding).
    A seeds x prompts `mat` (or a third axis of length 1) is an item judged once: the seeds and
    prompts bootstrap above, unchanged.

    `minus`: a second array of the same seeds and prompts (2-D or 3-D); the replicates are then
    of the difference `mat` - `minus`, cell by cell, each side's repeats drawn independently (a
    paired comparison of two methods on the same prompts and seeds).

    Returns the finite replicates (empty without seeds, prompts, resamples or valid cells).
    """
    terms = [np.asarray(mat, dtype=float)]
    if minus is not None:
        terms.append(np.asarray(minus, dtype=float))
    if any(t.ndim not in (2, 3) for t in terms) or n_boot < 1:
        return np.empty(0)
    terms = [t if t.ndim == 3 else t[:, :, None] for t in terms]
    if len({t.shape[:2] for t in terms}) != 1:
        raise ValueError(f"mat and minus differ in seeds x prompts: {[t.shape for t in terms]}")
    n_seeds, n_prompts = terms[0].shape[:2]
    if n_seeds == 0 or n_prompts == 0 or any(t.shape[2] == 0 for t in terms):
        return np.empty(0)
    per_replicate = 1 if shared_prompts else n_seeds
    prompts = rng.integers(0, n_prompts, size=(int(n_boot), per_replicate, n_prompts))
    seeds = rng.integers(0, n_seeds, size=(int(n_boot), n_seeds, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (every judgment failed)
        if all(t.shape[2] == 1 for t in terms):  # judged once: seeds and prompts
            cell = terms[0][:, :, 0] - (terms[1][:, :, 0] if len(terms) > 1 else 0.0)
            stat = np.nanmean(np.nanmean(cell[seeds, prompts], axis=2), axis=1)
        else:
            stat = _repeat_replicates(terms, seeds, prompts, rng)
    return stat[np.isfinite(stat)]


#: Cells (replicates x seeds x prompts x repeats) resampled at once by the repeat bootstrap.
_REPEAT_CHUNK_CELLS = 2_000_000


def _repeat_replicates(
    terms: list[np.ndarray], seeds: np.ndarray, prompts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """`hierarchical_bootstrap`'s replicates when an item has several verdicts: for the drawn
    seeds and prompts, each term's cell is the mean of n of its n valid verdicts drawn with
    replacement; the replicate is the seed mean of the prompt nanmean of term 0 - term 1."""
    prepared = []
    for t in terms:
        ordered = np.sort(t, axis=2)  # valid verdicts first, NaN last
        prepared.append((ordered, np.isfinite(t).sum(axis=2)))
    n_boot, n_seeds, n_prompts = seeds.shape[0], seeds.shape[1], prompts.shape[2]
    k_max = max(t.shape[2] for t in terms)
    chunk = max(1, _REPEAT_CHUNK_CELLS // (n_seeds * n_prompts * k_max))
    out = np.empty(n_boot)
    for lo in range(0, n_boot, chunk):
        s_idx, p_idx = seeds[lo : lo + chunk], prompts[lo : lo + chunk]
        cell = 0.0
        for sign, (ordered, n_valid) in zip((1.0, -1.0), prepared, strict=False):
            k = ordered.shape[2]
            n = n_valid[s_idx, p_idx][..., None]  # replicates x seeds x prompts x 1
            pick = np.minimum((rng.random(n.shape[:3] + (k,)) * n).astype(int), k - 1)
            drawn = ordered[s_idx[..., None], p_idx[..., None], pick]
            drawn = np.where(np.arange(k) < n, drawn, np.nan)  # n draws of the n valid
            cell = cell + sign * np.nanmean(drawn, axis=3)
        out[lo : lo + chunk] = np.nanmean(np.nanmean(cell, axis=2), axis=1)
    return out


def parse_repeats(value: Any) -> list[float] | None:
    """The verdicts of a per-prompt row judged several times (the `preferences` column: a JSON
    list, null for a failed repeat) as floats (NaN for null); None when the row was judged once
    (empty cell)."""
    if value is None or (not isinstance(value, str | list | tuple) and pd.isna(value)):
        return None
    values = json.loads(value) if isinstance(value, str) else list(value)
    if not values:
        return None
    return [math.nan if v is None else float(v) for v in values]


def repeat_tensor(
    per_prompt: pd.DataFrame,
    variant: str,
    seeds: Sequence[Any] | None = None,
    prompts: Sequence[Any] | None = None,
) -> np.ndarray:
    """One variant's scores (win-rate points, `preference_score`) as seeds x prompts x repeats.

    A row judged k times (`preferences`, per_prompt_table) fills k cells of its third axis with
    the score of each verdict (NaN: a failed repeat); a row judged once fills one cell with its
    `score` (the `preference`'s score when the table has no `score` column). Shorter rows are
    padded with NaN, as are seeds and prompts the variant lacks. `seeds` and `prompts` (the
    prompt indices) default to those the variant has, sorted; a duplicate (seed, prompt) row
    replaces the one before it.
    """
    rows = per_prompt[per_prompt["variant"] == variant]
    seeds = sorted(rows["seed"].unique()) if seeds is None else list(seeds)
    prompts = sorted(rows["index"].unique()) if prompts is None else list(prompts)
    score = rows["score"] if "score" in rows.columns else preference_score(rows["preference"])
    lists = rows["preferences"] if "preferences" in rows.columns else [None] * len(rows)
    repeats = [parse_repeats(v) for v in lists]
    k = max((len(r) for r in repeats if r is not None), default=1)
    out = np.full((len(seeds), len(prompts), k), np.nan)
    at_seed = {s: i for i, s in enumerate(seeds)}
    at_prompt = {p: j for j, p in enumerate(prompts)}
    for seed, prompt, value, verdicts in zip(
        rows["seed"], rows["index"], score, repeats, strict=True
    ):
        i, j = at_seed.get(seed), at_prompt.get(prompt)
        if i is None or j is None:
            continue
        cells = [value] if verdicts is None else [(v - 1.0) * 100.0 for v in verdicts]
        out[i, j, :] = np.nan
        out[i, j, : len(cells)] = cells
    return out


def judge_repeats_of(per_prompt: pd.DataFrame) -> int:
    """How many times the judge judged each item of a per-prompt table (the longest
    `preferences` list; 1 without one)."""
    if "preferences" not in per_prompt.columns:
        return 1
    lengths = [len(r) for r in map(parse_repeats, per_prompt["preferences"]) if r is not None]
    return max(lengths, default=1)


def seed_prompt_matrix(
    per_prompt: pd.DataFrame, variant: str, value: str = "score"
) -> pd.DataFrame:
    """One variant's per-prompt `value` as a seeds x prompts table (rows: seeds in order).

    Columns are the prompt indices any seed has; a prompt missing for a seed is NaN, as is a
    failed judgment. Duplicate (seed, prompt) rows are averaged.
    """
    rows = per_prompt[per_prompt["variant"] == variant]
    mat = rows.pivot_table(
        index="seed", columns="index", values=value, aggfunc="mean", dropna=False
    )
    return mat.reindex(index=sorted(rows["seed"].unique()))


def win_rate_uncertainty(
    per_prompt: pd.DataFrame,
    n_boot: int,
    bootstrap_seed: int,
    level: float = 0.95,
    *,
    judge_repeats: bool = False,
) -> pd.DataFrame:
    """Per variant: the seed-mean win rate from per-prompt scores, with its hierarchical
    bootstrap CI (`ci_low`, `ci_high`) and standard error (`se`).

    `per_prompt` has the columns variant, seed, index and score (`preference_score`, win-rate
    points). Each variant's generator is `rng_for(bootstrap_seed, variant)`, so Table 1, Figure 1
    and the paper comparison show the same interval for a method whatever else is in the run.
    With `judge_repeats` the bootstrap also resamples each item's verdicts when the judge gave
    several (`preferences`: `repeat_tensor`); `n_repeats` says how many it resampled (1: the
    interval covers seeds and prompts, for `bootstrap_note`). Index: variant, in order of
    appearance.
    """
    cols = ["n_seeds", "n_prompts", "win_rate", "ci_low", "ci_high", "se", "n_repeats"]
    rows = []
    for v in dict.fromkeys(per_prompt["variant"]):
        if judge_repeats:
            mat = repeat_tensor(per_prompt, v)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                means = np.nanmean(mat, axis=2)  # each item's mean verdict
        else:
            means = mat = seed_prompt_matrix(per_prompt, v).to_numpy(dtype=float)
        reps = hierarchical_bootstrap(mat, n_boot, rng_for(bootstrap_seed, v))
        lo, hi = percentile_interval(reps, level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            point = float(np.nanmean(np.nanmean(means, axis=1))) if means.size else math.nan
        k = mat.shape[2] if mat.ndim == 3 else 1
        rows.append([v, mat.shape[0], mat.shape[1], point, lo, hi, bootstrap_se(reps), k])
    return pd.DataFrame(rows, columns=["variant", *cols]).set_index("variant")


def bootstrap_note(
    n_boot: int,
    bootstrap_seed: int,
    n_seeds: Iterable[int] = (),
    level: float | None = None,
    n_repeats: int | Iterable[int] = 1,
) -> str:
    """What a hierarchical bootstrap number is, for a caption or footnote (one sentence).

    With `level`: "95 % hierarchical bootstrap CI: seeds and prompts (one prompt draw for all
    seeds: they answered the same prompts); B=…"; without:
    "Hierarchical bootstrap: …" (for a standard error). `n_seeds`, the number of seeds of each
    method shown, says whether the single-seed case applies, where the hierarchical bootstrap is
    the bootstrap over prompts. `n_repeats` (the judge's repeats the bootstrap resampled, as
    `win_rate_uncertainty` and `paired_comparison_table` report them): above 1, "seeds, prompts
    and judge repeats", with how the repeats are drawn.
    """
    counts = {int(n) for n in n_seeds}
    repeats = [int(n_repeats)] if isinstance(n_repeats, int | np.integer) else list(n_repeats)
    k = max((int(n) for n in repeats if pd.notna(n)), default=1)
    what = (
        "hierarchical bootstrap"
        if level is None
        else f"{level * 100:g} % hierarchical bootstrap CI"
    )
    if k > 1:
        drawn = (
            "seeds, prompts and judge repeats (one prompt draw for all seeds: they answered the "
            f"same prompts; each judged item's {k} verdicts drawn again with replacement)"
        )
    else:
        drawn = "seeds and prompts (one prompt draw for all seeds: they answered the same prompts)"
    text = (
        f"{what[0].upper()}{what[1:]}: {drawn}; "
        f"B={int(n_boot)} resamples (rng seed {bootstrap_seed})"
    )
    if counts == {1}:
        return text + "; one seed per method here, so it is the bootstrap over prompts."
    if 1 in counts:
        return text + "; for a method with one seed it is the bootstrap over prompts."
    return text + "; with one seed it reduces to the bootstrap over prompts."


def judge_noise_note(n_repeats: int) -> str:
    """What the paired comparisons' intervals cover, for a footnote: seeds and prompts when each
    output was judged once (judge noise not measured), seeds, prompts and judge repeats when the
    judge was asked `n_repeats` > 1 times per item (`judges.repeats`)."""
    if int(n_repeats) <= 1:
        return (
            "Uncertainty: the intervals cover seeds and prompts only. Judge noise is not "
            "included: each output was judged once (no repeated judgments in this run; the local "
            "judge is deterministic, API judges are asked at temperature 0)."
        )
    k = int(n_repeats)
    return (
        f"Uncertainty: the bootstrap interval covers seeds, prompts and judge repeats: each "
        f"output was judged {k} times (judges.repeats), its preference is the mean of the {k} "
        "verdicts, and each replicate draws every item's verdicts again with replacement, so "
        "the judge's disagreement with itself widens the interval. The t-CI is across the "
        "per-seed mean differences, which carry the judge noise averaged over prompts."
    )


#: The columns of the paired-comparison table (`paired_comparison_table`), in order.
PAIRED_COLUMNS = (
    "comparison",
    "variant_a",
    "variant_b",
    "judge",
    "status",
    "n_seeds",
    "seeds",
    "n_prompts",
    "n_pairs_valid",
    "mean_diff",
    "sd_over_seeds",
    "t_ci_low",
    "t_ci_high",
    "bootstrap_ci_low",
    "bootstrap_ci_high",
    "frac_a_better",
    "frac_b_better",
    "frac_equal",
    "per_seed_mean_diff",
    "judge_repeats",
)


def paired_comparison(
    per_prompt: pd.DataFrame,
    a: str,
    b: str,
    n_boot: int,
    bootstrap_seed: int,
    level: float = 0.95,
) -> dict[str, Any]:
    """The paired per-prompt comparison of variants `a` and `b` (A − B, win-rate points).

    `per_prompt` has variant, seed, index, score (`preference_score`) and, for a judge asked
    several times, `preferences`. Over the seeds both variants have and the prompts both have:
    Δ = score of A − score of B per (seed, prompt) (NaN where either judgment failed), its mean
    over prompts then over seeds, a t-interval across the per-seed means (n/a with one seed),
    the `hierarchical_bootstrap` percentile interval of A − B with generator
    `rng_for(bootstrap_seed, a, b)` (seeds, one shared prompt draw, and each side's judge repeats
    when there are several), and the shares of A better / B better / equal. `judge_repeats`: the
    most verdicts per item the bootstrap resampled (1: judged once). Without common seeds:
    `status` "not run in this config (no common seed)" and `n_seeds` 0.
    """
    row: dict[str, Any] = {"variant_a": a, "variant_b": b}
    sel = per_prompt[per_prompt["variant"].isin([a, b])]
    seeds = sorted(
        set(sel.loc[sel["variant"] == a, "seed"]) & set(sel.loc[sel["variant"] == b, "seed"])
    )
    if not seeds:
        return row | {"status": "not run in this config (no common seed)", "n_seeds": 0}
    sel = sel[sel["seed"].isin(seeds)]
    wide = {
        v: sel[sel["variant"] == v].pivot_table(
            index="seed", columns="index", values="score", aggfunc="mean", dropna=False
        )
        for v in (a, b)
    }
    prompts = sorted(set(wide[a].columns) & set(wide[b].columns))
    d = (
        wide[a].reindex(index=seeds, columns=prompts)
        - wide[b].reindex(index=seeds, columns=prompts)
    ).to_numpy(float)  # seeds x prompts, NaN where a judgment failed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_seed = np.nanmean(d, axis=1)
    n = len(seeds)
    mean = float(np.mean(per_seed))
    sd = float(np.std(per_seed, ddof=1)) if n >= 2 else math.nan
    if n >= 2:
        half = t_quantile((1 + level) / 2, n - 1) * sd / math.sqrt(n)
        t_lo, t_hi = mean - half, mean + half
    else:
        t_lo = t_hi = math.nan
    ta, tb = (repeat_tensor(sel, v, seeds, prompts) for v in (a, b))
    reps = hierarchical_bootstrap(ta, n_boot, rng_for(bootstrap_seed, a, b), minus=tb)
    b_lo, b_hi = percentile_interval(reps, level)
    valid = d[np.isfinite(d)]
    share = (lambda mask: float(np.mean(mask))) if valid.size else (lambda mask: math.nan)
    return row | {
        "status": "run",
        "n_seeds": n,
        "seeds": " ".join(map(str, seeds)),
        "n_prompts": len(prompts),
        "n_pairs_valid": int(valid.size),
        "mean_diff": mean,
        "sd_over_seeds": sd,
        "t_ci_low": t_lo,
        "t_ci_high": t_hi,
        "bootstrap_ci_low": float(b_lo),
        "bootstrap_ci_high": float(b_hi),
        "frac_a_better": share(valid > 0),
        "frac_b_better": share(valid < 0),
        "frac_equal": share(valid == 0),
        "per_seed_mean_diff": " ".join(f"{x:.4f}" for x in per_seed),
        "judge_repeats": max(ta.shape[2], tb.shape[2]),
    }


def paired_comparison_table(
    per_prompt: pd.DataFrame,
    pairs: Iterable[tuple[str, str]],
    labels: pd.DataFrame,
    judge: str,
    n_boot: int,
    bootstrap_seed: int,
    level: float = 0.95,
) -> pd.DataFrame:
    """`paired_comparison` of every (A, B) of `pairs`, one row each (`PAIRED_COLUMNS`).

    `labels`: `read_variants` of the pairs' variants (the `label` column names the comparison).
    A pair with a variant absent from `per_prompt` is listed as "not run in this config (<v>
    absent)", as is one without a common seed.
    """
    present = set(per_prompt["variant"])
    rows = []
    for a, b in pairs:
        head = {
            "comparison": f"{labels.loc[a, 'label']} vs {labels.loc[b, 'label']}",
            "judge": judge,
        }
        missing = [v for v in (a, b) if v not in present]
        if missing:
            rows.append(
                head
                | {
                    "variant_a": a,
                    "variant_b": b,
                    "status": f"not run in this config ({', '.join(missing)} absent)",
                    "n_seeds": 0,
                }
            )
            continue
        rows.append(head | paired_comparison(per_prompt, a, b, n_boot, bootstrap_seed, level))
    return pd.DataFrame(rows).reindex(columns=list(PAIRED_COLUMNS))


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile (scipy's), for p > 0.5."""
    from scipy import stats

    return float(stats.t.ppf(p, df))


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n; (nan, nan) for n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is sensible for k = 0 or k = n,
    which is common for the active-pair fraction of small length buckets.
    """
    if n <= 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf((1 + level) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def length_buckets(columns: Iterable[str]) -> list[str]:
    """The length buckets of a training_diagnostics.csv header, in the order they were logged.

    Read from the columns (``n_pairs_bucket_<b>`` with a matching ``n_active_bucket_<b>``) rather
    than repeated here: the labels come from ``prefopt.training.diagnostics.bucket_labels``, which
    needs torch, absent from the notebooks' environment.
    """
    cols = list(columns)
    prefix = "n_pairs_bucket_"
    labels = [c.removeprefix(prefix) for c in cols if c.startswith(prefix)]
    return [b for b in labels if f"n_active_bucket_{b}" in cols]


def _edge_text(token: str) -> str:
    return f"−{token[1:]}" if token.startswith("m") else token


def _edge(token: str) -> float:
    return -float(token[1:]) if token.startswith("m") else float(token)


def bucket_edges(label: str) -> tuple[float, float]:
    """(lower, upper) token edges of a bucket label: "lt_m64" -> (-inf, -64), "m16_16" ->
    (-16, 16), "ge_64" -> (64, inf)."""
    lo, hi = label.split("_", 1)
    if lo == "lt":
        return -math.inf, _edge(hi)
    if lo == "ge":
        return _edge(hi), math.inf
    return _edge(lo), _edge(hi)


def bucket_text(label: str) -> str:
    """A bucket label for people: "lt_m64" -> "< −64", "m16_16" -> "−16…16", "ge_64" -> "≥ 64"."""
    lo, hi = label.split("_", 1)
    if lo == "lt":
        return f"< {_edge_text(hi)}"
    if lo == "ge":
        return f"≥ {_edge_text(hi)}"
    return f"{_edge_text(lo)}…{_edge_text(hi)}"


# --------------------------------------------------------------------------- MT-Bench scores


def valid_mt_bench_scores(mt: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """MT-Bench rows with a valid grade, category names normalised; and how many were dropped.

    FastChat marks a failed judgment with score -1; it must not pull the mean down. Categories
    are compared lower-case and stripped, as the paper's figure estimates spell them otherwise.
    """
    mt = mt.copy()
    mt["category"] = mt["category"].astype(str).str.strip().str.lower()
    mt["score"] = pd.to_numeric(mt["score"], errors="coerce")
    valid = mt["score"] >= 0
    return mt[valid], int((~valid).sum())


def mt_bench_per_seed(mt: pd.DataFrame) -> pd.DataFrame:
    """Mean score per (variant, seed) and category, over questions and both turns.

    Columns: the MT-Bench categories in the paper's order (NaN where one has no valid grade);
    rows of other categories are ignored. Expects `valid_mt_bench_scores` output.
    """
    known = mt[mt["category"].isin(CATEGORIES)]
    per_seed = known.groupby(["variant", "seed", "category"])["score"].mean()
    return per_seed.unstack("category").reindex(columns=list(CATEGORIES))


# --------------------------------------------------------------------------- formatting


def fmt(x: float | None, digits: int = 1) -> str:
    """A number with fixed decimals, "n/a" for None/NaN/inf (a missing value, not a zero)."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def fmt_pm(mean: float | None, sd: float | None, digits: int = 1) -> str:
    """ "mean ± sd"; the sd is left out when undefined (one seed), so no "± nan" appears."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if sd is None or not np.isfinite(sd):
        return fmt(mean, digits)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def fmt_ci(lo: float, hi: float, digits: int = 1) -> str:
    """ "[lo, hi]", or "n/a" unless both ends are finite."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


#: An absolute POSIX path in free text (not "n/a" or "org/repo"): "/" at the start of a word.
_ABS_PATH = re.compile(r"(?<![\w.~/-])/[^\s,;:'\"()\[\]]*[^\s,;:'\"()\[\].]")
#: The prefix metrics.py used to give its LC reasons (older score files still carry it).
_LC_PREFIX = re.compile(r"^\s*LC win rate not computed:\s*", re.IGNORECASE)


def repo_relative_text(text: Any, root: str | Path | None = None) -> str:
    """Free text with every absolute path shown relative to the repository `root`.

    Paths outside the repository keep only their last part ("…/alpaca_eval_lc"): an artifact
    must not show the layout of the machine that made it. `root` defaults to `repo_root()`.
    """
    base = (repo_root() if root is None else Path(root)).resolve()

    def shown(match: re.Match[str]) -> str:
        path = Path(match.group(0))
        try:
            return path.resolve().relative_to(base).as_posix() or "."
        except ValueError:
            return f"…/{path.name}" if path.name else "…"

    if text is None or (not isinstance(text, str) and pd.isna(text)):
        return ""
    return _ABS_PATH.sub(shown, str(text))


def lc_win_rate_cells(
    table: pd.DataFrame, root: str | Path | None = None
) -> tuple[list[str], list[str]]:
    """Table 1's LC win-rate cells and the footnotes that explain the missing ones.

    `table` has one row per method with `n_seeds`, `n_seeds_lc`, `lc_win_rate_mean`,
    `lc_win_rate_sd` and `lc_missing_reason`. A method without any LC value gets "n/a"; one with
    some seeds missing gets "mean ± sd (k/n seeds)". Each distinct reason is stated once, in a
    footnote, with absolute paths made relative to the repository (`repo_relative_text`); with
    one reason the cells carry no marker, with several they point to "[k]".
    """
    reasons: list[str] = []
    cells: list[tuple[str, int | None]] = []
    for _, r in table.iterrows():
        n, n_lc = int(r["n_seeds"]), int(r["n_seeds_lc"])
        cell = fmt_pm(r["lc_win_rate_mean"], r["lc_win_rate_sd"]) if n_lc else "n/a"
        if n_lc >= n:
            cells.append((cell, None))
            continue
        if n_lc:
            cell += f" ({n_lc}/{n} seeds)"
        reason = _LC_PREFIX.sub("", repo_relative_text(r["lc_missing_reason"], root)).strip()
        reason = reason or "not computed (no reason recorded)"
        if reason not in reasons:
            reasons.append(reason)
        cells.append((cell, reasons.index(reason) + 1))
    if len(reasons) <= 1:
        notes = [f"LC win rate n/a: {reasons[0]}"] if reasons else []
        return [c for c, _ in cells], notes
    shown = [c if k is None else f"{c} [{k}]" for c, k in cells]
    return shown, [f"[{k}] LC win rate n/a: {why}" for k, why in enumerate(reasons, 1)]


def tex_escape(s: Any) -> str:
    """Text for LaTeX: special characters escaped, the Unicode symbols the tables use in math."""
    s = "".join(_TEX.get(ch, ch) for ch in str(s))
    return "".join(_TEX_UNICODE.get(ch, ch) for ch in s)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub pipe table (no `tabulate` dependency); numeric columns right-aligned."""
    cells = [[str(c) for c in df.columns]] + [
        ["" if pd.isna(x) else str(x) for x in r] for r in df.itertuples(index=False)
    ]
    width = [max(len(r[i]) for r in cells) for i in range(len(df.columns))]
    right = [pd.api.types.is_numeric_dtype(t) for t in df.dtypes]
    aligned = list(zip(width, right, strict=True))

    def row(r: list[str]) -> str:
        padded = (x.rjust(w) if a else x.ljust(w) for x, (w, a) in zip(r, aligned, strict=True))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a else (":" + "-" * (w + 1)) for w, a in aligned)
    rule += "|"
    return "\n".join([row(cells[0]), rule] + [row(r) for r in cells[1:]])


def markdown_document(pretty: pd.DataFrame, caption: str, notes: Sequence[str] = ()) -> str:
    """The Markdown artifact: bold caption, the table, the notes as a list."""
    text = f"**{caption}**\n\n{markdown_table(pretty)}\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def latex_table(pretty: pd.DataFrame, caption: str, label: str, notes: Sequence[str] = ()) -> str:
    """The LaTeX artifact: a booktabs table float with the notes below, ready to \\input."""
    shown = pretty.map(tex_escape)
    shown.columns = [tex_escape(c) for c in shown.columns]
    body = shown.to_latex(index=False, escape=False, na_rep="--")
    lines = [r"\begin{table}[t]", r"\centering", r"\small", body.rstrip()]
    if notes:
        lines += [r"\par\smallskip\footnotesize"] + [tex_escape(n) + r"\par" for n in notes]
    lines += [rf"\caption{{{tex_escape(caption)}}}", rf"\label{{{label}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- writing artifacts


def write_table(
    data: pd.DataFrame,
    pretty: pd.DataFrame,
    csv: str | Path,
    md: str | Path,
    tex: str | Path,
    caption: str,
    label: str,
    notes: Sequence[str] = (),
    provenance: str | None = None,
) -> pd.DataFrame:
    """Numeric table -> CSV (for checks and reuse); formatted table -> Markdown and LaTeX.

    With `provenance` (a stamp, "code <commit>, config <hash>": prefopt.reporting.provenance) the
    Markdown and LaTeX get it as the last footnote and the CSV its parts as columns (`code_commit`,
    `code_dirty`, `config_hash`), which match results/provenance.json.
    Returns `pretty`, so a notebook cell that ends with this call displays the table.
    """
    if provenance:
        notes = [*notes, provenance_note(provenance)]
        data = stamp_columns(data, provenance)
    data.to_csv(out_path(csv), index=False)
    out_path(md).write_text(markdown_document(pretty, caption, notes), encoding="utf-8")
    out_path(tex).write_text(latex_table(pretty, caption, label, notes), encoding="utf-8")
    return pretty


def add_figure_notes(fig: Any, notes: Sequence[str], fontsize: float = 7.5) -> None:
    """Footnotes under everything already drawn in `fig` (tick labels included), one per line.

    Placed below the figure's tight bounding box, so `save_figure` (bbox_inches="tight") keeps
    them without overlapping rotated tick labels; long lines wrap at the figure's width. Also
    printed, so the executed notebook and its HTML export carry them as text.
    """
    if not notes:
        return
    print("\n".join(f"figure note: {n}" for n in notes))
    box = fig.get_tightbbox()  # inches
    bottom = min(0.0, box.y0 / fig.get_figheight())
    left = min(0.01, max(box.x0 / fig.get_figwidth(), -0.2))
    fig.text(
        left, bottom - 0.02, "\n".join(notes), ha="left", va="top", fontsize=fontsize, wrap=True
    )


def save_figure(fig: Any, png: str | Path, pdf: str | Path, provenance: str | None = None) -> None:
    """A figure as PNG (for the report and HTML) and as PDF (vector, for the paper); with
    `provenance` (a stamp: prefopt.reporting.provenance), the stamp as the last line under the
    figure."""
    if provenance:
        add_figure_notes(fig, [provenance_note(provenance)])
    fig.savefig(out_path(png), dpi=150, bbox_inches="tight")
    # no creation date: the same results give the same bytes (the PNG writer records none)
    fig.savefig(out_path(pdf), bbox_inches="tight", metadata={"CreationDate": None})
