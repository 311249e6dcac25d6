"""Snakemake wiring: train one seed-method variant (lambda-DPO, DCKD or ADPA) with one seed."""

from prefopt.config import train_params
from prefopt.runtime import setup_logging, versions
from prefopt.seed_training import train_seed_method

log = setup_logging(snakemake.log[0])  # noqa: F821
variant = snakemake.params.variant  # noqa: F821
training = {**snakemake.params.training, "threads": snakemake.threads}  # noqa: F821
summary = train_seed_method(
    init_dir=snakemake.input.model,  # noqa: F821
    inputs=dict(snakemake.input.items()),  # noqa: F821
    out_dir=snakemake.output.model,  # noqa: F821
    diagnostics_path=snakemake.output.diagnostics,  # noqa: F821
    training=training,
    method=variant["loss"],
    params=train_params({"variants": {"v": variant}}, "v"),
    seed=int(snakemake.wildcards.seed),  # noqa: F821
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
