"""Snakemake wiring: local-judge annotations (alpaca_eval format) of one (variant, seed)."""

from prefopt.judging.local import judge_of_job
from prefopt.runtime import read_json, start_gpu_job, write_json


def main() -> None:
    log = start_gpu_job(snakemake)
    reference = read_json(snakemake.input.reference)
    outputs = read_json(snakemake.input.outputs)
    if [r["instruction"] for r in reference] != [o["instruction"] for o in outputs]:
        raise ValueError(f"{snakemake.input.outputs}: instructions differ from the reference set")
    pairs = [
        {
            "instruction": r["instruction"],
            "dataset": r.get("dataset", ""),
            "output_1": r["output"],
            "generator_1": r["generator"],
            "output_2": o["output"],
            "generator_2": o["generator"],
        }
        for r, o in zip(reference, outputs, strict=True)
    ]
    judge = judge_of_job(snakemake)
    annotations = judge.judge_alpaca_eval_pairs(pairs)
    write_json(annotations, snakemake.output[0])
    log.info(
        "judged %d pairs with the local judge (%s, %s)",
        len(annotations),
        judge.model_name,
        judge.model.dtype,
    )


if __name__ == "__main__":
    main()
