"""Snakemake wiring: one variant x seed's implicit reward margins on the held-out pairs."""

import tempfile
import time

from prefopt.evaluation.heldout import heldout_scores, preference_summary
from prefopt.runtime import start_gpu_job, versions


def main() -> None:
    log = start_gpu_job(snakemake)
    inp, par, wc = snakemake.input, snakemake.params, snakemake.wildcards
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:  # the scoring trainer's output_dir (nothing kept)
        table = heldout_scores(
            inp.pairs,
            inp.reference_logps,
            None if par.policy_is_reference else inp.model,
            par.training,
            work,
            variant=wc.variant,
            seed=int(wc.seed),
        )
    table.to_csv(snakemake.output[0], index=False)
    stats = preference_summary(table["margin"], table["score_tie"], n_bootstrap=0, seed=0)
    log.info(
        "held-out %s seed %s (%s): accuracy %.4f, mean margin %.4f over %d pairs (%d score ties "
        "excluded) in %.1f s; versions %s",
        wc.variant,
        wc.seed,
        "policy = reference" if par.policy_is_reference else inp.model,
        stats["accuracy"],
        stats["mean_margin"],
        stats["n_evaluated"],
        stats["n_ties"],
        time.perf_counter() - start,
        versions(),
    )


if __name__ == "__main__":
    main()
