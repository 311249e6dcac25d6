"""Answers to AlpacaEval and MT-Bench (both turns) with the chat template and the paper's system prompt."""


rule generate_alpaca_eval:
    input:
        model=policy_dir,
        prompts=ALPACA_EVAL_ITEMS,
    output:
        "results/generations/alpaca_eval/{variant}/seed{seed}.json",
    log:
        "results/logs/generate_alpaca_eval/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/generate_alpaca_eval/{variant}/seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["generation"]["threads"]
    resources:
        gpu=1,
    params:
        generation=generation_params(config, "alpaca_eval"),
        generator=generator_name,
    script:
        "../scripts/generate_alpaca_eval.py"


rule generate_mt_bench:
    input:
        model=policy_dir,
        questions=MT_BENCH_QUESTIONS,
    output:
        "results/generations/mt_bench/{variant}/seed{seed}.jsonl",
    log:
        "results/logs/generate_mt_bench/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/generate_mt_bench/{variant}/seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["generation"]["threads"]
    resources:
        gpu=1,
    params:
        generation=generation_params(config, "mt_bench"),
        generator=generator_name,
    script:
        "../scripts/generate_mt_bench.py"
