"""Pinned sources (download, or read from the mirror) and the checked inputs every stage reads."""


rule download_preference_data:
    output:
        f"results/downloads/{DATASET}/{{split}}.jsonl",
    log:
        f"results/logs/download_preference_data/{DATASET}-{{split}}.log",
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="ultrafeedback",
        spec=lambda wc: {**config["data"]["train"], "split": wc.split},
    script:
        "../scripts/download_source.py"


rule download_alpaca_eval:
    output:
        "results/downloads/alpaca_eval/alpaca_eval_v1_text_davinci_003_outputs.json",
    log:
        "results/logs/download_alpaca_eval.log",
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="alpaca_eval",
        spec=config["data"]["alpaca_eval"],
    script:
        "../scripts/download_source.py"


rule download_alpaca_eval_lc_assets:
    output:
        directory("results/downloads/alpaca_eval_lc"),
    log:
        "results/logs/download_alpaca_eval_lc_assets.log",
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="alpaca_eval_lc",
        spec=config["data"]["alpaca_eval"],
    script:
        "../scripts/download_source.py"


rule download_mt_bench:
    output:
        questions="results/downloads/mt_bench/question.jsonl",
        judge_prompts="results/downloads/mt_bench/judge_prompts.jsonl",
        reference_answers="results/downloads/mt_bench/reference_answer/gpt-4.jsonl",
    log:
        "results/logs/download_mt_bench.log",
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="mt_bench",
        spec=config["data"]["mt_bench"],
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
        source_file("alpaca_eval/alpaca_eval_v1_text_davinci_003_outputs.json"),
    output:
        ALPACA_EVAL_ITEMS,
    log:
        "results/logs/prepare_alpaca_eval.log",
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
        directory("results/downloads/authors_alpaca_eval"),
    log:
        "results/logs/download_authors_annotations.log",
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="authors_alpaca_eval",
        spec={"repo": "Oaynerad/11711---Alignment-on-small-LLM", "commit": AUTHORS_COMMIT},
    script:
        "../scripts/download_source.py"
