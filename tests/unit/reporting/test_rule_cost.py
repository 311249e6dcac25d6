"""prefopt.reporting.rule_cost: the runtime table from the benchmark files Snakemake writes for
every job; prefopt.reporting.run_jobs: the list of those files the DAG gives at the start of a run
(the list itself is checked on a real DAG by tests/integration/test_e2e_tiny.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from prefopt.reporting import rule_cost as bm
from prefopt.reporting.run_jobs import read_run_jobs, split_measured, write_run_jobs

# Snakemake 9's default benchmark format, byte for byte: a header, one row per repeat, "NA" in
# the resource columns when the job ended before the first sample.
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def tsv(path, *rows: tuple[float, float | str, float | str]):
    """A benchmark file with one row (s, max_rss, cpu_time) per repeat."""
    lines = [HEADER]
    for s, rss, cpu in rows:
        hms = f"0:{int(s) // 60:02d}:{int(s) % 60:02d}"
        lines.append(f"{s:.4f}\t{hms}\t{rss}\t900.00\t{rss}\t{rss}\t1.00\t2.00\t50.00\t{cpu}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return str(path)


@pytest.fixture
def run(tmp_path):
    """Three rules as a run lays them out: two training jobs, one aggregation, one quick job."""
    b = tmp_path / "results" / "benchmarks"
    return {
        "train_policy": [
            tsv(b / "train_policy" / "dpo" / "seed0.tsv", (10.0, 500.0, 18.0)),
            tsv(b / "train_policy" / "dpo" / "seed1.tsv", (30.0, 700.0, 50.0)),
        ],
        "aggregate_scores": [tsv(b / "aggregate_scores.tsv", (100.0, 200.0, 90.0))],
        "prepare_alpaca_eval": tsv(b / "prepare_alpaca_eval.tsv", (0.5, "NA", "NA")),
    }


def test_one_row_per_rule_most_expensive_first_then_the_total(run):
    table = bm.runtime_table(run).set_index("rule")
    assert list(table.index) == ["aggregate_scores", "train_policy", "prepare_alpaca_eval", "total"]
    assert list(table.columns) == list(bm.TABLE_COLUMNS)[1:]
    assert table.loc["train_policy", "jobs"] == 2
    assert table.loc["train_policy", "mean_s"] == pytest.approx(20.0)
    assert table.loc["train_policy", "total_s"] == pytest.approx(40.0)
    assert table.loc["train_policy", "cpu_time_s"] == pytest.approx(68.0)
    assert table.loc["train_policy", "max_rss_mb"] == pytest.approx(700.0)
    assert table.loc["aggregate_scores", "jobs"] == 1
    assert table.loc["aggregate_scores", "total_s"] == pytest.approx(100.0)
    # the total row: every job of the run
    total = table.loc["total"]
    assert total["jobs"] == 4
    assert total["total_s"] == pytest.approx(140.5)
    assert total["mean_s"] == pytest.approx(140.5 / 4)
    assert total["cpu_time_s"] == pytest.approx(158.0)
    assert total["max_rss_mb"] == pytest.approx(700.0)
    assert total["share_pct"] == pytest.approx(100.0)
    assert table["share_pct"].iloc[:-1].sum() == pytest.approx(100.0)
    assert table.loc["aggregate_scores", "share_pct"] == pytest.approx(100 * 100 / 140.5)


def test_a_job_without_resource_samples_counts_its_time_and_no_resources(run):
    table = bm.runtime_table(run).set_index("rule")
    quick = table.loc["prepare_alpaca_eval"]
    assert quick["jobs"] == 1 and quick["total_s"] == pytest.approx(0.5)
    assert math.isnan(quick["cpu_time_s"]) and math.isnan(quick["max_rss_mb"])


def test_repeats_of_a_job_are_averaged(tmp_path):
    path = tsv(tmp_path / "b.tsv", (10.0, 100.0, 5.0), (20.0, 300.0, 15.0))
    assert bm.read_benchmark(path) == {"s": 15.0, "max_rss": 200.0, "cpu_time": 10.0}
    table = bm.runtime_table({"rule_with_repeats": [path]})
    assert table["jobs"].tolist() == [1, 1] and table["total_s"].tolist() == [15.0, 15.0]


def test_reads_the_files_snakemake_itself_writes(tmp_path):
    """Through Snakemake's own writer, in its default and its extended format."""
    benchmark = pytest.importorskip("snakemake.benchmark")

    def record(**measured):
        rec = benchmark.BenchmarkRecord(**measured)
        # what Snakemake fills in for a job (the extended format writes them)
        rec.wildcards, rec.params, rec.resources, rec.input = {"seed": "0"}, {}, {}, []
        return rec

    sampled = record(running_time=12.5, max_rss=321.0, cpu_time=11.0, cpu_usage=11.0)
    sampled.data_collected = True
    unsampled = record(running_time=0.25)  # ended before the first sample: NA
    files = {}
    for extended in (False, True):
        for name, record in (("sampled", sampled), ("unsampled", unsampled)):
            path = tmp_path / f"{name}-{extended}.tsv"
            benchmark.write_benchmark_records([record], str(path), extended)
            files.setdefault(name, []).append(str(path))
    assert (tmp_path / "sampled-False.tsv").read_text().split("\n")[0] == HEADER.rstrip("\n")
    table = bm.runtime_table(files).set_index("rule")
    assert table.loc["sampled", "jobs"] == 2
    assert table.loc["sampled", "total_s"] == pytest.approx(25.0)
    assert table.loc["sampled", "max_rss_mb"] == pytest.approx(321.0)
    assert table.loc["sampled", "cpu_time_s"] == pytest.approx(22.0)
    assert table.loc["unsampled", "total_s"] == pytest.approx(0.5)
    assert math.isnan(table.loc["unsampled", "max_rss_mb"])


