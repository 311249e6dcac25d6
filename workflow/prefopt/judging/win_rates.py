"""AlpacaEval leaderboard metrics computed with alpaca_eval 0.6.6's own code, offline.

Why a wrapper: alpaca_eval's ``get_length_controlled_winrate`` always downloads ``df_gamed.csv``
from the Hugging Face Hub and writes GLM weights into the installed package. Here the Hub download
is redirected to a local mirror and nothing is written, and when the mirror is absent the LC win
rate is reported as missing (with the reason) instead of being approximated.

Why the redirect replaces ``alpaca_eval.metrics.glm_winrate.hf_hub_download`` (the name that
module imports, line 8 of alpaca_eval 0.6.6's ``metrics/glm_winrate.py``) rather than going
through a public option: alpaca_eval 0.6.6 has none that takes local files for the GLM.

- ``get_length_controlled_winrate`` (``glm_winrate.py`` lines 44-52) takes ``annotations``,
  ``glm_name``, ``save_weights_dir``, ``baseline``, ``is_add_glm_preference_inplace``,
  ``is_warn_extreme_changes`` and ``glm_info``; none is a path to the GLM's data. ``glm_info``
  only sets the formula, ``regularize_to_baseline_lambda`` and the fit's kwargs.
- It calls ``_get_featurized_data`` (lines 201-257), which always calls
  ``hf_hub_download(repo_id="tatsu-lab/alpaca_eval", filename="df_gamed.csv",
  repo_type="dataset", token=constants.DATASETS_TOKEN,
  force_download=constants.DATASETS_FORCE_DOWNLOAD, cache_dir=constants.DEFAULT_CACHE_DIR)``
  (lines 219-226), whatever ``glm_info`` says: the instruction difficulty it reads from that file
  is a feature of every GLM. ``_get_instructions_difficulty`` (lines 363-372, for
  ``baseline=``/``predict_winrate``) hard-codes ``instruction_difficulty.csv`` the same way.
- ``alpaca_eval.main.evaluate`` reaches the same function: ``fn_metric`` with ``metric_kwargs``
  (``main.py`` lines 28-29, 174-179), so the same parameters; ``precomputed_leaderboard`` is the
  leaderboard CSV, not the GLM's data.
- The only knobs on that download are alpaca_eval module constants and huggingface_hub's
  cache: ``constants.DEFAULT_CACHE_DIR`` (``constants.py`` line 43, ``None``; set only for one
  user's cluster, line 219) and the environment variables ``DATASETS_TOKEN`` /
  ``DATASETS_FORCE_DOWNLOAD``. Serving the file from huggingface_hub's cache in offline mode
  would need the mirror in the cache's layout (``refs``/``snapshots``/``blobs``, not the
  plain files the download layout records and checks), depend on ``HF_HUB_OFFLINE`` and
  ``HF_HUB_CACHE`` as they were when huggingface_hub was first imported, and could read
  whatever another run left in the user's cache: no more public, and less exact.

So ``redirect_hub_downloads`` swaps that one name for a function that serves only
``LC_ASSET_FILES`` from the verified local folder (anything else is an error), for the duration
of one call, and puts the original back. The numbers are alpaca_eval's own
(tests/unit/judging/test_win_rates.py compares them with its GLM fed the same file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prefopt.data.download import LC_ASSET_FILES
from prefopt.runtime import read_json

log = logging.getLogger(__name__)

#: Sub-directory of a data mirror that holds the LC assets (``<mirror>/alpaca_eval_lc/...``).
LC_MIRROR_SUBDIR = "alpaca_eval_lc"

#: alpaca_eval's leaderboard columns computed by ``get_winrate`` (plus the mean output length).
WINRATE_KEYS = (
    "win_rate",
    "standard_error",
    "n_wins",
    "n_wins_base",
    "n_draws",
    "n_total",
    "discrete_win_rate",
    "avg_length",
)
#: The length-controlled columns (``get_length_controlled_winrate``).
LC_KEYS = ("length_controlled_winrate", "lc_standard_error")
#: One leaderboard row as this package returns it: alpaca_eval's columns, and why LC is missing.
LEADERBOARD_KEYS = WINRATE_KEYS + LC_KEYS + ("lc_missing_reason",)
#: The judge-noise columns of a run (:func:`judge_noise`): how often each pair was judged
#: (``judges.repeats``), "judged once" or "mean of k repeats", the repeats that failed, the share
#: of pairs whose verdicts disagree, the win rate of each repeat alone and their SD.
JUDGE_NOISE_KEYS = (
    "judge_repeats",
    "judge_noise",
    "n_failed_repeats",
    "frac_items_repeats_disagree",
    "win_rate_by_repeat",
    "win_rate_sd_over_repeats",
)
#: What the judge-noise columns say when every item was judged once.
JUDGED_ONCE = "judged once"

Annotations = pd.DataFrame | Sequence[dict[str, Any]] | str | os.PathLike


def load_annotations(annotations: Annotations) -> pd.DataFrame:
    """Return annotations as a fresh DataFrame with a RangeIndex (the instruction index).

    alpaca_eval uses the row position as the instruction index for the LC GLM, so the order of
    the records is kept exactly as given.
    """
    if isinstance(annotations, str | os.PathLike):
        annotations = read_json(annotations)
    if isinstance(annotations, pd.DataFrame):
        df = annotations.copy()
    else:
        df = pd.DataFrame.from_records(list(annotations))
    if "preference" not in df.columns:
        raise ValueError("annotations have no 'preference' column")
    return df.reset_index(drop=True)


def _import_alpaca_eval_metrics() -> Any:
    """Import alpaca_eval.metrics lazily: the import is slow and needs setuptools<81."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from alpaca_eval import metrics

    return metrics


