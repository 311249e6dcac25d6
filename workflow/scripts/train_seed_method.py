"""Snakemake wiring: train one seed-method variant (lambda-DPO, DCKD or ADPA) with one seed."""

from prefopt.config import loss_params
from prefopt.runtime import start_gpu_job, versions
from prefopt.training.seed_methods.trainer import train_seed_method
from prefopt.training.trainer import job_training


def main() -> None:
    log = start_gpu_job(snakemake, torch_threads=False)  # the trainer sets its threads
    variant = snakemake.params.variant
    training = job_training(snakemake)
    summary = train_seed_method(
        init_dir=snakemake.input.model,
        inputs=dict(snakemake.input.items()),
        out_dir=snakemake.output.model,
        diagnostics_path=snakemake.output.diagnostics,
        training=training,
        method=variant["loss"],
        params=loss_params(variant),
        seed=int(snakemake.wildcards.seed),
        learning_rate=variant.get("learning_rate"),
    )
    log.info(
        "trained %s seed %s from %s: %d steps, loss %.4f, %.1f s; lambda per step %s; versions %s",
        variant["loss"],
        summary["seed"],
        summary["init"],
        summary["global_steps"],
        summary["train_loss"],
        summary["train_runtime_s"] or 0.0,
        summary["lambda_per_step"],
        versions(),
    )


if __name__ == "__main__":
    main()
