"""Helpers of the artifact notebooks (notebooks/*.ipynb): paths, judges, variants, statistics,
number formatting, and the CSV / Markdown / LaTeX tables and figures they write.

Each notebook keeps only its parameters and the logic of its own artifact; everything they share
lives here, once, with unit tests (tests/unit/test_artifacts.py). The module must import in the
`notebooks` environment (envs/notebooks.yaml: numpy, pandas, matplotlib; no scipy, no torch, no
tabulate), so it imports only those and light modules of this package.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from prefopt.judging import LOCAL_JUDGE
from prefopt.mt_bench import CATEGORIES

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


def bootstrap_ci(
    mat: np.ndarray, n_boot: int, rng: np.random.Generator, level: float
) -> tuple[float, float]:
    """Percentile CI of the mean over seeds of the nanmean over prompts; `mat` is seeds x prompts.

    Prompts are resampled with the same indices for every seed (the seeds answered the same
    prompts); NaN cells (failed judgments) are skipped. (nan, nan) without prompts or resamples.
    """
    mat = np.asarray(mat, dtype=float)
    n_prompts = mat.shape[1] if mat.ndim == 2 else 0
    if n_prompts == 0 or n_boot < 1:
        return math.nan, math.nan
    idx = rng.integers(0, n_prompts, size=(int(n_boot), n_prompts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (every judgment failed)
        stat = np.nanmean(np.nanmean(mat[:, idx], axis=2), axis=0)
    stat = stat[np.isfinite(stat)]
    if stat.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(stat, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def t_quantile_numeric(p: float, df: float) -> float:
    """Student-t quantile for 0.5 < p < 1 by integrating the density (no scipy needed).

    The notebooks' environment has no scipy; the trapezoid rule on a 0.0005 grid to 1000 is
    accurate to better than 1e-6 for df >= 1 and p <= 0.995.
    """
    x = np.linspace(0.0, 1000.0, 2_000_001)
    logc = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(logc - (df + 1) / 2 * np.log1p(x * x / df))
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))])
    return float(np.interp(p, cdf, x))


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile (scipy when installed, else `t_quantile_numeric`), for p > 0.5."""
    try:
        from scipy import stats
    except ImportError:
        return t_quantile_numeric(p, df)
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
    than repeated here: the labels come from ``prefopt.diagnostics.bucket_labels``, which needs
    torch, absent from the notebooks' environment.
    """
    cols = list(columns)
    prefix = "n_pairs_bucket_"
    labels = [c.removeprefix(prefix) for c in cols if c.startswith(prefix)]
    return [b for b in labels if f"n_active_bucket_{b}" in cols]


def _edge_text(token: str) -> str:
    return f"−{token[1:]}" if token.startswith("m") else token


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
) -> pd.DataFrame:
    """Numeric table -> CSV (for checks and reuse); formatted table -> Markdown and LaTeX.

    Returns `pretty`, so a notebook cell that ends with this call displays the table.
    """
    data.to_csv(out_path(csv), index=False)
    out_path(md).write_text(markdown_document(pretty, caption, notes), encoding="utf-8")
    out_path(tex).write_text(latex_table(pretty, caption, label, notes), encoding="utf-8")
    return pretty


def save_figure(fig: Any, png: str | Path, pdf: str | Path) -> None:
    """A figure as PNG (for the report and HTML) and as PDF (vector, for the paper)."""
    fig.savefig(out_path(png), dpi=150, bbox_inches="tight")
    fig.savefig(out_path(pdf), bbox_inches="tight")
