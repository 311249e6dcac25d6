"""Snakemake wiring: an API judge grades the MT-Bench calibration answers with FastChat's prompts
(key from the environment, every answer cached)."""

from prefopt.data.prepare import write_jsonl
from prefopt.judging.api import ApiJudgeClient
from prefopt.judging.calibration_mt_bench import judge_with_api
from prefopt.runtime import read_json, read_jsonl, setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    inp, par = snakemake.input, snakemake.params
    client = ApiJudgeClient(
        model=par.model,  # the registry's (prefopt.judging.registry), pinned snapshot
        cache_path=par.cache,
        max_workers=snakemake.config["judges"][
            "max_concurrency"
        ],  # how fast, not what: not a param
    )
    items = read_json(inp.calibration_items)
    records = judge_with_api(
        client,
        items,
        {p["name"]: p for p in read_jsonl(inp.judge_prompts)},
        {r["question_id"]: r for r in read_jsonl(inp.reference_answers)},
    )
    write_jsonl(records, snakemake.output[0])
    served = sorted({str(r["served_model"]) for r in records if r["served_model"]})
    missing = sum(r["judge_error"] is not None for r in records)
    log.info("graded %d MT-Bench calibration turns of %d models with %s (served by %s); %d missing",
             len(records), len(items["models"]), snakemake.wildcards.judge,
             ", ".join(served) or "-", missing)  # fmt: skip


if __name__ == "__main__":
    main()
