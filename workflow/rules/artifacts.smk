# Paper artifacts (tables, figures) rendered from results/scores/*.csv by the notebooks in
# notebooks/, executed with papermill 2.7.0 (layout: workflow/docs/results-layout.md; papermill's
# parameters cell: https://papermill.readthedocs.io/en/latest/usage-parameterize.html).
# Each notebook has one `parameters` cell whose keys are the input/output/params names below;
# the executed notebook and its HTML export are outputs, so they are tracked and kept.
# Self-contained: needs only `config["containers"]["notebooks"]` and (optionally) `config["judges"]`
# and `config["model"]`.

ART_SCORES = "results/scores"
ART_TABLES = "results/tables"
ART_FIGURES = "results/figures"
ART_NOTEBOOKS = "results/notebooks"
ART_PAPER = repo_path("workflow/resources/paper")
# "code <commit>, config <hash>" under every table and figure (prefopt.reporting.provenance; the full
# record: rule write_provenance). A param, not an input: a new commit or config restamps every
# artifact, while a changed score file still reruns only the artifacts that read it. (This file
# alone, as in its tests, has no stamp.)
ART_STAMP = globals().get("PROVENANCE_STAMP", "")
# Held-out preference scores per pair (rule aggregate_heldout), Table 1's held-out column; none
# when the run scores no held-out pairs (HELDOUT_VARIANTS, common.smk; this file alone: assumed).
ART_HELDOUT_PER_PAIR = (
    "results/scores/heldout_preference_per_pair.csv"
    if globals().get("HELDOUT_VARIANTS", True)
    else []
)
# the variant the held-out separation compares every other trained variant with
ART_HELDOUT_BASELINE = "dpo"
# the judge whose rows the notebooks use ("auto": the only one / the API judge)
ART_ALPACA_JUDGE = config.get("judges", {}).get("alpaca_eval", "auto")
ART_MT_BENCH_JUDGE = config.get("judges", {}).get("mt_bench", "auto")
ART_BOOTSTRAP = {"n_bootstrap": 2000, "bootstrap_seed": 20250811}
# the local judge's model, named in every artifact it judged: judges.local_model, else (null or
# absent) the policy's base model, model.slug
ART_LOCAL_JUDGE_MODEL = (config.get("judges") or {}).get("local_model") or (
    config.get("model") or {}
).get("slug", "")


# (helpers are lambdas: `snakemake --lint` objects to functions next to rules)
_table = lambda name: {ext: f"{ART_TABLES}/{name}.{ext}" for ext in ("csv", "md", "tex")}
_figure = lambda name: {ext: f"{ART_FIGURES}/{name}.{ext}" for ext in ("png", "pdf")}


# artifact id -> {notebook parameter: output path}
ARTIFACTS = {
    "table1_alpaca_eval": {f"out_{k}": p for k, p in _table("table1_alpaca_eval").items()},
    "fig1_alpaca_eval_bars": {f"out_{k}": p for k, p in _figure("fig1_alpaca_eval_bars").items()},
    "fig2_3_mt_bench_radar": {
        **{f"fig2_{k}": p for k, p in _figure("fig2_mt_bench_radar_existing").items()},
        **{f"fig3_{k}": p for k, p in _figure("fig3_mt_bench_radar_ours").items()},
        **{f"table_{k}": p for k, p in _table("mt_bench_per_category").items()},
    },
    "paper_vs_reproduction": {
        **{f"alpaca_{k}": p for k, p in _table("paper_vs_reproduction_alpaca_eval").items()},
        **{f"deltas_{k}": p for k, p in _table("paper_vs_reproduction_deltas").items()},
        **{f"mt_bench_out_{k}": p for k, p in _table("paper_vs_reproduction_mt_bench").items()},
    },
    "training_dynamics": {
        **{f"curves_{k}": p for k, p in _figure("training_dynamics").items()},
        **{f"buckets_{k}": p for k, p in _figure("active_fraction_by_length").items()},
        **{f"seed_{k}": p for k, p in _figure("seed_method_dynamics").items()},
        **{f"summary_{k}": p for k, p in _table("training_dynamics_summary").items()},
        **{f"buckets_{k}": p for k, p in _table("active_fraction_by_length").items()},
    },
    "length_analysis": {
        **{f"out_{k}": p for k, p in _figure("length_analysis").items()},
        **{f"table_{k}": p for k, p in _table("length_analysis").items()},
    },
    "paired_comparisons": {f"out_{k}": p for k, p in _table("paired_comparisons").items()},
    "heldout_preference": {
        **{f"table_{k}": p for k, p in _table("heldout_preference").items()},
        **{f"separation_{k}": p for k, p in _table("heldout_separation").items()},
        **{f"fig_{k}": p for k, p in _figure("heldout_preference").items()},
    },
}
# the artifacts this run renders: the held-out one only when held-out pairs are scored
ARTIFACTS_RENDERED = [a for a in ARTIFACTS if a != "heldout_preference" or ART_HELDOUT_PER_PAIR]

