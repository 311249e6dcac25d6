"""Snakemake wiring: MT-Bench single-answer grading by the API judge (FastChat prompts)."""

from prefopt.data.prepare import read_jsonl, write_jsonl
from prefopt.judging.api import ApiJudgeClient, judge_mt_bench
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    client = ApiJudgeClient(
        model=snakemake.params.model,  # the registry's (prefopt.judging.registry), pinned snapshot
        cache_path=snakemake.params.cache,
        max_workers=snakemake.config["judges"][
            "max_concurrency"
        ],  # how fast, not what: not a param
    )
    records = judge_mt_bench(
        client,
        read_jsonl(snakemake.input.questions),
        read_jsonl(snakemake.input.answers),
        {p["name"]: p for p in read_jsonl(snakemake.input.judge_prompts)},
        {r["question_id"]: r for r in read_jsonl(snakemake.input.reference_answers)},
        model_id=f"{snakemake.wildcards.variant}-seed{snakemake.wildcards.seed}",
        repeats=snakemake.params.repeats,  # judges.repeats: each turn graded k times, median score
    )
    write_jsonl(records, snakemake.output[0])
    log.info(
        "judged %d MT-Bench turns x %d repeat(s) with %s (served by %s); %d missing (API refused), "
        "%d failed repeat(s)",
        len(records),
        snakemake.params.repeats,
        snakemake.wildcards.judge,
        ", ".join(sorted({str(r["served_model"]) for r in records if r["served_model"]})) or "-",
        sum(r["judge_error"] is not None for r in records),
        sum(r.get("n_failed_repeats", 0) for r in records),
    )


if __name__ == "__main__":
    main()
