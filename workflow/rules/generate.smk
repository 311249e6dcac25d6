"""Answers to AlpacaEval and MT-Bench (both turns) with the chat template and the paper's system prompt,
by the engine `generation.engine` names (hf: our decoding loop in the torch stack; vllm: vLLM on
a GPU, in its own stack), each with a record of what generated it."""


rule generate_alpaca_eval:
    input:
        model=policy_dir,
        prompts=ALPACA_EVAL_ITEMS,
    output:
        answers="results/generations/alpaca_eval/{variant}/seed{seed}.json",
        engine=GENERATION_ENGINE_RECORD["alpaca_eval"],
    log:
        "results/logs/generate_alpaca_eval/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/generate_alpaca_eval/{variant}/seed{seed}.tsv"
    conda:
        f"../../envs/{GENERATION_STACK}.yaml"
    container:
        config["containers"][GENERATION_STACK]
    threads: config["generation"]["threads"]
    resources:
        **rule_resources(config, "generate_alpaca_eval"),
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
        answers="results/generations/mt_bench/{variant}/seed{seed}.jsonl",
        engine=GENERATION_ENGINE_RECORD["mt_bench"],
    log:
        "results/logs/generate_mt_bench/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/generate_mt_bench/{variant}/seed{seed}.tsv"
    conda:
        f"../../envs/{GENERATION_STACK}.yaml"
    container:
        config["containers"][GENERATION_STACK]
    threads: config["generation"]["threads"]
    resources:
        **rule_resources(config, "generate_mt_bench"),
    params:
        generation=generation_params(config, "mt_bench"),
        generator=generator_name,
    script:
        "../scripts/generate_mt_bench.py"
