"""Snakemake wiring: train one variant with one seed from the cached reference log-probs."""

import os
from pathlib import Path

from prefopt.config import loss_params
from prefopt.runtime import ALLOW_CPU_ENV, start_gpu_job, versions
from prefopt.training.ddp import launch, require_job_gpus
from prefopt.training.trainer import job_training, train_policy


def main() -> None:
    log = start_gpu_job(snakemake, torch_threads=False)  # the trainer sets its threads
    variant = snakemake.params.variant
    training = job_training(snakemake, ddp=True)
    args = dict(
        model_dir=snakemake.input.model,
        pairs_path=snakemake.input.pairs,
        reference_path=snakemake.input.reference_logps,
        out_dir=snakemake.output.model,
        diagnostics_path=snakemake.output.diagnostics,
        training=training,
        loss_name=variant["loss"],
        loss_params=loss_params(variant),
        seed=int(snakemake.wildcards.seed),
        learning_rate=variant.get("learning_rate"),
    )
    if training["gpus_per_job"] > 1:  # one job on several GPUs: DDP under torchrun
        allow_cpu = os.environ.get(ALLOW_CPU_ENV) == "1"
        require_job_gpus(snakemake.resources.gpu, training["gpus_per_job"], allow_cpu)
        args_path = Path(snakemake.output.model).parent / "ddp_args.json"
        ddp_args = {**args, "log_path": snakemake.log[0]}
        summary = launch(train_policy, training["gpus_per_job"], ddp_args, args_path)
    else:
        summary = train_policy(**args)
    log.info(
        "trained %s seed %s: %d steps, loss %.4f, %.1f s; versions %s",
        variant["loss"],
        summary["seed"],
        summary["global_steps"],
        summary["train_loss"],
        summary["train_runtime_s"] or 0.0,
        versions(),
    )


if __name__ == "__main__":
    main()
