"""What each job with real needs asks of a scheduler: GPUs, host memory and run time.

One record per rule (`RULE_NEEDS`): what kind of work the job does and whose weights it loads.
`rule_resources` turns a record and the config into the rule's ``resources:`` (``gpu``,
``mem_mb``, ``runtime`` in minutes; CPUs are the rule's ``threads``), so every executor plugin
sees them and profiles hold only executor and site settings. The rule files ask for them with
``resources: **rule_resources(config, "<rule>")`` and a test holds rules and table together.

Host memory is `MEM_BASE_MB` (interpreter, torch and transformers loaded) plus
`CUDA_HOST_MB` (the CUDA libraries a GPU job maps) plus bytes per parameter of the job's model,
by kind of work, times ``resources.mem_margin``. The bytes per parameter are the peaks of the
embedded run on the CPU (`bash workflow/bin/embedded`, file
results/tables/runtime_by_rule.md, column "Peak RSS (MB)": SmolLM2-135M in fp32, every weight,
gradient and activation in host memory), so they bound what a GPU host holds from above.

Run time: training from the plan's optimiser steps (prefopt.plan) times the measured
``resources.seconds_per_step`` or, without one, the plan's stated FLOP estimate; forward passes
from their tokens at the same assumed FLOP/s; both times ``resources.runtime_margin``, at least
``resources.min_runtime_minutes``. Generation and local judging depend on lengths known only
when they run: ``resources.runtime_minutes`` says what they ask.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prefopt.plan import (
    ASSUMED_FLOPS,
    MODEL_PARAMETERS,
    estimated_seconds_per_step,
    steps_per_job,
    training_pairs,
)

#: Peak host memory of a job before its model is loaded: prepare_model's peak in the embedded
#: run (565 MB) rounded up.
MEM_BASE_MB = 600
#: Host memory the CUDA runtime, cuBLAS and cuDNN take in a GPU job (not in the CPU figures).
CUDA_HOST_MB = 3000
#: Host bytes per parameter by kind of work: (embedded run's peak - MEM_BASE_MB) / 134.5 M
#: parameters, rounded up: train_policy 3,704 MB; cache_heldout_reference_logps 1,593 MB
#: (the largest forward pass); generate_mt_bench 1,276 MB; judge_alpaca_eval_local 1,073 MB.
HOST_BYTES_PER_PARAM = {"training": 24, "forward": 8, "generation": 6, "judge": 4}
#: Parameters assumed for a model whose size neither MODEL_PARAMETERS nor its name tells:
#: generous, so a job asks too much (waits longer in the queue) rather than too little (killed).
UNKNOWN_MODEL_PARAMETERS = 8_000_000_000
#: A size in a model id: "Qwen2.5-1.5B-Instruct" -> 1.5 B, "SmolLM2-135M" -> 135 M.
_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([BM])(?![a-z])", re.I)
#: vLLM's engine on the host: its compile workers and CUDA graph capture (an allowance).
VLLM_HOST_MB = 8000


@dataclass(frozen=True)
class JobNeeds:
    """One rule's record: its kind of work (a HOST_BYTES_PER_PARAM key), whose weights it loads
    ("policy": the base model or a model trained from it; "teacher": the largest
    teacher_models entry; "judge": the local judge's model), and for training and forward
    passes, how many sequences of max_length one row of its data is (the work per row)."""

    kind: str
    model: str
    sequences_per_row: int = 2
    data: str = "train"  # "train": the training pairs; "heldout": the held-out pairs


#: Every rule that needs more than a small CPU job, by name.
RULE_NEEDS: dict[str, JobNeeds] = {
    "cache_reference_logps": JobNeeds("forward", "policy"),
    "train_policy": JobNeeds("training", "policy"),
    "cache_heldout_reference_logps": JobNeeds("forward", "policy", data="heldout"),
    "heldout_preference": JobNeeds("forward", "policy", data="heldout"),
    "generate_alpaca_eval": JobNeeds("generation", "policy"),
    "generate_mt_bench": JobNeeds("generation", "policy"),
    "judge_alpaca_eval_local": JobNeeds("judge", "judge"),
    "judge_mt_bench_local": JobNeeds("judge", "judge"),
    "judge_calibration_alpaca_eval_local": JobNeeds("judge", "judge"),
    "judge_calibration_mt_bench_local": JobNeeds("judge", "judge"),
    "judge_authors_outputs_local": JobNeeds("judge", "judge"),
    # Seed methods (workflow/docs/seed_methods.md): lambda-DPO scores 4 candidates per prompt.
    "cache_listwise_reference_logps": JobNeeds("forward", "policy", sequences_per_row=4),
    "train_lambda_dpo": JobNeeds("training", "policy", sequences_per_row=4),
    "cache_teacher_topk": JobNeeds("forward", "teacher"),
    "train_dckd_student": JobNeeds("training", "policy"),
    "generate_student_responses": JobNeeds("generation", "policy"),
    "cache_teacher_advantage": JobNeeds("forward", "teacher", sequences_per_row=4),
    "train_adpa_student": JobNeeds("training", "policy"),
}
#: Bytes of DCKD's teacher cache per kept logit (a float32 log-prob and an int32 token id),
#: held in host memory until it is written.
TOPK_BYTES_PER_LOGIT = 8


def parameters_of(model: Mapping[str, Any]) -> int:
    """Parameters of a config model entry (model: or a teacher_models value): from
    MODEL_PARAMETERS, else from a size in its id, else UNKNOWN_MODEL_PARAMETERS."""
    key = model.get("id") if model.get("source") == "huggingface" else model.get("source")
    if key in MODEL_PARAMETERS:
        return MODEL_PARAMETERS[key]
    m = _SIZE_IN_NAME.search(str(key or ""))
    if m:
        return int(float(m[1]) * (1e9 if m[2].upper() == "B" else 1e6))
    return UNKNOWN_MODEL_PARAMETERS


def job_model_parameters(config: Mapping[str, Any], role: str) -> int:
    """Parameters of the model a job of `role` loads (JobNeeds.model)."""
    teachers = config.get("teacher_models") or {}
    if role == "teacher" and teachers:
        return max(parameters_of(m) for m in teachers.values())
    if role == "judge" and config["judges"].get("local_model"):
        return parameters_of(teachers[config["judges"]["local_model"]])
    return parameters_of(config["model"])


def _heldout_pairs(config: Mapping[str, Any]) -> int:
    cap = config["data"]["heldout"].get("max_pairs")
    return int(cap) if cap is not None else 1_000  # the test split's rows (config/config.yaml)


def _round_up(mb: float, to: int = 1000) -> int:
    return int(math.ceil(mb / to) * to)


def mem_mb(config: Mapping[str, Any], rule: str) -> int:
    """Host memory one job of `rule` asks for, in MB (module docstring)."""
    needs = RULE_NEEDS[rule]
    params = job_model_parameters(config, needs.model)
    mb = MEM_BASE_MB + CUDA_HOST_MB + HOST_BYTES_PER_PARAM[needs.kind] * params / 1e6
    if rule == "cache_teacher_topk":
        training = config["training"]
        pairs, _ = training_pairs(config)
        k = max((v.get("topk") or 0 for v in config["variants"].values()), default=0)
        response = int(training["max_length"]) - int(training["max_prompt_length"])
        mb += (pairs or 0) * 2 * response * k * TOPK_BYTES_PER_LOGIT / 1e6
    if needs.kind == "generation" and config["generation"]["engine"] == "vllm":
        mb += VLLM_HOST_MB
    return _round_up(mb * float(config["resources"]["mem_margin"]))


def _estimated_minutes(config: Mapping[str, Any], rule: str) -> float | None:
    """The rule's estimated run time in minutes before the margin, None when nothing knows."""
    needs = RULE_NEEDS[rule]
    res = config["resources"]
    if needs.kind == "training":
        steps = steps_per_job(config)
        per_step = res.get("seconds_per_step") or estimated_seconds_per_step(config)
        if steps is None or per_step is None:
            return None
        return steps * per_step * needs.sequences_per_row / 2 / 60
    if needs.kind == "forward":
        rows = _heldout_pairs(config) if needs.data == "heldout" else training_pairs(config)[0]
        if rows is None:
            return None
        tokens = rows * needs.sequences_per_row * int(config["training"]["max_length"])
        params = job_model_parameters(config, needs.model)
        return 2 * params * tokens / ASSUMED_FLOPS / 60  # a forward pass: 2 FLOPs/token/param
    return None


def runtime_minutes(config: Mapping[str, Any], rule: str) -> int:
    """Run time one job of `rule` asks for, in minutes (module docstring)."""
    needs = RULE_NEEDS[rule]
    res = config["resources"]
    floor = int(res["min_runtime_minutes"])
    if needs.kind in res["runtime_minutes"]:
        return max(int(res["runtime_minutes"][needs.kind]), floor)
    estimate = _estimated_minutes(config, rule)
    if estimate is None:  # unknown data size: a day, as a paper-sized training needs
        return max(24 * 60, floor)
    return max(int(math.ceil(estimate * float(res["runtime_margin"]))), floor)


def rule_gpus(config: Mapping[str, Any], rule: str) -> int:
    """GPUs one job of `rule` asks for: training.gpus_per_job for train_policy (DDP), else 1."""
    return int(config["training"]["gpus_per_job"]) if rule == "train_policy" else 1


def rule_resources(config: Mapping[str, Any], rule: str) -> dict[str, int]:
    """The ``resources:`` of `rule` (a RULE_NEEDS key) under `config` (validated)."""
    if rule not in RULE_NEEDS:
        raise KeyError(f"{rule}: no record in prefopt.resources.RULE_NEEDS")
    return {
        "gpu": rule_gpus(config, rule),
        "mem_mb": mem_mb(config, rule),
        "runtime": runtime_minutes(config, rule),
    }


def _duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest:02d} min" if hours else f"{rest} min"


