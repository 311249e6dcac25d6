"""Snakemake wiring: train one variant with one seed from the cached reference log-probs."""

from prefopt.config import train_params
from prefopt.runtime import setup_logging, versions
from prefopt.training import train_policy

log = setup_logging(snakemake.log[0])  # noqa: F821
variant = snakemake.params.variant  # noqa: F821
training = {**snakemake.params.training, "threads": snakemake.threads}  # noqa: F821
summary = train_policy(
    model_dir=snakemake.input.model,  # noqa: F821
    pairs_path=snakemake.input.pairs,  # noqa: F821
    reference_path=snakemake.input.reference_logps,  # noqa: F821
    out_dir=snakemake.output.model,  # noqa: F821
    diagnostics_path=snakemake.output.diagnostics,  # noqa: F821
    training=training,
    loss_name=variant["loss"],
    loss_params=train_params({"variants": {"v": variant}}, "v"),
    seed=int(snakemake.wildcards.seed),  # noqa: F821
    learning_rate=variant.get("learning_rate"),
)
log.info(
    "trained %s seed %s: %d steps, loss %.4f, %.1f s; versions %s",
    variant["loss"],
    summary["seed"],
    summary["global_steps"],
    summary["train_loss"],
    summary["train_runtime_s"] or 0.0,
    versions(),
)
