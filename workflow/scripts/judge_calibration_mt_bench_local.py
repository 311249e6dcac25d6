"""Snakemake wiring: the local judge grades the MT-Bench calibration answers (FastChat prompts,
expected score from its rating-token probabilities)."""

from prefopt.data.prepare import write_jsonl
from prefopt.judging.calibration_mt_bench import judge_with_local
from prefopt.judging.local import judge_of_job
from prefopt.runtime import read_json, read_jsonl, start_gpu_job


def main() -> None:
    log = start_gpu_job(snakemake)
    inp = snakemake.input
    items = read_json(inp.calibration_items)
    judge_prompts = {p["name"]: p for p in read_jsonl(inp.judge_prompts)}
    references = {
        r["question_id"]: r["choices"][0]["turns"] for r in read_jsonl(inp.reference_answers)
    }
    judge = judge_of_job(snakemake)
    records = judge_with_local(judge, items, judge_prompts, references)
    write_jsonl(records, snakemake.output[0])
    log.info("graded %d MT-Bench calibration turns of %d models with the local judge (%s, %s)",
             len(records), len(items["models"]), judge.model_name, judge.model.dtype)  # fmt: skip


if __name__ == "__main__":
    main()
