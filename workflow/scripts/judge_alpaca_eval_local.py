"""Snakemake wiring: local-judge annotations (alpaca_eval format) of one (variant, seed)."""

import torch

from prefopt.judging.local import LocalJudge
from prefopt.modeling import load_model
from prefopt.runtime import read_json, require_gpu, setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    require_gpu(snakemake)  # a GPU rule: on a GPU, or allowed on the CPU (config allow_cpu)
    torch.set_num_threads(snakemake.threads)
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
    model, tokenizer = load_model(snakemake.input.judge_model, cpu_dtype=snakemake.params.cpu_dtype)
    judge = LocalJudge(
        model,
        tokenizer,
        max_length=snakemake.params.max_length,
        model_name=snakemake.params.judge_model_name,
    )
    annotations = judge.judge_alpaca_eval_pairs(pairs)
    write_json(annotations, snakemake.output[0])
    log.info(
        "judged %d pairs with the local judge (%s, %s)",
        len(annotations),
        judge.model_name,
        model.dtype,
    )


if __name__ == "__main__":
    main()
