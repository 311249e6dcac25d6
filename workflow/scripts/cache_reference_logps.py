"""Snakemake wiring: the frozen reference model's log-probs, once for every training job."""

import torch

from prefopt.runtime import setup_logging, versions
from prefopt.training import compute_reference_logps

log = setup_logging(snakemake.log[0])  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
info = compute_reference_logps(
    snakemake.input.model,  # noqa: F821
    snakemake.input.pairs,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    snakemake.params.training,  # noqa: F821
)
log.info("reference log-probs: %s; versions %s", info, versions())
