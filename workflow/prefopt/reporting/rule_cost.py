"""What a run cost: per-rule runtime from the `benchmark:` file Snakemake writes for every job.

A benchmark file is a TSV with a header and one row per measured repeat (one, unless a rule uses
Snakemake's `repeat()`), the columns of `snakemake.benchmark.BenchmarkRecord`: `s` (wall-clock
seconds), `h:m:s`, `max_rss`, `max_vms`, `max_uss`, `max_pss` (MB), `io_in`, `io_out` (MB),
`mean_load` (% CPU), `cpu_time` (CPU seconds). The resource columns read `NA` where the job ended
before Snakemake's first sample. The rule each file belongs to comes from the caller (the
workflow names every job's file by its rule, from the DAG), never from the file name.

The module imports in the `notebooks` environment (pandas; matplotlib only to draw).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from prefopt.reporting.artifacts import add_figure_notes, markdown_document
from prefopt.reporting.provenance import provenance_note, stamp_columns

#: The columns of a Snakemake 9 benchmark file (BenchmarkRecord.get_header(), default format).
BENCHMARK_COLUMNS = (
    "s",
    "h:m:s",
    "max_rss",
    "max_vms",
    "max_uss",
    "max_pss",
    "io_in",
    "io_out",
    "mean_load",
    "cpu_time",
)
#: The columns of the runtime table, and the label of its last row (all jobs of the run).
TABLE_COLUMNS = ("rule", "jobs", "mean_s", "total_s", "share_pct", "cpu_time_s", "max_rss_mb")
TOTAL = "total"

CAPTION = "Runtime by rule"
NOTES = (
    "Wall-clock time of each job as Snakemake's benchmark: directive measured it. Total is the "
    "sum over a rule's jobs; the last row sums every job of the run, which is the compute it "
    "cost, not its elapsed time (independent jobs run side by side).",
    "CPU time sums the jobs' CPU seconds; peak RSS is the largest resident memory of any one "
    "job. A dash: the job ended before Snakemake took its first sample.",
    "A job that did not need to run again keeps the measurement of the invocation that ran it.",
)


def read_benchmark(path: str | Path) -> dict[str, float]:
    """One job's record: wall-clock seconds, peak RSS (MB) and CPU seconds, its repeats averaged
    (NaN where Snakemake recorded no sample)."""
    frame = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    missing = [c for c in ("s", "max_rss", "cpu_time") if c not in frame.columns]
    if missing or frame.empty:
        raise ValueError(
            f"{path}: not a Snakemake benchmark file (missing {missing or 'rows'}; expected the "
            f"columns {', '.join(BENCHMARK_COLUMNS)})"
        )
    means = frame[["s", "max_rss", "cpu_time"]].astype(float).mean()
    return {"s": means["s"], "max_rss": means["max_rss"], "cpu_time": means["cpu_time"]}


def runtime_table(files_by_rule: Mapping[str, str | Path | Sequence[str | Path]]) -> pd.DataFrame:
    """One row per rule (jobs, mean and total wall-clock seconds, share of the run's total, total
    CPU seconds, peak RSS in MB), most expensive first, then a `total` row over every job.

    `files_by_rule` maps a rule to the benchmark files of its jobs (one path or a list).
    """
    rows, jobs = [], []
    for rule, files in files_by_rule.items():
        paths = [files] if isinstance(files, (str, Path)) else list(files)
        if not paths:
            continue
        records = pd.DataFrame([read_benchmark(p) for p in paths])
        jobs.append(records)
        rows.append(_summary(rule, records))
    if not rows:
        raise ValueError("no benchmark files: the run has no jobs to report")
    table = pd.DataFrame(rows).sort_values(["total_s", "rule"], ascending=[False, True])
    table = pd.concat(
        [table, pd.DataFrame([_summary(TOTAL, pd.concat(jobs, ignore_index=True))])],
        ignore_index=True,
    )
    grand_total = table["total_s"].iloc[-1]
    table["share_pct"] = 100 * table["total_s"] / grand_total if grand_total > 0 else math.nan
    return table[list(TABLE_COLUMNS)]


def _summary(rule: str, records: pd.DataFrame) -> dict[str, Any]:
    return {
        "rule": rule,
        "jobs": len(records),
        "mean_s": records["s"].mean(),
        "total_s": records["s"].sum(),
        "cpu_time_s": records["cpu_time"].sum(min_count=1),
        "max_rss_mb": records["max_rss"].max(),
    }


def fmt_duration(seconds: float) -> str:
    """Seconds for a reader: `12.3 s` under a minute, else `h:mm:ss` (`1:02:03`)."""
    if seconds is None or pd.isna(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def pretty_runtime_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the Markdown shows it: durations as text, shares and memory rounded."""
    return pd.DataFrame(
        {
            "Rule": table["rule"],
            "Jobs": table["jobs"],
            "Mean": table["mean_s"].map(fmt_duration),
            "Total": table["total_s"].map(fmt_duration),
            "Share (%)": table["share_pct"].round(1),
            "CPU time": table["cpu_time_s"].map(fmt_duration),
            "Peak RSS (MB)": table["max_rss_mb"].map(lambda x: "–" if pd.isna(x) else f"{x:.0f}"),
        }
    )


