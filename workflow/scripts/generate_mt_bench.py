"""Snakemake wiring: MT-Bench answers (both turns) of one (variant, seed), FastChat format, and
what generated them (engine, version, dtype, device)."""

from prefopt.data.prepare import read_jsonl, write_jsonl
from prefopt.generation.answers import engine_of_job, generate_mt_bench
from prefopt.runtime import start_gpu_job, write_json


def main() -> None:
    log = start_gpu_job(snakemake)
    engine, sampling, seed = engine_of_job(snakemake, "mt_bench")
    answers = generate_mt_bench(
        engine,
        read_jsonl(snakemake.input.questions),
        model_id=snakemake.params.generator,
        system_prompt=snakemake.params.generation["system_prompt"],
        sampling=sampling,
        seed=seed,
    )
    write_jsonl(answers, snakemake.output.answers)
    write_json(engine.describe(), snakemake.output.engine)
    log.info("generated MT-Bench answers for %d questions: %s", len(answers), engine.describe())


if __name__ == "__main__":
    main()
