"""Snakemake wiring: train one seed-method variant (lambda-DPO, DCKD or ADPA) with one seed."""

from prefopt.config import loss_params
from prefopt.runtime import require_gpu, setup_logging, versions
from prefopt.training.seed_methods.trainer import train_seed_method


def main() -> None:
    log = setup_logging(snakemake.log[0])
    require_gpu(snakemake)  # a GPU rule: on a GPU, or allowed on the CPU (config allow_cpu)
    variant = snakemake.params.variant
    # how the job runs, not what it computes: not in params, so changing them reruns nothing
    training = {
        **snakemake.params.training,
        "threads": snakemake.threads,
        "checkpoint_steps": snakemake.config["training"]["checkpoint_steps"],
        "checkpoint_minutes": snakemake.config["training"]["checkpoint_minutes"],
    }
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
