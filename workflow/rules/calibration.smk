"""Judge calibration: the run's AlpacaEval judge re-judges pairs whose verdicts the retired paper
judge (alpaca_eval_gpt4_turbo_fn, gpt-4-1106-preview) left in alpaca_eval's published annotation
files, in both orders, and is scored against those verdicts (prefopt.judging.calibration); the
run's MT-Bench judge grades answers that GPT-4 graded in FastChat's published gpt-4_single.jsonl
and is scored against those grades (prefopt.judging.calibration_mt_bench). One table of both."""

from prefopt.data.download import MT_BENCH_SPACE_REPO
from prefopt.judging import calibration_mt_bench as calibration_mt
from prefopt.judging.calibration import LAYOUT_DIR as CALIBRATION_LAYOUT_DIR
from prefopt.judging.calibration import SOURCES as CALIBRATION_KNOWN_SOURCES
from prefopt.judging.calibration import source_path as calibration_source_path
from prefopt.judging.registry import api_judges, judge_spec

CALIBRATION = config["calibration"]["alpaca_eval"]
#: The retired judge's annotation files, in the download layout: from the mirror (the shipped
#: sample in workflow/resources/data) or downloaded at alpaca_eval's pinned commit.
CALIBRATION_SOURCE_FILES = [source_file(calibration_source_path(s)) for s in CALIBRATION["sources"]]
_calibration_missing = [
    f for f in CALIBRATION_SOURCE_FILES if config["mirror_dir"] and not Path(f).is_file()
]
if _calibration_missing:
    print(
        f"note: no judge calibration in this run: the mirror {config['mirror_dir']} lacks "
        f"{', '.join(_calibration_missing)} (calibration.alpaca_eval.sources); copy them from a "
        "download (mirror_dir: null) or from workflow/resources/data",
        file=sys.stderr,
    )
CALIBRATION_AE_RUNS = bool(CALIBRATION["sources"]) and not _calibration_missing
CALIBRATION_PAIRS = "results/data/calibration_alpaca_eval.json"
CALIBRATION_JUDGMENTS = "results/judgments/calibration/alpaca_eval/{judge}/annotations.json"

CALIBRATION_MT = config["calibration"]["mt_bench"]
CALIBRATION_MT_MODELS = list(CALIBRATION_MT["models"])
#: {path under mt_bench_calibration/: path in FastChat's Space} of GPT-4's judgments and of the
#: configured models' answers, and where the run reads them (the mirror, or the download).
CALIBRATION_MT_LAYOUT = calibration_mt.layout_files(CALIBRATION_MT_MODELS)
CALIBRATION_MT_JUDGMENT_FILE = source_file(calibration_mt.source_path(calibration_mt.JUDGMENT_FILE))
CALIBRATION_MT_ANSWER_FILES = [
    source_file(calibration_mt.answer_path(m)) for m in CALIBRATION_MT_MODELS
]
_calibration_mt_missing = [
    f
    for f in [CALIBRATION_MT_JUDGMENT_FILE, *CALIBRATION_MT_ANSWER_FILES]
    if CALIBRATION_MT_MODELS and config["mirror_dir"] and not Path(f).is_file()
]
if _calibration_mt_missing:
    print(
        f"note: no MT-Bench judge calibration in this run: the mirror {config['mirror_dir']} lacks "
        f"{', '.join(_calibration_mt_missing)} (calibration.mt_bench.models); copy "
        f"{calibration_mt.LAYOUT_DIR}/ from a download (mirror_dir: null), or set "
        "calibration.mt_bench.models: []",
        file=sys.stderr,
    )
CALIBRATION_MT_RUNS = bool(CALIBRATION_MT_MODELS) and not _calibration_mt_missing
CALIBRATION_MT_ITEMS = "results/data/calibration_mt_bench.json"
CALIBRATION_MT_REPORT = "results/data/calibration_mt_bench.report.json"
CALIBRATION_MT_JUDGMENTS = "results/judgments/calibration/mt_bench/{judge}/judgments.jsonl"

CALIBRATION_RUNS = CALIBRATION_AE_RUNS or CALIBRATION_MT_RUNS
CALIBRATION_ARTIFACTS = {
    "table": "results/tables/judge_calibration.csv",
    "markdown": "results/tables/judge_calibration.md",
    "figure": "results/figures/judge_calibration.png",
    "figure_pdf": "results/figures/judge_calibration.pdf",
}
#: The table and figure (rule all), when the run has sources to calibrate on.
CALIBRATION_OUTPUTS = list(CALIBRATION_ARTIFACTS.values()) if CALIBRATION_RUNS else []


