"""Config validation, wildcard constraints, paths and input functions (no rules here)."""

import os
import sys
from pathlib import Path

WORKFLOW_DIR = Path(workflow.basedir) / "workflow"
# Make the prefopt package importable here and in every job (venv, conda env or container).
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
    generation_params,
    training_params,
    validate_config,
    variant_params,
)
from prefopt.judging import ALPACA_EVAL_API_JUDGE, JUDGES, LOCAL_JUDGE, MT_BENCH_API_JUDGE

try:
    validate_config(config)
    if config["mirror_dir"] and not Path(config["mirror_dir"]).is_dir():
        raise ConfigError(
            f"config error at mirror_dir: {config['mirror_dir']!r} is not a folder (it must hold "
            "the sources in the layout of results/downloads/; null downloads them)"
        )
except ConfigError as err:
    raise WorkflowError(f"invalid configuration:\n{err}") from None


MODEL = config["model"]["slug"]
DATASET = config["data"]["train"]["slug"]
MAX_LENGTH = config["training"]["max_length"]
RUN_VARIANTS = list(config["run"]["variants"])
RUN_SEEDS = [int(s) for s in config["run"]["seeds"]]
TRAINED_VARIANTS = [v for v in RUN_VARIANTS if config["variants"][v]["loss"] is not None]
JUDGE_AE = config["judges"]["alpaca_eval"]
JUDGE_MT = config["judges"]["mt_bench"]

DOWNLOADS = "results/downloads"
MODEL_DIR = f"results/models/{MODEL}"
PAIRS = "results/data/train_pairs.jsonl"
REFERENCE_LOGPS = f"results/reference_logps/{MODEL}/{DATASET}-maxlen{MAX_LENGTH}.jsonl"
ALPACA_EVAL_ITEMS = "results/data/alpaca_eval.json"
MT_BENCH_QUESTIONS = "results/data/mt_bench_questions.jsonl"
#: Every trained model (pairwise losses and seed methods alike) and its per-step diagnostics.
CHECKPOINT = "results/train/{variant}/seed{seed}/model"
DIAGNOSTICS = "results/train/{variant}/seed{seed}/diagnostics.csv"


wildcard_constraints:
    variant="|".join(sorted(config["variants"], key=len, reverse=True)),
    seed=r"\d+",
    judge="|".join(sorted({j for names in JUDGES.values() for j in names}, key=len, reverse=True)),


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


def policy_dir(wildcards):
    """The model a (variant, seed) generates with: the base folder for `base`, else its checkpoint."""
    if config["variants"][wildcards.variant]["loss"] is None:
        return MODEL_DIR
    return checkpoint_of(wildcards.variant, wildcards.seed)


def generator_name(wildcards):
    return f"{wildcards.variant}-seed{wildcards.seed}"


def collect(pattern, **extra):
    return expand(pattern, variant=RUN_VARIANTS, seed=RUN_SEEDS, **extra)


def score_files():
    return [
        "results/scores/alpaca_eval.csv",
        "results/scores/alpaca_eval_per_prompt.csv",
        "results/scores/mt_bench.csv",
        "results/scores/training_diagnostics.csv",
        "results/scores/variants.csv",
    ]


def checkpoints_of_run():
    """Trained models are deliverables: a deleted checkpoint is retrained (and, being newer,
    reruns exactly its downstream jobs) instead of being treated as a disposable intermediate."""
    return expand(CHECKPOINT, variant=TRAINED_VARIANTS, seed=RUN_SEEDS)


AUDIT_TABLE = "results/tables/audit_paper_numbers.csv"


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
        "fixture with workflow/configs/lambda-dpo-fixture.yaml, or on the real data with no "
        "mirror (downloads).",
        file=sys.stderr,
    )
elif _listwise_run and _listwise_missing:
    raise WorkflowError(
        f"config error at run.variants: {_listwise_run} need the listwise data "
        f"{listwise_source()} (data.listwise.slug/split under mirror_dir), which does not "
        "exist; set data.listwise.local_file, mirror it, or set mirror_dir: null to download it"
    )