# everything `rule all` should depend on: artifacts + executed notebooks + HTML exports
ARTIFACT_OUTPUTS = [p for a in ARTIFACTS_RENDERED for p in ARTIFACTS[a].values()] + [
    f"{ART_NOTEBOOKS}/{a}.{ext}" for a in ARTIFACTS_RENDERED for ext in ("ipynb", "html")
]


# Notebooks render on the submit host on a cluster (light, CPU-only).
localrules:
    render_table1_alpaca_eval,
    render_fig1_alpaca_eval_bars,
    render_fig2_3_mt_bench_radar,
    render_paper_vs_reproduction,
    render_training_dynamics,
    render_length_analysis,
    render_paired_comparisons,
    render_heldout_preference,


# Where each artifact sits in `snakemake --report`, whose landing page
# (workflow/report/workflow.rst) links to its items: category, subcategory. The report lists
# categories in name order, hence the numbers.
ART_REPORT = {
    "table1_alpaca_eval": ("1. Comparison with the paper", "Table 1 (AlpacaEval)"),
    "paper_vs_reproduction": ("1. Comparison with the paper", "Paper vs reproduction"),
    "fig1_alpaca_eval_bars": ("1. Comparison with the paper", "Figure 1 (AlpacaEval)"),
    "fig2_3_mt_bench_radar": ("1. Comparison with the paper", "Figures 2-3 (MT-Bench)"),
    "paired_comparisons": ("4. Claims", "Paired comparisons"),
    "length_analysis": ("4. Claims", "Length"),
    "training_dynamics": ("4. Claims", "Training dynamics"),
    "heldout_preference": ("4. Claims", "Held-out preference"),
}
ART_REPORT_NOTEBOOKS = "5. Executed notebooks"

# The artifact's outputs wrapped for `snakemake --report`: each table once, as its Markdown (the
# footnotes and the stamp; CSV and LaTeX stay in results/tables/), each figure once, as its PNG
# (the PDF stays in results/figures/), and the executed notebook's HTML export.
_report_item = lambda artifact, path: report(
    path,
    category=ART_REPORT[artifact][0],
    subcategory=ART_REPORT[artifact][1],
    labels={"item": f"{'table' if path.endswith('.md') else 'figure'}: {path}"},
    caption=f"../report/{artifact}.rst",
)
_report_notebook = lambda artifact: report(
    f"{ART_NOTEBOOKS}/{artifact}.html",
    category=ART_REPORT_NOTEBOOKS,
    labels={"item": f"notebook: notebooks/{artifact}.ipynb"},
    caption="../report/notebook.rst",
)
_reported = lambda artifact: {
    key: _report_item(artifact, path) if path.endswith((".md", ".png")) else path
    for key, path in ARTIFACTS[artifact].items()
} | {"html": _report_notebook(artifact)}


