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
# a file this repository ships, as a path from the working directory (repo_path, common.smk; this
# file alone, as in its tests: the path as written)
ART_REPO_PATH = globals().get("repo_path", lambda relpath: relpath)
ART_PAPER = ART_REPO_PATH("workflow/resources/paper")
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
# the untrained model every trained variant is compared with: the variant with `loss: null` in
# config `variants:` (this file alone: "base")
ART_BASELINE_VARIANT = next(
    (v for v, s in (config.get("variants") or {}).items() if s.get("loss") is None), "base"
)
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
    "paper_claims": {f"out_{k}": p for k, p in _table("paper_claims").items()},
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


# Where each artifact sits in `snakemake --report`, whose landing page
# (workflow/report/workflow.rst) links to its items: category, subcategory. The report lists
# categories in name order, hence the numbers.
ART_REPORT = {
    "table1_alpaca_eval": ("1. Comparison with the paper", "Table 1 (AlpacaEval)"),
    "paper_vs_reproduction": ("1. Comparison with the paper", "Paper vs reproduction"),
    "fig1_alpaca_eval_bars": ("1. Comparison with the paper", "Figure 1 (AlpacaEval)"),
    "fig2_3_mt_bench_radar": ("1. Comparison with the paper", "Figures 2-3 (MT-Bench)"),
    "paper_claims": ("4. Claims", "The paper's claims: verdicts"),
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

# The render rules come from this table, one record per artifact; the loop below makes them. A
# record holds what differs between notebooks: `inputs` (notebook parameter -> the file it reads)
# and `params` (notebook parameter -> value); the outputs are the artifact's ARTIFACTS entry.
# papermill gets `-p name value` for each, in the order written: inputs, outputs, params.
# To add an artifact: its outputs in ARTIFACTS, its record here, its place in ART_REPORT, the
# notebook notebooks/<artifact>.ipynb (its `parameters` cell has these names) and the caption
# workflow/report/<artifact>.rst. That makes rule render_<artifact>; nothing else is copied.
ART_RENDER = {
    "table1_alpaca_eval": {
        "inputs": dict(
            alpaca_eval_csv=f"{ART_SCORES}/alpaca_eval.csv",
            per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
            variants_csv=f"{ART_SCORES}/variants.csv",
            heldout_per_pair_csv=ART_HELDOUT_PER_PAIR,
        ),
        "params": dict(
            judge=ART_ALPACA_JUDGE,
            local_judge_model=ART_LOCAL_JUDGE_MODEL,
            provenance_stamp=ART_STAMP,
            **ART_BOOTSTRAP,
        ),
    },
    "fig1_alpaca_eval_bars": {
        "inputs": dict(
            alpaca_eval_csv=f"{ART_SCORES}/alpaca_eval.csv",
            per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
            variants_csv=f"{ART_SCORES}/variants.csv",
        ),
        "params": dict(
            judge=ART_ALPACA_JUDGE,
            local_judge_model=ART_LOCAL_JUDGE_MODEL,
            provenance_stamp=ART_STAMP,
            **ART_BOOTSTRAP,
        ),
    },
    "fig2_3_mt_bench_radar": {
        "inputs": dict(
            mt_bench_csv=f"{ART_SCORES}/mt_bench.csv",
            variants_csv=f"{ART_SCORES}/variants.csv",
        ),
        "params": dict(
            judge=ART_MT_BENCH_JUDGE,
            local_judge_model=ART_LOCAL_JUDGE_MODEL,
            provenance_stamp=ART_STAMP,
        ),
    },
    "paper_vs_reproduction": {
        "inputs": dict(
            alpaca_eval_csv=f"{ART_SCORES}/alpaca_eval.csv",
            per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
            mt_bench_csv=f"{ART_SCORES}/mt_bench.csv",
            variants_csv=f"{ART_SCORES}/variants.csv",
            paper_table1_csv=f"{ART_PAPER}/table1.csv",
            paper_leaderboards_csv=f"{ART_PAPER}/leaderboards.csv",
            paper_mt_bench_csv=f"{ART_PAPER}/mt_bench_figure_estimates.csv",
            # the authors' outputs judged again by this run's judge (authors_outputs.smk)
            authors_outputs_csv=f"{ART_SCORES}/authors_alpaca_eval.csv",
        ),
        "params": dict(
            alpaca_eval_judge=ART_ALPACA_JUDGE,
            mt_bench_judge=ART_MT_BENCH_JUDGE,
            local_judge_model=ART_LOCAL_JUDGE_MODEL,
            provenance_stamp=ART_STAMP,
            **ART_BOOTSTRAP,
        ),
    },
    "training_dynamics": {
        "inputs": dict(
            diagnostics_csv=f"{ART_SCORES}/training_diagnostics.csv",
            variants_csv=f"{ART_SCORES}/variants.csv",
        ),
        "params": dict(provenance_stamp=ART_STAMP),
    },
    "length_analysis": {
        "inputs": dict(
            alpaca_eval_csv=f"{ART_SCORES}/alpaca_eval.csv",
            per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
            variants_csv=f"{ART_SCORES}/variants.csv",
        ),
        "params": dict(
            judge=ART_ALPACA_JUDGE,
            local_judge_model=ART_LOCAL_JUDGE_MODEL,
            provenance_stamp=ART_STAMP,
        ),
    },
    "paired_comparisons": {
        "inputs": dict(
            per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
            variants_csv=f"{ART_SCORES}/variants.csv",
        ),
        "params": dict(
            judge=ART_ALPACA_JUDGE,
            local_judge_model=ART_LOCAL_JUDGE_MODEL,
            provenance_stamp=ART_STAMP,
            **ART_BOOTSTRAP,
            baseline_variant=ART_BASELINE_VARIANT,
            # the pairs the paper argues about (prefopt.reporting.artifacts.PAPER_PAIRS)
            paper_pairs="apo_hinge_zero:apo_zero,dpo_hinge:dpo",
        ),
    },
    # The paper's claims (workflow/docs/paper.md 4.1), each with its test and verdict
    # (prefopt.reporting.claims): win rates per prompt, LC per seed, active fractions per step.
    "paper_claims": {
        "inputs": dict(
            per_prompt_csv=f"{ART_SCORES}/alpaca_eval_per_prompt.csv",
            alpaca_eval_csv=f"{ART_SCORES}/alpaca_eval.csv",
            diagnostics_csv=f"{ART_SCORES}/training_diagnostics.csv",
            variants_csv=f"{ART_SCORES}/variants.csv",
        ),
        "params": dict(
            judge=ART_ALPACA_JUDGE,
            local_judge_model=ART_LOCAL_JUDGE_MODEL,
            provenance_stamp=ART_STAMP,
            baseline_variant=ART_BASELINE_VARIANT,
            **ART_BOOTSTRAP,
        ),
    },
    # Held-out accuracy, margin and log-prob shifts per variant x seed, and each trained variant's
    # separation from a baseline over seeds (prefopt.evaluation.heldout.separation).
    "heldout_preference": {
        "inputs": dict(
            per_pair_csv=ART_HELDOUT_PER_PAIR,
            variants_csv=f"{ART_SCORES}/variants.csv",
        ),
        "params": dict(
            heldout=(config.get("data") or {}).get("heldout", {}).get("name", ""),
            baseline=ART_HELDOUT_BASELINE,
            provenance_stamp=ART_STAMP,
            **ART_BOOTSTRAP,
        ),
    },
}
assert set(ART_RENDER) == set(ARTIFACTS) == set(ART_REPORT), "one record per artifact in each"

# Each rule's shell command, built once, here. Snakemake evaluates a rule's `shell:` twice: when
# it reads the rule (the plan, `-p`, the code that reruns compare) and again inside the job, where
# the loop's `_artifact` holds its last value; there the local `rule` is the job's rule name.
ART_RENDER_SHELL = {
    f"render_{a}": _render_cmd(a, list(spec["inputs"]), list(spec["params"]))
    for a, spec in ART_RENDER.items()
}


# One rule per record, render_<artifact>; local: notebooks render on the submit host on a
# cluster (light, CPU-only).
for _artifact, _spec in ART_RENDER.items():

    rule:
        name:
            f"render_{_artifact}"
        input:
            # the notebook first, then what it reads
            **{"notebook": ART_REPO_PATH(f"notebooks/{_artifact}.ipynb"), **_spec["inputs"]},
        output:
            **_reported(_artifact),
            notebook=f"{ART_NOTEBOOKS}/{_artifact}.ipynb",
        log:
            f"results/logs/render_{_artifact}.log",
        benchmark:
            f"results/benchmarks/render_{_artifact}.tsv"
        localrule: True
        conda:
            "../../envs/notebooks.yaml"
        container:
            config["containers"]["notebooks"]
        params:
            **_spec["params"],
        shell:
            ART_RENDER_SHELL[locals().get("rule", f"render_{_artifact}")]
