"""Snakemake wiring: MT-Bench answers (both turns) of one (variant, seed), FastChat format, and
what generated them (engine, version, dtype, device)."""

import torch

from prefopt.data.prepare import read_jsonl, write_jsonl
from prefopt.generation.answers import generate_mt_bench, load_engine
from prefopt.generation.interface import Sampling
from prefopt.runtime import require_gpu, setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    require_gpu(snakemake)  # a GPU rule: on a GPU, or allowed on the CPU (config allow_cpu)
    torch.set_num_threads(snakemake.threads)
    gen = snakemake.params.generation
    seed = int(snakemake.wildcards.seed)
    # the benchmark's sampling settings, checked before the model loads
    sampling = Sampling.from_config(gen["mt_bench"], key="generation.mt_bench")
    engine = load_engine(snakemake.input.model, gen, seed=seed)
    answers = generate_mt_bench(
        engine,
        read_jsonl(snakemake.input.questions),
        model_id=snakemake.params.generator,
        system_prompt=gen["system_prompt"],
        sampling=sampling,
        seed=seed,
    )
    write_jsonl(answers, snakemake.output.answers)
    write_json(engine.describe(), snakemake.output.engine)
    log.info("generated MT-Bench answers for %d questions: %s", len(answers), engine.describe())


if __name__ == "__main__":
    main()
