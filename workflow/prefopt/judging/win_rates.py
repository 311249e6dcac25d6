"""AlpacaEval leaderboard metrics computed with alpaca_eval 0.6.6's own code, offline.

Why a wrapper: alpaca_eval's ``get_length_controlled_winrate`` always downloads ``df_gamed.csv``
from the Hugging Face Hub and writes GLM weights into the installed package. Here the Hub download
is redirected to a local mirror and nothing is written, and when the mirror is absent the LC win
rate is reported as missing (with the reason) instead of being approximated.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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
    """One row per prompt: ``index, instruction, dataset, preference, output_length``.

    Kept per prompt so that paired comparisons between variants (same instruction) and length
    analyses can be done later without re-reading raw annotations.
    """
    df = load_annotations(annotations)
    pref = pd.to_numeric(df["preference"], errors="coerce")
    return pd.DataFrame(
        {
            "index": range(len(df)),
            "instruction": df["instruction"] if "instruction" in df.columns else None,
            "dataset": df["dataset"] if "dataset" in df.columns else None,
            "preference": pref.astype(float),
            "output_length": df["output_2"].str.len().astype("Int64"),
        }
    )
