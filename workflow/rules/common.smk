"""Config validation, wildcard constraints, paths and input functions (no rules here)."""

import importlib.metadata
import importlib.util
import io
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
import os
import sys
from pathlib import Path


def source_tree(source):
    """This repository's files as a local folder, from the SourceFile of this file's folder.

    A clone, or a module whose snakefile is a local path, is its own folder: two above this
    file. A module from a remote source (snakedeploy writes github(...); gitfile(...) names a
    local git repository) is extracted once, at the module's ref, from the git repository that
    Snakemake already keeps for it, into .snakemake/prefopt-source/<commit>/ of the working
    directory: the package, the notebooks and the shipped data are read by path, which
    Snakemake's source cache (rule files, scripts, envs) does not serve.
    """
    if source.is_local:
        return Path(source.get_path_or_uri(secret_free=True)).resolve().parents[1]
    if hasattr(source, "hosted_repo"):  # github(...), gitlab(...): Snakemake's bare clone
        git_dir = source.hosted_repo.repo_clone
    elif hasattr(source, "repo_path"):  # gitfile(...)
        git_dir = source.repo_path
    else:
        raise WorkflowError(
            f"prefopt cannot read its files from {source.get_path_or_uri(secret_free=True)}: "
            "use a clone, github(...) (what snakedeploy writes) or gitfile(...)"
        )
    git = lambda *args: subprocess.run(
        ["git", "-C", str(git_dir), *args], check=True, capture_output=True
    ).stdout
    commit = git("rev-parse", "--verify", f"{source.ref}^{{commit}}").decode().strip()
    tree = Path(".snakemake", "prefopt-source", commit)
    if not tree.is_dir():  # renamed into place whole, so a folder there is complete
        tree.parent.mkdir(parents=True, exist_ok=True)
        part = Path(tempfile.mkdtemp(prefix=f"{commit}.", dir=tree.parent))
        with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", commit))) as tar:
            tar.extractall(part, filter="data")
        try:
            part.rename(tree)
        except OSError:  # another Snakemake process put it there first
            shutil.rmtree(part)
    return tree.resolve()


# This repository's root, wherever Snakemake runs: the root itself, or another folder whose
# Snakefile uses this workflow as a module (workflow.basedir is the folder of the main
# Snakefile, so it would name the user's folder there).
WORKFLOW_ROOT = source_tree(workflow.current_basedir)
WORKFLOW_DIR = WORKFLOW_ROOT / "workflow"
# The prefopt package: installed in .venv by workflow/bin/setup-venv (pip install -e .); a conda
# env or container job finds it through PYTHONPATH (below), which lists this folder. A Python
# without the install, and a module from a remote source (whose package is the tag's, not
# whatever this Python may have installed), read it from this folder.
if not workflow.current_basedir.is_local or importlib.util.find_spec("prefopt") is None:
    sys.path.insert(0, str(WORKFLOW_DIR))
# Jobs run tools (papermill, jupyter) from the environment Snakemake itself runs in, whether or
# not it was activated: `.venv/bin/snakemake ...` works as written. Conda and container jobs put
# their own environment first. (Set, not read: jobs inherit it. `update` keeps the linter from
# taking it for a required variable.)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [str(WORKFLOW_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    ),
    PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
)

from prefopt.config import (
    SEED_METHOD_KEYS,
    ConfigError,
    cache_params,
    external_local_judge_model,
    generation_params,
    local_judge_model,
    training_params,
    validate_config,
    variant_params,
)
from prefopt.judging import ALPACA_EVAL_API_JUDGE, JUDGES, LOCAL_JUDGE, MT_BENCH_API_JUDGE
from prefopt.judging.registry import api_judges, judge_pattern, judge_spec
from prefopt.judging.preflight import (
    check_before_run,
    jobs_of_dag,
    judges_of_jobs,
    offline_warnings,
)
from prefopt.plan import plan_lines
from prefopt.resources import gpu_limit_warning, request_lines, rule_resources
from prefopt.runtime import (
    ALLOW_CPU_ENV,
    missing_stack_modules,
    stack_error,
    unwritable_reason,
)
from prefopt.data.download import ALPACA_EVAL_REFERENCE, DOWNLOADS_DIR
from prefopt.training.reference_cache import meta_path
from prefopt.reporting.run_jobs import RUN_JOBS_FILE, upstream_benchmarks, write_run_jobs
from prefopt.reporting.provenance import (
    PROVENANCE_PATH,
    code_state,
    config_hash,
    results_config,
    stamp_text,
)


