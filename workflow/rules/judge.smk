"""Judging. `{judge}` is `local` (probability-reading judge on a local model) or the id of an API
judge in prefopt.judging.registry, which names the model asked and the prompt protocol."""

#: The local judge's model: the policy's base model, or the teacher_models entry that
#: judges.local_model names (prepared by prepare_teacher_model).
LOCAL_JUDGE_MODEL = local_judge_model(config)
LOCAL_JUDGE_MODEL_DIR = (
    f"{TEACHER_MODELS_DIR}/{LOCAL_JUDGE_MODEL}" if external_local_judge_model(config) else MODEL_DIR
)


# Network-bound (OpenAI's API), no GPU: on a cluster they run on the submit host, where the
# internet is and no job time limit cuts 805 requests short; the cache resumes them anyway.
localrules:
    judge_alpaca_eval_api,
    judge_mt_bench_api,


rule judge_alpaca_eval_local:
    input:
        judge_model=LOCAL_JUDGE_MODEL_DIR,
        outputs="results/generations/alpaca_eval/{variant}/seed{seed}.json",
        reference=ALPACA_EVAL_ITEMS,
    output:
        f"results/judgments/alpaca_eval/{LOCAL_JUDGE}/{{variant}}/seed{{seed}}/annotations.json",
    log:
        f"results/logs/judge_alpaca_eval/{LOCAL_JUDGE}/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"results/benchmarks/judge_alpaca_eval/{LOCAL_JUDGE}/{{variant}}/seed{{seed}}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["judges"]["threads"]
    resources:
        **rule_resources(config, "judge_alpaca_eval_local"),
    params:
        max_length=config["judges"]["local_max_length"],
        cpu_dtype=config["judges"]["local_cpu_dtype"],
        judge_model_name=LOCAL_JUDGE_MODEL,
    script:
        "../scripts/judge_alpaca_eval_local.py"


rule judge_mt_bench_local:
    input:
        judge_model=LOCAL_JUDGE_MODEL_DIR,
        answers="results/generations/mt_bench/{variant}/seed{seed}.jsonl",
        questions=MT_BENCH_QUESTIONS,
        judge_prompts="results/data/mt_bench_judge_prompts.jsonl",
        reference_answers="results/data/mt_bench_reference_answers.jsonl",
    output:
        f"results/judgments/mt_bench/{LOCAL_JUDGE}/{{variant}}/seed{{seed}}.jsonl",
    log:
        f"results/logs/judge_mt_bench/{LOCAL_JUDGE}/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"results/benchmarks/judge_mt_bench/{LOCAL_JUDGE}/{{variant}}/seed{{seed}}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["judges"]["threads"]
    resources:
        **rule_resources(config, "judge_mt_bench_local"),
    params:
        max_length=config["judges"]["local_max_length"],
        cpu_dtype=config["judges"]["local_cpu_dtype"],
        judge_model_name=LOCAL_JUDGE_MODEL,
    script:
        "../scripts/judge_mt_bench_local.py"


rule judge_alpaca_eval_api:
    input:
        outputs="results/generations/alpaca_eval/{variant}/seed{seed}.json",
        reference=ALPACA_EVAL_ITEMS,
        annotator_config=lambda w: annotator_config(w.judge),
    output:
        "results/judgments/alpaca_eval/{judge}/{variant}/seed{seed}/annotations.json",
    log:
        "results/logs/judge_alpaca_eval/{judge}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/judge_alpaca_eval/{judge}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        judge=judge_pattern(api_judges("alpaca_eval")),
    conda:
        "../../envs/alpaca_eval.yaml"
    container:
        config["containers"]["alpaca_eval"]
    params:
        cache="results/judgments/alpaca_eval/{judge}/{variant}/seed{seed}/cache.jsonl",
        model=lambda w: judge_spec("alpaca_eval", w.judge).model,
        repeats=config["judges"]["repeats"],  # each item judged k times (judge noise)
    script:
        "../scripts/judge_alpaca_eval_api.py"


rule judge_mt_bench_api:
    input:
        answers="results/generations/mt_bench/{variant}/seed{seed}.jsonl",
        questions=MT_BENCH_QUESTIONS,
        judge_prompts="results/data/mt_bench_judge_prompts.jsonl",
        reference_answers="results/data/mt_bench_reference_answers.jsonl",
    output:
        "results/judgments/mt_bench/{judge}/{variant}/seed{seed}.jsonl",
    log:
        "results/logs/judge_mt_bench/{judge}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/judge_mt_bench/{judge}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        judge=judge_pattern(api_judges("mt_bench")),
    conda:
        "../../envs/alpaca_eval.yaml"
    container:
        config["containers"]["alpaca_eval"]
    params:
        cache="results/judgments/mt_bench/{judge}/{variant}/seed{seed}.cache.jsonl",
        model=lambda w: judge_spec("mt_bench", w.judge).model,
        repeats=config["judges"]["repeats"],  # each item judged k times (judge noise)
    script:
        "../scripts/judge_mt_bench_api.py"