def test_not_a_benchmark_file_or_no_files_is_an_error(tmp_path):
    other = tmp_path / "scores.csv"
    other.write_text("variant\tseed\ndpo\t0\n")
    with pytest.raises(ValueError, match="not a Snakemake benchmark file"):
        bm.read_benchmark(other)
    empty = tmp_path / "empty.tsv"
    empty.write_text(HEADER)
    with pytest.raises(ValueError, match="not a Snakemake benchmark file"):
        bm.read_benchmark(empty)
    with pytest.raises(ValueError, match="no benchmark files"):
        bm.runtime_table({"some_rule": []})


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0 s"), (12.34, "12.3 s"), (59.9, "59.9 s"), (60, "0:01:00"), (3723.4, "1:02:03")],
)
def test_fmt_duration(seconds, text):
    assert bm.fmt_duration(seconds) == text
    assert bm.fmt_duration(float("nan")) == "–"


def test_outputs_csv_markdown_and_figure(run, tmp_path):
    out = tmp_path / "out"
    csv, md, png = out / "t.csv", out / "t.md", out / "f.png"
    table = bm.write_runtime_outputs(run, csv, md, png)
    pd.testing.assert_frame_equal(pd.read_csv(csv), table, check_dtype=False)
    text = md.read_text()
    assert text.startswith(f"**{bm.CAPTION}**")
    assert "| train_policy " in text and "| total " in text
    assert "| 0:01:40 " in text  # aggregate_scores: 100 s
    assert "20.0 s" in text and "– " in text  # a mean under a minute; a job without samples
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000


def test_jobs_whose_benchmark_file_is_gone_are_named_and_not_counted(run, tmp_path):
    """The list from the DAG names a job whose benchmark file was deleted after it ran: the
    table counts the others and its Markdown says which jobs it could not count."""
    listed = {rule: [files] if isinstance(files, str) else files for rule, files in run.items()}
    gone = str(tmp_path / "results" / "benchmarks" / "train_policy" / "dpo" / "seed2.tsv")
    listed["train_policy"] = [*listed["train_policy"], gone]
    listed["judge_mt_bench_local"] = [str(tmp_path / "gone.tsv")]
    measured, missing = split_measured(listed)
    assert missing == [gone, str(tmp_path / "gone.tsv")]
    assert measured == {r: f for r, f in listed.items() if r != "judge_mt_bench_local"} | {
        "train_policy": listed["train_policy"][:2]
    }
    out = tmp_path / "out"
    table = bm.write_runtime_outputs(measured, out / "t.csv", out / "t.md", unmeasured=missing)
    assert table.set_index("rule").loc["total", "jobs"] == 4
    assert (
        "Not counted: 2 job(s)" in (out / "t.md").read_text() and gone in (out / "t.md").read_text()
    )
    bm.write_runtime_outputs(measured, out / "t.csv", out / "t.md")
    assert "Not counted" not in (out / "t.md").read_text()


def test_the_list_of_the_runs_jobs_round_trips_and_a_missing_list_is_named(tmp_path):
    path = tmp_path / "results" / "benchmarks" / "runtime_by_rule.jobs.json"
    with pytest.raises(FileNotFoundError, match="list of the run's jobs is missing.*onstart"):
        read_run_jobs(path)
    files = {"prepare_model": ["results/benchmarks/prepare_model.tsv"], "train_policy": ["a", "b"]}
    write_run_jobs(path, files)
    assert read_run_jobs(path) == files
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    path.write_text('{"other": 1}')
    with pytest.raises(ValueError, match="not a list of the run's jobs"):
        read_run_jobs(path)