def repo_path(relpath):
    """A file this repository ships (notebooks, paper tables, annotator configs), as a path
    from the working directory: unchanged when Snakemake runs in the repository root, through
    the module's folder when another workflow uses this one as a module."""
    return os.path.relpath(WORKFLOW_ROOT / relpath)


try:
    validate_config(config)
    mirror = config["mirror_dir"]
    # A relative mirror_dir is read from the working directory, else from this repository
    # (workflow/resources/data, the shipped samples, when this workflow is used as a module).
    if mirror and not Path(mirror).is_dir() and (WORKFLOW_ROOT / mirror).is_dir():
        config["mirror_dir"] = repo_path(mirror)
    if config["mirror_dir"] and not Path(config["mirror_dir"]).is_dir():
        raise ConfigError(
            f"config error at mirror_dir: {config['mirror_dir']!r} is not a folder (it must hold "
            "the sources in the layout of results/downloads/; null downloads them)"
        )
except ConfigError as err:
    raise WorkflowError(f"invalid configuration:\n{err}") from None


# Before the first job of a real run (not a dry run): results/ must be writable, or every job
# would fail on its own with Snakemake's traceback; and every API judge that a planned job calls
# must answer (prefopt.judging.preflight), or the run would fail days later, at judging. Then the
# runtime table's list of jobs, from the finished DAG (prefopt.reporting.run_jobs).
def start_run():
    if reason := unwritable_reason("results"):
        raise WorkflowError(reason)
    deployment = workflow.deployment_settings.deployment_method
    if not deployment:  # the current environment runs every job: it must hold their stacks
        stacks = {
            Path(str(job.rule.conda_env)).stem
            for job in workflow.dag.needrun_jobs()
            if job.rule.conda_env
        }
        if missing := missing_stack_modules(stacks):
            raise WorkflowError(stack_error(missing))
    planned = jobs_of_dag(workflow.dag)
    jobs = Counter(rule for rule, _ in planned)
    for line in plan_lines(config, jobs, api_judges=judges_of_jobs(planned)):
        print(line, file=sys.stderr)
    for line in request_lines(config, jobs):
        print(line, file=sys.stderr)
    limited = "gpu" in workflow.global_resources  # --resources gpu=N (.get() is never None)
    if warning := gpu_limit_warning(workflow.local_exec, limited, jobs):
        print(warning, file=sys.stderr)
    for line in check_before_run(config, planned):
        print(line, file=sys.stderr)
    is_runtime_table = lambda job: any(
        str(f).endswith(RUNTIME_OUTPUTS["table"]) for f in job.output
    )
    if (files := upstream_benchmarks(workflow.dag, is_runtime_table)) is not None:
        write_run_jobs(RUN_JOBS_FILE, files)


# One block: Snakemake keeps only the last `onstart:` it reads.
onstart:
    start_run()


# Snakemake calls only the main Snakefile's onstart. Used as a module (snakedeploy), this
# workflow's would be dropped without a word, and with it the preflight and the runtime table's
# list of jobs: so it is chained after the main Snakefile's own handler, once (each `use rule`
# statement reads the module again). A handler the main Snakefile defines after its `use rule`
# lines replaces the chain: define it before them. `_onstart` is Snakemake's own slot (9.x);
# tests/integration/test_module.py checks a module run prints the preflight's plan.
if not workflow.modifier.is_main_snakefile() and not getattr(workflow, "_prefopt_start", None):
    _main_onstart = workflow._onstart
    workflow._prefopt_start = start_run
    workflow._onstart = lambda log: (_main_onstart(log), start_run())


# Offline (a dry run asks no API): configured judges whose provider's shutdown date has passed.
# Printed by the scheduling process only, not again by each job's.
if workflow.is_main_process:
    for warning in offline_warnings(config):
        print(warning, file=sys.stderr)


