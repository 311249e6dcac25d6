"""Snakemake wiring: AlpacaEval answers of one (variant, seed) in alpaca_eval's format."""

import torch

from prefopt.generation import generate_alpaca_eval
from prefopt.modeling import load_model
from prefopt.runtime import read_json, setup_logging, write_json

log = setup_logging(snakemake.log[0])  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
gen = snakemake.params.generation  # noqa: F821
dtype = gen["dtype"] if torch.cuda.is_available() else "float32"
model, tokenizer = load_model(snakemake.input.model, dtype=dtype)  # noqa: F821
outputs = generate_alpaca_eval(
    model,
    tokenizer,
    read_json(snakemake.input.prompts),  # noqa: F821
    generator=snakemake.params.generator,  # noqa: F821
    system_prompt=gen["system_prompt"],
    settings=gen["alpaca_eval"],
    batch_size=gen["batch_size"],
    seed=int(snakemake.wildcards.seed),  # noqa: F821
)
write_json(outputs, snakemake.output[0])  # noqa: F821
log.info("generated %d AlpacaEval answers on %s (%s)", len(outputs), model.device, dtype)