def request_lines(config: Mapping[str, Any], jobs: Mapping[str, int]) -> list[str]:
    """What each planned rule's jobs ask of a scheduler, for the plan printed before a run."""
    lines = []
    for rule in sorted(r for r, n in jobs.items() if n and r in RULE_NEEDS):
        res = rule_resources(config, rule)
        how = ""
        if RULE_NEEDS[rule].kind == "training" and not config["resources"]["seconds_per_step"]:
            how = " (run time from the FLOP estimate; resources.seconds_per_step replaces it)"
        lines.append(
            f"  {rule}: gpu {res['gpu']}, mem_mb {res['mem_mb']:,}, runtime "
            f"{_duration(res['runtime'])} per job{how}"
        )
    if lines:
        lines.insert(0, "  each job asks a scheduler for (prefopt.resources; a workstation ignores "
                        "mem_mb and runtime):")  # fmt: skip
    return lines


def gpu_limit_warning(local: bool, limited: bool, jobs: Mapping[str, int]) -> str | None:
    """A warning when jobs run on this machine (`local`), some ask for a GPU and the run sets
    no ``--resources gpu=N`` (`limited` False): Snakemake would start them all at once."""
    if not local or limited:
        return None
    gpu_rules = sorted(r for r, n in jobs.items() if n and r in RULE_NEEDS)
    if not gpu_rules:
        return None
    return (
        f"warning: {len(gpu_rules)} GPU rule(s) planned ({', '.join(gpu_rules[:3])}"
        f"{', ...' if len(gpu_rules) > 3 else ''}) but nothing limits how many run at once: "
        "add --resources gpu=N for the N GPUs of this machine, or --profile profiles/workstation "
        "(one GPU)"
    )
