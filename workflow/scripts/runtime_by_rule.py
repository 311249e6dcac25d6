"""Snakemake wiring: the run's runtime by rule, from the benchmark files of its jobs (named
inputs, one per rule), stamped with the run's provenance."""

from prefopt.reporting.rule_cost import write_runtime_outputs
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    inp, out = snakemake.input, snakemake.output
    table = write_runtime_outputs(
        {rule: inp[rule] for rule in inp.keys()},
        out.table,
        out.markdown,
        out.figure,
        provenance=snakemake.params.provenance_stamp,
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
