"""Snakemake wiring: AlpacaEval annotations from an API judge (key from the environment): the
vendored annotator's prompt and parser, asked of the model the judge registry pins."""

from pathlib import Path

from prefopt.judging.api import ApiJudgeClient, judge_alpaca_eval_pairs
from prefopt.runtime import read_json, setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    config_path = Path(snakemake.input.annotator_config).resolve()
    client = ApiJudgeClient(
        model=snakemake.params.model,  # the registry's (prefopt.judging.registry), pinned snapshot
        cache_path=snakemake.params.cache,
        base_url=None,  # OPENAI_BASE_URL in the environment, else api.openai.com
        max_workers=snakemake.config["judges"][
            "max_concurrency"
        ],  # how fast, not what: not a param
    )
    annotations = judge_alpaca_eval_pairs(
        client,
        read_json(snakemake.input.outputs),
        read_json(snakemake.input.reference),
        config_path=config_path,
        repeats=snakemake.params.repeats,  # judges.repeats: each pair judged k times, mean verdict
    )
    write_json(annotations, snakemake.output[0])
    log.info(
        "judged %d AlpacaEval pairs x %d repeat(s) with %s (%s, served by %s); %d missing (API "
        "refused), %d failed repeat(s)",
        len(annotations),
        snakemake.params.repeats,
        snakemake.wildcards.judge,
        client.model,
        ", ".join(sorted({str(a["served_model"]) for a in annotations if a["served_model"]}))
        or "-",
        sum(a["judge_error"] is not None for a in annotations),
        sum(a.get("n_failed_repeats", 0) for a in annotations),
    )


if __name__ == "__main__":
    main()
