"""Snakemake wiring: AlpacaEval answers of one (variant, seed) in alpaca_eval's format."""

import torch

from prefopt.generation import generate_alpaca_eval
from prefopt.modeling import load_model
from prefopt.runtime import read_json, require_gpu, setup_logging, write_json

log = setup_logging(snakemake.log[0])
require_gpu(snakemake)  # a GPU rule: on a GPU, or allowed on the CPU (config allow_cpu)
torch.set_num_threads(snakemake.threads)
gen = snakemake.params.generation
model, tokenizer = load_model(snakemake.input.model, dtype=gen["dtype"], cpu_dtype=gen["cpu_dtype"])
outputs = generate_alpaca_eval(
    model,
    tokenizer,
    read_json(snakemake.input.prompts),
    generator=snakemake.params.generator,
    system_prompt=gen["system_prompt"],
    settings=gen["alpaca_eval"],
    batch_size=gen["batch_size"],
    seed=int(snakemake.wildcards.seed),
)
write_json(outputs, snakemake.output[0])
log.info("generated %d AlpacaEval answers on %s (%s)", len(outputs), model.device, model.dtype)