# Whether GPU jobs may run on the CPU (prefopt.runtime.require_gpu reads it in every job). An
# environment variable, not a param: it decides where a job runs, not what it computes, so
# changing it reruns nothing.
os.environ[ALLOW_CPU_ENV] = "1" if config["allow_cpu"] else "0"


MODEL = config["model"]["slug"]
DATASET = config["data"]["train"]["slug"]
MAX_LENGTH = config["training"]["max_length"]
RUN_VARIANTS = list(config["run"]["variants"])
RUN_SEEDS = [int(s) for s in config["run"]["seeds"]]
TRAINED_VARIANTS = [v for v in RUN_VARIANTS if config["variants"][v]["loss"] is not None]
JUDGE_AE = config["judges"]["alpaca_eval"]
JUDGE_MT = config["judges"]["mt_bench"]

DOWNLOADS = DOWNLOADS_DIR
MODEL_DIR = f"results/models/{MODEL}"
PAIRS = "results/data/train_pairs.jsonl"
REFERENCE_LOGPS = f"results/reference_logps/{MODEL}/{DATASET}-maxlen{MAX_LENGTH}.jsonl"
#: What a reference cache was computed from (prefopt.training.reference_cache), checked by its readers.
REFERENCE_META = str(meta_path(REFERENCE_LOGPS))
ALPACA_EVAL_ITEMS = "results/data/alpaca_eval.json"
MT_BENCH_QUESTIONS = "results/data/mt_bench_questions.jsonl"
#: Every trained model (pairwise losses and seed methods alike) and its per-step diagnostics.
CHECKPOINT = "results/train/{variant}/seed{seed}/model"
DIAGNOSTICS = "results/train/{variant}/seed{seed}/diagnostics.csv"
#: Held-out preference pairs and the scores of every variant x seed on them (heldout.smk).
HELDOUT = config["data"]["heldout"]
HELDOUT_PAIRS = "results/data/heldout_pairs.jsonl"
HELDOUT_REFERENCE_LOGPS = (
    f"results/reference_logps/{MODEL}/{DATASET}-heldout-maxlen{MAX_LENGTH}.jsonl"
)
HELDOUT_REFERENCE_META = str(meta_path(HELDOUT_REFERENCE_LOGPS))
HELDOUT_SCORES = "results/heldout/{variant}/seed{seed}.csv"
HELDOUT_TABLE = "results/scores/heldout_preference.csv"
#: Every run variant but lambda-DPO's: it trains on openbmb/UltraFeedback's prompts, which the
#: held-out pairs are not checked against (they are checked against the preference pairs).
HELDOUT_VARIANTS = [v for v in RUN_VARIANTS if config["variants"][v]["loss"] != "lambda_dpo"]


wildcard_constraints:
    variant="|".join(sorted(config["variants"], key=len, reverse=True)),
    seed=r"\d+",
    judge=judge_pattern(j for names in JUDGES.values() for j in names),


def annotator_config(judge):
    """The vendored alpaca_eval annotator config (prompt, function call, parser) of an API judge."""
    protocol = judge_spec("alpaca_eval", judge).protocol
    return repo_path(f"workflow/resources/alpaca_eval/{protocol}/configs.yaml")


def source_file(relpath):
    """A pinned source file in the download layout: from the mirror when one is configured
    (e.g. the samples shipped in workflow/resources/data), else from a download rule."""
    if config["mirror_dir"]:
        return str(Path(config["mirror_dir"]) / relpath)
    return f"{DOWNLOADS}/{relpath}"


def optional_source(relpath):
    """A source a mirror may lack (the authors' annotations, which this repository may not
    ship; alpaca_eval's LC assets): [] when the configured mirror has no such entry, so the
    rule that reads it reports why instead of failing."""
    path = source_file(relpath)
    return [] if config["mirror_dir"] and not Path(path).exists() else path


def missing_source_reason(relpath, what):
    """Why an optional source is absent (None when it is present or will be downloaded)."""
    if optional_source(relpath):
        return None
    return (
        f"{what} not available: the mirror {config['mirror_dir']} has no {relpath}/ "
        "(the samples shipped in workflow/resources/data do not include it); run with "
        "mirror_dir: null to download it at its pinned revision, or use a mirror that holds it"
    )


