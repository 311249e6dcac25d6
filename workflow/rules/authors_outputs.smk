"""The paper authors' published AlpacaEval outputs judged again by this run's AlpacaEval judge
(prefopt.judging.authors_outputs), so that Table 1 compares like with like: the paper's numbers
(retired judge) | the paper's outputs under this run's judge | this run's outputs under it."""

import csv

AUTHORS_OUTPUTS = config["authors_outputs"]
AUTHORS_DIR = optional_source("authors_alpaca_eval")
PAPER_TABLE1 = repo_path("workflow/resources/paper/table1.csv")
with open(PAPER_TABLE1, newline="", encoding="utf-8") as _f:
    _TABLE1_FOLDERS = {
        r["variant"]: r["authors_folder"]
        for r in csv.DictReader(_f)
        if not r["authors_folder"].endswith(".csv")
    }
#: The Table 1 rows (paper variant ids) whose outputs are judged again: those the authors
#: published annotations for, narrowed by authors_outputs.variants; none without their files.
AUTHORS_JUDGED = (
    [v for v in _TABLE1_FOLDERS if v in (AUTHORS_OUTPUTS["variants"] or _TABLE1_FOLDERS)]
    if AUTHORS_DIR
    else []
)
AUTHORS_PAIRS = "results/data/authors_outputs/{paper_row}.json"
AUTHORS_JUDGMENTS = "results/judgments/authors_outputs/{judge}/{paper_row}.json"
AUTHORS_SCORES = "results/scores/authors_alpaca_eval.csv"


# Light, or network-bound (the API judge): on a cluster, on the submit host.
localrules:
    prepare_authors_pairs,
    judge_authors_outputs_api,
    score_authors_outputs,


rule prepare_authors_pairs:
    input:
        authors_dir=AUTHORS_DIR,
    output:
        AUTHORS_PAIRS,
    log:
        "results/logs/prepare_authors_pairs/{paper_row}.log",
    benchmark:
        "results/benchmarks/prepare_authors_pairs/{paper_row}.tsv"
    wildcard_constraints:
        paper_row="|".join(_TABLE1_FOLDERS),
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        folder=lambda wc: _TABLE1_FOLDERS[wc.paper_row],
        max_items=AUTHORS_OUTPUTS["max_items"],
    script:
        "../scripts/prepare_authors_pairs.py"


# The same wiring as the judge calibration's: the local judge reads both orders; an API judge
# asks each pair as alpaca_eval asked it (and, with authors_outputs.swap, exchanged as well).
rule judge_authors_outputs_local:
    input:
        judge_model=LOCAL_JUDGE_MODEL_DIR,
        pairs=AUTHORS_PAIRS,
    output:
        AUTHORS_JUDGMENTS.replace("{judge}", LOCAL_JUDGE),
    log:
        f"results/logs/judge_authors_outputs/{LOCAL_JUDGE}/{{paper_row}}.log",
    benchmark:
        f"results/benchmarks/judge_authors_outputs/{LOCAL_JUDGE}/{{paper_row}}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["judges"]["threads"]
    resources:
        **rule_resources(config, "judge_authors_outputs_local"),
    params:
        max_length=config["judges"]["local_max_length"],
        cpu_dtype=config["judges"]["local_cpu_dtype"],
        judge_model_name=LOCAL_JUDGE_MODEL,
    script:
        "../scripts/judge_calibration_alpaca_eval_local.py"


rule judge_authors_outputs_api:
    input:
        pairs=AUTHORS_PAIRS,
        annotator_config=lambda wc: annotator_config(wc.judge),
    output:
        AUTHORS_JUDGMENTS,
    log:
        "results/logs/judge_authors_outputs/{judge}/{paper_row}.log",
    benchmark:
        "results/benchmarks/judge_authors_outputs/{judge}/{paper_row}.tsv"
    wildcard_constraints:
        judge=judge_pattern(api_judges("alpaca_eval")),
    conda:
        "../../envs/alpaca_eval.yaml"
    container:
        config["containers"]["alpaca_eval"]
    params:
        cache="results/judgments/authors_outputs/{judge}/{paper_row}.cache.jsonl",
        model=lambda wc: judge_spec("alpaca_eval", wc.judge).model,
        swap=AUTHORS_OUTPUTS["swap"],
    script:
        "../scripts/judge_calibration_alpaca_eval_api.py"


rule score_authors_outputs:
    input:
        judgments=expand(AUTHORS_JUDGMENTS, judge=JUDGE_AE, paper_row=AUTHORS_JUDGED),
        authors_dir=AUTHORS_DIR,
        table1=PAPER_TABLE1,
        reference=ALPACA_EVAL_ITEMS,
        lc_assets=optional_source("alpaca_eval_lc"),
    output:
        AUTHORS_SCORES,
    log:
        "results/logs/score_authors_outputs.log",
    benchmark:
        "results/benchmarks/score_authors_outputs.tsv"
    conda:
        "../../envs/alpaca_eval.yaml"
    container:
        config["containers"]["alpaca_eval"]
    params:
        judge=JUDGE_AE,
        local_judge_model=ART_LOCAL_JUDGE_MODEL,
        judged=AUTHORS_JUDGED,
        lc_assets_dir=lambda wc, input: input.lc_assets or source_file("alpaca_eval_lc"),
        provenance_stamp=PROVENANCE_STAMP,
    script:
        "../scripts/score_authors_outputs.py"