# Light, or network-bound (the downloads, the API judges): on a cluster, on the submit host.
localrules:
    download_alpaca_eval_calibration,
    prepare_calibration_pairs,
    judge_calibration_alpaca_eval_api,
    download_mt_bench_calibration,
    prepare_calibration_mt_bench,
    judge_calibration_mt_bench_api,
    judge_calibration,


# Every file of the source (GITHUB_SOURCES in prefopt.data.download), whichever the run reads.
rule download_alpaca_eval_calibration:
    output:
        data=[f"{DOWNLOADS}/{calibration_source_path(s)}" for s in CALIBRATION_KNOWN_SOURCES],
        provenance=f"{DOWNLOADS}/{CALIBRATION_LAYOUT_DIR}/provenance.json",
    log:
        "results/logs/download_alpaca_eval_calibration.log",
    benchmark:
        "results/benchmarks/download_alpaca_eval_calibration.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="alpaca_eval_calibration",
        commit=config["data"]["alpaca_eval"]["repo_revision"],
    script:
        "../scripts/download_source.py"


rule prepare_calibration_pairs:
    input:
        sources=CALIBRATION_SOURCE_FILES,
    output:
        pairs=CALIBRATION_PAIRS,
        report="results/data/calibration_alpaca_eval.report.json",
    log:
        "results/logs/prepare_calibration_pairs.log",
    benchmark:
        "results/benchmarks/prepare_calibration_pairs.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        sources=CALIBRATION["sources"],
        max_pairs=CALIBRATION["max_pairs"],
    script:
        "../scripts/prepare_calibration_pairs.py"


# The local judge always reads both orders (prefopt.judging.local): one pass gives the verdict
# and the position check.
rule judge_calibration_alpaca_eval_local:
    input:
        judge_model=LOCAL_JUDGE_MODEL_DIR,
        pairs=CALIBRATION_PAIRS,
    output:
        CALIBRATION_JUDGMENTS.format(judge=LOCAL_JUDGE),
    log:
        f"results/logs/judge_calibration_alpaca_eval/{LOCAL_JUDGE}.log",
    benchmark:
        f"results/benchmarks/judge_calibration_alpaca_eval/{LOCAL_JUDGE}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["judges"]["threads"]
    resources:
        **rule_resources(config, "judge_calibration_alpaca_eval_local"),
    params:
        max_length=config["judges"]["local_max_length"],
        cpu_dtype=config["judges"]["local_cpu_dtype"],
        judge_model_name=LOCAL_JUDGE_MODEL,
    script:
        "../scripts/judge_calibration_alpaca_eval_local.py"


rule judge_calibration_alpaca_eval_api:
    input:
        pairs=CALIBRATION_PAIRS,
        annotator_config=lambda wc: annotator_config(wc.judge),
    output:
        CALIBRATION_JUDGMENTS,
    log:
        "results/logs/judge_calibration_alpaca_eval/{judge}.log",
    benchmark:
        "results/benchmarks/judge_calibration_alpaca_eval/{judge}.tsv"
    wildcard_constraints:
        judge=judge_pattern(api_judges("alpaca_eval")),
    conda:
        "../../envs/alpaca_eval.yaml"
    container:
        config["containers"]["alpaca_eval"]
    params:
        cache="results/judgments/calibration/alpaca_eval/{judge}/cache.jsonl",
        model=lambda wc: judge_spec("alpaca_eval", wc.judge).model,
        swap=CALIBRATION["swap"],
    script:
        "../scripts/judge_calibration_alpaca_eval_api.py"


# The files of the configured models (and GPT-4's judgments) from FastChat's Space, at
# calibration.mt_bench.space_revision resolved to a commit; the commit and each file's sha256 are
# recorded in the provenance (prefopt.data.download.download_hf_space_files).
rule download_mt_bench_calibration:
    output:
        data=[f"{DOWNLOADS}/{calibration_mt.source_path(rel)}" for rel in CALIBRATION_MT_LAYOUT],
        provenance=f"{DOWNLOADS}/{calibration_mt.LAYOUT_DIR}/provenance.json",
    log:
        "results/logs/download_mt_bench_calibration.log",
    benchmark:
        "results/benchmarks/download_mt_bench_calibration.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="mt_bench_calibration",
        repo_id=MT_BENCH_SPACE_REPO,
        revision=CALIBRATION_MT["space_revision"],
        files=CALIBRATION_MT_LAYOUT,
    script:
        "../scripts/download_calibration_mt_bench.py"