def train_source():
    return source_file(f"{DATASET}/{config['data']['train']['split']}.jsonl")


def heldout_source():
    return source_file(f"{DATASET}/{HELDOUT['split']}.jsonl")


def policy_dir(wildcards):
    """The model a (variant, seed) generates with: the base folder for `base`, else its checkpoint."""
    if config["variants"][wildcards.variant]["loss"] is None:
        return MODEL_DIR
    return checkpoint_of(wildcards.variant, wildcards.seed)


def generator_name(wildcards):
    return f"{wildcards.variant}-seed{wildcards.seed}"


def collect(pattern, **extra):
    return expand(pattern, variant=RUN_VARIANTS, seed=RUN_SEEDS, **extra)


#: `generation.engine: vllm` runs in the vllm stack (vLLM pins its own torch), hf in torch.
GENERATION_STACK = "vllm" if config["generation"]["engine"] == "vllm" else "torch"
#: Beside each answers file: the engine, its version, dtype and device that wrote it.
GENERATION_ENGINE_RECORD = {
    "alpaca_eval": "results/generations/alpaca_eval/{variant}/seed{seed}.engine.json",
    "mt_bench": "results/generations/mt_bench/{variant}/seed{seed}.engine.json",
}


def generation_engine_records():
    return [f for pattern in GENERATION_ENGINE_RECORD.values() for f in collect(pattern)]


def score_files():
    return [
        "results/scores/alpaca_eval.csv",
        "results/scores/alpaca_eval_per_prompt.csv",
        "results/scores/mt_bench.csv",
        "results/scores/training_diagnostics.csv",
        "results/scores/variants.csv",
    ] + ([HELDOUT_TABLE] if HELDOUT_VARIANTS else [])


def checkpoints_of_run():
    """Trained models are deliverables: a deleted checkpoint is retrained (and, being newer,
    reruns exactly its downstream jobs) instead of being treated as a disposable intermediate."""
    return expand(CHECKPOINT, variant=TRAINED_VARIANTS, seed=RUN_SEEDS)


AUDIT_TABLE = "results/tables/audit_paper_numbers.csv"
#: What produced the results (written by write_provenance); every table and figure is stamped.
PROVENANCE = PROVENANCE_PATH
#: The checked-out commit and whether tracked code differs from it, read once per invocation: a
#: new commit or an edit rewrites the provenance record and restamps the artifacts. A module from
#: a remote source runs the commit its tree was extracted from (source_tree), as committed.
CODE_STATE = (
    code_state(WORKFLOW_ROOT)
    if workflow.current_basedir.is_local
    else {"commit": WORKFLOW_ROOT.name, "dirty": False}
)
#: The scheduler's own version (jobs may run in other environments: conda, containers).
SNAKEMAKE_VERSION = importlib.metadata.version("snakemake")
#: "code <commit>, config <hash>": a param of every rule that writes a table or figure.
PROVENANCE_STAMP = stamp_text(CODE_STATE["commit"], CODE_STATE["dirty"], config_hash(config))
#: What the run cost: runtime by rule, from every job's benchmark file (rule runtime_by_rule).
RUNTIME_OUTPUTS = {
    "table": "results/tables/runtime_by_rule.csv",
    "markdown": "results/tables/runtime_by_rule.md",
    "figure": "results/figures/runtime_by_rule.png",
}


# --- seed methods (lambda-DPO, DCKD, ADPA/ADPA+): workflow/rules/seed_methods.smk ----------------


def variants_with_loss(*losses):
    return [v for v, spec in config["variants"].items() if spec["loss"] in losses]


def variant_regex(names):
    """A wildcard constraint matching exactly these variant names (none: matches nothing)."""
    return "|".join(sorted(names, key=len, reverse=True)) or "(?!)"