# papermill with `-p name value` for each input/output/param, its injected cell's id made
# stable (prefopt.reporting.notebook_ids), then an HTML export. Kernel
# start-up gets 10 min, not papermill's 60 s: on a loaded submit host (notebooks render there,
# next to running jobs) a 60 s start failed in CI.
_render_cmd = lambda artifact, inputs, params=(): (
    "papermill {input.notebook:q} {output.notebook:q} -k python3 --start-timeout 600 "
    + " ".join(
        [f"-p {k} {{input.{k}:q}}" for k in inputs]
        + [f"-p {k} {{output.{k}:q}}" for k in ARTIFACTS[artifact]]
        + [f"-p {k} {{params.{k}:q}}" for k in params]
    )
    + " > {log:q} 2>&1"
    + " && python -m prefopt.reporting.notebook_ids {output.notebook:q}"  # papermill's random cell id
    + f" && jupyter nbconvert --to html {{output.notebook:q}} --output-dir {ART_NOTEBOOKS}"
    + " >> {log:q} 2>&1"
)


rule render_table1_alpaca_eval:
    input:
        notebook=repo_path("notebooks/table1_alpaca_eval.ipynb"),
        alpaca_eval_csv=f"{ART_SCORES}/alpaca_eval.csv",
        per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
        variants_csv=f"{ART_SCORES}/variants.csv",
        heldout_per_pair_csv=ART_HELDOUT_PER_PAIR,
    output:
        **_reported("table1_alpaca_eval"),
        notebook=f"{ART_NOTEBOOKS}/table1_alpaca_eval.ipynb",
    log:
        "results/logs/render_table1_alpaca_eval.log",
    benchmark:
        "results/benchmarks/render_table1_alpaca_eval.tsv"
    conda:
        "../../envs/notebooks.yaml"
    container:
        config["containers"]["notebooks"]
    params:
        **ART_BOOTSTRAP,
        judge=ART_ALPACA_JUDGE,
        local_judge_model=ART_LOCAL_JUDGE_MODEL,
        provenance_stamp=ART_STAMP,
    shell:
        _render_cmd(
            "table1_alpaca_eval",
            [
                "alpaca_eval_csv",
                "per_prompt_csv",
                "variants_csv",
                "heldout_per_pair_csv",
            ],
            ["judge", "local_judge_model", "provenance_stamp", "n_bootstrap", "bootstrap_seed"],
        )


rule render_fig1_alpaca_eval_bars:
    input:
        notebook=repo_path("notebooks/fig1_alpaca_eval_bars.ipynb"),
        alpaca_eval_csv=f"{ART_SCORES}/alpaca_eval.csv",
        per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
        variants_csv=f"{ART_SCORES}/variants.csv",
    output:
        **_reported("fig1_alpaca_eval_bars"),
        notebook=f"{ART_NOTEBOOKS}/fig1_alpaca_eval_bars.ipynb",
    log:
        "results/logs/render_fig1_alpaca_eval_bars.log",
    benchmark:
        "results/benchmarks/render_fig1_alpaca_eval_bars.tsv"
    conda:
        "../../envs/notebooks.yaml"
    container:
        config["containers"]["notebooks"]
    params:
        **ART_BOOTSTRAP,
        judge=ART_ALPACA_JUDGE,
        local_judge_model=ART_LOCAL_JUDGE_MODEL,
        provenance_stamp=ART_STAMP,
    shell:
        _render_cmd(
            "fig1_alpaca_eval_bars",
            ["alpaca_eval_csv", "per_prompt_csv", "variants_csv"],
            ["judge", "local_judge_model", "provenance_stamp", "n_bootstrap", "bootstrap_seed"],
        )


