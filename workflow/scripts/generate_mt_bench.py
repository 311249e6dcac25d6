"""Snakemake wiring: MT-Bench answers (both turns) of one (variant, seed), FastChat format."""

import torch

from prefopt.data import read_jsonl, write_jsonl
from prefopt.generation import generate_mt_bench
from prefopt.modeling import load_model
from prefopt.runtime import require_gpu, setup_logging

log = setup_logging(snakemake.log[0])
require_gpu(snakemake)  # a GPU rule: on a GPU, or allowed on the CPU (config allow_cpu)
torch.set_num_threads(snakemake.threads)
gen = snakemake.params.generation
model, tokenizer = load_model(snakemake.input.model, dtype=gen["dtype"], cpu_dtype=gen["cpu_dtype"])
answers = generate_mt_bench(
    model,
    tokenizer,
    read_jsonl(snakemake.input.questions),
    model_id=snakemake.params.generator,
    system_prompt=gen["system_prompt"],
    settings=gen["mt_bench"],
    batch_size=gen["batch_size"],
    seed=int(snakemake.wildcards.seed),
)
write_jsonl(answers, snakemake.output[0])
log.info(
    "generated MT-Bench answers for %d questions on %s (%s)",
    len(answers),
    model.device,
    model.dtype,
)