PAIRWISE_VARIANTS = [
    v
    for v, spec in config["variants"].items()
    if spec["loss"] is not None and spec["loss"] not in SEED_METHOD_KEYS
]
LISTWISE = config["data"]["listwise"]
LISTWISE_DATA = "results/data/train_listwise.jsonl"
LISTWISE_REFERENCE_LOGPS = (
    f"results/reference_logps/{MODEL}/{LISTWISE['slug']}-maxlen{MAX_LENGTH}.jsonl"
)


def listwise_source():
    if LISTWISE["local_file"]:
        return LISTWISE["local_file"]
    return source_file(f"{LISTWISE['slug']}/{LISTWISE['split']}.jsonl")


def checkpoint_of(variant, seed):
    return CHECKPOINT.format(variant=variant, seed=seed)


def student_init_dir(wildcards):
    """A DCKD/ADPA student starts from the base model, or from another student (ADPA+ <- DCKD)."""
    init = config["variants"][wildcards.variant].get("init")
    return checkpoint_of(init, wildcards.seed) if init else MODEL_DIR


TEACHER_MODELS_DIR = "results/models/teachers"


def teacher_dir(wildcards):
    """The DPO teacher: a trained variant's checkpoint (same seed) or an external teacher model."""
    spec = config["variants"][wildcards.variant]
    if spec.get("teacher_model"):
        return f"{TEACHER_MODELS_DIR}/{spec['teacher_model']}"
    return checkpoint_of(spec["teacher"], wildcards.seed)


def reference_teacher_dir(wildcards):
    """The DPO teacher's starting point: the base model for a variant teacher (where its
    training started), else the configured external reference teacher."""
    slug = config["variants"][wildcards.variant].get("reference_teacher_model")
    return f"{TEACHER_MODELS_DIR}/{slug}" if slug else MODEL_DIR


_listwise_run = [v for v in RUN_VARIANTS if config["variants"][v]["loss"] == "lambda_dpo"]
_listwise_defined = variants_with_loss("lambda_dpo")
_listwise_missing = (
    config["mirror_dir"] and not LISTWISE["local_file"] and not Path(listwise_source()).exists()
)
if _listwise_defined and not _listwise_run and _listwise_missing:
    print(
        f"note: lambda-DPO ({', '.join(_listwise_defined)}) is not in this run: it needs "
        "openbmb/UltraFeedback's per-aspect ratings, which the mirror "
        f"{config['mirror_dir']} does not hold ({listwise_source()}). Run it on the "
        "fixture with config/lambda-dpo-fixture.yaml, or on the real data with no "
        "mirror (downloads).",
        file=sys.stderr,
    )
elif _listwise_run and _listwise_missing:
    raise WorkflowError(
        f"config error at run.variants: {_listwise_run} need the listwise data "
        f"{listwise_source()} (data.listwise.slug/split under mirror_dir), which does not "
        "exist; set data.listwise.local_file, mirror it, or set mirror_dir: null to download it"
    )


# --- which variants train and which data they read --------------------------------------------


def trained_variants_needed():
    """The run's trained variants and, transitively, the trained variants they start from or
    learn from (student_init_dir, teacher_dir), which are trained even when not in the run."""
    needed, todo = [], list(TRAINED_VARIANTS)
    while todo:
        variant = todo.pop(0)
        if variant not in needed:
            needed.append(variant)
            todo += [config["variants"][variant].get(k) for k in ("init", "teacher")]
            todo = [v for v in todo if v]
    return needed


def reads_preference_pairs():
    """Whether the run reads the pairwise preference data: pairwise losses, DCKD and ADPA train
    on it, the held-out check compares against it; a lambda-DPO-only run does neither."""
    losses = {config["variants"][v]["loss"] for v in trained_variants_needed()}
    return bool(losses - {"lambda_dpo"} or HELDOUT_VARIANTS)


def run_targets():
    """What the run makes (the inputs of rule all) but the runtime table. Every other job of the
    run is upstream of these files, so rule runtime_by_rule, which takes them all as inputs,
    runs last and the DAG above it is the whole run (prefopt.reporting.run_jobs)."""
    return [
        *checkpoints_of_run(),
        *score_files(),
        *ARTIFACT_OUTPUTS,  # artifacts.smk
        AUDIT_TABLE,
        *CALIBRATION_OUTPUTS,  # calibration.smk
        PROVENANCE,
    ]