rule prepare_calibration_mt_bench:
    input:
        questions=source_file("mt_bench/question.jsonl"),
        judgments=CALIBRATION_MT_JUDGMENT_FILE,
        answers=CALIBRATION_MT_ANSWER_FILES,
    output:
        calibration_items=CALIBRATION_MT_ITEMS,
        report=CALIBRATION_MT_REPORT,
    log:
        "results/logs/prepare_calibration_mt_bench.log",
    benchmark:
        "results/benchmarks/prepare_calibration_mt_bench.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        models=CALIBRATION_MT_MODELS,
        max_questions=CALIBRATION_MT["max_questions"],
    script:
        "../scripts/prepare_calibration_mt_bench.py"


rule judge_calibration_mt_bench_local:
    input:
        judge_model=LOCAL_JUDGE_MODEL_DIR,
        calibration_items=CALIBRATION_MT_ITEMS,
        judge_prompts="results/data/mt_bench_judge_prompts.jsonl",
        reference_answers="results/data/mt_bench_reference_answers.jsonl",
    output:
        CALIBRATION_MT_JUDGMENTS.format(judge=LOCAL_JUDGE),
    log:
        f"results/logs/judge_calibration_mt_bench/{LOCAL_JUDGE}.log",
    benchmark:
        f"results/benchmarks/judge_calibration_mt_bench/{LOCAL_JUDGE}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["judges"]["threads"]
    resources:
        **rule_resources(config, "judge_calibration_mt_bench_local"),
    params:
        max_length=config["judges"]["local_max_length"],
        cpu_dtype=config["judges"]["local_cpu_dtype"],
        judge_model_name=LOCAL_JUDGE_MODEL,
    script:
        "../scripts/judge_calibration_mt_bench_local.py"


rule judge_calibration_mt_bench_api:
    input:
        calibration_items=CALIBRATION_MT_ITEMS,
        judge_prompts="results/data/mt_bench_judge_prompts.jsonl",
        reference_answers="results/data/mt_bench_reference_answers.jsonl",
    output:
        CALIBRATION_MT_JUDGMENTS,
    log:
        "results/logs/judge_calibration_mt_bench/{judge}.log",
    benchmark:
        "results/benchmarks/judge_calibration_mt_bench/{judge}.tsv"
    wildcard_constraints:
        judge=judge_pattern(api_judges("mt_bench")),
    conda:
        "../../envs/alpaca_eval.yaml"
    container:
        config["containers"]["alpaca_eval"]
    params:
        cache="results/judgments/calibration/mt_bench/{judge}/cache.jsonl",
        model=lambda wc: judge_spec("mt_bench", wc.judge).model,
    script:
        "../scripts/judge_calibration_mt_bench_api.py"


# Both benchmarks' calibrations in one table and figure; a benchmark without one gives no input.
rule judge_calibration:
    input:
        judgments=[CALIBRATION_JUDGMENTS.format(judge=JUDGE_AE)] * CALIBRATION_AE_RUNS,
        report=["results/data/calibration_alpaca_eval.report.json"] * CALIBRATION_AE_RUNS,
        mt_bench_judgments=[CALIBRATION_MT_JUDGMENTS.format(judge=JUDGE_MT)] * CALIBRATION_MT_RUNS,
        mt_bench_items=[CALIBRATION_MT_ITEMS] * CALIBRATION_MT_RUNS,
        mt_bench_report=[CALIBRATION_MT_REPORT] * CALIBRATION_MT_RUNS,
        # the paper authors' pairs judged by the same judge (authors_outputs.smk), when the run
        # has their files: the retired judge's verdicts on the paper's very pairs
        authors_judgments=lambda wc: (
            expand(AUTHORS_JUDGMENTS, judge=JUDGE_AE, paper_row=AUTHORS_JUDGED)
            if CALIBRATION_AE_RUNS
            else []
        ),
    output:
        # in the report once: the Markdown table (the figure draws the same statistics)
        **{
            key: (
                report(
                    path,
                    category="2. Judge calibration",
                    labels={"item": f"table: {path}"},
                    caption="../report/judge_calibration.rst",
                )
                if key == "markdown"
                else path
            )
            for key, path in CALIBRATION_ARTIFACTS.items()
        },
    log:
        "results/logs/judge_calibration.log",
    benchmark:
        "results/benchmarks/judge_calibration.tsv"
    conda:
        "../../envs/notebooks.yaml"
    container:
        config["containers"]["notebooks"]
    params:
        judge=JUDGE_AE,
        mt_bench_judge=JUDGE_MT,
        mt_bench_models=CALIBRATION_MT_MODELS,
        local_judge_model=ART_LOCAL_JUDGE_MODEL,
        swap=CALIBRATION["swap"],
        sources=CALIBRATION["sources"],
        provenance_stamp=PROVENANCE_STAMP,
    script:
        "../scripts/judge_calibration.py"
