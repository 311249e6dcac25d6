"""Snakemake wiring: every job's held-out scores into the per-pair and per-variant x seed tables."""

import pandas as pd

from prefopt.evaluation.heldout import summary_table
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    out, par = snakemake.output, snakemake.params
    per_pair = pd.concat(
        [pd.read_csv(path, dtype={"pair_id": str}) for path in snakemake.input], ignore_index=True
    )
    per_pair.to_csv(out.per_pair, index=False)
    summary = summary_table(per_pair, par.heldout, par.n_bootstrap, par.bootstrap_seed)
    summary.to_csv(out.summary, index=False)
    log.info("held-out preference (%s):\n%s", par.heldout, summary.to_string(index=False))


if __name__ == "__main__":
    main()
