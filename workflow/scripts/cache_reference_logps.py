"""Snakemake wiring: the frozen reference model's log-probs, once for every training job."""

import torch

from prefopt.runtime import require_gpu, setup_logging, versions
from prefopt.training.trainer import compute_reference_logps


def main() -> None:
    log = setup_logging(snakemake.log[0])
    require_gpu(snakemake)  # a GPU rule: on a GPU, or allowed on the CPU (config allow_cpu)
    torch.set_num_threads(snakemake.threads)
    info = compute_reference_logps(
        snakemake.input.model,
        snakemake.input.pairs,
        snakemake.output.logps,
        snakemake.params.training,
    )
    log.info("reference log-probs: %s; versions %s", info, versions())


if __name__ == "__main__":
    main()