rule render_fig2_3_mt_bench_radar:
    input:
        notebook=repo_path("notebooks/fig2_3_mt_bench_radar.ipynb"),
        mt_bench_csv=f"{ART_SCORES}/mt_bench.csv",
        variants_csv=f"{ART_SCORES}/variants.csv",
    output:
        **_reported("fig2_3_mt_bench_radar"),
        notebook=f"{ART_NOTEBOOKS}/fig2_3_mt_bench_radar.ipynb",
    log:
        "results/logs/render_fig2_3_mt_bench_radar.log",
    benchmark:
        "results/benchmarks/render_fig2_3_mt_bench_radar.tsv"
    conda:
        "../../envs/notebooks.yaml"
    container:
        config["containers"]["notebooks"]
    params:
        judge=ART_MT_BENCH_JUDGE,
        local_judge_model=ART_LOCAL_JUDGE_MODEL,
        provenance_stamp=ART_STAMP,
    shell:
        _render_cmd(
            "fig2_3_mt_bench_radar",
            ["mt_bench_csv", "variants_csv"],
            ["judge", "local_judge_model", "provenance_stamp"],
        )


rule render_paper_vs_reproduction:
    input:
        notebook=repo_path("notebooks/paper_vs_reproduction.ipynb"),
        alpaca_eval_csv=f"{ART_SCORES}/alpaca_eval.csv",
        per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
        mt_bench_csv=f"{ART_SCORES}/mt_bench.csv",
        variants_csv=f"{ART_SCORES}/variants.csv",
        paper_table1_csv=f"{ART_PAPER}/table1.csv",
        paper_leaderboards_csv=f"{ART_PAPER}/leaderboards.csv",
        paper_mt_bench_csv=f"{ART_PAPER}/mt_bench_figure_estimates.csv",
        # the authors' outputs judged again by this run's judge (authors_outputs.smk)
        authors_outputs_csv=f"{ART_SCORES}/authors_alpaca_eval.csv",
    output:
        **_reported("paper_vs_reproduction"),
        notebook=f"{ART_NOTEBOOKS}/paper_vs_reproduction.ipynb",
    log:
        "results/logs/render_paper_vs_reproduction.log",
    benchmark:
        "results/benchmarks/render_paper_vs_reproduction.tsv"
    conda:
        "../../envs/notebooks.yaml"
    container:
        config["containers"]["notebooks"]
    params:
        **ART_BOOTSTRAP,
        alpaca_eval_judge=ART_ALPACA_JUDGE,
        mt_bench_judge=ART_MT_BENCH_JUDGE,
        local_judge_model=ART_LOCAL_JUDGE_MODEL,
        provenance_stamp=ART_STAMP,
    shell:
        _render_cmd(
            "paper_vs_reproduction",
            [
                "alpaca_eval_csv",
                "per_prompt_csv",
                "mt_bench_csv",
                "variants_csv",
                "paper_table1_csv",
                "paper_leaderboards_csv",
                "paper_mt_bench_csv",
                "authors_outputs_csv",
            ],
            [
                "alpaca_eval_judge",
                "mt_bench_judge",
                "local_judge_model",
                "provenance_stamp",
                "n_bootstrap",
                "bootstrap_seed",
            ],
        )


rule render_training_dynamics:
    input:
        notebook=repo_path("notebooks/training_dynamics.ipynb"),
        diagnostics_csv=f"{ART_SCORES}/training_diagnostics.csv",
        variants_csv=f"{ART_SCORES}/variants.csv",
    output:
        **_reported("training_dynamics"),
        notebook=f"{ART_NOTEBOOKS}/training_dynamics.ipynb",
    log:
        "results/logs/render_training_dynamics.log",
    benchmark:
        "results/benchmarks/render_training_dynamics.tsv"
    conda:
        "../../envs/notebooks.yaml"
    container:
        config["containers"]["notebooks"]
    params:
        provenance_stamp=ART_STAMP,
    shell:
        _render_cmd("training_dynamics", ["diagnostics_csv", "variants_csv"], ["provenance_stamp"])