def shown_path(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """A path as a message may show it: relative to `root` (default: the working directory, the
    repository root under Snakemake) when inside it, else only its last part ("…/name").

    Messages end up in score files and tables; they must not carry the layout of one machine.
    """
    p = Path(path)
    base = Path(root if root is not None else Path.cwd()).resolve()
    try:
        return p.resolve().relative_to(base).as_posix() or "."
    except ValueError:
        return f"…/{p.name}" if p.name else "…"


def find_lc_assets(lc_assets_dir: str | os.PathLike | None) -> tuple[Path | None, str | None]:
    """Locate ``df_gamed.csv`` under a mirror; return (directory, None) or (None, reason).

    Accepts either the mirror root (``<mirror>/alpaca_eval_lc/df_gamed.csv``) or the
    ``alpaca_eval_lc`` directory itself. The reason names the folder relative to the working
    directory (``shown_path``), never by its absolute path.
    """
    if lc_assets_dir is None:
        return None, (
            "alpaca_eval's length-control GLM needs df_gamed.csv from the HF Hub "
            "(tatsu-lab/alpaca_eval) and no local mirror (lc_assets_dir) was given"
        )
    root = Path(lc_assets_dir)
    for cand in (root / LC_MIRROR_SUBDIR, root):
        if (cand / "df_gamed.csv").is_file():
            return cand, None
    return None, (
        f"alpaca_eval's LC assets ({', '.join(LC_ASSET_FILES)}) are not in {shown_path(root)}; "
        "with mirror_dir: null the rule download_alpaca_eval_lc_assets fetches them"
    )


@contextlib.contextmanager
def redirect_hub_downloads(assets_dir: Path) -> Iterator[None]:
    """Make alpaca_eval's glm_winrate read its Hub files from ``assets_dir``, never the network."""
    metrics = _import_alpaca_eval_metrics()
    glm = metrics.glm_winrate

    def _local_download(*args: Any, filename: str | None = None, **kwargs: Any) -> str:
        name = filename if filename is not None else (args[1] if len(args) > 1 else None)
        path = assets_dir / str(name)
        if name not in LC_ASSET_FILES or not path.is_file():
            raise FileNotFoundError(f"LC asset {name!r} is not in the local mirror {assets_dir}")
        return str(path)

    original = glm.hf_hub_download
    glm.hf_hub_download = _local_download
    try:
        yield
    finally:
        glm.hf_hub_download = original


def _py(value: Any) -> Any:
    """Turn numpy scalars into plain Python numbers (JSON/CSV friendly)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def avg_output_length(df: pd.DataFrame) -> int:
    """Mean character length of all model outputs, truncated to int as alpaca_eval's leaderboard.

    alpaca_eval computes it from the model outputs (all rows), before null preferences are
    dropped; here ``output_2`` is the model output.
    """
    return int(df["output_2"].str.len().mean())


def alpaca_eval_leaderboard(
    annotations: Annotations, *, lc_assets_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Leaderboard row for one model, matching alpaca_eval 0.6.6's ``leaderboard.csv`` columns.

    Win rate and counts come from ``alpaca_eval.metrics.get_winrate`` (rows whose preference is
    null are dropped, draws count 0.5). The LC win rate comes from
    ``get_length_controlled_winrate`` with its Hub assets read from ``lc_assets_dir``; without
    them it is None and ``lc_missing_reason`` says why.
    """
    df = load_annotations(annotations)
    metrics = _import_alpaca_eval_metrics()
    out: dict[str, Any] = {k: _py(v) for k, v in metrics.get_winrate(df).items()}
    out["avg_length"] = avg_output_length(df)
    out["length_controlled_winrate"] = None
    out["lc_standard_error"] = None
    out["lc_missing_reason"] = None

    assets, reason = find_lc_assets(lc_assets_dir)
    if assets is None:
        log.warning("LC win rate not computed: %s", reason)
        out["lc_missing_reason"] = reason
        return {k: out[k] for k in LEADERBOARD_KEYS}

    cols = ["instruction", "output_1", "output_2", "generator_1", "generator_2", "preference"]
    lc_df = df[[c for c in cols if c in df.columns]].copy()
    lc_df["annotator"] = df["annotator"] if "annotator" in df.columns else "unknown"
    with redirect_hub_downloads(assets):
        lc = metrics.get_length_controlled_winrate(
            lc_df, save_weights_dir=None, is_add_glm_preference_inplace=False
        )
    out["length_controlled_winrate"] = _py(lc["length_controlled_winrate"])
    out["lc_standard_error"] = _py(lc["lc_standard_error"])
    return {k: out[k] for k in LEADERBOARD_KEYS}


def per_prompt_table(annotations: Annotations) -> pd.DataFrame:
    """One row per prompt: ``index, instruction, dataset, preference, output_length`` (and
    ``preferences`` for pairs judged several times).

    Kept per prompt so that paired comparisons between variants (same instruction) and length
    analyses can be done later without re-reading raw annotations. ``preferences`` holds the k
    verdicts of a pair judged k > 1 times as a JSON list (null for a failed repeat), so that the
    bootstrap can resample them (:func:`prefopt.reporting.artifacts.repeat_tensor`); a run judged
    once has no such column.
    """
    df = load_annotations(annotations)
    pref = pd.to_numeric(df["preference"], errors="coerce")
    table = pd.DataFrame(
        {
            "index": range(len(df)),
            "instruction": df["instruction"] if "instruction" in df.columns else None,
            "dataset": df["dataset"] if "dataset" in df.columns else None,
            "preference": pref.astype(float),
            "output_length": df["output_2"].str.len().astype("Int64"),
        }
    )
    repeats = repeat_preferences(df)
    if repeats.shape[1] > 1:
        table["preferences"] = [json.dumps([_py(x) for x in row]) for row in repeats]
    return table


def repeat_preferences(annotations: Annotations) -> np.ndarray:
    """items x k verdicts (NaN: a failed repeat) of annotations judged k times; one column, the
    ``preference``, for annotations judged once (no ``preferences`` lists)."""
    df = load_annotations(annotations)
    lists = df["preferences"] if "preferences" in df.columns else pd.Series(None, index=df.index)
    k = max((len(v) for v in lists if isinstance(v, list | tuple)), default=1)
    if k == 1:
        return pd.to_numeric(df["preference"], errors="coerce").to_numpy(float)[:, None]
    out = np.full((len(df), k), np.nan)
    for i, values in enumerate(lists):
        values = values if isinstance(values, list | tuple) else [df["preference"].iloc[i]]
        out[i, : len(values)] = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    return out


def judge_noise(annotations: Annotations) -> dict[str, Any]:
    """The judge-noise columns (:data:`JUDGE_NOISE_KEYS`) of one run's annotations.

    Judged once: ``judge_repeats`` 1, ``judge_noise`` "judged once", the rest None (not
    measured). Judged k > 1 times: the failed repeats; the share of pairs with at least two
    verdicts whose verdicts are not all equal; the win rate each repeat alone would give (by
    alpaca_eval's ``get_winrate``, a failed repeat left out as alpaca_eval leaves out a null
    preference) and their SD: the judge noise of a win rate from one judging pass (the mean of k
    passes, which the table's ``win_rate`` is, has about 1/sqrt(k) of it).
    """
    df = load_annotations(annotations)
    mat = repeat_preferences(df)
    k = mat.shape[1]
    if k == 1:
        return {"judge_repeats": 1, "judge_noise": JUDGED_ONCE} | {
            key: None for key in JUDGE_NOISE_KEYS[2:]
        }
    metrics = _import_alpaca_eval_metrics()
    rates = []
    for r in range(k):
        one = df[["preference"]].copy()
        one["preference"] = [None if np.isnan(x) else float(x) for x in mat[:, r]]
        rates.append(float(metrics.get_winrate(one)["win_rate"]))
    valid = np.isfinite(mat)
    several = valid.sum(axis=1) >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pairs without any verdict
        spread = np.nanmax(mat, axis=1) - np.nanmin(mat, axis=1)
    return {
        "judge_repeats": k,
        "judge_noise": f"mean of {k} repeats",
        "n_failed_repeats": int((~valid).sum()),
        "frac_items_repeats_disagree": (
            float(np.mean(spread[several] > 0)) if several.any() else None
        ),
        "win_rate_by_repeat": " ".join(f"{x:.4f}" for x in rates),
        "win_rate_sd_over_repeats": _py(float(np.std(rates, ddof=1))),
    }