def runtime_markdown(table: pd.DataFrame) -> str:
    return markdown_document(pretty_runtime_table(table), CAPTION, NOTES)


def runtime_figure(table: pd.DataFrame) -> Any:
    """Total wall-clock time per rule as horizontal bars (log scale: downloads take seconds,
    training hours), most expensive on top, labelled with the jobs behind each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = table[table["rule"] != TOTAL].iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rules) + 1.2))
    seconds = rules["total_s"].clip(lower=0.01)
    ax.barh(rules["rule"], seconds, color="tab:blue")
    for y, (s, n) in enumerate(zip(seconds, rules["jobs"], strict=True)):
        ax.text(s, y, f" {fmt_duration(s)} ({n} job{'s' if n != 1 else ''})", va="center", size=8)
    ax.set_xscale("log")
    ax.set_xlim(right=seconds.max() * 8)
    ax.set_xlabel("total wall-clock time (s, log scale)")
    total = table["total_s"].iloc[-1]
    ax.set_title(f"{CAPTION}: {fmt_duration(total)} over {table['jobs'].iloc[-1]} jobs", size=10)
    fig.tight_layout()
    return fig


def unmeasured_notes(unmeasured: Sequence[str]) -> list[str]:
    """A note naming the jobs of the run whose benchmark file is gone (none: no note)."""
    if not unmeasured:
        return []
    listed = ", ".join(f"`{f}`" for f in list(unmeasured)[:5])
    more = f" and {len(unmeasured) - 5} more" if len(unmeasured) > 5 else ""
    return [
        f"Not counted: {len(unmeasured)} job(s) of the run whose benchmark file is missing "
        f"(deleted after the job ran): {listed}{more}."
    ]


def write_runtime_outputs(
    files_by_rule: Mapping[str, str | Path | Sequence[str | Path]],
    csv: str | Path,
    md: str | Path,
    png: str | Path | None = None,
    provenance: str | None = None,
    unmeasured: Sequence[str] = (),
) -> pd.DataFrame:
    """The runtime table as CSV (numbers) and Markdown (for reading), and its figure as PNG;
    with `provenance` (a stamp: prefopt.reporting.provenance), each stamped like every other
    artifact. `unmeasured`: benchmark files of jobs of the run that are gone, said in a note
    (those jobs are not counted)."""
    table = runtime_table(files_by_rule)
    for path in (csv, md, png):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    notes = [*NOTES, *unmeasured_notes(unmeasured)]
    if provenance:
        notes.append(provenance_note(provenance))
    (stamp_columns(table, provenance) if provenance else table).to_csv(csv, index=False)
    Path(md).write_text(
        markdown_document(pretty_runtime_table(table), CAPTION, notes), encoding="utf-8"
    )
    if png is not None:
        import matplotlib.pyplot as plt

        fig = runtime_figure(table)
        if provenance:
            add_figure_notes(fig, [provenance_note(provenance)])
        fig.savefig(png, dpi=150, bbox_inches="tight")
        plt.close(fig)
    return table