rule render_length_analysis:
    input:
        notebook=repo_path("notebooks/length_analysis.ipynb"),
        alpaca_eval_csv=f"{ART_SCORES}/alpaca_eval.csv",
        per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
        variants_csv=f"{ART_SCORES}/variants.csv",
    output:
        **_reported("length_analysis"),
        notebook=f"{ART_NOTEBOOKS}/length_analysis.ipynb",
    log:
        "results/logs/render_length_analysis.log",
    benchmark:
        "results/benchmarks/render_length_analysis.tsv"
    conda:
        "../../envs/notebooks.yaml"
    container:
        config["containers"]["notebooks"]
    params:
        judge=ART_ALPACA_JUDGE,
        local_judge_model=ART_LOCAL_JUDGE_MODEL,
        provenance_stamp=ART_STAMP,
    shell:
        _render_cmd(
            "length_analysis",
            ["alpaca_eval_csv", "per_prompt_csv", "variants_csv"],
            ["judge", "local_judge_model", "provenance_stamp"],
        )


rule render_paired_comparisons:
    input:
        notebook=repo_path("notebooks/paired_comparisons.ipynb"),
        per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
        variants_csv=f"{ART_SCORES}/variants.csv",
    output:
        **_reported("paired_comparisons"),
        notebook=f"{ART_NOTEBOOKS}/paired_comparisons.ipynb",
    log:
        "results/logs/render_paired_comparisons.log",
    benchmark:
        "results/benchmarks/render_paired_comparisons.tsv"
    conda:
        "../../envs/notebooks.yaml"
    container:
        config["containers"]["notebooks"]
    params:
        **ART_BOOTSTRAP,
        judge=ART_ALPACA_JUDGE,
        local_judge_model=ART_LOCAL_JUDGE_MODEL,
        provenance_stamp=ART_STAMP,
        # the untrained model every trained variant is compared with: the variant with
        # `loss: null` in config `variants:` (this file alone: "base")
        baseline_variant=next(
            (v for v, s in (config.get("variants") or {}).items() if s.get("loss") is None),
            "base",
        ),
        # the pairs the paper argues about (prefopt.reporting.artifacts.PAPER_PAIRS)
        paper_pairs="apo_hinge_zero:apo_zero,dpo_hinge:dpo",
    shell:
        _render_cmd(
            "paired_comparisons",
            ["per_prompt_csv", "variants_csv"],
            [
                "judge",
                "local_judge_model",
                "provenance_stamp",
                "n_bootstrap",
                "bootstrap_seed",
                "baseline_variant",
                "paper_pairs",
            ],
        )


# Held-out accuracy, margin and log-prob shifts per variant x seed, and each trained variant's
# separation from a baseline over seeds (prefopt.evaluation.heldout.separation).
rule render_heldout_preference:
    input:
        notebook=repo_path("notebooks/heldout_preference.ipynb"),
        per_pair_csv=ART_HELDOUT_PER_PAIR,
        variants_csv=f"{ART_SCORES}/variants.csv",
    output:
        **_reported("heldout_preference"),
        notebook=f"{ART_NOTEBOOKS}/heldout_preference.ipynb",
    log:
        "results/logs/render_heldout_preference.log",
    benchmark:
        "results/benchmarks/render_heldout_preference.tsv"
    conda:
        "../../envs/notebooks.yaml"
    container:
        config["containers"]["notebooks"]
    params:
        **ART_BOOTSTRAP,
        heldout=(config.get("data") or {}).get("heldout", {}).get("name", ""),
        baseline=ART_HELDOUT_BASELINE,
        provenance_stamp=ART_STAMP,
    shell:
        _render_cmd(
            "heldout_preference",
            ["per_pair_csv", "variants_csv"],
            ["heldout", "baseline", "provenance_stamp", "n_bootstrap", "bootstrap_seed"],
        )
