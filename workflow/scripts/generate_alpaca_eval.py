"""Snakemake wiring: AlpacaEval answers of one (variant, seed) in alpaca_eval's format, and what
generated them (engine, version, dtype, device)."""

from prefopt.generation.answers import engine_of_job, generate_alpaca_eval
from prefopt.runtime import read_json, start_gpu_job, write_json


def main() -> None:
    log = start_gpu_job(snakemake)
    engine, sampling, seed = engine_of_job(snakemake, "alpaca_eval")
    outputs = generate_alpaca_eval(
        engine,
        read_json(snakemake.input.prompts),
        generator=snakemake.params.generator,
        system_prompt=snakemake.params.generation["system_prompt"],
        sampling=sampling,
        seed=seed,
    )
    write_json(outputs, snakemake.output.answers)
    write_json(engine.describe(), snakemake.output.engine)
    log.info("generated %d AlpacaEval answers: %s", len(outputs), engine.describe())


if __name__ == "__main__":
    main()
