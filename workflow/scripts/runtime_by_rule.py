"""Snakemake wiring: the run's runtime by rule, from the benchmark files of its jobs (the list
Snakemake's DAG gave at the start of the run: prefopt.reporting.run_jobs), stamped with the run's
provenance."""

from prefopt.reporting.rule_cost import write_runtime_outputs
from prefopt.reporting.run_jobs import read_run_jobs, split_measured
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    out = snakemake.output
    measured, missing = split_measured(read_run_jobs(snakemake.params.run_jobs))
    if missing:
        log.warning(
            "%d job(s) have no benchmark file and are not counted: %s", len(missing), missing
        )
    table = write_runtime_outputs(
        measured,
        out.table,
        out.markdown,
        out.figure,
        provenance=snakemake.params.provenance_stamp,
        unmeasured=missing,
    )
    total = table.iloc[-1]
    log.info(
        "%d rules, %d jobs, %.1f s of wall-clock time in all",
        len(table) - 1,
        total.jobs,
        total.total_s,
    )


if __name__ == "__main__":
    main()
