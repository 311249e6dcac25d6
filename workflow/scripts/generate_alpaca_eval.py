"""Snakemake wiring: AlpacaEval answers of one (variant, seed) in alpaca_eval's format, and what
generated them (engine, version, dtype, device)."""

import torch

from prefopt.generation.answers import generate_alpaca_eval, load_engine
from prefopt.generation.interface import Sampling
from prefopt.runtime import read_json, require_gpu, setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    require_gpu(snakemake)  # a GPU rule: on a GPU, or allowed on the CPU (config allow_cpu)
    torch.set_num_threads(snakemake.threads)
    gen = snakemake.params.generation
    seed = int(snakemake.wildcards.seed)
    # the benchmark's sampling settings, checked before the model loads
    sampling = Sampling.from_config(gen["alpaca_eval"], key="generation.alpaca_eval")
    engine = load_engine(snakemake.input.model, gen, seed=seed)
    outputs = generate_alpaca_eval(
        engine,
        read_json(snakemake.input.prompts),
        generator=snakemake.params.generator,
        system_prompt=gen["system_prompt"],
        sampling=sampling,
        seed=seed,
    )
    write_json(outputs, snakemake.output.answers)
    write_json(engine.describe(), snakemake.output.engine)
    log.info("generated %d AlpacaEval answers: %s", len(outputs), engine.describe())


if __name__ == "__main__":
    main()
