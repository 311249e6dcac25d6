"""Pinned sources (downloaded, or read from a mirror such as the shipped samples) and the checked
inputs every stage reads. Downloads are verified (prefopt.data.download) and record what they
got."""


# Network-bound or light: on a cluster they run on the submit host (compute nodes often lack
# internet).
localrules:
    download_preference_data,
    download_alpaca_eval,
    download_alpaca_eval_lc_assets,
    download_mt_bench,
    download_authors_annotations,
    prepare_preference_data,
    prepare_alpaca_eval,
    prepare_mt_bench,


rule download_preference_data:
    output:
        data=f"{DOWNLOADS}/{DATASET}/{{split}}.jsonl",
        provenance=f"{DOWNLOADS}/{DATASET}/{{split}}.provenance.json",
    log:
        f"results/logs/download_preference_data/{DATASET}-{{split}}.log",
    benchmark:
        f"results/benchmarks/download_preference_data/{DATASET}-{{split}}.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="preference_data",
        repo_id=config["data"]["train"]["id"],
        revision=config["data"]["train"]["revision"],
    script:
        "../scripts/download_source.py"


rule download_alpaca_eval:
    output:
        data=f"{DOWNLOADS}/{ALPACA_EVAL_REFERENCE}",
        provenance=f"{DOWNLOADS}/alpaca_eval/provenance.json",
    log:
        "results/logs/download_alpaca_eval.log",
    benchmark:
        "results/benchmarks/download_alpaca_eval.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="alpaca_eval",
        commit=config["data"]["alpaca_eval"]["repo_revision"],
    script:
        "../scripts/download_source.py"


rule download_alpaca_eval_lc_assets:
    output:
        directory(f"{DOWNLOADS}/alpaca_eval_lc"),
    log:
        "results/logs/download_alpaca_eval_lc_assets.log",
    benchmark:
        "results/benchmarks/download_alpaca_eval_lc_assets.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="alpaca_eval_lc",
        revision=config["data"]["alpaca_eval"]["lc_assets_revision"],
    script:
        "../scripts/download_source.py"


rule download_mt_bench:
    output:
        questions=f"{DOWNLOADS}/mt_bench/question.jsonl",
        judge_prompts=f"{DOWNLOADS}/mt_bench/judge_prompts.jsonl",
        reference_answers=f"{DOWNLOADS}/mt_bench/reference_answer/gpt-4.jsonl",
        provenance=f"{DOWNLOADS}/mt_bench/provenance.json",
    log:
        "results/logs/download_mt_bench.log",
    benchmark:
        "results/benchmarks/download_mt_bench.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="mt_bench",
        commit=config["data"]["mt_bench"]["fastchat_revision"],
    script:
        "../scripts/download_source.py"


rule prepare_preference_data:
    input:
        train_source(),
    output:
        pairs=PAIRS,
        report="results/data/train_pairs.report.json",
    log:
        "results/logs/prepare_preference_data.log",
    benchmark:
        "results/benchmarks/prepare_preference_data.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        max_pairs=config["data"]["train"]["max_pairs"],
    script:
        "../scripts/prepare_preference_data.py"


rule prepare_alpaca_eval:
    input:
        source_file(ALPACA_EVAL_REFERENCE),
    output:
        ALPACA_EVAL_ITEMS,
    log:
        "results/logs/prepare_alpaca_eval.log",
    benchmark:
        "results/benchmarks/prepare_alpaca_eval.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        max_prompts=config["data"]["alpaca_eval"]["max_prompts"],
    script:
        "../scripts/prepare_alpaca_eval.py"


rule prepare_mt_bench:
    input:
        questions=source_file("mt_bench/question.jsonl"),
        judge_prompts=source_file("mt_bench/judge_prompts.jsonl"),
        reference_answers=source_file("mt_bench/reference_answer/gpt-4.jsonl"),
    output:
        questions=MT_BENCH_QUESTIONS,
        judge_prompts="results/data/mt_bench_judge_prompts.jsonl",
        reference_answers="results/data/mt_bench_reference_answers.jsonl",
    log:
        "results/logs/prepare_mt_bench.log",
    benchmark:
        "results/benchmarks/prepare_mt_bench.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        per_category=config["data"]["mt_bench"]["questions_per_category"],
    script:
        "../scripts/prepare_mt_bench.py"


rule download_authors_annotations:
    output:
        directory(f"{DOWNLOADS}/authors_alpaca_eval"),
    log:
        "results/logs/download_authors_annotations.log",
    benchmark:
        "results/benchmarks/download_authors_annotations.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="authors_alpaca_eval",
        commit=None,
    script:
        "../scripts/download_source.py"
