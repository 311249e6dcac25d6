"""Snakemake wiring: the frozen reference model's log-probs, once for every training job."""

from prefopt.runtime import start_gpu_job, versions
from prefopt.training.trainer import compute_reference_logps


def main() -> None:
    log = start_gpu_job(snakemake)
    info = compute_reference_logps(
        snakemake.input.model,
        snakemake.input.pairs,
        snakemake.output.logps,
        snakemake.params.training,
    )
    log.info("reference log-probs: %s; versions %s", info, versions())


if __name__ == "__main__":
    main()
